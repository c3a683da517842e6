"""Property tests of the decision rules on random books."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from kmm.execution import Action, CapReason, decide, effective_price, liquidity_cap, within_limit


@st.composite
def take_side(draw):
    action = draw(st.sampled_from(list(Action)))
    n = draw(st.integers(0, 6))
    start = draw(st.integers(200, 9800))
    gaps = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    prices, p = [], start
    step = 1 if action.side == "bid" else -1  # asks ascend, bids descend
    for g in gaps:
        if not 0 < p < 10000:
            break
        prices.append(p)
        p += step * g
    sizes = draw(st.lists(st.integers(1, 50) .map(lambda k: k * 100), min_size=len(prices), max_size=len(prices)))
    return action, list(zip(prices, sizes))


@given(take_side(), st.integers(1, 200).map(lambda k: k * 100), st.integers(0, 600),
       st.sampled_from((1.0, 0.5, 0.25)), st.sampled_from((0.0, 0.1, 0.3)), st.integers(1, 5))
def test_liquidity_cap_stays_within_target_depth_lots_and_impact_budget(book, target, budget, frac, thr, max_levels):
    action, levels = book
    size, reason = liquidity_cap(levels, action, target, max_take_fraction=frac, next_level_max_worse=thr,
                                 impact_budget_px=Fraction(budget), max_levels=max_levels, lot=100)
    depth = sum(s for _, s in levels)
    assert 0 <= size <= min(target, depth) and size % 100 == 0
    if size < target:
        assert reason is not CapReason.NONE
    if size and levels:
        e = effective_price(levels, action, size)
        assert e.size == size and e.levels_used <= max_levels
        assert e.impact_px <= budget + 1e-9 or e.levels_used == 1
        if frac < 1:
            assert e.levels_used == 1


@given(take_side(), st.integers(1, 100).map(lambda k: k * 100), st.integers(1, 9999),
       st.one_of(st.none(), st.integers(-500, 2000)), st.one_of(st.none(), st.floats(0, 1)))
def test_decide_never_prices_past_limit_and_explains_every_shortfall(book, target, limit, edge, conf):
    action, levels = book
    d = decide(levels, action, target, limit, edge=edge, confidence=conf)
    assert d.exec_size <= min(target, d.depth_within_limit)
    assert d.depth_within_limit == sum(s for _, s in within_limit(levels, action.side, limit))
    if d.exec_size:
        assert d.order_price is not None
        assert d.order_price <= limit if action.side == "bid" else d.order_price >= limit
        assert d.effective.avg_price is not None
        lo, hi = sorted((levels[0][0], d.order_price))
        assert lo <= d.effective.avg_price <= hi
    else:
        assert d.order_price is None
    if d.exec_size < target:
        assert d.liquidity_cap_reason is not CapReason.NONE
