"""The WebSocket client against the late-2026 protocol (kalshi-api.md sections 3.3, 3.7, 12), frame by
frame: grid changes, lifecycle fields, order-group updates, error codes, and bad messages skipped."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from kmm import protocol
from kmm._core.book import OrderBook
from kmm._core.wire import BookRouter
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.ws import DELTA, MALFORMED, NOT_BOOK, SNAPSHOT, STALE_SKIPPED, KalshiWs, WsError
from tests.kalshi.test_ws_frames import Recorder, Sent, delta, frame, snapshot

CENTI = [{"start": "0.0000", "end": "0.0100", "step": "0.0001"},
         {"start": "0.0100", "end": "0.9900", "step": "0.0010"},
         {"start": "0.9900", "end": "1.0000", "step": "0.0001"}]


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def ws(rec):
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook, lifecycle=True)
    client.add_markets({"A": "linear_cent", "B": "linear_cent"})
    client._transport = Sent()
    for sid, ch in ((1, "orderbook_delta"), (2, "ticker"), (3, "trade"), (4, "market_lifecycle_v2"),
                    (5, "order_group_updates"), (6, "fill")):
        client._sid_channel[sid] = ch
        client._channel_sid[ch] = sid
        if ch in ("orderbook_delta", "ticker", "trade"):
            client._channel_markets[ch] = {"A", "B"}
    return client


def lifecycle(**msg) -> bytes:
    return frame(type="market_lifecycle_v2", sid=4, seq=1, msg=msg)


def test_price_level_structure_updated_moves_the_book_to_the_new_grid_until_a_fresh_snapshot(ws, rec):
    assert ws.handle_frame(snapshot(1, 2, "A"), 1) == SNAPSHOT
    book = ws.book("A")
    assert ws.handle_frame(lifecycle(market_ticker="A", event_type="price_level_structure_updated",
                                     price_level_structure="a_name_kmm_never_saw", price_ranges=CENTI), 2) == NOT_BOOK
    # quotes come down at once (stale), the book is empty on the 10,001-slot grid, a snapshot is asked
    assert rec.of("on_book_stale") == [("A", "price grid changed")] and not ws.is_ready("A")
    assert ws.book("A") is book and book.is_empty() and book.grid.n_slots == 10001
    assert ws._transport.cmds[-1]["params"] == {"sids": [1], "action": "get_snapshot", "market_tickers": ["A"]}
    (ev,), = rec.of("on_lifecycle")
    assert ev.price_ranges == ((0, 100, 1), (100, 9900, 10), (9900, 10000, 1)) and ws.stats.regrids == 1
    assert ws.handle_frame(delta(1, 3, "A", price="0.0042", d="1.00"), 3) == STALE_SKIPPED
    assert ws.handle_frame(snapshot(1, 4, "A", yes=(("0.0042", "3.00"), ("0.4100", "1.00")),
                                    no=(("0.9999", "2.00"),)), 4) == SNAPSHOT
    assert ws.is_ready("A") and book.best_bid() == 4100 and book.best_ask() == 1
    assert ws.handle_frame(delta(1, 5, "A", price="0.0043", d="1.00"), 5) == DELTA


def test_a_grid_change_with_bad_ranges_is_refused_and_the_book_kept(ws, rec):
    ws.handle_frame(snapshot(1, 2, "A"), 1)
    bad = [{"start": "0.0000", "end": "1.0000", "step": "0.0300"}]
    assert ws.handle_frame(lifecycle(market_ticker="A", event_type="price_level_structure_updated",
                                     price_ranges=bad), 2) == NOT_BOOK
    assert ws.is_ready("A") and ws.book("A").best_bid() == 4100 and rec.of("on_lifecycle") == []
    assert ws.stats.bad_by_type == {"market_lifecycle_v2": 1}


def test_close_date_and_metadata_updates_decode(ws, rec):
    ws.handle_frame(lifecycle(market_ticker="A", event_type="close_date_updated", close_ts=1767225600), 1)
    ws.handle_frame(lifecycle(market_ticker="A", event_type="metadata_updated", floor_strike=105.5,
                              yes_sub_title="Above 105.5"), 2)
    ws.handle_frame(lifecycle(market_ticker="A", event_type="created", exchange_index=2, open_ts=1, close_ts=9,
                              price_level_structure="linear_cent",
                              price_ranges=[{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
                              additional_metadata={"title": "T", "can_close_early": True}), 3)
    ws.handle_frame(lifecycle(market_ticker="A", event_type="determined", result="yes",
                              settlement_value="1.0000"), 4)
    closed, meta, created, determined = rec.of("on_lifecycle")
    assert closed[0].close_ts == 1767225600
    assert meta[0].metadata == {"floor_strike": 105.5, "yes_sub_title": "Above 105.5"}
    assert (created[0].exchange_index, created[0].close_ts, created[0].metadata["title"]) == (2, 9, "T")
    assert (determined[0].result, determined[0].settlement_value) == ("yes", 10000)
    ws.handle_frame(lifecycle(market_ticker="A", event_type="close_date_updated"), 5)  # no close_ts
    assert len(rec.of("on_lifecycle")) == 4 and ws.stats.malformed == 1


def test_order_group_updates_decode_and_a_seq_gap_is_reported(ws, rec):
    def og(seq, **msg):
        return frame(type="order_group_updates", sid=5, seq=seq, msg=msg)
    ws.handle_frame(og(7, event_type="limit_updated", order_group_id="og_1", contracts_limit_fp="150.00",
                       ts_ms=1767225600123), 1)
    ws.handle_frame(og(8, event_type="triggered", order_group_id="og_1", ts_ms=5), 2)
    ws.handle_frame(og(10, event_type="reset", order_group_id="og_1", ts_ms=6), 3)
    ups = [u for (u,) in rec.of("on_order_group")]
    assert [(u.event_type, u.contracts_limit, u.seq) for u in ups] == \
        [("limit_updated", 15000, 7), ("triggered", None, 8), ("reset", None, 10)]
    assert ws.stats.order_group_gaps == 1 and "seq gap" in str(rec.of("on_error")[-1][0])
    ws.handle_frame(og(11, event_type="exploded", order_group_id="og_1"), 4)
    assert len(rec.of("on_order_group")) == 3 and ws.stats.bad_by_type == {"order_group_updates": 1}


def test_order_group_channel_is_subscribed_alone_and_dropped_when_the_server_lacks_it(rec):
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook)
    sent = Sent()
    client._start_watchdog = lambda: None  # no loop in this test
    client._on_open(sent)
    subs = [c for c in sent.cmds if c["cmd"] == "subscribe"]
    assert [c["params"]["channels"] for c in subs] == [["fill", "user_orders", "market_positions"],
                                                        ["order_group_updates"]]
    for i, ch in enumerate(("fill", "user_orders", "market_positions")):
        client.handle_frame(frame(id=subs[0]["id"], type="subscribed", msg={"channel": ch, "sid": i + 1}), 1)
    assert rec.of("on_connected") == []
    client.handle_frame(frame(id=subs[1]["id"], type="error", msg={"code": 8, "msg": "Unknown channel name"}), 2)
    assert rec.of("on_connected") == [()] and client.unsupported_channels == {"order_group_updates"}
    assert rec.of("on_error") == []


@pytest.mark.parametrize("code", [10, 17, 25])
def test_error_codes_that_need_a_resubscribe_resubscribe(ws, rec, code):
    ws.handle_frame(snapshot(1, 2, "A"), 1)
    ws.handle_frame(frame(type="error", sid=1, msg={"code": code, "msg": "x"}), 2)
    (err,), = rec.of("on_error")
    assert isinstance(err, WsError) and err.code == code and protocol.WS_ERRORS[code] in str(err)
    cmds = [c["cmd"] for c in ws._transport.cmds]
    assert cmds[-2:] == ["unsubscribe", "subscribe"] and ws.stats.resubscribes == 1 and not ws.is_ready("A")


@pytest.mark.parametrize("code", list(range(19, 29)))
def test_every_error_code_up_to_28_is_named(ws, rec, code):
    ws.handle_frame(frame(id=99, type="error", msg={"code": code, "msg": "m"}), 1)
    (err,), = rec.of("on_error")
    assert err.code == code and "unknown code" not in str(err)
    # 25 without a sid: which subscription overflowed is unknown, so every channel is resubscribed
    assert ws.stats.resubscribes == (6 if code == 25 else 0)


@pytest.mark.parametrize("data", [
    b'{"type":[1]}', b'{"type":{"a":1}}', b'{"type":null}', b'{"type":"fill","msg":[1,2]}',
    b'{"type":"fill","msg":"x"}', b'{"type":"subscribed","id":[1],"msg":{"channel":"fill","sid":1}}',
    b'{"type":"ok","id":{"a":1}}', b'{"type":"error","id":[],"msg":{"code":[10],"msg":{}}}',
    b'{"type":"error","msg":[1]}', b'{"type":"market_lifecycle_v2","msg":{"market_ticker":[],"event_type":1}}',
    b'[1,2,3]', b'"type"', b'{"type":"order_group_updates","sid":"5","seq":1e400,"msg":{}}',
    b'{"type":"ok","sid":1,"seq":1e308}', b'{"type":"ok","sid":1,"seq":-5}',
])
def test_frames_of_the_wrong_shape_never_raise(ws, rec, data):
    status = ws.handle_frame(data, 1)
    assert status in (NOT_BOOK, MALFORMED) and ws.stats.internal_errors == 0


FILL = {"trade_id": "t1", "order_id": "o1", "market_ticker": "A", "is_taker": False, "book_side": "bid",
        "yes_price_dollars": "0.4100", "count_fp": "5.00", "fee_cost": "0.0000", "ts_ms": 1767225600190,
        "exchange_index": 0}


@pytest.mark.parametrize("field,value,words", [
    ("ts", 1e308, "ts"), ("ts_ms", 1e308, "ts_ms"), ("yes_price_dollars", "0.0000", "outside"),
    ("yes_price_dollars", "5.0000", "outside"), ("count_fp", "0.00", "above 0"), ("fee_cost", "-0.0100", "negative"),
    ("is_taker", "false", "true/false"), ("order_id", [], "not an id"), ("trade_id", ["x"], "not an id"),
    ("market_ticker", {"a": 1}, "not an id"), ("exchange_index", -3, "exchange_index"),
    ("client_order_id", 7, "client_order_id"), ("post_position_fp", 1.5, "post_position_fp"),
])
def test_nonsense_fills_are_refused_logged_counted_and_skipped(ws, rec, field, value, words, caplog):
    msg = dict(FILL)
    if field == "ts":
        del msg["ts_ms"]
    msg[field] = value
    assert ws.handle_frame(frame(type="fill", sid=6, msg=msg), 1) == NOT_BOOK
    assert rec.of("on_fill") == [] and ws.stats.malformed == 1 and ws.stats.bad_by_type == {"fill": 1}
    (err,), = rec.of("on_error")
    assert words in str(err) and "unreadable fill" in str(err)
    assert any("bad fill message skipped" in r.message and words in r.message for r in caplog.records)
    ws.handle_frame(frame(type="fill", sid=6, msg=FILL), 2)   # a good one still passes
    (fill,), = rec.of("on_fill")
    assert (fill.price, fill.count, fill.exchange_index, fill.is_taker) == (4100, 500, 0, False)


def test_post_only_cross_cancel_is_a_cancel_with_its_reason_not_an_error(ws, rec):
    ws.handle_frame(frame(type="user_order", sid=7, msg={
        "order_id": "o1", "ticker": "A", "status": "canceled", "book_side": "bid", "yes_price_dollars": "0.5600",
        "fill_count_fp": "0.00", "remaining_count_fp": "0.00", "initial_count_fp": "10.00",
        "last_update_reason": "PostOnlyCrossCancel", "exchange_index": 3, "created_ts_ms": 1}), 1)
    (o,), = rec.of("on_user_order")
    assert o.status == "canceled" and o.post_only_crossed and o.exchange_index == 3 and rec.of("on_error") == []


def test_exchange_index_is_read_on_orders_positions_and_fills(ws, rec):
    ws.handle_frame(frame(type="market_position", sid=8, msg={
        "market_ticker": "A", "position_fp": "2.50", "position_cost_dollars": "1.0000",
        "realized_pnl_dollars": "0.0000", "fees_paid_dollars": "0.0000", "exchange_index": 2}), 1)
    (p,), = rec.of("on_market_position")
    assert (p.position, p.exchange_index) == (250, 2)
    assert orjson.loads(frame(a=1)) == {"a": 1}


async def test_market_position_is_handed_over_after_the_read_in_arrival_order(ws, rec, caplog):
    """On a running loop a market_position (a check nothing decides on) reaches the handler after the
    socket read it came in: a fill in the same read is handed over first, whatever the order of the
    frames; positions keep their arrival order; an unreadable one is still counted and reported."""
    ws._loop = asyncio.get_running_loop()
    pos = {"market_ticker": "A", "position_fp": "2.50", "position_cost_dollars": "1.0000",
           "realized_pnl_dollars": "0.0000", "fees_paid_dollars": "0.0000", "exchange_index": 0}
    ws.handle_frame(frame(type="market_position", sid=8, msg=pos), 1)
    ws.handle_frame(frame(type="market_position", sid=8, msg=dict(pos, position_fp="3.00")), 2)
    ws.handle_frame(frame(type="market_position", sid=8, msg=dict(pos, position_fp="lots")), 3)
    ws.handle_frame(frame(type="fill", sid=6, msg=FILL), 4)
    assert rec.of("on_market_position") == [] and len(rec.of("on_fill")) == 1 and ws.stats.malformed == 0
    await asyncio.sleep(0)
    assert [(p.position, p.recv_ns) for (p,) in rec.of("on_market_position")] == [(250, 1), (300, 2)]
    assert ws.stats.bad_by_type == {"market_position": 1}
    (err,), = rec.of("on_error")
    assert "unreadable market_position" in str(err) and "position_fp" in str(err)
    assert any("bad market_position message skipped" in r.message for r in caplog.records)
