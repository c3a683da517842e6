"""The book router and book the connector tests use (the compiled ones from kmm._core)."""

from __future__ import annotations

from typing import Any

from kmm._core.book import OrderBook
from kmm._core.wire import BookRouter


def make_router() -> tuple[Any, Any]:
    """(router, book_factory)."""
    return BookRouter(), OrderBook


def book_levels(book: Any) -> dict[str, list[tuple[int, int]]]:
    """{"yes": YES bids ascending, "no": NO bids ascending in NO terms}: the shape of sim.book()."""
    yes, no = book.levels()
    return {"yes": [tuple(x) for x in yes], "no": [tuple(x) for x in no]}
