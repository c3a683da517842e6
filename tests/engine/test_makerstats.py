"""Maker metrics: placed orders, liquidity near the best, spread improvement, fill rates, 30-day volume,
all with an injected clock and hand-computed expectations."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.makerstats import MakerStats
from kmm.kalshi.types import Fill

T, U = "KXMS-1", "KXMS-2"
DAY_MS = 86_400_000
_tid = itertools.count()


def fill(price: int, count: int, *, taker: bool = False, coid: str | None = None, ts_ms: int = 0,
         trade_id: str | None = None) -> Fill:
    return Fill(trade_id or f"t{next(_tid)}", "o", coid, T, "bid", price, count, 0, taker, None, ts_ms)


def test_a_worked_session_of_two_quotes():
    clock = ManualClock()
    now_ms = clock.time_ns() // 1_000_000
    ms = MakerStats(clock, near=100)                   # "near": within $0.01 of the best
    ms.on_top(T, 4800, 5200)
    ms.on_resting("a", T, "bid", 4900, 1000)           # improves the bid by 100
    ms.on_top(T, 4900, 5200)
    ms.on_resting("b", T, "ask", 5300, 500)            # behind the best ask: improves nothing
    clock.advance(10)
    # a: 10 contracts at the best for 10 s; b: 5 contracts 100 behind (near) for 10 s
    ms.on_top(T, 5100, 5200)                           # someone bids 0.51: a is now 200 behind
    clock.advance(5)
    ms.on_fill(fill(4900, 400, coid="a", ts_ms=now_ms))
    ms.on_resting("a", T, "bid", 4900, 600)
    ms.on_fill(fill(5200, 200, taker=True, ts_ms=now_ms))
    ms.on_done("b")
    clock.advance(5)
    m = ms.snapshot()
    assert m.resting_orders_placed == 2 and m.contracts_offered == 15.0
    # near: a 10 x 10 + b 5 x 10 + b 5 x 5 = 175 contract-s
    assert m.contract_seconds_near_best == pytest.approx(175.0)
    # dollars: a 10 x 0.49 x 10 = 49; b (NO price 0.47) 5 x 0.47 x 15 = 35.25
    assert m.dollar_seconds_near_best == pytest.approx(84.25)
    # all resting: + a 10 x 5 + a 6 x 5 = 255 contract-s; + 0.49 x (50 + 30) = 39.2 dollar-s
    assert m.contract_seconds_resting == pytest.approx(255.0)
    assert m.dollar_seconds_resting == pytest.approx(123.45)
    assert m.spread_improvement_avg == 50.0 and m.spread_improvement_samples == 2
    assert (m.maker_contracts, m.taker_contracts, m.maker_taker_ratio) == (4.0, 2.0, 2.0)
    assert m.maker_fill_rate == pytest.approx(4 / 15)
    assert m.maker_order_fill_rate == 0.5
    assert m.volume_30d_contracts == 6.0
    assert m.volume_30d_dollars == pytest.approx(4 * 0.49 + 2 * 0.52)
    assert m.as_dict()["near"] == 100


def test_near_zero_counts_only_the_best_price_and_an_empty_side_counts_nothing():
    clock = ManualClock()
    ms = MakerStats(clock)
    ms.on_top(T, 5000, None)
    ms.on_resting("a", T, "bid", 5000, 100)
    ms.on_resting("b", T, "bid", 4999, 100)
    ms.on_resting("c", T, "ask", 6000, 100)
    clock.advance(2)
    m = ms.snapshot()
    assert m.contract_seconds_near_best == pytest.approx(2.0)      # only a
    assert m.contract_seconds_resting == pytest.approx(6.0)
    assert m.spread_improvement_samples == 2                         # no best ask to compare c with


def test_amends_count_once_as_placed_add_offered_size_and_sample_a_new_price():
    clock = ManualClock()
    ms = MakerStats(clock)
    ms.on_top(T, 4000, 6000)
    ms.on_resting("a", T, "bid", 4100, 500)
    ms.on_resting("a", T, "bid", 4100, 800)     # amend up: +3 offered, same price: no new sample
    ms.on_resting("a", T, "bid", 4300, 800)     # re-price: a new sample of 300
    ms.on_resting("a", T, "bid", 4300, 0)       # remaining 0: done
    ms.on_resting("a", T, "bid", 4300, 200)     # the same key again is not a new placement (a new quote)
    m = ms.snapshot()
    assert m.resting_orders_placed == 1 and m.contracts_offered == 8.0
    assert m.spread_improvement_samples == 3 and m.spread_improvement_avg == pytest.approx((100 + 300 + 300) / 3)
    with pytest.raises(ValueError):
        ms.on_resting("x", T, "buy", 4000, 100)


def test_markets_accrue_independently_and_time_only_counts_while_resting():
    clock = ManualClock()
    ms = MakerStats(clock)
    ms.on_top(T, 5000, 5100)
    ms.on_top(U, 3000, 3100)
    ms.on_resting("a", T, "bid", 5000, 300)
    clock.advance(4)
    ms.on_resting("b", U, "ask", 3100, 100)
    clock.advance(1)
    ms.on_done("a")
    clock.advance(10)
    ms.on_done("b")
    clock.advance(100)
    m = ms.snapshot()
    assert m.contract_seconds_near_best == pytest.approx(3 * 5 + 1 * 11)
    assert m.dollar_seconds_near_best == pytest.approx(3 * 0.5 * 5 + 1 * 0.69 * 11)


def test_thirty_day_volume_slides_and_takes_backfill_in_any_order():
    clock = ManualClock()
    now_ms = clock.time_ns() // 1_000_000
    ms = MakerStats(clock)
    ms.load_fills([fill(5000, 100, ts_ms=now_ms - 29 * DAY_MS), fill(5000, 700, ts_ms=now_ms - 40 * DAY_MS)])
    ms.on_fill(fill(2000, 300, taker=True, ts_ms=now_ms))
    ms.on_fill(fill(4000, 200, ts_ms=now_ms - 10 * DAY_MS))           # backfilled after a newer one
    dup = fill(4000, 200, trade_id="dup", ts_ms=now_ms)
    ms.on_fill(dup)
    ms.on_fill(dup)                                                     # a duplicate counts once
    m = ms.snapshot()
    assert m.volume_30d_contracts == 1 + 3 + 2 + 2
    assert m.volume_30d_dollars == pytest.approx(0.5 + 0.6 + 0.8 + 0.8)
    clock.advance_ns(2 * 86_400 * NS_PER_S)                             # the 29-day-old fill leaves
    assert ms.snapshot().volume_30d_contracts == 3 + 2 + 2
    clock.advance_ns(21 * 86_400 * NS_PER_S)                            # so does the 10-day-old one
    assert ms.snapshot().volume_30d_contracts == 3 + 2
    assert ms.snapshot().maker_taker_ratio == pytest.approx((1 + 7 + 2 + 2) / 3)


def test_no_activity_gives_none_rates():
    m = MakerStats(ManualClock()).snapshot()
    assert (m.maker_fill_rate, m.maker_order_fill_rate, m.maker_taker_ratio, m.spread_improvement_avg) == \
        (None, None, None, None)
    with pytest.raises(ValueError):
        MakerStats(ManualClock(), near=-1)


def test_user_order_updates_drive_resting_and_done():
    from kmm.kalshi.types import UserOrder
    clock = ManualClock()
    ms = MakerStats(clock)
    ms.on_top(T, 5000, 5100)
    ms.on_user_order(UserOrder("id1", "c1", T, "resting", "bid", 5000, 500, 0, 500))
    clock.advance(3)
    ms.on_user_order(UserOrder("id1", "c1", T, "resting", "bid", 5000, 500, 200, 300))
    clock.advance(2)
    ms.on_user_order(UserOrder("id1", "c1", T, "canceled", "bid", 5000, 500, 200, 0))
    clock.advance(50)
    m = ms.snapshot()
    assert m.resting_orders_placed == 1 and m.contracts_offered == 5.0
    assert m.contract_seconds_near_best == pytest.approx(5 * 3 + 3 * 2)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40 * DAY_MS), min_size=1, max_size=60))
def test_the_volume_window_stays_in_time_order_for_fills_in_any_order(ages_ms):
    """Fills arrive in any exchange-time order: each goes in its place in the 30-day window (the same
    deque, no re-sort), and the window's figures are those of the fills in it."""
    clock = ManualClock()
    now_ms = clock.time_ns() // 1_000_000
    ms = MakerStats(clock)
    window = ms._volume
    for i, age in enumerate(ages_ms):
        ms.on_fill(fill(5000, 100 + i, trade_id=f"t{i}", ts_ms=now_ms - age))
    assert ms._volume is window
    times = [ts for ts, _, _ in window]
    assert times == sorted(times)
    inside = [100 + i for i, age in enumerate(ages_ms) if age <= 30 * DAY_MS]     # 30 days old stays
    assert ms.snapshot().volume_30d_contracts == pytest.approx(sum(inside) / 100)
