"""Plain-Python reference of kmm._core.entry.FrameEntry: the same steps, in the same order, with the same
hand-over points, written as the obvious Python. tests/engine/test_frame_path.py runs it as a fourth
connector beside the compiled entry and both Python paths, on the same frames."""

from __future__ import annotations

from typing import Any

DELTA = 2
FAST_DECIDED, FAST_NOTHING, HANDED = 1, 2, 3


class RefFrameEntry:
    def __init__(self, router: Any, stats: Any, after_feed: Any, raw: Any, log: Any, engine: Any, session: Any,
                 clock: Any) -> None:
        self.router, self.stats, self.after_feed, self.raw, self.log = router, stats, after_feed, raw, log
        self.engine, self.session, self.clock = engine, session, clock
        self.slots: dict[str, tuple[Any, Any, Any]] = {}
        self.decided = self.nothing = self.handed = self.synced = self.last = 0

    def add(self, ticker: str, core: Any, pipe: Any, fresh: Any) -> None:
        if fresh is None:
            self.slots.pop(ticker, None)
        else:
            self.slots[ticker] = (core, pipe, fresh)

    def inventory(self, ticker: str) -> int:
        return int(self.engine.event_risk.quote_inventory(ticker))

    def feed(self, data: bytes, recv_ns: int) -> int:
        stats = self.stats
        stats.frames += 1
        stats.last_recv_ns = recv_ns
        try:
            status = self.router.feed(data, recv_ns)
        except Exception as exc:  # noqa: BLE001
            self.last = 0
            return int(self.after_feed(data, recv_ns, -1, exc))
        if status != DELTA:
            self.last = 0
            return int(self.after_feed(data, recv_ns, status))
        try:
            r = self._delta(self.router.last_ticker, recv_ns)
        except Exception:
            stats.callback_errors += 1
            self.log.exception("on_book raised")
            r = FAST_NOTHING
        self.last = r
        if r == HANDED:
            self.handed += 1
            return int(self.after_feed(data, recv_ns, status))
        if self.raw is not None:
            try:
                self.raw(recv_ns, data)
            except Exception:
                stats.callback_errors += 1
                self.log.exception("on_raw_frame failed")
        return int(status)

    def _delta(self, ticker: str, recv_ns: int) -> int:
        slot = self.slots.get(ticker)
        if slot is None:
            return HANDED
        core, pipe, fresh = slot
        engine = self.engine
        if (core.book is None or not pipe.ready or fresh.state == "checking"
                or not engine.quoting or engine.stopping):
            return HANDED
        gate = self.session.gate
        fr, lim = gate.freshness, gate.backoff
        pauses = 0 if lim is None else getattr(lim, "pauses", None)
        if fr is None or pauses is None:
            return HANDED
        epoch = gate.epoch + fr.epoch + pauses
        now = self.clock.monotonic_ns()
        if core.own_dirty:
            self.synced += 1
            core.own_sync(self.session.om.live_orders(ticker, now_ns=now), now)
        wall = self.clock.time_ns()
        v = core.verdict_q(now, wall, epoch)
        if v >= 4:
            return HANDED
        self.stats.book_frames += 1
        fresh.last_data_ns = now
        pipe.last_book_ns = now
        if v != 0:
            pipe.dirty = True
            core.signals_own(now, wall)
            if core.top_moved():
                engine._marks(ticker, core)
            self.nothing += 1
            return FAST_NOTHING
        pipe.dirty = False
        alpha = 0.0 if pipe._alpha_zero else pipe.alpha.get_external_skew(ticker)
        actions = core.frame_own(now, wall, self.inventory(ticker), alpha)
        if actions:
            decided = self.clock.monotonic_ns()
            self.decided += 1
            engine._act(pipe, actions, core.own_count, recv_ns or now, engine.decide_ns, marks=True,
                        decided_ns=decided)
            return FAST_DECIDED
        pipe.state = "quoting"
        if core.top_moved():
            engine._marks(ticker, core)
        if core.own_count:
            engine.blocked.pop(ticker, None)
        self.nothing += 1
        return FAST_NOTHING
