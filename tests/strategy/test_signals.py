import math
import random

import pytest

from kmm.strategy.alpha import AlphaSource, StaticAlpha
from kmm.strategy.signals import KappaEstimator, VolatilityEWMA


def test_volatility_returns_prior_until_enough_mid_changes():
    v = VolatilityEWMA(halflife_s=10, prior=7.0, min_samples=3)
    v.update(5000, 0)
    v.update(5010, 1_000_000_000)
    assert v.sigma == 7.0


def test_volatility_converges_to_the_random_walk_rate():
    # mid moves +/-10 every second: variance rate 100 per second -> sigma 10 per sqrt(s)
    rng = random.Random(3)
    v = VolatilityEWMA(halflife_s=50, prior=1.0, min_samples=5)
    mid, t = 5000.0, 0
    for _ in range(3000):
        v.update(mid, t)
        mid += rng.choice((-10.0, 10.0))
        t += 1_000_000_000
    assert v.sigma == pytest.approx(10.0, rel=0.05)


def test_volatility_ignores_missing_mid_and_non_increasing_time():
    v = VolatilityEWMA(halflife_s=10, prior=2.0, min_samples=1)
    v.update(None, 0)
    v.update(5000, 10)
    v.update(6000, 10)  # same timestamp: ignored
    assert v.samples == 0


def test_kappa_estimates_inverse_mean_distance_of_trades_from_mid():
    rng = random.Random(5)
    k = KappaEstimator(prior=0.001, alpha=0.01, min_samples=10, floor_distance=1.0)
    for _ in range(5000):
        d = rng.expovariate(0.02)  # true kappa 0.02 per price unit (mean distance 50)
        k.observe_trade(int(5000 + d), 5000.0)
    assert k.kappa == pytest.approx(0.02, rel=0.15)


def test_kappa_returns_prior_before_min_samples_and_rejects_bad_parameters():
    k = KappaEstimator(prior=0.01, min_samples=3)
    k.observe_trade(5100, 5000.0)
    assert k.kappa == 0.01
    with pytest.raises(ValueError, match="prior"):
        KappaEstimator(prior=0)


def test_alpha_slot_defaults_to_zero_and_static_alpha_reads_per_market():
    assert AlphaSource().get_external_skew("ANY") == 0.0
    a = StaticAlpha({"KXA": 25})
    assert a.get_external_skew("KXA") == 25.0 and a.get_external_skew("KXB") == 0.0
    assert math.isfinite(a.get_external_skew("KXA"))


def test_volatility_is_not_inflated_by_bid_ask_bounce_within_a_sample():
    # the mid flickers 5000/5010 every millisecond for 20 s: at 1 s sampling the variance rate is at
    # most 10^2 per second, where per-message sampling would report ~316 per sqrt(s)
    v = VolatilityEWMA(halflife_s=5, prior=1.0, min_samples=3, sample_s=1.0)
    for i in range(20_000):
        v.update(5000.0 + 10.0 * (i % 2), i * 1_000_000)
    assert 0.0 <= v.sigma <= 10.0
