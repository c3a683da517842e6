"""The market maker: book -> pipeline -> actions, on a :class:`kmm.engine.session.Session`.

The hot path is :meth:`Maker.on_book`: the connector's router has already applied the frame to the
compiled book; when the market may decide now, one call into its pipeline (``MarketPipeline.frame``)
computes the signals, the strategy's target and the diff against our live orders; the risk gate checks
each action, and each request coroutine is started at once (eagerly), so its bytes are written before
the frame callback returns. The decision's latency is stamped after its first request's bytes were
written, and its tape row (a raw tuple for the writer thread) is enqueued after that.

Everything else lives elsewhere: the venue wiring, requests, start-up reconcile and the stop in
:mod:`kmm.engine.session`; gaps, stale books, disconnects, resyncs and position checks in
:mod:`kmm.engine.recovery`; the timers in :mod:`kmm.engine.housekeeping`; book freshness in
:mod:`kmm.engine.freshness`. ``Engine`` is the name the rest of kmm uses for the maker.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from kmm._core import diff as _diff
from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.ofi import OFI
from kmm._core.entry import IGNORE_TICKER, IGNORE_TRADE, FrameEntry
from kmm._core.wire import BookRouter
from kmm import protocol
from kmm.config import KmmConfig
from kmm.engine import session as S
from kmm.engine.clock import NS_PER_S, Clock, SystemClock
from kmm.engine.eventwire import ROOMS_OPEN_STEP, EventWiring, merged_denials, pull_event_orders
from kmm.engine.freshness import Freshness
from kmm.engine.housekeeping import Housekeeping
from kmm.engine.incentwire import IncentiveWiring
from kmm.engine.market import SIDE_NAME, MarketInfo, MarketPipeline, read_fee_rates, read_markets_raw
from kmm.engine.orders import LiveOrder, Order, OrderState
from kmm.engine.quoting import QuotePlanner, small_reprices_only
from kmm.engine.recovery import Recovery
from kmm.engine.risk import KillState, RiskGate
from kmm.engine.session import Session, SessionOptions
from kmm.engine.makerstats import MakerStats
from kmm.engine.sessionpnl import PnlFigures, SessionPnl
from kmm.engine.view import CLEAR, EventView, MarketRow, Snapshot, event_line, render_line, render_table, usd
from kmm.errors import KmmError
from kmm.record.tape import engine_fields
from kmm.kalshi import ConnectorConfig, FeedHandler
from kmm.kalshi.decode import WireError
from kmm.kalshi.fasthttp import ON_WRITE
from kmm.kalshi.limiter import FAIR_KEY
from kmm.kalshi.rest import KalshiRest
from kmm.kalshi.types import Fill, Lifecycle, MarketPosition, OrderRequest, Trade, UserOrder
from kmm.strategy.alpha import AlphaSource, ExternalSkew
from kmm.strategy.base import Strategy
from kmm.strategy.inside import InsideStrategy
from kmm.strategy.stoikov import StoikovStrategy

log = logging.getLogger("kmm.engine")

PLACE, AMEND, DECREASE, CANCEL = _diff.PLACE, _diff.AMEND, _diff.DECREASE, _diff.CANCEL
_RESTING, _PARTIAL = OrderState.RESTING, OrderState.PARTIALLY_FILLED


@dataclass(slots=True)
class EngineOptions:
    """Live-loop knobs that are not part of kmm.toml's strategy/risk sections."""

    reconcile_interval_s: float | None = None   # REST verification period; None: [run] verify_interval_s
    status_poll_s: float = 15.0
    pnl_record_s: float = 5.0
    tape_mark_s: float = 1.0
    view: str = "plain"                 # "live" (redrawn table) | "plain" (a line every view_every_s) | "off"
    view_every_s: float = 5.0
    reprice_pressure: float = 0.5       # write bucket more used than this: small reprices are skipped
    reprice_min_ticks: int = 3          # ... unless the price moves by more than this many ticks
    gc_freeze: bool = True              # gc.freeze() after start and a higher gen-0 threshold
    gc_threshold: tuple[int, int, int] = (50_000, 20, 100)
    feed_silent_s: float = 12.0         # kept for compatibility: freshness is judged from book data only
    snapshot_answer_s: float | None = None  # an unanswered snapshot request escalates after this long
                                        # (None: half of risk.stale_after_s, at most 1 s)
    order_group_limit: int = 0          # session order group contracts limit, 1e-2 contracts; 0: none
    group_state_path: Path | None = None
    stop_deadline_s: float = 8.0        # the stop sweep's bound (cancels, escalations, verification)
    stop_escalate_s: float = 1.5        # cancel-all and the group trigger after this long
    stop_verify_attempts: int = 5       # kept for compatibility (the stop is bounded in time)
    request_drain_s: float = 5.0        # after the sweep: requests still open are waited for this long
    tick_s: float = 0.25                # housekeeping period
    batch_creates: bool = True          # a requote of every market placing in more than 3 markets batches
    event_pull: bool = True             # an event going reduce-only / over its limit pulls all its quotes
    frame_entry: bool = True            # deltas of compiled pipelines decided in kmm._core.entry (no Python frame)
    skip_unread: bool = True  # ... which captures ticker/trade frames nobody reads without decoding them
    first_in_c: bool = True   # ... which writes a decision's first create or amend (FrameEntry.first_request)


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
    realized: int                       # 1e-4 $, this session's, gross of fees
    unrealized: int                     # this session's
    fees: int                           # this session's fills' fees
    positions: dict[str, int]
    resting_after_stop: int
    verified_flat_orders: bool
    portfolio_agrees: bool
    latency_p50_us: float | None
    latency_p99_us: float | None
    latency_p999_us: float | None
    risk_denials: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stop_s: float = 0.0                 # the stop sweep: stop asked -> verified (or given up)
    not_started: str | None = None      # the start failed before anything was sent: why
    lifetime: str = ""                  # the account's lifetime P&L, labelled (shown apart)
    maker: dict[str, Any] = field(default_factory=dict)   # MakerMetrics.as_dict() of this session
    events: list[dict[str, Any]] = field(default_factory=list)   # EventView.as_dict() per event, worst first
    incentives: dict[str, Any] = field(default_factory=dict)     # IncentiveWiring.summary()

    @property
    def net(self) -> int:
        """This session's net P&L: realized (gross of fees) + unrealized - fees, 1e-4 $."""
        return self.realized + self.unrealized - self.fees
    signatures: dict[str, int] | None = None  # the signature pool's counters (None: no pool); see signature_stats
    send_p50_us: float | None = None    # actions decided -> first request written, budget waits excluded
    send_p99_us: float | None = None
    budget_waits: int = 0               # decisions whose first request waited for the write budget
    decisions: int = 0                  # decisions stamped
    budget_wait_p50_us: float | None = None
    budget_wait_p99_us: float | None = None

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
            f"  session P&L net {usd(self.net, 4)} (this session only: realized {usd(self.realized, 4)} "
            f"gross of fees, unrealized {usd(self.unrealized, 4)}, fees {usd(self.fees, 4)})",
            f"  positions: {pos}",
            f"  frame -> request written: {lat} (write-budget waits excluded)"
            + ("" if self.send_p50_us is None else
               f"; decided -> written p50 {self.send_p50_us:.0f} us, p99 {self.send_p99_us:.0f} us"),
            f"  waited for the write budget or a connection: {self.budget_waits} of {self.decisions} decisions"
            + ("" if not self.budget_waits else
               f", p50 {self.budget_wait_p50_us:,.0f} us, p99 {self.budget_wait_p99_us:,.0f} us"),
            f"  orders resting after stop: {self.resting_after_stop} "
            f"({'verified over REST' if self.verified_flat_orders else 'NOT verified'}) in every market, "
            f"stop sweep {self.stop_s:.1f} s",
            f"  portfolio vs exchange: {'agrees to the cent' if self.portfolio_agrees else 'DISAGREES (see ops.log)'}",
        ]
        if self.maker:
            m = self.maker

            def pct(x: Any) -> str:
                return "-" if x is None else f"{x:.1%}"
            lines.append(f"  maker: {m['resting_orders_placed']} resting orders placed, "
                         f"{m['contracts_offered']:g} contracts offered, {m['contract_seconds_near_best']:,.0f} "
                         f"contract-s at the best, maker fill rate {pct(m['maker_fill_rate'])}, "
                         f"maker {m['maker_contracts']:g} / taker {m['taker_contracts']:g} contracts")
            imp = m["spread_improvement_avg"]
            mt = m["maker_taker_ratio"]
            lines.append(f"  maker: liquidity {m['contract_seconds_near_best']:,.0f} contract-s / "
                         f"${m['dollar_seconds_near_best']:,.2f}-s at the best ({m['contract_seconds_resting']:,.0f}"
                         f" contract-s resting), spread improvement "
                         + ("-" if imp is None else f"{imp / 100:.2f}c")
                         + f" avg, maker/taker {'-' if mt is None else format(mt, '.2f')}"
                         f", 30-day volume {m['volume_30d_contracts']:,.2f} contracts "
                         f"(${m['volume_30d_dollars']:,.2f}; {m.get('volume_30d_source', '')})")
        if self.events:
            # events of one quoted market that ended ok say nothing the market lines do not: counted only
            shown = [e for e in self.events if e["quoted"] > 1 or e["status"] != "ok"]
            bad = [e for e in self.events if e["status"] != "ok"]
            lines.append(f"  events: {len(self.events)}" + (f", not ok: {len(bad)}" if bad else ", all ok") +
                         (" (worst first; worst case now / with resting orders, limit)" if shown else
                          " (one quoted market each)"))
            for ev in shown[:10]:
                lines.append("    " + event_line(EventView(**ev)))
            if len(shown) > 10:
                lines.append(f"    ... {len(shown) - 10} more events in summary.json (details.events)")
        if self.incentives:
            for t, v in sorted(self.incentives.items())[:10]:
                frac = v["qualified_fraction"]
                lines.append(f"  incentive program {v['program_id']} on {t}: our quotes qualified in "
                             f"{v['qualified']}/{v['snapshots']} snapshots"
                             + ("" if frac is None else f" ({frac:.0%})")
                             + ("" if v["mean_share"] is None else f", mean share {v['mean_share']:.1%}")
                             + (f"; last: {', '.join(v['last']['reasons'])}" if v["last"] and v["last"]["reasons"]
                                else ""))
        if self.lifetime:
            lines.append(f"  account (not this session): {self.lifetime}")
        if self.signatures is not None:
            sg = self.signatures
            lines.append(f"  signatures: {sg['hits']} pre-made, {sg['waited']} awaited from the signer process; "
                         f"signed inline on the loop: {sg['write_fallbacks']} writes (fallbacks: {sg['misses']} "
                         f"pool empty, {sg['unpooled'] - sg['unpooled_reads']} unpooled paths), "
                         f"{sg['unpooled_reads']} reads (by design)")
        if self.risk_denials:
            lines.append("  risk denials: " + ", ".join(f"{k} {v}" for k, v in sorted(self.risk_denials.items())))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


