"""``kmm backtest``: replay captures through the engine's own parts against the fill simulator.

The quoting is the live engine's: the same compiled ``BookRouter`` applies the recorded frames to the
same compiled ``OrderBook``; the same ``MarketPipeline`` (signals, strategy, ``Differ``), ``RiskGate``,
``OrderManager`` and ``Portfolio`` decide and account. What replaces the exchange is
:class:`~kmm.research.fills.FillSimulator`, and what replaces the event loop is a synchronous loop over
the capture's frames with a heap of timed events (order arrivals and answers, from the
:class:`~kmm.research.latency.LatencyModel`) on a simulated clock (the engine's ``Clock`` interface:
monotonic = the frames' receive times, wall = their recorded wall times).

The glue between those parts (when to decide, in-flight requests per market, pulls on a stale book,
the kill switch sweep) follows ``kmm.engine.live.Engine`` step by step; it is kept here, synchronous,
until the engine's session object can drive a simulated venue (then this module runs on it).

Deterministic: the same captures, config, options and seed give the same records and summary (the
seed drives latency draws and the client_order_id session prefix).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kmm._core import diff as _diff
from kmm._core.book import OrderBook
from kmm._core.fixed import parse_count, parse_price, parse_signed_count
from kmm._core.grid import Grid
from kmm._core.ofi import OFI
from kmm._core.replay import Decider, EventHeap, PickoffHazard, ReplayClock, ReplayLoop, RequestFlow
from kmm._core.wire import DELTA, GAP, MALFORMED, NOT_BOOK, SNAPSHOT, BookRouter
from kmm.config import KmmConfig
from kmm.engine.live import EngineOptions
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.engine.eventwire import EventWiring
from kmm.engine.orders import LiveOrder, OrderManager
from kmm.engine.quoting import QuotePlanner, small_reprices_only
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import KillState, RiskGate
from kmm.errors import KmmError
from kmm.kalshi import limiter as _lim
from kmm.kalshi.decode import MAX_ID_LEN, decode_lifecycle, decode_trade
from kmm.kalshi.limiter import RateLimiter
from kmm.kalshi.types import Fill
from kmm.record.capture import GAP_TYPE, capture_files, read_capture, read_market_defs
from kmm.record.summary import build_summary, write_summary
from kmm.record.tape import engine_fields
from kmm.research.adverse import ALL, BUCKETS, PickoffFit, PickoffModel
from kmm.research.events import load_frames
from kmm.research.fills import LINEAR_CENT, FillSimulator, MarketDef, _new_ack
from kmm.research.latency import Dist, LatencyModel, fit_key, fit_latency, model_from_payload, model_payload
from kmm.research.queue import QueueModel
from kmm.research import replaycache
from kmm.research.replaycache import FEED, OTHER, OWN, REPORT, TRADE
from kmm.research.writequeue import ReplayWriteQueue
from kmm.strategy.alpha import AlphaSource
from kmm.strategy.base import Strategy
from kmm.strategy.inside import InsideStrategy
from kmm.strategy.stoikov import StoikovStrategy

log = logging.getLogger("kmm.research.backtest")

NS_PER_S = 1_000_000_000
SWEEP_NS = 1_000_000        # the prints of one taker order arrive within this (receive time)
PLACE, AMEND, DECREASE, CANCEL = _diff.PLACE, _diff.AMEND, _diff.DECREASE, _diff.CANCEL


@dataclass(slots=True)
class BacktestOptions:
    """Replay knobs (``--set backtest.KEY=VALUE`` on the command line)."""

    queue_model: str = "power"          # pessimistic | proportional | power | log | optimistic
    queue_power: float = 2.0
    feed_latency: str = "1ms"           # NS | const:NS | lognormal:MEDIAN:SIGMA (units ns/us/ms/s)
    entry_latency: str = "1ms"
    response_latency: str = "1ms"
    latency_from: str = ""              # a kmm run directory: fit all three latencies from it
    trade_window_ms: float = 5.0        # a level decrease and a trade this close are one event
    book_only: bool = False             # apply the book and nothing else (replay speed of the book)
    progress_every_s: float = 2.0       # wall seconds between progress reports
    housekeeping_s: float = 0.25        # simulated seconds between kill-switch / mark ticks
    rate_tier: str = ""                 # write budget of the account (basic, advanced, ...; off: none);
                                        # empty: [sim] rate_tier, the budget kmm run had on the sim
    settle: dict[str, str] = field(default_factory=dict)   # ticker -> yes|no at the end of the replay
    preload_mb: float = 512.0           # capture files up to this size are decompressed whole (faster)
    replay_cache: str = ""              # decoded capture cache: "" beside the capture, "off", or a directory
    pickoff: str = "fitted"             # adverse selection: none | fitted | rate:X | always (research/adverse.py)
    pickoff_min_cents: float = 0.5      # staleness (cents beyond the others' mid) that draws pick-offs
    quote_from_ns: int = 0              # wall ns: no decision before (0: from the first book); and at
    quote_until_ns: int = 0             # wall ns every quote is pulled and none made after (0: the end).
                                        # compare_run sets both to the recorded run's own (its start-up
                                        # and stop: live_window), when the live engine made no quote

    @classmethod
    def from_pairs(cls, pairs: dict[str, str]) -> BacktestOptions:
        o = cls()
        for k, v in pairs.items():
            if k == "settle":
                o.settle = dict(item.split("=", 1) for item in v.split(",") if item)
                continue
            if not hasattr(o, k):
                raise KmmError(f"backtest.{k}: unknown backtest option; known: "
                               f"{', '.join(f for f in cls.__dataclass_fields__)}")
            cur = getattr(o, k)
            if isinstance(cur, bool):
                setattr(o, k, v.lower() in ("1", "true", "yes", "on"))
            elif isinstance(cur, float):
                setattr(o, k, float(v))
            elif isinstance(cur, int):
                setattr(o, k, int(v))
            else:
                setattr(o, k, v)
        return o

    def latency(self) -> LatencyModel:
        if self.latency_from:
            return fit_latency(self.latency_from)
        return LatencyModel(Dist.parse(self.feed_latency), Dist.parse(self.entry_latency),
                            Dist.parse(self.response_latency), source="configured")


def load_market_defs(captures: Sequence[Path], tickers: Sequence[str]) -> dict[str, MarketDef]:
    """Market definitions from the ``markets.json`` beside the captures; a ticker without one replays
    on a linear-cent grid with the standard taker fee and no maker fee (logged as a warning)."""
    raw: dict[str, dict[str, Any]] = {}
    for c in captures:
        raw.update(read_market_defs(c))
    out: dict[str, MarketDef] = {}
    for t in tickers or list(raw):
        d = raw.get(t)
        if d is None:
            log.warning("%s: no market definition beside the capture; replaying it on a linear-cent grid "
                        "with taker fee 0.07 and no maker fee", t)
            out[t] = MarketDef(t, LINEAR_CENT)
            continue
        close = d.get("close_time_ns")
        out[t] = MarketDef(t, d.get("price_ranges") or LINEAR_CENT, int(d.get("maker_rate_e6", 0)),
                           int(d.get("taker_rate_e6", 70_000)), int(close) if close is not None else None,
                           bool(d.get("fractional", False)), str(d.get("status", "active")))
    return out


def build_strategy(cfg: KmmConfig, info: MarketInfo) -> Strategy:
    """The strategy the live engine builds for this market (kmm.engine.live.Engine._add_pipeline)."""
    params = cfg.strategy_for(info.ticker)
    if cfg.run.strategy == "inside":
        return InsideStrategy(info.grid, quote_size=params.quote_size, max_position=params.max_position)
    tick = info.grid.tick_size(5000)
    return StoikovStrategy(info.grid, gamma=params.gamma, kappa=params.kappa, quote_size=params.quote_size,
                           max_position=params.max_position, maker_fee_rate_e6=info.maker_rate_e6,
                           min_spread=params.min_spread_ticks * tick, min_edge=params.min_edge,
                           fractional=info.fractional)


OUT_FILES = ("ops.log", "tape.csv", "kmm.sqlite", "kmm.sqlite-wal", "kmm.sqlite-shm", "summary.json")


def prepare_out(out: Path) -> None:
    """A backtest writes into a fresh directory. One that holds an earlier backtest's records (its
    summary.json says so) is cleared of them; one that holds anything else of kmm's is refused."""
    from kmm.record.summary import read_summary
    if not out.exists():
        return
    present = [n for n in OUT_FILES if (out / n).exists()]
    if not present:
        return
    try:
        mode = read_summary(out).get("mode")
    except (OSError, ValueError):
        mode = None
    if mode != "backtest":
        raise KmmError(f"{out} already holds {', '.join(present)} of another run: give kmm backtest a new "
                       "--out directory (a backtest never mixes its records with a live run's)")
    for n in present:
        (out / n).unlink()


