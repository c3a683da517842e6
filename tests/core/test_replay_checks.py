"""The compiled replay loop's pre-checks (kmm._core.replay.trade_reaches, upkeep_moves) against their
plain-Python reference (tests/reference/replay.py), and against the fill simulator itself: when a
check says "nothing reached", the simulator's step returns no fill and leaves every order, every
statistic and the book exactly as they were (so the loop may skip the step)."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.replay import trade_reaches, upkeep_moves
from kmm.research.fills import FillSimulator, MarketDef, SimOrder
from tests.reference import replay as ref

T = "KXTEST-26-A"
LINEAR = [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}]
PRICES = st.sampled_from([3800, 3900, 4000, 4100, 5900, 6000, 6100, 6200])


@st.composite
def resting(draw) -> list[SimOrder]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        side = draw(st.sampled_from(["bid", "ask"]))
        o = SimOrder(f"o{i}", f"c{i}", T, side, draw(PRICES), draw(st.sampled_from([100, 500])), True, 0)
        o.remaining = draw(st.sampled_from([0, 100, 500]))
        o.seen = draw(st.sampled_from([0, 300, 1000]))
        o.ahead = float(draw(st.sampled_from([0, 150, 300, 1000, 1200])))
        o.pend = [[draw(st.integers(0, 20)) * 1_000_000, draw(st.sampled_from([100, 200]))]
                  for _ in range(draw(st.integers(0, 2)))]
        out.append(o)
    return out


def _sim(orders: list[SimOrder]) -> FillSimulator:
    sim = FillSimulator({T: MarketDef(T, LINEAR)})
    book = OrderBook(Grid(LINEAR))
    sim.attach_book(T, book)
    for lv in (3800, 3900, 4000, 4100):
        book.apply_level_delta(0, lv, 1000)
        book.apply_level_delta(1, 10_000 - lv - 2000, 1000)
    for o in orders:
        sim.markets[T].orders[o.order_id] = o
        sim.orders[o.order_id] = o
    return sim


def _state(sim: FillSimulator) -> tuple:
    m = sim.markets[T]
    keys = [k for k in SimOrder.__slots__ if k != "sweep"]
    orders = [tuple(copy.deepcopy(getattr(o, k)) for k in keys) for o in m.orders.values()]
    return orders, repr(sim.stats), m.book.levels()


@settings(max_examples=400, deadline=None)
@given(resting(), st.sampled_from(["bid", "ask"]), PRICES, st.sampled_from([100, 300, 2000]))
def test_trade_reaches_is_the_reference_and_a_trade_it_rules_out_changes_nothing(orders, taker, price, count):
    sim = _sim(orders)
    m = sim.markets[T]
    got = trade_reaches(m.orders, taker == "bid", price)
    assert got == ref.trade_reaches(m.orders, taker == "bid", price)
    if not got:
        before = _state(sim)
        sim.keep_outcomes = True
        assert sim.on_trade(30_000_000, 1, T, price, count, taker, "tr") == []
        assert _state(sim) == before and sim.trade_outcomes["tr"] == (T, "none")


@settings(max_examples=400, deadline=None)
@given(resting(), st.one_of(st.just(-1), st.tuples(st.integers(0, 1), PRICES).map(lambda sp: sp[0] << 16 | sp[1])))
def test_upkeep_moves_is_the_reference_and_an_upkeep_it_rules_out_changes_nothing(orders, level):
    sim = _sim(orders)
    m = sim.markets[T]
    got = upkeep_moves(m.orders, level)
    assert got == ref.upkeep_moves(m.orders, level)
    if not got:
        before = _state(sim)
        sim.on_book_change(40_000_000, T, level)
        assert _state(sim) == before


def test_the_properties_meet_both_answers():
    """The generated cases are not all one way: some trades and deltas reach an order, some do not."""
    a = SimOrder("a", "ca", T, "bid", 4000, 500, True, 0)
    b = SimOrder("b", "cb", T, "ask", 6000, 500, True, 0)
    orders = {"a": a, "b": b}
    assert trade_reaches(orders, False, 4000) and trade_reaches(orders, False, 3900)
    assert not trade_reaches(orders, False, 4100) and not trade_reaches(orders, True, 5900)
    assert trade_reaches(orders, True, 6100)
    a.pend = [[0, 100]]
    assert trade_reaches(orders, False, 4100) and not trade_reaches(orders, True, 5900)
    assert upkeep_moves(orders, 4100) and upkeep_moves(orders, -1)
    a.pend = []
    assert upkeep_moves(orders, 4000) and upkeep_moves(orders, 1 << 16 | 4000) and not upkeep_moves(orders, 4100)
    a.ahead, a.seen = 300.0, 200
    assert upkeep_moves(orders, 4100)
