"""Events of related markets: the P&L of every outcome, event worst cases, the event risk gate,
event inventory for quoting and the settlement of a whole event.

Kalshi groups markets into events (``GET /events/{event_ticker}``, kalshi-api.md section 2.3). When the
event is ``mutually_exclusive`` at most one of its markets settles YES, so a YES in one market is a
partial hedge of a NO in the others, and a book of quotes across the event has a worst case that no
per-market limit sees. Formulas and choices are in docs/event-risk.md; in short (money 1e-4 $, sizes
1e-2 contracts, prices 1e-4 $ YES terms):

* Market ``i`` settling at ``v`` (10 000 for YES, 0 for NO) is worth, from what the portfolio holds,
  ``P_i(v) = realized_i - fees_i - baseline_i - cost_i + payout(q_i, v)`` with ``payout(q, v) = q v``
  for ``q > 0`` and ``|q| (1 - v)`` for ``q < 0`` (section 6: $1 per net contract).
* A resting order can add at most ``min(0, change)`` in each outcome, where a bid of ``s`` at ``p``
  changes the P&L by ``s (v - p) - fee`` and an ask by ``s (p - v) - fee``. Fills are linear in their
  size and independent of each other under netting, so the worst subset of resting orders for an
  outcome is exactly the orders whose change there is negative (tested by brute force against the
  real :class:`~kmm.engine.portfolio.Portfolio`).
* Mutually exclusive event: the outcomes are "market j YES, the others NO" for every market still
  open, plus "none" unless the event is known to be exhaustive. Otherwise the markets are treated as
  independent and the worst case is the sum of each market's worse side.

The gate (:class:`EventRiskGate`) is shaped like :class:`kmm.engine.risk.RiskGate`: ``check_place`` and
``check_amend`` return a :class:`~kmm.engine.risk.Decision`; :meth:`EventRiskGate.max_count` sizes an
order so it passes; :meth:`EventRiskGate.kill_signal` names an event whose positions alone are past
``max_event_loss``. With a portfolio and order manager that report changes (their ``watchers``) a check
costs O(markets changed since the last check) (:mod:`kmm.engine.eventsums`); otherwise O(markets in the
event + their resting orders).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kmm._core.eventgate import Verdicts as _Verdicts
from kmm._core.fees import trade_fee
from kmm.engine.eventsums import EventSums, SumVerdicts
from kmm.engine.risk import ALLOW, Decision

log = logging.getLogger(__name__)

ONE_DOLLAR = 10_000          # 1e-4 $
E6_PER_E4 = 100              # count (1e-2) x price (1e-4 $) is 1e-6 $
#: EventRiskGate.place_rooms: no bound known on a side (fits the compiled pipeline's int64)
ROOM_OPEN = 2**62
ROOMS_OPEN = (ROOM_OPEN, ROOM_OPEN)
NONE = ""                    # the outcome "no market of the event settles YES"
RESULTS = ("yes", "no")


# ---------------------------------------------------------------------------------------------- inputs

class LedgerView(Protocol):
    """What an event reads from the portfolio, per market (:class:`kmm.engine.portfolio.Portfolio` fits).
    Money 1e-4 $, positions 1e-2 contracts."""

    def position(self, ticker: str) -> int: ...
    def position_cost(self, ticker: str) -> int: ...
    def realized_pnl(self, ticker: str | None = None) -> int: ...
    def fees_paid(self, ticker: str | None = None) -> int: ...


class RestingView(Protocol):
    """What an event reads from the order manager: every order of a market that may still fill, as
    ``(side, price, remaining)`` (side ``"bid"``/``"ask"``, YES price 1e-4 $, 1e-2 contracts).
    :func:`may_fill_from_orders` builds that list from :class:`kmm.engine.orders.Order` objects."""

    def may_fill(self, ticker: str) -> Iterable[tuple[str, int, int]]: ...


class _OrderLike(Protocol):
    @property
    def ticker(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def price(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def is_live(self) -> bool: ...
    @property
    def pending_price(self) -> int | None: ...
    @property
    def pending_count(self) -> int | None: ...
    @property
    def fill_count(self) -> int: ...


def amend_entries(side: str, price: int, remaining: int, new_price: int, new_remaining: int,
                  fee_free: bool) -> tuple[tuple[str, int, int], ...]:
    """What an order with an amend in flight may still fill: ``remaining`` at ``price`` before the
    exchange applies the amend, ``new_remaining`` at ``new_price`` after.

    Kalshi's amend count is the new total (filled + remaining), so the order fills at most
    ``max(remaining, new_remaining)`` more contracts in all, some at the old price and the rest at the
    new one. One entry of that size at the worse price (the higher for a bid, the lower for an ask)
    bounds every such mix in every outcome: a contract's P&L falls as a bid's price rises (as an ask's
    falls) whatever the market settles at, and the fee of the order (the exact fees of its fills,
    rounded up to the cent once, per order) is at most the fee of the whole size at the price nearest
    $0.50 of the two. So the one entry is exact when the worse price is also that one (``price +
    new_price <= $1`` for a bid, ``>= $1`` for an ask) or when the market has no maker fee
    (``fee_free``). Otherwise both entries are kept (each may fill alone), which over-counts and stays
    safe. Counting both always, as kmm did before, made the worst case of an event with amends in
    flight look worse than it could be and pulled its quotes for nothing (``over_limit``)."""
    if new_remaining <= 0:
        return ((side, price, remaining),) if remaining > 0 else ()
    if remaining <= 0:
        return ((side, new_price, new_remaining),)
    size = remaining if remaining > new_remaining else new_remaining
    if side == "bid":
        worse = new_price if new_price > price else price
        exact = fee_free or price + new_price <= ONE_DOLLAR
    else:
        worse = new_price if new_price < price else price
        exact = fee_free or price + new_price >= ONE_DOLLAR
    if exact:
        return ((side, worse, size),)
    return ((side, price, remaining), (side, new_price, new_remaining))


def may_fill_from_orders(orders: Iterable[_OrderLike], fee_free: Container[str] = ()) -> list[tuple[str, int, int]]:
    """What may still fill among ``orders`` (any non-terminal state: a create in flight, a cancel in
    flight and an unknown outcome can all still fill). An amend in flight counts as
    :func:`amend_entries` says: once at its larger size and worse price, or at the old and the new price
    and size both. ``fee_free``: the tickers whose maker fee rate is 0."""
    out: list[tuple[str, int, int]] = []
    for o in orders:
        if not o.is_live:
            continue
        if o.pending_price is not None and o.pending_count is not None:
            out.extend(amend_entries(o.side, o.price, o.remaining, o.pending_price,
                                     o.pending_count - o.fill_count, o.ticker in fee_free))
        elif o.remaining > 0:
            out.append((o.side, o.price, o.remaining))
    return out


@dataclass(slots=True, frozen=True)
class EventSpec:
    """One event: its ticker, whether its markets are mutually exclusive (Kalshi ``mutually_exclusive``,
    true iff ``collateral_return_type`` MECNET) and its markets.

    ``none_possible``: whether a mutually exclusive event may end with no market YES. [U] The API says
    "at most one" settles YES, not "exactly one", and kmm may know only some of an event's markets, so
    the default is True; set it False only for an event known to be exhaustive (all its markets listed
    and one certain to win). Ignored for events that are not mutually exclusive."""

    event_ticker: str
    mutually_exclusive: bool
    markets: tuple[str, ...]
    none_possible: bool = True

    def __post_init__(self) -> None:
        if not self.markets:
            raise ValueError(f"EventSpec {self.event_ticker!r}: an event needs at least one market")
        if len(set(self.markets)) != len(self.markets):
            raise ValueError(f"EventSpec {self.event_ticker!r}: a market is listed twice in {self.markets}")


def event_spec_from_json(body: Mapping[str, Any], *, none_possible: bool = True) -> EventSpec:
    """An :class:`EventSpec` from the body of ``GET /events/{event_ticker}``
    (``{"event": Event, "markets": [Market]}``, or a bare Event with nested ``markets``)."""
    ev = body.get("event", body)
    if not isinstance(ev, Mapping) or "event_ticker" not in ev:
        raise ValueError("event body has no event.event_ticker; pass the JSON of GET /events/{ticker}")
    markets = body.get("markets") or ev.get("markets") or []
    tickers = tuple(m["ticker"] if isinstance(m, Mapping) else str(m) for m in markets)
    return EventSpec(str(ev["event_ticker"]), bool(ev.get("mutually_exclusive", False)), tickers,
                     none_possible)


# ---------------------------------------------------------------------------------------------- math

def payout(position: int, result: str) -> int:
    """What Kalshi pays at settlement for a net ``position`` (1e-2 contracts) in a market settling
    ``"yes"`` or ``"no"``: $1.00 per contract on the winning side, rounded down to the cent
    (kalshi-api.md section 6). 1e-4 $."""
    if result not in RESULTS:
        raise ValueError(f"payout: result {result!r} must be 'yes' or 'no'")
    won = position if result == "yes" else -position
    exact_e6 = max(0, won) * ONE_DOLLAR
    cent_e6 = 100 * E6_PER_E4
    return exact_e6 // cent_e6 * cent_e6 // E6_PER_E4


def order_change_e6(side: str, price: int, count: int, value: int, fee: int) -> int:
    """P&L change (1e-6 $) if an order of ``count`` at ``price`` fills and the market settles at
    ``value`` (10 000 YES, 0 NO), after a ``fee`` in 1e-4 $. Netting does not change it: closing a NO
    by buying YES at p frees 1 - p per contract and gives up the NO's 1 - v."""
    sign = 1 if side == "bid" else -1
    return sign * count * (value - price) - fee * E6_PER_E4


