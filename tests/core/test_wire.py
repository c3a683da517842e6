"""BookRouter: unit tests of the seq/staleness rules and the scanner, and property tests feeding the
compiled router and tests/reference/wire.py the same random frame streams."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kmm._core import wire
from kmm._core.book import OrderBook
from kmm._core.wire import (DELTA, GAP, MALFORMED, NOT_BOOK, SNAPSHOT, STALE_SKIPPED, UNKNOWN_MARKET,
                            BookRouter, scan_fields)
from tests.reference.book import STRUCTURES as REF_STRUCTURES
from tests.reference.book import RefBook
from tests.reference.wire import RefRouter

TICKERS = {"KXA-1": "linear_cent", "KXB-2": "deci_cent", "KXC-3": "tapered_deci_cent",
           "KXD-4": "center_deci_edge_centi_cent", "KXE-5": "center_half_edge_quint_cent"}
UNKNOWN = "KXZ-9"
GRID_PRICES = {s: RefBook(s).grid.prices for s in REF_STRUCTURES}


def s4(p: int) -> str:
    return f"{p / 10000:.4f}"


def s2(q: int) -> str:
    return f"{q / 100:.2f}"


def snap(ticker: str, yes=None, no=None, sid=7, seq=2, **extra) -> bytes:
    msg = {"market_ticker": ticker, "market_id": "00000000-0000-0000-0000-000000000001"}
    if yes:
        msg["yes_dollars_fp"] = yes
    if no:
        msg["no_dollars_fp"] = no
    return json.dumps({"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg, **extra}).encode()


def delta(ticker: str, side: str, price: str, amount: str, sid=7, seq=3, msg_extra=None, **extra) -> bytes:
    msg = {"market_ticker": ticker, "market_id": "00000000-0000-0000-0000-000000000001",
           "price_dollars": price, "delta_fp": amount, "side": side, "ts_ms": 1767225600123}
    msg.update(msg_extra or {})
    return json.dumps({"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg, **extra}).encode()


def router_with(*tickers: str) -> BookRouter:
    r = BookRouter()
    for t in tickers:
        r.add(t, OrderBook(TICKERS.get(t)))
    return r


# ---- unit tests ------------------------------------------------------------------------------

def test_feed_snapshot_then_delta_applies_both_and_records_fields():
    r = router_with("KXA-1")
    assert r.is_stale("KXA-1")
    assert r.feed(snap("KXA-1", [["0.4100", "25.00"]], [["0.5500", "40.00"]], sending_ts_ms=99), 5) == SNAPSHOT
    assert (r.last_type, r.last_ticker, r.last_sid, r.last_seq, r.last_sending_ts_ms, r.last_recv_ns) == \
        ("orderbook_snapshot", "KXA-1", 7, 2, 99, 5)
    assert not r.is_stale("KXA-1") and r.sid_of("KXA-1") == 7 and r.last_seq_of(7) == 2
    frame = delta("KXA-1", "yes", "0.4100", "-5.00", msg_extra={"client_order_id": "abc", "subaccount": 0})
    assert r.feed(frame, 6) == DELTA
    assert (r.last_type, r.last_ts_ms, r.last_client_order_id, r.last_error) == \
        ("orderbook_delta", 1767225600123, "abc", None)
    assert r.book("KXA-1").bids() == [(4100, 2000)] and r.book("KXA-1").asks() == [(4500, 4000)]
    assert r.counters() == {"frames": 2, "snapshots": 1, "deltas": 1, "gaps": 0, "stale_skipped": 0,
                            "malformed": 0, "unknown": 0, "not_book": 0}


def test_snapshot_seq_is_the_base_whatever_its_value():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]], seq=1000))
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=1001)) == DELTA


def test_seq_gap_marks_every_market_of_the_sid_stale_and_skips_until_snapshot():
    r = router_with("KXA-1", "KXB-2", "KXC-3")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]], seq=2))
    r.feed(snap("KXB-2", [["0.4100", "25.00"]], seq=3))
    r.feed(snap("KXC-3", [["0.4100", "25.00"]], sid=8, seq=1))
    assert r.feed(delta("KXB-2", "yes", "0.4100", "1.00", seq=5)) == GAP
    assert r.stale_tickers() == ["KXA-1", "KXB-2"] and r.last_seq_of(7) == 5
    assert r.book("KXB-2").bids() == [(4100, 2500)]
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=6)) == STALE_SKIPPED
    assert r.feed(delta("KXC-3", "yes", "0.4100", "1.00", sid=8, seq=2)) == DELTA
    assert r.feed(snap("KXA-1", [["0.4200", "1.00"]], seq=7)) == SNAPSHOT
    assert r.stale_tickers() == ["KXB-2"] and r.book("KXA-1").bids() == [(4200, 100)]
    assert r.feed(delta("KXA-1", "yes", "0.4200", "1.00", seq=8)) == DELTA
    assert r.counters()["gaps"] == 1 and r.counters()["stale_skipped"] == 1


def test_a_snapshot_whose_seq_jumps_marks_the_sids_other_books_stale():
    # A s1, B s2, A s3, (A s4 lost), B s5 (a snapshot after the loss), A s6: A missed a delta
    r = router_with("KXA-1", "KXB-2")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]], seq=1))
    r.feed(snap("KXB-2", [["0.4100", "25.00"]], seq=2))
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=3)) == DELTA
    assert r.feed(snap("KXB-2", [["0.4200", "5.00"]], seq=5)) == SNAPSHOT
    assert r.stale_tickers() == ["KXA-1"] and r.counters()["gaps"] == 1
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=6)) == STALE_SKIPPED


def test_note_seq_moves_the_sequence_past_a_non_book_frame_that_carried_one():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]], seq=2))
    r.note_seq(7, 3)                     # e.g. an "ok" answer numbered 3
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=4)) == DELTA
    r.note_seq(7, 1)                     # older: ignored
    r.note_seq(99, 50)                   # no snapshot on that sid yet: ignored
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=5)) == DELTA
    assert r.counters()["gaps"] == 0


def test_desync_delta_is_malformed_leaves_book_unchanged_and_marks_stale():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]]))
    assert r.feed(delta("KXA-1", "yes", "0.4100", "-26.00")) == MALFORMED
    assert "desync" in r.last_error and "0.4100" in r.last_error and "-26.00" in r.last_error
    assert r.book("KXA-1").bids() == [(4100, 2500)] and r.is_stale("KXA-1")
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=4)) == STALE_SKIPPED


def test_unknown_market_counts_and_still_tracks_seq():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]]))
    assert r.feed(delta(UNKNOWN, "yes", "0.4100", "1.00", seq=3)) == UNKNOWN_MARKET
    assert r.last_ticker == UNKNOWN and r.counters()["unknown"] == 1
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", seq=4)) == DELTA


@pytest.mark.parametrize("frame", [
    b'{"type":"fill","sid":9,"msg":{"trade_id":"x"}}', b'{"id":1,"type":"subscribed","msg":{}}',
    b'{"no_type":1}', b'[1,2,3]', b'"orderbook_delta"', b'{"type":5}', b' {"type":"orderbook_deltas"} ',
])
def test_other_messages_return_not_book(frame):
    r = router_with("KXA-1")
    assert r.feed(frame) == NOT_BOOK and r.last_type is None and r.last_error is None


@pytest.mark.parametrize("frame,words", [
    (b'', "value expected"), (b'{"type":"orderbook_delta"', "expected"), (b'{"a":1}}', "end of frame"),
    (b'{"a":"\xff"}', "UTF-8"), (b'{"a":"\\x"}', "escape"), (b'{"a":01}', "expected"),
    (b'{"a":NaN}', "value expected"), (b'{"a":[1,]}', "value expected"), (b'{"a":"x\ny"}', "control"),
    (b'[' * 129 + b']' * 129, "deeper than 128"),
])
def test_invalid_json_is_malformed_with_position(frame, words):
    r = router_with("KXA-1")
    assert r.feed(frame) == MALFORMED and words in r.last_error and "byte" in r.last_error
    assert r.counters()["malformed"] == 1


def test_nesting_up_to_128_is_accepted():
    r = router_with("KXA-1")
    assert r.feed(b'[' * 128 + b']' * 128) == NOT_BOOK


@pytest.mark.parametrize("msg_extra,words", [
    ({"price_dollars": "0.4150"}, ["0.4150", "grid"]),
    ({"price_dollars": "x"}, ["price_dollars", "'x'"]),
    ({"side": "maybe"}, ["side", "maybe"]),
    ({"delta_fp": 5}, ["delta_fp", "5"]),
    ({"ts_ms": "1"}, ["ts_ms"]),
    ({"client_order_id": 7}, ["client_order_id"]),
])
def test_bad_delta_fields_are_malformed_and_mark_market_stale(msg_extra, words):
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]]))
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", msg_extra=msg_extra)) == MALFORMED
    assert r.is_stale("KXA-1") and r.book("KXA-1").bids() == [(4100, 2500)]
    for w in words:
        assert w in r.last_error


def test_bad_snapshot_level_is_malformed_and_keeps_old_book():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]]))
    assert r.feed(snap("KXA-1", [["0.4100", "1.00"], ["0.4150", "1.00"]], seq=3)) == MALFORMED
    assert "0.4150" in r.last_error and r.is_stale("KXA-1") and r.book("KXA-1").bids() == [(4100, 2500)]
    assert r.feed(snap("KXA-1", [["0.4100", "1.00", "x"]], seq=4)) == MALFORMED and "pair" in r.last_error
    assert r.feed(snap("KXA-1", None, None, seq=5)) == SNAPSHOT and r.book("KXA-1").is_empty()


def test_escaped_keys_and_values_any_key_order_and_whitespace_are_understood():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]]))
    frame = (b' {\n "msg" : { "x" : [ {"msg":{"market_ticker":"NO"}} , "\\"]}\\\\" , -1.5e+3 , true , null ] ,'
             b' "sid\\u0065" : 1, "side":"n\\u006f", "price_dollars" : "0.5\\u003000", "delta_fp":"+2.50",'
             b' "market_\\u0074icker" : "KX\\u0041-1", "client_order_id":"\\u00e9\\ud83d\\ude00" } ,'
             b' "seq" : 3 , "type" : "orderbook_\\u0064elta" , "sid" : 7 }\r\n')
    assert r.feed(frame) == DELTA
    assert r.book("KXA-1").asks() == [(5000, 250)] and r.last_client_order_id == "\u00e9\U0001F600"


def test_repeated_keys_take_the_last_value_like_json():
    r = router_with("KXA-1")
    frame = (b'{"type":"fill","type":"orderbook_snapshot","sid":7,"seq":2,'
             b'"msg":{"market_ticker":"KXA-1","yes_dollars_fp":[["0.4100","25.00"]]},'
             b'"msg":{"market_ticker":"KXA-1"}}')
    assert r.feed(frame) == SNAPSHOT and r.book("KXA-1").is_empty()


def test_sid_change_without_snapshot_skips_the_delta():
    r = router_with("KXA-1")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]], sid=7))
    assert r.feed(delta("KXA-1", "yes", "0.4100", "1.00", sid=9, seq=1)) == STALE_SKIPPED


def test_forget_sid_reset_and_mark_all_stale():
    r = router_with("KXA-1", "KXB-2")
    r.feed(snap("KXA-1", [["0.4100", "25.00"]], sid=7))
    r.feed(snap("KXB-2", [["0.4100", "25.00"]], sid=8, seq=1))
    r.forget_sid(7)
    assert r.sid_of("KXA-1") is None and r.last_seq_of(7) is None and r.stale_tickers() == ["KXA-1"]
    r.mark_all_stale()
    assert r.stale_tickers() == ["KXA-1", "KXB-2"] and r.sid_of("KXB-2") == 8
    r.reset()
    assert r.sid_of("KXB-2") is None and r.last_seq_of(8) is None
    r.mark_stale("KXA-1")
    with pytest.raises(KeyError, match="KXQ"):
        r.is_stale("KXQ")


def test_add_remove_book_and_tickers():
    r = router_with("KXA-1", "KXB-2")
    b = OrderBook()
    r.add("KXA-1", b)
    assert r.book("KXA-1") is b and r.tickers() == ["KXA-1", "KXB-2"] and "KXB-2" in r and len(r) == 2
    r.remove("KXB-2")
    assert r.feed(snap("KXB-2", [["0.4100", "25.00"]])) == UNKNOWN_MARKET
    with pytest.raises(KeyError):
        r.remove("KXB-2")
    for i in range(100):  # grows the ticker table
        r.add(f"T{i}", OrderBook())
    assert r.feed(snap("T57", [["0.4100", "25.00"]])) == SNAPSHOT and r.book("T57").best_bid() == 4100


def test_scan_fields_reports_kinds_and_spans():
    f = scan_fields(b'{"type":"x","sid":-9223372036854775808,"seq":1.5,"msg":{"side":null}}')
    assert f["type"] == (1, b"x") and f["sid"] == (2, b"-9223372036854775808")
    assert f["seq"] == (3, b"1.5") and f["side"] == (8, b"null")
    with pytest.raises(ValueError, match="byte"):
        scan_fields(b'{"a":}')


def test_result_constants_are_stable():
    assert (wire.NOT_BOOK, wire.SNAPSHOT, wire.DELTA, wire.GAP, wire.STALE_SKIPPED,
            wire.UNKNOWN_MARKET, wire.MALFORMED) == (0, 1, 2, 3, 4, 5, 6)


# ---- random streams against the reference ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=5), ch, max_size=3),
    max_leaves=6)


def dump(obj, rnd: random.Random) -> str:
    """JSON with random whitespace, key order and string escaping."""
    def ws() -> str:
        return rnd.choice(("", "", "", " ", "\n", "\t ", " \r\n "))
    if isinstance(obj, dict):
        items = list(obj.items())
        if rnd.random() < 0.5:
            rnd.shuffle(items)
        return "{" + ws() + ",".join(ws() + dump(k, rnd) + ws() + ":" + ws() + dump(v, rnd) + ws()
                                     for k, v in items) + "}"
    if isinstance(obj, list):
        return "[" + ws() + ",".join(ws() + dump(v, rnd) + ws() for v in obj) + "]"
    if isinstance(obj, str):
        if rnd.random() < 0.1:  # escape every character
            return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1]
                                 for c in obj) + '"'
        return json.dumps(obj, ensure_ascii=rnd.random() < 0.3)
    if isinstance(obj, float):
        return repr(obj)
    return json.dumps(obj)


def mutate(frame: bytes, rnd: random.Random) -> bytes:
    i = rnd.randrange(len(frame) + 1)
    how = rnd.randrange(3)
    if how == 0:
        return frame[:i]
    b = bytes([rnd.choice(b'{}[]",:0-.e\\ x\x00\xc3\xff')])
    return frame[:i] + b + frame[i + 1 - (how == 2):] if how else frame


class Stream:
    """Builds frames from the reference's current books, advancing per-sid seq counters."""

    def __init__(self, data, rnd: random.Random, ref: RefRouter) -> None:
        self.data, self.rnd, self.ref = data, rnd, ref
        self.sid_of = {t: data.draw(st.sampled_from([1, 2])) for t in [*TICKERS, UNKNOWN]}
        self.structure = dict(TICKERS)  # follows regrid
        self.seq = {1: data.draw(st.integers(1, 100)), 2: data.draw(st.integers(1, 100))}

    def draw(self, s):
        return self.data.draw(s)

    def next_seq(self, sid: int, jump: int = 1) -> int:
        self.seq[sid] += jump
        return self.seq[sid]

    def extras(self, obj: dict) -> dict:
        for _ in range(self.draw(st.integers(0, 2))):
            obj[self.draw(st.sampled_from(["extra", "subaccount", "market_id", "ts", "x\u00e9"]))] = \
                self.draw(json_values)
        return obj

    def grid_prices(self, ticker: str) -> list[int]:
        return GRID_PRICES[self.structure.get(ticker, "linear_cent")]

    def snapshot(self, ticker: str) -> dict:
        prices = self.grid_prices(ticker)
        msg = self.extras({"market_ticker": ticker, "market_id": "m-1"})
        for key in ("yes_dollars_fp", "no_dollars_fp"):
            ps = sorted(self.draw(st.lists(st.sampled_from(prices), max_size=5, unique=True)))
            levels = [[s4(p), s2(self.draw(st.integers(0, 3000)))] for p in ps]
            if levels or self.draw(st.booleans()):
                msg[key] = levels if levels or self.draw(st.booleans()) else None
        sid = self.sid_of[ticker]
        jump = self.draw(st.sampled_from([1, 1, 1, 5]))
        return self.extras({"type": "orderbook_snapshot", "sid": sid, "seq": self.next_seq(sid, jump),
                            "msg": msg})

    def delta(self, ticker: str, kind: str) -> dict:
        side = self.draw(st.sampled_from(["yes", "no"]))
        book = self.ref.markets[ticker].book if ticker in self.ref.markets else None
        levels = (book.bids() if side == "yes" else book.no_bids()) if book else []
        if levels and kind in ("remove", "desync"):
            price, size = levels[0] if self.draw(st.booleans()) else self.draw(st.sampled_from(levels))
            amount = -size if kind == "remove" else -size - self.draw(st.integers(1, 100))
        elif levels and self.draw(st.booleans()):
            price, size = self.draw(st.sampled_from(levels))
            amount = self.draw(st.integers(-size, 2000))
        else:
            price = self.draw(st.sampled_from(self.grid_prices(ticker)))
            amount = self.draw(st.integers(1, 2000))
        msg = {"market_ticker": ticker, "market_id": "m-1", "price_dollars": s4(price),
               "delta_fp": s2(amount), "side": side}
        if self.draw(st.booleans()):
            msg["ts_ms"] = self.draw(st.integers(0, 2**45))
        if self.draw(st.integers(0, 3)) == 0:
            msg["client_order_id"] = self.draw(st.sampled_from(["abc", "é-1", None]))
        if kind == "bad":
            key, value = self.draw(st.sampled_from([
                ("price_dollars", "0.4150"), ("price_dollars", "1.0000"), ("price_dollars", "x"),
                ("price_dollars", 0.41), ("side", "maybe"), ("side", None), ("delta_fp", "1.001"),
                ("delta_fp", 5), ("ts_ms", "5"), ("ts_ms", 1.5), ("client_order_id", 3),
                ("market_ticker", 5), ("market_ticker", None)]))
            msg[key] = value
            if self.draw(st.booleans()):
                del msg[key]
        sid = self.sid_of[ticker]
        jump = {"gap": self.draw(st.sampled_from([0, 2, 3, -1]))}.get(kind, 1)
        frame = {"type": "orderbook_delta", "sid": sid, "seq": self.next_seq(sid, jump),
                 "msg": self.extras(msg)}
        if kind == "bad" and self.draw(st.integers(0, 3)) == 0:
            k, v = self.draw(st.sampled_from([("sid", 1.0), ("seq", "3"), ("msg", [1]), ("seq", None),
                                              ("sid", 2**64)]))
            frame[k] = v
        if self.draw(st.integers(0, 3)) == 0:
            frame["sending_ts_ms"] = self.draw(st.integers(0, 2**45) | st.just("x"))
        return self.extras(frame)

    def frame(self) -> bytes | str:
        kind = self.draw(st.sampled_from(
            ["snapshot"] * 3 + ["delta"] * 8 + ["remove"] * 3 + ["desync", "gap", "bad", "bad",
                                                                 "unknown", "not_book", "mutate", "mutate",
                                                                 "api"]))
        ticker = self.draw(st.sampled_from(list(TICKERS)))
        if kind == "api":
            return self.draw(st.sampled_from(["mark_stale", "mark_all_stale", "forget_sid", "reset", "regrid"]))
        if kind == "unknown":
            ticker = UNKNOWN
            kind = "delta"
        if kind == "not_book":
            obj = self.draw(st.sampled_from([
                {"type": "fill", "sid": 9, "msg": {"trade_id": "t"}}, {"id": 1, "type": "subscribed"},
                {"type": 7}, {"sid": 1, "seq": 2}, [1, {"type": "orderbook_delta"}]]))
            return dump(self.extras(dict(obj)) if isinstance(obj, dict) else obj, self.rnd).encode()
        obj = self.snapshot(ticker) if kind == "snapshot" else self.delta(ticker, kind)
        text = dump(obj, self.rnd).encode()
        return mutate(text, self.rnd) if kind == "mutate" else text


