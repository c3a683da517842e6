"""The live loop: connector + order manager + risk gate + portfolio + per-market pipelines + records.

This is the only place that wires kmm's parts together (design section 4). The hot path is
``on_book``: the connector's router has already applied the frame to the compiled book, the pipeline
computes the strategy's target and the diff against our live orders, the risk gate checks each action,
and each request coroutine is started at once, so its bytes (signed from the pre-made pool) are written
before the frame callback returns.
Everything that can fail is handled as in design section 6 and docs/architecture.md:

- seq gap / stale book: the connector marks the book stale -> this market's quotes are pulled; quoting
  resumes on the fresh snapshot. A market silent for ``stale_after_s`` gets a snapshot request, and its
  quotes are pulled if the snapshot does not come.
- WebSocket loss: quoting stops, every order is cancelled over REST; after the reconnect, fills are
  backfilled over REST, orders and positions reconciled, then quoting resumes.
- 429: the gate pauses places and amends (cancels keep flowing; the connector's limiter backs off too).
- create timeout: never re-sent; the connector looks the order up by client_order_id.
- loss limit: kill switch -> cancel everything -> paused until hysteresis or the operator.
- exchange pause / market closing: stop quoting there (every order also carries cancel_order_on_pause).
- stop (SIGINT/SIGTERM/duration): stop quoting, cancel everything, verify over REST nothing rests,
  reconcile, check the portfolio against the exchange, delete the session's order group.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from kmm._core import diff as _diff
from kmm._core.book import OrderBook
from kmm._core.fees import fee_rate_e6
from kmm._core.grid import Grid
from kmm._core.ofi import OFI
from kmm._core.wire import BookRouter
from kmm.config import KmmConfig
from kmm.engine.clock import Clock, SystemClock
from kmm.engine.eager import start_eager
from kmm.engine.market import SIDE_NAME, MarketInfo, MarketPipeline
from kmm.engine.orders import IN_FLIGHT, LiveOrder, Order, OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import KillState, RiskGate
from kmm.engine.view import CLEAR, MarketRow, Snapshot, render_line, render_table, usd
from kmm.errors import ExchangeError, KmmError, NotFound, RateLimited
from kmm.kalshi import ConnectorConfig, FeedHandler, KalshiRest, KalshiWs, OrderNotPlaced
from kmm.kalshi.decode import WireError
from kmm.kalshi.types import (Fill, Lifecycle, MarketPosition, OrderAck, OrderRequest, Trade,
                              UserOrder)
from kmm.strategy.alpha import AlphaSource, ExternalSkew
from kmm.strategy.base import Strategy
from kmm.strategy.inside import InsideStrategy
from kmm.strategy.stoikov import StoikovStrategy

log = logging.getLogger("kmm.engine")

NS_PER_S = 1_000_000_000
PLACE, AMEND, DECREASE, CANCEL = _diff.PLACE, _diff.AMEND, _diff.DECREASE, _diff.CANCEL
BATCH_CANCEL_MAX = 20            # [U] V2 batch size limit; 20 was V1's documented limit


@dataclass(slots=True)
class EngineOptions:
    """Live-loop knobs that are not part of kmm.toml's strategy/risk sections."""

    reconcile_interval_s: float = 30.0
    status_poll_s: float = 15.0
    pnl_record_s: float = 5.0
    tape_mark_s: float = 1.0
    view: str = "plain"                 # "live" (redrawn table) | "plain" (a line every view_every_s) | "off"
    view_every_s: float = 5.0
    reprice_pressure: float = 0.5       # write bucket more used than this: small reprices are skipped
    reprice_min_ticks: int = 3          # ... unless the price moves by more than this many ticks
    gc_freeze: bool = True              # gc.freeze() after start and a higher gen-0 threshold
    gc_threshold: tuple[int, int, int] = (50_000, 20, 100)
    feed_silent_s: float = 12.0         # no frame at all (the exchange pings every 10 s): the feed is stalled
    order_group_limit: int = 0          # session order group contracts limit, 1e-2 contracts; 0: none
    stop_verify_attempts: int = 5
    request_drain_s: float = 5.0


@dataclass(slots=True)
class RunSummary:
    venue: str
    duration_s: float
    fills: int
    fills_by_side: dict[str, int]
    orders_sent: int
    cancels_sent: int
    amends_sent: int
    skipped_reprices: int
    realized: int                       # 1e-4 $
    unrealized: int
    fees: int
    positions: dict[str, int]
    resting_after_stop: int
    verified_flat_orders: bool
    portfolio_agrees: bool
    latency_p50_us: float | None
    latency_p99_us: float | None
    latency_p999_us: float | None
    risk_denials: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_started: str | None = None      # the start failed before anything was sent: why

    def render(self) -> str:
        if self.not_started is not None:
            return (f"kmm run did not start on {self.venue}: {self.not_started}; nothing was sent to the "
                    "exchange, so nothing of this run can rest there")
        pos = ", ".join(f"{t} {q / 100:+g}" for t, q in sorted(self.positions.items())) or "flat"
        lat = ("-" if self.latency_p50_us is None else
               f"p50 {self.latency_p50_us:.0f} us, p99 {self.latency_p99_us:.0f} us, "
               f"p99.9 {self.latency_p999_us:.0f} us")
        lines = [
            f"kmm run summary ({self.venue}, {self.duration_s:.1f} s)",
            f"  fills: {self.fills} (bid {self.fills_by_side.get('bid', 0)}, ask {self.fills_by_side.get('ask', 0)})"
            f"   orders sent: {self.orders_sent}, amends: {self.amends_sent}, cancels: {self.cancels_sent}"
            f" (small reprices skipped under write pressure: {self.skipped_reprices})",
            f"  P&L: realized {usd(self.realized, 4)}, unrealized {usd(self.unrealized, 4)}, "
            f"fees {usd(self.fees, 4)}",
            f"  positions: {pos}",
            f"  frame -> request latency: {lat}",
            f"  orders resting after stop: {self.resting_after_stop} "
            f"({'verified over REST' if self.verified_flat_orders else 'NOT verified'})",
            f"  portfolio vs exchange: {'agrees to the cent' if self.portfolio_agrees else 'DISAGREES (see ops.log)'}",
        ]
        if self.risk_denials:
            lines.append("  risk denials: " + ", ".join(f"{k} {v}" for k, v in sorted(self.risk_denials.items())))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _iso_to_ns(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * NS_PER_S)
    except ValueError:
        log.warning("close_time %r is not an ISO timestamp; treating the close as unknown", text)
        return None


