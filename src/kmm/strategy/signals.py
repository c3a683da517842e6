"""Model inputs estimated online from the feed: volatility of the mid and order-arrival decay (kappa).

Floats live only here and in the quote math (design section 2). Time is passed in (ns), never read.
"""

from __future__ import annotations

import math


class VolatilityEWMA:
    """Exponentially weighted estimate of the mid's variance rate.

    sigma is in price units (1e-4 $) per sqrt(second): each observed mid change dm over dt seconds
    contributes dm^2 / dt, weighted with a half-life in seconds of wall time. Until ``min_samples`` changes
    have been seen, ``sigma`` returns ``prior`` so that a new market quotes with a sane width.
    """

    __slots__ = ("halflife_s", "prior", "min_samples", "_var", "_last_mid", "_last_ns", "samples")

    def __init__(self, halflife_s: float = 60.0, prior: float = 5.0, min_samples: int = 5) -> None:
        if halflife_s <= 0 or prior < 0:
            raise ValueError(f"VolatilityEWMA: halflife_s {halflife_s} must be > 0 and prior {prior} >= 0")
        self.halflife_s = halflife_s
        self.prior = prior
        self.min_samples = min_samples
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
        dt = (now_ns - self._last_ns) / 1e9
        if dt <= 0:
            return
        if mid != self._last_mid:
            rate = (mid - self._last_mid) ** 2 / max(dt, 1e-3)
            w = 1.0 - math.exp(-math.log(2.0) * dt / self.halflife_s)
            self._var += max(w, 1e-6) * (rate - self._var)
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