def _floor_e4(e6: int) -> int:
    return e6 // E6_PER_E4          # floor: a worst case rounds towards the loss


@dataclass(slots=True)
class Leg:
    """One market of an event at one moment, 1e-6 $ except the sizes (1e-2 contracts)."""

    ticker: str
    position: int
    pnl_yes: int             # P&L of the market's holdings if it settles YES
    pnl_no: int              # ... if it settles NO
    rest_yes: int = 0        # worst the resting orders add if it settles YES (<= 0)
    rest_no: int = 0         # ... if it settles NO (<= 0)
    bids: int = 0            # resting bid size
    asks: int = 0            # resting ask size
    result: str | None = None  # "yes" / "no" once settled


@dataclass(slots=True, frozen=True)
class Worst:
    """A worst case: the P&L in 1e-4 $ (rounded down) and the outcome that gives it: the tickers that
    settle YES (one or none for a mutually exclusive event)."""

    pnl: int
    outcome: tuple[str, ...]

    @property
    def loss(self) -> int:
        """max(0, -pnl), 1e-4 $."""
        return max(0, -self.pnl)


class EventBook:
    """One event: outcome P&L, worst cases and event inventory, read from the portfolio and the order
    manager on demand (it keeps no copy of positions or orders; only the session baseline and the
    results of markets already settled).

    ``maker_fee_rate_e6``: the maker fee rate (x multiplier, :func:`kmm._core.fees.fee_rate_e6`) of the
    event's series, charged on every resting order that could fill; ``taker_fee_rate_e6`` for a
    proposed order that is not post-only. [U] A full fill's fee is the bound; an order filled in many
    parts may pay up to $0.0001 more per part from rounding each fee up.
    """

    __slots__ = ("spec", "ledger", "resting", "maker_fee_rate_e6", "taker_fee_rate_e6", "baseline",
                 "results", "rev", "sums")

    def __init__(self, spec: EventSpec, ledger: LedgerView, resting: RestingView | None = None, *,
                 maker_fee_rate_e6: int = 0, taker_fee_rate_e6: int = 70_000) -> None:
        self.spec = spec
        self.ledger = ledger
        self.resting = resting
        self.maker_fee_rate_e6 = maker_fee_rate_e6
        self.taker_fee_rate_e6 = taker_fee_rate_e6
        self.baseline: dict[str, int] = {}      # realized - fees at session start, 1e-4 $
        self.results: dict[str, str] = {}       # settled markets
        self.rev = 0                            # bumped when baseline or results change (EventSums rebuilds)
        self.sums: EventSums | None = None      # kept numbers, when the gate's views report changes
        self.set_baseline()

    @property
    def ticker(self) -> str:
        return self.spec.event_ticker

    @property
    def markets(self) -> tuple[str, ...]:
        return self.spec.markets

    # ------------------------------------------------------------------ state
    def set_baseline(self) -> None:
        """Count P&L from here: each market's realized P&L minus fees now (from positions loaded from
        the exchange) is the account's history, not this session's, so it neither pads nor eats the
        event's loss limit. The cost of positions carried in still counts: that money can be lost."""
        led = self.ledger
        self.baseline = {t: led.realized_pnl(t) - led.fees_paid(t) for t in self.spec.markets}
        self.rev += 1

    def on_market_settled(self, ticker: str, result: str) -> None:
        """A market of the event settled (call after the portfolio booked it): outcomes that it rules
        out are dropped. A YES in a mutually exclusive event decides the whole event."""
        if ticker not in self.spec.markets:
            raise ValueError(f"event {self.ticker}: {ticker} is not one of its markets {self.spec.markets}")
        if result not in RESULTS:
            raise ValueError(f"event {self.ticker}: result {result!r} for {ticker} must be 'yes' or 'no'")
        self.results[ticker] = result
        self.rev += 1
        if self.spec.mutually_exclusive and result == "yes":
            others = [t for t, r in self.results.items() if r == "yes" and t != ticker]
            if others:
                log.error("event %s: %s and %s both settled YES in a mutually exclusive event; "
                          "check the event's rules", self.ticker, ticker, others)

    def legs(self, *, with_resting: bool = True) -> list[Leg]:
        """Each market's numbers now (O(markets + their resting orders))."""
        led = self.ledger
        rate = self.maker_fee_rate_e6
        resting = self.resting if with_resting else None
        baseline, results = self.baseline, self.results
        out = []
        for t in self.spec.markets:
            q = led.position(t)
            base = (led.realized_pnl(t) - led.fees_paid(t) - baseline.get(t, 0) - led.position_cost(t)) * E6_PER_E4
            # payout(q, v) in 1e-6 $: whole contracts of $1 are whole cents, so no rounding here
            leg = Leg(t, q, base + (q * ONE_DOLLAR if q > 0 else 0), base + (-q * ONE_DOLLAR if q < 0 else 0),
                      result=results.get(t))
            if resting is not None:
                ry = rn = bids = asks = 0
                for side, price, rem in resting.may_fill(t):
                    if rem <= 0:
                        continue
                    fee_e6 = trade_fee(rem, price, rate) * E6_PER_E4 if rate else 0
                    if side == "bid":      # YES: rem (1 - p) - fee; NO: -rem p - fee
                        ry += min(0, rem * (ONE_DOLLAR - price) - fee_e6)
                        rn -= rem * price + fee_e6
                        bids += rem
                    else:                  # YES: -rem (1 - p) - fee; NO: rem p - fee
                        ry -= rem * (ONE_DOLLAR - price) + fee_e6
                        rn += min(0, rem * price - fee_e6)
                        asks += rem
                leg.rest_yes, leg.rest_no, leg.bids, leg.asks = ry, rn, bids, asks
            out.append(leg)
        return out

    # ------------------------------------------------------------------ outcomes
    def outcomes(self) -> list[tuple[str, ...]]:
        """The outcomes still possible, as the tuple of tickers settling YES. For a mutually exclusive
        event: one per market not settled NO, plus () for "none" where allowed. For other events the
        outcomes are every combination; this lists only the per-market extremes (all-NO, then each
        market alone YES) and :meth:`worst` treats them independently."""
        spec = self.spec
        won = [t for t, r in self.results.items() if r == "yes"]
        if spec.mutually_exclusive and won:
            return [(won[0],)]
        alive: list[tuple[str, ...]] = [(t,) for t in spec.markets if self.results.get(t) != "no"]
        if spec.mutually_exclusive and not spec.none_possible and alive:
            return alive
        none: list[tuple[str, ...]] = [()]
        return none + alive

    def outcome_pnl(self, *, with_resting: bool = False) -> dict[tuple[str, ...], int]:
        """P&L (1e-4 $, rounded down) of each outcome of :meth:`outcomes`, from positions (and with
        every resting order that hurts in that outcome filling, when ``with_resting``)."""
        legs = self.legs(with_resting=with_resting)
        return {o: _floor_e4(_outcome_e6(legs, o)) for o in self.outcomes()}

    def worst(self, *, with_resting: bool = False, legs: Sequence[Leg] | None = None) -> Worst:
        """The worst case over the possible outcomes: from positions only (the loss if the event
        resolved now), or with the worst subset of resting orders filling first."""
        if legs is None:
            legs = self.legs(with_resting=with_resting)
        pnl, outcome = _worst_e6(self, legs)
        return Worst(_floor_e4(pnl), outcome)

    def inventory(self) -> int:
        """Event inventory E (1e-2 contracts): the sum of the markets' YES-equivalent positions
        (YES > 0, NO < 0). For a mutually exclusive event it is how many contracts pay if the event
        resolves to one of its listed markets rather than none (a NO counts as minus one YES plus
        $1): buying YES in every market raises it as fast as the number of markets.
        See docs/event-risk.md for why this and not the net exposure to each outcome."""
        led = self.ledger
        return sum(led.position(t) for t in self.spec.markets if t not in self.results)


