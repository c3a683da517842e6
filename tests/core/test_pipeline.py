"""The compiled per-market pipeline decides exactly what the Python path and the reference decide.

Random books, own-order lists, inventories, clocks and trades are fed to three pipelines at once:
``MarketPipeline`` on the compiled core (one ``frame`` call), ``MarketPipeline(compiled=False)`` (the
Python path kmm ran before the core existed) and tests/reference/pipeline.py (plain Python from the
rules). Every decision (actions, in order), every signal and every error must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.ofi import OFI
from kmm._core.pipeline import ROOM_OPEN, Pipeline
from kmm.config import StrategyParams
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.engine.orders import LiveOrder
from kmm.strategy.alpha import AlphaSource, StaticAlpha
from kmm.strategy.inside import InsideStrategy
from kmm.strategy.stoikov import StoikovStrategy
from tests.reference.book import RefBook
from tests.reference.ofi import RefOFI
from tests.reference.pipeline import PipelineGrid, RefConfig, RefPipeline

STRUCTURES = ("linear_cent", "deci_cent", "tapered_deci_cent")
#: the event gate's room on one side (1e-6 $): none, refused whatever the price, or a bound near a place's size
ROOMS = st.one_of(st.just(ROOM_OPEN), st.just(ROOM_OPEN), st.just(-1), st.integers(0, 1_000_000))
WALL0 = 1_800_000_000 * 10**9


class PyStoikov(StoikovStrategy):
    """A 'user' strategy: the same quotes, but a Python class, so it takes the slower path."""


@st.composite
def setups(draw: Any) -> dict[str, Any]:
    structure = draw(st.sampled_from(STRUCTURES))
    strategy = draw(st.sampled_from(["stoikov", "inside", "python"]))
    params = StrategyParams(
        gamma=draw(st.sampled_from([0.01, 0.1, 1.0, 5.0])),
        kappa=draw(st.sampled_from([10.0, 100.0, 400.0])),
        kappa_estimate=draw(st.booleans()),
        sigma_halflife_s=draw(st.sampled_from([1.0, 60.0])),
        horizon_s=draw(st.sampled_from([0.0, 30.0, 3600.0])),
        quote_size=draw(st.sampled_from([100, 500, 1000, 5000])),
        min_spread_ticks=draw(st.integers(1, 3)),
        min_edge=draw(st.sampled_from([0, 20])),
        ofi_weight=draw(st.sampled_from([0.0, 0.001, -0.0005])),
        max_position=draw(st.sampled_from([1000, 5000])),
        price_tolerance_ticks=draw(st.integers(0, 2)),
        min_price_tolerance=draw(st.sampled_from([0, 50])),
        size_tolerance=draw(st.sampled_from([0, 100])),
        max_order_age_s=draw(st.sampled_from([0.0, 2.0])),
    )
    close = draw(st.sampled_from([None, WALL0 + 20 * 10**9, WALL0 + 10**18]))
    fee = draw(st.sampled_from([0, 17_500]))
    alpha = draw(st.sampled_from([0.0, 37.5]))
    return {"structure": structure, "strategy": strategy, "params": params, "close": close, "fee": fee,
            "alpha": alpha}


def _prices(grid: Grid, lo: int, hi: int) -> list[int]:
    return [p for p in grid.prices() if lo <= p <= hi]


@st.composite
def frames(draw: Any, structure: str) -> list[dict[str, Any]]:
    grid = Grid(structure)
    low = _prices(grid, 100, 4900)       # YES bids and NO bids both below 0.50: the book never crosses
    out = []
    for _ in range(draw(st.integers(1, 25))):
        f: dict[str, Any] = {"dt": draw(st.sampled_from([0, 1, 10**6, 4 * 10**8, 10**9, 25 * 10**8]))}
        f["deltas"] = draw(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(low), st.integers(-3000, 3000)),
                                    max_size=4))
        f["trades"] = draw(st.lists(st.sampled_from(low + [10000 - p for p in low]), max_size=22))
        f["inventory"] = draw(st.integers(-6000, 6000))
        orders = []
        for k in range(draw(st.integers(0, 4))):
            side = draw(st.sampled_from(["bid", "ask"]))
            p = draw(st.sampled_from(low))
            orders.append(LiveOrder(draw(st.sampled_from([None, f"o{k}"])), side, p if side == "bid" else 10000 - p,
                                    draw(st.integers(0, 3000)), draw(st.sampled_from([0, 3 * 10**9])), f"c{k}",
                                    True))
        f["live"] = orders
        out.append(f)
    return out


def _build(setup: dict[str, Any], book: OrderBook, *, compiled: bool) -> MarketPipeline:
    grid = Grid(setup["structure"])
    params: StrategyParams = setup["params"]
    info = MarketInfo("T", grid, setup["close"], maker_rate_e6=setup["fee"])
    tick = grid.tick_size(5000)
    if setup["strategy"] == "inside":
        strat: Any = InsideStrategy(grid, quote_size=params.quote_size, max_position=params.max_position)
    else:
        cls = PyStoikov if setup["strategy"] == "python" else StoikovStrategy
        strat = cls(grid, gamma=params.gamma, kappa=params.kappa, quote_size=params.quote_size,
                    max_position=params.max_position, maker_fee_rate_e6=setup["fee"],
                    min_spread=params.min_spread_ticks * tick, min_edge=params.min_edge)
    alpha = StaticAlpha({"T": setup["alpha"]}) if setup["alpha"] else AlphaSource()
    ofi = OFI(window_ns=10 * 10**9, half_life_ns=5 * 10**9)
    return MarketPipeline(info, book, strat, params, alpha, ofi, compiled=compiled)


def _ref(setup: dict[str, Any], pipe: MarketPipeline) -> RefPipeline:
    p: StrategyParams = setup["params"]
    grid = PipelineGrid(setup["structure"])
    tick = pipe.info.grid.tick_size(5000)
    cfg = RefConfig("inside" if setup["strategy"] == "inside" else "stoikov", gamma=p.gamma / 10_000,
                    kappa=p.kappa / 10_000, quote_size=p.quote_size, max_position=p.max_position,
                    maker_fee_rate_e6=setup["fee"], min_spread=p.min_spread_ticks * tick, min_edge=float(p.min_edge),
                    ofi_weight=p.ofi_weight, horizon_s=p.horizon_s, close_time_ns=setup["close"],
                    sigma_halflife_s=p.sigma_halflife_s, price_tol=pipe.differ.price_tol,
                    size_tol=p.size_tolerance, max_age_ns=int(p.max_order_age_s * 10**9) or None)
    return RefPipeline(cfg, grid, RefOFI(window_ns=10 * 10**9, half_life_ns=5 * 10**9))


def _outcome(fn: Any) -> Any:
    try:
        return [a if isinstance(a, tuple) else a.astuple() for a in fn()]
    except (ValueError, KeyError) as exc:
        return type(exc).__name__


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_pipeline_decides_exactly_like_the_python_path_and_the_reference(data: Any) -> None:
    setup = data.draw(setups())
    stream = data.draw(frames(setup["structure"]))
    books = [OrderBook(setup["structure"]), OrderBook(setup["structure"])]
    ref_book = RefBook(setup["structure"])
    fast, slow = _build(setup, books[0], compiled=True), _build(setup, books[1], compiled=False)
    assert fast.compiled == (setup["strategy"] != "python") and not slow.compiled
    ref = _ref(setup, fast)
    yes = [["0.4000", "10.00"], ["0.3500", "25.00"]]
    no = [["0.4500", "12.00"], ["0.3000", "7.00"]]
    for b in (*books, ref_book):
        b.apply_snapshot(yes, no)
    mono, wall = 10**12, WALL0
    for f in stream:
        mono += f["dt"]
        wall += f["dt"]
        for side, price, delta in f["deltas"]:
            have = ref_book.side[side].get(price, 0)
            delta = max(delta, -have)
            if delta:
                for b in books:
                    b.apply_level_delta(side, price, delta)
                ref_book.apply_level_delta(side, price, delta)
        live, inv = f["live"], f["inventory"]
        # the event gate's rooms (1e-6 $): a place whose least size at its price goes past them is dropped
        rooms = data.draw(st.tuples(ROOMS, ROOMS))
        step = data.draw(st.sampled_from([1, 100]))
        for p in (fast, slow):
            p.set_rooms(*rooms)
            p.core.block_step = step
        got = _outcome(lambda: fast.frame(mono, wall, inv, live))
        want = _outcome(lambda: (slow.on_book(mono, wall, live), slow.decide(inv, live))[1])
        expect = _outcome(lambda: (ref.on_book(ref_book, mono, wall, live),
                                   ref.decide(inv, live, setup["alpha"], rooms, step))[1])
        assert got == want == expect, (f, got, want, expect)
        fi, si = fast.inputs, slow.inputs
        assert (fi.best_bid, fi.best_ask, fi.mid, fi.microprice, fi.sigma, fi.tau_s, fi.ofi_skew) == \
            (si.best_bid, si.best_ask, si.mid, si.microprice, si.sigma, si.tau_s, si.ofi_skew) == \
            (ref.best[0], ref.best[1], ref.mid, ref.micro, ref.sigma, ref.tau, ref.ofi_skew)
        assert (fast.target.reservation, fast.target.half_spread) == (slow.target.reservation,
                                                                       slow.target.half_spread)
        for price in f["trades"]:
            fast.on_trade(price)
            slow.on_trade(price)
            if setup["params"].kappa_estimate:
                ref.on_trade(price)
        assert fast.inputs.kappa == slow.inputs.kappa == ref.kappa
    assert fast.decisions == slow.decisions == len(stream)


@settings(max_examples=60, deadline=None)
@given(live=st.lists(st.tuples(st.sampled_from([None, "o"]), st.sampled_from(["bid", "ask"]),
                               st.integers(1, 9999), st.integers(0, 500)), max_size=6))
def test_pull_cancels_every_live_order_like_the_differ(live: list[tuple[Any, str, int, int]]) -> None:
    orders = [LiveOrder(oid, side, p, rem, 0, f"c{i}", True) for i, (oid, side, p, rem) in enumerate(live)]
    setup = {"structure": "linear_cent", "strategy": "stoikov", "params": StrategyParams(), "close": None,
             "fee": 0, "alpha": 0.0}
    fast, slow = _build(setup, OrderBook(), compiled=True), _build(setup, OrderBook(), compiled=False)
    got = [a.astuple() for a in fast.pull(orders)]
    assert got == [a.astuple() for a in slow.pull(orders)]
    assert got == [(3, 0 if s == "bid" else 1, f"c{i}", p, 0) for i, (_, s, p, rem) in enumerate(live) if rem > 0]


def test_many_own_price_levels_fall_back_to_the_python_scan_with_the_same_result() -> None:
    book = OrderBook("deci_cent")
    levels = [[f"0.{4000 - 10 * i:04d}", "1.00"] for i in range(80)]
    book.apply_snapshot(levels + [["0.3000", "5.00"]], [["0.4000", "5.00"]])
    own = [LiveOrder(f"o{i}", "bid", 4000 - 10 * i, 100, 0, f"c{i}", True) for i in range(80)]
    grid = Grid("deci_cent")
    from kmm._core.diff import Differ
    core = Pipeline("T", grid, Differ(), book=book)
    core.on_book(1, WALL0, own)
    assert (core.best_bid, core.best_bid_size, core.best_ask) == (3000, 500, 6000)


def test_a_decision_is_one_call_and_nothing_changes_returns_the_shared_empty_tuple() -> None:
    setup = {"structure": "linear_cent", "strategy": "inside", "params": StrategyParams(quote_size=500),
             "close": None, "fee": 0, "alpha": 0.0}
    book = OrderBook()
    book.apply_snapshot([["0.4000", "10.00"]], [["0.5000", "10.00"]])   # 0.40 / 0.50
    pipe = _build(setup, book, compiled=True)
    acts = pipe.frame(1, WALL0, 0, [])
    assert [a.astuple() for a in acts] == [(0, 0, None, 4100, 500), (0, 1, None, 4900, 500)]
    live = [LiveOrder("o1", "bid", 4100, 500, 0, "c1", True), LiveOrder("o2", "ask", 4900, 500, 0, "c2", True)]
    book.apply_snapshot([["0.4000", "10.00"], ["0.4100", "5.00"]], [["0.5000", "10.00"], ["0.5100", "5.00"]])
    assert pipe.frame(2, WALL0, 0, live) == ()     # our own 0.41 / 0.49 are taken out: same target


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_orders_held_in_the_pipeline_decide_like_the_live_order_list(data: Any) -> None:
    """own_set / own_remove (the order manager's transitions) + frame_own == frame on the same orders
    listed as LiveOrder tuples in the order they were first set."""
    setup = data.draw(setups().filter(lambda s: s["strategy"] != "python"))
    stream = data.draw(frames(setup["structure"]))
    books = [OrderBook(setup["structure"]), OrderBook(setup["structure"])]
    for b in books:
        b.apply_snapshot([["0.4000", "10.00"]], [["0.4500", "12.00"]])
    held, listed = _build(setup, books[0], compiled=True), _build(setup, books[1], compiled=True)
    grid = Grid(setup["structure"])
    prices = [p for p in grid.prices() if 100 <= p <= 9900]
    mirror: dict[str, tuple[Any, ...]] = {}
    mono, wall = 10**12, WALL0
    for f in stream:
        mono += f["dt"]
        wall += f["dt"]
        for side, price, delta in f["deltas"]:
            have = books[0].bids(None) if side == 0 else books[0].no_bids(None)
            delta = max(delta, -dict(have).get(price, 0))
            if delta:
                for b in books:
                    b.apply_level_delta(side, price, delta)
        for _ in range(data.draw(st.integers(0, 3))):
            coid = f"c{data.draw(st.integers(0, 5))}"
            if data.draw(st.booleans()) and coid in mirror:
                del mirror[coid]
                held.core.own_remove(coid)
            else:
                side = data.draw(st.integers(0, 1))
                p, rem = data.draw(st.sampled_from(prices)), data.draw(st.integers(0, 2000))
                created = mono - data.draw(st.sampled_from([0, 3 * 10**9]))
                acked = data.draw(st.booleans())
                held.core.own_set(coid, side, p, rem, created, acked)
                mirror[coid] = ("o" if acked else None, "bid" if side == 0 else "ask", p, rem, created, coid)
        live = [LiveOrder(m[0], m[1], m[2], m[3], mono - m[4], m[5], True) for m in mirror.values()]
        rooms = data.draw(st.tuples(ROOMS, ROOMS))
        held.core.set_rooms(*rooms)
        listed.core.set_rooms(*rooms)
        got = _outcome(lambda: held.core.frame_own(mono, wall, f["inventory"], 0.0))
        want = _outcome(lambda: listed.core.frame(mono, wall, f["inventory"], live, 0.0))
        assert got == want, (got, want, live)
        assert (held.core.best_bid, held.core.best_ask, held.core.mid) == (listed.core.best_bid, listed.core.best_ask,
                                                                            listed.core.mid)
    assert held.core.own_count == len(mirror)


@pytest.mark.parametrize("bad, error, words", [
    (("o1", "bid", 4100), TypeError, "is not a LiveOrder"),
    (LiveOrder("o1", "bid", 0, 500, 0, "c1", True), ValueError, "price 0 is outside 1..9999"),
    (LiveOrder("o1", "bid", 4100, -1, 0, "c1", True), ValueError, "remaining -1"),
])
def test_both_readers_of_live_orders_refuse_a_bad_one_naming_it(bad: Any, error: type, words: str) -> None:
    """The differ's read (``pull``, ``frame``) and the held table's (``own_sync``) share one checked
    reader: the same refusals, each message naming where it came from."""
    from kmm._core.diff import Differ
    core = Pipeline("T", Grid("linear_cent"), Differ(), book=OrderBook())
    with pytest.raises(error) as e:
        core.pull([LiveOrder("o0", "ask", 6000, 100, 0, "c0", True), bad])
    assert words in str(e.value) and str(e.value).startswith("live[1]")
    with pytest.raises(error) as e:
        core.own_sync([bad], 10)
    assert words in str(e.value) and str(e.value).startswith("own_sync: live[0]")
    with pytest.raises(ValueError, match="age_ns -5 must be >= 0"):   # the differ's read checks ages too
        core.pull([LiveOrder("o1", "bid", 4100, 500, -5, "c1", True)])


@pytest.mark.parametrize("compiled", [True, False])
def test_places_past_the_event_room_are_dropped_and_amends_and_cancels_kept(compiled: bool) -> None:
    setup = {"structure": "linear_cent", "strategy": "inside", "params": StrategyParams(quote_size=500),
             "close": None, "fee": 0, "alpha": 0.0}
    book = OrderBook()
    book.apply_snapshot([["0.4000", "10.00"]], [["0.5000", "10.00"]])   # 0.40 / 0.50: we quote 0.41 / 0.49
    pipe = _build(setup, book, compiled=compiled)
    pipe.set_rooms(100 * 4100 - 1, ROOM_OPEN)       # one contract bought at 0.41 lowers it by 410 000
    assert [a.astuple() for a in pipe.frame(1, WALL0, 0, [])] == [(0, 1, None, 4900, 500)]
    pipe.set_rooms(100 * 4100, 100 * 5100 - 1)      # the bid fits with one contract; the ask (0.51 of NO) not
    assert [a.astuple() for a in pipe.frame(2, WALL0, 0, [])] == [(0, 0, None, 4100, 500)]
    pipe.set_rooms(-1, -1)
    assert pipe.frame(3, WALL0, 0, []) == ()
    # an order resting on a refused side is still amended (the gate decides; it takes its own order out)
    live = [LiveOrder("o1", "bid", 3800, 500, 0, "c1", True)]
    assert [a.astuple() for a in pipe.frame(4, WALL0, 0, live)] == [(1, 0, "c1", 4100, 500)]
    pipe.set_rooms(ROOM_OPEN, ROOM_OPEN)            # back to ok: both sides within one decision
    assert [a.astuple() for a in pipe.frame(5, WALL0, 0, [])] == [(0, 0, None, 4100, 500), (0, 1, None, 4900, 500)]
    assert (pipe.core.places_blocked if compiled else pipe.places_blocked) == 5
