"""Decision rules on hand-built books; every expected number is worked out in the comments."""

from fractions import Fraction

import pytest

from kmm._core.grid import Grid
from kmm.execution import (Action, Aggression, CapReason, LiquidityPolicy, aggression, best_level_cap, decide,
                           effective_price, format_decision, liquidity_cap, next_level_too_far, within_limit)

ASKS = [(5000, 1000), (5200, 2000), (5600, 3000)]  # YES asks, best first: 10 @ 0.50, 20 @ 0.52, 30 @ 0.56


def test_within_limit_stops_at_first_level_beyond_limit_and_skips_empty_levels():
    assert within_limit(ASKS, "bid", 5200) == [(5000, 1000), (5200, 2000)]
    assert within_limit([(6000, 0), (5900, 500), (5800, 100)], "ask", 5900) == [(5900, 500)]


def test_effective_price_averages_over_levels_that_fill_now():
    e = effective_price(ASKS, Action.BUY_YES, 2000, 5600)
    # 1000 @ 5000 + 1000 @ 5200 = 10,200,000 -> avg 5100
    assert (e.size, e.notional, e.levels_used, e.worst_price) == (2000, 10_200_000, 2, 5200)
    assert e.avg_price == 5100
    assert e.depth_within_limit == 6000
    assert e.impact_px == 100 and e.impact_ticks == 1.0  # one cent tick at 0.50
    assert e.impact_pct == pytest.approx(2.0)  # 100 / 5000
    # taker fees: 10 @ 0.50 -> 0.07*10*0.25 = 0.1750; 10 @ 0.52 -> 0.07*10*0.2496 = 0.17472 -> 0.1748 (rounded up)
    assert e.fee == 1750 + 1748
    assert e.cost == 102_000  # $10.20


def test_effective_price_fills_only_depth_within_limit():
    e = effective_price(ASKS, Action.BUY_YES, 5000, 5200)
    assert e.size == 3000 and e.requested == 5000 and e.depth_within_limit == 3000


def test_effective_price_impact_percent_uses_the_no_price_for_no_buyers():
    # buy NO = ask on YES: take YES bids 6000 (NO 0.40) then 5900 (NO 0.41)
    e = effective_price([(6000, 1000), (5900, 500)], Action.BUY_NO, 1500)
    # (6000*1000 + 5900*500) / 1500 = 5966.67 YES; 33.33 worse on 4000 NO -> 0.8333 %
    assert e.avg_price == pytest.approx(5966.6667, abs=1e-3)
    assert e.impact_pct == pytest.approx(100 * (100 / 3) / 4000)


def test_impact_ticks_follow_the_grid_at_the_best_price():
    # tapered grid: 0.001 ticks below 0.10; 2 @ 0.050 + 2 @ 0.052 -> avg 0.051, one mill = one tick
    e = effective_price([(500, 200), (520, 200)], Action.BUY_YES, 400, grid=Grid("tapered_deci_cent"))
    assert e.impact_ticks == pytest.approx(1.0)


def test_best_level_cap_takes_fraction_of_displayed_size_in_whole_lots():
    assert best_level_cap(1000, 5000, 0.25, 100) == 200  # 250 -> 2 whole contracts
    assert best_level_cap(1000, 5000, 0.25, 1) == 250    # fractional market
    assert best_level_cap(1000, 300, 1.0, 100) == 300


@pytest.mark.parametrize("action, best, nxt, expected", [
    (Action.BUY_YES, 5000, 5500, False),  # exactly 10 %: not more than the threshold
    (Action.BUY_YES, 5000, 5600, True),   # 12 %
    (Action.BUY_NO, 6000, 5600, False),   # NO 0.40 -> 0.44: exactly 10 % of the NO price
    (Action.BUY_NO, 6000, 5590, True),    # NO 0.40 -> 0.441: 10.25 %
    (Action.SELL_YES, 5000, 4500, False), # receive 0.45 instead of 0.50: 10 %
])
def test_next_level_too_far_compares_against_the_users_price(action, best, nxt, expected):
    assert next_level_too_far(action, best, nxt, 0.10) is expected


def test_liquidity_cap_fraction_below_one_never_reaches_deeper_levels():
    assert liquidity_cap(ASKS, Action.BUY_YES, 5000, max_take_fraction=0.25) == (200, CapReason.BEST_LEVEL_FRACTION)


def test_liquidity_cap_target_within_best_level_is_not_capped():
    assert liquidity_cap(ASKS, Action.BUY_YES, 800) == (800, CapReason.NONE)


def test_two_level_rule_caps_at_best_size_when_next_level_is_far():
    assert liquidity_cap([(5000, 1000), (5600, 2000)], Action.BUY_YES, 2000) == (1000, CapReason.NEXT_LEVEL_TOO_FAR)


def test_two_level_rule_consumes_further_levels_up_to_the_impact_budget():
    levels = [(5000, 1000), (5200, 2000), (5400, 2000)]
    # budget 3 % of 5000 = 150. Level 2 (d=200): room = 150*1000/50 = 3000 >= 2000, take all -> 3000, sum q*d = 400,000.
    # Level 3 (d=400): room = (150*3000 - 400,000) / 250 = 200 -> stop at 3200; avg = 16,480,000/3200 = 5150 (+150).
    size, reason = liquidity_cap(levels, Action.BUY_YES, 5000, impact_budget_px=Fraction(150))
    assert (size, reason) == (3200, CapReason.IMPACT_BUDGET)
    assert effective_price(levels, Action.BUY_YES, size).avg_price == 5150