def same_router(c: BookRouter, r: RefRouter) -> None:
    assert (c.last_type, c.last_ticker, c.last_sid, c.last_seq, c.last_ts_ms, c.last_sending_ts_ms,
            c.last_client_order_id, c.last_recv_ns) == \
        (r.last_type, r.last_ticker, r.last_sid, r.last_seq, r.last_ts_ms, r.last_sending_ts_ms,
         r.last_client_order_id, r.last_recv_ns)
    assert (c.last_error is None) == (r.last_error is None), (c.last_error, r.last_error)
    assert c.counters() == r.counts
    assert c.stale_tickers() == r.stale_tickers()
    for t in TICKERS:
        assert c.sid_of(t) == r.sid_of(t)
        cb, rb = c.book(t), r.markets[t].book
        assert cb.levels() == rb.levels() and cb.version == rb.version
        assert cb.best_bid() == rb.best_bid() and cb.best_ask() == rb.best_ask()


def test_regrid_empties_the_book_marks_it_stale_and_a_snapshot_on_the_same_sid_refills_it():
    r = router_with("KXA-1")
    assert r.feed(snap("KXA-1", yes=[["0.4100", "5.00"]], no=[["0.5500", "2.00"]])) == SNAPSHOT
    book = r.book("KXA-1")
    assert r.regrid("KXA-1", "center_deci_edge_centi_cent") is book  # same object: holders keep it
    assert r.is_stale("KXA-1") and book.is_empty() and book.grid.n_slots == 10001
    assert r.sid_of("KXA-1") == 7
    assert r.feed(delta("KXA-1", "yes", "0.4101", "1.00")) == STALE_SKIPPED
    assert r.feed(snap("KXA-1", yes=[["0.0042", "5.00"], ["0.4100", "1.00"]], no=[["0.9998", "3.00"]],
                       seq=4)) == SNAPSHOT
    assert not r.is_stale("KXA-1") and book.best_bid() == 4100 and book.best_ask() == 2
    assert r.feed(delta("KXA-1", "yes", "0.0043", "1.00", seq=5)) == DELTA
    assert r.feed(delta("KXA-1", "yes", "0.4101", "1.00", seq=6)) == MALFORMED  # $0.001 in the centre
    with pytest.raises(ValueError):
        r.regrid("KXA-1", [{"start": "0.0000", "end": "1.0000", "step": "0.0000"}])
    with pytest.raises(KeyError):
        r.regrid("NOPE", "linear_cent")