def _outcome_e6(legs: Sequence[Leg], outcome: tuple[str, ...]) -> int:
    yes = set(outcome)
    total = 0
    for leg in legs:
        if leg.ticker in yes:
            total += leg.pnl_yes + leg.rest_yes
        else:
            total += leg.pnl_no + leg.rest_no
    return total


def _worst_e6(book: EventBook, legs: Sequence[Leg]) -> tuple[int, tuple[str, ...]]:
    spec, results = book.spec, book.results
    if not spec.mutually_exclusive:
        total = 0
        outcome = []
        for leg in legs:
            r = leg.result
            yes = leg.pnl_yes + leg.rest_yes
            no = leg.pnl_no + leg.rest_no
            if r == "yes" or (r is None and yes < no):
                total += yes
                outcome.append(leg.ticker)
            else:
                total += no
        return total, tuple(outcome)
    all_no = sum(leg.pnl_no + leg.rest_no for leg in legs)
    won = [leg for leg in legs if results.get(leg.ticker) == "yes"]
    if won:
        w = won[0]
        return all_no - (w.pnl_no + w.rest_no) + w.pnl_yes + w.rest_yes, (w.ticker,)
    best: tuple[int, tuple[str, ...]] | None = None
    if spec.none_possible:
        best = (all_no, ())
    for leg in legs:
        if results.get(leg.ticker) == "no":
            continue
        v = all_no - (leg.pnl_no + leg.rest_no) + leg.pnl_yes + leg.rest_yes
        if best is None or v < best[0]:
            best = (v, (leg.ticker,))
    if best is None:           # every market settled NO and "none" was declared impossible
        return all_no, ()
    return best


# ---------------------------------------------------------------------------------------------- gate

