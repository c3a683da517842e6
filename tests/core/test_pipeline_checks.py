"""The compiled pre-checks refuse exactly what kmm.engine.risk.RiskGate refuses for the per-market rules
(fat finger, open orders per market, reduce-only at the position limit, max position), and a decision
filtered by them only loses actions the gate would have refused."""

from __future__ import annotations


from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.diff import Differ
from kmm._core.grid import Grid
from kmm._core.pipeline import CHECK_NAMES, Pipeline
from kmm.engine.clock import ManualClock
from kmm.engine.orders import LiveOrder
from kmm.engine.risk import RiskGate, RiskLimits


class Views:
    def __init__(self, position: int, open_bid: int, open_ask: int, open_orders: int) -> None:
        self.q, self.qty, self.n = position, {"bid": open_bid, "ask": open_ask}, open_orders

    def position(self, ticker: str) -> int:
        return self.q

    def total_abs_position(self) -> int:
        return abs(self.q)

    def total_pnl(self, *, net_of_fees: bool = True) -> int:
        return 0

    def open_count(self, ticker: str | None = None) -> int:
        return self.n

    def open_qty(self, ticker: str, side: str) -> int:
        return self.qty[side]


def _gate(lim: RiskLimits, views: Views, grid: Grid, fractional: bool) -> RiskGate:
    clock = ManualClock()
    gate = RiskGate(lim, clock, views, views)
    gate.add_market("T", grid, fractional=fractional)
    gate.set_book_stale("T", False)
    gate.on_book_update("T")
    return gate


def _core(lim: RiskLimits, grid: Grid, fractional: bool) -> Pipeline:
    core = Pipeline("T", grid, Differ())
    core.set_limits(max_order_size=lim.max_order_size, fractional=fractional, price_min=lim.price_min,
                    price_max=lim.price_max, max_order_notional=lim.max_order_notional,
                    max_position=lim.max_position, reduce_only_at=lim.reduce_only_at,
                    max_open_orders=lim.max_open_orders_per_market)
    return core


limits = st.builds(RiskLimits, max_order_size=st.sampled_from([500, 3000, 10_000]),
                   max_order_notional=st.sampled_from([50_000, 1_000_000]),
                   price_min=st.sampled_from([1, 100]), price_max=st.sampled_from([9_900, 9_999]),
                   max_open_orders_per_market=st.integers(1, 4), max_open_orders_total=st.just(10**9),
                   max_position=st.sampled_from([1000, 5000]), max_total_position=st.just(10**12),
                   reduce_only_at=st.sampled_from([0.5, 0.9, 1.0]))


@settings(max_examples=400, deadline=None)
@given(lim=limits, structure=st.sampled_from(["linear_cent", "deci_cent", "tapered_deci_cent"]),
       fractional=st.booleans(), side=st.sampled_from(["bid", "ask"]), price=st.integers(0, 10000),
       count=st.integers(-100, 12_000), position=st.integers(-6000, 6000), open_bid=st.integers(0, 6000),
       open_ask=st.integers(0, 6000), open_orders=st.integers(0, 5), old=st.integers(0, 3000),
       place=st.booleans())
def test_prechecks_refuse_exactly_what_the_gate_refuses_per_market(lim: RiskLimits, structure: str, fractional: bool,
                                                                    side: str, price: int, count: int, position: int,
                                                                    open_bid: int, open_ask: int, open_orders: int,
                                                                    old: int, place: bool) -> None:
    grid = Grid(structure)
    views = Views(position, open_bid, open_ask, open_orders)
    gate = _gate(lim, views, grid, fractional)
    core = _core(lim, grid, fractional)
    resting = open_bid if side == "bid" else open_ask
    if place:
        want = gate.check_place("T", side, price, count)
        got = core.check(0 if side == "bid" else 1, price, count, position, resting, open_orders, True)
    else:
        want = gate.check_amend("T", side, price, count, old)
        got = core.check(0 if side == "bid" else 1, price, count, position, resting - old, open_orders, False)
    assert CHECK_NAMES[got] == want.reason, (got, want)


def test_a_filtered_decision_drops_refused_places_and_turns_refused_amends_into_cancels() -> None:
    grid = Grid()
    book = OrderBook()
    book.apply_snapshot([["0.4000", "10.00"]], [["0.5000", "10.00"]])       # 0.40 / 0.50
    lim = RiskLimits(max_position=1000, reduce_only_at=0.9)
    core = Pipeline("T", grid, Differ(), strategy_kind=1, quote_size=500, max_position=5000, book=book)
    core.set_limits(max_order_size=lim.max_order_size, fractional=False, price_min=lim.price_min,
                    price_max=lim.price_max, max_order_notional=lim.max_order_notional,
                    max_position=lim.max_position, reduce_only_at=lim.reduce_only_at,
                    max_open_orders=lim.max_open_orders_per_market)
    # long 9.50 contracts: reduce-only (>= 0.9 x 10): the bid may not grow the position, the ask reduces it
    live = [LiveOrder("o1", "bid", 4000, 500, 0, "c1", True)]
    acts = core.frame_checked(1, 0, 950, live, 0.0, 500, 0, 1)
    unfiltered = [a.astuple() for a in core.frame(2, 0, 950, live, 0.0)]
    assert unfiltered == [(1, 0, "c1", 4100, 500), (0, 1, None, 4900, 500)]       # amend bid, place ask
    assert [a.astuple() for a in acts] == [(3, 0, "c1", 4000, 0), (0, 1, None, 4900, 500)]
    assert core.denied == {"reduce_only": 1}
    views = Views(950, 500, 0, 1)
    gate = _gate(lim, views, grid, False)
    assert gate.check_amend("T", "bid", 4100, 500, 500).reason == "reduce_only"
    assert gate.check_place("T", "ask", 4900, 500)
