"""The rate limiter's token bucket in plain Python, as it was before it was compiled
(src/kmm/_core/bucket.pyx, Nov 28, session 12), with the two steps the limiter now asks of it in one
call written from ``refill`` and ``wait_ns``: ``take`` (what ``RateLimiter.poll`` did with the bucket)
and ``level`` (what ``RateLimiter.pressure`` did). tests/kalshi/test_limiter_bucket.py holds the
compiled bucket to this one: the same waits, grants, tokens and times."""

from __future__ import annotations

_NS = 1_000_000_000


class TokenBucket:
    """Continuous-refill bucket. Tokens are floats; times are monotonic ns."""

    __slots__ = ("rate", "capacity", "tokens", "_last_ns")

    def __init__(self, rate: float, capacity: float, now_ns: int) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"token bucket needs rate > 0 and capacity > 0, got {rate}, {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self._last_ns = now_ns

    def refill(self, now_ns: int) -> None:
        dt = now_ns - self._last_ns
        if dt > 0:
            self.tokens = min(self.capacity, self.tokens + dt * self.rate / _NS)
            self._last_ns = now_ns

    def wait_ns(self, cost: float, floor: float = 0.0) -> int:
        """ns until ``cost`` tokens are available above ``floor`` (0 = now). Call after refill."""
        short = cost + floor - self.tokens
        if short <= 0:
            return 0
        if cost + floor > self.capacity:  # could never be satisfied: let it through at a full bucket
            short = self.capacity - self.tokens
            if short <= 0:
                return 0
        return max(1, int(short * _NS / self.rate) + 1)

    def set_rate(self, rate: float, capacity: float, now_ns: int) -> None:
        self.refill(now_ns)
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = min(self.tokens, self.capacity)

    def take(self, now_ns: int, cost: float, floor: float) -> int:
        self.refill(now_ns)
        wait = self.wait_ns(cost, floor)
        if wait == 0:
            self.tokens -= cost
        return wait

    def level(self, now_ns: int) -> float:
        self.refill(now_ns)
        return 1.0 - self.tokens / self.capacity
