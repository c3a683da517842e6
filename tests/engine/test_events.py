"""Events: outcome P&L, worst cases (brute-forced against the real Portfolio), the event risk gate,
event inventory for quoting, and settling a whole event to the cent (also against ``kmm sim``)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from kmm._core.fees import trade_fee
from kmm._core.grid import Grid
from kmm.engine.events import (
    EventBook,
    EventLimits,
    EventRiskGate,
    EventSpec,
    EventStatus,
    event_spec_from_json,
    may_fill_from_orders,
    payout,
    settle_event,
)
from kmm.engine.clock import ManualClock
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill, MarketPosition
from kmm.strategy.base import MarketInputs, Target
from kmm.strategy.stoikov import StoikovStrategy

A, B, C = "KXEV-26-A", "KXEV-26-B", "KXEV-26-C"
EXCL = EventSpec("KXEV-26", True, (A, B, C))
_tid = itertools.count()


class Resting:
    """A stand-in for the order manager's ``may_fill``: orders per market as (side, price, remaining)."""

    def __init__(self) -> None:
        self.orders: dict[str, list[tuple[str, int, int]]] = {}

    def may_fill(self, ticker: str) -> Iterable[tuple[str, int, int]]:
        return self.orders.get(ticker, [])

    def add(self, ticker: str, side: str, price: int, count: int) -> None:
        self.orders.setdefault(ticker, []).append((side, price, count))

    def all(self) -> list[tuple[str, str, int, int]]:
        return [(t, s, p, c) for t, lst in self.orders.items() for (s, p, c) in lst]


def fill(pf: Portfolio, ticker: str, side: str, price: int, count: int, fee: int = 0) -> None:
    assert pf.apply_fill(Fill(f"t{next(_tid)}", "o", None, ticker, side, price, count, fee, False, None, 0))


# ---------------------------------------------------------------- outcome P&L, by hand

def test_outcome_pnl_of_a_mutually_exclusive_event_by_hand():
    pf = Portfolio(cash=1_000_0000)
    book = EventBook(EXCL, pf)
    fill(pf, A, "bid", 3000, 1000)     # 10 YES A at 0.30: $3
    fill(pf, B, "bid", 4000, 1000)     # 10 YES B at 0.40: $4
    fill(pf, C, "ask", 2000, 1000)     # 10 NO C at 0.80: $8
    # A wins: A pays 10, C's NO pays 10, minus $15 paid = +5; C wins: nothing pays = -15; none: +10 - 15
    assert book.outcome_pnl() == {(): -5_0000, (A,): 5_0000, (B,): 5_0000, (C,): -15_0000}
    w = book.worst()
    assert (w.pnl, w.outcome, w.loss) == (-15_0000, (C,), 15_0000)
    assert book.inventory() == 1000     # +10 A +10 B -10 C (YES-equivalent)


def test_exhaustive_event_drops_the_none_outcome():
    pf = Portfolio()
    book = EventBook(EventSpec("EV", True, (A, B), none_possible=False), pf)
    fill(pf, A, "bid", 5000, 1000)
    fill(pf, B, "bid", 5000, 1000)
    # a full set of an exhaustive event is riskless: it pays $10 whoever wins, cost $10
    assert book.outcome_pnl() == {(A,): 0, (B,): 0}
    assert book.worst().pnl == 0


def test_resting_orders_count_only_where_they_hurt_by_hand():
    pf, rest = Portfolio(), Resting()
    book = EventBook(EXCL, pf, rest)
    rest.add(A, "bid", 3000, 1000)       # A YES: +7, otherwise -3
    rest.add(B, "ask", 6000, 500)        # B YES: -2, otherwise +3
    # A: 0 (bid helps) + 0 (ask helps) ; B: -3 (A's bid) - 2 ; C, none: -3
    assert book.outcome_pnl(with_resting=True) == {(): -3_0000, (A,): 0, (B,): -5_0000, (C,): -3_0000}
    assert book.worst(with_resting=True).outcome == (B,)
    assert book.worst().pnl == 0         # positions only: flat


def test_independent_event_sums_each_markets_worse_side():
    pf = Portfolio()
    book = EventBook(EventSpec("EV", False, (A, B)), pf)
    fill(pf, A, "bid", 3000, 1000)       # A: yes +7, no -3
    fill(pf, B, "ask", 3000, 1000)       # B: yes -7, no +3
    w = book.worst()
    assert (w.pnl, w.outcome) == (-10_0000, (B,))


def test_baseline_keeps_the_accounts_history_out_of_the_event_loss():
    pf = Portfolio(cash=1_000_0000)
    # loaded from the exchange: 10 YES A costing $4, $100 realized long ago, $1 fees
    pf.load_position(MarketPosition(A, 1000, 4_0000, 100_0000, 1_0000))
    book = EventBook(EXCL, pf)
    assert book.outcome_pnl() == {(): -4_0000, (A,): 6_0000, (B,): -4_0000, (C,): -4_0000}