class _IssuedStamp:
    """The write hook of a decision's first request (see ``Engine._send``). One shot: a later request
    started from that request's task (a cancel after its ack) inherits the context, not the stamp."""

    __slots__ = ("engine", "pipe", "trigger_ns")

    def __init__(self, engine: Engine, pipe: MarketPipeline | None, trigger_ns: int) -> None:
        self.engine, self.pipe, self.trigger_ns = engine, pipe, trigger_ns

    def __call__(self, written_ns: int, waited_ns: int = 0) -> None:
        pipe, self.pipe = self.pipe, None
        if pipe is None:
            return
        try:
            self.engine._issued(pipe, self.trigger_ns, written_ns, waited_ns)
        except Exception:   # records must never fail the request whose bytes were just written
            log.exception("%s: recording the decision after its write failed", pipe.ticker)


#: decisions the console's and the status line's latency percentiles are taken over (the newest)
VIEW_LATENCY_SAMPLES = 2_000


def _percentiles_us(samples: Iterable[int]) -> tuple[float | None, float | None, float | None]:
    s = sorted(samples)
    n = len(s)
    if not n:
        return None, None, None
    return tuple(s[min(n - 1, int(x * n))] / 1000.0 for x in (0.5, 0.99, 0.999))  # type: ignore[return-value]


def _iso_to_ns(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * NS_PER_S)
    except ValueError:
        log.warning("close_time %r is not an ISO timestamp; treating the close as unknown", text)
        return None


