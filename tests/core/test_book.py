"""OrderBook: unit tests, error messages, and property tests against tests/reference/book.py."""

from __future__ import annotations

import array

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm._core.book import BookError, OrderBook
from kmm._core.grid import Grid
from tests.reference.book import QTY_MAX, RefBook
from tests.reference.book import STRUCTURES as REF_STRUCTURES
from tests.reference.book import BookError as RefBookError

STRUCTURES = tuple(REF_STRUCTURES)  # all twelve of kalshi-api.md section 2.2


def same_book(c: OrderBook, r: RefBook) -> None:
    """Every query of the compiled book equals the reference's."""
    assert c.levels() == r.levels()
    assert c.bids() == r.bids() and c.asks() == r.asks() and c.no_bids() == r.no_bids()
    assert c.bids(2) == r.bids(2) and c.asks(1) == r.asks(1)
    assert c.best_bid() == r.best_bid() and c.best_ask() == r.best_ask()
    assert c.best_no_bid() == r.best_no_bid()
    assert c.best_bid_size() == r.best_bid_size() and c.best_ask_size() == r.best_ask_size()
    assert c.spread() == r.spread() and c.mid() == r.mid() and c.microprice() == r.microprice()
    assert c.is_crossed() == r.is_crossed() and c.is_empty() == r.is_empty()
    assert c.version == r.version
    bids, asks = r.bids(), r.asks()
    limits = {1, 5000, 9999} | {p for p, _ in bids[:2]} | {p for p, _ in asks[:2]}
    for limit in limits:
        assert c.depth_within("buy", limit) == r.depth_within("buy", limit)
        assert c.depth_within("sell", limit) == r.depth_within("sell", limit)
        assert c.levels_within("buy", limit) == r.levels_within("buy", limit)
        assert c.levels_within("sell", limit) == r.levels_within("sell", limit)
    for n in (0, 1, 3):
        assert c.cum_depth("buy", n) == r.cum_depth("buy", n)
        assert c.cum_depth("sell", n) == r.cum_depth("sell", n)
    for total in (sum(s for _, s in asks), sum(s for _, s in bids)):
        for size in {1, max(total // 2, 1), max(total, 1), total + 1}:
            assert c.buy_vwap(size) == r.buy_vwap(size)
            assert c.sell_vwap(size) == r.sell_vwap(size)
            assert c.sweep_price("buy", size) == r.sweep_price("buy", size)
            assert c.sweep_price("sell", size) == r.sweep_price("sell", size)


def s4(p: int) -> str:
    return f"{p / 10000:.4f}"


def s2(q: int) -> str:
    return f"{q / 100:.2f}"


# ---- unit tests ------------------------------------------------------------------------------

def test_snapshot_sets_bids_and_implied_asks_best_first():
    b = OrderBook()
    b.apply_snapshot([["0.4100", "25.00"], ["0.4200", "13.00"]], [["0.5500", "40.00"], ["0.5700", "7.00"]])
    assert b.bids() == [(4200, 1300), (4100, 2500)]
    assert b.asks() == [(4300, 700), (4500, 4000)]
    assert b.best_bid() == 4200 and b.best_ask() == 4300 and b.spread() == 100
    assert b.mid() == 4250.0 and b.microprice() == (4200 * 700 + 4300 * 1300) / 2000
    assert b.levels() == ([(4100, 2500), (4200, 1300)], [(5500, 4000), (5700, 700)])
    assert b.version == 1 and not b.is_crossed() and not b.is_empty()


def test_apply_delta_removes_level_when_size_reaches_zero_and_best_moves_down():
    b = OrderBook("deci_cent")
    b.apply_snapshot([["0.0010", "1.00"], ["0.9990", "2.00"]], None)
    b.apply_delta("yes", "0.9990", "-2.00")
    assert b.best_bid() == 10 and b.bids() == [(10, 100)] and b.size_at("yes", 9990) == 0
    b.apply_delta("yes", "0.0010", "-1.00")
    assert b.best_bid() is None and b.is_empty() and b.best_bid_size() == 0


def test_empty_book_queries_return_none_or_zero():
    b = OrderBook()
    assert b.best_bid() is None and b.best_ask() is None and b.mid() is None
    assert b.microprice() is None and b.spread() is None and b.bids() == [] and b.asks() == []
    assert b.buy_vwap(100) is None and b.depth_within("buy", 9900) == 0 and b.cum_depth("sell", 3) == []
    assert not b.is_crossed() and b.is_empty()


def test_crossed_book_is_kept_and_reported():
    b = OrderBook()
    b.apply_snapshot([["0.6000", "1.00"]], [["0.5000", "1.00"]])  # YES ask 0.50 < bid 0.60
    assert b.is_crossed() and b.spread() == -1000 and b.best_ask() == 5000
    b.apply_snapshot([["0.5000", "1.00"]], [["0.5000", "1.00"]])  # locked
    assert b.is_crossed() and b.spread() == 0


def test_vwap_and_sweep_walk_levels_and_return_none_when_too_thin():
    b = OrderBook()
    b.apply_snapshot([["0.4000", "1.00"], ["0.3900", "3.00"]], [["0.5500", "2.00"], ["0.5400", "2.00"]])
    assert b.buy_vwap(300) == (4500 * 200 + 4600 * 100) / 300
    assert b.sweep_price("buy", 300) == 4600 and b.sweep_price("sell", 150) == 3900
    assert b.sell_vwap(400) == (4000 * 100 + 3900 * 300) / 400 and b.sell_vwap(401) is None
    assert b.depth_within("buy", 4500) == 200 and b.levels_within("sell", 3900) == [(4000, 100), (3900, 300)]
    assert b.cum_depth("buy", 5) == [200, 400]


def test_clear_empties_and_bumps_version():
    b = OrderBook()
    b.apply_snapshot([["0.4000", "1.00"]], [["0.5500", "2.00"]])
    b.clear()
    assert b.is_empty() and b.version == 2


def test_book_accepts_price_ranges_dicts_structure_names_and_grids():
    assert OrderBook([{"start": "0.0000", "end": "1.0000", "step": "0.0010"}]).grid.step_min == 10
    assert OrderBook("tapered_deci_cent").grid.n_slots == 1001
    g = Grid("deci_cent")
    assert OrderBook(g).grid is g


def test_apply_deltas_accepts_numpy_arrays_and_array_q():
    b = OrderBook()
    n = b.apply_deltas(np.array([0, 1, 0], dtype=np.int64), np.array([4000, 5500, 4000], dtype=np.int64),
                       np.array([100, 200, -40], dtype=np.int64))
    assert n == 3 and b.bids() == [(4000, 60)] and b.asks() == [(4500, 200)] and b.version == 3
    b.apply_deltas(array.array("q", [1]), array.array("q", [5500]), array.array("q", [-200]))
    assert b.asks() == [] and b.version == 4


# ---- errors --------------------------------------------------------------------------------

def test_desync_delta_raises_naming_side_price_value_and_leaves_book_unchanged():
    b = OrderBook()
    b.apply_snapshot([["0.4100", "25.00"]], None)
    with pytest.raises(BookError, match=r"yes.*0\.4100.*-30\.00.*desync") as exc:
        b.apply_delta("yes", "0.4100", "-30.00")
    assert isinstance(exc.value, ValueError)
    assert b.bids() == [(4100, 2500)] and b.version == 1
    with pytest.raises(BookError, match=r"no.*0\.5000.*-1\.00.*desync"):
        b.apply_delta("no", "0.5000", "-1.00")
    assert b.no_bids() == []


@pytest.mark.parametrize("side,price,delta,words", [
    ("maybe", "0.4100", "1.00", ["unknown side", "maybe"]),
    ("yes", "0.4150", "1.00", ["yes", "0.4150", "1.00", "grid"]),
    ("yes", "1.0000", "1.00", ["yes", "1.0000", "outside"]),
    ("no", "0.0000", "1.00", ["no", "0.0000", "outside"]),
    ("yes", "abc", "1.00", ["yes", "abc", "price"]),
    ("yes", "0.41", "1.001", ["yes", "0.41", "1.001", "delta"]),
    ("no", "0.41", 5, ["no", "0.41", "5", "not a string"]),
])
def test_apply_delta_rejects_bad_input_with_message_naming_side_price_value(side, price, delta, words):
    b = OrderBook()
    with pytest.raises(BookError) as exc:
        b.apply_delta(side, price, delta)
    for w in words:
        assert w in str(exc.value)
    assert b.is_empty() and b.version == 0


@pytest.mark.parametrize("yes,no,words", [
    ([["0.4100", "1.00"], ["0.4150", "1.00"]], None, ["yes", "0.4150", "grid"]),
    ([["0.4100", "1.00"]], [["0.5000", "-1.00"]], ["no", "0.5000", "-1.00", "size"]),
    ([["0.4100", "1.00"], ["0.4100", "2.00"]], None, ["yes", "0.4100", "twice"]),
    ([["0.4100"]], None, ["yes", "pair"]),
    ("0.41", None, ["yes", "list"]),
])
def test_bad_snapshot_raises_and_leaves_book_unchanged(yes, no, words):
    b = OrderBook()
    b.apply_snapshot([["0.3000", "9.00"]], [["0.6000", "8.00"]])
    with pytest.raises(BookError) as exc:
        b.apply_snapshot(yes, no)
    for w in words:
        assert w in str(exc.value)
    assert b.bids() == [(3000, 900)] and b.asks() == [(4000, 800)] and b.version == 1


def test_apply_deltas_error_rolls_back_whole_batch_and_names_index():
    b = OrderBook()
    b.apply_snapshot([["0.4100", "25.00"]], [["0.5500", "40.00"]])
    before = (b.levels(), b.version)
    sides = np.array([0, 0, 1, 1], dtype=np.int64)
    prices = np.array([4200, 4100, 5500, 5500], dtype=np.int64)
    deltas = np.array([500, -2500, -4000, -1], dtype=np.int64)  # #3 goes below zero
    with pytest.raises(BookError, match=r"#3.*rolled back.*no.*5500.*-1.*desync"):
        b.apply_deltas(sides, prices, deltas)
    assert (b.levels(), b.version) == before and b.best_bid() == 4100 and b.best_ask() == 4500
    with pytest.raises(BookError, match=r"#1.*4150.*grid"):
        b.apply_deltas(sides[:2], np.array([4200, 4150], dtype=np.int64), deltas[:2])
    with pytest.raises(BookError, match=r"#0.*unknown side"):
        b.apply_deltas(np.array([2], dtype=np.int64), prices[:1], deltas[:1])
    with pytest.raises(BookError, match="lengths"):
        b.apply_deltas(sides, prices[:2], deltas)
    assert (b.levels(), b.version) == before


def test_size_limits_and_bad_query_arguments_raise_book_error():
    b = OrderBook()
    with pytest.raises(BookError, match="out of range"):
        b.apply_level_delta(0, 4000, QTY_MAX + 1)
    with pytest.raises(BookError, match="size"):
        b.buy_vwap(0)
    with pytest.raises(BookError, match="taker side"):
        b.depth_within("yes", 5000)
    with pytest.raises(BookError, match=">= 0"):
        b.bids(-1)


# ---- property tests against the reference ----------------------------------------------------

@st.composite
def book_ops(draw, structure):
    ref = RefBook(structure)
    prices = sorted(set(ref.grid.prices) | {10000 - p for p in ref.grid.prices})  # YES and NO terms
    ops = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["delta", "delta", "delta", "remove_best", "snapshot", "batch",
                                     "desync", "bad", "clear", "regrid"]))
        if kind == "snapshot":
            levels = []
            for _side in range(2):
                ps = draw(st.lists(st.sampled_from(prices), max_size=6, unique=True))
                levels.append([[s4(p), s2(draw(st.integers(0, 5000)))] for p in ps])
            if draw(st.integers(0, 9)) == 0:  # a bad level somewhere
                levels[draw(st.integers(0, 1))].append([s4(draw(st.integers(1, 9999))), "1.00"])
            ops.append(("snapshot", levels[0] if levels[0] or draw(st.booleans()) else None, levels[1]))
        elif kind == "delta":
            ops.append(("delta", draw(st.sampled_from(["yes", "no"])), s4(draw(st.sampled_from(prices))),
                        s2(draw(st.integers(-300, 3000)))))
        elif kind == "remove_best":
            ops.append(("remove_best", draw(st.integers(0, 1))))
        elif kind == "desync":
            ops.append(("desync", draw(st.integers(0, 1))))
        elif kind == "batch":
            n = draw(st.integers(0, 12))
            ops.append(("batch", [draw(st.integers(0, 1)) for _ in range(n)],
                        [draw(st.sampled_from(prices)) for _ in range(n)],
                        [draw(st.integers(-200, 2000)) for _ in range(n)]))
        elif kind == "bad":
            ops.append(("delta", draw(st.sampled_from(["yes", "no", "YES"])),
                        draw(st.sampled_from(["0.00", "1.0000", "0.12345", "x", s4(draw(st.integers(1, 9999)))])),
                        draw(st.sampled_from(["1.00", "-0.01", "1e2", "+2.50"]))))
        elif kind == "regrid":
            new = draw(st.sampled_from(STRUCTURES))
            ops.append(("regrid", new))
            ref = RefBook(new)  # later ops draw prices of the new grid
            prices = sorted(set(ref.grid.prices) | {10000 - p for p in ref.grid.prices})
        else:
            ops.append(("clear",))
    return ops