def test_settled_markets_narrow_the_outcomes():
    pf = Portfolio()
    book = EventBook(EXCL, pf)
    fill(pf, C, "bid", 2000, 1000)
    pf.settle(C, "no")
    book.on_market_settled(C, "no")
    assert book.outcomes() == [(), (A,), (B,)]
    assert book.worst().pnl == -2_0000
    pf.settle(A, "yes")
    book.on_market_settled(A, "yes")
    assert book.outcomes() == [(A,)]


def test_event_spec_from_the_events_endpoint_body():
    body = {"event": {"event_ticker": "KXEV-26", "series_ticker": "KXEV", "mutually_exclusive": True,
                      "collateral_return_type": "MECNET"},
            "markets": [{"ticker": A}, {"ticker": B}, {"ticker": C}]}
    assert event_spec_from_json(body) == EXCL
    nested = {"event_ticker": "E2", "mutually_exclusive": False, "markets": [{"ticker": A}]}
    assert event_spec_from_json(nested) == EventSpec("E2", False, (A,))
    with pytest.raises(ValueError):
        event_spec_from_json({"markets": []})


def test_may_fill_counts_cancels_in_flight_and_an_amend_once_at_its_larger_size_and_worse_price():
    clock = ManualClock()
    om = OrderManager(clock, session="e")
    o1 = om.create(A, "bid", 4000, 500)
    o2 = om.create(A, "ask", 6000, 300)
    o3 = om.create(A, "bid", 5500, 200)
    from kmm.kalshi.types import OrderAck
    om.on_ack(OrderAck("id1", o1.client_order_id, 0, 500))
    om.on_ack(OrderAck("id2", o2.client_order_id, 0, 300))
    om.on_ack(OrderAck("id3", o3.client_order_id, 0, 200))
    om.request_cancel("id1")
    om.request_amend("id2", 6100, 400)      # an ask's worse price is the lower: 300 or 400 at $0.60 at most
    om.request_amend("id3", 5600, 100)      # a bid above $0.50 with maker fees: both entries stay
    assert sorted(may_fill_from_orders(om.orders())) == [("ask", 6000, 400), ("bid", 4000, 500),
                                                         ("bid", 5500, 200), ("bid", 5600, 100)]
    # without maker fees the bid is one entry too: 200 at $0.56
    assert sorted(may_fill_from_orders(om.orders(), fee_free={A})) == [("ask", 6000, 400), ("bid", 4000, 500),
                                                                       ("bid", 5600, 200)]


def _amend_mixes(remaining: int, new_remaining: int):
    """Every (filled at the old price, filled at the new price) an order with ``remaining`` left and an
    amend in flight to ``new_remaining`` (Kalshi's new total less what was filled when it was sent) can
    still come to: ``k`` fills before the exchange applies the amend, then either the amend applies
    (``new_remaining - k`` left at the new price) or, when ``k`` reached the new total, it is refused
    and the rest stays at the old price."""
    for k in range(remaining + 1):
        if new_remaining - k > 0:
            for j in range(new_remaining - k + 1):
                yield k, j
        else:
            for more in range(remaining - k + 1):
                yield k + more, 0


@settings(max_examples=400, deadline=None)
# 0.03 contracts at $0.7439 pay a fee of $0.0002, at $0.7440 one of $0.0001: with the fee rounded, the
# bid's new, higher price costs $0.000097 less than its old one, so both entries must stay (the ask
# mirrors it); one entry at the worse price would be that much short
@example("bid", 7439, 7440, 3, 3, 17_500, False, 1)
@example("ask", 2561, 2560, 3, 3, 17_500, False, 1)
@given(st.sampled_from(["bid", "ask"]), st.integers(1, 9999), st.integers(1, 9999), st.integers(0, 7),
       st.integers(-2, 7), st.sampled_from([0, 17_500, 70_000]), st.booleans(), st.integers(1, 60))
