"""The book router the connector tests use: the compiled one when merged, else the pure-Python stand-in."""

from __future__ import annotations

from typing import Any

try:
    from kmm._core.book import OrderBook as _RealBook
    from kmm._core.wire import BookRouter as _RealRouter
    REAL = True
except ImportError:  # branch core-book not merged yet
    REAL = False

from tests.kalshi import fake_router


def make_router() -> tuple[Any, Any]:
    """(router, book_factory)."""
    if REAL:
        return _RealRouter(), _RealBook
    return fake_router.BookRouter(), fake_router.OrderBook


def book_levels(book: Any) -> dict[str, list[tuple[int, int]]]:
    """{"yes": YES bids ascending, "no": NO bids ascending in NO terms}: the shape of sim.book()."""
    yes, no = book.levels()
    return {"yes": [tuple(x) for x in yes], "no": [tuple(x) for x in no]}