@settings(max_examples=150)
@given(st.data())
def test_router_matches_reference_on_random_frame_streams(data):
    rnd = random.Random(data.draw(st.integers(0, 2**32)))  # formatting only; cheaper than st.randoms
    c, r = BookRouter(), RefRouter()
    for t, structure in TICKERS.items():
        c.add(t, OrderBook(structure))
        r.add(t, RefBook(structure))
    stream = Stream(data, rnd, r)
    frames = [dump(stream.snapshot(t), rnd).encode() for t in TICKERS]
    for step in range(data.draw(st.integers(1, 30)) + len(frames)):
        frame = frames[step] if step < len(frames) else stream.frame()
        if isinstance(frame, str):  # an API call on both routers
            args = ()
            if frame == "mark_stale":
                args = (data.draw(st.sampled_from(list(TICKERS))),)
            elif frame == "forget_sid":
                args = (data.draw(st.sampled_from([1, 2])),)
            elif frame == "regrid":
                t, new = data.draw(st.sampled_from(list(TICKERS))), data.draw(st.sampled_from(sorted(REF_STRUCTURES)))
                stream.structure[t] = new
                c.regrid(t, new)
                r.regrid(t, new)
                same_router(c, r)
                continue
            getattr(c, frame)(*args)
            getattr(r, frame)(*args)
        else:
            got, want = c.feed(frame, step), r.feed(frame, step)
            event(wire.RESULT_NAMES[want])
            assert got == want, (frame, wire.RESULT_NAMES[got], wire.RESULT_NAMES[want], c.last_error, r.last_error)
        same_router(c, r)