class Backtest:
    """One replay. ``run()`` returns the summary dict (and writes the records when ``out`` is given)."""

    def __init__(self, captures: Sequence[Path], cfg: KmmConfig, out: Path | None, *, seed: int = 0,
                 options: BacktestOptions | None = None, progress: Callable[[float], None] | None = None,
                 strategy_factory: Callable[[MarketInfo], Strategy] | None = None,
                 core: tuple[Callable[[], Any], Callable[[Any], Any], Callable[[], Any]] | None = None,
                 fit_pass: bool = False, frames_cache: dict[Any, Any] | None = None,
                 python_pipeline: bool = False, fast: bool = True, compiled_loop: bool = True) -> None:
        """``core``: (router factory, book factory taking a Grid, OFI factory) in place of the compiled
        ``BookRouter``/``OrderBook``/``OFI`` (the benchmark's plain-Python baseline uses it).
        ``fit_pass``: replay the book without quoting and measure the recorded run's own quotes for the
        pick-off model (``self.sim.fit``). ``python_pipeline``: the market pipelines run their plain-Python
        signals and strategy (``MarketPipeline(compiled=False)``; the benchmark's baseline), with the OFI
        from ``core``. ``fast``: replay from the decoded capture cache (:mod:`kmm.research.replaycache`)
        with the lean per-message path; False: the reference path (raw frames, every message through
        the same steps as the live engine's loop), which must give the very same replay.
        ``compiled_loop``: with ``fast``, the per-record loop is the compiled
        :class:`kmm._core.replay.ReplayLoop` (False: the same loop in Python, :meth:`_replay_fast`);
        both must give the very same replay as the reference path."""
        self._t_start = time.perf_counter()     # the replay's speed counts its fitting pass too
        self._python_pipeline = python_pipeline
        self.fast = fast
        self.compiled_loop = fast and compiled_loop
        self.decode_s = 0.0         # decoding the capture files the first time (cached or now)
        self.load_s = 0.0           # what getting them cost this replay
        self.cache_hits = 0
        self.files: list[Path] = [f for c in captures for f in capture_files(c)]
        if not self.files:
            raise KmmError(f"no capture files in {', '.join(map(str, captures))}: give capture.bin.gz files "
                           "or directories holding them")
        self.cfg = cfg
        self.out = out
        self.opt = options or BacktestOptions()
        # decompressed capture files, shared with the pick-off model's fitting pass (decoded once)
        self._frames_cache: dict[Any, Any] = frames_cache if frames_cache is not None else {}
        self.progress = progress
        self.rng = random.Random(seed)
        self.seed = seed
        self.clock = ReplayClock()
        self.latency_fit_s = 0.0        # fitting the latency model (latency_from; its first time, when cached)
        self.latency_cached = False     # the fitted latency model came from the replay cache
        self.latency = self._latency_model()
        self.defs = load_market_defs([Path(c) for c in captures], list(cfg.run.markets))
        self.tickers = tuple(self.defs)
        self.sim = FillSimulator(self.defs, QueueModel(self.opt.queue_model, self.opt.queue_power),
                                 trade_window_ns=int(self.opt.trade_window_ms * 1e6), compiled=self.compiled_fills)
        self.sim.rng = random.Random(f"pickoff:{seed}")
        self.fit_pass = fit_pass
        self.pickoff_fit_s = 0.0        # the pick-off model's fitting pass (its first time, when cached)
        self.pickoff_cached = False     # the model came from the replay cache (no fitting pass this time)
        if fit_pass:
            self.sim.fit = PickoffFit(self.opt.pickoff_min_cents)
        else:
            self.sim.pickoff = self._pickoff_model(captures, cfg, core)
        self.om = OrderManager(self.clock, session=f"bt{seed}", unknown_order_policy="cancel")
        self.pf = Portfolio(mark=cfg.risk.pnl_mark, cash_rounding=cfg.risk.cash_rounding)
        self.pf.set_cash(cfg.sim.balance)
        self.gate = RiskGate(cfg.risk_limits(), self.clock, self.pf, self.om)
        # the live maker's decision -> requests step (no events learnt: the event limits pass)
        self.event_risk = EventWiring(cfg, self.pf, self.om)
        self.planner = QuotePlanner(self.gate, self.om, self.pf, self.event_risk)
        new_router, new_book, new_ofi = core or (BookRouter, OrderBook,
                                                 lambda: OFI(window_ns=10 * NS_PER_S, half_life_ns=5 * NS_PER_S))
        self.router = new_router()
        self.alpha = AlphaSource()
        self.pipes: dict[str, MarketPipeline] = {}
        self.books: dict[str, OrderBook] = {}
        for t, d in self.defs.items():
            grid = Grid(list(d.price_ranges))
            book = new_book(grid)
            self.router.add(t, book)
            self.books[t] = book
            self.sim.attach_book(t, book)
            info = MarketInfo(t, grid, d.close_time_ns, d.fractional, d.maker_rate_e6, d.taker_rate_e6, d.status)
            self.gate.add_market(t, grid, close_time_ns=d.close_time_ns, fractional=d.fractional)
            strategy = strategy_factory(info) if strategy_factory else build_strategy(cfg, info)
            if python_pipeline:
                pipe = MarketPipeline(info, book, strategy, cfg.strategy_for(t), self.alpha, None, compiled=False)
                pipe.ofi = new_ofi()
            else:
                pipe = MarketPipeline(info, book, strategy, cfg.strategy_for(t), self.alpha, new_ofi())
            self.pipes[t] = pipe
        self.events: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._heap: EventHeap | None = None
        if self.compiled_events and self._own("_at", "_run_events"):
            # the compiled heap's at/run in place of the methods (the same steps)
            self._heap = EventHeap(self.clock, self.events)
            self._at = self._heap.at                    # type: ignore[method-assign]
            self._run_events = self._heap.run           # type: ignore[method-assign]
        self.quoting = not fit_pass
        self._window = bool(self.opt.quote_from_ns or self.opt.quote_until_ns) and not fit_pass
        self._window_end_set = False
        self.recorder: Any = None
        self.fills: list[Fill] = []
        self.orders_sent = self.cancels_sent = self.amends_sent = self.decreases_sent = 0
        self.book_messages = 0
        self.frames = 0
        self.gaps = 0
        self.malformed = 0
        self.decisions = 0
        self._kill_sweeping = False
        self._next_house = 0
        self._next_mark = 0
        self._next_pnl = 0
        tier = self.opt.rate_tier or cfg.sim.rate_tier
        # the live connector's token buckets on the replay clock: requests wait for write tokens
        self.limiter = None if tier == "off" else RateLimiter.for_tier(tier, clock_ns=self.clock.monotonic_ns)
        eo = EngineOptions()
        self.reprice_pressure = eo.reprice_pressure
        self.reprice_min_ticks = eo.reprice_min_ticks
        for p in self.pipes.values():
            p.skip_reprice_px = eo.reprice_min_ticks * p.info.grid.tick_size(5000)
        self.skipped_reprices = 0
        self.rate_waits = 0
        self._writeq = ReplayWriteQueue(self.limiter) if self.limiter is not None else None
        self._dispatch_at = 0
        self.decision_latency_ns: list[int] = []
        self._held: dict[str, Fill] = {}      # fills of the taker sweep being printed (trade_id -> fill)
        self._held_until = 0
        self._held_key: tuple[str, str, int] | None = None
        # the fast path's live orders per market, valid while the market's generation ``_mgen[t]`` is
        # unchanged (every step that can change the market's orders in the order manager moves it on:
        # its requests, their answers, its fills; housekeeping moves every market's on)
        self._gen = 0
        self._mgen: dict[str, int] = dict.fromkeys(self.pipes, 0)
        self._live_cache: dict[str, tuple[int, list[LiveOrder]]] = {}
        # per market: (pipeline, the simulator's resting orders, the compiled pipeline core or None,
        # the gate's market state, whether the pipeline reads trades)
        self._fast_markets: dict[str, tuple[MarketPipeline, dict[str, Any], Any, Any, bool]] = {}
        self._pickoff_on = False
        # the pick-off step the driver's own steps call (_trade, _housekeeping): the simulator's
        # after_event, or in the compiled loop the compiled PickoffHazard (the same step)
        self._hazard: PickoffHazard | None = None
        self._after_event = self.sim.after_event
        self._marks: dict[str, tuple[int | None, int | None]] = {}    # the fast path's last set_mark
        # every book message of a replay takes one path (so the fast path's kept state stays whole)
        self._on_book_fn = self._on_book_fast if fast else self._on_book
        self._flow: RequestFlow | None = None
        self._decider: Decider | None = None      # set by a compiled replay (_replay_fast)
        if self._heap is not None and self.compiled_requests and \
                self._own("_send", "_depart", "_dispatch", "_leave", "_arrive", "_answer"):   # the same steps, compiled
            self._flow = f = RequestFlow(self, self._heap)
            self._send = f.send                 # type: ignore[method-assign]
            self._depart = f.depart             # type: ignore[method-assign]
            self._dispatch = f.dispatch         # type: ignore[method-assign]
            self._leave = f.leave               # type: ignore[method-assign]
            self._arrive = f.arrive             # type: ignore[method-assign]
            self._answer = f.answer             # type: ignore[method-assign]

    #: tests: on every book message the fast path compares its cached live orders with a fresh list
    check_live_cache = False
    #: the timed events on the compiled :class:`kmm._core.replay.EventHeap` (False: :meth:`_at` and
    #: :meth:`_run_events` in Python, its reference; every path of a replay uses the same)
    compiled_events = True
    #: the compiled loop takes a trade that reaches our orders through its own copy of :meth:`_trade`'s
    #: steps (``ReplayLoop._trade_reaching``; False: this method, as the other paths do)
    compiled_trades = True
    #: a request's way (:meth:`_send`, :meth:`_depart`, :meth:`_dispatch`, :meth:`_leave`, :meth:`_arrive`,
    #: :meth:`_answer`) on the compiled :class:`kmm._core.replay.RequestFlow` (False: these methods; with
    #: the compiled event heap only)
    compiled_requests = True
    #: the compiled loop tracks the recorded run's own resting sizes itself (the simulator's
    #: ``apply_recorded_delta`` for an own delta; False: that method)
    compiled_own = True
    #: the compiled loop's decisions and fills (:meth:`_requote`, :meth:`_apply`, :meth:`_on_fill`,
    #: :meth:`_after_pnl_change`, :meth:`_deliver_held`, :meth:`_housekeeping`) on the compiled
    #: :class:`kmm._core.replay.Decider`
    #: (False: these methods; the Python fast loop and the reference path always run them)
    compiled_decisions = True
    #: the fill simulator's hot steps on the compiled :class:`kmm._core.fillsim.FillCore` (False: the
    #: simulator's plain-Python methods, their reference; every path of a replay may take either)
    compiled_fills = True

    def _own(self, *names: str) -> bool:
        """Whether this replay runs ``Backtest``'s own methods ``names``: a subclass that overrides one
        (``kmm.research.placement.PlacementReplay._arrive``) keeps the Python steps, which call it."""
        cls = type(self)
        return all(getattr(cls, n) is getattr(Backtest, n) for n in names)

    def _original(self, *names: str) -> bool:
        """Whether this replay runs the methods ``names`` as this module defines them: neither a
        subclass's override nor one patched onto the class (a test's spy) in their place."""
        cls = type(self)
        return all(getattr(cls, n) is _ORIGINAL[n] for n in names)

    def _latency_model(self) -> LatencyModel:
        """The replay's latency model. Fitted from a run (``latency_from``), the fast path keeps it in
        the first capture's decoded cache (:func:`replaycache.store_model`), as the pick-off model,
        under :func:`kmm.research.latency.fit_key`: the content of every file of the run the fit reads
        and the fit's code, so a changed run record is fitted again. The reference path fits every time."""
        o = self.opt
        if not o.latency_from or not self.fast:
            return o.latency()
        rep = self._first_rows()
        try:
            key = fit_key(o.latency_from) if rep is not None else None
        except OSError:
            key = None          # fit_latency says what is wrong with the run directory
        if rep is not None and key is not None:
            got = rep.models.get(key)
            if isinstance(got, dict):
                try:
                    model = model_from_payload(got["model"])
                    fit_s = float(got["fit_s"])
                except (KeyError, TypeError, ValueError) as exc:
                    log.info("latency model in the replay cache unreadable (%s); fitting it again", exc)
                else:
                    self.latency_fit_s = fit_s
                    self.latency_cached = True
                    log.info("latency model from the replay cache (fitted once in %.3f s): %s", fit_s,
                             model.describe())
                    return model
        t0 = time.perf_counter()
        model = o.latency()
        self.latency_fit_s = time.perf_counter() - t0
        if rep is not None and key is not None:
            replaycache.store_model(rep, key, {"fit_s": self.latency_fit_s, "model": model_payload(model)})
        return model

    def _first_rows(self) -> replaycache.Replay | None:
        """The first capture file's decoded cache (None: streamed, or no cache file to keep a model in)."""
        path = self.files[0]
        size = path.stat().st_size
        if size > self.opt.preload_mb * (1 << 20):
            return None
        self._rows(path, size)
        rep = self._frames_cache[("rows", path)]
        return rep if rep.source_hash else None

    def _pickoff_model(self, captures: Sequence[Path], cfg: KmmConfig, core: Any) -> PickoffModel:
        """The adverse-selection model: parsed, and for any but ``none`` a fitting pass over the
        captures finds the recorded run's reaction trades (left out of the replay) and, for
        ``fitted``, the rates."""
        try:
            model = PickoffModel.parse(self.opt.pickoff, self.opt.pickoff_min_cents)
        except ValueError as exc:
            raise KmmError(f"backtest.pickoff: {exc}") from None
        if not model.active:
            return model
        if not self._has_recorded_fills():
            if model.kind == "fitted":
                log.info("pick-off model: the captures hold no fills of a recorded run to fit it from; "
                         "replaying with recorded trades only (backtest.pickoff=none)")
                return PickoffModel("none", model.min_cents)
            return model            # nothing recorded to leave out
        fitted = self._fitted_pickoff(captures, cfg, core)
        if fitted is None:          # the recorded run's fills are in none of its trades' frames
            return PickoffModel("none", model.min_cents) if model.kind == "fitted" else model
        if model.kind == "fitted":
            return fitted
        model.reaction_ids = fitted.reaction_ids
        return model

    def _fitted_pickoff(self, captures: Sequence[Path], cfg: KmmConfig, core: Any) -> PickoffModel | None:
        """The fitting pass's model (None: the captures hold no fill of the recorded run). The fast
        path keeps it in the first capture's decoded cache (:func:`replaycache.store_model`) under a
        key naming every capture's content, the options and the code the fit depends on, so later
        replays and sweep tasks of the same captures read it instead of replaying the captures once
        more. ``pickoff_fit_s``: what the fitting pass cost (the first time, when read from the cache)."""
        source = ", ".join(str(c) for c in captures[:3])
        key = self._fit_key() if self.fast else None
        rep = self._frames_cache.get(("rows", self.files[0])) if key is not None else None
        if rep is not None and key is not None:
            got = rep.models.get(key)
            if isinstance(got, dict):
                try:
                    m = PickoffModel.from_payload(got["model"]) if got["model"] is not None else None
                    fit_s = float(got["fit_s"])
                except (KeyError, TypeError, ValueError, AssertionError) as exc:
                    log.info("pick-off model in the replay cache unreadable (%s); fitting it again", exc)
                else:
                    if m is not None:
                        m.fitted_from = source
                        log.info("pick-off model from the replay cache (fitted once in %.3f s): %s", fit_s,
                                 m.describe())
                    self.pickoff_fit_s = fit_s
                    self.pickoff_cached = True
                    return m
        t0 = time.perf_counter()
        fitter = Backtest(captures, cfg, None, seed=self.seed, options=self.opt, core=core, fit_pass=True,
                          frames_cache=self._frames_cache, python_pipeline=self._python_pipeline,
                          fast=self.fast)
        fitter.run()
        fit = fitter.sim.fit
        assert fit is not None
        fitted = fit.model("fitted", source) if fit.fill_ids else None
        self.pickoff_fit_s = time.perf_counter() - t0
        if rep is not None and key is not None:
            replaycache.store_model(rep, key, {"fit_s": self.pickoff_fit_s,
                                               "model": fitted.to_payload() if fitted is not None else None})
        return fitted

    def _fit_key(self) -> str | None:
        """What the fitting pass depends on: the captures' contents (in order), the options it reads,
        the market definitions and the replay code (so an edit to the fit never meets an old model).
        None: some capture has no decoded cache (streamed, or ``replay_cache=off``)."""
        hashes = []
        for path in self.files:
            size = path.stat().st_size
            if size > self.opt.preload_mb * (1 << 20):
                return None
            self._rows(path, size)
            rep = self._frames_cache[("rows", path)]
            if not rep.source_hash:
                return None
            hashes.append(rep.source_hash)
        o = self.opt
        h = hashlib.blake2b(digest_size=16)
        h.update(orjson.dumps({"captures": hashes, "min_cents": o.pickoff_min_cents, "window_ms": o.trade_window_ms,
                               "queue": [o.queue_model, o.queue_power], "housekeeping_s": o.housekeeping_s,
                               "book_only": o.book_only,
                               "defs": repr(sorted(self.defs.items())), "code": _fit_code_hash()}))
        return "pickoff:" + h.hexdigest()

    def _deliver_held(self) -> None:
        """Hand the fills of the last taker sweep to the engine."""
        held = list(self._held.values())
        self._held.clear()
        self.sim.end_sweeps()
        for f in held:
            self._on_fill(f)

    def _frames(self, path: Path, size: int) -> Any:
        """The records of one capture file: decompressed whole (and kept for the next pass) when it is
        small enough, else streamed."""
        if size > self.opt.preload_mb * (1 << 20):
            return ((r.recv_ns, r.wall_ns, r.frame) for r in read_capture(path))
        frames = self._frames_cache.get(path)
        if frames is None:
            frames = self._frames_cache[path] = load_frames(path)
        return frames

    def _rows(self, path: Path, size: int) -> Any:
        """The fast path's records of one capture file (``replaycache`` rows): decoded once (from the
        cache file when it holds this content) and kept for the next pass; streamed and classified on
        the fly when the file is too big to hold."""
        if size > self.opt.preload_mb * (1 << 20):
            classify = replaycache.classify
            return ((r.recv_ns, r.wall_ns, *_row(classify(r.frame, _fast_trade), r.frame))
                    for r in read_capture(path))
        key = ("rows", path)
        got = self._frames_cache.get(key)
        if got is None:
            got = self._frames_cache[key] = replaycache.load(path, _fast_trade, self.opt.replay_cache)
            self.load_s += got.load_s
        return got.rows()

    def _has_recorded_fills(self) -> bool:
        """Whether the captures hold a recorded run's fill messages (streamed files: assumed so)."""
        for path in self.files:
            size = path.stat().st_size
            if size > self.opt.preload_mb * (1 << 20):
                return True
            if self.fast:
                self._rows(path, size)
                if self._frames_cache[("rows", path)].holds_fills():
                    return True
            elif any(b'"type":"fill"' in f[:24] for _, _, f in self._frames(path, size)):
                return True
        return False

    # ============================================================================ events
    def _at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t, self._seq, fn, args))

    def _run_events(self, until: int) -> None:
        ev = self.events
        clock = self.clock
        while ev and ev[0][0] <= until:
            t, _, fn, args = heapq.heappop(ev)
            if t > clock.mono:
                clock.mono = t
            fn(*args)

    # ============================================================================ the replay
    def run(self) -> dict[str, Any]:
        from kmm.record import Recorder
        if self.out is not None:
            prepare_out(self.out)
            self.recorder = Recorder.open(self.out, log_level=self.cfg.run.log_level, console=False,
                                          capture=False, logging_enabled=self.cfg.records.ops_log)
            log.info("backtest of %s (%d files) on %s, seed %d, queue %s, latency %s", ", ".join(self.tickers),
                     len(self.files), ", ".join(map(str, self.files[:3])), self.seed, self.opt.queue_model,
                     self.latency.describe())
        try:
            summary = self._replay()
        finally:
            if self.recorder is not None:
                self.recorder.close()
        if self.out is not None:
            write_summary(self.out, summary)
        return summary

    def _replay(self) -> dict[str, Any]:
        if self.fast:
            return self._replay_fast()
        sizes = [f.stat().st_size for f in self.files]
        total = sum(sizes) or 1
        done_bytes = 0
        t0 = time.perf_counter()
        next_report = t0 + self.opt.progress_every_s
        start_wall = end_wall = None
        shift = 0
        last = 0
        book_only = self.opt.book_only
        feed = self.router.feed
        clock = self.clock
        frame_fn = self._frame
        for fi, path in enumerate(self.files):
            first = True
            records: Any = self._frames(path, sizes[fi])
            for recv0, wall, frame in records:
                recv = recv0 + shift
                if first:
                    first = False
                    if recv < last:                  # another run's capture: its own monotonic base
                        shift += last - recv + NS_PER_S
                        recv = recv0 + shift
                        if fi:
                            self._gap(recv, "next capture file of another run")
                    if start_wall is None:
                        start_wall = wall
                end_wall = wall
                last = recv
                self.frames += 1
                if book_only:
                    st = feed(frame, recv)
                    if st == DELTA or st == SNAPSHOT:
                        self.book_messages += 1
                    continue
                if self._held and (recv > self._held_until or (self.events and self.events[0][0] <= recv)):
                    self._deliver_held()
                if self.events and self.events[0][0] <= recv:
                    self._run_events(recv)
                clock.mono = recv
                clock.wall_offset = wall - recv
                frame_fn(frame, recv)
                if recv >= self._next_house:
                    self._housekeeping(recv)
                if (self.frames & 4095) == 0:
                    now = time.perf_counter()
                    if now >= next_report:
                        next_report = now + self.opt.progress_every_s
                        frac = (done_bytes + sizes[fi] * 0.5) / total
                        if self.progress is not None:
                            self.progress(min(0.99, frac))
            done_bytes += sizes[fi]
        return self._end(last, start_wall, end_wall)

    def _replay_fast(self) -> dict[str, Any]:
        """The replay loop over decoded rows (``replaycache``): every record takes the branch the
        reference loop (``_replay`` with ``fast=False``) would take, without the byte tests and JSON
        the decoding did once; book messages take :meth:`_on_book_fast`."""
        sizes = [f.stat().st_size for f in self.files]
        total = sum(sizes) or 1
        done_bytes = 0
        t0 = time.perf_counter()
        next_report = t0 + self.opt.progress_every_s
        start_wall = end_wall = None
        shift = 0
        last = 0
        book_only = self.opt.book_only
        feed = self.router.feed
        clock = self.clock
        frame_fn = self._frame
        router = self.router
        on_book = self._on_book_fast
        trade = self._trade
        corrected = self.sim.corrected
        slow_delta = self._slow_delta
        ev = self.events
        held = self._held
        frames = self.frames
        next_house = self._next_house
        # per market: the pipeline and the simulator's resting orders (a dict that lives as long as the replay)
        # (a dict that lives as long as the replay), the compiled core when the pipeline's on_book is
        # only its call (MarketPipeline.on_book), the gate's state of the market (its freshness stamp)
        self._fast_markets = {t: (p, self.sim.markets[t].orders,
                                  p.core if p.compiled and not p._python_signals else None,
                                  self.gate.markets[t], bool(p.params.kappa_estimate))
                              for t, p in self.pipes.items()}
        fast_markets = self._fast_markets
        sim = self.sim
        self._pickoff_on = pick_on = sim.pickoff is not None and sim.pickoff.active   # fixed once fitted
        reaction_ids = sim.pickoff.reaction_ids if pick_on and sim.pickoff is not None else frozenset()
        quoting_trades = not self.fit_pass
        if self.compiled_loop:
            po = sim.pickoff
            if pick_on and po is not None:
                self._hazard = PickoffHazard(sim, {t: po.rates.get(t) or po.rates.get(ALL) for t in sim.markets},
                                             BUCKETS)
                self._after_event = self._hazard.after_event
            if self.compiled_decisions and self._decider is None and \
                    self._original("_requote", "_apply", "_send", "_on_fill", "_after_pnl_change", "_deliver_held",
                                   "_touch", "_small_reprices_only", "_outside_window", "_fill_records"):
                # the decision and fill glue compiled (the same steps): every caller, the driver's
                # Python steps included, takes it for the rest of this replay
                self._decider = d = Decider(self)
                self._requote = d.requote                   # type: ignore[method-assign]
                self._apply = d.apply                       # type: ignore[method-assign]
                self._on_fill = d.on_fill                   # type: ignore[method-assign]
                self._after_pnl_change = d.after_pnl_change   # type: ignore[method-assign]
                self._deliver_held = d.deliver_held         # type: ignore[method-assign]
                if self._original("_housekeeping", "_house_records"):
                    self._housekeeping = d.housekeeping     # type: ignore[method-assign]
                # what each request does at the exchange and its answer (when the decider took them)
                self._x_place, self._x_cancel = d.x_place, d.x_cancel          # type: ignore[method-assign]
                self._x_decrease, self._x_amend = d.x_decrease, d.x_amend      # type: ignore[method-assign]
            loop = ReplayLoop(self)
            self._on_book_fn = loop.on_book     # the driver's own book steps share the loop's kept state
            try:
                last, start_wall, end_wall = loop.run(self.files, sizes)
            finally:
                self._on_book_fn = self._on_book_fast
            return self._end(last, start_wall, end_wall)
        for fi, path in enumerate(self.files):
            first = True
            rows: Any = self._rows(path, sizes[fi])
            got = self._frames_cache.get(("rows", path))
            if got is not None:
                self.decode_s += got.decode_s
                self.cache_hits += got.from_cache
            for recv0, wall, kind, x, frame, lv in rows:
                recv = recv0 + shift
                if first:
                    first = False
                    if recv < last:                  # another run's capture: its own monotonic base
                        shift += last - recv + NS_PER_S
                        recv = recv0 + shift
                        if fi:
                            self._gap(recv, "next capture file of another run")
                    if start_wall is None:
                        start_wall = wall
                end_wall = wall
                last = recv
                frames += 1
                if book_only:
                    if frame:                    # tickers and trades are not book frames
                        st = feed(frame, recv)
                        if st == DELTA or st == SNAPSHOT:
                            self.book_messages += 1
                    continue
                if held and (recv > self._held_until or (ev and ev[0][0] <= recv)):
                    self._deliver_held()
                if ev and ev[0][0] <= recv:
                    self._run_events(recv)
                clock.mono = recv
                clock.wall_offset = wall - recv
                if kind == FEED:
                    if x is not None and corrected and x in corrected:
                        slow_delta(frame, recv, own=False)
                    else:
                        st = feed(frame, recv)
                        if st == DELTA:         # the common case of _route, inline
                            self.book_messages += 1
                            on_book(router.last_ticker or "", recv, lv)
                        else:
                            self._routed(st, frame, recv, on_book)
                elif kind == TRADE:
                    mk = fast_markets.get(x[1]) if quoting_trades else None
                    if mk is not None and not mk[1] and not (pick_on and x[0] in reaction_ids):
                        # no order of ours rests in this market: of _trade's steps only the end of a
                        # held sweep and the pipeline's trade signal remain (the simulator would
                        # record the outcome and return no fill; the pick-off hazard has no order)
                        if held:
                            wall_ms = x[5] or clock.time_ns() // 1_000_000
                            if (x[1], x[4], wall_ms) != self._held_key:
                                self._deliver_held()
                        if sim.keep_outcomes and x[0]:
                            sim.trade_outcomes[x[0]] = (x[1], "none")
                        if mk[4]:
                            mk[0].on_trade(x[2])
                    else:
                        trade(x, recv)
                elif kind == OTHER:
                    frame_fn(frame, recv)
                elif kind == OWN:
                    self._own_delta(x, recv)
                elif kind == REPORT:
                    if self.fit_pass:       # only a fitting pass reads the recorded run's fills
                        frame_fn(frame, recv)
                # IGNORE (replaycache.ignored): nothing for the driver
                if recv >= next_house:
                    self._housekeeping(recv)
                    next_house = self._next_house   # only housekeeping moves it
                if (frames & 4095) == 0:
                    now = time.perf_counter()
                    if now >= next_report:
                        next_report = now + self.opt.progress_every_s
                        frac = (done_bytes + sizes[fi] * 0.5) / total
                        if self.progress is not None:
                            self.progress(min(0.99, frac))
            done_bytes += sizes[fi]
        self.frames = frames
        return self._end(last, start_wall, end_wall)

    def _end(self, last: int, start_wall: int | None, end_wall: int | None) -> dict[str, Any]:
        book_only = self.opt.book_only
        if not book_only:
            if self._held:
                self._deliver_held()
            self._run_events(last + 60 * NS_PER_S)
            self._finish(last)
        elapsed = time.perf_counter() - self._t_start
        if self.progress is not None:
            self.progress(1.0)
        mps = self.book_messages / elapsed if elapsed > 0 else 0.0
        span_s = (end_wall - start_wall) / NS_PER_S if start_wall is not None and end_wall is not None else 0.0
        st = self.sim.stats
        extra = {
            "seed": self.seed, "queue_model": self.opt.queue_model, "latency": self.latency.describe(),
            "frames": self.frames, "elapsed_s": round(elapsed, 3), "replayed_span_s": round(span_s, 3),
            "speedup_vs_real_time": round(span_s / elapsed, 1) if elapsed > 0 else None,
            "decisions": self.decisions, "cancels_sent": self.cancels_sent, "amends_sent": self.amends_sent,
            "decreases_sent": self.decreases_sent, "skipped_reprices": self.skipped_reprices,
            "rate_waits": self.rate_waits, "rate_drops": self._writeq.dropped if self._writeq is not None else 0,
            "gaps": self.gaps, "malformed": self.malformed,
            "maker_fills": st.maker_fills, "taker_fills": st.taker_fills, "fills_at_level": st.fills_at_level,
            "fills_through": st.fills_through, "post_only_cancels": st.post_only_cancels,
            "queue_cancel_advance": round(st.queue_cancel_advance / 100, 2),
            "trade_advance": st.trade_advance / 100, "own_deltas_removed": st.own_deltas_removed,
            "taken_contracts": st.taken / 100, "clamped": st.clamped, "risk_denials": dict(self.gate.denials),
            "pickoff_model": self.sim.pickoff.describe() if self.sim.pickoff is not None else "fitting pass",
            "reaction_trades_left_out": st.reaction_trades, "pickoff_fills": st.pickoff_fills,
            "pickoff_contracts": st.pickoff_contracts / 100, "stale_order_s": round(st.stale_ns / 1e9, 2),
            "decision_latency_ms": _quantiles_ms(self.decision_latency_ns),
            "replay_path": ("compiled" if self.compiled_loop else "fast") if self.fast else "reference",
            "files": [str(f) for f in self.files],
        }
        return build_summary(
            mode="backtest", venue="backtest (" + ", ".join(str(f) for f in self.files[:3])
            + (", ..." if len(self.files) > 3 else "") + ")",
            markets=self.tickers, start_ns=start_wall or 0, end_ns=end_wall or 0, fills=self.fills,
            realized=self.pf.realized_pnl(), unrealized=self.pf.unrealized_pnl(), fees=self.pf.fees_paid(),
            positions={t: self.pf.position(t) for t in self.tickers}, book_messages=self.book_messages,
            orders_sent=self.orders_sent, messages_per_s=mps, extra=extra)

    # ============================================================================ frames
    def _frame(self, frame: bytes, recv: int) -> None:
        head = frame[:24]
        if b'"type":"ticker"' in head:
            return          # the engine reads nothing from ticker messages
        if b'"type":"trade"' in head:
            self._json(frame, recv)     # not a book frame: no need for the router's scan
            return
        if b'"client_order_id"' in frame:
            if b'"orderbook_delta"' in frame:
                self._slow_delta(frame, recv, own=True)
            elif self.fit_pass and b'"type":"fill"' in head:
                i = frame.find(b'"trade_id":"')
                if i >= 0:
                    assert self.sim.fit is not None
                    self.sim.fit.fill_ids.add(frame[i + 12:frame.find(b'"', i + 12)].decode())
            return          # our recorded run's fills, orders, positions: its outcome, not the replay's
        if self.sim.corrected and b'"orderbook_delta"' in frame:
            i = frame.find(b'"market_ticker":"')
            if i >= 0:
                j = frame.find(b'"', i + 17)
                if frame[i + 17:j].decode() in self.sim.corrected:
                    self._slow_delta(frame, recv, own=False)
                    return
        self._route(frame, recv, self._on_book_fn)

    def _route(self, frame: bytes, recv: int, on_book: Callable[[str, int], None]) -> None:
        """A frame for the compiled router, and what its result means for the engine."""
        router = self.router
        st = router.feed(frame, recv)
        if st == DELTA:
            self.book_messages += 1
            on_book(router.last_ticker or "", recv)
        else:
            self._routed(st, frame, recv, on_book)

    def _routed(self, st: int, frame: bytes, recv: int, on_book: Callable[[str, int], None]) -> None:
        """What a router result other than a delta means (``NOT_BOOK`` reads the frame as JSON)."""
        router = self.router
        if st == NOT_BOOK:
            self._json(frame, recv)
        elif st == SNAPSHOT:
            self.book_messages += 1
            t = router.last_ticker
            if t in self.pipes:
                self.sim.on_snapshot(t)
                pipe = self.pipes[t]
                pipe.ready = True
                self.gate.set_book_stale(t, False)
                self.gate.on_book_update(t)
                on_book(t, recv)
        elif st == GAP:
            self._gap(recv, f"seq gap on sid {router.last_sid}", sid=router.last_sid)
        elif st == MALFORMED:
            self.malformed += 1
            t = router.last_ticker
            if t in self.pipes and self.pipes[t].ready:
                self._stale(t, f"book desync: {router.last_error}")

    def _slow_delta(self, frame: bytes, recv: int, *, own: bool) -> None:
        """A delta the driver applies itself: the recorded run's own order, or a market whose replay
        book carries liquidity we took. The sid's sequence is moved on as the router would."""
        try:
            obj = orjson.loads(frame)
            msg = obj["msg"]
            t = msg["market_ticker"]
            side = 0 if msg["side"] == "yes" else 1
            price = parse_price(msg["price_dollars"])
            delta = parse_signed_count(msg["delta_fp"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.malformed += 1
            log.warning("unreadable book delta in the capture (%s): %.200r", exc, frame)
            return
        if t not in self.pipes:
            return
        self._recorded_delta(t, side, price, delta, int(obj.get("sid") or 0), int(obj.get("seq") or 0), recv, own)

    def _own_delta(self, x: tuple[str, int, int, int, int, int], recv: int) -> None:
        """A decoded own delta of the replay cache (``replaycache.OWN``: what :meth:`_slow_delta` reads
        of the frame): the same steps."""
        if x[0] in self.pipes:
            self._recorded_delta(*x, recv, True)

    def _recorded_delta(self, t: str, side: int, price: int, delta: int, sid: int, seq: int, recv: int,
                        own: bool) -> None:
        router = self.router
        if sid and seq:
            prev = router.last_seq_of(sid)
            if prev is not None and seq > prev + 1 and not router.is_stale(t):
                router.note_seq(sid, seq)
                self._gap(recv, f"seq gap on sid {sid}", sid=sid)
                return
            router.note_seq(sid, seq)
        if own:     # the recorded run's order: never in the replay book, stale or not; only tracked
            self.sim.apply_recorded_delta(t, side, price, delta, own)
            if self.fit_pass and not router.is_stale(t):
                self.sim.after_event(recv, self.clock.time_ns() // 1_000_000, t)
            return
        if router.is_stale(t):
            return
        self.sim.apply_recorded_delta(t, side, price, delta, own)
        if not own:
            self.book_messages += 1
            self._on_book_fn(t, recv)

    def _json(self, frame: bytes, recv: int) -> None:
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.malformed += 1
            return
        typ = obj.get("type") if isinstance(obj, dict) else None
        msg = obj.get("msg") if isinstance(obj, dict) else None
        if typ == "trade" and isinstance(msg, dict):
            tr = _fast_trade(msg)
            if tr is None:
                try:
                    t0 = decode_trade(msg, recv)
                except Exception:  # noqa: BLE001 - a bad frame is skipped, as live does
                    self.malformed += 1
                    log.warning("unreadable trade in the capture: %.200r", frame)
                    return
                tr = (t0.trade_id, t0.ticker, t0.price, t0.count, t0.taker_side, t0.ts_ms)
            self._trade(tr, recv)
        elif typ == "market_lifecycle_v2" and isinstance(msg, dict):
            try:
                ev = decode_lifecycle(msg, recv)
            except Exception:  # noqa: BLE001
                self.malformed += 1
                return
            if ev.ticker not in self.pipes:
                return
            if ev.event_type in ("deactivated", "determined", "settled"):
                self.gate.set_market_paused(ev.ticker, True)
                self._pull(self.pipes[ev.ticker], f"market {ev.event_type}")
            elif ev.event_type == "activated":
                self.gate.set_market_paused(ev.ticker, False)
            if ev.event_type == "settled" and ev.result in ("yes", "no"):
                self.pf.settle(ev.ticker, ev.result)
                self._tape(self.pipes[ev.ticker], "settle")
        elif typ == GAP_TYPE:
            self._gap(recv, str((msg or {}).get("reason", "connection lost")))
        elif typ == "subscribed" and isinstance(msg, dict) and msg.get("channel") == "orderbook_delta":
            if any(p.ready for p in self.pipes.values()):
                self._gap(recv, "resubscribed (reconnect)")

    def _trade(self, tr: Sequence[Any], recv: int) -> None:
        """A recorded public trade (trade_id, ticker, YES price, count, taker side, ts_ms)."""
        trade_id, ticker, price, count, taker_side, ts_ms = tr
        pipe = self.pipes.get(ticker)
        if pipe is None:
            return
        if self.fit_pass:
            if trade_id:
                self.sim.on_trade(recv, ts_ms, ticker, price, count, taker_side, trade_id)
            return
        wall_ms = ts_ms or self.clock.time_ns() // 1_000_000
        key = (ticker, taker_side, wall_ms)
        if self._held and key != self._held_key:
            self._deliver_held()
        fills = self.sim.on_trade(recv, wall_ms, ticker, price, count, taker_side, trade_id)
        if fills:
            # the other prints of this taker's sweep may follow: they grow these fills (one fill per
            # order of ours per taker order); delivered when the sweep is over (the next trade of
            # another taker, a frame SWEEP_NS later, or before any timed event)
            if not self._held:
                self._held_until = recv + SWEEP_NS
                self._held_key = key
            for f in fills:
                self._held[f.trade_id] = f
        pipe.on_trade(price)
        if pipe.ready and self.sim.pickoff is not None and self.sim.pickoff.active:
            picked = self._after_event(recv, wall_ms, ticker)
            if picked:
                self._deliver_held()
                for f in picked:
                    self._on_fill(f)

    def _gap(self, recv: int, reason: str, sid: int | None = None) -> None:
        """Frames may be missing: as live, every affected book is stale and its quotes are pulled until
        the next recorded snapshot."""
        self.gaps += 1
        log.warning("replay gap at %d: %s", recv, reason)
        if sid is None:
            self.router.reset()
        for t in self.pipes:
            if sid is None or self.router.sid_of(t) in (sid, None):
                self._stale(t, reason)

    def _stale(self, t: str, reason: str) -> None:
        pipe = self.pipes[t]
        self.router.mark_stale(t)
        pipe.ready = False
        pipe.state = "stale"
        self.gate.set_book_stale(t, True)
        self._pull(pipe, f"book stale: {reason}")

    # ============================================================================ the engine's path
    def _on_book(self, ticker: str, recv: int) -> None:
        pipe = self.pipes.get(ticker)
        if pipe is None or not pipe.ready:
            return
        sim = self.sim
        if self.fit_pass:
            sim.after_event(recv, self.clock.time_ns() // 1_000_000, ticker)
            return
        if sim.markets[ticker].orders:
            sim.on_book_change(recv, ticker)
        live = self.om.live_orders(ticker)
        pipe.on_book(recv, self.clock.time_ns(), live)
        self.gate.on_book_update(ticker)
        inp = pipe.inputs
        self.pf.set_mark(ticker, inp.best_bid or None, inp.best_ask or None)
        if sim.markets[ticker].orders and sim.pickoff is not None and sim.pickoff.active:
            picked = sim.after_event(recv, self.clock.time_ns() // 1_000_000, ticker)
            if picked:
                self._deliver_held()
                for f in picked:
                    self._on_fill(f)
                return          # each fill re-decided already (or left the decision for the answers)
        self._requote(pipe, recv, live)

    def _on_book_fast(self, ticker: str, recv: int, level: int = -1) -> None:
        """:meth:`_on_book` with the market's live orders kept between book messages: the market's
        orders in the order manager change only in the steps that move its ``_mgen`` on (:meth:`_touch`),
        and the signals read no order's age (the decision, which does, gets a fresh list in
        :meth:`_requote`). The same steps in the same order."""
        mk = self._fast_markets.get(ticker)
        if mk is None:
            return
        pipe, orders, core, gm, _ = mk
        if not pipe.ready:
            return
        sim = self.sim
        clock = self.clock
        if self.fit_pass:
            sim.after_event(recv, clock.time_ns() // 1_000_000, ticker)
            return
        if orders:
            sim.on_book_change(recv, ticker, level)
        cached = self._live_cache.get(ticker)
        gen = self._mgen[ticker]
        if cached is not None and cached[0] == gen:
            live = cached[1]
            if self.check_live_cache:
                fresh = self.om.live_orders(ticker)
                assert [o[:4] + o[5:] for o in live] == [o[:4] + o[5:] for o in fresh], (ticker, live, fresh)
        else:
            live = self.om.live_orders(ticker)
            self._live_cache[ticker] = (gen, live)
        if core is not None:            # MarketPipeline.on_book of a compiled pipeline, inline
            pipe.last_book_ns = recv
            core.on_book(recv, clock.mono + clock.wall_offset, live)
        else:
            pipe.on_book(recv, clock.mono + clock.wall_offset, live)
        gm.book_stale = False           # RiskGate.on_book_update, inline: the book is fresh
        gm.last_book_ns = clock.mono
        inp = pipe.inputs
        mark = (inp.best_bid or None, inp.best_ask or None)
        if self._marks.get(ticker) != mark:     # only set_mark writes the marks: the same pair is a no-op
            self._marks[ticker] = mark
            self.pf.set_mark(ticker, *mark)
        if orders and self._pickoff_on:
            picked = sim.after_event(recv, clock.time_ns() // 1_000_000, ticker)
            if picked:
                self._deliver_held()
                for f in picked:
                    self._on_fill(f)
                return
        if pipe.in_flight and self.quoting:     # _requote's first answer, without the call
            pipe.dirty = True
            return
        self._requote(pipe, recv)

    def _requote(self, pipe: MarketPipeline, trigger: int, live: list[LiveOrder] | None = None) -> None:
        if not self.quoting:
            return
        core = pipe.core                # in_flight and hold_until_ns live there (MarketPipeline's properties)
        if core.in_flight:
            pipe.dirty = True
            return
        if self._window and self._outside_window(pipe):
            return
        now = self.clock.mono
        if core.hold_until_ns and now < core.hold_until_ns:
            pipe.dirty = True
            return
        t = pipe.ticker
        d = self.gate.is_quotable(t)
        if live is None:
            live = self.om.live_orders(t)
        if not d:
            pipe.state = d.reason
            if live:
                self._pull(pipe, d.reason)
            if self.gate.kill_state is KillState.TRIPPED:
                self._kill_sweep()
            return
        for o in live:
            if not o.actionable:
                pipe.dirty = True
                return
        pipe.dirty = False
        actions = pipe.decide(self.event_risk.quote_inventory(t), live)
        pipe.state = "quoting"
        if actions:
            if self._small_reprices_only(pipe, actions):
                self.skipped_reprices += 1
                return
            self.decisions += 1
            pipe.trigger_ns = trigger
            pipe.decided_ns = now
            self._apply(pipe, actions, trigger)

    def _outside_window(self, pipe: MarketPipeline) -> bool:
        """Before ``quote_from_ns`` the decision is kept for later (``dirty``; the next book message
        after it decides); the first decision inside the window sets the timed end of the window
        (``quote_until_ns`` on the replay's monotonic clock), where :meth:`_end_window` pulls every
        quote as the recorded run's stop did."""
        wall = self.clock.time_ns()
        start, until = self.opt.quote_from_ns, self.opt.quote_until_ns
        if start and wall < start:
            pipe.dirty = True
            return True
        if until and not self._window_end_set:
            self._window_end_set = True
            self._at(max(self.clock.mono, until - self.clock.wall_offset), self._end_window)
        if until and wall >= until:
            self._end_window()
            return True
        return False

    def _end_window(self) -> None:
        """The recorded run stopped quoting (``quote_until_ns``): so does the replay, pulling every quote
        (an ack that comes after is cancelled, as at the end of the replay)."""
        if not self.quoting:
            return
        self.quoting = False
        for p in self.pipes.values():
            self._pull(p, "the recorded run stopped quoting")

    def _small_reprices_only(self, pipe: MarketPipeline, actions: Any) -> bool:
        """As live (Engine._small_reprices_only): under write pressure a decision that only nudges
        prices by a few ticks is skipped whole."""
        if self.limiter is None or self.limiter.pressure() <= self.reprice_pressure:
            return False
        return small_reprices_only(self.om, actions, pipe.skip_reprice_px)

    def _pull(self, pipe: MarketPipeline, reason: str) -> None:
        live = [o for o in self.om.live_orders(pipe.ticker) if o.order_id is not None and o.actionable]
        if not live:
            return
        actions = pipe.pull(live)
        if actions:
            log.info("%s: pulling %d quotes (%s)", pipe.ticker, len(actions), reason)
            self._apply(pipe, actions, self.clock.mono)

    def _apply(self, pipe: MarketPipeline, actions: Any, trigger: int) -> None:
        """The requests the live maker's planner makes of ``actions`` (kmm.engine.quoting: the gate,
        reduce-only sizing, event limits, the order manager's transitions), sent on the replay."""
        t = pipe.ticker
        self._touch(t)
        first = True
        for step in self.planner.plan(t, actions):
            kind = step[0]
            if kind == PLACE:
                _, o, side, price, size = step
                if self.recorder is not None:
                    self.recorder.store.record_order(status="pending", client_order_id=o.client_order_id, ticker=t,
                                                     side=side, price=price, count=size,
                                                     strategy=self.cfg.run.strategy, reason="quote",
                                                     ts_ns=self.clock.time_ns())
                self.orders_sent += 1
                self._send(pipe, first, trigger, _lim.PLACE, self._x_place, o.client_order_id, t, side, price, size)
            elif kind == CANCEL:
                self.cancels_sent += 1
                self._send(pipe, first, trigger, _lim.CANCEL, self._x_cancel, step[1])
            elif kind == DECREASE:
                self.decreases_sent += 1
                self._send(pipe, first, trigger, _lim.AMEND, self._x_decrease, step[1], step[2])
            else:   # AMEND
                _, live, _, price, _, amended = step
                self.amends_sent += 1
                # Kalshi's amend count is the new total (filled + remaining) as known when sent; fills
                # that land while it travels come off the new remaining at the exchange
                self._send(pipe, first, trigger, _lim.AMEND, self._x_amend, live.order_id, price,
                           int(amended.pending_count))
            first = False

    def _send(self, pipe: MarketPipeline, first: bool, trigger: int, lane: int, act: Callable[..., Any],
              *args: Any) -> None:
        """A request starts now: it waits for write tokens (the live connector's buckets), leaves, acts
        at the exchange after entry + feed latency (on the book as it is then), and its answer comes
        back entry + response after it left."""
        pipe.in_flight += 1
        self._depart(pipe, lane, act, args, trigger if first else -1)

    def _depart(self, pipe: MarketPipeline, lane: int, act: Callable[..., Any], args: tuple[Any, ...],
                trigger: int = -1) -> None:
        """As the live connector's ``RateLimiter.acquire``, on the same limiter object
        (:class:`~kmm.research.writequeue.ReplayWriteQueue`): a request takes its tokens at once when
        nothing of its lane or a more urgent one waits; otherwise it queues in its lane, where the
        market served least so far goes first (the maker's ``FAIR_KEY`` is the decision's ticker), a
        place that waited ``promote_after_s`` goes before the amends, and a place or amend still queued
        after ``max_queue_s`` is dropped, never sent (:meth:`_not_sent`)."""
        wq = self._writeq
        if wq is not None:
            cost = 2 if lane == _lim.CANCEL else 10
            if not wq.submit(lane, cost, pipe.ticker, lambda: self._leave(pipe, act, args, trigger),
                             lambda exc: self._not_sent(pipe, act, args)):
                self.rate_waits += 1
                self._dispatch()
                return
        self._leave(pipe, act, args, trigger)

    def _dispatch(self) -> None:
        """The limiter's timer: grant what the bucket allows now, come back when it has refilled."""
        wq = self._writeq
        assert wq is not None
        now = self.clock.mono
        if self._dispatch_at and self._dispatch_at <= now:
            self._dispatch_at = 0
        wait = wq.dispatch()
        if wait is not None:
            t = now + max(1, wait)
            if not self._dispatch_at or t < self._dispatch_at:
                self._dispatch_at = t
                self._at(t, self._dispatch)

    def _not_sent(self, pipe: MarketPipeline, act: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """A place or amend the limiter dropped from its queue (``NotSent``, a ``RateLimited``): live, the
        session answers it at once as a create rejected for the rate limit / an amend failed, nothing
        sent. Its answer runs as a timed event (not inside the limiter's dispatch)."""
        def result() -> None:
            if act == self._x_place:
                self.om.on_create_rejected(args[0], "rate limited")
                if self.recorder is not None:
                    self.recorder.store.record_order(status="rejected", client_order_id=args[0], reason="429",
                                                     ts_ns=self.clock.time_ns())
            else:
                self.om.on_request_failed(args[0], "rate limited")
        self._at(self.clock.mono, self._answer, pipe, result)

    def _leave(self, pipe: MarketPipeline, act: Callable[..., Any], args: tuple[Any, ...], trigger: int) -> None:
        """The request's bytes leave now. The first request of a decision stamps the decision (frame
        received -> first request left, after any wait for write tokens), as the live maker does."""
        now = self.clock.mono
        if trigger >= 0:
            self.decision_latency_ns.append(now - trigger)
            if self.recorder is not None:
                self._tape(pipe, "decision", latency_ns=now - trigger)
        lat = self.latency
        entry = lat.entry.draw(self.rng)
        arrive = now + entry + lat.feed.draw(self.rng)
        answer = max(arrive, now + entry + lat.response.draw(self.rng))
        self._at(arrive, self._arrive, pipe, answer, act, args)

    def _arrive(self, pipe: MarketPipeline, answer: int, act: Callable[..., Any], args: tuple[Any, ...]) -> None:
        result = act(*args)
        self._at(answer, self._answer, pipe, result)

    def _answer(self, pipe: MarketPipeline, result: Callable[[], None]) -> None:
        self._touch(pipe.ticker)
        result()
        pipe.in_flight -= 1
        if pipe.in_flight:
            return
        if not pipe.ready or not self.quoting:
            self._pull(pipe, "not quotable")
            return
        if pipe.dirty:
            self._requote(pipe, self.clock.mono)

    # ---- what each request does at the exchange (returns what its answer does here)
    def _wall_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    def _x_place(self, coid: str, t: str, side: str, price: int, count: int) -> Callable[[], None]:
        ack, so, fills = self.sim.place(self.clock.mono, self._wall_ms(), t, side, price, count, coid, post_only=True)

        def answer() -> None:
            self.om.on_ack(ack)
            for f in fills:
                self._on_fill(f)
            if self.recorder is not None:
                self._place_records(coid, ack, so)
            if ack.remaining_count and (not self.quoting or not self.pipes[t].ready
                                        or not self.gate.is_quotable(t)):
                if self.om.request_cancel(ack.order_id) is not None:
                    self.cancels_sent += 1
                    self._send(self.pipes[t], False, self.clock.mono, _lim.CANCEL, self._x_cancel, ack.order_id)
        return answer

    def _place_records(self, coid: str, ack: Any, so: Any) -> None:
        """A place's answer, recorded (a replay that writes records)."""
        status = "resting" if so.status == "resting" else so.status
        self.recorder.store.record_order(status=status, client_order_id=coid, order_id=ack.order_id,
                                         reason="PostOnlyCrossCancel" if so.status == "canceled" else None,
                                         ts_ns=self.clock.time_ns())

    def _x_cancel(self, oid: str) -> Callable[[], None]:
        reduced = self.sim.cancel(self.clock.mono, self._wall_ms(), oid)

        def answer() -> None:
            self.om.on_cancel_ack(oid, reduced)
            self.pf.forget_order(oid)
            if self.recorder is not None:
                self.recorder.store.record_order(status="canceled", order_id=oid, ts_ns=self.clock.time_ns())
        return answer

    def _x_decrease(self, oid: str, reduce_to: int) -> Callable[[], None]:
        so = self.sim.decrease(self.clock.mono, self._wall_ms(), oid, reduce_to)

        def answer() -> None:
            if so is None:      # as before: the replay sends no user_order that would settle an unsure order
                self.om.on_request_failed(oid, "order_not_found", gone=True, may_have_filled=False)
            else:
                self.om.on_decrease_ack(oid, so.remaining)
        return answer

    def _x_amend(self, oid: str, price: int, count: int) -> Callable[[], None]:
        """``count`` is the amend's new total, as the live connector sends it."""
        so0 = self.sim.orders.get(oid)
        remaining = count - (so0.filled if so0 is not None else 0)
        so: Any
        refused: str | None
        fills: list[Fill]
        if remaining <= 0:      # filled past the new total on the way: Kalshi refuses it (invalid_count)
            so, refused, fills = so0, "invalid_count", []
        else:
            so, refused, fills = self.sim.amend(self.clock.mono, self._wall_ms(), oid, price, remaining)

        def answer() -> None:
            for f in fills:
                self._on_fill(f)
            if refused is not None or so is None:
                self.om.on_request_failed(oid, refused or "order_not_found", gone=refused == "order_not_found",
                                          may_have_filled=False)
            else:
                self.om.on_amend_ack(_new_ack(so.order_id, so.coid, so.filled, so.remaining, so.updated_ms))
        return answer

    # ---- fills
    def _on_fill(self, f: Fill) -> None:
        self._touch(f.ticker)
        self.om.on_fill(f)
        if not self.pf.apply_fill(f):
            return
        self.fills.append(f)
        pipe = self.pipes.get(f.ticker)
        if pipe is not None:
            pipe.fills += 1
            pipe.on_trade(f.price)
        if self.recorder is not None:
            self._fill_records(f, pipe)
        self._after_pnl_change()
        if pipe is not None and pipe.ready:
            self._requote(pipe, self.clock.mono)

    def _fill_records(self, f: Fill, pipe: MarketPipeline | None) -> None:
        """A fill's records (the replay writes them): the fill, the order as the exchange's user_order
        would say after it, the tape row."""
        self.recorder.store.record_fill(f)
        o = self.om.get(f.client_order_id or "")
        if o is not None:       # what the exchange's user_order would say after this fill
            self.recorder.store.record_order(status="executed" if o.remaining == 0 else "resting",
                                             client_order_id=o.client_order_id, order_id=f.order_id,
                                             fill_count=o.fill_count, ts_ns=self.clock.time_ns())
        self._tape(pipe, "fill", fill=f)

    def _after_pnl_change(self) -> None:
        was = self.gate.kill_state
        if self.gate.update_pnl() is KillState.TRIPPED:
            for p in self.pipes.values():
                p.state = "killed"
                p.dirty = True
            self._kill_sweep()
        elif was is not KillState.ARMED and self.gate.kill_state is KillState.ARMED:
            for p in self.pipes.values():
                if p.ready:
                    self._requote(p, self.clock.mono)

    def _kill_sweep(self) -> None:
        if self._kill_sweeping:
            return
        self._kill_sweeping = True
        try:
            for p in self.pipes.values():
                self._pull(p, f"kill switch: {self.gate.kill_reason}")
            if not any(o.is_live and o.order_id is not None for o in self.om.orders()) and not self.sim.resting():
                self.gate.on_cancel_sweep_done()
        finally:
            self._kill_sweeping = False

    # ============================================================================ timers and the end
    def _touch(self, ticker: str) -> None:
        """The market's orders in the order manager may change: its kept live orders are stale."""
        self._gen += 1
        self._mgen[ticker] = self._gen

    def _housekeeping(self, now: int) -> None:
        # no market's kept live orders go stale here: the order manager changes only in a request
        # (_apply), an answer (_answer) or a fill (_on_fill), each of which moves its market's
        # generation on (_touch); the kept lists' ages, which the signals do not read, are the only
        # thing a tick makes older (Backtest.check_live_cache compares every other field)
        self._next_house = now + int(self.opt.housekeeping_s * NS_PER_S)
        self.sim.expire_all(now)
        po = self.sim.pickoff
        if po is not None and po.active:     # the pick-off hazard runs between sparse book messages too
            if self._held:
                self._deliver_held()
            wall_ms = self.clock.time_ns() // 1_000_000
            for t, p in self.pipes.items():
                if p.ready and self.sim.markets[t].orders:
                    for f in self._after_event(now, wall_ms, t):
                        self._on_fill(f)
        self._after_pnl_change()
        if self.gate.kill_state is KillState.TRIPPED:
            self._kill_sweep()
        for p in self.pipes.values():
            if p.hold_until_ns and p.dirty and p.ready and now >= p.hold_until_ns:
                p.hold_until_ns = 0
                self._requote(p, now)
        if self.recorder is not None:
            self._house_records(now)

    def _house_records(self, now: int) -> None:
        """Housekeeping's records (a replay that writes them): the marks each second, the P&L every 5 s."""
        if now >= self._next_mark:
            self._next_mark = now + NS_PER_S
            for p in self.pipes.values():
                p.refresh_tau(self.clock.time_ns())
                self._tape(p, "mark")
        if now >= self._next_pnl:
            self._next_pnl = now + 5 * NS_PER_S
            self._record_pnl()

    def _finish(self, last: int) -> None:
        """End of the captures: stop quoting, cancel what rests, settle what was asked, final records."""
        self.quoting = False
        self.clock.mono = max(self.clock.mono, last)
        for p in self.pipes.values():
            self._pull(p, "end of replay")
        self._run_events(self.clock.mono + 60 * NS_PER_S)
        for t, result in self.opt.settle.items():
            if t in self.pipes and result in ("yes", "no"):
                self.pf.settle(t, result)
                self._tape(self.pipes[t], "settle")
        if self.recorder is not None:
            for p in self.pipes.values():
                self._tape(p, "stop")
            self._record_pnl()
        log.info("backtest done: %d fills, %d orders sent, realized %.4f, fees %.4f, unrealized %.4f",
                 len(self.fills), self.orders_sent, self.pf.realized_pnl() / 1e4, self.pf.fees_paid() / 1e4,
                 self.pf.unrealized_pnl() / 1e4)

    def _record_pnl(self) -> None:
        ts = self.clock.time_ns()
        for t in self.tickers:
            self.recorder.store.record_pnl(ticker=t, position=self.pf.position(t), cash=self.pf.cash,
                                           realized=self.pf.realized_pnl(t), unrealized=self.pf.unrealized_pnl(t),
                                           fees=self.pf.fees_paid(t), ts_ns=ts)

    def _tape(self, pipe: MarketPipeline | None, event: str, fill: Fill | None = None,
              latency_ns: int | None = None) -> None:
        """The same tape row the live engine writes (kmm.record.tape.engine_fields)."""
        if self.recorder is None or pipe is None:
            return
        t = pipe.ticker
        self.recorder.tape.write_raw(engine_fields(self.clock.time_ns(), t, event, pipe.inputs, pipe.target,
                                                   self.om.live_orders(t), self.pf, latency_ns, fill))


#: the driver's methods as defined here (:meth:`Backtest._original`: a compiled step takes one's place
#: only while the class still has it)
_ORIGINAL: dict[str, Any] = {n: getattr(Backtest, n) for n in (
    "_requote", "_apply", "_send", "_on_fill", "_after_pnl_change", "_deliver_held", "_touch",
    "_small_reprices_only", "_outside_window", "_fill_records", "_housekeeping", "_house_records",
    "_x_place", "_x_cancel", "_x_decrease", "_x_amend", "_place_records", "_not_sent")}

_MAX_TS_MS = 2**53
_FIT_CODE: list[str] = []


def _fit_code_hash() -> str:
    """A hash of the modules the fitting pass runs (this one, the fill simulator, the pick-off model,
    the queue model, the cache): a kept model is used only by the code that fitted it."""
    if not _FIT_CODE:
        from kmm.research import adverse, fills, queue
        h = hashlib.blake2b(digest_size=16)
        for mod in (adverse, fills, queue, replaycache, sys.modules[__name__]):
            h.update(Path(mod.__file__ or "").read_bytes())
        _FIT_CODE.append(h.hexdigest())
    return _FIT_CODE[0]


def _row(kx: tuple[int, Any], frame: bytes) -> tuple[int, Any, bytes, int]:
    kind, x = kx
    return (kind, x, frame if replaycache.keeps_frame(kind) else b"",
            replaycache.delta_level(frame) if kind == FEED and x is not None else -1)


def _fast_trade(msg: dict[str, Any]) -> tuple[str, str, int, int, str, int] | None:
    """A recorded trade's (trade_id, ticker, YES price, count, taker side, ts_ms) when it has the usual
    fields in their usual form (what ``decode_trade`` returns for it); None: decode it the slow way."""
    try:
        taker = msg.get("taker_book_side")
        tid = msg.get("trade_id")
        t = msg.get("market_ticker")
        ts = msg.get("ts_ms")
        yp = msg.get("yes_price_dollars")
        cnt = msg.get("count_fp")
        if (taker != "bid" and taker != "ask") or type(tid) is not str or type(t) is not str \
                or type(ts) is not int or type(yp) is not str or type(cnt) is not str:
            return None
        if not tid or not t or len(tid) > MAX_ID_LEN or len(t) > MAX_ID_LEN or not 0 <= ts <= _MAX_TS_MS:
            return None
        price = parse_price(yp)
        count = parse_count(cnt)
    except (ValueError, TypeError):
        return None
    if not 0 < price < 10_000 or count <= 0:
        return None
    return tid, t, price, count, taker, ts


def _quantiles_ms(xs: list[int]) -> dict[str, float]:
    """p50/p90/p99 of ns samples, in ms."""
    if not xs:
        return {}
    s = sorted(xs)
    return {f"p{q}": round(s[min(len(s) - 1, len(s) * q // 100)] / 1e6, 3) for q in (50, 90, 99)}


def run_backtest(captures: Sequence[Path], cfg: KmmConfig, out: Path, *, seed: int = 0,
                 progress: Callable[[float], None] | None = None,
                 options: BacktestOptions | None = None) -> dict[str, Any]:
    """Replay ``captures`` (files or directories) with ``cfg``; write ops.log, tape.csv, kmm.sqlite and
    summary.json into ``out``; return the summary dict (the contract in docs/research.md)."""
    return Backtest([Path(c) for c in captures], cfg, Path(out), seed=seed, options=options,
                    progress=progress).run()
