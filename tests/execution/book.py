"""A tiny plain-Python order book with the query surface execution algorithms read (BookView)."""

from __future__ import annotations


class PlainBook:
    """YES bids and YES asks as dicts price -> size (1e-4 $, 1e-2 contracts)."""

    def __init__(self, bids=(), asks=()):
        self._bids = {p: s for p, s in bids if s > 0}
        self._asks = {p: s for p, s in asks if s > 0}

    def set_bid(self, price: int, size: int) -> None:
        self._set(self._bids, price, size)

    def set_ask(self, price: int, size: int) -> None:
        self._set(self._asks, price, size)

    @staticmethod
    def _set(side: dict, price: int, size: int) -> None:
        if size > 0:
            side[price] = size
        else:
            side.pop(price, None)

    def bids(self, n: int):
        return sorted(self._bids.items(), reverse=True)[:n]

    def asks(self, n: int):
        return sorted(self._asks.items())[:n]

    def best_bid(self):
        return max(self._bids) if self._bids else None

    def best_ask(self):
        return min(self._asks) if self._asks else None

    def mid(self):
        b, a = self.best_bid(), self.best_ask()
        return None if b is None or a is None else (a + b) / 2
