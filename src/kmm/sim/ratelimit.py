"""Kalshi's 2026 token buckets (kalshi-api.md 5): a read and a write bucket per key, refilled continuously."""

from __future__ import annotations

import time
from collections.abc import Callable

from kmm import protocol


class Bucket:
    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def take(self, cost: float, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class RateLimiter:
    """``tier`` "off" admits everything. ``clock`` returns seconds (monotonic) and is injectable."""

    def __init__(self, tier: str, clock: Callable[[], float] | None = None,
                 burst_s: float = protocol.BURST_SECONDS) -> None:
        self.tier = tier
        self.clock = clock or time.monotonic
        self.burst_s = burst_s
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.limited = 0

    def rates(self) -> tuple[int, int]:
        return protocol.RATE_TIERS.get(self.tier, (0, 0))

    def take(self, who: str, kind: str, cost: int) -> bool:
        """Spend ``cost`` tokens of bucket ``kind`` ("read" | "write") of ``who``; False means answer 429."""
        if self.tier == "off" or cost <= 0:
            return True
        now = self.clock()
        b = self.buckets.get((who, kind))
        if b is None:
            read, write = self.rates()
            rate = read if kind == "read" else write
            b = self.buckets[(who, kind)] = Bucket(rate, rate * self.burst_s, now)
        if b.take(cost, now):
            return True
        self.limited += 1
        return False
