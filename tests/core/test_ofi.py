"""OFI: hand-computed cases and property tests against tests/reference/ofi.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.ofi import OFI
from tests.reference.book import RefBook
from tests.reference.ofi import RefOFI


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_bid_size_increase_at_same_price_is_positive_flow():
    b, o = OrderBook(), OFI(window_ns=1000, half_life_ns=1000, levels=2)
    b.apply_snapshot([["0.4100", "25.00"]], [["0.5500", "40.00"]])
    assert o.update(b, 0) == 0.0 and o.count == 1
    b.apply_delta("yes", "0.4100", "5.00")
    assert o.update(b, 10) == 500.0 and o.window_sum == 500


def test_bid_and_ask_price_moves_follow_cont_kukanov_stoikov():
    b, o = OrderBook(), OFI(window_ns=10**9, half_life_ns=10**9, levels=1)
    b.apply_snapshot([["0.4100", "25.00"]], [["0.5500", "40.00"]])  # ask 4500 x 4000
    o.update(b, 0)
    b.apply_delta("yes", "0.4200", "10.00")      # new higher bid: +qb_n = +1000
    assert o.update(b, 1) == 1000.0
    b.apply_delta("no", "0.5600", "3.00")        # ask improves to 4400: -qa_n = -300
    assert o.update(b, 2) == -300.0
    b.apply_delta("yes", "0.4200", "-10.00")     # bid falls back to 4100: -qb_{n-1} = -1000
    assert o.update(b, 3) == -1000.0
    b.apply_delta("no", "0.5600", "-3.00")       # ask retreats to 4500: +qa_{n-1} = +300
    assert o.update(b, 4) == 300.0
    assert o.window_sum == 0 and o.events == 5


def test_empty_sides_count_as_price_zero_bid_and_price_one_ask():
    b, o = OrderBook(), OFI(levels=1)
    o.update(b, 0)
    b.apply_snapshot([["0.4100", "25.00"]], None)
    assert o.update(b, 1) == 2500.0               # a bid appears
    b.apply_snapshot(None, [["0.5500", "40.00"]])
    assert o.update(b, 2) == -2500.0 - 4000.0     # bid vanishes, ask appears


def test_window_expires_old_events_and_normalizes_by_average_depth():
    b, o = OrderBook(), OFI(window_ns=100, half_life_ns=100, levels=1)
    b.apply_snapshot([["0.4100", "10.00"]], [["0.5500", "10.00"]])
    o.update(b, 0)
    b.apply_delta("yes", "0.4100", "10.00")
    o.update(b, 50)
    assert o.window_sum == 1000 and o.avg_depth == (2000 + 3000) / 4
    assert o.normalized == 1000 / o.avg_depth
    assert close(o.ewma, 1000.0) and close(o.ewma_at(150), 500.0)
    o.update(b, 150)                               # the event at 50 is 100 ns old: gone
    assert o.count == 1 and o.window_sum == 0


def test_full_ring_drops_oldest_and_counts_overflow():
    b, o = OrderBook(), OFI(window_ns=10**12, capacity=2, levels=1)
    b.apply_snapshot([["0.4100", "10.00"]], None)
    for t in range(4):
        b.apply_delta("yes", "0.4100", "1.00")
        o.update(b, t)
    assert o.count == 2 and o.overflowed == 2 and o.window_sum == 200


def test_time_going_backwards_and_bad_parameters_raise():
    b, o = OrderBook(), OFI()
    o.update(b, 100)
    with pytest.raises(ValueError, match="before"):
        o.update(b, 99)
    with pytest.raises(ValueError, match="levels"):
        OFI(levels=0)
    with pytest.raises(ValueError, match="window_ns"):
        OFI(window_ns=0)
    o.reset()
    assert o.update(b, 5) == 0.0 and o.events == 1


@st.composite
def ofi_cases(draw):
    structure = draw(st.sampled_from(["linear_cent", "deci_cent", "tapered_deci_cent"]))
    prices = RefBook(structure).grid.prices[::7]
    params = dict(window_ns=draw(st.integers(1, 50)), half_life_ns=draw(st.integers(1, 100)),
                  levels=draw(st.integers(1, 4)), capacity=draw(st.integers(1, 20)))
    steps = draw(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(prices), st.integers(-3000, 3000),
                                    st.integers(0, 15)), max_size=40))
    return structure, params, steps


@given(ofi_cases())
def test_compiled_ofi_matches_reference_after_every_update(case):
    structure, params, steps = case
    cb, rb = OrderBook(structure), RefBook(structure)
    co, ro = OFI(**params), RefOFI(**params)
    now = 0
    for side, price, amount, dt in steps:
        have = rb.side[side].get(price, 0)
        amount = max(amount, -have)                # keep the level non-negative
        cb.apply_level_delta(side, price, amount)
        rb.apply_level_delta(side, price, amount)
        now += dt
        assert co.update(cb, now) == ro.update(rb, now)
        assert co.window_sum == ro.window_sum and co.multi_level == ro.multi_level
        assert co.count == ro.count and co.overflowed == ro.overflowed and co.events == ro.events
        assert co.last_levels == tuple(ro.last_levels)
        assert close(co.ewma, ro.ewma) and close(co.avg_depth, ro.avg_depth)
        assert close(co.normalized, ro.normalized) and close(co.multi_combined, ro.multi_combined)
        assert all(close(a, b) for a, b in zip(co.multi_normalized, ro.multi_normalized, strict=True))
