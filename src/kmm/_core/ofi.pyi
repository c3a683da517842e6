"""Order-flow imbalance (Cont, Kukanov & Stoikov 2014), level 1 and multi-level."""

from typing import final

from kmm._core.book import OrderBook

@final
class OFI:
    @property
    def window_ns(self) -> int: ...
    @property
    def half_life_ns(self) -> int: ...
    @property
    def levels(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def events(self) -> int: ...  # update() calls since reset
    @property
    def overflowed(self) -> int: ...  # events dropped early because the ring was full
    @property
    def last_ns(self) -> int: ...
    @property
    def ewma(self) -> float: ...  # decayed sum of level-1 e at last_ns (1e-2 contracts)
    def __init__(self, window_ns: int = 1_000_000_000, half_life_ns: int = 1_000_000_000,
                 levels: int = 5, capacity: int = 4096) -> None: ...
    def update(self, book: OrderBook, now_ns: int) -> float:
        """One event from the book's current state; returns its level-1 e. now_ns must not go back."""
    def reset(self) -> None: ...
    def expire(self, now_ns: int) -> None:
        """Drop window events with ts <= now_ns - window_ns, recording no event."""
    def ewma_at(self, now_ns: int) -> float: ...
    @property
    def last(self) -> float: ...
    @property
    def last_levels(self) -> tuple[int, ...]: ...
    @property
    def count(self) -> int: ...
    @property
    def window_sum(self) -> int: ...
    @property
    def avg_depth(self) -> float:
        """Window mean of (best bid size + best ask size) / 2."""
    @property
    def normalized(self) -> float:
        """window_sum / avg_depth (0.0 when avg_depth is 0)."""
    @property
    def multi_level(self) -> tuple[int, ...]:
        """Per-level window sums of e, level 1 first."""
    @property
    def multi_normalized(self) -> tuple[float, ...]: ...
    @property
    def multi_combined(self) -> float:
        """Equal-weight mean of multi_normalized."""