def run_op(book, op):
    kind = op[0]
    if kind == "snapshot":
        book.apply_snapshot(op[1], op[2])
    elif kind == "delta":
        book.apply_delta(op[1], op[2], op[3])
    elif kind == "batch":
        if isinstance(book, OrderBook):
            book.apply_deltas(*(np.array(x, dtype=np.int64) for x in op[1:]))
        else:
            book.apply_deltas(*op[1:])
    elif kind == "clear":
        book.clear()
    elif kind == "regrid":
        book.regrid(op[1])


def resolve(ref: RefBook, op):
    """Turn state-dependent ops into concrete ones using the reference's current levels."""
    if op[0] in ("remove_best", "desync"):
        side = op[1]
        levels = ref.bids() if side == 0 else ref.no_bids()
        if not levels:
            return ("delta", ("yes", "no")[side], "0.5000", "1.00")
        p, s = levels[0]
        amount = -s if op[0] == "remove_best" else -s - 1
        return ("delta", ("yes", "no")[side], s4(p), s2(amount))
    return op


@given(st.sampled_from(STRUCTURES).flatmap(lambda s: st.tuples(st.just(s), book_ops(s))))
def test_compiled_book_matches_reference_after_every_operation(case):
    structure, ops = case
    c, r = OrderBook(structure), RefBook(structure)
    for op in ops:
        op = resolve(r, op)
        outcome = []
        for book in (c, r):
            try:
                run_op(book, op)
                outcome.append(None)
            except (BookError, RefBookError):  # the reference has its own BookError class
                outcome.append("BookError")
        assert outcome[0] == outcome[1], (op, outcome)
        same_book(c, r)