def test_an_amend_in_flight_is_bounded_by_its_entries_in_every_outcome(side, price, new_price, remaining,
                                                                       new_remaining, rate, fee_free, unit):
    """Whatever mix of old-price and new-price fills an amend in flight comes to, its P&L in each
    outcome is never below what the event gate counts for its entries (``resting_sums``), nor its size
    above theirs. Fees: as charged (rounded up to $0.0001) when the whole size fills at once at one
    price, else exact (the rounding of a partial fill is what the bound of every resting order leaves
    out: one contract of a two-contract order filled alone rounds its own fee)."""
    from fractions import Fraction

    from kmm._core.eventgate import resting_sums
    from kmm.engine.events import amend_entries
    if fee_free:
        rate = 0
    remaining, new_remaining = remaining * unit, new_remaining * unit       # sizes in 1e-2 contracts
    entries = amend_entries(side, price, remaining, new_price, new_remaining, fee_free)
    ry, rn, bids, asks = resting_sums(list(entries), rate)
    held = bids if side == "bid" else asks
    # no mix is lost: enumerate in whole units (linear in each count: the extremes are the units' ends)
    for a, b in _amend_mixes(remaining // unit, new_remaining // unit):
        a, b = a * unit, b * unit
        fee = Fraction(rate * (a * price * (10_000 - price) + b * new_price * (10_000 - new_price)), 10**10)
        if a + b == max(remaining, new_remaining) and not (a and b):
            # the whole size in one fill at one price: the fee as charged, rounded up to $0.0001
            fee = 100 * (trade_fee(a, price, rate) + trade_fee(b, new_price, rate))
        cost = a * price + b * new_price                  # 1e-6 $
        if side == "bid":
            yes, no = (a + b) * 10_000 - cost - fee, -cost - fee
        else:
            yes, no = cost - (a + b) * 10_000 - fee, cost - fee
        assert a + b <= held, (entries, a, b)
        assert yes >= ry and no >= rn, (entries, a, b, yes, ry, no, rn)


# ---------------------------------------------------------------- brute force: the true worst case

def _outcomes(spec: EventSpec) -> list[tuple[str, ...]]:
    if spec.mutually_exclusive:
        return [(t,) for t in spec.markets] + ([()] if spec.none_possible else [])
    return [tuple(t for t, y in zip(spec.markets, bits) if y)
            for bits in itertools.product((0, 1), repeat=len(spec.markets))]


def brute_worst(spec: EventSpec, pf: Portfolio, orders: Sequence[tuple[str, str, int, int]], rate: int,
                fractions: Sequence[int] = (0, 1, 2)) -> int:
    """The worst settled P&L (realized - fees, 1e-4 $) over every outcome and every combination of the
    orders filling none, half or all of their size, booked and settled by the real Portfolio."""
    worst: int | None = None
    for fracs in itertools.product(fractions, repeat=len(orders)):
        p = copy.deepcopy(pf)
        for (t, side, price, count), fr in zip(orders, fracs):
            if fr:
                n = count * fr // 2
                fill(p, t, side, price, n, trade_fee(n, price, rate) if rate else 0)
        for outcome in _outcomes(spec):
            q = copy.deepcopy(p)
            for t in spec.markets:
                q.settle(t, "yes" if t in outcome else "no")
            pnl = q.realized_pnl() - q.fees_paid()
            worst = pnl if worst is None else min(worst, pnl)
    assert worst is not None
    return worst


prices = st.integers(1, 99).map(lambda c: c * 100)
sizes = st.integers(1, 5).map(lambda n: n * 200)          # even whole contracts: halves stay whole
sides = st.sampled_from(["bid", "ask"])


@st.composite
def event_cases(draw):
    n = draw(st.integers(1, 3))
    markets = tuple(f"KXM-{i}" for i in range(n))
    spec = EventSpec("KXM", draw(st.booleans()), markets, draw(st.booleans()))
    pos = draw(st.lists(st.tuples(st.sampled_from(markets), sides, prices, sizes), max_size=5))
    orders = draw(st.lists(st.tuples(st.sampled_from(markets), sides, prices, sizes), max_size=4))
    rate = draw(st.sampled_from([0, 17_500, 70_000]))
    return spec, pos, orders, rate


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_cases())
def test_worst_case_with_resting_orders_is_the_brute_force_worst_over_fills_and_outcomes(case):
    spec, pos, orders, rate = case
    pf, rest = Portfolio(cash=10_000_0000), Resting()
    book = EventBook(spec, pf, rest, maker_fee_rate_e6=rate)
    for t, side, price, count in pos:
        fill(pf, t, side, price, count, trade_fee(count, price, rate) if rate else 0)
    for t, side, price, count in orders:
        rest.add(t, side, price, count)
    assert book.worst(with_resting=True).pnl == brute_worst(spec, pf, rest.all(), rate)
    assert book.worst().pnl == brute_worst(spec, pf, [], rate)
    # every outcome's P&L from positions equals what the portfolio books when the event settles so
    for outcome, pnl in book.outcome_pnl().items():
        q = copy.deepcopy(pf)
        for t in spec.markets:
            q.settle(t, "yes" if t in outcome else "no")
        assert q.realized_pnl() - q.fees_paid() == pnl


# ---------------------------------------------------------------- the gate

def gate_setup(**limits: int | float) -> tuple[EventRiskGate, Portfolio, Resting]:
    pf, rest = Portfolio(cash=10_000_0000), Resting()
    gate = EventRiskGate(EventLimits(**limits), pf, rest)  # type: ignore[arg-type]
    gate.add_event(EXCL)
    return gate, pf, rest


def test_market_in_no_event_is_not_checked():
    gate, *_ = gate_setup()
    assert gate.check_place("KXOTHER", "bid", 9900, 10_000_000).allowed
    assert gate.max_count("KXOTHER", "bid", 9900, 700) == 700