@dataclass(slots=True, frozen=True)
class EventLimits:
    """Event limits in kmm units. ``max_event_loss`` (1e-4 $) bounds the worst case with every resting
    order filling (the config's ``risk.max_event_loss`` in dollars, x 10 000); ``max_event_exposure``
    (1e-2 contracts) bounds |event inventory| with every resting order on one side filling.
    ``reduce_only_at``: the fraction of either limit, reached by positions alone, from which only
    orders that lower the event's risk pass. ``kill_at``: the fraction of ``max_event_loss`` that
    positions alone must lose more than to raise the kill signal (1.0: past the limit)."""

    max_event_loss: int = 250_000            # $25
    max_event_exposure: int = 10_000         # 100 contracts
    reduce_only_at: float = 0.9
    kill_at: float = 1.0
    per_event_max_loss: dict[str, int] = field(default_factory=dict)
    per_event_max_exposure: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_event_loss <= 0 or self.max_event_exposure <= 0:
            raise ValueError("EventLimits: max_event_loss and max_event_exposure must be > 0")
        if not 0 < self.reduce_only_at <= 1 or self.kill_at < self.reduce_only_at:
            raise ValueError("EventLimits: need 0 < reduce_only_at <= 1 and kill_at >= reduce_only_at")

    def loss_for(self, event: str) -> int:
        return self.per_event_max_loss.get(event, self.max_event_loss)

    def exposure_for(self, event: str) -> int:
        return self.per_event_max_exposure.get(event, self.max_event_exposure)


class EventStatus(enum.Enum):
    OK = "ok"
    REDUCE_ONLY = "reduce_only"      # positions near a limit: pull quotes that do not lower risk
    OVER_LIMIT = "over_limit"        # resting orders could take the event past max_event_loss: pull them
    KILL = "kill"                    # positions alone are past max_event_loss: trip the kill switch


@dataclass(slots=True, frozen=True)
class EventRow:
    """An event at a glance (money 1e-4 $, sizes 1e-2 contracts)."""

    event_ticker: str
    mutually_exclusive: bool
    markets: int
    inventory: int                       # E, the event inventory
    worst_now: int                       # worst outcome P&L of the positions
    worst_now_outcome: tuple[str, ...]
    worst_resting: int                   # ... with every resting order that hurts there filling
    worst_resting_outcome: tuple[str, ...]
    max_event_loss: int
    status: str                          # EventStatus value


@dataclass(slots=True)
class _Proposal:
    ticker: str
    side: str
    price: int
    fee_rate_e6: int


