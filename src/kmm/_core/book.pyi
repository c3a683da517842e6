"""One market's order book in integer units: price 1e-4 $ (YES terms unless said), size 1e-2 contracts."""

from typing import Any, Literal, Sequence, final

from kmm._core.errors import BookError as BookError
from kmm._core.grid import Grid

SIDE_NAMES: tuple[str, str]

_Levels = Sequence[Sequence[str | bytes]] | None
_Int64Buffer = Any  # any C-contiguous int64 buffer: numpy int64 array, array('q'), memoryview

@final
class OrderBook:
    """YES bids and NO bids over the market's grid; YES ask = 10000 - best NO bid."""

    @property
    def grid(self) -> Grid: ...
    @property
    def version(self) -> int: ...  # +1 per applied delta, per snapshot, per clear
    def __init__(self, price_ranges: Sequence[Any] | str | Grid | None = None) -> None: ...
    def regrid(self, price_ranges: Sequence[Any] | str | Grid) -> None:
        """Move to a new grid in place: the book is emptied (version + 1); refill from a snapshot."""
    # updates
    def apply_snapshot(self, yes: _Levels, no: _Levels) -> None:
        """Replace the book from [price, size] string pairs (WS yes_dollars_fp/no_dollars_fp, REST
        orderbook_fp.yes_dollars/no_dollars); None/[] = empty side; size-0 levels ignored; a
        duplicated price is an error. Atomic: on BookError the book is unchanged."""
    def apply_delta(self, side: Literal["yes", "no"], price: str | bytes, delta: str | bytes) -> None:
        """One wire delta (price_dollars in the side's own terms, signed delta_fp); level dropped at 0."""
    def apply_level_delta(self, side: int, price: int, delta: int) -> None:
        """One delta in integers: side 0 = yes, 1 = no; price 1e-4 $ in the side's terms; delta 1e-2."""
    def apply_deltas(self, sides: _Int64Buffer, prices: _Int64Buffer, deltas: _Int64Buffer) -> int:
        """Batch fast path over three equal-length int64 buffers; returns the count applied. All or
        nothing: on a bad delta #i, deltas 0..i-1 are undone, the book and version are as before, and
        BookError names the index."""
    def clear(self) -> None: ...
    # top of book
    def best_bid(self) -> int | None: ...
    def best_ask(self) -> int | None: ...
    def best_bid_size(self) -> int:
        """0 when there are no bids."""
    def best_ask_size(self) -> int:
        """0 when there are no asks."""
    def best_no_bid(self) -> int | None:
        """Best NO bid in NO terms."""
    def spread(self) -> int | None:
        """best_ask - best_bid; <= 0 when crossed/locked; None if a side is empty."""
    def mid(self) -> float | None: ...
    def microprice(self) -> float | None:
        """(bid * ask_size + ask * bid_size) / (bid_size + ask_size)."""
    def is_crossed(self) -> bool:
        """best_bid >= best_ask (crossed or locked)."""
    def is_empty(self) -> bool: ...
    # levels and depth
    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        """YES bids (price, size), best (highest) first; all when n is None."""
    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        """YES asks (10000 - no_price, size), best (lowest) first."""
    def no_bids(self, n: int | None = None) -> list[tuple[int, int]]:
        """NO bids in NO terms, best first."""
    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(yes, no) as the wire shows them: own terms, ascending."""
    def size_at(self, side: Literal["yes", "no"], price: int) -> int: ...
    def depth_within(self, side: Literal["buy", "sell"], limit_price: int) -> int:
        """Size a taker trades now within limit_price: buy -> asks <= limit, sell -> bids >= limit."""
    def levels_within(self, side: Literal["buy", "sell"], limit_price: int) -> list[tuple[int, int]]: ...
    def cum_depth(self, side: Literal["buy", "sell"], n: int) -> list[int]:
        """Cumulative sizes over the first n levels a taker meets: [s1, s1+s2, ...]."""
    def buy_vwap(self, size: int) -> float | None:
        """Average YES price paid lifting asks for size; None when too thin."""
    def sell_vwap(self, size: int) -> float | None:
        """Average YES price received hitting bids for size; None when too thin."""
    def sweep_price(self, side: Literal["buy", "sell"], size: int) -> int | None:
        """Worst price touched filling size now (the limit price that fills it); None when too thin."""
