"""Plain-Python reference for kmm._core.ofi, from Cont, Kukanov & Stoikov (2014) and the definitions
in docs/core-book.md: per-level e from consecutive states, a rolling window of events in
(now - window, now] held in a bounded ring, and a decayed sum with a half-life."""

from __future__ import annotations

from collections import deque
from typing import Any


def event(prev: tuple[int, int, int, int], cur: tuple[int, int, int, int]) -> int:
    pb0, qb0, pa0, qa0 = prev
    pb, qb, pa, qa = cur
    e = 0
    if pb >= pb0:
        e += qb
    if pb <= pb0:
        e -= qb0
    if pa <= pa0:
        e -= qa
    if pa >= pa0:
        e += qa0
    return e


class RefOFI:
    def __init__(self, window_ns: int = 10**9, half_life_ns: int = 10**9, levels: int = 5,
                 capacity: int = 4096) -> None:
        self.window_ns, self.half_life_ns = window_ns, half_life_ns
        self.levels, self.capacity = levels, capacity
        self.reset()

    def reset(self) -> None:
        self.prev: list[tuple[int, int, int, int]] | None = None
        self.ring: deque[tuple[int, list[int], list[int]]] = deque()
        self.ewma = 0.0
        self.last_ns = 0
        self.events = 0
        self.overflowed = 0
        self.last_levels = [0] * self.levels

    def _state(self, book: Any) -> list[tuple[int, int, int, int]]:
        bids, asks = book.bids(self.levels), book.asks(self.levels)
        out = []
        for i in range(self.levels):
            pb, qb = bids[i] if i < len(bids) else (0, 0)
            pa, qa = asks[i] if i < len(asks) else (10000, 0)
            out.append((pb, qb, pa, qa))
        return out

    def update(self, book: Any, now_ns: int) -> float:
        if self.events and now_ns < self.last_ns:
            raise ValueError("time went backwards")
        cur = self._state(book)
        es = [0] * self.levels if self.prev is None else [event(p, c) for p, c in zip(self.prev, cur)]
        self.prev = cur
        while self.ring and self.ring[0][0] <= now_ns - self.window_ns:
            self.ring.popleft()
        if len(self.ring) == self.capacity:
            self.ring.popleft()
            self.overflowed += 1
        self.ring.append((now_ns, es, [c[1] + c[3] for c in cur]))
        if self.events:
            self.ewma *= 2.0 ** (-(now_ns - self.last_ns) / self.half_life_ns)
        self.ewma += es[0]
        self.last_ns = now_ns
        self.events += 1
        self.last_levels = es
        return float(es[0])

    @property
    def count(self) -> int:
        return len(self.ring)

    @property
    def multi_level(self) -> tuple[int, ...]:
        return tuple(sum(r[1][i] for r in self.ring) for i in range(self.levels))

    def _depth(self, i: int) -> int:
        return sum(r[2][i] for r in self.ring)

    @property
    def window_sum(self) -> int:
        return self.multi_level[0]

    @property
    def avg_depth(self) -> float:
        return self._depth(0) / (2 * len(self.ring)) if self.ring else 0.0

    @property
    def multi_normalized(self) -> tuple[float, ...]:
        sums = self.multi_level
        return tuple(0.0 if self._depth(i) == 0 else sums[i] * 2 * len(self.ring) / self._depth(i)
                     for i in range(self.levels))

    @property
    def normalized(self) -> float:
        return self.multi_normalized[0]

    @property
    def multi_combined(self) -> float:
        return sum(self.multi_normalized) / self.levels