def test_bids_across_every_outcome_stop_at_the_event_loss_limit():
    gate, pf, rest = gate_setup(max_event_loss=10_0000, max_event_exposure=1_000_000)   # $10
    # bids of 10 at 0.30 in A and B: "none" and C lose $6 if both fill
    for t in (A, B):
        assert gate.check_place(t, "bid", 3000, 1000).allowed
        rest.add(t, "bid", 3000, 1000)
    # a third bid of 20 at 0.30 in C: losing $6 + $6 = $12 if none wins
    d = gate.check_place(C, "bid", 3000, 2000)
    assert not d.allowed and d.reason == "event_max_loss"
    assert "no market settles YES" in d.detail and "KXEV-26" in d.detail
    # the largest size that keeps the worst case within $10: 4/0.30 = 13.33 -> 13 contracts
    n = gate.max_count(C, "bid", 3000, 2000)
    assert n == 1300
    assert gate.check_place(C, "bid", 3000, n).allowed
    assert not gate.check_place(C, "bid", 3000, n + 100).allowed
    # an ask in A only helps when A loses and hurts when A wins (where A's bid made +7): allowed
    assert gate.check_place(A, "ask", 5000, 1000).allowed
    assert gate.denials == {"event_max_loss": 2}


def test_kill_signal_for_one_market_checks_only_its_event():
    """After a fill the maker asks for the filled market's event only (its housekeeping tick asks for
    every event): the answer for a market of the event past its kill line is the event's reason, for a
    market of another event (or of none) nothing, and asking for every event still finds it."""
    other = EventSpec("KXOTH-26", True, ("KXOTH-26-X", "KXOTH-26-Y"))
    gate, pf, rest = gate_setup(max_event_loss=10_0000, max_event_exposure=1_000_000, reduce_only_at=0.9)
    gate.add_event(other)
    fill(pf, A, "bid", 4000, 2500)           # lose $10 if A does not win: at the limit, not past it
    assert gate.kill_signal(A) is None and gate.kill_signal() is None
    fill(pf, "KXOTH-26-X", "bid", 5000, 100)  # a small position in the other event
    fill(pf, A, "bid", 4000, 100)            # $10.40: past it
    why = gate.kill_signal()
    assert why is not None and "KXEV-26" in why
    assert gate.kill_signal(A) == why and gate.kill_signal(C) == why   # any market of the event
    assert gate.kill_signal("KXOTH-26-X") is None                        # the other event is fine
    assert gate.kill_signal("KXNONE-26-Z") is None                       # a market in no event


def test_amend_takes_the_old_order_out_when_its_price_is_given():
    gate, pf, rest = gate_setup(max_event_loss=5_0000, max_event_exposure=1_000_000)
    rest.add(A, "bid", 4000, 1000)           # -4 when A loses
    assert not gate.check_amend(A, "bid", 4500, 1000).allowed          # both counted: -8.5
    assert gate.check_amend(A, "bid", 4500, 1000, 4000, 1000).allowed  # only the new one: -4.5


def test_reduce_only_near_the_loss_limit_sizes_the_order_to_lower_the_worst_case():
    gate, pf, rest = gate_setup(max_event_loss=10_0000, max_event_exposure=1_000_000, reduce_only_at=0.9)
    fill(pf, A, "bid", 4000, 2500)           # 25 YES A at 0.40: lose $10 if A does not win: at the limit
    assert gate.status("KXEV-26") is EventStatus.REDUCE_ONLY and gate.kill_signal() is None
    fill(pf, A, "bid", 4000, 100)            # $10.40: past it
    assert gate.status("KXEV-26") is EventStatus.KILL
    assert gate.kill_signal() is not None and "KXEV-26" in gate.kill_signal()  # type: ignore[operator]
    gate2, pf2, rest2 = gate_setup(max_event_loss=10_0000, max_event_exposure=1_000_000, reduce_only_at=0.9)
    fill(pf2, A, "bid", 4000, 2300)          # lose $9.20 if A does not win: past 90 %
    assert gate2.status("KXEV-26") is EventStatus.REDUCE_ONLY and gate2.kill_signal() is None
    d = gate2.check_place(B, "bid", 3000, 100)
    assert not d.allowed and d.reason == "event_reduce_only"
    # selling A at 0.50: worst case -9.20 + 0.5 s (A loses) vs 13.80 - 0.5 s (A wins): better up to s = 23
    n = gate2.max_count(A, "ask", 5000, 10_000)
    assert n == 2300
    assert gate2.check_place(A, "ask", 5000, 2300).allowed
    assert not gate2.check_place(A, "ask", 5000, 2400).allowed
    # a NO in B (ask on B) pays when A wins or none... and loses 0.70/contract if B wins, where A's YES
    # is already lost: it would lower the worst case
    assert not gate2.check_place(B, "ask", 3000, 100).allowed


