import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kmm._core import quote as q
from kmm._core.fees import MAKER_RATE_E6, fee_rate_e6
from kmm._core.grid import STRUCTURES as GRID_STRUCTURES
from kmm._core.grid import Grid
from tests.reference import quote as ref

GRIDS = {name: Grid(name) for name in GRID_STRUCTURES}  # all twelve of kalshi-api.md 2.2, 10,001-slot grids included


def _fields(x):
    return (x.bid_price, x.bid_size, x.ask_price, x.ask_size, x.reservation, x.half_spread, x.flags)


@st.composite
def scenarios(draw):
    grid_name = draw(st.sampled_from(sorted(GRIDS)))
    size_step = draw(st.sampled_from([1, 100]))
    params = dict(
        grid=GRIDS[grid_name],
        gamma=draw(st.one_of(st.just(0.0), st.floats(1e-7, 1e-2))),
        kappa=draw(st.floats(1e-3, 1.0)),
        quote_size=draw(st.integers(size_step, 5000)),
        long_limit=draw(st.integers(0, 10000)),
        short_limit=draw(st.integers(0, 10000)),
        maker_fee_rate_e6=draw(st.sampled_from([0, 8750, MAKER_RATE_E6, 35000, 70000])),
        min_spread=draw(st.integers(1, 600)),
        min_edge=draw(st.one_of(st.just(0.0), st.floats(0.0, 300.0))),
        size_step=size_step,
    )
    best_bid = draw(st.integers(0, 9999))
    best_ask = draw(st.one_of(st.just(0), st.just(10000), st.integers(best_bid + 1, 10000)))
    call = dict(
        mid=draw(st.floats(-500.0, 10500.0)),
        inventory=draw(st.integers(-15000, 15000)),
        tau=draw(st.one_of(st.just(0.0), st.floats(0.0, 86400.0))),
        sigma=draw(st.floats(0.0, 30.0)),
        ofi_skew=draw(st.floats(-300.0, 300.0)),
        alpha_skew=draw(st.floats(-300.0, 300.0)),
        best_bid=best_bid,
        best_ask=best_ask,
    )
    return params, call


def _both(params, call):
    got = q.compute(q.QuoteParams(**params), **call)
    want = ref.compute(ref.RefParams(**params), **call)
    return got, want


@given(scenarios())
def test_compute_equals_reference_on_random_inputs_across_grids(sc):
    got, want = _both(*sc)
    assert _fields(got) == _fields(want)


@given(scenarios())
def test_compute_output_is_on_grid_uncrossed_post_only_safe_and_inside_limits(sc):
    params, call = sc
    got = q.compute(q.QuoteParams(**params), **call)
    grid, inv, rate = params["grid"], call["inventory"], params["maker_fee_rate_e6"]
    r, half = got.reservation, got.half_spread
    assert half >= params["min_spread"] / 2
    if got.has_bid:
        assert grid.is_valid(got.bid_price) and grid.min_price <= got.bid_price <= grid.max_price
        assert got.bid_price <= r - half
        assert got.bid_price + ref.fee(got.bid_price, rate) <= r - params["min_edge"]
        if 0 < call["best_ask"] < 10000:
            assert got.bid_price < call["best_ask"]
        assert 0 < got.bid_size <= params["quote_size"] and got.bid_size % params["size_step"] == 0
        assert inv + got.bid_size <= params["long_limit"]
    else:
        assert got.bid_price == 0 and got.bid_size == 0 and got.bid is None
        assert got.flags & (q.BID_LIMIT | q.BID_NO_PRICE)
    if got.has_ask:
        assert grid.is_valid(got.ask_price)
        assert got.ask_price >= r + half
        assert got.ask_price - ref.fee(got.ask_price, rate) >= r + params["min_edge"]
        assert got.ask_price > call["best_bid"]
        assert 0 < got.ask_size <= params["quote_size"] and got.ask_size % params["size_step"] == 0
        assert inv - got.ask_size >= -params["short_limit"]
    else:
        assert got.ask_price == 0 and got.ask_size == 0 and got.ask is None
        assert got.flags & (q.ASK_LIMIT | q.ASK_NO_PRICE)
    if got.has_bid and got.has_ask:
        assert got.ask_price - got.bid_price >= params["min_spread"]


@given(scenarios())
def test_compute_quotes_are_the_most_aggressive_prices_allowed(sc):
    params, call = sc
    got = q.compute(q.QuoteParams(**params), **call)
    grid, rate = params["grid"], params["maker_fee_rate_e6"]
    r, half = got.reservation, got.half_spread
    if got.has_bid:
        up = grid.tick_up(got.bid_price)
        assume(up is not None)
        violates = (up > r - half or up + ref.fee(up, rate) > r - params["min_edge"]
                    or (0 < call["best_ask"] < 10000 and up >= call["best_ask"]))
        assert violates
    if got.has_ask:
        down = grid.tick_down(got.ask_price)
        assume(down is not None)
        violates = (down < r + half or down - ref.fee(down, rate) < r + params["min_edge"]
                    or down <= call["best_bid"])
        assert violates


