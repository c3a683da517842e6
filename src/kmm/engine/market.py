"""One market's pipeline: book -> signals -> strategy -> quantized target -> diff against live orders.

The live loop owns one :class:`MarketPipeline` per market and calls :meth:`MarketPipeline.on_book`
and :meth:`MarketPipeline.decide` on every applied book message (or :meth:`MarketPipeline.frame`, both
in one call). With the Avellaneda-Stoikov or the inside strategy the whole decision runs in the compiled
:class:`kmm._core.pipeline.Pipeline` (one crossing per frame); any other strategy object (a user's
Python strategy) runs through the Python path below, which computes the same signals in Python and
calls ``strategy.target(inputs, target)``. ``compiled=False`` forces the Python path for any strategy:
the benchmarks' baseline and the property tests' second opinion. Both paths decide the same actions.

Everything here is synchronous and allocation-light; the I/O (sending the actions) is the live loop's
job. Units: prices 1e-4 $ YES terms, sizes 1e-2 contracts, time ns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kmm import protocol
from kmm._core.diff import PLACE, Differ
from kmm._core.fees import fee_rate_e6
from kmm._core.grid import Grid
from kmm._core.pipeline import EXTERNAL, INSIDE, ROOM_OPEN, STOIKOV, Pipeline
from kmm.config import StrategyParams
from kmm.engine.orders import LiveOrder
from kmm.errors import KmmError
from kmm.strategy.alpha import AlphaSource, ExternalSkew
from kmm.strategy.base import MarketInputs, Strategy, Target
from kmm.strategy.inside import InsideStrategy
from kmm.strategy.signals import KappaEstimator, VolatilityEWMA
from kmm.strategy.stoikov import StoikovStrategy

log = logging.getLogger("kmm.engine.market")

NS_PER_S = 1_000_000_000
SIDE_CODE = {"bid": 0, "ask": 1}
SIDE_NAME = ("bid", "ask")



async def read_markets_raw(rest: Any, tickers: Sequence[str], per_read: int = 100) -> dict[str, dict[str, Any]]:
    """Every market's JSON with ``GET /markets?tickers=`` (``per_read`` a read; 300 markets cost 3 reads
    instead of 300, which at Basic's 20 reads/s is the difference between a 0.2 s and a 15 s start).
    A market the list does not return is read alone (``get_market_raw``, which raises if it is unknown).
    Teaches the REST client's shard map like ``get_market_raw``."""
    out: dict[str, dict[str, Any]] = {}
    want = list(dict.fromkeys(tickers))
    if len(want) > 1:
        for i in range(0, len(want), per_read):
            chunk = want[i:i + per_read]
            try:
                async for m in rest.paginate(protocol.PATH_MARKETS, "markets", {"tickers": ",".join(chunk)},
                                             limit=per_read):
                    t = m.get("ticker")
                    if t in chunk:
                        out[t] = dict(m)
            except (KmmError, AttributeError) as exc:   # AttributeError: a client without paginate (paper)
                log.info("GET /markets?tickers= not used (%s); reading the markets one by one", exc)
                break
        shards = getattr(rest, "shards", None)
        for t, m in out.items():
            shard = m.get("exchange_index")
            if shards is not None and isinstance(shard, int) and not isinstance(shard, bool) and shard >= 0:
                shards[t] = shard
    for t in want:
        if t not in out:
            out[t] = await rest.get_market_raw(t)
    return out


async def read_fee_rates(rest: Any, ticker: str, raw: dict[str, Any], cache: dict[str, Any] | None = None
                         ) -> tuple[str, Any, int, int]:
    """A market's fee schedule from its series (``GET /series/{t}``): ``(fee_type, fee_multiplier,
    maker_rate_e6, taker_rate_e6)``. An unreadable series is quoted as ``quadratic``; an unknown fee type
    as if makers paid the taker rate (the conservative reading). Used by kmm run and kmm record alike.
    ``cache``: series ticker -> series JSON, filled here, so many markets of one series cost one read."""
    fee_type, mult = "quadratic", 1
    series = raw.get("series_ticker") or str(raw.get("event_ticker", ticker)).split("-")[0]
    try:
        if cache is not None and series in cache:
            ser = cache[series]
        else:
            ser = await rest.get_series(series)
            if cache is not None:
                cache[series] = ser
        ser = ser.get("series", ser)
        fee_type = ser.get("fee_type") or fee_type
        mult = ser.get("fee_multiplier", 1) or 1
    except KmmError as exc:
        log.warning("%s: series %s not readable (%s); assuming fee_type quadratic", ticker, series, exc)
    try:
        maker, taker = fee_rate_e6(fee_type, False, mult), fee_rate_e6(fee_type, True, mult)
    except ValueError as exc:
        log.warning("%s: %s; quoting as if makers paid the taker rate, to stay conservative", ticker, exc)
        maker = taker = fee_rate_e6("quadratic", True, mult)
    return fee_type, mult, maker, taker