class EventRiskGate:
    """Pre-trade checks per event, to run after :class:`kmm.engine.risk.RiskGate` passes an order.

    ``check_place``/``check_amend`` return ALLOW for a market in no registered event. Reasons:
    ``event_max_loss``, ``event_max_exposure``, ``event_reduce_only``. Cancels and decreases only
    lower every outcome's risk and are never checked.
    """

    def __init__(self, limits: EventLimits, ledger: LedgerView, resting: RestingView | None = None) -> None:
        self.limits = limits
        self.ledger = ledger
        self.resting = resting
        self.events: dict[str, EventBook] = {}
        self._by_market: dict[str, EventBook] = {}
        self.denials: dict[str, int] = {}
        # place_rooms per (ticker, step): (the kept sums, their changes and rev, the limits, the rooms)
        self._rooms: dict[tuple[str, int], tuple[Any, int, int, EventLimits, tuple[int, int]]] = {}
        # kept sums (kmm.engine.eventsums) when both views report what changed: the portfolio's and
        # the order manager's ``watchers``; otherwise every check gathers the event anew
        led_w = getattr(ledger, "watchers", None)
        watch = getattr(resting, "watch", None) if resting is not None else None
        self.incremental = False
        if isinstance(led_w, list) and watch is not None:
            led_w.append(self._touched)
            watch(self._touched)
            self.incremental = True

    def _touched(self, ticker: str | None) -> None:
        if ticker is None:
            for eb in self.events.values():
                if eb.sums is not None:
                    eb.sums.touch(None)
            return
        b = self._by_market.get(ticker)
        if b is not None and b.sums is not None:
            b.sums.dirty.add(ticker)

    def refresh(self) -> None:
        """Bring every event's kept sums up to date now: what the next check's :meth:`EventSums.refresh`
        would do first, done off the order path (the maker calls it once an order or fill callback is
        complete, :meth:`kmm.engine.maker.Engine._sync_owned`), so that a decision's first request finds
        nothing to apply. A failure is logged and left: the next check refreshes, and raises, as before."""
        for name, eb in self.events.items():
            s = eb.sums
            if s is not None and (s.dirty or s.rev != eb.rev):
                try:
                    s.refresh()
                except Exception:
                    log.exception("event %s: refreshing the kept sums failed (the next check retries)", name)

    def _sums(self, book: EventBook) -> EventSums | None:
        """The event's kept sums, up to date; None when the full gather must answer."""
        s = book.sums
        if s is None:
            return None
        return s if s.refresh() else None

    def _verdicts(self, book: EventBook, prop: _Proposal, old: tuple[int, int] | None = None
                  ) -> _Verdicts | SumVerdicts:
        s = self._sums(book)
        if s is not None:
            return s.verdicts(self, prop, old)
        return _Verdicts(self, book, prop, old)

    # ------------------------------------------------------------------ registry
    def add_event(self, spec: EventSpec, *, maker_fee_rate_e6: int = 0,
                  taker_fee_rate_e6: int = 70_000) -> EventBook:
        """Register an event (its session baseline is taken now: load positions first)."""
        for t in spec.markets:
            other = self._by_market.get(t)
            if other is not None and other.ticker != spec.event_ticker:
                raise ValueError(f"add_event {spec.event_ticker}: market {t} already belongs to "
                                 f"event {other.ticker}")
        old = self.events.get(spec.event_ticker)
        if old is not None:
            for t in old.markets:
                self._by_market.pop(t, None)
        book = EventBook(spec, self.ledger, self.resting, maker_fee_rate_e6=maker_fee_rate_e6,
                         taker_fee_rate_e6=taker_fee_rate_e6)
        if old is not None:
            book.baseline.update(old.baseline)
            book.results.update(old.results)
            book.rev += 1
        if self.incremental:
            book.sums = EventSums(book)
        self.events[spec.event_ticker] = book
        for t in spec.markets:
            self._by_market[t] = book
        return book

    def event_of(self, ticker: str) -> EventBook | None:
        return self._by_market.get(ticker)

    def set_baseline(self) -> None:
        """Start every event's session P&L from here (after loading positions)."""
        for b in self.events.values():
            b.set_baseline()

    # ------------------------------------------------------------------ quoting
    def quote_inventory(self, ticker: str, weight: float) -> int:
        """The inventory the strategy should skew ``ticker`` on (1e-2 contracts):
        ``round((1 - weight) * q + weight * E)`` with ``q`` the market's position and ``E`` its event's
        inventory (:meth:`EventBook.inventory`); ``q`` for a market in no event. ``weight`` in [0, 1]."""
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"quote_inventory: weight {weight} must be in [0, 1]")
        q = self.ledger.position(ticker)
        book = self._by_market.get(ticker)
        if book is None or weight == 0.0:
            return q
        s = self._sums(book)
        return round((1.0 - weight) * q + weight * (s.e_open if s is not None else book.inventory()))

    # ------------------------------------------------------------------ status and kill signal
    def status(self, event: str) -> EventStatus:
        """Where an event stands against its limits (see :class:`EventStatus`)."""
        book = self.events[event]
        lim = self.limits
        max_loss = lim.loss_for(event)
        s = self._sums(book)
        if s is not None:
            now = s.worst_now()
            if -now > lim.kill_at * max_loss * E6_PER_E4:
                return EventStatus.KILL
            if -s.worst_resting() > max_loss * E6_PER_E4:
                return EventStatus.OVER_LIMIT
            if (-now >= lim.reduce_only_at * max_loss * E6_PER_E4
                    or abs(s.e_open) >= lim.reduce_only_at * lim.exposure_for(event)):
                return EventStatus.REDUCE_ONLY
            return EventStatus.OK
        legs = book.legs(with_resting=True)
        now = _worst_e6(book, _without_resting(legs))[0]
        if -now > lim.kill_at * max_loss * E6_PER_E4:
            return EventStatus.KILL
        if -_worst_e6(book, legs)[0] > max_loss * E6_PER_E4:
            return EventStatus.OVER_LIMIT
        if self._reduce_only_why(book, legs):
            return EventStatus.REDUCE_ONLY
        return EventStatus.OK

    def kill_signal(self, ticker: str | None = None) -> str | None:
        """The reason to trip the kill switch, when an event's positions alone lose more than
        ``kill_at`` x ``max_event_loss`` in some outcome; None otherwise. Call after fills. (The gate
        lets the worst case with every resting order filling reach the limit exactly, not pass it.)

        ``ticker``: only that market's event is checked (after a fill there: no other event's
        positions moved; the maker's housekeeping tick checks every event); None: every event."""
        books: Iterable[tuple[str, EventBook]]
        if ticker is not None:
            one = self._by_market.get(ticker)
            books = () if one is None else ((one.spec.event_ticker, one),)
        else:
            books = self.events.items()
        for name, book in books:
            limit = self.limits.loss_for(name)
            s = self._sums(book)
            if s is not None and max(0, -_floor_e4(s.worst_now())) <= self.limits.kill_at * limit:
                continue              # the kept sums give the positions' worst case: no kill here
            w = book.worst()
            if w.loss > self.limits.kill_at * limit:
                return (f"event loss limit: event {name} loses {w.loss} (1e-4 $) if "
                        f"{_outcome_name(w.outcome)}; max_event_loss {limit}")
        return None

    def rollup(self) -> list[EventRow]:
        """One row per event for the view, the records and the summary (O(markets + orders))."""
        rows = []
        for name, book in self.events.items():
            legs = book.legs(with_resting=True)
            now_pnl, now_out = _worst_e6(book, _without_resting(legs))
            rest_pnl, rest_out = _worst_e6(book, legs)
            rows.append(EventRow(name, book.spec.mutually_exclusive, len(book.markets),
                                 sum(x.position for x in legs if x.result is None),
                                 _floor_e4(now_pnl), now_out, _floor_e4(rest_pnl), rest_out,
                                 self.limits.loss_for(name), self.status(name).value))
        return rows

    # ------------------------------------------------------------------ checks
    # Every check first asks the compiled predicate (kmm._core.eventgate.Verdicts: the event's numbers
    # gathered once into flat lists, each size checked in O(outcomes) without copying legs or building
    # messages). It gives exactly the verdict of the full check (:meth:`_check`; property-tested against
    # the former methods kept in tests/reference/events.py); a denial, and every check in an event-level
    # reduce-only regime, goes through the full check, which words and counts the denial.
    def check_place(self, ticker: str, side: str, price: int, count: int, *,
                    post_only: bool = True) -> Decision:
        """Allow or deny a new order on the event limits (the fat-finger checks are the RiskGate's)."""
        book = self._by_market.get(ticker)
        if book is None:
            return ALLOW
        prop = self._proposal(book, ticker, side, price, post_only)
        v = self._verdicts(book, prop)
        if v.fast and v.passes(count):
            return ALLOW
        if v.fast and isinstance(v, SumVerdicts):
            return self._check_sums(book, v, prop, count)
        return self._check(book, book.legs(with_resting=True), prop, count)

    def check_amend(self, ticker: str, side: str, price: int, remaining: int, old_price: int | None = None,
                    old_remaining: int = 0) -> Decision:
        """Allow or deny an amend to ``price`` with ``remaining`` left. With ``old_price`` the old order
        is taken out first; without it the old order is still counted (more careful)."""
        book = self._by_market.get(ticker)
        if book is None:
            return ALLOW
        prop = self._proposal(book, ticker, side, price, True)
        v = self._verdicts(book, prop, (old_price, old_remaining) if old_price is not None and old_remaining > 0
                           else None)
        if v.fast and v.passes(remaining):
            return ALLOW
        if v.fast and isinstance(v, SumVerdicts):
            return self._check_sums(book, v, prop, remaining)
        legs = book.legs(with_resting=True)
        if old_price is not None and old_remaining > 0:
            _remove_resting(book, legs, ticker, side, old_price, old_remaining)
        return self._check(book, legs, prop, remaining)

    def max_count(self, ticker: str, side: str, price: int, count: int, *, size_step: int = 100,
                  post_only: bool = True) -> int:
        """The largest size <= ``count``, in multiples of ``size_step`` (1e-2 contracts), that the event
        checks pass: near a limit this sizes the order so it only lowers the event's risk. 0 when no
        size passes. O(markets changed since the last check) with kept sums (else O(markets + their
        resting orders)) once, then O(outcomes x log(count))."""
        book = self._by_market.get(ticker)
        if book is None:
            return count
        prop = self._proposal(book, ticker, side, price, post_only)
        v = self._verdicts(book, prop)
        ok: Callable[[int], bool]
        if v.fast:
            ok = v.passes
        else:
            legs = book.legs(with_resting=True)

            def full(n: int) -> bool:
                return bool(self._check(book, legs, prop, n, count_denial=False))
            ok = full
        lo, hi = 0, count // size_step           # the check passes at lo; find the largest passing k
        if hi and ok(hi * size_step):
            return hi * size_step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid * size_step):
                lo = mid
            else:
                hi = mid
        return lo * size_step

    def fits_whole(self, ticker: str, side: str, price: int, count: int,
                   old: tuple[int, int] | None = None) -> bool:
        """True when a post-only place of ``count`` passes the event checks whole, answered from the
        kept sums (``max_count(...) == count`` then, without a denial counted); with ``old`` (the
        price and remaining of an order being amended, taken out first) when the amend passes
        (``check_amend`` allows it). False says only "ask the full check" (the reduce-only regime, a
        decided event, no kept sums, a market in no event). The order path asks this first
        (kmm.engine.eventwire.EventWiring.size_place, check_amend)."""
        book = self._by_market.get(ticker)
        if book is None or count <= 0 or (side != "bid" and side != "ask"):
            return False
        s = book.sums
        if s is None or not s.refresh():
            return False
        return s.passes_whole(self, ticker, side == "bid", price, count, old)

    def place_rooms(self, ticker: str, step: int = 1) -> tuple[int, int]:
        """How far a new post-only place on each side of ``ticker`` may lower the event's P&L and still
        pass the event checks now: ``(bid_room, ask_room)`` in 1e-6 $. A bid of ``step`` (the least
        size the order path tries: 100, or 1 on a fractional market) at price ``p`` lowers it by at
        least ``step * p``, an ask by ``step * (1$ - p)`` (the fee only adds), so the gate refuses every
        size of a bid with ``step * p > bid_room`` (likewise the ask); -1: the side is refused whatever
        the price; :data:`ROOM_OPEN`: nothing known to be refused (a market in no event, a settled
        market, a decided event, a gate without kept sums).

        Read from the kept sums after :meth:`EventSums.refresh`, so it is as fresh as the next check.
        Each bound is one of :meth:`_check`'s own rules holding for every size from ``step`` on; the
        gate stays the authority (the planner still checks every place it is asked for). With ``e``
        the event inventory, ``d_k = py_k - pn_k`` (market k's position, 1e-6 $), ``M`` the least
        ``d_j`` over the outcomes where k settles NO (0 for "none"; 0 for independent markets), and
        ``low_yes`` / ``low_no`` the lowest P&L with what rests over the outcomes where k settles YES /
        NO (``floor`` = -max_event_loss):

        * every regime, the loss limit: a bid lowers every outcome where k settles NO: room
          ``low_no - floor``; an ask lowers "k YES": ``low_yes - floor``;
        * reduce-only on loss: (b) a bid passes only if ``M - d_k >= size x $1`` (it must raise the
          worst outcome and not pass the others): refused whatever the price when
          ``M - d_k < step x $1``, an ask when ``d_k - M < step x $1``; (a) with what rests the worst
          case may not fall: room ``low_no - low_yes`` for a bid, ``low_yes - low_no`` for an ask;
        * reduce-only on exposure: the side that does not lower |e| is refused (bid when ``e >= 0``,
          ask when ``e <= 0``);
        * otherwise the exposure limit: ``e +- (same side resting + step)`` past
          ``max_event_exposure`` and further from 0 than ``e`` refuses the side (more only goes further).

        Orders added within one decision only lower the P&L with what rests and raise the resting
        size, so a place refused at the start of a decision stays refused through it. The pipelines
        drop the places outside the rooms (``Pipeline.bid_room`` / ``ask_room``); amends and cancels
        still go to the gate (an amend takes its own order out first)."""
        book = self._by_market.get(ticker)
        if book is None:
            return ROOMS_OPEN
        s = book.sums
        if s is None or not s.refresh() or book.results.get(ticker) is not None:
            return ROOMS_OPEN
        lim = self.limits
        # every decision asks; the rooms only move with the kept sums (fills, orders, results, a
        # rebuild: EventSums.changes / rev) or the limits (a new EventLimits object)
        kept = self._rooms.get((ticker, step))
        if kept is not None and kept[0] is s and kept[1] == s.changes and kept[2] == s.rev and kept[3] is lim:
            return kept[4]
        rooms = self._place_rooms(book, s, ticker, step, lim)
        self._rooms[(ticker, step)] = (s, s.changes, s.rev, lim, rooms)
        return rooms

    def _place_rooms(self, book: EventBook, s: Any, ticker: str, step: int, lim: EventLimits) -> tuple[int, int]:
        """:meth:`place_rooms` computed from the refreshed sums ``s`` of ``book``."""
        k = s.idx[ticker]
        name = book.ticker
        max_loss = lim.loss_for(name)
        limit_e = lim.exposure_for(name)
        floor = -max_loss * E6_PER_E4
        py, pn, ry, rn = s.py[k], s.pn[k], s.ry[k], s.rn[k]
        low_no: int | None
        m: int | None
        now = s.worst_now()
        if s.me:
            ej = s._least(s.hp, k)
            m = None if ej is None else ej[0]         # least d_j over the other open markets
            if s.none_incl and (m is None or m > 0):
                m = 0
            er = s._least(s.hr, k)
            low_no = None if er is None else s.sum_rn + er[0]
            if s.none_incl and (low_no is None or low_no > s.sum_rn):
                low_no = s.sum_rn
            low_yes = s.sum_rn - rn + ry
        else:
            m = 0
            others = s.sum_cr - (ry if ry < rn else rn)
            low_yes, low_no = others + ry, others + rn
        bid = ROOM_OPEN if low_no is None else low_no - floor
        ask = low_yes - floor
        if m is not None and low_no is not None and -now >= lim.reduce_only_at * max_loss * E6_PER_E4:
            d_k = py - pn
            bid = -1 if m - d_k < step * ONE_DOLLAR else min(bid, low_no - low_yes)
            ask = -1 if d_k - m < step * ONE_DOLLAR else min(ask, low_yes - low_no)
        e = s.e_open
        if abs(e) >= lim.reduce_only_at * limit_e:
            if e >= 0:
                bid = -1
            if e <= 0:
                ask = -1
        else:
            x = e + s.bids_open + step
            if abs(x) > limit_e and abs(x) > abs(e):
                bid = -1
            x = e - s.asks_open - step
            if abs(x) > limit_e and abs(x) > abs(e):
                ask = -1
        return (bid if bid >= 0 else -1), (ask if ask >= 0 else -1)

    # ------------------------------------------------------------------ internals
    def _proposal(self, book: EventBook, ticker: str, side: str, price: int, post_only: bool) -> _Proposal:
        if side not in ("bid", "ask"):
            raise ValueError(f"event check on {ticker}: side {side!r} must be 'bid' or 'ask'")
        rate = book.maker_fee_rate_e6 if post_only else book.taker_fee_rate_e6
        return _Proposal(ticker, side, price, rate)

    def _deny(self, reason: str, detail: str, count_denial: bool) -> Decision:
        if count_denial:
            self.denials[reason] = self.denials.get(reason, 0) + 1
        return Decision(False, reason, detail)

    def _reduce_only_why(self, book: EventBook, legs: Sequence[Leg]) -> str:
        loss, exposure = self._reduce_flags(book, legs)
        return " and ".join(w for w, on in (("event loss near its limit", loss),
                                            ("event exposure near its limit", exposure)) if on)

    def _reduce_flags(self, book: EventBook, legs: Sequence[Leg]) -> tuple[bool, bool]:
        lim = self.limits
        now = _worst_e6(book, _without_resting(legs))[0]
        loss = -now >= lim.reduce_only_at * lim.loss_for(book.ticker) * E6_PER_E4
        e = sum(leg.position for leg in legs if leg.result is None)
        return loss, abs(e) >= lim.reduce_only_at * lim.exposure_for(book.ticker)

    def _check_sums(self, book: EventBook, v: SumVerdicts, prop: _Proposal, count: int) -> Decision:
        """:meth:`_check` outside the reduce-only regime (``v.fast``) from the kept sums: the same
        rules, reasons and sentences, without gathering the event's legs."""
        lim = self.limits
        name = book.ticker
        where = f"{prop.side} {count} @ {prop.price} on {prop.ticker} (event {name})"
        max_loss = lim.loss_for(name)
        low, low_outcome = v.lowered_worst(count)
        if low is not None and low < -max_loss * E6_PER_E4:
            return self._deny("event_max_loss", f"{where}: with every resting order filling, the "
                              f"event could lose {-_floor_e4(low)} if {_outcome_name(low_outcome)}; "
                              f"limit max_event_loss {max_loss} (1e-4 $)", True)
        return self._exposure(where, lim.exposure_for(name), v.e_now, v.same, 1 if v.bid else -1, count, True)

    def _check(self, book: EventBook, legs: list[Leg], prop: _Proposal, count: int, *,
               count_denial: bool = True) -> Decision:
        lim = self.limits
        name = book.ticker
        where = f"{prop.side} {count} @ {prop.price} on {prop.ticker} (event {name})"
        k = next(i for i, leg in enumerate(legs) if leg.ticker == prop.ticker)
        leg = legs[k]
        fee = trade_fee(count, prop.price, prop.fee_rate_e6) if prop.fee_rate_e6 and count > 0 else 0
        ch_yes = order_change_e6(prop.side, prop.price, count, ONE_DOLLAR, fee)
        ch_no = order_change_e6(prop.side, prop.price, count, 0, fee)
        before = _worst_e6(book, legs)[0]
        after_legs = list(legs)
        after_legs[k] = _replace(leg, rest_yes=leg.rest_yes + min(0, ch_yes),
                                 rest_no=leg.rest_no + min(0, ch_no))
        after, after_outcome = _worst_e6(book, after_legs)
        loss_ro, exposure_ro = self._reduce_flags(book, legs)
        if loss_ro:
            why = "reduce-only (event loss near its limit)"
            # (a) with what rests, in any combination of fills, no outcome falls below today's worst case
            if after < before:
                return self._deny("event_reduce_only", f"{where}: {why}; the order could lower the "
                                  f"event's worst case from {_floor_e4(before)} to {_floor_e4(after)} "
                                  "(1e-4 $)", count_denial)
            # (b) filled in full, it improves the positions' worst case without going past the best
            # point: the outcomes it lowers stay at or above the outcomes it raises (like RiskGate's
            # "reduces |position| without crossing zero"); so every partial fill improves it too
            if not _reduces_without_crossing(book, _without_resting(legs), k, ch_yes, ch_no):
                return self._deny("event_reduce_only", f"{where}: {why}; filled, the order would lower "
                                  "the worst case of the event's positions", count_denial)
        # in both regimes every outcome the order lowers must stay at or above the limit: "the worst
        # case does not fall" (reduce-only's (a)) is not enough once some outcome is already past it (a
        # lowered limit, an amend in flight counted at both sizes), as the order could then take
        # another outcome past it too: when the amend is answered that outcome is the worst, past the
        # limit (tests/engine/test_events.py, ..._while_an_amend_is_counted_twice)
        max_loss = lim.loss_for(name)
        low, low_outcome = _lowered_worst(book, after_legs, k, ch_yes < 0, ch_no < 0)
        if low is not None and low < -max_loss * E6_PER_E4:
            return self._deny("event_max_loss", f"{where}: with every resting order filling, the "
                              f"event could lose {-_floor_e4(low)} if {_outcome_name(low_outcome)}; "
                              f"limit max_event_loss {max_loss} (1e-4 $)", count_denial)
        sign = 1 if prop.side == "bid" else -1
        open_legs = [x for x in legs if x.result is None]
        e_now = sum(x.position for x in open_legs)
        same = sum(x.bids for x in open_legs) if sign > 0 else sum(x.asks for x in open_legs)
        if exposure_ro:
            # like RiskGate's reduce-only: lowers |E| and, with what rests that way, does not cross zero
            if e_now * sign >= 0 or same + count > abs(e_now):
                return self._deny("event_reduce_only", f"{where}: reduce-only (event exposure near its "
                                  f"limit); would not reduce event inventory {e_now} with {same} resting "
                                  "the same way (1e-2 contracts)", count_denial)
            return ALLOW
        return self._exposure(where, lim.exposure_for(name), e_now, same, sign, count, count_denial)

    def _exposure(self, where: str, limit_e: int, e_now: int, same: int, sign: int, count: int,
                  count_denial: bool) -> Decision:
        """The exposure limit: the event's inventory with everything resting the same way and this
        order filled may not pass ``limit_e``, unless it is no further from zero than now."""
        extreme = e_now + sign * (same + count)
        if abs(extreme) > limit_e and abs(extreme) > abs(e_now):
            return self._deny("event_max_exposure", f"{where}: event inventory {e_now} with {same} resting "
                              f"the same way could reach {extreme}, limit max_event_exposure {limit_e} "
                              "(1e-2 contracts)", count_denial)
        return ALLOW


