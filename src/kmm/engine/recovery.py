"""What the maker does when the feed or the account stops matching the exchange.

- **seq gap / stale book** (:meth:`Recovery.on_book_stale`): the connector marks the book stale, the
  market's quotes are pulled, quoting resumes on the fresh snapshot.
- **silent book** (:meth:`Recovery.check_books`): judged from book data only (never pings; see
  :mod:`kmm.engine.freshness`). A market silent for ``stale_after_s`` gets a snapshot request and keeps
  its quotes; if the request is not answered within ``snapshot_answer_s`` the quotes are pulled, then
  the book channel is resubscribed, then the connection is dropped and made again. With
  ``risk.pull_on_silence`` the quotes are pulled at the first silence.
- **disconnect** (:meth:`Recovery.on_disconnected`): quoting stops, every order is cancelled over REST;
  after the reconnect fills are backfilled, orders and positions reconciled, then quoting resumes.
- **resync** (:meth:`Recovery.resync`): the same backfill and reconcile, periodically and after an
  unreadable user message.
- **exchange pause / market lifecycle** (:meth:`Recovery.on_lifecycle`): a signal at once.

Every action here is spawned, never awaited by a timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from kmm._core.fixed import format_price
from kmm._core.grid import Grid
from kmm.engine import freshness as F
from kmm.engine.dedupe import watermark_ms
from kmm.kalshi.rest import PAGE_CHUNK
from kmm.kalshi.types import Lifecycle

if TYPE_CHECKING:
    from kmm.engine.maker import Engine

log = logging.getLogger("kmm.recovery")


def _dollar_ranges(price_ranges: Any) -> Any:
    """The Lifecycle's int ranges ((start, end, step) in 1e-4 $) as the dollar strings Grid reads;
    a structure name or wire dicts pass through."""
    if isinstance(price_ranges, str):
        return price_ranges
    out = []
    for r in price_ranges:
        if isinstance(r, (tuple, list)) and len(r) == 3 and all(isinstance(x, int) for x in r):
            out.append(tuple(format_price(x) for x in r))
        else:
            out.append(r)
    return out

BOOK_CHANNEL = "orderbook_delta"


class Recovery:
    def __init__(self, maker: Engine) -> None:
        self.m = maker
        self.resync_needed = False
        self._task: asyncio.Future[Any] | None = None
        self._sweep: asyncio.Future[Any] | None = None
        self.conn_epoch = 0                   # counts disconnects: a resync only resumes its own connection

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # ================================================================================== books
    def on_book_stale(self, ticker: str, reason: str) -> None:
        m = self.m
        pipe = m.pipes.get(ticker)
        if pipe is None or m.stopping:
            return
        log.warning("%s: book stale (%s): pulling quotes until a fresh snapshot", ticker, reason)
        m._event("book_stale", ticker, reason)
        m.freshness.on_stale(ticker, reason)
        pipe.ready = False
        pipe.state = "stale"
        m._pull(pipe, f"book stale: {reason}")

    def check_books(self, now_ns: int) -> None:
        """Silence and escalation of every market's book (timer; spawns nothing, sends commands only)."""
        m = self.m
        ws = m.ws
        if ws is None or not m.quoting:
            return
        fr = m.freshness
        silent = fr.silent(now_ns)
        if silent:
            if m.cfg.risk.pull_on_silence:
                ws.request_snapshot(silent, reason=f"no book data for {m.cfg.risk.stale_after_s:g} s")
            else:
                m._event("quiet_check", detail=",".join(silent))
                ws.request_snapshot(silent, reason="quiet market", mark_stale=False)
        done: set[int] = set()             # one resubscribe / reconnect per tick, for every market in it
        for ticker, step in fr.escalations(now_ns):
            pipe = m.pipes.get(ticker)
            why = fr.why_not(ticker)
            m._event("book_escalation", ticker, F.STEP_NAMES.get(step, str(step)))
            if step == F.PULL:
                log.warning("%s: %s: pulling quotes and asking again", ticker, why)
                if pipe is not None and pipe.ready:
                    self.on_book_stale(ticker, why)
                fr.on_stale(ticker, why)
                ws.request_snapshot([ticker], reason=why, mark_stale=False)
            elif step in done:
                continue
            elif step == F.RESUBSCRIBE:
                done.add(step)
                log.warning("%s: %s: resubscribing the book channel", ticker, why)
                resub = getattr(ws, "resubscribe", None) or getattr(ws, "_resubscribe", None)
                if resub is not None:
                    resub(BOOK_CHANNEL)
            elif step == F.RECONNECT:
                done.add(step)
                log.warning("%s: %s: reconnecting the WebSocket", ticker, why)
                self._reconnect(ws, why)

    @staticmethod
    def _reconnect(ws: Any, why: str) -> None:
        reconnect = getattr(ws, "reconnect", None)
        if reconnect is not None:
            reconnect(why)
            return
        transport = getattr(ws, "_transport", None)
        if transport is not None:
            ws._close_reason = f"books frozen: {why}"
            transport.disconnect(graceful=False)

    # ================================================================================== connection
    def on_connected(self) -> None:
        if self.resync_needed and not self.m.stopping:
            self._task = self.m.session.spawn(self.resync("reconnect"))

    def on_disconnected(self, reason: str) -> None:
        m = self.m
        if m.stopping:
            log.info("websocket closed (%s)", reason)
            return
        log.warning("websocket lost (%s): quoting stops, cancelling everything over REST", reason)
        m._event("disconnected", detail=reason)
        self.conn_epoch += 1
        self.resync_needed = True
        m.quoting = False
        m.freshness.on_disconnected()
        for p in m.pipes.values():
            p.ready = False
            p.state = "disconnected"
        self._sweep = m.session.spawn(m.session.cancel_everything("websocket lost"))

    def keep_recovering(self) -> None:
        """While disconnected: keep cancelling until nothing of ours rests; once reconnected, reconcile
        (again, if a previous attempt failed) before quoting resumes. Spawns; never waits."""
        m = self.m
        if not self.resync_needed or m.stopping:
            return
        if (self._sweep is None or self._sweep.done()) and m.session.live_with_id():
            self._sweep = m.session.spawn(m.session.cancel_everything("websocket lost"))
        if m.ws is not None and m.ws.connected and (self._task is None or self._task.done()):
            self._task = m.session.spawn(self.resync("reconnect"))

    def resync_soon(self, why: str) -> None:
        if self._task is None or self._task.done():
            self._task = self.m.session.spawn(self.resync(why))

    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def resync(self, why: str) -> None:
        """After a reconnect (and periodically): backfill fills, reconcile orders and positions."""
        m = self.m
        s = m.session
        rest = s.rest
        assert rest is not None
        t0 = m.clock.monotonic_ns()
        t0_wall_ms = m.clock.time_ns() // 1_000_000
        epoch = self.conn_epoch
        try:
            missed = 0
            for i, f in enumerate(sorted(await s.session_fills(), key=lambda f: f.ts_ms), 1):
                before = s.fills
                m.on_fill(f)
                missed += s.fills - before
                if not i % PAGE_CHUNK:
                    await asyncio.sleep(0)     # book frames between chunks (most fills here are known)
            if missed:
                m._event("backfill", detail=f"{why}: {missed} fills")
                log.warning("reconcile (%s): %d fills backfilled over REST", why, missed)
            resting = [o for o in await rest.get_orders(status="resting") if o.ticker in m.pipes]
            rep = s.om.reconcile(resting, (), as_of_ns=t0, tickers=m.tickers)
            m._event("reconciled", detail=f"{why}: {'clean' if rep.clean else rep}")
            if not rep.clean:
                log.critical("reconcile (%s): orders disagreed with the exchange: %s; rebuilding quotes "
                             "from the exchange's state", why, rep)
                if why != "start":
                    await s.cancel_everything("reconcile mismatch: quotes are rebuilt")
            if rep.to_cancel:
                await s.cancel_orders(rep.to_cancel, "unknown at reconcile")
            for o in s.om.unknown():
                await s.resolve_unknown(o)
            await s.check_positions(why, busy=any(p.in_flight for p in m.pipes.values()))
        except Exception as exc:  # noqa: BLE001 - the timer retries (after a reconnect: until it works)
            log.error("reconcile (%s) failed: %s; retrying", why, exc)
            return
        s.backfill_from_ms = max(s.backfill_from_ms, t0_wall_ms - 5_000)
        # no later resync offers fills from before its watermark: their trade ids may go
        before = watermark_ms(s.backfill_from_ms)
        s.pf.forget_fills_before(before)
        s.om.forget_trades_before(before)
        m.mstats.forget_trades_before(before)
        if why == "reconnect":
            if epoch != self.conn_epoch or m.ws is None or not m.ws.connected:
                log.warning("connection lost again during the reconcile; waiting for the next one")
                return
            self.resync_needed = False
            m.quoting = True
            m._event("resumed", detail="after reconnect and reconcile")
            log.info("reconciled after reconnect: quoting resumes as books become ready")
            m._requote_all()

    # ================================================================================== lifecycle
    def on_lifecycle(self, event: Lifecycle) -> None:
        m = self.m
        kind = event.event_type
        if kind in ("exchange_paused", "trading_paused", "exchange_resumed", "trading_resumed"):
            # [U] an exchange-wide lifecycle signal: acted on at once, like an error answer saying so
            m.session.set_pause("" if kind.endswith("resumed") else kind.split("_")[0], f"lifecycle {kind}")
            return
        if event.ticker not in m.pipes:
            return
        log.warning("%s: lifecycle %s %s", event.ticker, kind, event.result or "")
        if kind == "price_level_structure_updated" and getattr(event, "price_ranges", None):
            self.regrid(event.ticker, event.price_ranges)
            return
        if kind == "close_date_updated" and event.close_ts is not None:
            self.close_moved(event.ticker, event.close_ts * 1_000_000_000)
            return
        if kind in ("deactivated", "determined", "settled", "paused"):
            m.gate.set_market_paused(event.ticker, True)
            m._pull(m.pipes[event.ticker], f"market {kind}")
        elif kind in ("activated", "resumed"):
            m.gate.set_market_paused(event.ticker, False)
            m._requote_all()
        if kind == "settled" and event.result in ("yes", "no"):
            m.pf.settle(event.ticker, event.result)

    def close_moved(self, ticker: str, close_ns: int) -> None:
        """The market's close time moved (``close_date_updated``). Everything timed from the close
        follows at once: the model's tau (compiled pipeline and Python signals), and the risk gate's
        stop-before-close and reduce-only-before-close windows. A close moved inside the stop window
        pulls the market's quotes now; otherwise the market is requoted with the new tau."""
        m = self.m
        pipe = m.pipes.get(ticker)
        if pipe is None:
            return
        old = pipe.info.close_time_ns
        pipe.info.close_time_ns = close_ns
        pipe.core.set_close_time(close_ns)
        m.gate.set_close_time(ticker, close_ns)
        wall = m.clock.time_ns()
        pipe.refresh_tau(wall)
        m._event("close_moved", ticker, f"{old} -> {close_ns}")
        left_s = (close_ns - wall) / 1e9
        log.warning("%s: close time moved to %d (%.0f s from now)", ticker, close_ns, left_s)
        if left_s <= m.gate.limits.stop_before_close_s:
            m._pull(pipe, "close moved inside stop_before_close")
        else:
            m._requote_all()

    def regrid(self, ticker: str, price_ranges: Any) -> None:
        """The market moved to another price grid. The connector has already emptied its book on the
        new grid, marked it stale (our quotes there were pulled) and asked for a snapshot; here every
        grid user of the maker moves too: the risk gate's grid and the market's pipeline (strategy,
        ticks) are rebuilt on it, so quoting resumes on the fresh snapshot with valid prices only."""
        m = self.m
        old = m.pipes.get(ticker)
        if old is None:
            return
        try:
            grid = Grid(_dollar_ranges(price_ranges))
        except (ValueError, TypeError) as exc:
            log.critical("%s: new price grid %r unusable (%s); not quoting it", ticker, price_ranges, exc)
            m.gate.set_market_paused(ticker, True)
            m._pull(old, "price grid unusable")
            return
        m._pull(old, "price grid changed")
        info = dataclasses.replace(old.info, grid=grid)
        m._add_pipeline(info)
        new = m.pipes[ticker]
        new.fills = old.fills
        risk = m.gate.markets.get(ticker)
        if risk is not None:
            risk.grid = grid
        m.freshness.on_stale(ticker, "price grid changed")
        m._event("regrid", ticker, str(price_ranges))
        log.warning("%s: quoting moves to the new price grid once its snapshot arrives", ticker)