class Engine(FeedHandler):
    """Market making on one session for several markets. ``await engine.run(stop_event)``."""

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
        if self.opt.reconcile_interval_s is None:
            self.opt.reconcile_interval_s = cfg.run.verify_interval_s
        self.high_latency = ""                # the warning while frame -> request p99 is over the threshold
        self.out = out
        self._strategy_factory = strategy_factory
        self.tickers = tuple(cfg.tickers())
        if not self.tickers:
            raise KmmError("no markets to quote: set [run] markets in kmm.toml or pass --markets T1,T2")
        group_state = self.opt.group_state_path or Path(cfg.run.out_dir) / "order_groups.json"
        self.session = Session(conn, self.clock, cfg.risk_limits(),
                               unknown_order_policy=cfg.risk.unknown_order_policy, pnl_mark=cfg.risk.pnl_mark,
                               cash_rounding=cfg.risk.cash_rounding, recorder=recorder,
                               strategy_name=cfg.run.strategy,
                               options=SessionOptions(order_group_limit=self.opt.order_group_limit,
                                                      group_state_path=group_state,
                                                      stop_deadline_s=self.opt.stop_deadline_s,
                                                      stop_escalate_s=self.opt.stop_escalate_s,
                                                      backoff_base_s=cfg.risk.backoff_base_s,
                                                      backoff_max_s=cfg.risk.backoff_max_s))
        self.session.on_pause = self._on_pause
        # each market's compiled pipeline holds a copy of its live orders: marked stale on every change
        self.session.om.watchers.append(self._orders_touched)
        self.event_risk = EventWiring(cfg, self.session.pf, self.session.om)   # events learnt at start
        # decision -> requests: gate, reduce-only sizing, event limits (shared with kmm backtest)
        self.planner = QuotePlanner(self.session.gate, self.session.om, self.session.pf, self.event_risk)
        self.event_risk.reduce_only_of = self.session.gate.reduce_only_reason   # rooms' least size
        self._quote_done = self._quote_answered      # bound once: the completion every quote create takes
        self._amend_done = self._amend_answered      # and every amend
        self.spnl: SessionPnl | None = None   # this session's P&L, from the account as loaded at start
        self.mstats = MakerStats(self.clock)  # maker metrics of this session (near the best: at the best)
        self.incentives = IncentiveWiring(self.tickers)   # maker programs (GET /incentive_programs)
        self.freshness = Freshness(self.clock, stale_after_s=cfg.risk.stale_after_s,
                                   answer_s=(self.opt.snapshot_answer_s if self.opt.snapshot_answer_s is not None
                                             else min(1.0, cfg.risk.stale_after_s / 2)))
        self.gate.freshness = self.freshness
        self.router = BookRouter()
        self.pipes: dict[str, MarketPipeline] = {}
        self.quoting = False
        self.stopping = False
        self.recovery = Recovery(self)
        self.housekeeping = Housekeeping(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_ns = 0
        # the decision's latencies exclude the time its first request stood waiting for the write
        # budget (the limiter's queue, a 429 pause) or a free connection: that is the budget's, kept
        # apart in budget_wait_ns, so a throttled account does not read as a slow engine
        self._latency_ns: deque[int] = deque(maxlen=200_000)      # frame received -> first request written
        self._latency_at: deque[tuple[int, int]] = deque(maxlen=200_000)   # (written ns, that latency)
        # book frame received -> actions decided: decisions a book frame made at once (its receive
        # stamp is the trigger). Decisions a fill or an order update made are kept apart (their
        # trigger is that message, and the fill's bookkeeping comes first); decisions made later
        # (after a request's answer, on the housekeeping tick) have no frame to time and are not stamped.
        self.decide_ns: deque[int] = deque(maxlen=200_000)
        self.update_decide_ns: deque[int] = deque(maxlen=200_000)  # fill / order update received -> decided
        self.send_ns: deque[int] = deque(maxlen=200_000)          # actions decided -> first request written
        self.budget_wait_ns: deque[int] = deque(maxlen=200_000)   # decisions that waited: how long
        self.stamped = 0                                          # decisions stamped (waited or not)
        self.skipped_reprices = 0
        self.blocked: dict[str, str] = {}     # ticker -> why kmm wants to quote there but cannot
        self._not_started: str | None = None  # the start failed before anything was sent: why
        self._kill_sweep_running = False

    def _orders_touched(self, ticker: str | None) -> None:
        """The order manager changed ``ticker``'s orders (None: any market's): the pipeline re-reads
        them on its next frame (:meth:`_frame`), or before it: once the callback that changed them is
        done (:meth:`_sync_owned`, soon on the loop), so that the next frame finds them current and is
        decided in the compiled frame entry, which leaves a market whose orders changed to Python."""
        if ticker is None:
            for p in self.pipes.values():
                p.core.own_dirty = True
        else:
            pipe = self.pipes.get(ticker)
            if pipe is None:
                return
            pipe.core.own_dirty = True
        if not self._sync_due and self.entry is not None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                self._sync_due = True
                loop.call_soon(self._sync_owned)

    _sync_due = False

    def _sync_owned(self) -> None:
        """Every compiled pipeline whose orders changed re-reads them now (the order manager's change
        is complete: a callback never leaves one half made), off any frame's path."""
        self._sync_due = False
        now = self.clock.monotonic_ns()
        for t, p in self.pipes.items():
            core = p.core
            if core.own_dirty and p.compiled:
                core.own_sync(self.om.live_orders(t, now_ns=now), now)
        # the event limits' kept sums too, so the next decision's first request applies no change
        refresh = getattr(getattr(self.event_risk, "gate", None), "refresh", None)
        if refresh is not None:
            refresh()

    # ---- the session's parts, for callers and tests
    @property
    def om(self) -> Any:
        return self.session.om

    @property
    def pf(self) -> Any:
        return self.session.pf

    @property
    def gate(self) -> Any:
        return self.session.gate

    @property
    def rest(self) -> Any:
        return self.session.rest

    @property
    def ws(self) -> Any:
        return self.session.ws

    @property
    def group_id(self) -> str | None:
        return self.session.group_id

    @property
    def events(self) -> deque[tuple[int, str, str, str]]:
        return self.session.events

    def events_of(self, kind: str, ticker: str | None = None) -> list[tuple[int, str, str, str]]:
        return self.session.events_of(kind, ticker)

    def _event(self, kind: str, ticker: str = "*", detail: str = "") -> None:
        self.session.event(kind, ticker, detail)

    orders_sent = property(lambda self: self.session.orders_sent)
    cancels_sent = property(lambda self: self.session.cancels_sent)
    amends_sent = property(lambda self: self.session.amends_sent)
    decreases_sent = property(lambda self: self.session.decreases_sent)
    fills = property(lambda self: self.session.fills)
    fills_by_side = property(lambda self: self.session.fills_by_side)
    notes = property(lambda self: self.session.notes)

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
                s = self.session
                if not (s.orders_sent or s.cancels_sent or s.group_id):
                    self._not_started = str(exc) or type(exc).__name__
                raise
            self.housekeeping.start()
            if self.cfg.run.busy_poll:
                self._spin_on = True
                self._loop.call_soon(self._spin)
            if duration and duration > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=duration)
                except asyncio.TimeoutError:
                    log.info("duration of %.0f s reached: stopping", duration)
            else:
                await stop.wait()
        finally:
            self._spin_on = False
            summary = await self._shutdown()
        return summary

    _spin_on = False
    spins = 0                           # turns of the loop run.busy_poll kept from sleeping

    def _spin(self) -> None:
        """``run.busy_poll``: a callback that queues itself keeps the loop from sleeping in its poll
        (each turn polls the sockets with a zero timeout), so a frame is read when it arrives instead
        of after the kernel wakes an idle thread."""
        if self._spin_on and self._loop is not None:
            self.spins += 1
            self._loop.call_soon(self._spin)

    async def _start(self) -> None:
        s = self.session
        rest = await s.open()
        markets = {}
        raws = await read_markets_raw(rest, self.tickers)   # 100 a read: 300 markets in 3 reads
        series: dict[str, Any] = {}                        # one fee read per series
        for t in self.tickers:
            raw = raws[t]
            info = await self._market_info(t, raw, series)
            markets[t] = raw.get("price_ranges") or info.grid.ranges
            self._add_pipeline(info)
        await s.check_shard_balances({t: self.cfg.strategy_for(t).quote_size for t in self.tickers})
        await s.load_account(self.tickers)
        self.spnl = SessionPnl(self.pf)
        s.on_booked = self._booked
        # after the positions: each event's session baseline is the account as found
        await self.event_risk.learn(rest, raws, {t: p.info for t, p in self.pipes.items()})
        await self.incentives.refresh(rest)                 # never raises
        if self.cfg.run.volume_backfill_days > 0:
            s.spawn(self._load_volume(rest))
        ws = s.open_ws(self, self.router, OrderBook, markets)
        await ws.start()
        if self.opt.gc_freeze:
            # everything allocated so far (markets, books, config, connections) is long-lived: move it
            # out of the collector's reach, and collect the young generation less often, so a
            # collection does not land between a frame and its request
            gc.collect()
            gc.freeze()
            gc.set_threshold(*self.opt.gc_threshold)
        await s.warm_order_connections(len(self.tickers))
        await s.signatures_ready()
        self.quoting = True
        log.info("quoting %s with %s on %s", ", ".join(self.tickers), self.cfg.run.strategy, self.venue)
        # books that became ready during the start are quoted now, not on their next message
        self._requote_all()

    async def _market_info(self, ticker: str, raw: dict[str, Any], series: dict[str, Any] | None = None
                           ) -> MarketInfo:
        rest = self.session.rest
        assert rest is not None
        grid = Grid(raw.get("price_ranges") or raw.get("price_level_structure") or None)
        _, _, maker, taker = await read_fee_rates(rest, ticker, raw, cache=series)
        close_ns = _iso_to_ns(raw.get("close_time"))
        status = str(raw.get("status", "active"))
        # every market takes 0.01-contract counts since Apr 2026 (kalshi-api.md 2.2); the flag is gone
        fractional = True
        info = MarketInfo(ticker, grid, close_ns, fractional, maker, taker, status)
        self.gate.add_market(ticker, grid, close_time_ns=close_ns, fractional=fractional)
        self.freshness.add(ticker)
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
        entry = self.entry
        if entry is not None:        # a rebuilt pipeline (a regrid): the compiled entry decides on the new one
            if pipe.compiled:
                entry.add(info.ticker, pipe.core, pipe, self.freshness.get(info.ticker))
            else:
                entry.remove(info.ticker)

    # ================================================================================== feed callbacks
    def on_connected(self) -> None:
        log.info("websocket connected")
        self.recovery.on_connected()

    def on_disconnected(self, reason: str) -> None:
        if self.entry is not None:
            self.entry.drop()          # decisions left by a read cut short: none (the quotes are pulled)
        self.recovery.on_disconnected(reason)

    def on_book_ready(self, ticker: str) -> None:
        pipe = self.pipes.get(ticker)
        if pipe is None:
            return
        if pipe.book is None and self.ws is not None:
            pipe.book = self.ws.book(ticker)
        self.freshness.on_ready(ticker)
        pipe.ready = True
        pipe.mark_reset()
        self._event("book_ready", ticker)
        self.on_book(ticker, self.clock.monotonic_ns())

    def on_book_stale(self, ticker: str, reason: str) -> None:
        if self.entry is not None:
            self.entry.discard(ticker)     # no decision on a stale book at the end of the read
        self.recovery.on_book_stale(ticker, reason)

    def frame_entry(self, ws: Any) -> FrameEntry | None:
        """The compiled frame entry for ``ws`` (:class:`kmm._core.entry.FrameEntry`): a delta of a market on
        a compiled pipeline in the common state is decided there, with no Python frame between the
        frame's bytes and its actions; every other frame takes :meth:`on_book`'s path. None (the Python
        path for every frame) with ``EngineOptions.frame_entry`` off, no compiled pipeline, or a
        router that is not the compiled one."""
        if not self.opt.frame_entry or not isinstance(ws.router, BookRouter):
            return None
        pipes = {t: p for t, p in self.pipes.items() if p.compiled}
        if not pipes:
            return None
        from kmm.kalshi.ws import log as ws_log
        from kmm.record.capture import CaptureWriter
        # the raw capture: on_raw_frame's enqueue done by the entry itself when nothing overrides it
        own_raw = type(self).on_raw_frame is Engine.on_raw_frame
        capture = self._capture if (type(self._capture) is CaptureWriter and ws._raw is not None
                                    and own_raw) else None
        # no recorder: on_raw_frame would find no capture; the entry does not call it (no Python frame)
        raw = None if own_raw and self._capture is None else ws._raw
        entry = FrameEntry(ws.router, ws.stats, ws._after_feed, raw, ws_log, self,  # noqa: SLF001
                           self.session, self.clock, type(self.clock) is SystemClock, capture,
                           coalesce=self.cfg.run.coalesce_reads != "off",
                           flush_python=self.cfg.run.coalesce_reads == "deltas")
        for t, p in pipes.items():
            entry.add(t, p.core, p, self.freshness.get(t))
        entry.ignore = self._ignored_frames()
        if type(self.event_risk).rooms is EventWiring.rooms:
            # the open rooms read in C for a market whose event refused nothing lately (EventWiring.rooms)
            entry.open_rooms(self.event_risk._hot, ROOMS_OPEN_STEP)  # noqa: SLF001
        self._first_in_c(entry)
        self.entry = entry
        return entry

    def _first_in_c(self, entry: FrameEntry) -> None:
        """Let the entry check and write a decision's first create or amend
        (:meth:`FrameEntry.first_request`) when every step it replaces is the one it was built from:
        the connector's compiled quote writes (``KalshiRest.place_quote_now`` / ``amend_quote_now`` over
        its ``QuoteWire``), this class's request steps, the planner's :class:`RiskGate` on the session's
        portfolio and :class:`EventWiring`'s one-call checks. Anything else (paper mode, a subclass, a
        test double) keeps the Python path."""
        rest = self.session.rest
        qw = getattr(rest, "_qw", None)
        planner = self.planner
        ev = planner.event_risk
        own = ("_act", "_apply", "_apply_actions", "_amend_now", "_small_reprices_only", "_act_first", "_act_placed",
               "_first_sent", "_amend_recorded", "_quote_answered", "_amend_answered")
        if not self.opt.first_in_c or qw is None or rest is None or \
                getattr(type(rest), "amend_quote_now", None) is not KalshiRest.amend_quote_now or \
                getattr(type(rest), "place_quote_now", None) is not KalshiRest.place_quote_now or \
                type(planner) is not QuotePlanner or type(planner.gate) is not RiskGate or \
                planner.gate is not self.session.gate or planner.gate.positions is not planner.pf or \
                planner.pf is not self.session.pf or planner.om is not self.session.om or \
                (ev is not None and (type(ev).amend_fits is not EventWiring.amend_fits
                                     or type(ev).size_place is not EventWiring.size_place)) or \
                any(getattr(type(self), n) is not getattr(Engine, n) for n in own):
            entry.first_request(None)
            return
        entry.first_request(qw, rest, planner, self.opt.reprice_pressure, _RESTING, _PARTIAL)

    def _ignored_frames(self) -> int:
        """The public frames whose handlers do nothing in this engine, which the compiled entry captures
        and does not hand to the Python path (no decode, no Python frame; the read's decisions are made
        where they were for a frame of that path): ticker frames unless a subclass reads them, and trade
        frames unless a subclass reads them (paper mode's fill simulator does) or a market estimates
        kappa from trades."""
        mask = 0
        if not self.opt.skip_unread:
            return mask
        if type(self).on_ticker is FeedHandler.on_ticker:
            mask |= IGNORE_TICKER
        if type(self).on_trade is Engine.on_trade and not any(p.params.kappa_estimate for p in self.pipes.values()):
            mask |= IGNORE_TRADE
        return mask

    entry: FrameEntry | None = None

    def on_book(self, ticker: str, recv_ns: int) -> None:
        """The hot path: a snapshot or delta for ``ticker`` was applied by the router."""
        pipe = self.pipes.get(ticker)
        if pipe is None:
            return
        clock = self.clock
        now = clock.monotonic_ns()
        self.freshness.on_data(ticker, now)       # book data, never pings, keeps a book fresh
        if not pipe.ready or pipe.book is None:
            return
        if pipe.compiled:
            self._frame(pipe, ticker, now, recv_ns)
            return
        live = self.om.live_orders(ticker)
        # asked once, acting on the reason (keep the decision for later, or pull) when it says no: that
        # needs neither the signals nor the marks, so the order against the former ask-then-requote
        # path changes nothing but the second ask
        if self._may_decide(pipe, live, now):
            # one crossing: signals and the decision in a single pipeline call; the decision is
            # stamped before the marks, which value the portfolio and do not feed it
            pipe.core.set_rooms(*self.event_risk.rooms(ticker, pipe.info.fractional))
            actions = pipe.frame(now, clock.time_ns(), self.event_risk.quote_inventory(ticker), live)
            self._act(pipe, actions, live, recv_ns or now, self.decide_ns, marks=True)
            return
        pipe.on_book(now, clock.time_ns(), live)
        self._mark_top(pipe)

    def _frame(self, pipe: MarketPipeline, ticker: str, now: int, recv_ns: int) -> None:
        """A book frame on a compiled pipeline (:meth:`on_book`'s hot path). The pipeline holds this
        market's live orders (re-read from the order manager only after its watcher said they changed)
        and the may-decide state (requests in flight, hold, an order with a request open, and the risk
        gate's last ALLOW while none of the gate's, the freshness's or the limiter's change counters
        moved and the close gate is not reached), so a frame asks them in C and builds no list of
        orders; the gate itself is asked, in the place :meth:`_may_decide` asks it, only when its
        held answer lapsed. The same verdicts and actions as the list path (tests/engine/test_frame_path.py)."""
        core = pipe.core
        if core.own_dirty:
            core.own_sync(self.om.live_orders(ticker, now_ns=now), now)
        pipe.last_book_ns = now
        wall = self.clock.time_ns()
        if self.quoting and not self.stopping:
            gate = self.gate
            # the gate's ALLOW is held in the pipeline while nothing that can deny it changed: the gate's,
            # the freshness's and the 429 limiter's change counters (-1: some part keeps no counter)
            fr, lim = gate.freshness, gate.backoff
            pauses = 0 if lim is None else getattr(lim, "pauses", None)
            epoch = -1 if fr is None or pauses is None else gate.epoch + fr.epoch + pauses
            v = core.verdict_q(now, wall, epoch)
            if v == 1 or v == 2:               # requests in flight, or a hold after a refused create
                pipe.dirty = True
            else:
                d = gate.is_quotable(ticker) if v >= 4 else None
                if d is not None and not d:
                    core.forget_quotable()
                    self._not_quotable(pipe, d, core.own_count)
                else:
                    if d is not None:
                        core.hold_quotable(epoch, gate.quotable_until_wall_ns(ticker))
                        v -= 4
                    if v == 3:                 # a request on one of its orders is still open
                        pipe.dirty = True
                    else:
                        pipe.dirty = False
                        alpha = 0.0 if pipe._alpha_zero else pipe.alpha.get_external_skew(ticker)  # noqa: SLF001
                        core.set_rooms(*self.event_risk.rooms(ticker, pipe.info.fractional))
                        actions = core.frame_own(now, wall, self.event_risk.quote_inventory(ticker), alpha)
                        self._act(pipe, actions, core.own_count, recv_ns or now, self.decide_ns, marks=True)
                        return
        core.signals_own(now, wall)
        if core.top_moved():
            self._marks(ticker, core)

    async def _load_volume(self, rest: Any) -> None:
        """The 30-day volume from the exchange's own fills (the API has no 30-day volume figure)."""
        days = self.cfg.run.volume_backfill_days
        since_s = self.clock.time_ns() // NS_PER_S - int(days * 86_400)
        try:
            fills = await rest.get_fills(min_ts=since_s, limit=200, max_pages=20)
        except (KmmError, AttributeError) as exc:
            log.warning("30-day volume: fills not readable (%s); the volume counts this session only", exc)
            return
        self.mstats.load_volume(fills, f"the account's fills over {days:g} days (GET /portfolio/fills; "
                                       "the API gives no 30-day volume figure) + this session's")

    def _marks(self, ticker: str, inp: Any) -> None:
        """The market's top of book marks the portfolio, the session's P&L and the maker metrics."""
        bid, ask = inp.best_bid or None, inp.best_ask or None
        self.pf.set_mark(ticker, bid, ask)
        if self.spnl is not None:
            self.spnl.on_mark(ticker, bid, ask)
        self.mstats.on_top(ticker, bid, ask)

    def _mark_top(self, pipe: MarketPipeline) -> None:
        """:meth:`_marks` for a book frame (the hot path): every frame calls it, the marks only run when
        the top of book (ex-own) moved since this market's last mark. The same marks result: each mark
        stores the top; marking again with an unchanged top changes nothing (the session P&L's re-base
        of a carried position takes the same price or, with no price, waits the same; the maker metrics
        accrue time per order up to their next event, and ``snapshot`` accrues to now). A fresh book
        (:meth:`on_book_ready`) marks again whatever its top."""
        if pipe.top_moved():
            self._marks(pipe.ticker, pipe.inputs)

    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after the current callback (and the decision it makes): records that the
        next decision does not need (store rows, log lines, tape rows) stay off the decision path."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon(fn, *args)
        else:
            fn(*args)

    def on_fill(self, fill: Fill) -> None:
        if not self.session.apply_fill(fill, defer=self._later):
            return  # duplicate trade_id: already counted
        pipe = self.pipes.get(fill.ticker)
        if pipe is not None:
            pipe.fills += 1
            pipe.on_trade(fill.price)      # our own fills inform kappa too (when it is estimated)
        self._after_pnl_change(fill.ticker)
        self.event_guard(fill.ticker)
        if pipe is not None and pipe.ready:
            self._requote_update(pipe, fill.recv_ns or self.clock.monotonic_ns())
        if pipe is not None:
            self._later(self._tape, pipe, "fill", fill)     # after the requote the fill triggered

    def event_guard(self, ticker: str | None = None) -> None:
        """An event that just went reduce-only or over its limit has every quote pulled at once (one
        decision for all its markets): queued places and amends dropped, live orders cancelled in one
        batched request; the markets then requote through the event gate (risk-lowering orders only)."""
        if not self.opt.event_pull or not self.quoting or self.stopping:
            return
        for ev, status, markets in self.event_risk.to_pull(ticker):
            reason = f"event {ev} {status.value}"
            log.warning("%s: pulling the quotes of its %d markets at once", reason, len(markets))
            self._event("event_pull", ev, reason)
            if self.rest is not None:
                self.rest.limiter.drop_waiting(reason, keys=set(markets))
            for t in markets:
                pipe = self.pipes.get(t)
                if pipe is not None:
                    pipe.dirty = True
            self.session.spawn(pull_event_orders(self.session, markets, reason), eager=True)

    def on_user_order(self, order: UserOrder) -> None:
        known = self.om.by_order_id(order.order_id) or (
            self.om.get(order.client_order_id) if order.client_order_id else None)
        was_closed = known is not None and not known.is_live
        self.om.on_user_order(order)
        self.mstats.on_user_order(order)
        if (was_closed and order.status == "resting" and not self.session.verifying(order.order_id)):
            # we had closed it (a create whose lookups found nothing, a cancel we believed): the exchange
            # says it rests. Cancel it; if it is in fact gone, the cancel answers "not found".
            log.warning("%s: order %s rests at the exchange but was closed here; cancelling it",
                        order.ticker, order.order_id)
            self._event("stray_order", order.ticker, order.order_id)
            self.session.spawn(self.session.cancel_stray(order.order_id))
        if self.recorder is not None:
            self.recorder.store.record_user_order(order, strategy=self.cfg.run.strategy)
        pipe = self.pipes.get(order.ticker)
        if pipe is not None and pipe.dirty and pipe.in_flight == 0 and pipe.ready:
            self._requote_update(pipe, order.recv_ns or self.clock.monotonic_ns())

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
        if event.event_type == "settled" and event.result:
            self.event_risk.on_settled(event.ticker, event.result)   # before the portfolio pays it
            if self.spnl is not None and event.result in ("yes", "no"):
                self.spnl.settle(event.ticker, event.result)
        self.recovery.on_lifecycle(event)

    def on_order_group(self, update: Any) -> None:
        """``order_group_updates``: the session's group triggered at the exchange (its contracts limit,
        or someone's trigger) is the same signal as a create refused for it, at once: kill switch."""
        if update.order_group_id != self.group_id or self.stopping:
            return
        if update.event_type == "triggered" and not self.session.group_fired:
            self.session.group_fired = True
            self._event("group_triggered", detail=update.order_group_id)
            self.gate.trip(f"session order group {update.order_group_id} triggered at the exchange; "
                           "it rejects every new order until reset")
            self._after_pnl_change()
        elif update.event_type == "deleted":
            log.critical("session order group %s was deleted at the exchange; its orders are gone",
                         update.order_group_id)
            self.session.group_id = None
            self.gate.trip("session order group deleted at the exchange")
            self._after_pnl_change()

    def on_raw_frame(self, recv_ns: int, data: bytes) -> None:
        """Every received frame, with its receive time, to the raw capture (enqueued; written off the loop)."""
        capture = self._capture
        if capture is not None:
            capture.write(recv_ns, data)

    def on_error(self, error: Exception) -> None:
        log.warning("connector: %s", error)
        if isinstance(error, WireError) and not self.stopping and self.quoting:
            # a fill or order update we could not decode: backfill and reconcile over REST now
            self.recovery.resync_soon("unreadable user message")

    def _on_pause(self, kind: str) -> None:
        """The session saw the exchange pause (or resume), from an answer, a lifecycle event or a poll."""
        if kind:
            for p in self.pipes.values():
                self._pull(p, f"exchange {kind} pause")
                p.state = "exchange_paused"
        else:
            self._requote_all()

    # ================================================================================== decisions
    def _blocked(self, pipe: MarketPipeline, reason: str, detail: str = "") -> None:
        """kmm wants to quote here but cannot: say so once (log, status, view), not once per book."""
        pipe.state = reason
        if self.blocked.get(pipe.ticker) != reason:
            self.blocked[pipe.ticker] = reason
            log.warning("%s: wants to quote but cannot: %s%s", pipe.ticker, reason, f" ({detail})" if detail else "")
            self._event("blocked", pipe.ticker, reason)

    def _event_room(self, pipe: MarketPipeline) -> None:
        """A decision left nothing to send because the event gate has no room for its places (the
        pipeline dropped them, EventWiring.rooms) and the market has no order: say so as a refused
        place would have (state, log once, view), not "quoting"."""
        self._blocked(pipe, "event_room", "the event gate refuses every place the strategy wants "
                      "(event at its limit)")

    def _requote(self, pipe: MarketPipeline, trigger_ns: int, live: list[LiveOrder] | None = None,
                 stamps: deque[int] | None = None) -> None:
        """Decide and act for one market. ``live`` is its live orders when the caller has them already;
        ``stamps``: where the decision's trigger -> decided latency goes (None: not stamped)."""
        if live is None:
            live = self.om.live_orders(pipe.ticker)
        if self._may_decide(pipe, live, self.clock.monotonic_ns()):
            pipe.core.set_rooms(*self.event_risk.rooms(pipe.ticker, pipe.info.fractional))
            self._act(pipe, pipe.decide(self.event_risk.quote_inventory(pipe.ticker), live), live, trigger_ns,
                      stamps)

    def _requote_update(self, pipe: MarketPipeline, trigger_ns: int) -> None:
        """A fill or an order update (received at ``trigger_ns``) wants ``pipe`` re-quoted: with the
        compiled entry coalescing (``run.coalesce_reads``), with the market's other triggers of the read
        (one decision on its latest book and position, when the read ends or, with ``deltas``, before
        the next frame that takes the Python path: ``FrameEntry.defer``), else now. Its bookkeeping
        (the position, P&L, the kill switch) is done already; every check of the decision is made when
        it is made. Stamped in ``update_decide_ns`` (its bookkeeping came before the decision)."""
        entry = self.entry
        if entry is not None and entry.open and entry.defer(pipe.ticker, trigger_ns):
            return
        self._requote(pipe, trigger_ns, stamps=self.update_decide_ns)

    def _may_decide(self, pipe: MarketPipeline, live: list[LiveOrder], now_ns: int, act: bool = True) -> bool:
        """True when ``pipe`` may decide now. Otherwise, with ``act``, the reason is acted on here: a
        decision is kept for later (``dirty``: requests in flight, a hold after a refused create, a
        rate-limit back-off, an order with a request open) or the market's quotes are pulled (not
        quotable). Without ``act`` nothing but ``dirty`` changes (the frame path asks first, then runs
        the signals, then :meth:`_requote` acts)."""
        if not self.quoting or self.stopping:
            return False
        if pipe.in_flight:
            pipe.dirty = True
            return False
        if pipe.hold_until_ns and now_ns < pipe.hold_until_ns:
            pipe.dirty = True          # after a refused create: the housekeeping tick retries later
            return False
        d = self.gate.is_quotable(pipe.ticker)
        if not d:
            if act:
                self._not_quotable(pipe, d, len(live))
            return False
        for o in live:
            if not o.actionable:
                pipe.dirty = True      # a request on this market is still open: decide after its answer
                return False
        pipe.dirty = False
        return True

    def _not_quotable(self, pipe: MarketPipeline, d: Any, n_live: int) -> None:
        """The risk gate says ``pipe`` is not quotable (``d``): keep the decision for later (a rate-limit
        back-off) or pull its quotes (``n_live``: its live orders), and sweep after a kill."""
        pipe.state = d.reason
        if d.reason == "rate_limited":
            pipe.dirty = True        # places and amends wait out the back-off; live quotes stay
            return
        if n_live:
            self._pull(pipe, d.reason)
        if self.gate.kill_state is KillState.TRIPPED:
            self._start_kill_sweep()

    def _act(self, pipe: MarketPipeline, actions: tuple[Any, ...], live: Any, trigger_ns: int,
             stamps: deque[int] | None = None, marks: bool = False, decided_ns: int = 0) -> None:
        """Send a decision's actions (after :meth:`_may_decide` said yes and the pipeline decided).
        ``stamps`` takes the decision's trigger -> decided latency; ``marks``: the book frame's marks
        (:meth:`_mark_top`) are still to be made, after the decision's requests are written (the
        portfolio's mark, the session P&L and the maker metrics: no check of this decision reads them;
        made before the requests they cost the first one 10-20 us in situ).
        ``decided_ns``: the decided stamp when the caller took it (the compiled frame entry, right
        after the pipeline returned the actions); 0: taken here."""
        ticker = pipe.ticker
        pipe.state = "quoting"
        if actions:
            if self._small_reprices_only(pipe, actions):
                self.skipped_reprices += 1      # save the write budget for what matters
                if marks:
                    self._mark_top(pipe)
                return
            pipe.trigger_ns = trigger_ns
            pipe.decided_ns = decided_ns or self.clock.monotonic_ns()
            if stamps is not None:
                stamps.append(pipe.decided_ns - trigger_ns)
            try:
                sent = self._apply(pipe, actions, trigger_ns)
            finally:
                if marks:
                    self._mark_top(pipe)
            if not sent and not live and not self.om.live_orders(ticker):
                reason = self.planner.last_denial or "no order passes the gate"
                self._blocked(pipe, reason, self.planner.last_denial_detail)
            elif sent or live:
                self.blocked.pop(ticker, None)
        else:
            if marks:
                self._mark_top(pipe)
            if live:
                self.blocked.pop(ticker, None)
            elif pipe.core.last_dropped:
                self._event_room(pipe)

    def _act_first(self, pipe: MarketPipeline, actions: tuple[Any, ...], live: Any, trigger_ns: int,
                   stamps: deque[int] | None, marks: bool, decided_ns: int, written_ns: int, o: Order,
                   price: int, size: int) -> None:
        """:meth:`_act` for a decision whose first action, an amend of ``o`` to ``price`` / ``size``,
        the compiled frame entry checked and wrote (:meth:`FrameEntry.first_request`: what
        :meth:`_amend_now` does; ``written_ns``: after its bytes were written). Its record first, as
        :meth:`_amend_now` makes it (nothing of the loop has run since the write), then
        :meth:`_first_sent`."""
        self._amend_recorded(pipe, o.order_id or "", price, size)     # a working order: it has its id
        self.session.amends_sent += 1
        self._first_sent(pipe, actions, trigger_ns, stamps, marks, decided_ns, written_ns)

    def _act_placed(self, pipe: MarketPipeline, actions: tuple[Any, ...], live: Any, trigger_ns: int,
                    stamps: deque[int] | None, marks: bool, decided_ns: int, written_ns: int, ctx: list[Any],
                    coid: str, side: str, price: int, size: int) -> None:
        """:meth:`_act_first` for a decision whose first action, a quote's create, the compiled frame
        entry checked and wrote (what :meth:`_apply_actions` does for a create the planner allows): the
        order's record, which its answer finds in ``ctx``, then the pending store row after the
        decision's other requests, then :meth:`_first_sent`."""
        ctx[1] = self.om.record_create(pipe.ticker, side, price, size, coid)
        self.session.orders_sent += 1
        if self.recorder is not None:
            self._later(self._record_pending_quote, coid, pipe.ticker, side, price, size)
        self._first_sent(pipe, actions, trigger_ns, stamps, marks, decided_ns, written_ns)

    def _first_sent(self, pipe: MarketPipeline, actions: tuple[Any, ...], trigger_ns: int,
                    stamps: deque[int] | None, marks: bool, decided_ns: int, written_ns: int) -> None:
        """The rest of :meth:`_act` once a decision's first request is written and recorded: the
        decision's stamps, the write's, the other actions, the marks."""
        pipe.state = "quoting"
        pipe.trigger_ns = trigger_ns
        pipe.decided_ns = decided_ns
        if stamps is not None:
            stamps.append(decided_ns - trigger_ns)
        self.session.inflight_now += 1
        try:
            if pipe.tape_trigger_ns != trigger_ns:
                self._stamp_now(pipe, trigger_ns, written_ns)
            if len(actions) > 1:
                self._apply(pipe, actions[1:], trigger_ns)
        finally:
            if marks:
                self._mark_top(pipe)
        self.blocked.pop(pipe.ticker, None)

    def _act_read(self, decisions: list[tuple[Any, ...]]) -> None:
        """Send the decisions of one socket read, every market already decided (the compiled frame
        entry decides each pending market, then calls this with two or more decisions that have
        actions: ``(pipe, actions, live, trigger_ns, stamps, marks, decided_ns)`` each, in the order the
        markets first changed). What :meth:`_act` does for each, with the writes interleaved: each
        market's actions are applied until its first request is sent, market after market, then the
        rest of each market's actions in turn; the marks follow every request of the read.

        Why: the first request of a decision is the one that takes a quote out of harm's way (the bid
        amended down as the market drops), and sending market after market whole made the third market's
        first request wait for the first two markets' every request (~100 us each in situ). A market's
        own requests keep their order (the planner plans each step on the state the earlier ones left);
        only requests of different markets change places, and the account-level checks (open orders,
        total position, event limits) are made on each request as it is planned, so a limit that binds
        across markets is kept whichever market reaches it first. A decision that raises leaves the
        other markets' requests sent; the first error is raised again once all are done."""
        if self._batch is not None:      # a requote of every market batches its creates: one by one
            for pipe, actions, live, trigger_ns, stamps, marks, decided_ns in decisions:
                self._act(pipe, actions, live, trigger_ns, stamps, marks, decided_ns)
            return
        todo: list[list[Any]] = []
        marked: list[MarketPipeline] = []
        for pipe, actions, live, trigger_ns, stamps, marks, decided_ns in decisions:
            pipe.state = "quoting"
            if marks:
                marked.append(pipe)
            if self._small_reprices_only(pipe, actions):
                self.skipped_reprices += 1      # save the write budget for what matters
                continue
            pipe.trigger_ns = trigger_ns
            pipe.decided_ns = decided_ns or self.clock.monotonic_ns()
            if stamps is not None:
                stamps.append(pipe.decided_ns - trigger_ns)
            todo.append([pipe, actions, live, trigger_ns, 0, 0])    # ..., sent, actions applied
        error: BaseException | None = None
        failed: set[int] = set()
        try:
            for k, t in enumerate(todo):            # each market until its first request is written
                pipe, actions, trigger_ns = t[0], t[1], t[3]
                try:
                    while t[5] < len(actions) and not t[4]:
                        t[4] += self._apply(pipe, actions[t[5]:t[5] + 1], trigger_ns)
                        t[5] += 1
                except Exception as exc:
                    failed.add(k)
                    error = error or exc
            for k, t in enumerate(todo):            # then the rest of each market's actions
                if k in failed or t[5] >= len(t[1]):
                    continue
                try:
                    t[4] += self._apply(t[0], t[1][t[5]:], t[3])
                except Exception as exc:
                    failed.add(k)
                    error = error or exc
        finally:
            for pipe in marked:
                self._mark_top(pipe)
        for k, t in enumerate(todo):                # _act's blocked bookkeeping, per market
            if k in failed:
                continue
            pipe, sent, live = t[0], t[4], t[2]
            if not sent and not live and not self.om.live_orders(pipe.ticker):
                self._blocked(pipe, self.planner.last_denial or "no order passes the gate",
                              self.planner.last_denial_detail)
            elif sent or live:
                self.blocked.pop(pipe.ticker, None)
        if error is not None:
            raise error

    def _pull(self, pipe: MarketPipeline, reason: str) -> None:
        """Cancel every live order of this market (orders still being created are cancelled on ack).
        Not during an exchange pause: the exchange refuses cancels then (and kills every order of ours,
        which all carry cancel_order_on_pause); the reconcile after the pause confirms it."""
        live = self.om.live_orders(pipe.ticker)
        if not live or self.session.pause == "exchange":
            return
        actions = pipe.pull([o for o in live if o.order_id is not None])
        if actions:
            log.info("%s: pulling %d quotes (%s)", pipe.ticker, len(actions), reason)
            self._event("pull", pipe.ticker, reason)
            self._apply(pipe, actions, self.clock.monotonic_ns())

    def _apply(self, pipe: MarketPipeline, actions: Iterable[Any], trigger_ns: int) -> int:
        pipe.applying = True
        fair = FAIR_KEY.set(pipe.ticker)      # the limiter serves markets round-robin (kalshi/limiter.py)
        try:
            sent = self._apply_actions(pipe, actions, trigger_ns)
        finally:
            FAIR_KEY.reset(fair)
            pipe.applying = False
        if pipe.in_flight == 0 and pipe.dirty and pipe.ready and self._loop is not None:
            self._loop.call_soon(self._requote, pipe, self.clock.monotonic_ns())
        return sent

    def _small_reprices_only(self, pipe: MarketPipeline, actions: tuple[Any, ...]) -> bool:
        """Under write pressure, a decision that only nudges prices by at most ``reprice_min_ticks``
        is skipped whole (:func:`kmm.engine.quoting.small_reprices_only`)."""
        rest = self.rest
        if rest is None or rest.limiter.pressure() <= self.opt.reprice_pressure:
            return False
        return small_reprices_only(self.om, actions, pipe.skip_reprice_px)

    def _apply_actions(self, pipe: MarketPipeline, actions: Iterable[Any], trigger_ns: int) -> int:
        """Send the requests the planner makes of ``actions`` (kmm.engine.quoting: the gate, reduce-only
        sizing, event limits; each step is sent before the next is planned).

        A create the planner allows (:meth:`QuotePlanner.place_checked`) is written by
        ``rest.place_quote_now`` in one call, its order record made right after the write (the pending
        store row and the tape row later, off the decision); when that cannot write at once (no idle
        connection, budget or pre-made signature; paper mode) it takes :meth:`_send_place`. An amend of
        a working order takes :meth:`_amend_now`. A requote of every market (``_batch``) takes
        :meth:`_apply_planned`."""
        if self._batch is not None:
            return self._apply_planned(pipe, actions, trigger_ns)
        ticker = pipe.ticker
        sent = 0
        session = self.session
        planner = self.planner
        quote_now = getattr(session.rest, "place_quote_now", None)
        for a in actions:
            if a.kind != PLACE:
                if a.kind == AMEND:
                    done = self._amend_now(pipe, a, trigger_ns)
                    if done >= 0:
                        sent += done
                        continue
                step = planner.other(ticker, a)
                if step is None:
                    continue
                kind = step[0]
                if kind == AMEND:
                    self._send_amend(pipe, step[1], step[3], trigger_ns)
                elif kind == CANCEL:
                    self._send_cancel(pipe, step[1], trigger_ns)
                else:                                   # DECREASE
                    self._send_decrease(pipe, step[1], step[2], trigger_ns)
                sent += 1
                continue
            placed = planner.place_checked(ticker, a)
            if placed is None:
                continue
            side, price, size = placed
            sent += 1
            om = planner.om
            coid = om.new_client_order_id()
            if quote_now is None:
                o = om.record_create(ticker, side, price, size, coid)
            else:
                # the order record made right after the write: nothing of the loop runs in between, so
                # the answer finds it (ctx[1]); every check that reads it was made before
                pipe.in_flight += 1
                ctx = [pipe, None]
                try:
                    written = quote_now(ticker, side, price, size, coid, session.group_id, self._quote_done, ctx,
                                        session.spawn)
                finally:        # recorded whatever happened (an error may come after the bytes went out)
                    o = ctx[1] = om.record_create(ticker, side, price, size, coid)
                if written:
                    session.orders_sent += 1
                    session.inflight_now += 1
                    if pipe.tape_trigger_ns != trigger_ns:
                        self._stamp_now(pipe, trigger_ns, written)
                    if self.recorder is not None:       # after the decision's other requests (_send_place)
                        self._later(self._record_pending_quote, o.client_order_id, ticker, side, price, size)
                    continue
                pipe.in_flight -= 1
            self._send_place(pipe, o, OrderRequest(ticker=ticker, side=side, price=price, count=size,
                                                   client_order_id=o.client_order_id, post_only=True,
                                                   cancel_order_on_pause=True, order_group_id=session.group_id),
                             trigger_ns)
        return sent

    def _amend_now(self, pipe: MarketPipeline, a: Any, trigger_ns: int) -> int:
        """The common amend (a working order of ours, the risk gate's and the event limits' allow in
        their one-call forms) written before its order record is made: the planner's steps
        (:meth:`QuotePlanner.other`, :meth:`_send_amend`) in another order, so the record costs the
        request nothing. Nothing of the loop runs between the write and the record, so the answer
        always finds the order pending its amend. Returns 1 (written), 0 (reduce-only leaves the
        order as it is: nothing to send) or -1: nothing was taken or written, the planner's path
        decides (a refusal to explain, a gate of another type, no pre-made signature, budget or idle
        connection, paper mode)."""
        planner = self.planner
        gate = planner.gate
        quick = getattr(self.session.rest, "amend_quote_now", None)
        if quick is None or type(gate) is not RiskGate:
            return -1
        live = planner.om.get(a.order_id)
        if live is None or live.order_id is None or \
                (live.state is not _RESTING and live.state is not _PARTIAL):
            return -1                  # an order with a request open: the planner's path
        ticker = pipe.ticker
        side = SIDE_NAME[a.side]
        price = a.price
        size = gate.amend_size(ticker, side, price, a.size, live.remaining, live.price)
        if size <= 0:
            return size
        ev = planner.event_risk
        if ev is not None and not ev.amend_fits(ticker, side, price, size, live.price, live.remaining):
            return -1
        session = self.session
        oid = live.order_id
        try:
            written = quick(oid, ticker, side, price, live.fill_count + size, live.client_order_id,
                            self._amend_done, (pipe, live), session.spawn)
        except BaseException:
            # the bytes may have gone out: recorded as sent, as the planner's path had it before the
            # write (the request watchdog reads an unanswered order back)
            self._amend_recorded(pipe, oid, price, size)
            raise
        if not written:
            return -1
        self._amend_recorded(pipe, oid, price, size)
        session.amends_sent += 1
        session.inflight_now += 1
        if pipe.tape_trigger_ns != trigger_ns:
            self._stamp_now(pipe, trigger_ns, written)
        return 1

    def _amend_recorded(self, pipe: MarketPipeline, order_id: str, price: int, size: int) -> None:
        """:meth:`_amend_now`'s record of an amend it wrote: pending in the order manager, in flight."""
        if self.om.request_amend(order_id, price, size) is None:     # cannot be: checked before the write
            log.error("%s: amend of %s written but not recorded as pending", pipe.ticker, order_id)
        pipe.in_flight += 1

    def _quote_answered(self, ctx: Any, ack: Any, exc: BaseException | None) -> None:
        """The answer of a create written by ``rest.place_quote_now`` (:meth:`_apply_actions`): the same
        outcome code as :meth:`_send_place`'s."""
        pipe, o = ctx
        try:
            self._after_place(pipe, o, *self.session.placed_now(o, ack, exc))
        finally:
            self._done(pipe)

    def _amend_answered(self, ctx: tuple[MarketPipeline, Order], ack: Any, exc: BaseException | None) -> None:
        """The answer of an amend written by ``rest.amend_quote_now`` (:meth:`_send_amend`)."""
        pipe, o = ctx
        try:
            self.session.amended_now(o, ack, exc)
        finally:
            self._done(pipe)

    def _record_pending_quote(self, coid: str, ticker: str, side: str, price: int, count: int) -> None:
        if self.recorder is not None:
            self.recorder.store.record_order(status="pending", client_order_id=coid, ticker=ticker, side=side,
                                             price=price, count=count, strategy=self.cfg.run.strategy,
                                             reason="quote")

    def _apply_planned(self, pipe: MarketPipeline, actions: Iterable[Any], trigger_ns: int) -> int:
        """:meth:`_apply_actions` through :meth:`QuotePlanner.plan`, each create as an
        :class:`OrderRequest` (the requote of every market batches them)."""
        ticker = pipe.ticker
        sent = 0
        session = self.session
        for step in self.planner.plan(ticker, actions):
            kind = step[0]
            if kind == PLACE:
                _, o, side, price, size = step
                req = OrderRequest(ticker=ticker, side=side, price=price, count=size,
                                   client_order_id=o.client_order_id, post_only=True,
                                   cancel_order_on_pause=True, order_group_id=session.group_id)
                if self._batch is not None:          # a requote of every market: sent together after it
                    self._record_pending(req)
                    pipe.in_flight += 1
                    self._batch.append((pipe, o, req, trigger_ns))
                    sent += 1
                    continue
                self._send_place(pipe, o, req, trigger_ns)
            elif kind == CANCEL:
                self._send_cancel(pipe, step[1], trigger_ns)
            elif kind == AMEND:
                self._send_amend(pipe, step[1], step[3], trigger_ns)
            else:                                   # DECREASE
                self._send_decrease(pipe, step[1], step[2], trigger_ns)
            sent += 1
        return sent

    # ---- sending a request: written now with its answer by callback (no coroutine, task, future or
    # timer of its own: Session.*_now), or, when it cannot be written at once (no idle connection,
    # no budget now, no pre-made signature; paper mode), started as a coroutine (_send)
    def _send_place(self, pipe: MarketPipeline, o: Order, req: OrderRequest, trigger_ns: int) -> None:
        pipe.in_flight += 1

        def then(outcome: str, refusal: Any) -> None:
            try:
                self._after_place(pipe, o, outcome, refusal)
            finally:
                self._done(pipe)
        written = self.session.place_now(o, req, then)
        if written:
            self._stamp_now(pipe, trigger_ns, written)
            if self.recorder is not None:
                # after the decision's other requests are written: its answer comes in a later I/O
                # callback, after every callback call_soon queued now, so the store still sees
                # "pending" before the answer's row
                self._later(self._record_pending, req)
            return
        pipe.in_flight -= 1
        self._record_pending(req)          # before the coroutine, which may settle the create at once
        self._send(pipe, self._do_place(pipe, o, req, trigger_ns), trigger_ns)

    def _record_pending(self, req: OrderRequest) -> None:
        self._record_pending_quote(req.client_order_id, req.ticker, req.side, req.price, req.count)

    def _send_amend(self, pipe: MarketPipeline, o: Order, price: int, trigger_ns: int) -> None:
        pipe.in_flight += 1
        session = self.session
        quick = getattr(session.rest, "amend_quote_now", None)
        if quick is not None and o.order_id is not None:
            # one call, one completion object (rest.amend_quote_now); else Session.amend_now's closures
            written = quick(o.order_id, o.ticker, o.side, price, int(o.pending_count or 0), o.client_order_id,
                            self._amend_done, (pipe, o), session.spawn)
            if written:
                session.amends_sent += 1
                session.inflight_now += 1
                if pipe.tape_trigger_ns != trigger_ns:
                    self._stamp_now(pipe, trigger_ns, written)
                return
        written = session.amend_now(o, price, lambda: self._done(pipe))
        if written:
            self._stamp_now(pipe, trigger_ns, written)
            return
        pipe.in_flight -= 1
        self._send(pipe, self._do_amend(pipe, o, price, trigger_ns), trigger_ns)

    def _send_cancel(self, pipe: MarketPipeline, order_id: str, trigger_ns: int) -> None:
        pipe.in_flight += 1
        written = self.session.cancel_now(order_id, pipe.ticker, lambda: self._done(pipe))
        if written:
            self._stamp_now(pipe, trigger_ns, written)
            return
        pipe.in_flight -= 1
        self._send(pipe, self._do_cancel(pipe, order_id, trigger_ns), trigger_ns)

    def _send_decrease(self, pipe: MarketPipeline, order_id: str, reduce_to: int, trigger_ns: int) -> None:
        self._send(pipe, self._do_decrease(pipe, order_id, reduce_to, trigger_ns), trigger_ns)

    def _stamp_now(self, pipe: MarketPipeline, trigger_ns: int, written_ns: int) -> None:
        if pipe.tape_trigger_ns != trigger_ns:
            try:
                self._issued(pipe, trigger_ns, written_ns, 0)
            except Exception:   # records must never fail the request whose bytes were just written
                log.exception("%s: recording the decision after its write failed", pipe.ticker)

    def _send(self, pipe: MarketPipeline, coro: Any, trigger_ns: int) -> None:
        """Start a request now: the connector writes its bytes before this returns (eager start).

        The decision's latency (frame received -> request issued) is stamped when the first request's
        bytes have been written (``transport.write`` returned; :data:`kmm.kalshi.fasthttp.ON_WRITE`),
        which is also when a request that had to wait (for a connection, the limiter, a signature)
        is stamped, later. The tape row of the decision is built after the write."""
        pipe.in_flight += 1
        if pipe.tape_trigger_ns == trigger_ns:
            self.session.spawn(coro, eager=True)    # the decision's latency is stamped already
            return
        if getattr(self.rest, "fast", None) is None:
            # no order-path client (the bytes go through aiohttp later, or paper mode, where the
            # request never leaves): stamp when the request started
            self.session.spawn(coro, eager=True)
            self._issued(pipe, trigger_ns, self.clock.monotonic_ns())
            return
        token = ON_WRITE.set(_IssuedStamp(self, pipe, trigger_ns))
        try:
            self.session.spawn(coro, eager=True)
        finally:
            ON_WRITE.reset(token)

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
    # The request coroutines take the decision's trigger (frame receive time) last: tools that follow
    # a decision to its bytes (bench/bench_engine.py) read it there.
    def _issued(self, pipe: MarketPipeline, trigger_ns: int, issued_ns: int, waited_ns: int = 0) -> None:
        """The first request of a decision was written (``issued_ns``: after its bytes were written),
        having waited ``waited_ns`` for the write budget or a connection: frame received -> request
        written, less that wait (kept apart in :attr:`budget_wait_ns`)."""
        if pipe.tape_trigger_ns == trigger_ns:
            return
        pipe.tape_trigger_ns = trigger_ns
        self.stamped += 1
        if waited_ns > 0:
            self.budget_wait_ns.append(waited_ns)
        else:
            waited_ns = 0
        latency = issued_ns - trigger_ns - waited_ns
        self._latency_ns.append(latency)
        self._latency_at.append((issued_ns, latency))
        if pipe.decided_ns and pipe.trigger_ns == trigger_ns:
            self.send_ns.append(issued_ns - pipe.decided_ns - waited_ns)
        if self.recorder is not None:
            # the row is built after the decision's other requests are written, not between them
            self._later(self._tape, pipe, "decision", None, latency)

    async def _do_place(self, pipe: MarketPipeline, o: Order, req: OrderRequest, trigger_ns: int = 0) -> None:
        try:
            outcome = await self.session.place(o, req)
            self._after_place(pipe, o, outcome, self.session.last_refusal)
        finally:
            self._done(pipe)

    def _after_place(self, pipe: MarketPipeline, o: Order, outcome: str, exc: Any) -> None:
        """What a create's outcome means for the quoting (single or batched)."""
        session = self.session
        if outcome == S.PLACED:
            pipe.hold_s = 0.0
            oid = self.om.get(o.client_order_id)
            ack_id = oid.order_id if oid is not None else None
            if ack_id is not None and oid is not None and oid.is_live and (
                    not self.quoting or self.stopping or not pipe.ready
                    or not self.gate.is_quotable(pipe.ticker)):
                # quotes were pulled (stale book, lost connection, kill switch, pause, stop) while
                # this create was in flight: take it down now
                if self.om.request_cancel(ack_id) is not None:
                    pipe.in_flight += 1
                    session.spawn(self._do_cancel(pipe, ack_id), eager=True)
        elif outcome == S.GROUP_FIRED:
            # the exchange-side circuit breaker fired: too many contracts matched in 15 s
            self.gate.trip(f"session order group {session.group_id} triggered at the exchange; "
                           "it rejects every new order until reset")
            self._after_pnl_change()
        elif outcome == S.REFUSED:
            if exc is not None and exc.code.lower() != "post_only_cross":
                pipe.hold(self.clock.monotonic_ns())
                log.warning("%s: create %s refused: %s; new orders here wait %.1f s", pipe.ticker,
                            o.client_order_id, exc, pipe.hold_s)

    async def _do_cancel(self, pipe: MarketPipeline, order_id: str, trigger_ns: int = 0) -> None:
        try:
            await self.session.cancel(order_id, pipe.ticker)
        finally:
            self._done(pipe)

    async def _do_amend(self, pipe: MarketPipeline, o: Order, price: int, trigger_ns: int = 0) -> None:
        try:
            await self.session.amend(o, price)
        finally:
            self._done(pipe)

    async def _do_decrease(self, pipe: MarketPipeline, order_id: str, reduce_to: int,
                           trigger_ns: int = 0) -> None:
        try:
            await self.session.decrease(order_id, reduce_to)
        finally:
            self._done(pipe)

    # ================================================================================== kill switch
    def _start_kill_sweep(self) -> None:
        if self._kill_sweep_running:
            return
        self._kill_sweep_running = True
        if self.rest is not None:
            self.rest.limiter.drop_waiting("kill switch")   # places still queued are never sent

        async def sweep() -> None:
            try:
                await self.session.cancel_everything(f"kill switch: {self.gate.kill_reason}")
                if not self.session.live_with_id():
                    self.gate.on_cancel_sweep_done()   # else still tripped: housekeeping sweeps again
            finally:
                self._kill_sweep_running = False
        self.session.spawn(sweep())

    def _after_pnl_change(self, ticker: str | None = None) -> None:
        """The kill switch after P&L moved: an event's positions alone past ``max_event_loss``
        (``ticker``'s event after its fill, else every event: the housekeeping tick checks them all),
        the session's loss limit, and a re-arm after its cool-down."""
        was = self.gate.kill_state
        why = self.event_risk.kill_signal(ticker)   # an event's positions alone past max_event_loss
        if why and was is KillState.ARMED:
            self.gate.trip(why)
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

    _batch: list[tuple[Any, Order, OrderRequest, int]] | None = None

    def _requote_all(self) -> None:
        """Requote every ready market (start, resume after a pause, a kill-switch resume, a reconnect).
        When that places in more than three markets the creates go in batched requests
        (``protocol.BATCH_CREATE_MAX`` a request), with the same unknown-outcome handling as single ones."""
        now = self.clock.monotonic_ns()
        ready = [p for p in self.pipes.values() if p.ready]
        if not self.opt.batch_creates or len(ready) <= 3 or self._batch is not None:
            for p in ready:
                self._requote(p, now)
            return
        self._batch = []
        try:
            for p in ready:
                self._requote(p, now)
        finally:
            batch, self._batch = self._batch, None
        if len({id(b[0]) for b in batch}) <= 3:
            for pipe, o, req, trig in batch:
                pipe.in_flight -= 1                  # _send counts it again
                self._send_place(pipe, o, req, trig)
            return
        issued = self.clock.monotonic_ns()
        # a batch must fit the write bucket (Kalshi refuses a larger one): 8 creates on Basic
        per = min(protocol.BATCH_CREATE_MAX, self.rest.limiter.batch_room()) if self.rest is not None \
            else protocol.BATCH_CREATE_MAX
        for i in range(0, len(batch), per):
            chunk = batch[i:i + per]
            fair = FAIR_KEY.set(tuple(dict.fromkeys(b[0].ticker for b in chunk)))   # its markets
            try:
                self.session.spawn(self._do_place_batch(chunk), eager=True)
            finally:
                FAIR_KEY.reset(fair)
        for pipe, _, _, trig in batch:
            self._issued(pipe, trig, issued)

    async def _do_place_batch(self, chunk: list[tuple[Any, Order, OrderRequest, int]]) -> None:
        try:
            outcomes = await self.session.place_batch([(o, req) for _, o, req, _ in chunk])
        except BaseException:
            for pipe, *_ in chunk:
                self._done(pipe)
            raise
        for (pipe, o, _, _), (outcome, exc) in zip(chunk, outcomes):
            try:
                self._after_place(pipe, o, outcome, exc)
            finally:
                self._done(pipe)

    # ================================================================================== operator
    def operator_trip(self, reason: str = "operator") -> None:
        """Trip the kill switch by hand (``kill -USR2 <pid>`` in ``kmm run``): cancel all and pause."""
        self.gate.trip(reason)
        self._after_pnl_change()

    def operator_resume(self) -> None:
        """Re-arm the kill switch by hand (``kill -USR1 <pid>`` in ``kmm run``) and quote again; a
        session order group that fired is reset first."""
        self._event("operator_resume")
        if self.session.group_fired and self.group_id is not None and self.rest is not None:
            self.session.spawn(self._reset_group_then_resume())
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
        self.session.group_fired = False
        log.warning("session order group %s reset by the operator", self.group_id)
        self.gate.operator_resume()
        self._requote_all()

    # ================================================================================== records, view
    def _tape(self, pipe: MarketPipeline | None, event: str, fill: Fill | None = None,
              latency_ns: int | None = None) -> None:
        if self.recorder is None or pipe is None:
            return
        # the raw field tuple (TapeRow's order); the writer thread builds the row object and its text
        t = pipe.ticker
        self.recorder.tape.write_raw(engine_fields(self.clock.time_ns(), t, event, pipe.inputs, pipe.target,
                                                   self.om.live_orders(t), self.pf, latency_ns, fill))

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

    def _booked(self, fill: Fill) -> None:
        """A fill the portfolio booked (feed or backfill, once per trade_id): the session's figures."""
        if self.spnl is not None:
            self.spnl.on_fill(fill)
        self.mstats.on_fill(fill)

    def session_pnl(self, ticker: str | None = None) -> PnlFigures:
        """This session's P&L (all markets, or ``ticker``): 0 at start whatever the account carried."""
        if self.spnl is None:
            return PnlFigures("session", 0, 0, 0)
        return self.spnl.session() if ticker is None else self.spnl.session_for(ticker)

    def lifetime_pnl(self) -> PnlFigures:
        pf = self.pf
        return PnlFigures("lifetime", pf.realized_pnl(), pf.unrealized_pnl(), pf.fees_paid())

    def check_latency(self, now_ns: int, min_samples: int = 20) -> str:
        """The "high latency" warning: frame -> request written p99 over the last ``[run]
        latency_window_s`` above ``[run] latency_warn_us``, with the figure; logged when it starts and
        when it ends. Time a request stood waiting for the write budget is not in the figure (a
        throttled account is not a slow engine; the summary reports the waits apart)."""
        run = self.cfg.run
        if run.latency_warn_us <= 0:
            return ""
        since = now_ns - int(run.latency_window_s * NS_PER_S)
        # newest first, stopping at the first sample older than the window (samples are appended as their
        # requests are written): O(window), not O(run); a scan of the whole deque (200,000 samples after
        # about an hour of busy quoting) held the loop 2.3 ms warm at every check, once a second
        recent: list[int] = []
        for at, lat in reversed(self._latency_at):
            if at < since:
                break
            recent.append(lat)
        recent.sort()
        warn = ""
        if len(recent) >= min_samples:
            p99_us = recent[min(len(recent) - 1, int(0.99 * len(recent)))] / 1000.0
            if p99_us > run.latency_warn_us:
                warn = (f"high latency: frame -> request p99 {p99_us:,.0f} us over the last "
                        f"{run.latency_window_s:g} s ({len(recent)} decisions, write-budget waits "
                        f"excluded; threshold {run.latency_warn_us:,.0f} us)")
        if warn and not self.high_latency:
            log.warning("%s", warn)
            self._event("high_latency", detail=warn)
        elif self.high_latency and not warn:
            log.info("latency back under the threshold (was: %s)", self.high_latency)
        self.high_latency = warn
        return warn
    def signature_stats(self) -> dict[str, int] | None:
        """The signature pool's counters over the run: ``write_fallbacks`` (writes signed inline on the
        loop's thread) is the figure that stays 0 in steady state (reads are signed inline by design:
        ``unpooled_reads``); ``fallbacks`` counts both. None without a pool."""
        rest = self.rest
        pool = getattr(rest, "pool", None) if rest is not None else None
        if pool is None:
            return None
        st = pool.stats
        return {"hits": st.hits, "waited": st.waited, "misses": st.misses, "unpooled": st.unpooled,
                "unpooled_reads": st.unpooled_reads, "fallbacks": st.fallbacks,
                "write_fallbacks": st.write_fallbacks, "made": st.made}

    def latency_percentiles(self, recent: int | None = None) -> tuple[float | None, float | None, float | None]:
        """Frame received -> first request written (budget waits excluded), us: p50, p99, p99.9 over the
        run (the summary), or over the last ``recent`` decisions (the console and the status line)."""
        samples = self._latency_ns
        if recent is not None and len(samples) > recent:
            return _percentiles_us(itertools.islice(reversed(samples), recent))
        return _percentiles_us(samples)

    def latency_stats(self) -> dict[str, Any]:
        """The run's latencies for summary.json (``details.latency``), in us: frame -> written and
        decided -> written, both without the write-budget waits, and the waits themselves
        (``budget_wait``: how many decisions waited of all stamped, and their percentiles)."""
        def dist(samples: Iterable[int]) -> dict[str, Any]:
            s = list(samples)
            p50, p99, p999 = _percentiles_us(s)
            return {"n": len(s), "p50_us": p50, "p99_us": p99, "p999_us": p999,
                    "max_us": max(s) / 1000.0 if s else None}
        waits = dist(self.budget_wait_ns)
        waits["decisions"] = self.stamped
        return {"frame_to_written": dist(self._latency_ns), "decided_to_written": dist(self.send_ns),
                "frame_to_decided": dist(self.decide_ns), "update_to_decided": dist(self.update_decide_ns),
                "budget_wait": waits,
                "note": "frame_to_written and decided_to_written exclude the time a decision's first request "
                        "waited for the write budget (limiter queue, 429 pause) or a free connection: "
                        "budget_wait"}

    def snapshot(self) -> Snapshot:
        # the last VIEW_LATENCY_SAMPLES decisions: the console redraws twice a second, on the loop, and
        # sorting the run's 200,000 samples (an hour of busy quoting) took ~10 ms warm each time
        p50, p99, _ = self.latency_percentiles(recent=VIEW_LATENCY_SAMPLES)
        rows = []
        for t, p in self.pipes.items():
            live = self.om.live_orders(t)
            bid = next((o for o in live if o.side == "bid"), None)
            ask = next((o for o in live if o.side == "ask"), None)
            state = p.state if t not in self.blocked else f"blocked: {self.blocked[t]}"
            sp = self.session_pnl(t)       # the session's, never the account's lifetime figures
            rows.append(MarketRow(t, p.inputs.best_bid or None, p.inputs.best_ask or None,
                                  bid.price if bid else None, ask.price if ask else None,
                                  bid.remaining if bid else 0, ask.remaining if ask else 0,
                                  self.pf.position(t), sp.realized - sp.fees, sp.unrealized, p.fills, state,
                                  incentive=self.incentives.label(t)))
        pressure = self.rest.limiter.pressure() if self.rest is not None else 0.0
        kill = self.gate.kill_state
        notes = [] if kill is KillState.ARMED else [f"kill switch {kill.value}"]
        if self.session.pause:
            notes.append(f"exchange {self.session.pause} pause")
        if self.high_latency:
            notes.append(self.high_latency)
        return Snapshot(elapsed_s=(self.clock.monotonic_ns() - self._started_ns) / NS_PER_S, venue=self.venue,
                        markets=rows, cash=self.pf.cash, fees=self.session_pnl().fees, fills=self.fills,
                        orders_sent=self.orders_sent, write_pressure=pressure,
                        latency_p50_us=p50, latency_p99_us=p99, note="; ".join(notes),
                        events=self.event_views(), incentives=self.incentives.brief())

    def event_views(self) -> list[EventView]:
        """The per-event roll-up (worst first): positions, worst case, exposure, session P&L."""
        def pnl(t: str) -> int:
            return self.session_pnl(t).net
        return self.event_risk.views(pnl, self.pipes, lambda ev: self.incentives.event_label(
            self.event_risk.gate.events[ev].markets))

    def draw(self) -> None:
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
    async def _shutdown(self) -> RunSummary:
        """Stop quoting, then the session's stop: cancels first (escalating), verification over REST in
        every market, requests drained, the order group deleted, positions and cash checked."""
        self.stopping = True
        self.quoting = False
        self.housekeeping.stop()
        self.recovery.stop()
        s = self.session
        s.stopping = True
        res = S.StopResult()
        rest = s.rest
        if self._not_started is not None:
            log.info("the start failed before anything was sent (%s): no stop sweep is needed", self._not_started)
        try:
            if rest is not None and rest.signer is not None and self._not_started is None:
                if self.cfg.run.leave_orders_on_exit:
                    log.warning("leave_orders_on_exit: orders stay resting at the exchange as asked")
                else:
                    res = await s.stop_sweep()
                await self._drain_requests(self.opt.request_drain_s)
                await s.delete_group()
                res.agrees = await s.final_check()
        except KmmError as exc:
            log.critical("stop sequence failed: %s; check the exchange for resting orders", exc)
            s.notes.append(f"stop sequence failed: {exc}")
        finally:
            await s.close()
        self._record_pnl()
        p50, p99, p999 = self.latency_percentiles()
        send, waits = _percentiles_us(self.send_ns), _percentiles_us(self.budget_wait_ns)
        sp = self.session_pnl()
        summary = RunSummary(
            venue=self.venue, duration_s=(self.clock.monotonic_ns() - self._started_ns) / NS_PER_S,
            fills=s.fills, fills_by_side=dict(s.fills_by_side), orders_sent=s.orders_sent,
            cancels_sent=s.cancels_sent, amends_sent=s.amends_sent, skipped_reprices=self.skipped_reprices,
            realized=sp.realized, unrealized=sp.unrealized, fees=sp.fees, lifetime=self.lifetime_pnl().label(),
            positions={t: self.pf.position(t) for t in self.tickers},
            resting_after_stop=res.resting_left, verified_flat_orders=res.verified, portfolio_agrees=res.agrees,
            latency_p50_us=p50, latency_p99_us=p99, latency_p999_us=p999,
            send_p50_us=send[0], send_p99_us=send[1], budget_waits=len(self.budget_wait_ns),
            decisions=self.stamped, budget_wait_p50_us=waits[0], budget_wait_p99_us=waits[1],
            risk_denials=merged_denials(self.gate.denials.items(), self.event_risk.denials.items()),
            notes=s.notes, stop_s=res.seconds, maker=self.mstats.snapshot().as_dict(),
            events=[v.as_dict() for v in self.event_views()], incentives=self.incentives.summary(),
            not_started=self._not_started, signatures=self.signature_stats())
        log.info("%s", summary.render())
        return summary

    async def _drain_requests(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        pending = self.session.pending_tasks()
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
        while self.session.inflight_now > 0 and loop.time() < end:   # requests answered by callback
            await asyncio.sleep(0.01)


Maker = Engine