@given(scenarios(), st.integers(1, 5000))
def test_compute_more_long_inventory_never_raises_bid_or_ask(sc, extra):
    params, call = sc
    p = q.QuoteParams(**params)
    lo = q.compute(p, **call)
    hi = q.compute(p, **{**call, "inventory": call["inventory"] + extra})
    assert hi.reservation <= lo.reservation
    if lo.has_bid and hi.has_bid:
        assert hi.bid_price <= lo.bid_price
    if lo.has_ask and hi.has_ask:
        assert hi.ask_price <= lo.ask_price


def test_compute_drops_bid_at_long_limit_and_ask_at_short_limit():
    p = q.QuoteParams(GRIDS["linear_cent"], 1e-5, 0.01, quote_size=1000, long_limit=2000, short_limit=500)
    at_long = q.compute(p, 5000.0, 2000, 60.0, 5.0)
    assert not at_long.has_bid and at_long.flags & q.BID_LIMIT and at_long.has_ask
    at_short = q.compute(p, 5000.0, -500, 60.0, 5.0)
    assert not at_short.has_ask and at_short.flags & q.ASK_LIMIT and at_short.has_bid


def test_compute_shrinks_size_so_a_fill_cannot_pass_the_limit():
    p = q.QuoteParams(GRIDS["linear_cent"], 1e-5, 0.01, quote_size=1000, long_limit=2000, short_limit=500)
    near = q.compute(p, 5000.0, 1350, 60.0, 5.0)
    assert near.bid_size == 600  # room 650, whole contracts -> 6.00
    frac = q.compute(p.replace(size_step=1), 5000.0, 1350, 60.0, 5.0)
    assert frac.bid_size == 650
    assert q.compute(p, 5000.0, 1950, 60.0, 5.0).flags & q.BID_LIMIT  # room 0.50 < one contract


def test_compute_matches_hand_worked_example_on_linear_cent():
    # r = 5000 - 30 * 1e-5 * 10^2 * 3600 = 4892; spread = 1e-5*100*3600 + 2e5*ln(1.001) = 3.6 + 199.9...
    p = q.QuoteParams(GRIDS["linear_cent"], 1e-5, 0.01, 1000, 5000, 5000,
                      fee_rate_e6("quadratic_with_maker_fees", False))
    got = q.compute(p, 5000.0, 3000, 3600.0, 10.0, best_bid=4800, best_ask=4900)
    assert got.reservation == pytest.approx(4892.0)
    assert got.half_spread == pytest.approx(0.5 * (3.6 + 2e5 * math.log1p(1e-3)))
    assert got.bid == (4700, 1000)  # <= 4790.2, down to the cent
    assert got.ask == (5000, 1000)  # >= 4993.8, up to the cent; above the best bid
    assert got.flags == 0


def test_compute_post_only_moves_quotes_off_the_opposite_best():
    p = q.QuoteParams(GRIDS["deci_cent"], 0.0, 0.05, 1000, 5000, 5000)  # half spread = 1 / kappa = 20
    got = q.compute(p, 5000.0, 0, 0.0, 0.0, best_bid=4950, best_ask=4960)
    assert got.bid == (4950, 1000) and got.flags & q.BID_POST_ONLY  # model 4980 >= best ask
    assert got.ask == (5020, 1000) and not got.flags & q.ASK_POST_ONLY
    locked = q.compute(p, 5000.0, 0, 0.0, 0.0, best_bid=5030, best_ask=5040)
    assert locked.ask_price == 5040 and locked.flags & q.ASK_POST_ONLY


def test_compute_skews_shift_the_reservation_price():
    p = q.QuoteParams(GRIDS["deci_cent"], 0.0, 0.05, 1000, 5000, 5000)
    base = q.compute(p, 5000.0, 0, 0.0, 0.0)
    skewed = q.compute(p, 5000.0, 0, 0.0, 0.0, ofi_skew=30.0, alpha_skew=-10.0)
    assert skewed.reservation == base.reservation + 20.0
    assert skewed.bid_price == base.bid_price + 20 and skewed.ask_price == base.ask_price + 20


def test_compute_min_edge_after_fee_pushes_quotes_out():
    p = q.QuoteParams(GRIDS["deci_cent"], 0.0, 0.1, 1000, 5000, 5000, maker_fee_rate_e6=MAKER_RATE_E6,
                      min_edge=10.0)
    got = q.compute(p, 5000.0, 0, 0.0, 0.0)  # half spread 10, fee at 0.50 = 43.75
    assert got.bid_price == 4940 and got.ask_price == 5060
    assert got.bid_price + ref.fee(got.bid_price, MAKER_RATE_E6) <= 4990.0


