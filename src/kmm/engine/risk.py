"""The risk gate: every order action passes here before the API; cancels always pass.

Checks on a place (or an amend, which is checked as the order it becomes), in this order:

1. fat finger (:attr:`Decision.fat_finger`): side, size (> 0, <= max, whole contracts unless the
   market is fractional), price on the market's grid and inside [price_min, price_max], notional
   (what the order can cost: count x p for a bid, count x (1 - p) for an ask) <= max;
2. kill switch: no places while ``tripped`` or ``paused``;
3. market gates: unknown market, exchange or market paused, stop quoting ``stop_before_close_s``
   before close_time, stale book (flagged, or no update for ``stale_after_s``);
4. back-off after a 429: places and amends wait; cancels and decreases do not. The back-off is the
   connector limiter's (:class:`kmm.kalshi.limiter.RateLimiter`, the one owner): the gate only reads
   it (``backoff``: anything with ``place_pause_ns()``);
5. open orders per market and in total;
6. position limits, on the worst case (position + everything resting on that side + this order):
   per market ``max_position`` and in total ``max_total_position``. In reduce-only mode (position at
   ``reduce_only_at`` of its limit, loss at ``loss_reduce_only_at`` of the loss limit, or within
   ``reduce_only_before_close_s`` of close) only orders that reduce |position| without crossing
   zero pass. The maker sizes its reducing quotes to the position (:meth:`RiskGate.reduce_only_reason`
   tells it when), so reduce-only never leaves it wanting to quote with nothing that passes.

Book freshness is read from ``freshness`` (:class:`kmm.engine.freshness.Freshness`, the one owner)
when one is given; without it (unit tests, execution) the gate keeps the flag and the time of the
last update itself.

The loss checks use the P&L read by the last :meth:`RiskGate.update_pnl` (call it after fills and
marks), so a check never walks the portfolio.

Kill switch (:class:`KillState`): ``armed`` -> ``tripped`` when total P&L (realized + unrealized - fees)
falls to -max_loss; the caller cancels everything and calls :meth:`RiskGate.on_cancel_sweep_done`
-> ``paused``. From ``paused`` it re-arms only by hysteresis (loss recovered at least
``resume_recovery`` inside the limit and ``cooldown_s`` elapsed since the trip, with ``auto_resume``) or
by :meth:`RiskGate.operator_resume`.

Decreases and cancels only lower exposure, so they are never blocked. All time comes from the
injected clock: ``monotonic_ns`` for staleness, cool-down and back-off, ``time_ns`` for close times.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from kmm._core.grid import Grid
from kmm.engine.clock import NS_PER_S, Clock
from kmm.config import RiskLimits  # the config owns the limits; the gate applies them
from kmm.errors import RiskRejected

__all__ = ["RiskGate", "RiskLimits", "KillState", "Decision", "MarketRisk"]

log = logging.getLogger(__name__)

ONE_DOLLAR = 10_000


class PositionView(Protocol):
    """What the gate reads from the portfolio (:class:`kmm.engine.portfolio.Portfolio` fits)."""

    def position(self, ticker: str) -> int: ...
    def total_abs_position(self) -> int: ...
    def total_pnl(self, *, net_of_fees: bool = True) -> int: ...


class OrderView(Protocol):
    """What the gate reads from the order manager (:class:`kmm.engine.orders.OrderManager` fits)."""

    def open_count(self, ticker: str | None = None) -> int: ...
    def open_qty(self, ticker: str, side: str) -> int: ...


class KillState(enum.Enum):
    ARMED = "armed"
    TRIPPED = "tripped"
    PAUSED = "paused"

    __hash__ = object.__hash__      # as OrderState's: identity equality, a C hash (no Python call)


@dataclass(slots=True, frozen=True)
class Decision:
    """Allow or deny, with a machine reason (``"ok"``, ``"stale_book"``, ...) and a sentence."""

    allowed: bool
    reason: str = "ok"
    detail: str = ""
    fat_finger: bool = False

    def __bool__(self) -> bool:
        return self.allowed

    def error(self) -> RiskRejected:
        return RiskRejected(f"{self.reason}: {self.detail}")


ALLOW = Decision(True)


@dataclass(slots=True)
class MarketRisk:
    """What the gate knows about one market."""

    grid: Grid
    close_time_ns: int | None = None     # wall clock (time_ns); None = no close
    fractional: bool = False
    paused: bool = False                 # market not active / trading paused for this market
    book_stale: bool = True              # until the first snapshot arrives
    last_book_ns: int | None = None      # monotonic


class BackoffView(Protocol):
    """What the gate reads from the rate limiter (:class:`kmm.kalshi.limiter.RateLimiter` fits)."""

    def place_pause_ns(self) -> int: ...


class FreshnessView(Protocol):
    """What the gate reads about books (:class:`kmm.engine.freshness.Freshness` fits)."""

    def fresh(self, ticker: str, now_ns: int | None = None) -> bool: ...
    def why_not(self, ticker: str) -> str: ...


class RiskGate:
    """The pre-trade gate. ``positions`` and ``orders`` are read on every check."""

    def __init__(self, limits: RiskLimits, clock: Clock, positions: PositionView,
                 orders: OrderView, *, backoff: BackoffView | None = None,
                 freshness: FreshnessView | None = None) -> None:
        self.backoff = backoff
        self.freshness = freshness
        self.limits = limits
        self.clock = clock
        self.positions = positions
        self.orders = orders
        self.markets: dict[str, MarketRisk] = {}
        # bumped by every change that can turn :meth:`is_quotable`'s ALLOW into a denial (kill switch,
        # exchange or market pause, a market added or its close moved): the engine's compiled pipelines
        # keep an ALLOW while this, the freshness's and the limiter's counters stand still
        self.epoch = 0
        self._exchange_paused = False
        self._kill_state = KillState.ARMED
        self.kill_reason = ""
        self.tripped_at_ns: int | None = None
        self.last_pnl = 0               # session P&L at the last update_pnl, 1e-4 $
        self.pnl_baseline = 0           # total P&L when the session started (history of the account)
        self.denials: dict[str, int] = {}

    @property
    def kill_state(self) -> KillState:
        return self._kill_state

    @kill_state.setter
    def kill_state(self, state: KillState) -> None:
        self._kill_state = state
        self.epoch += 1

    @property
    def exchange_paused(self) -> bool:
        return self._exchange_paused

    @exchange_paused.setter
    def exchange_paused(self, paused: bool) -> None:
        self._exchange_paused = paused
        self.epoch += 1

    def quotable_until_wall_ns(self, ticker: str) -> int:
        """The wall clock ns from which the close gate denies ``ticker`` (``stop_before_close_s``
        before its close); far in the future for a market with no close."""
        m = self.markets.get(ticker)
        if m is None or m.close_time_ns is None:
            return 2**62
        return m.close_time_ns - int(self.limits.stop_before_close_s * NS_PER_S)

    # ------------------------------------------------------------------ market state
    def add_market(self, ticker: str, grid: Grid, *, close_time_ns: int | None = None,
                   fractional: bool = False) -> MarketRisk:
        m = MarketRisk(grid, close_time_ns, fractional)
        self.markets[ticker] = m
        self.epoch += 1
        return m

    def on_book_update(self, ticker: str) -> None:
        """A snapshot or delta was applied in sequence: the book is fresh."""
        m = self.markets.get(ticker)
        if m is not None:
            m.book_stale = False
            m.last_book_ns = self.clock.monotonic_ns()

    def set_book_stale(self, ticker: str, stale: bool = True) -> None:
        """Seq gap or resnapshot pending (True); the caller clears it with on_book_update."""
        m = self.markets.get(ticker)
        if m is not None:
            m.book_stale = stale

    def set_market_paused(self, ticker: str, paused: bool) -> None:
        m = self.markets.get(ticker)
        if m is not None:
            m.paused = paused
            self.epoch += 1

    def set_close_time(self, ticker: str, close_time_ns: int | None) -> None:
        m = self.markets.get(ticker)
        if m is not None:
            m.close_time_ns = close_time_ns
            self.epoch += 1

    def set_exchange_paused(self, paused: bool) -> None:
        self.exchange_paused = paused

    def is_quotable(self, ticker: str) -> Decision:
        """Whether new orders may go to ``ticker`` at all (market gates, kill switch, back-off).
        When this denies, the live loop pulls the market's quotes."""
        d = self._kill_gate()
        if not d:
            return d
        d = self._market_gate(ticker)
        if not d:
            return d
        return self._backoff_gate()

    # ------------------------------------------------------------------ 429 back-off (read only)
    @property
    def backoff_level(self) -> int:
        """1 while the limiter pauses places after a 429, else 0."""
        return 1 if self.backoff is not None and self.backoff.place_pause_ns() > 0 else 0

    # ------------------------------------------------------------------ kill switch
    def update_pnl(self) -> KillState:
        """Re-read total P&L and move the kill switch. Call after fills and marks."""
        pnl = self.last_pnl = self.positions.total_pnl() - self.pnl_baseline
        lim = self.limits
        state = self._kill_state        # the property's field: read per fill and per mark
        if state is KillState.ARMED and pnl <= -lim.max_loss:
            self.trip(f"loss limit: total P&L {pnl} <= -{lim.max_loss} (1e-4 $)")
        elif (state is KillState.PAUSED and lim.auto_resume
              and pnl >= -lim.max_loss + lim.resume_recovery
              and self.tripped_at_ns is not None
              and self.clock.monotonic_ns() - self.tripped_at_ns >= int(lim.cooldown_s * NS_PER_S)):
            log.warning("risk: kill switch re-armed: P&L %d recovered and cool-down elapsed", pnl)
            self.kill_state = KillState.ARMED
            self.kill_reason = ""
        return self._kill_state

    def set_pnl_baseline(self) -> None:
        """Start counting the loss limit from here: positions loaded at start carry the account's
        past realized P&L and fees, which are not this session's."""
        self.pnl_baseline = self.positions.total_pnl()
        self.last_pnl = 0

    def trip(self, reason: str) -> None:
        """Trip the kill switch (loss limit, or the operator). The caller cancels everything."""
        if self.kill_state is KillState.ARMED:
            self.tripped_at_ns = self.clock.monotonic_ns()
        self.kill_state = KillState.TRIPPED
        self.kill_reason = reason
        log.critical("risk: kill switch tripped: %s; cancel all and pause", reason)

    def on_cancel_sweep_done(self) -> None:
        """Every order is canceled after a trip: the switch rests in ``paused``."""
        if self.kill_state is KillState.TRIPPED:
            self.kill_state = KillState.PAUSED

    def operator_resume(self) -> None:
        """The operator re-arms the switch, whatever the P&L."""
        log.warning("risk: kill switch re-armed by the operator (was %s: %s)",
                    self.kill_state.value, self.kill_reason)
        self.kill_state = KillState.ARMED
        self.kill_reason = ""

    # ------------------------------------------------------------------ gates
    def _deny(self, reason: str, detail: str, *, fat_finger: bool = False) -> Decision:
        self.denials[reason] = self.denials.get(reason, 0) + 1
        return Decision(False, reason, detail, fat_finger)

    def _kill_gate(self) -> Decision:
        if self._kill_state is not KillState.ARMED:
            return self._deny("kill_switch", f"kill switch {self.kill_state.value} ({self.kill_reason});"
                              " wait for recovery and cool-down or resume as operator")
        return ALLOW

    def _market_gate(self, ticker: str) -> Decision:
        m = self.markets.get(ticker)
        if m is None:
            return self._deny("unknown_market", f"{ticker} is not registered with the risk gate; "
                              "add_market it with its grid first")
        if self.exchange_paused:
            return self._deny("exchange_paused", "the exchange reports trading paused")
        if m.paused:
            return self._deny("market_paused", f"{ticker} is not open for trading")
        if m.close_time_ns is not None and \
                self.clock.time_ns() >= m.close_time_ns - int(self.limits.stop_before_close_s * NS_PER_S):
            return self._deny("near_close", f"{ticker} closes within {self.limits.stop_before_close_s} s")
        fr = self.freshness
        if fr is not None:
            if not fr.fresh(ticker):
                return self._deny("stale_book", f"{ticker} book is not fresh: {fr.why_not(ticker)}")
            return ALLOW
        if m.book_stale:
            return self._deny("stale_book", f"{ticker} book is stale (gap or no snapshot yet)")
        if m.last_book_ns is None or \
                self.clock.monotonic_ns() - m.last_book_ns > int(self.limits.stale_after_s * NS_PER_S):
            return self._deny("stale_book", f"{ticker} book has had no update for over "
                              f"{self.limits.stale_after_s} s")
        return ALLOW

    def _backoff_gate(self) -> Decision:
        wait = self.backoff.place_pause_ns() if self.backoff is not None else 0
        if wait > 0:
            return self._deny("rate_limited", f"the rate limiter backs off after a 429 for another "
                              f"{wait / NS_PER_S:.2f} s")
        return ALLOW

    def _fat_finger(self, ticker: str, side: str, price: int, count: int) -> Decision:
        """The fat-finger checks: ALLOW, or the first denial in :meth:`_fat_finger_denial`'s order.
        The pass is decided here without building any message (every order passes here)."""
        lim = self.limits
        m = self.markets.get(ticker)
        if ((side == "bid" or side == "ask") and 0 < count <= lim.max_order_size
                and (m is None or m.fractional or not count % 100)
                and lim.price_min <= price <= lim.price_max and (m is None or m.grid.is_valid(price))
                and count * (price if side == "bid" else ONE_DOLLAR - price) // 100 <= lim.max_order_notional):
            return ALLOW
        return self._fat_finger_denial(ticker, side, price, count)

    def _fat_finger_denial(self, ticker: str, side: str, price: int, count: int) -> Decision:
        lim = self.limits
        where = f"{side} {count} @ {price} on {ticker}"
        if side not in ("bid", "ask"):
            return self._deny("bad_side", f"{where}: side must be 'bid' or 'ask'", fat_finger=True)
        if count <= 0:
            return self._deny("bad_size", f"{where}: size must be > 0 (1e-2 contracts)", fat_finger=True)
        if count > lim.max_order_size:
            return self._deny("max_order_size", f"{where}: size {count} exceeds max_order_size "
                              f"{lim.max_order_size} (1e-2 contracts); lower the quote size or raise "
                              "[risk] max_order_size", fat_finger=True)
        m = self.markets.get(ticker)
        if m is not None and not m.fractional and count % 100:
            return self._deny("fractional_size", f"{where}: {ticker} trades whole contracts only",
                              fat_finger=True)
        if not lim.price_min <= price <= lim.price_max:
            return self._deny("price_range", f"{where}: price outside [{lim.price_min}, {lim.price_max}] "
                              "(1e-4 $); see [risk] price_min/price_max", fat_finger=True)
        if m is not None and not m.grid.is_valid(price):
            return self._deny("off_grid", f"{where}: price is not on the market's grid "
                              f"(tick {m.grid.tick_size(price)}); quantize before sending", fat_finger=True)
        notional = count * (price if side == "bid" else ONE_DOLLAR - price) // 100
        if notional > lim.max_order_notional:
            return self._deny("max_order_notional", f"{where}: notional {notional} exceeds "
                              f"max_order_notional {lim.max_order_notional} (1e-4 $)", fat_finger=True)
        return ALLOW

    def reduce_only_reason(self, ticker: str, q: int | None = None) -> str:
        """Why ``ticker`` is reduce-only now ("" when it is not)."""
        return self._reduce_only(ticker, self.positions.position(ticker) if q is None else q)

    def _reduce_only(self, ticker: str, q: int) -> str:
        lim = self.limits
        if abs(q) >= lim.reduce_only_at * lim.max_position_for(ticker):
            return "position near its limit"
        if self.last_pnl <= -lim.loss_reduce_only_at * lim.max_loss:
            return "loss near its limit"
        m = self.markets.get(ticker)
        if m is not None and m.close_time_ns is not None and \
                self.clock.time_ns() >= m.close_time_ns - int(lim.reduce_only_before_close_s * NS_PER_S):
            return "market close near"
        return ""

    def _position_gate(self, ticker: str, side: str, count: int, replacing: int) -> Decision:
        lim = self.limits
        q = self.positions.position(ticker)
        resting = self.orders.open_qty(ticker, side) - replacing
        sign = 1 if side == "bid" else -1
        worst = q + sign * (resting + count)
        why = self._reduce_only(ticker, q)
        if why:
            # reduces |q| and, with the same-side orders already resting, does not cross zero
            if q * sign >= 0 or resting + count > abs(q):
                return self._deny("reduce_only", f"{ticker}: reduce-only ({why}); {side} {count} "
                                  f"would not reduce position {q}")
            return ALLOW
        limit = lim.max_position_for(ticker)
        if abs(worst) > limit and abs(worst) > abs(q):
            return self._deny("max_position", f"{ticker}: position {q} + resting {resting} + {count} "
                              f"({side}) could reach {worst}, limit {limit} (1e-2 contracts)")
        growth = max(0, abs(worst) - abs(q))
        total = self.positions.total_abs_position()
        if growth and total + growth > lim.max_total_position:
            return self._deny("max_total_position", f"total position {total} + {growth} would pass "
                              f"max_total_position {lim.max_total_position} (1e-2 contracts)")
        return ALLOW

    # ------------------------------------------------------------------ public checks
    def _order_gates(self, ticker: str, side: str, price: int, count: int) -> Decision:
        """What every new or amended order must pass, in order: fat finger, kill switch, market, back-off."""
        d = self._fat_finger(ticker, side, price, count)
        if d.allowed:
            d = self._kill_gate()
        if d.allowed:
            d = self._market_gate(ticker)
        if d.allowed:
            d = self._backoff_gate()
        return d

    def check_place(self, ticker: str, side: str, price: int, count: int) -> Decision:
        """Allow or deny a new order."""
        d = self._order_gates(ticker, side, price, count)
        if not d.allowed:
            return d
        lim = self.limits
        if self.orders.open_count(ticker) >= lim.max_open_orders_per_market:
            return self._deny("max_open_orders", f"{ticker} has {self.orders.open_count(ticker)} open "
                              f"orders, limit {lim.max_open_orders_per_market}")
        if self.orders.open_count() >= lim.max_open_orders_total:
            return self._deny("max_open_orders_total", f"{self.orders.open_count()} open orders, limit "
                              f"{lim.max_open_orders_total}")
        return self._position_gate(ticker, side, count, 0)

    def _order_ok(self, ticker: str, side: str, price: int, count: int) -> bool:
        """What :meth:`place_allowed` and :meth:`amend_allowed` share, in check_place's order: the
        market is known and nothing is paused or killed, the order's shape (side, size, price on the
        grid, notional), the close time, a fresh book and no back-off on places."""
        lim = self.limits
        m = self.markets.get(ticker)
        if m is None or self._kill_state is not KillState.ARMED or self._exchange_paused or m.paused:
            return False
        if not ((side == "bid" or side == "ask") and 0 < count <= lim.max_order_size
                and (m.fractional or not count % 100) and lim.price_min <= price <= lim.price_max
                and m.grid.is_valid(price)
                and count * (price if side == "bid" else ONE_DOLLAR - price) // 100 <= lim.max_order_notional):
            return False
        if m.close_time_ns is not None and \
                self.clock.time_ns() >= m.close_time_ns - int(lim.stop_before_close_s * NS_PER_S):
            return False
        fr = self.freshness
        if fr is not None:
            if not fr.fresh(ticker):
                return False
        elif m.book_stale or m.last_book_ns is None or \
                self.clock.monotonic_ns() - m.last_book_ns > int(lim.stale_after_s * NS_PER_S):
            return False
        if self.backoff is not None and self.backoff.place_pause_ns() > 0:
            return False
        return True

    def place_allowed(self, ticker: str, side: str, price: int, count: int, q: int | None = None,
                      why: str | None = None) -> bool:
        """``bool(check_place(...))`` in one call, for the order path's common case: the same checks in
        the same order, without building a Decision or counting a denial. False says only "ask
        :meth:`check_place`" (which counts the denial and says why): callers never act on a False
        alone (kmm.engine.quoting). ``q``/``why``: the position and :meth:`reduce_only_reason` when the
        caller has them already. tests/engine/test_place_fast.py holds it to check_place."""
        if not self._order_ok(ticker, side, price, count):
            return False
        lim = self.limits
        orders = self.orders
        if orders.open_count(ticker) >= lim.max_open_orders_per_market or \
                orders.open_count() >= lim.max_open_orders_total:
            return False
        if q is None:
            q = self.positions.position(ticker)
        if why is None:
            why = self._reduce_only(ticker, q)
        resting = orders.open_qty(ticker, side)
        sign = 1 if side == "bid" else -1
        if why:
            return not (q * sign >= 0 or resting + count > abs(q))
        worst = q + sign * (resting + count)
        if abs(worst) > lim.max_position_for(ticker) and abs(worst) > abs(q):
            return False
        growth = max(0, abs(worst) - abs(q))
        return not (growth and self.positions.total_abs_position() + growth > lim.max_total_position)

    def amend_allowed(self, ticker: str, side: str, price: int, remaining: int, old_remaining: int) -> bool:
        """``bool(check_amend(...))`` in one call, as :meth:`place_allowed` is for a place (the order
        path's amends): the same checks, no Decision built, no denial counted; False says only "ask
        :meth:`check_amend`". tests/engine/test_amend_fast.py holds it to check_amend."""
        if not self._order_ok(ticker, side, price, remaining):
            return False
        lim = self.limits
        q = self.positions.position(ticker)      # _position_gate with the old remaining replaced
        resting = self.orders.open_qty(ticker, side) - old_remaining
        sign = 1 if side == "bid" else -1
        if self._reduce_only(ticker, q):
            return not (q * sign >= 0 or resting + remaining > abs(q))
        worst = q + sign * (resting + remaining)
        if abs(worst) > lim.max_position_for(ticker) and abs(worst) > abs(q):
            return False
        growth = max(0, abs(worst) - abs(q))
        return not (growth and self.positions.total_abs_position() + growth > lim.max_total_position)

    def amend_size(self, ticker: str, side: str, price: int, size: int, old_remaining: int,
                   old_price: int) -> int:
        """The order path's amend of a live order sized and checked in one call (what
        :meth:`kmm.engine.quoting.QuotePlanner.other` did in two: :meth:`reduce_only_reason`, then
        :meth:`amend_allowed`). Returns the size to amend to: ``size``, or less while the market is
        reduce-only (what reduces the position, less the side's other orders); 0 when reduce-only leaves
        the order as it is (nothing to send); -1 when the amend is not allowed as asked, and only then
        does the caller ask :meth:`check_amend` (which counts the denial and says why).
        tests/engine/test_amend_fast.py holds it to the two steps."""
        q = self.positions.position(ticker)
        resting = self.orders.open_qty(ticker, side) - old_remaining
        sign = 1 if side == "bid" else -1
        if self._reduce_only(ticker, q):
            room = (q if q >= 0 else -q) - resting if q * sign < 0 else 0
            if size > room:
                size = room
            if size <= 0:
                return -1
            if size == old_remaining and price == old_price:
                return 0
            # reducing, and resting + size <= |q| by the room: _position_gate's reduce-only rule holds
            return size if self._order_ok(ticker, side, price, size) else -1
        if not self._order_ok(ticker, side, price, size):
            return -1
        lim = self.limits
        worst = q + sign * (resting + size)
        aw, aq = abs(worst), abs(q)
        if aw > lim.max_position_for(ticker) and aw > aq:
            return -1
        growth = aw - aq
        if growth > 0 and self.positions.total_abs_position() + growth > lim.max_total_position:
            return -1
        return size

    def check_amend(self, ticker: str, side: str, price: int, remaining: int,
                    old_remaining: int) -> Decision:
        """Allow or deny an amend of a live order to ``price`` with ``remaining`` left; checked like
        the order it becomes (the old remaining no longer counts)."""
        d = self._order_gates(ticker, side, price, remaining)
        if not d.allowed:
            return d
        return self._position_gate(ticker, side, remaining, old_remaining)

    def check_cancel(self, ticker: str, order_id: str | None = None) -> Decision:
        """Cancels are never blocked."""
        return ALLOW

    def check_decrease(self, ticker: str, order_id: str | None = None) -> Decision:
        """Decreases only lower exposure: never blocked."""
        return ALLOW

    def require_place(self, ticker: str, side: str, price: int, count: int) -> None:
        """:meth:`check_place`, raising :class:`RiskRejected` on a denial."""
        d = self.check_place(ticker, side, price, count)
        if not d:
            raise d.error()