def test_in_reduce_only_an_order_may_not_take_another_outcome_past_the_limit_while_an_amend_is_counted_twice():
    """The breach the live test caught now and then (-$3.35 .. -$5.03 against a $3 limit): in the
    reduce-only regime "the worst case does not fall" let an order take an outcome past the limit,
    because the worst case was itself inflated by an amend in flight (counted at its old and new
    price). Once the amend was answered, the new order's outcome was the worst, past the limit."""
    gate, pf, rest = gate_setup(max_event_loss=3_0000, max_event_exposure=1_000_000, reduce_only_at=0.8)
    fill(pf, A, "ask", 5000, 500)            # short 5 A at 0.50: -2.50 if A wins, +2.50 otherwise
    rest.add(A, "bid", 4900, 500)            # buys A back: -2.45 in every outcome where A loses
    rest.add(B, "ask", 2400, 300)            # an amend in flight in B: the old order ...
    rest.add(B, "ask", 2200, 300)            # ... and the new one both counted (B wins: -4.57)
    assert gate.status("KXEV-26") is EventStatus.OVER_LIMIT      # the inflated worst case (B wins)
    # an ask of 5 C at 0.32: filled, it lowers "C wins" to -0.90 and raises "A wins" to -0.90 (so it
    # reduces the positions' worst case); with what rests, "C wins" would be 2.50 - 2.45 - 3.40 = -3.35
    d = gate.check_place(C, "ask", 3200, 500)
    assert not d.allowed and d.reason == "event_max_loss" and "could lose 33500" in d.detail, d
    assert gate.max_count(C, "ask", 3200, 500) == 400       # 2.50 - 2.45 - 4 x 0.68 = -2.67
    # the amend answered (the old order gone): the order that passed leaves every outcome inside $3
    rest.orders[B] = [("ask", 2200, 300)]
    rest.add(C, "ask", 3200, 400)
    assert min(gate.event_of(C).outcome_pnl(with_resting=True).values()) >= -3_0000  # type: ignore[union-attr]


def test_exposure_limit_and_its_reduce_only():
    gate, pf, rest = gate_setup(max_event_loss=1_000_0000, max_event_exposure=3000, reduce_only_at=0.9)
    rest.add(A, "bid", 1000, 1000)
    rest.add(B, "bid", 1000, 1000)
    d = gate.check_place(C, "bid", 1000, 1500)
    assert not d.allowed and d.reason == "event_max_exposure"
    assert gate.max_count(C, "bid", 1000, 1500) == 1000
    assert gate.check_place(C, "ask", 9000, 3000).allowed     # asks lower E
    g2, pf2, _ = gate_setup(max_event_loss=1_000_0000, max_event_exposure=3000, reduce_only_at=0.9)
    fill(pf2, A, "bid", 1000, 1500)
    fill(pf2, B, "bid", 1000, 1500)
    assert g2.status("KXEV-26") is EventStatus.REDUCE_ONLY
    assert g2.check_place(C, "bid", 1000, 100).reason == "event_reduce_only"
    assert g2.max_count(C, "ask", 9000, 5000) == 3000         # down to E = 0, not across


@st.composite
def gate_runs(draw):
    limit = draw(st.integers(1, 30)) * 1_0000
    steps = draw(st.lists(st.tuples(st.sampled_from((A, B, C)), sides, prices, sizes, st.booleans()),
                          min_size=1, max_size=6))
    return limit, draw(st.booleans()), steps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gate_runs())
def test_gate_sized_orders_never_let_any_fills_pass_the_event_loss_limit(run):
    """Place orders sized by max_count; some fill along the way. At the end, no combination of the
    remaining orders filling, and no outcome, loses more than max_event_loss (booked and settled by
    the real Portfolio)."""
    limit, none_possible, steps = run
    spec = EventSpec("KXEV-26", True, (A, B, C), none_possible)
    pf, rest = Portfolio(cash=10_000_0000), Resting()
    gate = EventRiskGate(EventLimits(max_event_loss=limit, max_event_exposure=1_000_000), pf, rest)
    gate.add_event(spec, maker_fee_rate_e6=17_500)
    for t, side, price, count, fills_now in steps:
        n = gate.max_count(t, side, price, count)
        if n == 0:
            assert not gate.check_place(t, side, price, 100).allowed
            continue
        assert gate.check_place(t, side, price, n).allowed
        if n < count:
            assert not gate.check_place(t, side, price, n + 100).allowed
        if fills_now:
            fill(pf, t, side, price, n, trade_fee(n, price, 17_500))
        else:
            rest.add(t, side, price, n)
        assert gate.status("KXEV-26") in (EventStatus.OK, EventStatus.REDUCE_ONLY)
    assert brute_worst(spec, pf, rest.all(), 17_500, fractions=(0, 2)) >= -limit
    assert gate.kill_signal() is None


# ---------------------------------------------------------------- event inventory for quoting

def _quote_rounds(weight: float, rounds: int = 60) -> dict[str, int]:
    """Four outcomes priced 0.25 each; every round, whatever we bid is sold to us in every market
    (the flow a maker fears: all outcomes sold into its bids). Returns the positions."""
    markets = ("KXQ-1", "KXQ-2", "KXQ-3", "KXQ-4")
    pf = Portfolio(cash=10_000_0000)
    gate = EventRiskGate(EventLimits(max_event_loss=10_000_0000, max_event_exposure=10_000_000), pf)
    gate.add_event(EventSpec("KXQ", True, markets))
    grid = Grid("linear_cent")
    strat = {t: StoikovStrategy(grid, gamma=0.1, kappa=100.0, quote_size=500, max_position=2000)
             for t in markets}
    out = Target()
    for _ in range(rounds):
        for t in markets:
            inv = gate.quote_inventory(t, weight)
            inp = MarketInputs(t, grid, best_bid=2400, best_ask=2600, mid=2500.0, microprice=2500.0,
                               inventory=inv, tau_s=60.0, sigma=10.0)
            strat[t].target(inp, out)
            if out.bid_size:
                fill(pf, t, "bid", out.bid_price, out.bid_size)
    return pf.positions()