def test_compute_drops_side_whose_price_falls_off_the_grid():
    p = q.QuoteParams(GRIDS["linear_cent"], 0.0, 0.02, 1000, 5000, 5000)
    low = q.compute(p, 80.0, 0, 0.0, 0.0)  # bid would be below $0.01
    assert not low.has_bid and low.flags & q.BID_NO_PRICE and low.ask_price == 200
    high = q.compute(p, 9950.0, 0, 0.0, 0.0)
    assert not high.has_ask and high.flags & q.ASK_NO_PRICE and high.bid_price == 9900


@pytest.mark.parametrize("kw,match", [
    (dict(gamma=-1.0), "gamma"), (dict(kappa=0.0), "kappa"), (dict(quote_size=0), "quote_size"),
    (dict(long_limit=-1), "long_limit"), (dict(maker_fee_rate_e6=-5), "maker_fee_rate_e6"),
    (dict(min_spread=0), "min_spread"), (dict(min_edge=math.nan), "min_edge"), (dict(size_step=0), "size_step"),
])
def test_quote_params_rejects_bad_values_naming_the_parameter(kw, match):
    base = dict(grid=GRIDS["linear_cent"], gamma=1e-5, kappa=0.01, quote_size=100, long_limit=100, short_limit=100)
    with pytest.raises(ValueError, match=match):
        q.QuoteParams(**{**base, **kw})


@pytest.mark.parametrize("kw,match", [
    (dict(mid=math.nan), "mid"), (dict(tau=-1.0), "tau"), (dict(sigma=math.inf), "sigma"),
    (dict(ofi_skew=math.nan), "skew"), (dict(best_bid=-1), "best_bid"), (dict(best_ask=10001), "best_ask"),
])
def test_compute_rejects_bad_inputs_naming_the_input(kw, match):
    p = q.QuoteParams(GRIDS["linear_cent"], 1e-5, 0.01, 100, 100, 100)
    call = dict(mid=5000.0, inventory=0, tau=10.0, sigma=1.0)
    with pytest.raises(ValueError, match=match):
        q.compute(p, **{**call, **kw})


def test_quotes_cannot_be_built_directly_and_params_replace_validates():
    with pytest.raises(TypeError):
        q.Quotes()
    p = q.QuoteParams(GRIDS["linear_cent"], 1e-5, 0.01, 100, 100, 100)
    assert p.replace(gamma=2e-5).gamma == 2e-5 and p.gamma == 1e-5
    with pytest.raises(ValueError, match="unknown"):
        p.replace(gama=1.0)


@given(st.floats(-1e4, 1e4), st.floats(-100, 100), st.floats(0, 1), st.floats(0, 50), st.floats(0, 1e4),
       st.floats(1e-3, 10))
def test_reservation_and_spread_equal_the_closed_forms(mid, inv, gamma, sigma, tau, kappa):
    assert q.reservation_price(mid, inv, gamma, sigma, tau) == ref.reservation_price(mid, inv, gamma, sigma, tau)
    assert q.optimal_spread(gamma, sigma, tau, kappa) == ref.optimal_spread(gamma, sigma, tau, kappa)
    if gamma > 1e-6:
        closed = gamma * sigma ** 2 * tau + (2 / gamma) * math.log(1 + gamma / kappa)
        assert q.optimal_spread(gamma, sigma, tau, kappa) == pytest.approx(closed, rel=1e-9, abs=1e-9)


def test_optimal_spread_tends_to_two_over_kappa_as_gamma_vanishes_and_rejects_bad_args():
    assert q.optimal_spread(0.0, 3.0, 10.0, 0.5) == 4.0
    assert q.optimal_spread(1e-9, 0.0, 0.0, 0.5) == pytest.approx(4.0, rel=1e-8)
    with pytest.raises(ValueError, match="kappa"):
        q.optimal_spread(0.1, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        q.optimal_spread(math.inf, 1.0, 1.0, 1.0)


def test_optimal_spread_stays_finite_when_gamma_over_kappa_underflows():
    # (2 / gamma) * ln(1 + gamma / kappa) would be inf * 0 = nan for a subnormal gamma.
    assert q.optimal_spread(5e-324, 0.0, 0.0, 2.0) == 1.0
    assert q.optimal_spread(1e-12, 1.0, 1.0, 1.0) == pytest.approx(2.0, rel=1e-11)
    with pytest.raises(ValueError, match="tau"):
        q.reservation_price(1.0, 1.0, 0.1, 1.0, -1.0)
