"""Fuzz: ``KalshiWs.handle_frame`` and the decoders never raise and never corrupt a book (issue 14 item 9).

Every case is fed through the whole client (router, JSON dispatch, decoders, callbacks) while a
plain-Python reference router (tests/reference/wire.py) sees the same frames and the same router calls
(the client's gap handling, resubscribes, regrids): after every frame both must agree on the result
and on every book, level by level, and on which books are stale. Frames are real frames of every kind,
frames whose fields are swapped for hostile JSON values (lists, objects, 1e308, huge integers, wrong
strings, booleans), and byte-level mutations (truncation, flips, inserted bytes). Decoders are also
called directly on field-mutated messages and must raise nothing but WireError.

Size: ``KMM_FUZZ_CASES`` cases (default 100,000: the profile the default test run and CI use, ~20 s
here); raise it for a longer hunt, e.g. ``KMM_FUZZ_CASES=2000000``. ``KMM_FUZZ_SEED`` picks the seed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Any

import orjson
import pytest

from kmm._core.book import OrderBook
from kmm._core.wire import BookRouter
from kmm.kalshi import decode as wire
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.ws import FeedHandler, KalshiWs
from tests.reference.book import RefBook
from tests.reference.wire import RefRouter

CASES = int(os.environ.get("KMM_FUZZ_CASES", "100000"))
SEED = int(os.environ.get("KMM_FUZZ_SEED", "20261127"))
MARKETS = {"A": "linear_cent", "B": "center_deci_edge_centi_cent", "C": "center_half_edge_quint_cent"}
GRID_PRICES = {s: RefBook(s).grid.prices for s in MARKETS.values()}
CENTI = [{"start": "0.0000", "end": "0.0100", "step": "0.0001"},
         {"start": "0.0100", "end": "0.9900", "step": "0.0010"},
         {"start": "0.9900", "end": "1.0000", "step": "0.0001"}]
CENT = [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]

HOSTILE: list[Any] = [None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 2**64 + 5, 1e308, -1e308, 0.5, 1e-300,
                      "", "x", "false", "true", "0.0000", "1.0000", "5.0000", "-0.0100", "0.00", "1e2", " 1.00 ",
                      "0.12345", "NaN", "\u0000", "é" * 300, [], [1], ["a", "b"], [[]], {}, {"a": 1},
                      {"code": 10}, "yes", "no", "bid", "ask", 10**30]


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:   # integers beyond 64 bits: orjson refuses them, the wire may carry them
        return json.dumps(obj).encode()


def s4(p: int) -> str:
    return f"{p // 10000}.{p % 10000:04d}"


def s2(q: int) -> str:
    sign = "-" if q < 0 else ""
    q = abs(q)
    return f"{sign}{q // 100}.{q % 100:02d}"


class Mirror:
    """The compiled router, with every call the client makes repeated on the reference."""

    def __init__(self, ranges: dict[str, Any]) -> None:
        self.c = BookRouter()
        self.r = RefRouter()
        self.ranges = ranges
        self.disagreements: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.c, name)

    def feed(self, frame: bytes, recv_ns: int = 0) -> int:
        got = self.c.feed(frame, recv_ns)
        want = self.r.feed(frame, recv_ns)
        if got != want:
            self.disagreements.append((frame, got, want, self.c.last_error, self.r.last_error))
        return got

    def add(self, ticker: str, book: OrderBook) -> None:
        self.c.add(ticker, book)
        self.r.add(ticker, RefBook(self.ranges[ticker]))

    def regrid(self, ticker: str, ranges: Any) -> Any:
        book = self.c.regrid(ticker, ranges)
        self.r.regrid(ticker, ranges)
        return book

    def _both(name: str):  # type: ignore[misc]
        def call(self: Mirror, *a: Any) -> Any:
            getattr(self.r, name)(*a)
            return getattr(self.c, name)(*a)
        return call

    mark_stale = _both("mark_stale")
    mark_all_stale = _both("mark_all_stale")
    forget_sid = _both("forget_sid")
    reset = _both("reset")
    note_seq = _both("note_seq")
    remove = _both("remove")


class Sink(FeedHandler):
    def __init__(self) -> None:
        self.n = 0

    def on_fill(self, fill: Any) -> None:
        assert 0 < fill.price < 10000 and fill.count > 0 and fill.fee >= 0 and isinstance(fill.is_taker, bool)
        assert isinstance(fill.order_id, str) and isinstance(fill.trade_id, str) and isinstance(fill.ticker, str)
        self.n += 1

    def on_user_order(self, o: Any) -> None:
        assert o.status in ("resting", "canceled", "executed") and 0 < o.price < 10000
        self.n += 1


class Sent:
    def __init__(self) -> None:
        self.n = 0

    def send(self, _type: Any, data: bytes) -> None:
        self.n += 1

    def disconnect(self, graceful: bool = True) -> None:
        pass


def make_client() -> tuple[KalshiWs, Mirror]:
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    mirror = Mirror(dict(MARKETS))
    ws = KalshiWs(cfg, Sink(), router=mirror, book_factory=OrderBook, lifecycle=True)
    ws.add_markets(dict(MARKETS))
    ws._transport = Sent()
    for sid, ch in ((1, "orderbook_delta"), (2, "ticker"), (3, "trade"), (4, "market_lifecycle_v2"),
                    (5, "order_group_updates"), (6, "fill"), (7, "user_orders"), (8, "market_positions")):
        ws._sid_channel[sid] = ch
        ws._channel_sid[ch] = sid
        if ch in ("orderbook_delta", "ticker", "trade"):
            ws._channel_markets[ch] = set(MARKETS)
    return ws, mirror


class Gen:
    def __init__(self, rnd: random.Random, mirror: Mirror) -> None:
        self.rnd = rnd
        self.mirror = mirror
        self.seq = 1
        self.structure = dict(MARKETS)

    def prices(self, t: str) -> list[int]:
        return GRID_PRICES[self.structure[t]]

    def next_seq(self) -> int:
        """The next seq of the book subscription as the client last saw it (hostile frames move it)."""
        base = self.mirror.c.last_seq_of(1)
        self.seq = (base if base is not None and 0 <= base < 2**62 else self.seq) + 1
        return self.seq

    def snapshot(self, t: str) -> dict[str, Any]:
        r = self.rnd
        ps = self.prices(t)
        msg: dict[str, Any] = {"market_ticker": t, "market_id": "m"}
        for key in ("yes_dollars_fp", "no_dollars_fp"):
            levels = sorted(r.sample(ps, r.randint(0, 6)))
            if levels:
                msg[key] = [[s4(p), s2(r.randint(1, 5000))] for p in levels]
        return {"type": "orderbook_snapshot", "sid": 1, "seq": self.next_seq(), "msg": msg}

    def delta(self, t: str) -> dict[str, Any]:
        r = self.rnd
        book = self.mirror.r.markets[t].book
        side = r.choice(("yes", "no"))
        levels = book.bids() if side == "yes" else book.no_bids()
        if levels and r.random() < 0.5:
            p, size = r.choice(levels)
            d = r.randint(-size, 500)
        else:
            p, d = r.choice(self.prices(t)), r.randint(1, 500)
        seq = self.next_seq()
        msg = {"market_ticker": t, "market_id": "m", "price_dollars": s4(p), "delta_fp": s2(d or 1), "side": side,
               "ts_ms": 1767225600000 + seq}
        return {"type": "orderbook_delta", "sid": 1, "seq": seq, "msg": msg}

    def other(self, t: str) -> dict[str, Any]:
        r = self.rnd
        k = r.randrange(10)
        if k == 0:
            return {"type": "fill", "sid": 6, "msg": {
                "trade_id": f"t{r.random()}", "order_id": "o1", "client_order_id": "c1", "market_ticker": t,
                "is_taker": r.random() < 0.5, "book_side": r.choice(("bid", "ask")), "yes_price_dollars": "0.4100",
                "count_fp": "1.50", "fee_cost": "0.0100", "post_position_fp": "-1.50", "ts_ms": 1767225600190,
                "exchange_index": 0}}
        if k == 1:
            return {"type": "user_order", "sid": 7, "msg": {
                "order_id": "o1", "ticker": t, "status": "resting", "book_side": "bid", "yes_price_dollars": "0.5600",
                "initial_count_fp": "10.00", "fill_count_fp": "2.00", "remaining_count_fp": "8.00",
                "client_order_id": "c1", "created_ts_ms": 1, "exchange_index": 1,
                "last_update_reason": "PostOnlyCrossCancel"}}
        if k == 2:
            return {"type": "market_position", "sid": 8, "msg": {
                "market_ticker": t, "position_fp": "-3.50", "position_cost_dollars": "1.2000",
                "realized_pnl_dollars": "-0.5000", "fees_paid_dollars": "0.0100", "volume_fp": "12.00"}}
        if k == 3:
            return {"type": "trade", "sid": 3, "seq": 9, "msg": {
                "trade_id": "t", "market_ticker": t, "yes_price_dollars": "0.3300", "count_fp": "1.00",
                "taker_book_side": "ask", "ts_ms": 7}}
        if k == 4:
            return {"type": "ticker", "sid": 2, "msg": {
                "market_ticker": t, "price_dollars": "0.5000", "yes_bid_dollars": "0.4900",
                "yes_ask_dollars": "0.5100", "volume_fp": "100.00", "open_interest_fp": "20.00", "ts": 3}}
        if k == 5:
            ev = r.choice(["close_date_updated", "metadata_updated", "determined", "created", "activated",
                           "price_level_structure_updated"])
            msg: dict[str, Any] = {"market_ticker": t, "event_type": ev, "close_ts": 1767225600,
                                   "floor_strike": 1.5, "result": "yes", "is_deactivated": False}
            if ev == "price_level_structure_updated":
                msg["price_ranges"] = r.choice([CENTI, CENT])
            return {"type": "market_lifecycle_v2", "sid": 4, "seq": 1, "msg": msg}
        if k == 6:
            return {"type": "order_group_updates", "sid": 5, "seq": r.randint(1, 5), "msg": {
                "event_type": "limit_updated", "order_group_id": "og", "contracts_limit_fp": "150.00", "ts_ms": 1}}
        if k == 7:
            return {"type": "error", "id": r.randint(1, 3), "sid": r.choice([1, 2, None]),
                    "msg": {"code": r.randint(1, 28), "msg": "x"}}
        if k == 8:
            return {"type": "ok", "id": 3, "sid": 1, "seq": self.seq}
        return {"type": "subscribed", "id": 9, "msg": {"channel": "ticker", "sid": 2}}

    def hostile(self, obj: Any, depth: int = 0) -> Any:
        """Swap one field (top level or in msg) for a hostile value, or drop it."""
        r = self.rnd
        target = obj
        if isinstance(obj.get("msg"), dict) and r.random() < 0.75:
            target = obj["msg"]
        if target and r.random() < 0.9:
            key = r.choice(list(target))
            if r.random() < 0.15:
                del target[key]
            else:
                target[key] = r.choice(HOSTILE)
        else:
            target[r.choice(["type", "msg", "sid", "seq", "id", "extra"])] = r.choice(HOSTILE)
        return obj

    def mutate(self, data: bytes) -> bytes:
        r = self.rnd
        for _ in range(r.randint(1, 3)):
            i = r.randrange(len(data) + 1)
            how = r.randrange(4)
            if how == 0:
                data = data[:i]
            elif how == 1:
                data = data[:i] + bytes([r.randrange(256)]) + data[i + 1:]
            elif how == 2:
                data = data[:i] + r.choice([b"[", b"]", b"{", b"}", b'"', b",", b":", b"1e308", b"\\", b"\xff",
                                            b"-", b"null", b"[1]"]) + data[i:]
            else:
                data = data[:i] + data[i + r.randint(1, 8):]
        return data

    def frame(self) -> bytes:
        r = self.rnd
        t = r.choice(list(MARKETS))
        stale = self.mirror.c.stale_tickers()
        if stale and r.random() < 0.3:   # the exchange answers the client's get_snapshot
            return dumps(self.snapshot(r.choice(stale)))
        roll = r.random()
        if roll < 0.05:
            obj = self.snapshot(t)
        elif roll < 0.45:
            obj = self.delta(t)
        else:
            obj = self.other(t)
        roll = r.random()
        if roll < 0.45:
            return dumps(obj)
        if roll < 0.85:
            return dumps(self.hostile(obj))
        if roll < 0.98:
            return self.mutate(dumps(obj))
        return bytes(r.randrange(256) for _ in range(r.randint(0, 40)))


def check_books(ws: KalshiWs, mirror: Mirror, grids: bool = False) -> None:
    for t in MARKETS:
        cb, rb = mirror.c.book(t), mirror.r.markets[t].book
        assert cb.levels() == rb.levels(), t
        assert mirror.c.is_stale(t) == mirror.r.is_stale(t), t
        if grids:
            assert cb.grid.prices() == rb.grid.prices, t


def test_handle_frame_never_raises_and_never_corrupts_a_book():
    logging.getLogger("kmm.kalshi.ws").setLevel(logging.CRITICAL)   # every bad frame logs; that is tested elsewhere
    try:
        rnd = random.Random(SEED)
        ws, mirror = make_client()
        gen = Gen(rnd, mirror)
        for t in MARKETS:
            assert ws.handle_frame(orjson.dumps(gen.snapshot(t)), 0) == 1
        t0 = time.perf_counter()
        for i in range(CASES):
            data = gen.frame()
            regrids = ws.stats.regrids
            ws.handle_frame(data, i)   # must not raise
            if ws.stats.regrids != regrids:   # a grid change the fuzz produced: prices follow it
                check_books(ws, mirror, grids=True)
                for t in MARKETS:
                    r = mirror.c.book(t).grid
                    gen.structure[t] = "center_deci_edge_centi_cent" if r.n_slots == 10001 else "linear_cent"
            assert not mirror.disagreements, mirror.disagreements[:1]
            if i % 5 == 0:
                check_books(ws, mirror)
            if i % 500 == 0 and rnd.random() < 0.3:   # fresh snapshots keep the books busy
                for t in MARKETS:
                    ws.handle_frame(orjson.dumps(gen.snapshot(t)), i)
        elapsed = time.perf_counter() - t0
        check_books(ws, mirror, grids=True)
        s = ws.stats
        assert s.internal_errors == 0 and s.callback_errors == 0
        assert s.frames >= CASES and s.malformed > CASES // 10 and s.book_frames > CASES // 5
        assert ws.handler.n > CASES // 50          # valid user messages still got through
        assert mirror.c.deltas > CASES // 10       # and books were really exercised
        print(f"fuzz: {CASES} frames in {elapsed:.1f} s; {s.malformed} malformed, {s.book_frames} book, "
              f"{mirror.c.deltas} deltas, {s.regrids} regrids, {s.gaps} gaps")
    finally:
        logging.getLogger("kmm.kalshi.ws").setLevel(logging.NOTSET)


DECODERS = [
    (wire.decode_fill, "fill"), (wire.decode_user_order, "user_order"),
    (wire.decode_market_position, "market_position"), (wire.decode_trade, "trade"),
    (wire.decode_ticker, "ticker"), (wire.decode_lifecycle, "market_lifecycle_v2"),
]


def test_decoders_raise_only_wire_error_on_mutated_messages():
    rnd = random.Random(SEED + 1)
    ws, mirror = make_client()
    gen = Gen(rnd, mirror)
    by_type: dict[str, list[dict[str, Any]]] = {}
    while not all(t in by_type for _fn, t in DECODERS):
        obj = gen.other("A")
        by_type.setdefault(obj["type"], []).append(obj)
    n = max(CASES // 4, 1000)
    refused = 0
    for i in range(n):
        fn, typ = DECODERS[i % len(DECODERS)]
        msg = dict(rnd.choice(by_type[typ])["msg"])
        for _ in range(rnd.randint(1, 3)):
            gen.hostile({"msg": msg})
        try:
            fn(msg)
        except wire.WireError:
            refused += 1
    for fn, _typ in DECODERS:   # not a JSON object at all
        for bad in (None, [], "x", 1e308, [{"a": 1}]):
            with pytest.raises(wire.WireError):
                fn(bad)  # type: ignore[arg-type]
    assert refused > n // 3
    # order-group and REST decoders too
    for i in range(n // 10):
        body = {"event_type": rnd.choice(HOSTILE + ["created"]), "order_group_id": rnd.choice(HOSTILE + ["og"]),
                "contracts_limit_fp": rnd.choice(HOSTILE), "ts_ms": rnd.choice(HOSTILE)}
        try:
            wire.decode_order_group_update({"sid": rnd.choice(HOSTILE), "seq": 1}, body)
        except wire.WireError:
            pass
        for fn in (wire.decode_order_ack, wire.decode_cancel_ack, wire.decode_decrease_ack, wire.decode_market,
                   wire.decode_balance, wire.decode_exchange_status, wire.decode_account_limits,
                   wire.decode_settlement, wire.decode_series, wire.decode_event):
            body = {k: rnd.choice(HOSTILE) for k in rnd.sample(
                ["order_id", "ticker", "fill_count", "remaining_count", "reduced_by", "balance", "balance_dollars",
                 "exchange_active", "trading_active", "read", "write", "grants", "usage_tier", "price_ranges",
                 "exchange_index", "balance_breakdown", "exchange_index_statuses", "revenue", "event_ticker",
                 "markets", "categories", "fee_multiplier", "ts_ms"], rnd.randint(1, 8))}
            try:
                fn(body)
            except wire.WireError:
                pass
