"""Kalshi's 2026 token buckets (kalshi-api.md 5): a read and a write bucket per key, refilled continuously,
plus one write bucket per shard for single writes addressed to a shard >= 1."""

from __future__ import annotations

import time
from collections.abc import Callable

# Tier -> (read, write) tokens per second (kalshi-api.md 5, late-2026 table). Kept here rather than in
# kmm.protocol so that the simulator's copy of the table is its own reading of the page.
TIERS: dict[str, tuple[int, int]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "expert": (600, 600),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
    "prestige": (10000, 8000),
}
TIER_NAMES: tuple[str, ...] = tuple(TIERS)

# Non-default token costs (kalshi-api.md 5), as GET /account/endpoint_costs lists them: (method, path, cost).
# Paths use Kalshi's ``{param}`` templates. [U] Cancel-all: "the tokens of a max-size batch cancel" before the
# Sep 3 2026 change whose new cost is unknown; the simulator bills it like one cancel (COST_CANCEL_ALL).
DEFAULT_COST = 10
COST_CANCEL = 2
COST_CANCEL_ALL = 2
ENDPOINT_COSTS: tuple[tuple[str, str, int], ...] = (
    ("DELETE", "/portfolio/events/orders/{order_id}", COST_CANCEL),
    ("DELETE", "/portfolio/events/orders", COST_CANCEL_ALL),
    ("DELETE", "/portfolio/events/orders/batched", COST_CANCEL),  # per item
    ("POST", "/portfolio/orders", 100),  # V1 (answers 410 here)
    ("DELETE", "/portfolio/orders/{order_id}", 20),  # V1
)


def burst_seconds(tier: str, kind: str) -> float:
    """Seconds of budget a bucket holds: Basic write 1 s, write above Basic 2 s; read 2 s at Basic and
    Advanced, 1 s above (kalshi-api.md 5)."""
    if kind == "write":
        return 1.0 if tier == "basic" else 2.0
    return 2.0 if tier in ("basic", "advanced") else 1.0


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
    """``tier`` "off" admits everything. ``clock`` returns seconds (monotonic) and is injectable.

    Buckets are keyed by (who, kind, shard): ``shard`` is None for reads and for the unscoped write bucket
    (shard 0, auto-routed writes and every batch), or the shard index >= 1 of a single write sent there.
    """

    def __init__(self, tier: str, clock: Callable[[], float] | None = None, burst_s: float | None = None) -> None:
        if tier != "off" and tier not in TIERS:
            raise ValueError(f"rate tier {tier!r}: expected off or one of {', '.join(TIERS)}")
        self.tier = tier
        self.clock = clock or time.monotonic
        self.burst_s = burst_s  # None: Kalshi's per-tier bursts
        self.buckets: dict[tuple[str, str, int | None], Bucket] = {}
        self.limited = 0

    def rates(self) -> tuple[int, int]:
        return TIERS.get(self.tier, (0, 0))

    def limits(self, kind: str) -> tuple[int, int]:
        """(refill_rate, bucket_capacity) of a ``kind`` bucket, tokens/s and tokens."""
        read, write = self.rates()
        rate = read if kind == "read" else write
        burst = self.burst_s if self.burst_s is not None else burst_seconds(self.tier, kind)
        return rate, int(rate * burst)

    def take(self, who: str, kind: str, cost: int, shard: int | None = None) -> bool:
        """Spend ``cost`` tokens of bucket ``kind`` ("read" | "write") of ``who``; False means answer 429."""
        if self.tier == "off" or cost <= 0:
            return True
        now = self.clock()
        key = (who, kind, shard if kind == "write" and shard else None)
        b = self.buckets.get(key)
        if b is None:
            rate, cap = self.limits(kind)
            b = self.buckets[key] = Bucket(rate, cap, now)
        if b.take(cost, now):
            return True
        self.limited += 1
        return False


