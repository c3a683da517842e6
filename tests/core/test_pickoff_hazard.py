"""The compiled pick-off step (kmm._core.replay.PickoffHazard) against the fill simulator's own
``after_event`` and the plain-Python reference (tests/reference/pickoff.py): on generated books, resting
orders (some alone at the best level, so the others' mid looks deeper), hazard states and models
(``always``, ``rate:X``, fitted rates with empty buckets), a series of checks at rising and repeated
times makes the same fills and leaves every order, statistic, draw and book level the same."""

from __future__ import annotations

import copy
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.replay import PickoffHazard
from kmm.research.adverse import ALL, BUCKETS, PickoffModel
from kmm.research.fills import FillSimulator, MarketDef, SimOrder
from tests.reference import pickoff as ref

T = "KXTEST-26-A"
U = "KXTEST-26-B"
LINEAR = [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}]
MS = 1_000_000


@st.composite
def models(draw) -> PickoffModel:
    min_cents = draw(st.sampled_from([0.5, 1.0, 0.3]))
    kind = draw(st.sampled_from(["always", "rate", "fitted"]))
    if kind == "always":
        return PickoffModel("always", min_cents)
    if kind == "rate":
        return PickoffModel.parse(f"rate:{draw(st.sampled_from([0, 0.5, 3, 40]))}", min_cents)
    rate = st.sampled_from([0.0, 0.2, 1.7, 25.0])
    rates = {ALL: tuple(draw(rate) for _ in range(BUCKETS))}
    if draw(st.booleans()):
        rates[T] = tuple(draw(rate) for _ in range(BUCKETS))
    if draw(st.booleans()):
        rates[U] = ()                       # an empty table: the model's ALL rates
    sizes = {ALL: tuple(draw(st.lists(st.sampled_from([100, 300, 700]), min_size=1, max_size=3)))}
    if draw(st.booleans()):
        sizes[T] = (200,)
    return PickoffModel("fitted", min_cents, rates, sizes)


@st.composite
def markets(draw) -> dict:
    """A book (others' levels) and resting orders of ours, with their hazard state."""
    yes = draw(st.lists(st.tuples(st.integers(30, 48), st.sampled_from([100, 400, 900])), max_size=5,
                        unique_by=lambda x: x[0]))
    no = draw(st.lists(st.tuples(st.integers(40, 60), st.sampled_from([100, 400, 900])), max_size=5,
                       unique_by=lambda x: x[0]))
    orders = []
    for _ in range(draw(st.integers(0, 4))):
        side = draw(st.sampled_from(["bid", "ask"]))
        cents = draw(st.integers(35, 65))
        orders.append(dict(side=side, price=cents * 100, count=draw(st.sampled_from([100, 200, 500])),
                           hz_t=draw(st.sampled_from([-1, 0, 3 * MS, 50 * MS])),
                           hz_acc=draw(st.sampled_from([0.0, 0.4, 1.3, 7.0])),
                           hz_need=draw(st.sampled_from([0.0, 0.2, 1.0, 2.5])),
                           hz_rate=draw(st.sampled_from([0.0, 1e-9, 4.5e-8]))))
    return {"yes": yes, "no": no, "orders": orders}


def build(spec: dict, model: PickoffModel, seed: int) -> FillSimulator:
    sim = FillSimulator({T: MarketDef(T, LINEAR), U: MarketDef(U, LINEAR)})
    for t in (T, U):
        sim.attach_book(t, OrderBook(Grid(LINEAR)))
    book = sim.markets[T].book
    for cents, size in spec["yes"]:
        book.apply_level_delta(0, cents * 100, size)
    for cents, size in spec["no"]:
        book.apply_level_delta(1, cents * 100, size)
    for i, o in enumerate(spec["orders"]):
        so = SimOrder(f"o{i}", f"c{i}", T, o["side"], o["price"], o["count"], True, 0)
        so.hz_t, so.hz_acc, so.hz_need, so.hz_rate = o["hz_t"], o["hz_acc"], o["hz_need"], o["hz_rate"]
        sim.orders[so.order_id] = so
        sim.markets[T].orders[so.order_id] = so
        book.apply_level_delta(so.bside, so.bprice, so.remaining)      # as FillSimulator._rest puts it in
    sim.pickoff = copy.deepcopy(model)
    sim.rng = random.Random(seed)
    return sim


def state(sim: FillSimulator) -> tuple:
    orders = [tuple(copy.deepcopy(getattr(o, k)) for k in SimOrder.__slots__) for o in sim.orders.values()]
    return (orders, sorted(sim.markets[T].orders), repr(sim.stats), dict(sim.pickoff_by_ticker),
            sim.rng.getstate(), sim.markets[T].book.levels())


def hazard(sim: FillSimulator) -> PickoffHazard:
    po = sim.pickoff
    return PickoffHazard(sim, {t: po.rates.get(t) or po.rates.get(ALL) for t in sim.markets}, BUCKETS)


@settings(max_examples=300, deadline=None)
@given(markets(), models(), st.integers(0, 5),
       st.lists(st.tuples(st.sampled_from([0, 1, 7, 250, 900]), st.sampled_from([T, T, T, U])),
                min_size=1, max_size=12))
def test_the_compiled_pickoff_step_is_the_simulators_and_the_reference(spec, model, seed, steps):
    compiled, python, plain = (build(spec, model, seed) for _ in range(3))
    h = hazard(compiled)
    now = 60 * MS
    for dt_ms, ticker in steps:
        now += dt_ms * MS
        wall_ms = 1_795_000_000_000 + now // MS
        got = h.after_event(now, wall_ms, ticker)
        want = python.after_event(now, wall_ms, ticker)
        assert got == want
        assert ref.after_event(plain, now, wall_ms, ticker) == want
        assert state(compiled) == state(python) == state(plain)
    _SEEN.append(python.stats.pickoff_fills)


_SEEN: list[int] = []


def test_the_generated_cases_pick_off_some_orders_and_leave_others():
    if not _SEEN:
        test_the_compiled_pickoff_step_is_the_simulators_and_the_reference()
    assert any(n > 0 for n in _SEEN) and any(n == 0 for n in _SEEN)


def test_the_others_mid_looks_past_a_best_level_that_is_all_ours():
    spec = {"yes": [(40, 400)], "no": [(55, 400)], "orders": [
        dict(side="bid", price=4300, count=500, hz_t=-1, hz_acc=0.0, hz_need=0.0, hz_rate=0.0)]}
    sim = build(spec, PickoffModel("always", 0.5), 0)
    assert ref.others_mid(sim, T) == sim.others_mid(T) == (4000 + 4500) / 2
    # our bid stands 2.75 cents over the others' mid: picked off whole at the first check, as the simulator does
    got = hazard(sim).after_event(MS, 1, T)
    other = build(spec, PickoffModel("always", 0.5), 0)
    assert got == other.after_event(MS, 1, T) and [f.count for f in got] == [500]
    assert state(sim) == state(other)


def test_a_market_without_a_compiled_book_takes_the_simulators_step():
    sim = build({"yes": [], "no": [], "orders": []}, PickoffModel("always", 0.5), 0)

    class PlainBook:                        # not kmm._core.book.OrderBook
        pass
    sim.markets[U].book = PlainBook()
    calls = []
    sim.after_event = lambda now, wall_ms, t: calls.append((now, wall_ms, t)) or []    # type: ignore[method-assign]
    assert hazard(sim).after_event(5, 6, U) == [] and calls == [(5, 6, U)]