@st.composite
def any_ranges(draw):
    """price_ranges of a structure kmm never heard of: 1-3 bands, steps that divide them, possibly
    asymmetric (a NO bid at p is then valid only when 1 - p is a valid YES price)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, 99), max_size=2))))
    bounds = [0] + [c * 100 for c in cuts] + [10000]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        step = draw(st.sampled_from([s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500) if (b - a) % s == 0]))
        out.append((s4(a), s4(b), s4(step)))
    return tuple(out)


@given(any_ranges().flatmap(lambda r: st.tuples(st.just(r), book_ops(r))))
def test_compiled_book_matches_reference_on_arbitrary_price_ranges(case):
    ranges, ops = case
    c, r = OrderBook(ranges), RefBook(ranges)
    assert c.grid.prices() == r.grid.prices
    for op in ops:
        op = resolve(r, op)
        outcome = []
        for book in (c, r):
            try:
                run_op(book, op)
                outcome.append(None)
            except (BookError, RefBookError):
                outcome.append("BookError")
        assert outcome[0] == outcome[1], (op, outcome)
        same_book(c, r)


def test_no_bids_are_checked_against_the_mirrored_grid_on_an_asymmetric_grid():
    ranges = (("0.0000", "0.5000", "0.0010"), ("0.5000", "1.0000", "0.0100"))
    b = OrderBook(ranges)
    b.apply_delta("yes", "0.4010", "1.00")          # YES bid on the fine half
    b.apply_delta("no", "0.4100", "1.00")           # NO bid at 0.41 = YES ask at 0.59: on the coarse half
    with pytest.raises(BookError, match="off the market's grid"):
        b.apply_delta("no", "0.4010", "1.00")       # YES ask at 0.599: not a valid price
    assert b.best_ask() == 5900 and b.size_at("no", 4010) == 0
