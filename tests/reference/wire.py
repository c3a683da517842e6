"""Plain-Python reference for kmm._core.wire.BookRouter, written from the decision order in
docs/core-book.md (section "BookRouter.feed"). It decodes frames with the standard json module
(strict: no NaN/Infinity, UTF-8 only, nesting <= 128) and applies them to RefBooks."""

from __future__ import annotations

import json
from typing import Any

from tests.reference.book import BookError, RefBook

NOT_BOOK, SNAPSHOT, DELTA, GAP, STALE_SKIPPED, UNKNOWN_MARKET, MALFORMED = range(7)
MAX_DEPTH = 128
_MISSING = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


def decode(frame: bytes) -> Any:
    obj = json.loads(frame.decode("utf-8"), parse_constant=_reject_constant)
    if _depth(obj) > MAX_DEPTH:
        raise ValueError("too deep")
    return obj


def _i64(v: Any) -> bool:
    return type(v) is int and -(2**63) <= v < 2**63


class _Market:
    def __init__(self, ticker: str, book: RefBook) -> None:
        self.ticker, self.book = ticker, book
        self.stale, self.linked, self.sid = True, False, 0


class RefRouter:
    def __init__(self) -> None:
        self.markets: dict[str, _Market] = {}
        self.bases: dict[int, int] = {}
        self.counts = dict.fromkeys(
            ("frames", "snapshots", "deltas", "gaps", "stale_skipped", "malformed", "unknown",
             "not_book"), 0)
        self._reset_last()

    def _reset_last(self) -> None:
        self.last_type: str | None = None
        self.last_ticker: str | None = None
        self.last_client_order_id: str | None = None
        self.last_error: str | None = None
        self.last_sid = self.last_seq = self.last_ts_ms = self.last_sending_ts_ms = 0
        self.last_recv_ns = 0

    def add(self, ticker: str, book: RefBook) -> None:
        self.markets[ticker] = _Market(ticker, book)

    def regrid(self, ticker: str, price_ranges: Any) -> None:
        m = self.markets[ticker]
        m.book.regrid(price_ranges)
        m.stale = True

    def remove(self, ticker: str) -> None:
        del self.markets[ticker]

    def is_stale(self, ticker: str) -> bool:
        return self.markets[ticker].stale

    def stale_tickers(self) -> list[str]:
        return [t for t, m in self.markets.items() if m.stale]

    def sid_of(self, ticker: str) -> int | None:
        m = self.markets[ticker]
        return m.sid if m.linked else None

    def mark_stale(self, ticker: str) -> None:
        self.markets[ticker].stale = True

    def mark_all_stale(self) -> None:
        for m in self.markets.values():
            m.stale = True

    def forget_sid(self, sid: int) -> None:
        self.bases.pop(sid, None)
        for m in self.markets.values():
            if m.linked and m.sid == sid:
                m.stale, m.linked = True, False

    def reset(self) -> None:
        self.bases.clear()
        for m in self.markets.values():
            m.stale, m.linked = True, False

    def _fail(self, m: _Market | None, why: str) -> int:
        self.counts["malformed"] += 1
        self.last_error = why
        if m is not None:
            m.stale = True
        return MALFORMED

    def note_seq(self, sid: int, seq: int) -> None:
        if sid in self.bases and seq > self.bases[sid]:
            self.bases[sid] = seq

    def feed(self, frame: bytes, recv_ns: int = 0) -> int:
        self.counts["frames"] += 1
        self._reset_last()
        self.last_recv_ns = recv_ns
        try:
            obj = decode(frame)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return self._fail(None, f"not JSON: {exc}")
        typ = obj.get("type") if isinstance(obj, dict) else None
        if typ not in ("orderbook_delta", "orderbook_snapshot"):
            self.counts["not_book"] += 1
            return NOT_BOOK
        is_delta = typ == "orderbook_delta"
        self.last_type = typ
        msg = obj.get("msg")
        ticker = msg.get("market_ticker") if isinstance(msg, dict) else None
        m = None
        if isinstance(ticker, str):
            m = self.markets.get(ticker)
            self.last_ticker = ticker
        sid, seq = obj.get("sid"), obj.get("seq")
        if not (_i64(sid) and _i64(seq)):
            return self._fail(m, "sid/seq")
        self.last_sid, self.last_seq = sid, seq
        sending = obj.get("sending_ts_ms")
        if _i64(sending):
            self.last_sending_ts_ms = sending
        if is_delta and sid in self.bases:
            prev = self.bases[sid]
            self.bases[sid] = seq
            if (prev + 1 - seq) % 2**64 != 0:
                for mk in self.markets.values():
                    if mk.linked and mk.sid == sid:
                        mk.stale = True
                self.counts["gaps"] += 1
                return GAP
        if not is_delta and sid in self.bases and (self.bases[sid] + 1 - seq) % 2**64 != 0:
            for mk in self.markets.values():
                if mk.linked and mk.sid == sid:
                    mk.stale = True
            self.counts["gaps"] += 1
        self.bases[sid] = seq
        if not isinstance(msg, dict):
            return self._fail(None, "msg")
        if not isinstance(ticker, str):
            return self._fail(None, "market_ticker")
        if m is None:
            self.counts["unknown"] += 1
            return UNKNOWN_MARKET
        return self._delta(m, msg, sid) if is_delta else self._snapshot(m, msg, sid)

    def _delta(self, m: _Market, msg: dict[str, Any], sid: int) -> int:
        ts = msg.get("ts_ms", _MISSING)
        if _i64(ts):
            self.last_ts_ms = ts
        elif ts is not _MISSING:
            return self._fail(m, "ts_ms")
        coid = msg.get("client_order_id")
        if isinstance(coid, str):
            self.last_client_order_id = coid
        elif coid is not None:
            return self._fail(m, "client_order_id")
        if m.stale or not m.linked or m.sid != sid:
            m.stale = True
            self.counts["stale_skipped"] += 1
            return STALE_SKIPPED
        side, price, delta = msg.get("side"), msg.get("price_dollars"), msg.get("delta_fp")
        if side not in ("yes", "no") or not isinstance(price, str) or not isinstance(delta, str):
            return self._fail(m, "fields")
        try:
            m.book.apply_delta(side, price, delta)
        except BookError as exc:
            return self._fail(m, str(exc))
        self.counts["deltas"] += 1
        return DELTA

    def _snapshot(self, m: _Market, msg: dict[str, Any], sid: int) -> int:
        m.sid, m.linked = sid, True
        sides = [msg.get("yes_dollars_fp"), msg.get("no_dollars_fp")]
        for levels in sides:
            if levels is not None and not isinstance(levels, list):
                return self._fail(m, "side not a list")
        for levels in sides:
            for level in levels or ():
                if not (isinstance(level, list) and len(level) == 2
                        and all(isinstance(x, str) for x in level)):
                    return self._fail(m, "level not a pair of strings")
        try:
            m.book.apply_snapshot(sides[0], sides[1])
        except BookError as exc:
            return self._fail(m, str(exc))
        m.stale = False
        self.counts["snapshots"] += 1
        return SNAPSHOT
