"""A plain-Python stand-in for ``kmm._core.wire.BookRouter`` and ``kmm._core.book.OrderBook``.

Same API as the compiled pair being built on branch core-book, for the connector's unit tests only.
Prices are kept in 1e-4 $ as on the wire: YES bids in YES terms, NO bids in NO terms.
"""

from __future__ import annotations

from typing import Any

import orjson

from kmm._core.fixed import parse_count, parse_price, parse_signed_count

NOT_BOOK, SNAPSHOT, DELTA, GAP, STALE_SKIPPED, UNKNOWN_MARKET, MALFORMED = range(7)


class OrderBook:
    def __init__(self, price_ranges: Any = None) -> None:
        self.price_ranges = price_ranges
        self.yes: dict[int, int] = {}
        self.no: dict[int, int] = {}

    def apply_snapshot(self, yes: list[tuple[int, int]], no: list[tuple[int, int]]) -> None:
        self.yes = {p: s for p, s in yes if s > 0}
        self.no = {p: s for p, s in no if s > 0}

    def apply_delta(self, side: str, price: int, delta: int) -> None:
        levels = self.yes if side == "yes" else self.no
        size = levels.get(price, 0) + delta
        if size < 0:
            raise ValueError(f"delta {delta} at {price} takes the size below zero")
        if size == 0:
            levels.pop(price, None)
        else:
            levels[price] = size

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(yes_levels, no_levels), each ascending in its own side's terms, as the compiled book."""
        return sorted(self.yes.items()), sorted(self.no.items())


class BookRouter:
    def __init__(self) -> None:
        self._books: dict[str, OrderBook] = {}
        self._stale: set[str] = set()
        self._sid_of: dict[str, int] = {}
        self._seq: dict[int, int] = {}
        self.reset_counters()
        self.last_type = ""
        self.last_ticker = ""
        self.last_sid = 0
        self.last_seq = 0
        self.last_ts_ms = 0
        self.last_client_order_id: str | None = None
        self.last_error = ""
        self.last_recv_ns = 0

    def reset_counters(self) -> None:
        self.frames = self.snapshots = self.deltas = self.gaps = 0
        self.stale_skipped = self.malformed = self.unknown = 0

    def add(self, ticker: str, book: OrderBook) -> None:
        self._books[ticker] = book
        self._stale.add(ticker)  # until its first snapshot

    def remove(self, ticker: str) -> None:
        del self._books[ticker]
        self._stale.discard(ticker)
        self._sid_of.pop(ticker, None)

    def book(self, ticker: str) -> OrderBook:
        return self._books[ticker]

    def forget_sid(self, sid: int) -> None:
        self._seq.pop(sid, None)
        for t, s in list(self._sid_of.items()):
            if s == sid:
                self._stale.add(t)
                del self._sid_of[t]

    def is_stale(self, ticker: str) -> bool:
        return ticker in self._stale

    def stale_tickers(self) -> list[str]:
        return sorted(self._stale)

    def mark_stale(self, ticker: str) -> None:
        if ticker in self._books:
            self._stale.add(ticker)

    def mark_all_stale(self) -> None:
        self._stale.update(self._books)

    def sid_of(self, ticker: str) -> int | None:
        return self._sid_of.get(ticker)

    def reset(self) -> None:
        """Forget every sid; every market stale (call on reconnect)."""
        self._stale.update(self._books)
        self._sid_of.clear()
        self._seq.clear()

    def _malformed(self, why: str) -> int:
        self.malformed += 1
        self.last_error = why
        return MALFORMED

    def feed(self, data: bytes, recv_ns: int) -> int:
        self.frames += 1
        self.last_recv_ns = recv_ns
        self.last_error = ""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return NOT_BOOK  # not ours to judge: the connector decodes and counts it
        if not isinstance(obj, dict):
            return NOT_BOOK
        typ = obj.get("type")
        if typ not in ("orderbook_snapshot", "orderbook_delta"):
            return NOT_BOOK
        self.last_type = typ
        msg = obj.get("msg")
        sid, seq = obj.get("sid"), obj.get("seq")
        if not isinstance(msg, dict) or not isinstance(sid, int) or not isinstance(seq, int):
            return self._malformed("missing msg/sid/seq")
        ticker = msg.get("market_ticker")
        self.last_ticker, self.last_sid, self.last_seq = ticker, sid, seq
        self.last_ts_ms = msg.get("ts_ms") or 0
        self.last_client_order_id = msg.get("client_order_id")
        book = self._books.get(ticker)
        if book is None:
            self.unknown += 1
            return UNKNOWN_MARKET
        if typ == "orderbook_snapshot":
            try:
                yes = [(parse_price(p), parse_count(c)) for p, c in msg.get("yes_dollars_fp") or ()]
                no = [(parse_price(p), parse_count(c)) for p, c in msg.get("no_dollars_fp") or ()]
            except (ValueError, TypeError) as exc:
                return self._malformed(str(exc))
            book.apply_snapshot(yes, no)
            self._sid_of[ticker] = sid
            self._seq[sid] = seq
            self._stale.discard(ticker)
            self.snapshots += 1
            return SNAPSHOT
        expected = self._seq.get(sid)
        if expected is not None and seq != expected + 1:
            self.gaps += 1
            self._seq.pop(sid, None)
            for t, s in self._sid_of.items():
                if s == sid:
                    self._stale.add(t)
            return GAP
        if expected is not None:
            self._seq[sid] = seq
        if ticker in self._stale:
            self.stale_skipped += 1
            return STALE_SKIPPED
        try:
            side = msg["side"]
            price = parse_price(msg["price_dollars"])
            delta = parse_signed_count(msg["delta_fp"])
            if side not in ("yes", "no"):
                raise ValueError(f"side {side!r}")
            book.apply_delta(side, price, delta)
        except (KeyError, ValueError, TypeError) as exc:
            return self._malformed(str(exc))
        self.deltas += 1
        return DELTA