@dataclass(slots=True)
class MarketInfo:
    """Static facts about a market, read once at start."""

    ticker: str
    grid: Grid
    close_time_ns: int | None      # wall clock ns, None when unknown
    fractional: bool = False
    maker_rate_e6: int = 0
    taker_rate_e6: int = 70_000
    status: str = "active"


def _best_ex_own(levels: list[tuple[int, int]], own: dict[int, int]) -> tuple[int, int]:
    """The best (price, size) of ``levels`` (best first) once our own sizes are taken out; (0, 0) if none."""
    for price, size in levels:
        rest = size - own.get(price, 0)
        if rest > 0:
            return price, rest
    return 0, 0


def _no_alpha(alpha: object) -> bool:
    """True when ``alpha`` is the default source, whose skew is always 0.0 (no call needed)."""
    return getattr(type(alpha), "get_external_skew", None) is AlphaSource.get_external_skew


class MarketPipeline:
    """Signals, strategy and diff for one market. ``book`` is the compiled OrderBook the connector's
    router keeps (None until subscribed); ``ofi`` an optional kmm._core.ofi.OFI fed from it."""

    def __init__(self, info: MarketInfo, book: Any, strategy: Strategy, params: StrategyParams,
                 alpha: ExternalSkew, ofi: Any = None, *, compiled: bool = True) -> None:
        self.info = info
        self.ticker = info.ticker
        self.strategy = strategy
        self.params = params
        self.alpha = alpha
        self._alpha_zero = _no_alpha(alpha)
        self.ofi = ofi
        self.vol = VolatilityEWMA(halflife_s=params.sigma_halflife_s)
        self.kappa = KappaEstimator(prior=params.kappa / 10_000.0)
        tick = info.grid.tick_size(5000)
        price_tol = max(params.price_tolerance_ticks * tick, params.min_price_tolerance)
        self.differ = Differ(price_tol=price_tol, size_tol=params.size_tolerance,
                             max_age_ns=int(params.max_order_age_s * NS_PER_S) or None)
        kind = EXTERNAL
        kw: dict[str, Any] = {}
        if compiled and type(strategy) is StoikovStrategy:
            kind = STOIKOV
            kw = {"qparams": strategy.params, "use_microprice": strategy.use_microprice}
        elif compiled and type(strategy) is InsideStrategy:
            kind = INSIDE
            kw = {"quote_size": strategy.quote_size, "max_position": strategy.max_position}
        #: the compiled pipeline (signals and diff always; the strategy too unless it is Python)
        self.core = Pipeline(info.ticker, info.grid, self.differ, strategy_kind=kind, ofi=ofi,
                             ofi_weight=params.ofi_weight, horizon_s=params.horizon_s,
                             close_time_ns=info.close_time_ns, kappa=params.kappa / 10_000.0,
                             vol_halflife_s=params.sigma_halflife_s, book=book, **kw)
        self.compiled = kind != EXTERNAL
        self._python_signals = not compiled
        # the Python path's inputs and target; on the compiled path both views are the core itself
        self._inputs = MarketInputs(info.ticker, info.grid, kappa=params.kappa / 10_000.0)
        self._target = Target()
        self.inputs: Any = self.core if self.compiled else self._inputs
        self.target: Any = self.core if self.compiled else self._target
        self.live_view: list[tuple[Any, int, int, int, int]] = []
        # engine-owned state
        self.ready = False            # a snapshot has been applied since the last (re)subscribe
        self.dirty = False            # a book or inventory change arrived while requests were in flight
        self.applying = False         # inside the live loop's _apply (requests start synchronously)
        self.trigger_ns = 0           # receive time of the frame behind the current decision
        self.decided_ns = 0           # when that decision's actions were computed
        self.last_book_ns = 0         # monotonic ns of the last applied book message
        self.tape_trigger_ns = 0      # trigger whose decision row is on the tape already
        self.marked_top: tuple[int, int] | None = None   # (best bid, best ask) ex-own at the last marks
        self.skip_reprice_px = 0      # under write pressure, reprices this small (1e-4 $) are skipped
        self.hold_s = 0.0             # back-off after a refused create (doubles, 0.5 s .. 30 s)
        self.state = "starting"
        self.fills = 0
        self._py_decisions = 0
        self.places_blocked = 0       # the Python path's count (the compiled one: core.places_blocked)

    # the may-decide state lives in the compiled pipeline, which the frame path asks in C (verdict)
    @property
    def in_flight(self) -> int:
        """Requests sent for this market and not answered."""
        return self.core.in_flight

    @in_flight.setter
    def in_flight(self, n: int) -> None:
        self.core.in_flight = n

    @property
    def hold_until_ns(self) -> int:
        """No deciding here before this monotonic ns (a back-off after a refused create); 0: none."""
        return self.core.hold_until_ns

    @hold_until_ns.setter
    def hold_until_ns(self, ns: int) -> None:
        self.core.hold_until_ns = ns

    def set_rooms(self, bid_room: int, ask_room: int, block_step: int = 100) -> None:
        """The event gate's rooms for the next decision (:meth:`kmm.engine.eventwire.EventWiring.rooms`,
        1e-6 $; the engine sets them before each decision): every decision path drops a place whose
        least size (``block_step`` for a size in whole contracts, else 1: the order path's search
        step) at its price would lower the event's P&L past its side's room, a place the event gate
        refuses whatever its size. Held in the compiled pipeline, which the Python path reads too."""
        self.core.set_rooms(bid_room, ask_room, block_step)

    @property
    def book(self) -> Any:
        return self.core.book

    @book.setter
    def book(self, book: Any) -> None:
        self.core.set_book(book)

    @property
    def decisions(self) -> int:
        return self._py_decisions if self._python_signals else int(self.core.decisions)

    # ---------------------------------------------------------------------------------- signals
    def on_book(self, now_ns: int, wall_ns: int, live: Sequence[LiveOrder] = ()) -> None:
        """Read the book into the strategy inputs and update the online signals.

        Our own resting orders (``live``) are taken out of the book first: in a thin market they are
        often the best bid and ask, and a fair value that includes them would chase its own quotes.
        """
        self.last_book_ns = now_ns
        if self._python_signals:
            self._py_on_book(now_ns, wall_ns, live)
        else:
            self.core.on_book(now_ns, wall_ns, live)
            if not self.compiled:
                self._copy_inputs()

    def _copy_inputs(self) -> None:
        core, inp = self.core, self._inputs
        inp.best_bid, inp.best_ask = core.best_bid, core.best_ask
        inp.mid, inp.microprice = core.mid, core.microprice
        inp.sigma, inp.tau_s, inp.ofi_skew = core.sigma, core.tau_s, core.ofi_skew

    def _py_on_book(self, now_ns: int, wall_ns: int, live: Sequence[LiveOrder]) -> None:
        # The plain-Python signals (the benchmark's baseline): the same decisions as the core's.
        book: Any = self.core.book
        inp = self._inputs
        own_bid: dict[int, int] = {}
        own_ask: dict[int, int] = {}
        for o in live:
            if o.order_id is not None and o.remaining > 0:
                d = own_bid if o.side == "bid" else own_ask
                d[o.price] = d.get(o.price, 0) + o.remaining
        if own_bid:
            bb, bbs = _best_ex_own(book.bids(len(own_bid) + 1), own_bid)
        else:
            bb, bbs = book.best_bid() or 0, book.best_bid_size()
        if own_ask:
            ba, bas = _best_ex_own(book.asks(len(own_ask) + 1), own_ask)
        else:
            ba, bas = book.best_ask() or 0, book.best_ask_size()
        inp.best_bid, inp.best_ask = bb, ba
        if bb and ba:
            inp.mid = (bb + ba) / 2.0
            inp.microprice = (bb * bas + ba * bbs) / (bbs + bas) if bbs + bas > 0 else inp.mid
        else:
            inp.mid = inp.microprice = None
        self.vol.update(inp.mid, now_ns)
        inp.sigma = self.vol.sigma
        if self.ofi is not None:
            self.ofi.update(book, now_ns)
            if self.params.ofi_weight:
                inp.ofi_skew = self.params.ofi_weight * 10_000.0 * self.ofi.normalized
        self.refresh_tau(wall_ns)

    def refresh_tau(self, wall_ns: int) -> None:
        if not self._python_signals:
            self.core.refresh_tau(wall_ns)
            self._inputs.tau_s = self.core.tau_s
            return
        horizon = self.params.horizon_s
        close = self.info.close_time_ns
        left = max(0.0, (close - wall_ns) / NS_PER_S) if close is not None else None
        if horizon > 0:
            self._inputs.tau_s = horizon if left is None else min(horizon, left)
        else:
            self._inputs.tau_s = left if left is not None else 3600.0

    def on_trade(self, price: int) -> None:
        if self.params.kappa_estimate:
            self.kappa.observe_trade(price, self.inputs.mid)
            self._inputs.kappa = self.core.kappa = self.kappa.kappa

    def top_moved(self) -> bool:
        """True (once) when the top of book ex-own moved since the last True: the marks run then."""
        if not self._python_signals:
            return bool(self.core.top_moved())
        top = (self._inputs.best_bid, self._inputs.best_ask)
        if top != self.marked_top:
            self.marked_top = top
            return True
        return False

    def mark_reset(self) -> None:
        """The next :meth:`top_moved` says True whatever the top (a fresh book marks again)."""
        self.marked_top = None
        self.core.mark_reset()

    def hold(self, now_ns: int) -> None:
        """A create was refused (other than a post-only cross): wait before placing here again."""
        self.hold_s = min(30.0, max(0.5, 2 * self.hold_s))
        self.hold_until_ns = now_ns + int(self.hold_s * NS_PER_S)

    # ---------------------------------------------------------------------------------- decision
    def decide(self, inventory: int, live: list[LiveOrder]) -> tuple[Any, ...]:
        """The actions that move our live orders to the strategy's target (empty when none).

        ``live`` comes from the order manager; the diff sees each order under its client_order_id,
        which exists from the moment a create is sent.
        """
        alpha = 0.0 if self._alpha_zero else self.alpha.get_external_skew(self.ticker)
        if self.compiled:
            return self.core.decide(inventory, live, alpha)
        inp = self._inputs
        inp.inventory = inventory
        inp.alpha_skew = alpha
        t = self.strategy.target(inp, self._target)
        if not self._python_signals:
            self.core.set_target(t.bid_price, t.bid_size, t.ask_price, t.ask_size)
            return self.core.diff_target(live)
        view = self.live_view
        view.clear()
        for o in live:
            view.append((o.client_order_id, SIDE_CODE[o.side], o.price, o.remaining, o.age_ns))
        self._py_decisions += 1
        acts = self.differ.diff(t.bid_price if t.bid_size else 0, t.bid_size,
                                t.ask_price if t.ask_size else 0, t.ask_size, view)
        core = self.core
        core.last_dropped = 0
        if acts and (core.bid_room < ROOM_OPEN or core.ask_room < ROOM_OPEN):
            # the places the event gate refuses whatever their size (Pipeline._keep's rule)
            step, rooms = core.block_step, (core.bid_room, core.ask_room)
            kept = tuple(a for a in acts if not (a.kind == PLACE and (step if a.size % 100 == 0 else 1)
                                                 * (a.price if a.side == 0 else 10_000 - a.price) > rooms[a.side]))
            if len(kept) != len(acts):
                self.places_blocked += len(acts) - len(kept)
                core.last_dropped = len(acts) - len(kept)
                return kept
        return acts

    def frame(self, now_ns: int, wall_ns: int, inventory: int, live: list[LiveOrder]) -> tuple[Any, ...]:
        """One book frame: :meth:`on_book` then :meth:`decide` (one compiled call when compiled)."""
        if self.compiled:
            self.last_book_ns = now_ns
            alpha = 0.0 if self._alpha_zero else self.alpha.get_external_skew(self.ticker)
            return self.core.frame(now_ns, wall_ns, inventory, live, alpha)
        self.on_book(now_ns, wall_ns, live)
        return self.decide(inventory, live)

    def set_limits(self, limits: Any) -> None:
        """Give the core the per-market limits of the risk gate (a kmm.engine.risk.RiskLimits) for
        :meth:`frame_checked`."""
        self.core.set_limits(max_order_size=limits.max_order_size, fractional=self.info.fractional,
                             price_min=limits.price_min, price_max=limits.price_max,
                             max_order_notional=limits.max_order_notional,
                             max_position=limits.max_position_for(self.ticker),
                             reduce_only_at=limits.reduce_only_at,
                             max_open_orders=limits.max_open_orders_per_market)

    def frame_checked(self, now_ns: int, wall_ns: int, inventory: int, live: list[LiveOrder], open_bid: int,
                      open_ask: int, open_orders: int) -> tuple[Any, ...]:
        """:meth:`frame` with the per-market pre-checks of the risk gate applied in the same compiled
        call (compiled strategies; see ``Pipeline.frame_checked``). The gate stays the authority."""
        if not self.compiled:
            raise ValueError(f"{self.ticker}: frame_checked needs a compiled strategy")
        self.last_book_ns = now_ns
        alpha = 0.0 if self._alpha_zero else self.alpha.get_external_skew(self.ticker)
        return self.core.frame_checked(now_ns, wall_ns, inventory, live, alpha, open_bid, open_ask, open_orders)

    def pull(self, live: list[LiveOrder]) -> tuple[Any, ...]:
        """Actions that cancel every live order of this market."""
        if not self._python_signals:
            return self.core.pull(live)
        view = self.live_view
        view.clear()
        for o in live:
            view.append((o.client_order_id, SIDE_CODE[o.side], o.price, o.remaining, o.age_ns))
        return self.differ.diff(0, 0, 0, 0, view)