def _lowered_worst(book: EventBook, legs: Sequence[Leg], k: int, lowers_yes: bool, lowers_no: bool
                   ) -> tuple[int | None, tuple[str, ...]]:
    """The lowest P&L (1e-6 $, ``legs`` already holding the order) over the outcomes in which an order
    in market ``k`` lowers the P&L: where ``k`` settles YES (``lowers_yes``) or NO (``lowers_no``).
    (None, ()) when it lowers no possible outcome. O(markets)."""
    leg = legs[k]
    r = leg.result
    if not book.spec.mutually_exclusive:
        others, out = 0, []
        for i, x in enumerate(legs):
            if i == k:
                continue
            y, n = x.pnl_yes + x.rest_yes, x.pnl_no + x.rest_no
            if x.result == "yes" or (x.result is None and y < n):
                others += y
                out.append(x.ticker)
            else:
                others += n
        cands = []
        if lowers_yes and r != "no":
            cands.append((others + leg.pnl_yes + leg.rest_yes, tuple(out + [leg.ticker])))
        if lowers_no and r != "yes":
            cands.append((others + leg.pnl_no + leg.rest_no, tuple(out)))
        return min(cands) if cands else (None, ())
    by_ticker = {x.ticker: x for x in legs}
    all_no = sum(x.pnl_no + x.rest_no for x in legs)
    best: tuple[int, tuple[str, ...]] | None = None
    for o in book.outcomes():
        k_yes = leg.ticker in o
        if not ((lowers_yes and k_yes) or (lowers_no and not k_yes)):
            continue
        if o:
            w = by_ticker[o[0]]
            v = all_no - (w.pnl_no + w.rest_no) + w.pnl_yes + w.rest_yes
        else:
            v = all_no
        if best is None or v < best[0]:
            best = (v, o)
    return best if best is not None else (None, ())


