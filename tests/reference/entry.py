"""Plain-Python reference of kmm._core.entry.FrameEntry: the same steps, in the same order, with the same
hand-over points, written as the obvious Python. tests/engine/test_frame_path.py runs it as a fourth
connector beside the compiled entry and both Python paths, on the same frames (with read boundaries)."""

from __future__ import annotations

from typing import Any

import orjson

NOT_BOOK, SNAPSHOT, DELTA = 0, 1, 2
IGNORE_TICKER, IGNORE_TRADE = 1, 2
_IGNORABLE = {"ticker": IGNORE_TICKER, "trade": IGNORE_TRADE}
FAST_DECIDED, FAST_NOTHING, HANDED, PENDING = 1, 2, 3, 4
PER_READ = 16


class _Slot:
    def __init__(self, ticker: str, core: Any, pipe: Any, fresh: Any) -> None:
        self.ticker, self.core, self.pipe, self.fresh = ticker, core, pipe, fresh
        self.pending = False
        self.pend_book = False
        self.pend_update = False
        self.pend_ns = 0


class RefFrameEntry:
    def __init__(self, router: Any, stats: Any, after_feed: Any, raw: Any, log: Any, engine: Any, session: Any,
                 clock: Any, coalesce: bool = False, flush_python: bool = False) -> None:
        self.router, self.stats, self.after_feed, self.raw, self.log = router, stats, after_feed, raw, log
        self.engine, self.session, self.clock = engine, session, clock
        self.coalesce = coalesce
        self.flush_python = coalesce and flush_python
        self.slots: dict[str, _Slot] = {}
        self._pending: list[_Slot] = []
        self.open = False
        self.decided = self.nothing = self.handed = self.synced = self.last = 0
        self.asked = self.reads = self.read_deltas = self.coalesced = self.deferred = self.dropped = 0
        self.per_read = [0] * (PER_READ + 1)
        self._n_read = 0
        self.ignore = 0          # IGNORE_TICKER | IGNORE_TRADE: frames of those types are captured only
        self.ignored = 0

    @property
    def reads_by_deltas(self) -> dict[int, int]:
        return {i: n for i, n in enumerate(self.per_read) if n}

    @property
    def pending(self) -> list[str]:
        return [s.ticker for s in self._pending]

    def add(self, ticker: str, core: Any, pipe: Any, fresh: Any) -> None:
        if fresh is None:
            self.remove(ticker)
            return
        self.discard(ticker)
        self.slots[ticker] = _Slot(ticker, core, pipe, fresh)

    def remove(self, ticker: str) -> None:
        self.discard(ticker)
        self.slots.pop(ticker, None)

    def inventory(self, ticker: str) -> int:
        return int(self.engine.event_risk.quote_inventory(ticker))

    # ------------------------------------------------------------------ frames and reads
    def feed(self, data: bytes, recv_ns: int, last: bool = True) -> int:
        stats = self.stats
        stats.frames += 1
        stats.last_recv_ns = recv_ns
        self.open = True
        try:
            status = self.router.feed(data, recv_ns)
        except Exception as exc:  # noqa: BLE001
            self.last = 0
            if self.flush_python:
                self.flush()
            out = int(self.after_feed(data, recv_ns, -1, exc))
            if last:
                self.end_read()
            return out
        if status != DELTA:
            self.last = 0
            if status == NOT_BOOK and self.ignore and _IGNORABLE.get(orjson.loads(data).get("type"), 0) & self.ignore:
                self.ignored += 1         # captured, not decoded; decided where the Python path was
                if self.flush_python:
                    self.flush()
                if last:
                    self.end_read()
                self._capture(data, recv_ns)
                return int(status)
            if status == SNAPSHOT and self.coalesce:
                self.discard(self.router.last_ticker)
            if self.flush_python:
                self.flush()
            out = int(self.after_feed(data, recv_ns, status))
            if last:
                self.end_read()
            return out
        self._n_read += 1
        ticker = self.router.last_ticker
        try:
            r = self._delta(ticker, recv_ns)
        except Exception:
            stats.callback_errors += 1
            self.log.exception("on_book raised")
            r = FAST_NOTHING
        self.last = r
        if r == HANDED:
            self.handed += 1
            if self.coalesce:
                self.discard(ticker)
                if self.flush_python:
                    self.flush()
            out = int(self.after_feed(data, recv_ns, status))
            if last:
                self.end_read()
            return out
        if last:
            self.end_read()
        self._capture(data, recv_ns)
        return int(status)

    def _capture(self, data: bytes, recv_ns: int) -> None:
        if self.raw is not None:
            try:
                self.raw(recv_ns, data)
            except Exception:
                self.stats.callback_errors += 1
                self.log.exception("on_raw_frame failed")

    def end_read(self) -> None:
        n = self._n_read
        self.open = False
        self._n_read = 0
        self.reads += 1
        self.read_deltas += n
        self.per_read[min(n, PER_READ)] += 1
        self.flush()

    def flush(self) -> None:
        # every pending market decided first, then the decisions sent (Engine._act_read interleaves the
        # markets' first requests), then the book decisions' marks
        todo, self._pending = self._pending, []
        outer = self._acts, self._marks_todo
        acts: list[tuple[Any, ...]] = []
        marks: list[_Slot] = []
        self._acts, self._marks_todo = acts, marks
        try:
            for slot in todo:
                if not slot.pending:
                    continue
                slot.pending = False
                try:
                    self._decide(slot, slot.pend_ns, slot.pend_book, slot.pend_update)
                except Exception:
                    self.stats.callback_errors += 1
                    self.log.exception("deciding %s at the end of the read raised", slot.ticker)
        finally:
            self._acts, self._marks_todo = outer
        engine = self.engine
        if acts:
            try:
                if len(acts) == 1:
                    a = acts[0]
                    engine._act(a[0], a[1], a[2], a[3], a[4], marks=a[5], decided_ns=a[6])
                else:
                    engine._act_read(acts)
            except Exception:
                self.stats.callback_errors += 1
                self.log.exception("sending the decisions of the read raised")
        for slot in marks:
            try:
                if slot.core.top_moved():
                    engine._marks(slot.ticker, slot.core)
            except Exception:
                self.stats.callback_errors += 1
                self.log.exception("marking %s at the end of the read raised", slot.ticker)

    _acts: list[tuple[Any, ...]] | None = None
    _marks_todo: list[_Slot] | None = None

    def _mark(self, slot: _Slot, book: bool) -> None:
        if not book:
            return
        if self._marks_todo is not None:
            self._marks_todo.append(slot)
        elif slot.core.top_moved():
            self.engine._marks(slot.ticker, slot.core)

    def defer(self, ticker: str, trigger_ns: int) -> bool:
        if not self.coalesce or not self.open:
            return False
        slot = self.slots.get(ticker)
        if slot is None:
            return False
        self.deferred += 1
        slot.pend_update = True
        if slot.pending:
            self.coalesced += 1
        else:
            slot.pending, slot.pend_book, slot.pend_ns = True, False, trigger_ns
            self._pending.append(slot)
        return True

    def discard(self, ticker: str | None) -> None:
        slot = self.slots.get(ticker) if ticker is not None else None
        if slot is not None and slot.pending:
            slot.pending = False
            self.dropped += 1

    def drop(self) -> None:
        for slot in self._pending:
            if slot.pending:
                slot.pending = False
                self.dropped += 1
        self._pending = []
        self.open = False
        self._n_read = 0

    # ------------------------------------------------------------------ a delta: apply, decide
    def _epoch(self) -> int:
        gate = self.session.gate
        fr, lim = gate.freshness, gate.backoff
        pauses = 0 if lim is None else getattr(lim, "pauses", None)
        return -1 if fr is None or pauses is None else gate.epoch + fr.epoch + pauses

    def _delta(self, ticker: str, recv_ns: int) -> int:
        slot = self.slots.get(ticker)
        if slot is None:
            return HANDED
        core, pipe, fresh = slot.core, slot.pipe, slot.fresh
        engine = self.engine
        if (core.book is None or not pipe.ready or fresh.state == "checking"
                or not engine.quoting or engine.stopping):
            return HANDED
        if self._epoch() < 0:
            return HANDED
        if not self.coalesce:
            return self._decide_now(slot, recv_ns)
        now = self.clock.monotonic_ns()
        if core.own_dirty:
            self.synced += 1
            core.own_sync(self.session.om.live_orders(ticker, now_ns=now), now)
        wall = self.clock.time_ns()
        self.stats.book_frames += 1
        fresh.last_data_ns = now
        pipe.last_book_ns = now
        core.signals_own(now, wall)
        if slot.pending:
            self.coalesced += 1
            slot.pend_book = True
        else:
            slot.pending, slot.pend_book, slot.pend_update, slot.pend_ns = True, True, False, recv_ns or now
            self._pending.append(slot)
        return PENDING

    def _decide(self, slot: _Slot, trigger_ns: int, book: bool, update: bool) -> int:
        core, pipe, fresh, ticker = slot.core, slot.pipe, slot.fresh, slot.ticker
        engine = self.engine
        if self.slots.get(ticker) is not slot or core.book is None or not pipe.ready:
            self.dropped += 1
            return 0
        if (book and fresh.state == "checking") or not engine.quoting or engine.stopping:
            self.dropped += 1
            self._mark(slot, book)
            return 0
        gate = self.session.gate
        epoch = self._epoch()
        now = self.clock.monotonic_ns()
        if core.own_dirty:
            self.synced += 1
            core.own_sync(self.session.om.live_orders(ticker, now_ns=now), now)
        wall = self.clock.time_ns()
        v = core.verdict_q(now, wall, epoch)
        if v >= 4:
            self.asked += 1
            d = gate.is_quotable(ticker)
            if not d:
                core.forget_quotable()
                engine._not_quotable(pipe, d, core.own_count)
                self._mark(slot, book)
                self.nothing += 1
                return FAST_NOTHING
            core.hold_quotable(epoch, gate.quotable_until_wall_ns(ticker))
            v -= 4
        if v != 0:
            pipe.dirty = True
            self._mark(slot, book)
            self.nothing += 1
            return FAST_NOTHING
        pipe.dirty = False
        alpha = 0.0 if pipe._alpha_zero else pipe.alpha.get_external_skew(ticker)
        # the decision on the held orders, its signals fed by each delta: Pipeline.decide on them, less
        # the places of the sides the event gate refuses whatever their price and size
        core.set_rooms(*self.engine.event_risk.rooms(ticker, pipe.info.fractional))
        actions = core.decide(self.inventory(ticker), core.own_orders(now), alpha)
        return self._acted(slot, actions, trigger_ns or now, book, update)

    def _acted(self, slot: _Slot, actions: Any, trigger_ns: int, book: bool, update: bool) -> int:
        engine, pipe, core = self.engine, slot.pipe, slot.core
        if actions:
            decided = self.clock.monotonic_ns()
            self.decided += 1
            if self._acts is not None:
                self._acts.append((pipe, actions, core.own_count, trigger_ns,
                                   engine.update_decide_ns if update else engine.decide_ns, book, decided))
                return FAST_DECIDED
            engine._act(pipe, actions, core.own_count, trigger_ns,
                        engine.update_decide_ns if update else engine.decide_ns, marks=book, decided_ns=decided)
            return FAST_DECIDED
        pipe.state = "quoting"
        self._mark(slot, book)
        if core.own_count:
            engine.blocked.pop(slot.ticker, None)
        elif core.last_dropped:
            engine._event_room(pipe)
        self.nothing += 1
        return FAST_NOTHING

    def _decide_now(self, slot: _Slot, recv_ns: int) -> int:
        core, pipe, fresh, ticker = slot.core, slot.pipe, slot.fresh, slot.ticker
        engine = self.engine
        epoch = self._epoch()
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
        core.set_rooms(*self.engine.event_risk.rooms(ticker, pipe.info.fractional))
        actions = core.frame_own(now, wall, self.inventory(ticker), alpha)
        return self._acted(slot, actions, recv_ns or now, True, False)