def test_with_event_inventory_kmm_stops_buying_yes_across_every_outcome():
    alone = _quote_rounds(0.0)
    assert sum(alone.values()) == 4 * 2000        # each market fills to its own limit: 80 YES
    mixed = _quote_rounds(1.0)
    assert 0 < sum(mixed.values()) <= 2000        # the event as a whole stops at one market's limit
    half = _quote_rounds(0.5)
    assert sum(mixed.values()) <= sum(half.values()) < sum(alone.values())


def test_quote_inventory_mixes_market_and_event_inventory():
    gate, pf, _ = gate_setup()
    fill(pf, A, "bid", 3000, 1000)
    fill(pf, B, "bid", 3000, 600)
    fill(pf, C, "ask", 3000, 200)
    assert gate.quote_inventory(A, 0.0) == 1000
    assert gate.quote_inventory(A, 1.0) == 1400
    assert gate.quote_inventory(A, 0.25) == 1100
    assert gate.quote_inventory("KXOTHER", 1.0) == 0
    with pytest.raises(ValueError):
        gate.quote_inventory(A, 1.5)


# ---------------------------------------------------------------- settlement of a whole event

def test_payout_is_one_dollar_per_net_contract_rounded_down_to_the_cent():
    assert payout(1234, "yes") == 12_3400
    assert payout(-1234, "no") == 12_3400
    assert payout(1234, "no") == 0 and payout(0, "yes") == 0
    with pytest.raises(ValueError):
        payout(100, "maybe")


def test_settle_event_settles_every_market_and_matches_the_predicted_outcome_to_the_cent():
    pf = Portfolio(cash=1_000_0000)
    book = EventBook(EXCL, pf)
    fill(pf, A, "bid", 3000, 1000, fee=150)
    fill(pf, B, "ask", 6100, 700, fee=100)
    fill(pf, C, "bid", 1200, 350)
    fill(pf, C, "ask", 1500, 150)
    predicted = book.outcome_pnl()[(B,)]
    cash0 = pf.cash
    s = settle_event(book, B, pf.settle)
    assert s.results == {A: "no", B: "yes", C: "no"}
    assert s.paid == s.expected == {A: 0, B: 0, C: 0}        # long A lost, short B lost, long C lost
    assert s.ok and pf.cash == cash0 and pf.positions() == {}
    assert pf.realized_pnl() - pf.fees_paid() == predicted
    # cash to the cent: 1000 - 3.00 - 0.015 fee -> cent-rounded, - 7 x 0.39, - 3.5 x 0.12 + 1.5 x 0.15
    assert pf.cash == 1_000_0000 - 3_0000 - 200 - 2_7300 - 100 - 4200 + 2250
    assert book.outcomes() == [(B,)]


def test_settle_event_with_no_winner_pays_every_no():
    pf = Portfolio(cash=0)
    book = EventBook(EXCL, pf)
    fill(pf, A, "ask", 2000, 1000)
    fill(pf, C, "ask", 1000, 500)
    s = settle_event(book, None, pf.settle)
    assert s.paid == {A: 10_0000, B: 0, C: 5_0000} and s.total_paid == 15_0000
    with pytest.raises(ValueError):
        settle_event(EventBook(EventSpec("X", True, (A,), none_possible=False), pf), None, pf.settle)
    with pytest.raises(ValueError):
        settle_event(EventBook(EventSpec("Y", True, (A, B)), pf), {A: "yes", B: "yes"}, pf.settle)


