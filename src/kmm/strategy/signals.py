"""Model inputs estimated online from the feed: volatility of the mid and order-arrival decay (kappa).

Floats live only here and in the quote math (design section 2). Time is passed in (ns), never read.
"""

from __future__ import annotations

import math


class VolatilityEWMA:
    """Exponentially weighted estimate of the mid's variance rate, sampled on a time grid.

    sigma is in price units (1e-4 $) per sqrt(second). The mid is sampled at most once per
    ``sample_s`` seconds; each sample contributes dm^2 / dt (dm the mid's change since the previous
    sample, dt the time between them, zero changes included), weighted with a half-life in seconds.
    Sampling on a grid instead of at every book message keeps bid-ask bounce (a mid flickering
    between two values within milliseconds) from inflating the estimate. Until ``min_samples``
    samples have been taken, ``sigma`` returns ``prior`` so a new market quotes with a sane width.
    """

    __slots__ = ("halflife_s", "prior", "min_samples", "sample_ns", "_var", "_last_mid", "_last_ns", "samples")

    def __init__(self, halflife_s: float = 60.0, prior: float = 5.0, min_samples: int = 5,
                 sample_s: float = 1.0) -> None:
        if halflife_s <= 0 or prior < 0 or sample_s <= 0:
            raise ValueError(f"VolatilityEWMA: halflife_s {halflife_s} and sample_s {sample_s} must be > 0 "
                             f"and prior {prior} >= 0")
        self.halflife_s = halflife_s
        self.prior = prior
        self.min_samples = min_samples
        self.sample_ns = int(sample_s * 1e9)
        self._var = prior * prior
        self._last_mid: float | None = None
        self._last_ns = 0
        self.samples = 0

    def update(self, mid: float | None, now_ns: int) -> None:
        if mid is None:
            return
        if self._last_mid is None:
            self._last_mid, self._last_ns = mid, now_ns
            return
        elapsed = now_ns - self._last_ns
        if elapsed < self.sample_ns:
            return
        dt = elapsed / 1e9
        rate = (mid - self._last_mid) ** 2 / dt
        w = 1.0 - math.exp(-math.log(2.0) * dt / self.halflife_s)
        self._var += w * (rate - self._var)
        self.samples += 1
        self._last_mid, self._last_ns = mid, now_ns

    @property
    def sigma(self) -> float:
        if self.samples < self.min_samples:
            return self.prior
        return math.sqrt(max(self._var, 0.0))


class KappaEstimator:
    """Order-arrival decay kappa (per price unit, 1e-4 $) from how far trades print from the mid.

    In Avellaneda-Stoikov the arrival rate at distance d is A*exp(-kappa*d), so the distances of hits are
    exponential with mean 1/kappa: kappa is estimated as 1 / EWMA(distance). Until ``min_samples`` trades
    have been seen, or when estimation is off, the configured ``prior`` is returned.
    """

    __slots__ = ("prior", "alpha", "min_samples", "floor_distance", "_mean", "samples")

    def __init__(self, prior: float, alpha: float = 0.05, min_samples: int = 20,
                 floor_distance: float = 10.0) -> None:
        if prior <= 0 or not 0 < alpha <= 1:
            raise ValueError(f"KappaEstimator: prior {prior} must be > 0 and alpha {alpha} in (0, 1]")
        self.prior = prior
        self.alpha = alpha
        self.min_samples = min_samples
        self.floor_distance = floor_distance
        self._mean = 1.0 / prior
        self.samples = 0

    def observe_trade(self, trade_price: int, mid: float | None) -> None:
        if mid is None:
            return
        d = max(abs(trade_price - mid), self.floor_distance)
        self._mean += self.alpha * (d - self._mean)
        self.samples += 1

    @property
    def kappa(self) -> float:
        if self.samples < self.min_samples:
            return self.prior
        return 1.0 / self._mean