class Engine(FeedHandler):
    """Market making on one connection for several markets. ``await engine.run(stop_event)``."""

    def __init__(self, cfg: KmmConfig, conn: ConnectorConfig, *, recorder: Any = None,
                 alpha: ExternalSkew | None = None, clock: Clock | None = None, venue: str = "",
                 options: EngineOptions | None = None, out: TextIO | None = None,
                 strategy_factory: Callable[[MarketInfo], Strategy] | None = None) -> None:
        self.cfg = cfg
        self.conn = conn
        self.recorder = recorder
        self._capture = getattr(recorder, "capture", None)
        self.alpha: ExternalSkew = alpha or AlphaSource()
        self.clock: Clock = clock or SystemClock()
        self.venue = venue or conn.env
        self.opt = options or EngineOptions()
        self.out = out
        self._strategy_factory = strategy_factory
        self.tickers = tuple(cfg.tickers())
        if not self.tickers:
            raise KmmError("no markets to quote: set [run] markets in kmm.toml or pass --markets T1,T2")
        self.om = OrderManager(self.clock, unknown_order_policy=cfg.risk.unknown_order_policy)
        self.pf = Portfolio(mark=cfg.risk.pnl_mark, cash_rounding=cfg.risk.cash_rounding)
        self.gate = RiskGate(cfg.risk_limits(), self.clock, self.pf, self.om)
        self.rest: KalshiRest | None = None
        self.ws: KalshiWs | None = None
        self.router = BookRouter()
        self.pipes: dict[str, MarketPipeline] = {}
        self.group_id: str | None = None
        self.quoting = False
        self.stopping = False
        self._resync_needed = False
        self._resync_task: asyncio.Future[Any] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_ns = 0
        self._last_fill_ts_ms = 0
        self._latency_ns: deque[int] = deque(maxlen=200_000)      # frame received -> first request issued
        self.decide_ns: deque[int] = deque(maxlen=200_000)        # frame received -> actions decided
        self.send_ns: deque[int] = deque(maxlen=200_000)          # actions decided -> first request issued
        self.orders_sent = self.cancels_sent = self.amends_sent = self.decreases_sent = 0
        self.fills = 0
        self.skipped_reprices = 0
        self.fills_by_side = {"bid": 0, "ask": 0}
        self.position_mismatches = 0
        self.notes: list[str] = []
        self._kill_sweep_running = False
        self._presigned: set[str] = set()     # orders whose amend/decrease signatures are pre-made
        self._group_fired = False
        self._verifying: set[str] = set()     # order ids / client ids being read back after an unknown outcome
        self._conn_epoch = 0                  # counts disconnects: a resync only resumes its own connection
        self._sweeping = False                # a cancel-everything is running
        self._session_start_ms = 0            # fills before this are in the positions loaded at start
        self._backfill_from_ms = 0            # REST fill backfill starts here (last good reconcile - 5 s)
        self._position_suspect: dict[str, int] = {}   # ticker -> fills seen when a mismatch was first read
        # a request unanswered this long is read back (the connector's timeout plus its create lookups)
        self._stuck_ns = int((conn.request_timeout_s + conn.create_lookup_window_s + 2.0) * NS_PER_S)
        # what the loop did about each failure, for the operator's log and for tests:
        # (monotonic ns, kind, ticker or "*", detail)
        self.events: deque[tuple[int, str, str, str]] = deque(maxlen=10_000)
        self._not_started: str | None = None  # the start failed before anything was sent: why

    # ================================================================================== life cycle
    async def run(self, stop: asyncio.Event | None = None, duration_s: float | None = None) -> RunSummary:
        """Start, quote until ``stop`` is set or ``duration_s`` passes, then stop safely."""
        self._loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        self._started_ns = self.clock.monotonic_ns()
        duration = self.cfg.run.duration_s if duration_s is None else duration_s
        try:
            try:
                await self._start()
            except BaseException as exc:
                if not (self.orders_sent or self.cancels_sent or self.group_id):
                    self._not_started = str(exc) or type(exc).__name__
                raise
            house = self._spawn(self._housekeeping(stop))
            if duration and duration > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=duration)
                except asyncio.TimeoutError:
                    log.info("duration of %.0f s reached: stopping", duration)
            else:
                await stop.wait()
            house.cancel()
        finally:
            summary = await self._shutdown()
        return summary

    async def _start(self) -> None:
        rest = self.rest = KalshiRest(self.conn)
        await rest.start()
        try:
            budget = await rest.apply_account_limits()
            if budget:
                log.info("rate limits from /account/limits: read %.0f, write %.0f tokens/s", *budget)
        except KmmError as exc:
            log.info("account limits not available (%s); using the configured tier", exc)
        status = await rest.get_exchange_status()
        self.gate.set_exchange_paused(not status.trading_active)
        if not status.trading_active:
            log.warning("exchange reports trading inactive: quoting waits until it resumes")
        markets = {}
        for t in self.tickers:
            raw = await rest.get_market_raw(t)
            info = await self._market_info(t, raw)
            markets[t] = raw.get("price_ranges") or info.grid.ranges
            self._add_pipeline(info)
        # positions and cash as the exchange has them: the session starts from there. Fills older than
        # this are in the positions; the REST backfill never applies them again.
        self._session_start_ms = self._backfill_from_ms = self.clock.time_ns() // 1_000_000
        for p in await rest.get_positions():
            self.pf.load_position(p)
        self.gate.set_pnl_baseline()         # the loss limit counts this session's P&L only
        self._last_fill_ts_ms = self._session_start_ms
        await self._adopt_or_cancel_leftovers()
        if self.opt.order_group_limit > 0:
            try:
                self.group_id = await rest.create_order_group(self.opt.order_group_limit)
                log.info("session order group %s: contracts limit %s per 15 s", self.group_id,
                         self.opt.order_group_limit / 100)
            except KmmError as exc:
                log.warning("could not create the session order group (%s); continuing without it", exc)
        self.pf.set_cash((await rest.get_balance()).balance)
        ws = self.ws = KalshiWs(self.conn, handler=self, router=self.router, book_factory=OrderBook, lifecycle=True)
        ws.add_markets(markets)
        await ws.start()
        if self.opt.gc_freeze:
            # everything allocated so far (markets, books, config, connections) is long-lived: move it
            # out of the collector's reach, and collect the young generation less often, so a
            # collection does not land between a frame and its request
            gc.collect()
            gc.freeze()
            gc.set_threshold(*self.opt.gc_threshold)
        self.quoting = True
        log.info("quoting %s with %s on %s", ", ".join(self.tickers), self.cfg.run.strategy, self.venue)

    async def _market_info(self, ticker: str, raw: dict[str, Any]) -> MarketInfo:
        assert self.rest is not None
        grid = Grid(raw.get("price_ranges") or raw.get("price_level_structure") or None)
        fee_type, mult = "quadratic", 1
        series = raw.get("series_ticker") or str(raw.get("event_ticker", ticker)).split("-")[0]
        try:
            s = await self.rest.get_series(series)
            s = s.get("series", s)
            fee_type = s.get("fee_type") or fee_type
            mult = s.get("fee_multiplier", 1) or 1
        except KmmError as exc:
            log.warning("%s: series %s not readable (%s); assuming fee_type quadratic", ticker, series, exc)
        try:
            maker, taker = fee_rate_e6(fee_type, False, mult), fee_rate_e6(fee_type, True, mult)
        except ValueError as exc:
            log.warning("%s: %s; quoting as if makers paid the taker rate, to stay conservative", ticker, exc)
            maker = taker = fee_rate_e6("quadratic", True, mult)
        close_ns = _iso_to_ns(raw.get("close_time"))
        status = str(raw.get("status", "active"))
        fractional = bool(raw.get("fractional_trading_enabled", False))
        info = MarketInfo(ticker, grid, close_ns, fractional, maker, taker, status)
        self.gate.add_market(ticker, grid, close_time_ns=close_ns, fractional=fractional)
        if status not in ("active", "open"):
            self.gate.set_market_paused(ticker, True)
            log.warning("%s is %s: not quoting it until it is active", ticker, status)
        return info

    def _add_pipeline(self, info: MarketInfo) -> None:
        params = self.cfg.strategy_for(info.ticker)
        if self._strategy_factory is not None:
            strategy = self._strategy_factory(info)
        elif self.cfg.run.strategy == "inside":
            strategy = InsideStrategy(info.grid, quote_size=params.quote_size, max_position=params.max_position)
        else:
            tick = info.grid.tick_size(5000)
            strategy = StoikovStrategy(info.grid, gamma=params.gamma, kappa=params.kappa,
                                       quote_size=params.quote_size, max_position=params.max_position,
                                       maker_fee_rate_e6=info.maker_rate_e6,
                                       min_spread=params.min_spread_ticks * tick, min_edge=params.min_edge,
                                       fractional=info.fractional)
        ofi = OFI(window_ns=10 * NS_PER_S, half_life_ns=5 * NS_PER_S)   # skews quotes when ofi_weight != 0
        pipe = MarketPipeline(info, None, strategy, params, self.alpha, ofi)
        pipe.skip_reprice_px = self.opt.reprice_min_ticks * info.grid.tick_size(5000)
        self.pipes[info.ticker] = pipe

    async def _adopt_or_cancel_leftovers(self) -> None:
        """Start: resting orders in our markets from before are adopted or cancelled (config)."""
        assert self.rest is not None
        t0 = self.clock.monotonic_ns()
        resting = [o for o in await self.rest.get_orders(status="resting") if o.ticker in self.pipes]
        rep = self.om.reconcile(resting, (), as_of_ns=t0, tickers=self.tickers)
        if rep.adopted:
            log.warning("adopted %d resting orders left from before: %s", len(rep.adopted),
                        ", ".join(o.client_order_id for o in rep.adopted))
        if rep.to_cancel:
            log.warning("cancelling %d resting orders left from before in %s", len(rep.to_cancel),
                        ", ".join(sorted({o.ticker for o in rep.to_cancel})))
            await self._cancel_orders(rep.to_cancel, "leftover from before")

    def _event(self, kind: str, ticker: str = "*", detail: str = "") -> None:
        self.events.append((self.clock.monotonic_ns(), kind, ticker, detail))

    def events_of(self, kind: str, ticker: str | None = None) -> list[tuple[int, str, str, str]]:
        return [e for e in self.events if e[1] == kind and (ticker is None or e[2] == ticker)]

    # ================================================================================== feed callbacks
    def on_connected(self) -> None:
        log.info("websocket connected")
        if self._resync_needed and not self.stopping:
            self._resync_task = self._spawn(self._resync("reconnect"))

    def on_disconnected(self, reason: str) -> None:
        if self.stopping:
            log.info("websocket closed (%s)", reason)
            return
        log.warning("websocket lost (%s): quoting stops, cancelling everything over REST", reason)
        self._event("disconnected", detail=reason)
        self._conn_epoch += 1
        self._resync_needed = True
        self.quoting = False
        for p in self.pipes.values():
            p.ready = False
            p.state = "disconnected"
            self.gate.set_book_stale(p.ticker, True)
        self._spawn(self._cancel_everything("websocket lost"))

    def on_book_ready(self, ticker: str) -> None:
        pipe = self.pipes.get(ticker)
        if pipe is None:
            return
        if pipe.book is None and self.ws is not None:
            pipe.book = self.ws.book(ticker)
        pipe.ready = True
        self._event("book_ready", ticker)
        self.gate.on_book_update(ticker)
        self.on_book(ticker, self.clock.monotonic_ns())

    def on_book_stale(self, ticker: str, reason: str) -> None:
        pipe = self.pipes.get(ticker)
        if pipe is None or self.stopping:
            return
        log.warning("%s: book stale (%s): pulling quotes until a fresh snapshot", ticker, reason)
        self._event("book_stale", ticker, reason)
        pipe.ready = False
        pipe.state = "stale"
        self.gate.set_book_stale(ticker, True)
        self._pull(pipe, f"book stale: {reason}")

    def on_book(self, ticker: str, recv_ns: int) -> None:
        """The hot path: a snapshot or delta for ``ticker`` was applied by the router."""
        pipe = self.pipes.get(ticker)
        if pipe is None or not pipe.ready:
            return
        book = pipe.book
        if book is None:
            return
        now = self.clock.monotonic_ns()
        live = self.om.live_orders(ticker)
        pipe.on_book(now, self.clock.time_ns(), live)
        self.gate.on_book_update(ticker)
        inp = pipe.inputs
        self.pf.set_mark(ticker, inp.best_bid or None, inp.best_ask or None)
        self._requote(pipe, recv_ns or now, live)

    def on_fill(self, fill: Fill) -> None:
        self.om.on_fill(fill)
        if not self.pf.apply_fill(fill):
            return  # duplicate trade_id: already counted
        self.fills += 1
        self.fills_by_side[fill.side] = self.fills_by_side.get(fill.side, 0) + 1
        self._last_fill_ts_ms = max(self._last_fill_ts_ms, fill.ts_ms)
        pipe = self.pipes.get(fill.ticker)
        if pipe is not None:
            pipe.fills += 1
            pipe.on_trade(fill.price)      # our own fills inform kappa too (when it is estimated)
        if self.recorder is not None:
            self.recorder.store.record_fill(fill)
            self._tape(pipe, "fill", fill=fill)
        log.info("fill %s %s %s @ %.4f x %s (fee %.4f)%s", fill.ticker, fill.side, fill.trade_id,
                 fill.price / 1e4, fill.count / 100, fill.fee / 1e4, " taker" if fill.is_taker else "")
        self._after_pnl_change()
        if pipe is not None and pipe.ready:
            self._requote(pipe, fill.recv_ns or self.clock.monotonic_ns())

    def on_user_order(self, order: UserOrder) -> None:
        known = self.om.by_order_id(order.order_id) or (
            self.om.get(order.client_order_id) if order.client_order_id else None)
        was_closed = known is not None and not known.is_live
        self.om.on_user_order(order)
        if (was_closed and order.status == "resting" and order.ticker in self.pipes
                and order.order_id not in self._verifying):
            # we had closed it (a create whose lookups found nothing, a cancel we believed): the exchange
            # says it rests. Cancel it; if it is in fact gone, the cancel answers "not found".
            log.warning("%s: order %s rests at the exchange but was closed here; cancelling it",
                        order.ticker, order.order_id)
            self._event("stray_order", order.ticker, order.order_id)
            self._spawn(self._cancel_stray(order.order_id))
        if self.recorder is not None:
            self.recorder.store.record_user_order(order, strategy=self.cfg.run.strategy)
        pipe = self.pipes.get(order.ticker)
        if pipe is not None and pipe.dirty and pipe.in_flight == 0 and pipe.ready:
            self._requote(pipe, order.recv_ns or self.clock.monotonic_ns())

    def on_market_position(self, position: MarketPosition) -> None:
        check = self.pf.check_against(position)
        if not check.ok:
            # channels are not ordered against each other: a fill may still be on its way; the
            # authoritative check is the REST reconcile
            log.debug("market_position differs for now: %s", check)

    def on_trade(self, trade: Trade) -> None:
        pipe = self.pipes.get(trade.ticker)
        if pipe is not None:
            pipe.on_trade(trade.price)

    def on_lifecycle(self, event: Lifecycle) -> None:
        if event.ticker not in self.pipes:
            return
        log.warning("%s: lifecycle %s %s", event.ticker, event.event_type, event.result or "")
        if event.event_type in ("deactivated", "determined", "settled"):
            self.gate.set_market_paused(event.ticker, True)
            self._pull(self.pipes[event.ticker], f"market {event.event_type}")
        elif event.event_type == "activated":
            self.gate.set_market_paused(event.ticker, False)
        if event.event_type == "settled" and event.result in ("yes", "no"):
            self.pf.settle(event.ticker, event.result)

    def on_raw_frame(self, recv_ns: int, data: bytes) -> None:
        """Every received frame, with its receive time, to the raw capture (enqueued; written off the loop)."""
        capture = self._capture
        if capture is not None:
            capture.write(recv_ns, data)

    def on_error(self, error: Exception) -> None:
        log.warning("connector: %s", error)
        if isinstance(error, WireError) and not self.stopping and self.quoting:
            # a fill or order update we could not decode: backfill and reconcile over REST now
            if self._resync_task is None or self._resync_task.done():
                self._resync_task = self._spawn(self._resync("unreadable user message"))

    # ================================================================================== decisions
    def _requote(self, pipe: MarketPipeline, trigger_ns: int, live: list[LiveOrder] | None = None) -> None:
        """Decide and act for one market. ``live`` is its live orders when the caller has them already."""
        if not self.quoting or self.stopping:
            return
        if pipe.in_flight:
            pipe.dirty = True
            return
        if pipe.hold_until_ns and self.clock.monotonic_ns() < pipe.hold_until_ns:
            pipe.dirty = True          # after a refused create: the housekeeping tick retries later
            return
        ticker = pipe.ticker
        d = self.gate.is_quotable(ticker)
        if live is None:
            live = self.om.live_orders(ticker)
        if not d:
            pipe.state = d.reason
            if d.reason == "rate_limited":
                pipe.dirty = True        # places and amends wait out the back-off; live quotes stay
                return
            if live:
                self._pull(pipe, d.reason)
            if self.gate.kill_state is KillState.TRIPPED:
                self._start_kill_sweep()
            return
        for o in live:
            if not o.actionable:
                pipe.dirty = True      # a request on this market is still open: decide after its answer
                return
        pipe.dirty = False
        actions = pipe.decide(self.pf.position(ticker), live)
        pipe.state = "quoting"
        if actions:
            if self._small_reprices_only(pipe, actions):
                self.skipped_reprices += 1      # save the write budget for what matters
                return
            pipe.trigger_ns = trigger_ns
            pipe.decided_ns = self.clock.monotonic_ns()
            self.decide_ns.append(pipe.decided_ns - trigger_ns)
            self._apply(pipe, actions, trigger_ns)

    def _pull(self, pipe: MarketPipeline, reason: str) -> None:
        """Cancel every live order of this market (orders still being created are cancelled on ack)."""
        live = self.om.live_orders(pipe.ticker)
        if not live:
            return
        actions = pipe.pull([o for o in live if o.order_id is not None])
        if actions:
            log.info("%s: pulling %d quotes (%s)", pipe.ticker, len(actions), reason)
            self._event("pull", pipe.ticker, reason)
            self._apply(pipe, actions, self.clock.monotonic_ns())

    def _apply(self, pipe: MarketPipeline, actions: Iterable[Any], trigger_ns: int) -> None:
        pipe.applying = True
        try:
            self._apply_actions(pipe, actions, trigger_ns)
        finally:
            pipe.applying = False
        if pipe.in_flight == 0 and pipe.dirty and pipe.ready and self._loop is not None:
            self._loop.call_soon(self._requote, pipe, self.clock.monotonic_ns())

    def _small_reprices_only(self, pipe: MarketPipeline, actions: tuple[Any, ...]) -> bool:
        """True when every action is an amend that only nudges a price (no size change) by at most
        ``reprice_min_ticks`` while the write bucket is under pressure: such a decision is skipped
        whole (never half of it, which could leave our bid at or above our ask)."""
        if self.rest is None or self.rest.limiter.pressure() <= self.opt.reprice_pressure:
            return False
        for a in actions:
            if a.kind != AMEND:
                return False
            o = self.om.get(a.order_id)
            if o is None or a.size != o.remaining or abs(a.price - o.price) > pipe.skip_reprice_px:
                return False
        return True

    def _apply_actions(self, pipe: MarketPipeline, actions: Iterable[Any], trigger_ns: int) -> None:
        ticker = pipe.ticker
        for a in actions:
            kind, side = a.kind, SIDE_NAME[a.side]
            if kind == PLACE:
                d = self.gate.check_place(ticker, side, a.price, a.size)
                if not d:
                    log.debug("%s: place %s %d x %d denied: %s", ticker, side, a.price, a.size, d.detail)
                    continue
                o = self.om.create(ticker, side, a.price, a.size)
                req = OrderRequest(ticker=ticker, side=side, price=a.price, count=a.size,
                                   client_order_id=o.client_order_id, post_only=True,
                                   cancel_order_on_pause=True, order_group_id=self.group_id)
                if self.recorder is not None:
                    self.recorder.store.record_order(status="pending", client_order_id=o.client_order_id,
                                                     ticker=ticker, side=side, price=a.price, count=a.size,
                                                     strategy=self.cfg.run.strategy, reason="quote")
                self._send(pipe, self._do_place(pipe, o, req, trigger_ns))
                continue
            live = self.om.get(a.order_id)
            if live is None or live.order_id is None:
                continue
            oid = live.order_id
            if kind == CANCEL:
                if self.om.request_cancel(oid) is not None:
                    self._send(pipe, self._do_cancel(pipe, oid, trigger_ns))
            elif kind == DECREASE:
                if self.om.request_decrease(oid, a.size) is not None:
                    self._send(pipe, self._do_decrease(pipe, oid, a.size, trigger_ns))
            elif kind == AMEND:
                d = self.gate.check_amend(ticker, side, a.price, a.size, live.remaining)
                if not d:
                    # the gate refuses the new price/size (e.g. reduce-only): take the order down instead
                    if self.om.request_cancel(oid) is not None:
                        self._send(pipe, self._do_cancel(pipe, oid, trigger_ns))
                    continue
                if self.om.request_amend(oid, a.price, a.size) is not None:
                    self._send(pipe, self._do_amend(pipe, live, a.price, trigger_ns))

    def _send(self, pipe: MarketPipeline, coro: Any) -> None:
        """Start a request now: the connector writes its bytes before this returns (eager start)."""
        pipe.in_flight += 1
        self._spawn(coro, eager=True)

    def _done(self, pipe: MarketPipeline) -> None:
        pipe.in_flight -= 1
        if pipe.in_flight or pipe.applying:
            return             # more answers to come, or inside _apply, which re-decides when done
        if not pipe.ready or not self.quoting:
            # the market stopped being quotable while this request was out (stale book, lost
            # connection): an order that could not be cancelled then can be now
            if not self.stopping:
                self._pull(pipe, "not quotable")
            return
        if pipe.dirty:
            self._requote(pipe, self.clock.monotonic_ns())

    # ================================================================================== requests
    def _issued(self, pipe: MarketPipeline, trigger_ns: int) -> None:
        """The first request of a decision is being written: frame received -> request issued."""
        if pipe.tape_trigger_ns == trigger_ns:
            return
        pipe.tape_trigger_ns = trigger_ns
        now = self.clock.monotonic_ns()
        latency = now - trigger_ns
        self._latency_ns.append(latency)
        if pipe.decided_ns and pipe.trigger_ns == trigger_ns:
            self.send_ns.append(now - pipe.decided_ns)
        self._tape(pipe, "decision", latency_ns=latency)

    async def _do_place(self, pipe: MarketPipeline, o: Order, req: OrderRequest, trigger_ns: int) -> None:
        assert self.rest is not None
        self._issued(pipe, trigger_ns)
        self.orders_sent += 1
        coid = o.client_order_id
        try:
            ack: OrderAck = await self.rest.create_order(req)
        except OrderNotPlaced:
            self.om.resolve_unknown(coid, None)
            self._record_order(coid, "rejected", reason="not placed (create timed out, lookups found nothing)")
        except RateLimited:
            self.gate.on_rate_limited()
            self._event("rate_limited", pipe.ticker, "create")
            self.om.on_create_rejected(coid, "rate limited")
            self._record_order(coid, "rejected", reason="429")
        except ExchangeError as exc:
            self.om.on_create_rejected(coid, exc.code)
            self._record_order(coid, "rejected", reason=exc.code)
            code = exc.code.lower()
            if "order_group" in code:
                # the exchange-side circuit breaker fired: too many contracts matched in 15 s
                self._group_fired = True
                self.gate.trip(f"session order group {self.group_id} triggered at the exchange ({exc.code}); "
                               "it rejects every new order until reset")
                self._after_pnl_change()
            elif code != "post_only_cross":
                pipe.hold(self.clock.monotonic_ns())
                log.warning("%s: create %s refused: %s; new orders here wait %.1f s", pipe.ticker, coid, exc,
                            pipe.hold_s)
        except Exception as exc:  # noqa: BLE001 - RequestTimeout, OSError, a malformed answer...
            # outcome unknown: resolved by client_order_id (housekeeping), never re-sent
            self.om.on_create_timeout(coid)
            log.warning("%s: create %s outcome unknown (%s); resolving by lookup", pipe.ticker, coid, exc)
        else:
            self.gate.on_request_ok()
            pipe.hold_s = 0.0
            self.om.on_ack(ack)
            if ack.remaining_count:
                self.rest.presign_order(ack.order_id)
                self._presigned.add(ack.order_id)
            self._record_order(coid, "resting" if ack.remaining_count else "executed", order_id=ack.order_id)
            if ack.remaining_count and (not self.quoting or self.stopping or not pipe.ready
                                        or not self.gate.is_quotable(pipe.ticker)):
                # quotes were pulled (stale book, lost connection, kill switch, pause) while this create
                # was in flight: take it down now
                if self.om.request_cancel(ack.order_id) is not None:
                    self._send(pipe, self._do_cancel(pipe, ack.order_id))
        finally:
            self._done(pipe)

    def _on_cancel_acks(self, acks: Iterable[Any]) -> int:
        """Apply batched-cancel answers; returns how many were refused (those orders may still rest)."""
        refused = 0
        for ack in acks:
            if ack.error:
                refused += 1
                self.om.on_request_failed(ack.order_id, f"cancel refused: {ack.error}")
                log.warning("cancel of %s refused by the exchange (%s); it is retried", ack.order_id, ack.error)
            else:
                self.om.on_cancel_ack(ack.order_id, ack.reduced_by if ack.reduced_known else None)
        return refused

    async def _do_cancel(self, pipe: MarketPipeline, order_id: str, trigger_ns: int = 0) -> None:
        assert self.rest is not None
        if trigger_ns:
            self._issued(pipe, trigger_ns)
        self.cancels_sent += 1
        try:
            self._on_cancel_acks(await self.rest.cancel_orders([order_id]))
        except Exception as exc:  # noqa: BLE001 - whatever failed, the order is still ours to cancel
            self.om.on_request_failed(order_id, str(exc))
            log.warning("%s: cancel of %s failed (%s); the next sweep retries", pipe.ticker, order_id, exc)
        finally:
            self._done(pipe)

    async def _do_amend(self, pipe: MarketPipeline, o: Order, price: int, trigger_ns: int) -> None:
        assert self.rest is not None and o.order_id is not None
        self._issued(pipe, trigger_ns)
        self.amends_sent += 1
        try:
            ack = await self.rest.amend_order(o.order_id, ticker=o.ticker, side=o.side, price=price,
                                              count=int(o.pending_count or 0),
                                              client_order_id=o.client_order_id)
        except RateLimited:
            self.gate.on_rate_limited()
            self.om.on_request_failed(o.order_id, "rate limited")
        except ExchangeError as exc:
            self.om.on_request_failed(o.order_id, exc.code, gone=exc.status == 404)
            log.info("%s: amend of %s refused: %s", pipe.ticker, o.order_id, exc)
        except Exception as exc:  # noqa: BLE001 - outcome unknown: the stuck-request watchdog reads it back
            self.om.on_request_failed(o.order_id, f"amend outcome unknown: {exc}")
            self._verify_soon(o.order_id)
        else:
            self.gate.on_request_ok()
            self.om.on_amend_ack(ack)
        finally:
            self._done(pipe)

    async def _do_decrease(self, pipe: MarketPipeline, order_id: str, reduce_to: int, trigger_ns: int) -> None:
        assert self.rest is not None
        self._issued(pipe, trigger_ns)
        self.decreases_sent += 1
        try:
            ack = await self.rest.decrease_order(order_id, reduce_to)
        except ExchangeError as exc:
            self.om.on_request_failed(order_id, exc.code, gone=exc.status == 404)
        except Exception as exc:  # noqa: BLE001 - outcome unknown: the stuck-request watchdog reads it back
            self.om.on_request_failed(order_id, f"decrease outcome unknown: {exc}")
            self._verify_soon(order_id)
        else:
            self.om.on_decrease_ack(order_id, ack.remaining_count)
        finally:
            self._done(pipe)

    async def _cancel_orders(self, orders: Iterable[Order], reason: str) -> None:
        """Batched cancel of ``orders`` (those with an exchange id), 20 at a time."""
        assert self.rest is not None
        ids = []
        for o in orders:
            if o.order_id is not None and self.om.request_cancel(o.order_id) is not None:
                ids.append(o.order_id)
            elif o.order_id is not None and o.state.value == "pending_cancel":
                ids.append(o.order_id)
        for i in range(0, len(ids), BATCH_CANCEL_MAX):
            chunk = ids[i:i + BATCH_CANCEL_MAX]
            self.cancels_sent += len(chunk)
            try:
                self._on_cancel_acks(await self.rest.cancel_orders(chunk))
            except Exception as exc:  # noqa: BLE001 - the orders stay live; the next sweep retries
                for oid in chunk:
                    self.om.on_request_failed(oid, str(exc))
                log.error("cancel sweep (%s): batch of %d failed: %s", reason, len(chunk), exc)

    async def _cancel_everything(self, reason: str) -> None:
        live = [o for o in self.om.orders() if o.is_live and o.order_id is not None]
        self._event("cancel_all", detail=reason)
        if not live:
            return
        log.warning("cancelling all %d live orders: %s", len(live), reason)
        self._sweeping = True
        try:
            await self._cancel_orders(live, reason)
        finally:
            self._sweeping = False

    async def _cancel_stray(self, order_id: str) -> None:
        assert self.rest is not None
        self._verifying.add(order_id)
        try:
            acks = await self.rest.cancel_orders([order_id])
            if any(a.error for a in acks):
                log.error("stray order %s: cancel refused (%s); the stop sweep and reconcile will retry",
                          order_id, ", ".join(str(a.error) for a in acks if a.error))
        except Exception as exc:  # noqa: BLE001
            log.error("stray order %s: cancel failed (%s); the stop sweep and reconcile will retry", order_id, exc)
        finally:
            self._verifying.discard(order_id)

    def _verify_soon(self, order_id: str) -> None:
        if order_id not in self._verifying:
            self._spawn(self._verify_order(order_id))

    async def _verify_order(self, order_id: str) -> None:
        """Read an order back after a request on it ended without a usable answer."""
        assert self.rest is not None
        self._verifying.add(order_id)
        try:
            try:
                uo = await self.rest.get_order(order_id)
            except NotFound:
                self.om.on_request_failed(order_id, "gone at the exchange", gone=True)
                return
            o = self.om.by_order_id(order_id)
            if o is not None and o.state in IN_FLIGHT:
                self.om.on_request_failed(order_id, "read back after no answer")
            self.om.on_user_order(uo)
        except Exception as exc:  # noqa: BLE001 - the next watchdog pass tries again
            log.warning("could not read back order %s: %s", order_id, exc)
        finally:
            self._verifying.discard(order_id)

    async def _resolve_unknown(self, o: Order) -> None:
        """A create whose outcome is unknown: look it up by client_order_id, now."""
        assert self.rest is not None
        coid = o.client_order_id
        self._verifying.add(coid)
        try:
            found = await self.rest.find_order_by_client_id(coid, ticker=o.ticker)
            self.om.resolve_unknown(coid, found)
            if found is not None and found.status == "resting":
                log.warning("%s: create %s with an unknown outcome rests at the exchange as %s",
                            o.ticker, coid, found.order_id)
                pipe = self.pipes.get(o.ticker)
                if pipe is not None:
                    pipe.dirty = True
        except Exception as exc:  # noqa: BLE001 - the next watchdog pass tries again
            log.warning("lookup of %s by client_order_id failed: %s", coid, exc)
        finally:
            self._verifying.discard(coid)

    def _watch_requests(self) -> None:
        """Creates with an unknown outcome are looked up at once; requests with no answer for longer
        than the connector can take are read back from the exchange."""
        for o in self.om.unknown():
            if o.client_order_id not in self._verifying:
                self._spawn(self._resolve_unknown(o))
        for o in self.om.in_flight_older_than(self._stuck_ns):
            if o.order_id is not None:
                self._verify_soon(o.order_id)
            else:
                self.om.on_create_timeout(o.client_order_id)   # resolved on the next pass

    def _start_kill_sweep(self) -> None:
        if self._kill_sweep_running:
            return
        self._kill_sweep_running = True

        async def sweep() -> None:
            try:
                await self._cancel_everything(f"kill switch: {self.gate.kill_reason}")
                if not any(o.is_live and o.order_id is not None for o in self.om.orders()):
                    self.gate.on_cancel_sweep_done()   # else still tripped: housekeeping sweeps again
            finally:
                self._kill_sweep_running = False
        self._spawn(sweep())

    def _after_pnl_change(self) -> None:
        was = self.gate.kill_state
        if self.gate.update_pnl() is KillState.TRIPPED or self.gate.kill_state is KillState.TRIPPED:
            if not self._kill_sweep_running:
                self._event("kill_switch", detail=self.gate.kill_reason)
            for p in self.pipes.values():
                p.state = "killed"
                p.dirty = True
            self._start_kill_sweep()
        elif was is not KillState.ARMED and self.gate.kill_state is KillState.ARMED:
            self._event("kill_switch_rearmed")
            self._requote_all()

    def _requote_all(self) -> None:
        now = self.clock.monotonic_ns()
        for p in self.pipes.values():
            if p.ready:
                self._requote(p, now)

    # ================================================================================== operator
    def operator_trip(self, reason: str = "operator") -> None:
        """Trip the kill switch by hand (``kill -USR2 <pid>`` in ``kmm run``): cancel all and pause."""
        self.gate.trip(reason)
        self._after_pnl_change()

    def operator_resume(self) -> None:
        """Re-arm the kill switch by hand (``kill -USR1 <pid>`` in ``kmm run``) and quote again; a
        session order group that fired is reset first."""
        self._event("operator_resume")
        if self._group_fired and self.group_id is not None and self.rest is not None:
            self._spawn(self._reset_group_then_resume())
            return
        self.gate.operator_resume()
        self._requote_all()

    async def _reset_group_then_resume(self) -> None:
        assert self.rest is not None and self.group_id is not None
        try:
            await self.rest.reset_order_group(self.group_id)
        except KmmError as exc:
            log.error("could not reset the session order group %s (%s); staying paused", self.group_id, exc)
            return
        self._group_fired = False
        log.warning("session order group %s reset by the operator", self.group_id)
        self.gate.operator_resume()
        self._requote_all()

    # ================================================================================== reconcile
    async def _resync(self, why: str) -> None:
        """After a reconnect (and periodically): backfill fills, reconcile orders and positions."""
        assert self.rest is not None
        t0 = self.clock.monotonic_ns()
        t0_wall_ms = self.clock.time_ns() // 1_000_000
        epoch = self._conn_epoch
        try:
            fills = await self._session_fills()
            missed = 0
            for f in sorted(fills, key=lambda f: f.ts_ms):
                before = self.fills
                self.on_fill(f)
                missed += self.fills - before
            if missed:
                self._event("backfill", detail=f"{why}: {missed} fills")
                log.warning("reconcile (%s): %d fills backfilled over REST", why, missed)
            resting = [o for o in await self.rest.get_orders(status="resting") if o.ticker in self.pipes]
            rep = self.om.reconcile(resting, (), as_of_ns=t0, tickers=self.tickers)
            self._event("reconciled", detail=f"{why}: {'clean' if rep.clean else rep}")
            if not rep.clean:
                log.critical("reconcile (%s): orders disagreed with the exchange: %s; rebuilding quotes "
                             "from the exchange's state", why, rep)
                if why != "start":
                    await self._cancel_everything("reconcile mismatch: quotes are rebuilt")
            if rep.to_cancel:
                await self._cancel_orders(rep.to_cancel, "unknown at reconcile")
            for o in self.om.unknown():
                found = await self.rest.find_order_by_client_id(o.client_order_id, ticker=o.ticker)
                self.om.resolve_unknown(o.client_order_id, found)
            await self._check_positions(why)
        except Exception as exc:  # noqa: BLE001 - housekeeping retries (after a reconnect: until it works)
            log.error("reconcile (%s) failed: %s; retrying", why, exc)
            return
        self._backfill_from_ms = max(self._backfill_from_ms, t0_wall_ms - 5_000)
        if why == "reconnect":
            if epoch != self._conn_epoch or self.ws is None or not self.ws.connected:
                log.warning("connection lost again during the reconcile; waiting for the next one")
                return
            self._resync_needed = False
            self.quoting = True
            self._event("resumed", detail="after reconnect and reconcile")
            log.info("reconciled after reconnect: quoting resumes as books become ready")
            for p in self.pipes.values():
                if p.ready:
                    self._requote(p, self.clock.monotonic_ns())

    async def _session_fills(self) -> list[Fill]:
        """Our fills in our markets since the last good reconcile (never from before the session)."""
        assert self.rest is not None
        fills = await self.rest.get_fills(min_ts=max(0, self._backfill_from_ms // 1000 - 1))
        # ts 0: the answer carried no usable time; the server's min_ts filter already applied, and a
        # fill counted twice is impossible (trade_id dedupe), so keep it rather than lose it
        return [f for f in fills if f.ticker in self.pipes and (f.ts_ms == 0 or f.ts_ms >= self._session_start_ms)]

    async def _check_positions(self, why: str) -> bool | None:
        """Compare positions with ``GET /portfolio/positions``. None: not checked (requests in flight).

        A fill can be in the exchange's answer before its message reaches us, or the other way round, so
        a mismatch is only acted on when it is still there at the next check with no fill in between
        (or at stop, when nothing is in flight): then it is logged CRITICAL and the exchange's position
        is taken."""
        assert self.rest is not None
        if why != "stop" and any(p.in_flight for p in self.pipes.values()):
            return None
        exch = {p.ticker: p for p in await self.rest.get_positions()}
        ok = True
        for t in self.tickers:
            pos = exch.get(t) or MarketPosition(t, 0, 0, 0, 0)
            check = self.pf.check_against(pos, check_volume=False)
            if check.ok:
                self._position_suspect.pop(t, None)
                continue
            ok = False
            if why != "stop" and self._position_suspect.get(t) != self.fills:
                self._position_suspect[t] = self.fills
                log.warning("portfolio %s differs from the exchange (%s): %s; checking again", t, why, check)
                continue
            self._position_suspect.pop(t, None)
            self.position_mismatches += 1
            log.critical("portfolio %s (%s): %s; taking the exchange's position", t, why, check)
            self.pf.load_position(pos)
        if ok:
            log.info("portfolio agrees with exchange positions (%s)", why)
        return ok

    # ================================================================================== housekeeping
    async def _housekeeping(self, stop: asyncio.Event) -> None:
        next_reconcile = next_status = next_pnl = next_view = next_mark = next_snap = next_prune = 0.0
        snap_every = self.cfg.records.book_snapshot_interval_s
        period = 0.25
        while not stop.is_set():
            await asyncio.sleep(period)
            now_s = self.clock.monotonic_ns() / NS_PER_S
            try:
                self._check_staleness()
                self._retry_held(now_s)
                self._forget_closed_orders()
                self._watch_requests()
                self._after_pnl_change()          # marks move unrealized P&L: the loss limit sees it
                if self.gate.kill_state is KillState.TRIPPED and not self._kill_sweep_running:
                    self._start_kill_sweep()      # a cancel of the last sweep was refused: sweep again
                if self._resync_needed and not self.stopping:
                    self._keep_recovering()
                if now_s >= next_prune:
                    next_prune = now_s + 60.0
                    self.om.prune(300 * NS_PER_S)
                if now_s >= next_status:
                    next_status = now_s + self.opt.status_poll_s
                    await self._poll_status()
                if now_s >= next_reconcile and self.quoting:
                    if next_reconcile:
                        await self._resync("periodic")
                    next_reconcile = now_s + self.opt.reconcile_interval_s
                if now_s >= next_mark:
                    next_mark = now_s + self.opt.tape_mark_s
                    for p in self.pipes.values():
                        p.refresh_tau(self.clock.time_ns())
                        self._tape(p, "mark")
                if now_s >= next_pnl:
                    next_pnl = now_s + self.opt.pnl_record_s
                    self._record_pnl()
                if snap_every > 0 and now_s >= next_snap:
                    next_snap = now_s + snap_every
                    self._record_books("interval")
                if now_s >= next_view:
                    next_view = now_s + (1.0 if self.opt.view == "live" else self.opt.view_every_s)
                    self._draw()
            except Exception as exc:  # noqa: BLE001 - housekeeping must keep running
                log.warning("housekeeping: %s", exc, exc_info=not isinstance(exc, KmmError))

    def _check_staleness(self) -> None:
        """Books silent for ``stale_after_s``.

        Kalshi's seq is per subscription and shared by every market in it, so a market that is merely
        quiet while the feed moves has missed nothing: its book is re-checked with a snapshot and quoting
        goes on. When the whole feed is silent (no frame of any kind for ``feed_silent_s``, although the
        exchange pings every 10 s) or ``risk.pull_on_silence`` is set, the silent markets' quotes are
        pulled until fresh snapshots arrive.
        """
        if self.ws is None or not self.quoting:
            return
        now = self.clock.monotonic_ns()
        limit = int(self.cfg.risk.stale_after_s * NS_PER_S)
        silent = [p for p in self.pipes.values() if p.ready and p.last_book_ns and now - p.last_book_ns > limit]
        if not silent:
            return
        feed_silent = now - self.ws.stats.last_recv_ns > max(limit, int(self.opt.feed_silent_s * NS_PER_S))
        tickers = [p.ticker for p in silent]
        if feed_silent or self.cfg.risk.pull_on_silence:
            what = "the whole feed" if feed_silent else "the book"
            self.ws.request_snapshot(tickers, reason=f"{what} silent for {self.cfg.risk.stale_after_s:g} s")
        else:
            for p in silent:
                p.last_book_ns = now      # ask again after another stale_after_s if nothing comes
            self._event("quiet_check", detail=",".join(tickers))
            self.ws.request_snapshot(tickers, reason="quiet market", mark_stale=False)

    def _keep_recovering(self) -> None:
        """While disconnected: keep cancelling until nothing of ours rests; once reconnected, reconcile
        (again, if a previous attempt failed) before quoting resumes."""
        if not self._sweeping and any(o.is_live and o.order_id is not None for o in self.om.orders()):
            self._spawn(self._cancel_everything("websocket lost"))
        if (self.ws is not None and self.ws.connected
                and (self._resync_task is None or self._resync_task.done())):
            self._resync_task = self._spawn(self._resync("reconnect"))

    def _forget_closed_orders(self) -> None:
        if self.rest is None or not self._presigned:
            return
        for oid in [oid for oid in self._presigned if not ((o := self.om.by_order_id(oid)) and o.is_live)]:
            self._presigned.discard(oid)
            self.rest.forget_order(oid)

    def _retry_held(self, now_s: float) -> None:
        for p in self.pipes.values():
            if p.hold_until_ns and p.dirty and p.ready and now_s * NS_PER_S >= p.hold_until_ns:
                p.hold_until_ns = 0
                self._requote(p, self.clock.monotonic_ns())

    async def _poll_status(self) -> None:
        assert self.rest is not None
        try:
            st = await self.rest.get_exchange_status()
        except KmmError as exc:
            log.info("exchange status poll failed: %s", exc)
            return
        paused = not st.trading_active
        if paused != self.gate.exchange_paused:
            log.warning("exchange trading %s", "paused: quotes pulled" if paused else "resumed")
            self._event("exchange_paused" if paused else "exchange_resumed")
            self.gate.set_exchange_paused(paused)
            if paused:
                for p in self.pipes.values():
                    self._pull(p, "exchange paused")
            else:
                for p in self.pipes.values():
                    if p.ready:
                        self._requote(p, self.clock.monotonic_ns())

    # ================================================================================== records, view
    def _record_order(self, coid: str, status: str, *, order_id: str | None = None, reason: str | None = None) -> None:
        if self.recorder is not None:
            self.recorder.store.record_order(status=status, client_order_id=coid, order_id=order_id, reason=reason)

    def _tape(self, pipe: MarketPipeline | None, event: str, fill: Fill | None = None,
              latency_ns: int | None = None) -> None:
        if self.recorder is None or pipe is None:
            return
        from kmm.record.tape import TapeRow
        t = pipe.ticker
        inp, tgt = pipe.inputs, pipe.target
        live = self.om.live_orders(t)
        bid = next((o for o in live if o.side == "bid"), None)
        ask = next((o for o in live if o.side == "ask"), None)
        latency = latency_ns if event == "decision" else None
        realized = self.pf.realized_pnl(t) - self.pf.fees_paid(t)
        row = TapeRow(
            ts_ns=self.clock.time_ns(), ticker=t, event=event,
            mid=None if inp.mid is None else int(round(inp.mid)),
            my_bid=bid.price if bid else None, my_ask=ask.price if ask else None,
            bid_size=bid.remaining if bid else 0, ask_size=ask.remaining if ask else 0,
            inventory=self.pf.position(t), unrealized_pnl=self.pf.unrealized_pnl(t),
            realized_pnl=realized, fees=self.pf.fees_paid(t), latency_ns=latency,
            reservation=tgt.reservation, spread=(2 * tgt.half_spread) if tgt.half_spread else None,
            sigma=inp.sigma, ofi=inp.ofi_skew or None,
            fill_side=fill.side if fill else None, fill_price=fill.price if fill else None,
            fill_size=fill.count if fill else None, fill_fee=fill.fee if fill else None,
            trade_id=fill.trade_id if fill else None)
        self.recorder.tape.write(row)

    def _record_pnl(self) -> None:
        if self.recorder is None:
            return
        for t in self.tickers:
            self.recorder.store.record_pnl(ticker=t, position=self.pf.position(t), cash=self.pf.cash,
                                           realized=self.pf.realized_pnl(t), unrealized=self.pf.unrealized_pnl(t),
                                           fees=self.pf.fees_paid(t))

    def _record_books(self, reason: str, depth: int = 10) -> None:
        if self.recorder is None:
            return
        for t, p in self.pipes.items():
            if p.ready and p.book is not None:
                self.recorder.store.record_book_snapshot(ticker=t, bids=p.book.bids(depth), asks=p.book.asks(depth),
                                                         reason=reason)

    def latency_percentiles(self) -> tuple[float | None, float | None, float | None]:
        if not self._latency_ns:
            return None, None, None
        s = sorted(self._latency_ns)
        n = len(s)

        def q(x: float) -> float:
            return s[min(n - 1, int(x * n))] / 1000.0
        return q(0.5), q(0.99), q(0.999)

    def snapshot(self) -> Snapshot:
        p50, p99, _ = self.latency_percentiles()
        rows = []
        for t, p in self.pipes.items():
            live = self.om.live_orders(t)
            bid = next((o for o in live if o.side == "bid"), None)
            ask = next((o for o in live if o.side == "ask"), None)
            rows.append(MarketRow(t, p.inputs.best_bid or None, p.inputs.best_ask or None,
                                  bid.price if bid else None, ask.price if ask else None,
                                  bid.remaining if bid else 0, ask.remaining if ask else 0,
                                  self.pf.position(t), self.pf.realized_pnl(t) - self.pf.fees_paid(t),
                                  self.pf.unrealized_pnl(t), p.fills, p.state))
        pressure = self.rest.limiter.pressure() if self.rest is not None else 0.0
        kill = self.gate.kill_state
        return Snapshot(elapsed_s=(self.clock.monotonic_ns() - self._started_ns) / NS_PER_S, venue=self.venue,
                        markets=rows, cash=self.pf.cash, fees=self.pf.fees_paid(), fills=self.fills,
                        orders_sent=self.orders_sent, write_pressure=pressure,
                        latency_p50_us=p50, latency_p99_us=p99,
                        note="" if kill is KillState.ARMED else f"kill switch {kill.value}")

    def _draw(self) -> None:
        if self.opt.view == "off":
            return
        snap = self.snapshot()
        if self.opt.view == "live" and self.out is not None:
            self.out.write(CLEAR + render_table(snap) + "\n")
            self.out.flush()
        else:
            line = render_line(snap)
            log.info("%s", line)
            if self.out is not None:
                self.out.write(line + "\n")
                self.out.flush()

    # ================================================================================== stop
    async def _drain_requests(self, timeout_s: float) -> None:
        pending = [t for t in self._tasks if not t.done() and t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def _shutdown(self) -> RunSummary:
        self.stopping = True
        self.quoting = False
        verified = False
        resting_left = -1
        agrees = False
        if self._resync_task is not None and not self._resync_task.done():
            self._resync_task.cancel()
        rest = self.rest
        if self._not_started is not None:
            log.info("the start failed before anything was sent (%s): no stop sweep is needed", self._not_started)
        try:
            if rest is not None and rest.signer is not None and self._not_started is None:
                # a create can take its timeout plus the connector's lookups before it is settled
                await self._drain_requests(max(self.opt.request_drain_s, self._stuck_ns / NS_PER_S))
                if self.cfg.run.leave_orders_on_exit:
                    log.warning("leave_orders_on_exit: orders stay resting at the exchange as asked")
                else:
                    verified, resting_left = await self._stop_sweep(rest)
                agrees = await self._final_check(rest)
        except KmmError as exc:
            log.critical("stop sequence failed: %s; check the exchange for resting orders", exc)
            self.notes.append(f"stop sequence failed: {exc}")
        finally:
            for t in list(self._tasks):
                if not t.done():
                    t.cancel()
            if self.ws is not None:
                await self.ws.close()
            if rest is not None:
                await rest.close()
        self._record_pnl()
        p50, p99, p999 = self.latency_percentiles()
        summary = RunSummary(
            venue=self.venue, duration_s=(self.clock.monotonic_ns() - self._started_ns) / NS_PER_S,
            fills=self.fills, fills_by_side=dict(self.fills_by_side), orders_sent=self.orders_sent,
            cancels_sent=self.cancels_sent, amends_sent=self.amends_sent, skipped_reprices=self.skipped_reprices,
            realized=self.pf.realized_pnl() - self.pf.fees_paid(), unrealized=self.pf.unrealized_pnl(),
            fees=self.pf.fees_paid(), positions={t: self.pf.position(t) for t in self.tickers},
            resting_after_stop=resting_left, verified_flat_orders=verified, portfolio_agrees=agrees,
            latency_p50_us=p50, latency_p99_us=p99, latency_p999_us=p999,
            risk_denials=dict(self.gate.denials), notes=self.notes, not_started=self._not_started)
        log.info("%s", summary.render())
        return summary

    async def _stop_sweep(self, rest: KalshiRest) -> tuple[bool, int]:
        """Cancel everything in our markets and verify over REST that nothing rests.

        Verified means: the exchange lists no resting order of ours in these markets, and no create of
        ours is still in flight or of unknown outcome (it could land after the check). The session's
        order group is deleted whatever happens (deleting it cancels its orders at the exchange)."""
        left: list[UserOrder] = []
        unsure: list[Order] = []
        try:
            for attempt in range(1, self.opt.stop_verify_attempts + 1):
                try:
                    for o in self.om.unknown():
                        await self._resolve_unknown(o)
                    await self._cancel_everything("stop")
                    left = [o for o in await rest.get_orders(status="resting") if o.ticker in self.pipes]
                except Exception as exc:  # noqa: BLE001 - try again; the count of attempts bounds it
                    log.error("stop sweep attempt %d failed: %s", attempt, exc)
                    left = left or []
                    await asyncio.sleep(0.2 * attempt)
                    continue
                unsure = [o for o in self.om.orders() if o.is_live and o.order_id is None]
                if not left and not unsure:
                    log.info("stop: verified over REST that no order rests in %s", ", ".join(self.tickers))
                    return True, 0
                if left:
                    log.warning("stop: %d orders still rest (attempt %d): cancelling them by id", len(left), attempt)
                    self.om.reconcile(left, (), tickers=self.tickers)
                    ids = [o.order_id for o in left]
                    for i in range(0, len(ids), BATCH_CANCEL_MAX):
                        self._on_cancel_acks(await rest.cancel_orders(ids[i:i + BATCH_CANCEL_MAX]))
                if unsure:
                    log.warning("stop: %d creates still without an answer; waiting for them", len(unsure))
                await asyncio.sleep(0.2 * attempt)
            left = [o for o in await rest.get_orders(status="resting") if o.ticker in self.pipes]
            unsure = [o for o in self.om.orders() if o.is_live and o.order_id is None]
        finally:
            if self.group_id is not None:
                await self._delete_group(rest)
        if left or unsure:
            log.critical("stop: %d orders still rest at the exchange and %d creates are unresolved after %d "
                         "attempts: %s", len(left), len(unsure), self.opt.stop_verify_attempts,
                         ", ".join([o.order_id for o in left] + [o.client_order_id for o in unsure]))
        if not left and not unsure:
            return True, 0
        return False, len(left) + len(unsure)

    async def _delete_group(self, rest: KalshiRest, attempts: int = 4) -> bool:
        """Delete the session's order group, retrying a 429 or a failed request; a group that cannot be
        deleted is a note in the summary (its orders were cancelled by the sweep, but it stays listed)."""
        for attempt in range(1, attempts + 1):
            try:
                await rest.delete_order_group(self.group_id)  # type: ignore[arg-type]
                return True
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                log.warning("could not delete the session order group %s (attempt %d): %s", self.group_id,
                            attempt, exc)
                if attempt == attempts:
                    self.notes.append(f"the session order group {self.group_id} could not be deleted ({exc}); "
                                      "delete it on Kalshi (DELETE /portfolio/order_groups/ID)")
                    return False
                await asyncio.sleep(0.5 * attempt)
        return False

    async def _final_check(self, rest: KalshiRest) -> bool:
        """Backfill the last fills, then compare positions and cash with the exchange."""
        await asyncio.sleep(0.2)   # let the last fill messages arrive over the socket
        for f in sorted(await self._session_fills(), key=lambda f: f.ts_ms):
            self.on_fill(f)
        ok = bool(await self._check_positions("stop"))
        bal = await rest.get_balance()
        cash = self.pf.check_balance(bal.balance)
        if cash.ok:
            log.info("cash agrees with the exchange balance: %s", cash)
        else:
            log.critical("cash disagrees with the exchange balance: %s", cash)
        return ok and cash.ok and self.position_mismatches == 0

    # ================================================================================== util
    def _spawn(self, coro: Any, *, eager: bool = False) -> asyncio.Future[Any]:
        assert self._loop is not None
        task = start_eager(self._loop, coro) if eager else self._loop.create_task(coro)
        if task.done():
            self._task_done(task)
            return task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task failed: %r", task.exception(), exc_info=task.exception())