def test_two_level_rule_stops_at_max_levels_and_at_depth():
    levels = [(5000, 1000), (5200, 2000), (5400, 2000)]
    assert liquidity_cap(levels, Action.BUY_YES, 5000, max_levels=2) == (3000, CapReason.MAX_LEVELS)
    assert liquidity_cap([(5000, 1000), (5100, 500)], Action.BUY_YES, 5000) == (1500, CapReason.DEPTH_WITHIN_LIMIT)


@pytest.mark.parametrize("edge, conf, expected", [
    (None, None, Aggression.NORMAL),
    (50, None, Aggression.SKIP),          # below min_edge 100
    (200, 0.9, Aggression.BEST_ONLY),     # below low_edge 300
    (500, 0.3, Aggression.BEST_ONLY),     # below low_confidence 0.5
    (500, 0.9, Aggression.NORMAL),
    (900, None, Aggression.NORMAL),       # high edge alone is not enough
    (900, 0.9, Aggression.AGGRESSIVE),
])
def test_aggression_bands_from_edge_and_confidence(edge, conf, expected):
    assert aggression(edge, conf) is expected


def test_decide_conservative_mode_takes_best_level_only_when_spread_is_tight():
    pol = LiquidityPolicy(conservative=True)
    d = decide(ASKS, Action.BUY_YES, 3000, 5600, policy=pol, opposite_best=4500)  # spread 500 <= 600
    assert (d.exec_size, d.order_price, d.levels_used) == (1000, 5000, 1)
    assert d.liquidity_cap_reason is CapReason.BEST_LEVEL_ONLY and d.remainder == 2000
    assert decide(ASKS, Action.BUY_YES, 3000, 5600, policy=pol, opposite_best=4300).liquidity_cap_reason \
        is CapReason.SPREAD_TOO_WIDE
    unknown = decide(ASKS, Action.BUY_YES, 3000, 5600, policy=pol)
    assert (unknown.exec_size, unknown.liquidity_cap_reason) == (0, CapReason.SPREAD_UNKNOWN)


def test_decide_aggressive_allows_next_level_and_doubles_impact_budget():
    levels = [(5000, 1000), (5600, 2000)]
    normal = decide(levels, Action.BUY_YES, 3000, 6000)
    assert normal.liquidity_cap_reason is CapReason.NEXT_LEVEL_TOO_FAR and normal.exec_size == 1000
    # aggressive: threshold 20 % lets 12 % through; budget 2 * 150 = 300 (edge cap 450 is looser);
    # level 2 d=600: room = 300*1000/300 = 1000 -> 2000 total, avg 5300
    d = decide(levels, Action.BUY_YES, 3000, 6000, edge=900, confidence=0.9)
    assert d.aggression is Aggression.AGGRESSIVE
    assert (d.exec_size, d.order_price, d.levels_used) == (2000, 5600, 2)
    assert d.effective_price == 5300 and d.impact_pct == pytest.approx(6.0)
    assert d.liquidity_cap_reason is CapReason.IMPACT_BUDGET


def test_decide_edge_caps_the_impact_budget_at_half_the_edge():
    pol = LiquidityPolicy(impact_budget=0.05)  # 250 on 5000, but edge 400 -> at most 200
    d = decide([(5000, 1000), (5400, 2000)], Action.BUY_YES, 3000, 6000, policy=pol, edge=400)
    # level 2 d=400 (8 %, under the 10 % rule): room = 200*1000/200 = 1000 -> 2000, avg 5200
    assert (d.exec_size, d.effective_price) == (2000, 5200)
    assert any("capped" in n for n in d.notes)


def test_decide_reports_no_liquidity_skip_and_below_lot():
    assert decide([(5700, 1000)], Action.BUY_YES, 1000, 5600).liquidity_cap_reason is CapReason.NO_LIQUIDITY
    skip = decide(ASKS, Action.BUY_YES, 1000, 5600, edge=50)
    assert (skip.exec_size, skip.liquidity_cap_reason, skip.order_price) == (0, CapReason.EDGE_BELOW_MINIMUM, None)
    tiny = decide(ASKS, Action.BUY_YES, 1000, 5600, policy=LiquidityPolicy(max_take_fraction=0.05))
    assert tiny.exec_size == 0  # 5 % of 10 contracts is half a contract


def test_decide_for_sell_no_takes_yes_asks_with_bid_side():
    # sell NO at >= 0.45 = bid on YES <= 0.55: take YES asks 0.50, 0.52
    d = decide(ASKS, Action.SELL_NO, 2500, 5500)
    assert d.side == "bid" and d.exec_size == 2500 and d.order_price == 5200


def test_format_decision_shows_user_and_yes_prices_and_says_dry_run():
    d = decide([(6000, 1000), (5900, 500)], Action.BUY_NO, 1500, 5800)
    text = format_decision(d, "KXA-1")
    assert text.splitlines()[0] == "DRY RUN: buy-no 15.00 KXA-1"
    assert "ask on the YES book, limit 0.4200 (YES 0.5800)" in text
    assert "order price        0.4100 (YES 0.5900)" in text
    assert "levels used        2" in text
    assert "executed size      15.00  (remainder 0.00)" in text
    assert "cap reason         none" in text
    assert text.endswith("nothing was sent (dry run)")
    assert "DRY RUN" not in format_decision(d, dry_run=False)


def test_policy_rejects_bad_fractions():
    with pytest.raises(ValueError, match="max_take_fraction"):
        LiquidityPolicy(max_take_fraction=0)
    with pytest.raises(ValueError, match="min_edge <= low_edge"):
        LiquidityPolicy(min_edge=500, low_edge=100)