def _reduces_without_crossing(book: EventBook, held: list[Leg], k: int, ch_yes: int, ch_no: int) -> bool:
    """Whether adding an order's fill (``ch_yes``/``ch_no`` in market ``k``, 1e-6 $) to the positions
    leaves the lowest of the outcomes it lowers at or above the lowest of the outcomes it raises.
    The worst case is then min(raised), which grows with the fill: no partial fill lowers it."""
    f = held[k]
    held[k] = _replace(f, pnl_yes=f.pnl_yes + ch_yes, pnl_no=f.pnl_no + ch_no)
    lowered: int | None = None
    raised: int | None = None
    spec = book.spec
    if spec.mutually_exclusive:
        after = {o: _outcome_e6(held, o) for o in book.outcomes()}
        for o, v in after.items():
            ch = ch_yes if f.ticker in o else ch_no
            if ch < 0:
                lowered = v if lowered is None else min(lowered, v)
            else:
                raised = v if raised is None else min(raised, v)
    else:
        # independent markets: the rest of the event adds the same amount to both sides of market k
        rest = sum(min(x.pnl_yes, x.pnl_no) for i, x in enumerate(held) if i != k and x.result is None)
        x = held[k]
        for v, ch in ((x.pnl_yes, ch_yes), (x.pnl_no, ch_no)):
            if ch < 0:
                lowered = v + rest if lowered is None else min(lowered, v + rest)
            else:
                raised = v + rest if raised is None else min(raised, v + rest)
    if lowered is None:
        return True
    if raised is None:
        return False
    return lowered >= raised