async def test_settling_an_event_agrees_with_the_simulated_exchange_to_the_cent():
    from kmm.kalshi.decode import decode_fill
    from kmm.sim import MarketSpec, SimConfig, SimExchange
    from tests.sim.client import SimClient

    tickers = (A, B, C)
    cfg = SimConfig(seed=1, flow="off", rate_tier="off", balance="1000.00",
                    markets=[MarketSpec(t, event_ticker="KXEV-26", fee_type="quadratic_with_maker_fees")
                             for t in tickers])
    async with SimExchange(cfg) as sim:
        ka, pa = sim.create_key()
        kb, pb = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, ka, pa) as alice, \
                SimClient(sim.rest_url, sim.ws_url, kb, pb) as bob:
            start = sim.balance(ka)
            trades = [(A, "ask", "0.3100", "7.00"), (B, "bid", "0.2200", "4.00"), (C, "ask", "0.4700", "3.00"),
                      (A, "bid", "0.3300", "2.00"), (B, "ask", "0.2500", "9.00")]
            for t, side, price, count in trades:    # bob rests, alice takes
                st_, _ = await bob.place(t, side, price, count)
                assert st_ == 201
                st_, body = await alice.place(t, "bid" if side == "ask" else "ask", price, count,
                                              tif="immediate_or_cancel")
                assert st_ == 201 and body["remaining_count"] == "0.00"
            st_, body = await alice.get("/portfolio/fills", params={"limit": 100})
            assert st_ == 200
            pf = Portfolio(cash=start)
            book = EventBook(EXCL, pf)             # the session starts flat: baseline 0
            for f in reversed(body["fills"]):       # newest first on the wire
                assert pf.apply_fill(decode_fill(f))
            assert pf.cash == sim.balance(ka) and pf.position_mismatches == 0
            predicted = book.outcome_pnl()
            s = settle_event(book, C, pf.settle)
            for t in tickers:
                await sim.settle(t, "yes" if t == C else "no")
            assert s.ok and pf.cash == sim.balance(ka)
            # the outcome P&L counts exact fees; cash pays them rounded to the cent with a carry
            assert pf.cash - start == predicted[(C,)] - (pf.fees_charged() - pf.fees_paid())
            assert abs(pf.fees_charged() - pf.fees_paid()) < 100 * len(trades)
            for t in tickers:
                assert sim.position(ka, t)["position"] == 0


def test_status_over_limit_when_resting_orders_could_pass_a_lowered_limit():
    pf, rest = Portfolio(), Resting()
    gate = EventRiskGate(EventLimits(max_event_loss=10_0000, max_event_exposure=1_000_000), pf, rest)
    gate.add_event(EXCL)
    rest.add(A, "bid", 5000, 1000)                             # -5 if A loses
    assert gate.status("KXEV-26") is EventStatus.OK
    gate.limits = EventLimits(max_event_loss=4_0000, max_event_exposure=1_000_000)
    assert gate.status("KXEV-26") is EventStatus.OVER_LIMIT    # pull the event's quotes
    assert gate.kill_signal() is None                          # positions alone lose nothing


@st.composite
def reduce_cases(draw):
    spec = EventSpec("KXEV-26", draw(st.booleans()), (A, B, C), draw(st.booleans()))
    pos = draw(st.lists(st.tuples(st.sampled_from((A, B, C)), sides, prices, sizes), min_size=1, max_size=4))
    orders = draw(st.lists(st.tuples(st.sampled_from((A, B, C)), sides, prices, sizes), max_size=2))
    prop = draw(st.tuples(st.sampled_from((A, B, C)), sides, prices, sizes))
    return spec, pos, orders, prop


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reduce_cases())
def test_in_reduce_only_an_allowed_order_never_lowers_a_worst_case_whatever_part_fills(case):
    spec, pos, orders, (t, side, price, count) = case
    pf, rest = Portfolio(cash=10_000_0000), Resting()
    gate = EventRiskGate(EventLimits(), pf, rest)
    book = gate.add_event(spec)                       # the session starts flat
    for pt, ps, pp, pc in pos:
        fill(pf, pt, ps, pp, pc)
    loss_now = book.worst().loss
    if loss_now == 0:
        event("flat or no loss")
        return
    # put the limit just past today's loss: reduce-only, no kill
    gate.limits = EventLimits(max_event_loss=loss_now + 1, max_event_exposure=1_000_000)
    for o in orders:
        rest.add(*o)
    assert gate.status("KXEV-26") in (EventStatus.REDUCE_ONLY, EventStatus.OVER_LIMIT)
    n = gate.max_count(t, side, price, count)
    if n == 0:
        event("denied")
        return
    event("sized and checked by brute force" + (" (cut down)" if n < count else ""))
    assert gate.check_place(t, side, price, n).allowed
    before_now = brute_worst(spec, pf, [], 0)
    before_rest = brute_worst(spec, pf, rest.all(), 0, fractions=(0, 2))
    after_rest = brute_worst(spec, pf, rest.all() + [(t, side, price, n)], 0, fractions=(0, 2))
    assert after_rest >= before_rest
    for part in range(100, n + 1, 100):             # every whole-contract part of the order
        p = copy.deepcopy(pf)
        fill(p, t, side, price, part)
        assert brute_worst(spec, p, [], 0) >= before_now


def test_reduce_only_in_an_independent_event_stops_at_the_flat_point():
    pf, rest = Portfolio(), Resting()
    gate = EventRiskGate(EventLimits(max_event_loss=10_0000, max_event_exposure=1_000_000), pf, rest)
    gate.add_event(EventSpec("KXIND", False, (A, B)))
    fill(pf, A, "bid", 5000, 1000)                   # A: +5 / -5
    fill(pf, B, "bid", 5000, 1000)                   # B: +5 / -5: worst -10, at the limit
    assert gate.status("KXIND") is EventStatus.REDUCE_ONLY
    assert gate.max_count(A, "ask", 5000, 5000) == 1000        # sells A back to flat, not beyond
    assert not gate.check_place(A, "bid", 1000, 100).allowed


