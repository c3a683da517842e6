"""The maker's timers. The ones that protect money never wait on I/O: a tick reads state, starts
requests as tasks, and returns; the next tick comes on time however slow the exchange answers.

Every ``tick_s`` (on the injected clock): book silence and escalation, held-quote retries, the request
watchdog (unknown creates looked up, stuck requests read back), the mark-driven kill switch and its
sweep retries, disconnect recovery. Less often: the exchange status poll and the periodic resync
(each spawned, never two at once), tape marks, P&L records, book snapshots, the view.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from kmm.engine.clock import NS_PER_S
from kmm.engine.incentwire import sample_engine
from kmm.engine.risk import KillState
from kmm.errors import KmmError

if TYPE_CHECKING:
    from kmm.engine.maker import Engine

log = logging.getLogger("kmm.housekeeping")


class Housekeeping:
    def __init__(self, maker: Engine) -> None:
        self.m = maker
        self._handle: asyncio.TimerHandle | None = None
        self._status: asyncio.Future[Any] | None = None
        self._incentive_read: asyncio.Future[Any] | None = None
        self.ticks = 0
        self.last_tick_ns = 0
        self._next: dict[str, int] = {}

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.m.opt.tick_s, self._tick)

    def _due(self, name: str, now: int, every_s: float) -> bool:
        nxt = self._next.get(name)
        if nxt is None:
            self._next[name] = now + int(every_s * NS_PER_S)
            return name in ("status", "view", "mark", "pnl", "snap")  # these also run at the first tick
        if now >= nxt:
            self._next[name] = now + int(every_s * NS_PER_S)
            return True
        return False

    def _tick(self) -> None:
        self._handle = None
        m = self.m
        if m.stopping:
            return
        try:
            self.tick()
        except Exception as exc:  # noqa: BLE001 - housekeeping must keep running
            log.warning("housekeeping: %s", exc, exc_info=not isinstance(exc, KmmError))
        finally:
            if not m.stopping:
                self._schedule()

    def tick(self) -> None:
        """One pass. Synchronous: whatever needs the exchange is spawned."""
        m = self.m
        s = m.session
        now = m.clock.monotonic_ns()
        self.ticks += 1
        self.last_tick_ns = now
        # --- money first
        m.recovery.check_books(now)
        self._retry_held(now)
        s.forget_closed_orders()
        s.watch_requests()
        m._after_pnl_change()                     # marks move unrealized P&L: the loss limit sees it
        m.event_guard()                           # an event status changed without a fill (marks, limits)
        if m.gate.kill_state is KillState.TRIPPED and not m._kill_sweep_running:
            m._start_kill_sweep()                 # a cancel of the last sweep was refused: sweep again
        m.recovery.keep_recovering()
        # --- then the periodic reads, spawned
        if self._due("prune", now, 60.0):
            s.om.prune(300 * NS_PER_S)
        if self._due("status", now, m.opt.status_poll_s) and (self._status is None or self._status.done()):
            self._status = s.spawn(self._poll_status())
        if self._due("latency", now, 1.0):
            m.check_latency(now)
        if self._due("incentive_read", now, m.cfg.run.incentive_refresh_s) and \
                (self._incentive_read is None or self._incentive_read.done()) and m.rest is not None:
            self._incentive_read = s.spawn(m.incentives.refresh(m.rest))
        if m.incentives.programs and self._due("incentive_sample", now, m.cfg.run.incentive_sample_s):
            sample_engine(m.incentives, m)
        verify_s = m.opt.reconcile_interval_s or m.cfg.run.verify_interval_s
        if self._due("reconcile", now, verify_s) and m.quoting and not m.recovery.busy():
            m.recovery.resync_soon("periodic")
        if self._due("mark", now, m.opt.tape_mark_s):
            for p in m.pipes.values():
                p.refresh_tau(m.clock.time_ns())
                m._tape(p, "mark")
        if self._due("pnl", now, m.opt.pnl_record_s):
            m._record_pnl()
        snap_every = m.cfg.records.book_snapshot_interval_s
        if snap_every > 0 and self._due("snap", now, snap_every):
            m._record_books("interval")
        if self._due("view", now, 1.0 if m.opt.view == "live" else m.opt.view_every_s):
            m.draw()

    def _retry_held(self, now: int) -> None:
        m = self.m
        for p in m.pipes.values():
            if p.hold_until_ns and p.dirty and p.ready and now >= p.hold_until_ns:
                p.hold_until_ns = 0
                m._requote(p, now)
            elif p.dirty and p.ready and p.in_flight == 0 and not p.hold_until_ns:
                m._requote(p, now)        # e.g. places waited out a 429 back-off

    async def _poll_status(self) -> None:
        try:
            await self.m.session.read_status()
        except KmmError as exc:
            log.info("exchange status poll failed: %s", exc)