def _replace(leg: Leg, **changes: int) -> Leg:
    out = Leg(leg.ticker, leg.position, leg.pnl_yes, leg.pnl_no, leg.rest_yes, leg.rest_no, leg.bids,
              leg.asks, leg.result)
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def _without_resting(legs: Sequence[Leg]) -> list[Leg]:
    return [Leg(x.ticker, x.position, x.pnl_yes, x.pnl_no, result=x.result) for x in legs]


def _remove_resting(book: EventBook, legs: list[Leg], ticker: str, side: str, price: int, remaining: int) -> None:
    k = next(i for i, leg in enumerate(legs) if leg.ticker == ticker)
    leg = legs[k]
    rate = book.maker_fee_rate_e6
    fee = trade_fee(remaining, price, rate) if rate else 0
    legs[k] = _replace(leg, rest_yes=leg.rest_yes - min(0, order_change_e6(side, price, remaining, ONE_DOLLAR, fee)),
                       rest_no=leg.rest_no - min(0, order_change_e6(side, price, remaining, 0, fee)),
                       bids=leg.bids - (remaining if side == "bid" else 0),
                       asks=leg.asks - (remaining if side == "ask" else 0))


def _outcome_name(outcome: tuple[str, ...]) -> str:
    if not outcome:
        return "no market settles YES"
    return " and ".join(outcome) + " settle" + ("s" if len(outcome) == 1 else "") + " YES"


# ---------------------------------------------------------------------------------------------- settlement

@dataclass(slots=True, frozen=True)
class EventSettlement:
    """What settling a whole event paid, 1e-4 $: per market and in total, as booked by the portfolio
    and as Kalshi's formula gives it (``expected``); ``ok`` when they agree to the cent."""

    event_ticker: str
    results: dict[str, str]
    paid: dict[str, int]
    expected: dict[str, int]

    @property
    def total_paid(self) -> int:
        return sum(self.paid.values())

    @property
    def total_expected(self) -> int:
        return sum(self.expected.values())

    @property
    def ok(self) -> bool:
        return all(abs(self.paid[t] - self.expected[t]) < 100 for t in self.paid)


def event_results(spec: EventSpec, winner: str | None) -> dict[str, str]:
    """Every market's result when ``winner`` settles YES (None: no market does) in a mutually exclusive
    event."""
    if not spec.mutually_exclusive:
        raise ValueError(f"event {spec.event_ticker} is not mutually exclusive: give each market's result")
    if winner is not None and winner not in spec.markets:
        raise ValueError(f"event {spec.event_ticker}: winner {winner!r} is not one of {spec.markets}")
    if winner is None and not spec.none_possible:
        raise ValueError(f"event {spec.event_ticker}: declared exhaustive, so one market must win")
    return {t: "yes" if t == winner else "no" for t in spec.markets}


def settle_event(book: EventBook, results: Mapping[str, str] | str | None,
                 settle: Callable[[str, str], int]) -> EventSettlement:
    """Settle every market of ``book``'s event from one result: a winner ticker (or None) for a
    mutually exclusive event, or each market's ``"yes"``/``"no"``. ``settle`` books one market and
    returns what it paid in 1e-4 $ (:meth:`kmm.engine.portfolio.Portfolio.settle` fits); the payout
    Kalshi's formula gives for the position before settlement is returned beside it."""
    spec = book.spec
    if results is None or isinstance(results, str):
        res = event_results(spec, results)
    else:
        res = dict(results)
        missing = [t for t in spec.markets if t not in res and t not in book.results]
        if missing:
            raise ValueError(f"settle_event {spec.event_ticker}: no result for {missing}")
        yes = [t for t, r in res.items() if r == "yes"]
        if spec.mutually_exclusive and len(yes) > 1:
            raise ValueError(f"settle_event {spec.event_ticker}: mutually exclusive, but {yes} all YES")
    paid: dict[str, int] = {}
    expected: dict[str, int] = {}
    for t in spec.markets:
        if t in book.results or t not in res:
            continue
        r = res[t]
        expected[t] = payout(book.ledger.position(t), r)
        paid[t] = settle(t, r)
        book.on_market_settled(t, r)
    return EventSettlement(spec.event_ticker, res, paid, expected)