class SimResting:
    """``may_fill`` read straight from the simulated exchange's open orders of one account."""

    def __init__(self, sim: object, key: str) -> None:
        self.sim, self.key = sim, key

    def may_fill(self, ticker: str) -> list[tuple[str, int, int]]:
        return [(o["side"], o["price"], o["remaining"]) for o in self.sim.orders(self.key)  # type: ignore[attr-defined]
                if o["ticker"] == ticker and o["remaining"] > 0 and o["status"] == "resting"]


@pytest.mark.parametrize("hits", [(A,), (B,), (A, B)])
async def test_quotes_sized_by_the_gate_on_the_simulated_exchange_never_lose_past_the_event_limit(hits):
    """Quotes on an event of three markets, sized by the gate against a $6 limit, rest on ``kmm sim``;
    another account hits some; the event settles in its worst outcome. The exchange's cash change
    (maker fees included) is the predicted outcome P&L and no worse than -$6."""
    from kmm.kalshi.decode import decode_fill
    from kmm.sim import MarketSpec, SimConfig, SimExchange
    from tests.sim.client import SimClient

    limit = 6_0000
    cfg = SimConfig(seed=2, flow="off", rate_tier="off", balance="1000.00",
                    markets=[MarketSpec(t, event_ticker="KXEV-26", fee_type="quadratic_with_maker_fees")
                             for t in (A, B, C)])
    async with SimExchange(cfg) as sim:
        ka, pa = sim.create_key()
        kb, pb = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, ka, pa) as alice, \
                SimClient(sim.rest_url, sim.ws_url, kb, pb) as bob:
            start = sim.cash(ka)
            pf = Portfolio(cash=start)
            gate = EventRiskGate(EventLimits(max_event_loss=limit, max_event_exposure=1_000_000), pf,
                                 SimResting(sim, ka))
            book = gate.add_event(EXCL, maker_fee_rate_e6=17_500)
            placed = {}
            for t in (A, B, C):
                for side, price in (("bid", 3000), ("ask", 4000)):
                    n = gate.max_count(t, side, price, 1500)
                    assert gate.check_place(t, side, price, n).allowed
                    if n:
                        st_, _ = await alice.place(t, side, f"{price / 10_000:.4f}", f"{n / 100:.2f}", post_only=True)
                        assert st_ == 201
                        placed[(t, side)] = (price, n)
            assert -limit <= book.worst(with_resting=True).pnl < 0      # the limit binds
            assert not gate.check_place(A, "bid", 3000, 1500).allowed
            # sized in order: A bid 15 (-4.50 unless A wins); A ask 9 (-5.40 and fee if A wins: a bid and an
            # ask in one market do not offset, either may fill alone); B bid 1 and B ask 2 fill A's and
            # B's outcomes to about -5.7; no C bid (A's outcome would pass -6); C ask 1
            assert {k: v[1] for k, v in placed.items()} == {(A, "bid"): 1500, (A, "ask"): 900, (B, "bid"): 100,
                                                           (B, "ask"): 200, (C, "ask"): 100}
            for t in hits:                                             # bob sells into alice's bids
                if (t, "bid") not in placed:
                    continue
                price, n = placed[(t, "bid")]
                st_, body = await bob.place(t, "ask", f"{price / 10_000:.4f}", f"{n / 100:.2f}",
                                            tif="immediate_or_cancel")
                assert st_ == 201 and body["remaining_count"] == "0.00"
            st_, body = await alice.get("/portfolio/fills", params={"limit": 100})
            for f in reversed(body["fills"]):
                assert pf.apply_fill(decode_fill(f))
            assert pf.cash == sim.cash(ka)
            assert gate.kill_signal() is None
            worst = book.worst()
            assert -limit <= worst.pnl < 0                             # the fills lose in some outcome
            s = settle_event(book, worst.outcome[0] if worst.outcome else None, pf.settle)
            for t in (A, B, C):
                await sim.settle(t, s.results[t])
            assert s.ok and pf.cash == sim.cash(ka) == sim.balance(ka)
            # cash pays each fee rounded up to the cent (with a carry): under a cent per order more
            change = sim.cash(ka) - start
            assert change == worst.pnl - (pf.fees_charged() - pf.fees_paid())
            assert change >= -limit - 99 * len(placed)


def test_rollup_gives_one_row_per_event_for_the_view():
    gate, pf, rest = gate_setup(max_event_loss=20_0000, max_event_exposure=1_000_000)
    gate.add_event(EventSpec("KXIND", False, ("KXI-1",)))
    fill(pf, A, "bid", 3000, 1000)
    rest.add(B, "bid", 4000, 500)
    rows = {r.event_ticker: r for r in gate.rollup()}
    r = rows["KXEV-26"]
    assert (r.mutually_exclusive, r.markets, r.inventory) == (True, 3, 1000)
    assert (r.worst_now, r.worst_now_outcome) == (-3_0000, ())
    assert (r.worst_resting, r.worst_resting_outcome) == (-5_0000, ())
    assert (r.max_event_loss, r.status) == (20_0000, "ok")
    assert rows["KXIND"].worst_now == 0 and rows["KXIND"].markets == 1
