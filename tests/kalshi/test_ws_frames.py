"""The WebSocket client's frame handling, driven frame by frame without a network."""

from __future__ import annotations

import logging

import orjson
import pytest

from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.ws import DELTA, GAP, MALFORMED, NOT_BOOK, SNAPSHOT, STALE_SKIPPED, FeedHandler, KalshiWs
from kmm._core.book import OrderBook
from kmm._core.wire import BookRouter


class Recorder(FeedHandler):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def __getattribute__(self, name):  # record every on_* callback with its arguments
        if name.startswith("on_") and name != "on_raw_frame":
            events = object.__getattribute__(self, "events")
            return lambda *a: events.append((name, *a))
        return object.__getattribute__(self, name)

    def of(self, name):
        return [e[1:] for e in self.events if e[0] == name]


class Sent:
    """Stands in for the picows transport: records commands."""

    def __init__(self) -> None:
        self.cmds: list[dict] = []

    def send(self, _type, data: bytes) -> None:
        self.cmds.append(orjson.loads(data))


def frame(**obj) -> bytes:
    return orjson.dumps(obj)


def snapshot(sid, seq, ticker, yes=(("0.4100", "25.00"),), no=(("0.5500", "40.00"),)):
    return frame(type="orderbook_snapshot", sid=sid, seq=seq,
                 msg={"market_ticker": ticker, "market_id": "id", "yes_dollars_fp": [list(lv) for lv in yes],
                      "no_dollars_fp": [list(lv) for lv in no]})


def delta(sid, seq, ticker, price="0.4100", d="-5.00", side="yes"):
    return frame(type="orderbook_delta", sid=sid, seq=seq,
                 msg={"market_ticker": ticker, "market_id": "id", "price_dollars": price, "delta_fp": d,
                      "side": side, "ts_ms": 1})


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def ws(rec):
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook)
    client.add_markets(["A", "B"])
    client._transport = Sent()  # as if connected, with sids assigned
    for sid, ch in ((1, "orderbook_delta"), (2, "ticker"), (3, "trade")):
        client._sid_channel[sid] = ch
        client._channel_sid[ch] = sid
        client._channel_markets[ch] = {"A", "B"}
    return client


def test_snapshot_then_delta_update_the_book_and_call_back(ws, rec):
    assert ws.handle_frame(snapshot(1, 2, "A"), 100) == SNAPSHOT
    assert rec.of("on_book_ready") == [("A",)]
    assert ws.handle_frame(delta(1, 3, "A"), 101) == DELTA
    assert ws.book("A").levels()[0] == [(4100, 2000)]
    assert rec.of("on_book") == [("A", 100), ("A", 101)]


def test_seq_gap_marks_books_stale_at_once_and_requests_snapshots(ws, rec):
    ws.handle_frame(snapshot(1, 2, "A"), 1)
    ws.handle_frame(snapshot(1, 3, "B"), 2)
    assert ws.handle_frame(delta(1, 5, "A"), 3) == GAP
    assert sorted(rec.of("on_book_stale")) == [("A", "seq gap on sid 1"), ("B", "seq gap on sid 1")]
    cmd = ws._transport.cmds[-1]
    assert cmd["cmd"] == "update_subscription"
    assert cmd["params"] == {"sids": [1], "action": "get_snapshot", "market_tickers": ["A", "B"]}
    assert ws.handle_frame(delta(1, 6, "A"), 4) == STALE_SKIPPED
    assert ws.handle_frame(snapshot(1, 7, "A"), 5) == SNAPSHOT
    assert rec.of("on_book_ready")[-1] == ("A",) and ws.is_ready("A") and not ws.is_ready("B")
    assert ws.stats.gaps == 1 and ws.stats.resync_requests == 1


def test_user_messages_become_typed_records(ws, rec):
    ws.handle_frame(frame(type="fill", sid=9, msg={
        "trade_id": "t1", "order_id": "o1", "client_order_id": "c1", "market_ticker": "A", "is_taker": True,
        "book_side": "ask", "yes_price_dollars": "0.6000", "count_fp": "1.50", "fee_cost": "0.0200",
        "post_position_fp": "-1.50", "ts_ms": 5}), 10)
    ws.handle_frame(frame(type="user_order", sid=10, msg={
        "order_id": "o1", "ticker": "A", "status": "executed", "book_side": "ask", "yes_price_dollars": "0.6000",
        "fill_count_fp": "1.50", "remaining_count_fp": "0.00", "initial_count_fp": "1.50",
        "client_order_id": "c1", "created_ts_ms": 1}), 11)
    ws.handle_frame(frame(type="market_position", sid=11, msg={
        "market_ticker": "A", "position_fp": "-1.50", "position_cost_dollars": "0.6000",
        "realized_pnl_dollars": "0.0000", "fees_paid_dollars": "0.0200", "volume_fp": "1.50"}), 12)
    ws.handle_frame(frame(type="trade", sid=3, seq=1, msg={
        "trade_id": "t1", "market_ticker": "A", "yes_price_dollars": "0.6000", "count_fp": "1.50",
        "taker_book_side": "ask", "ts_ms": 5}), 13)
    ws.handle_frame(frame(type="ticker", sid=2, msg={
        "market_ticker": "A", "price_dollars": "0.6000", "yes_bid_dollars": "0.5900", "yes_ask_dollars": "0.6100",
        "volume_fp": "10.00", "open_interest_fp": "4.00", "ts_ms": 6}), 14)
    (fill,), = rec.of("on_fill")
    assert (fill.side, fill.price, fill.count, fill.fee, fill.post_position, fill.recv_ns) == \
        ("ask", 6000, 150, 200, -150, 10)
    (order,), = rec.of("on_user_order")
    assert (order.status, order.fill_count, order.remaining_count, order.recv_ns) == ("executed", 150, 0, 11)
    (pos,), = rec.of("on_market_position")
    assert (pos.position, pos.fees_paid) == (-150, 200)
    (trade,), = rec.of("on_trade")
    assert (trade.trade_id, trade.taker_side, trade.recv_ns) == ("t1", "ask", 13)
    (tick,), = rec.of("on_ticker")
    assert (tick.yes_bid, tick.yes_ask, tick.ts_ms) == (5900, 6100, 6)


def test_duplicate_fill_is_surfaced_once_and_counted(ws, rec):
    f = frame(type="fill", sid=9, msg={"trade_id": "t1", "order_id": "o1", "market_ticker": "A",
                                       "book_side": "bid", "yes_price_dollars": "0.4000", "count_fp": "1.00",
                                       "fee_cost": "0.0000", "ts_ms": 1})
    ws.handle_frame(f, 1)
    ws.handle_frame(f, 2)
    assert len(rec.of("on_fill")) == 1 and ws.stats.duplicate_fills == 1


@pytest.mark.parametrize("data", [
    b"{not json", b"[1,2,3]",
    orjson.dumps({"type": "fill", "sid": 9, "msg": {"trade_id": "t"}}),
    orjson.dumps({"type": "user_order", "msg": {"order_id": "o", "ticker": "A", "status": "resting",
                                                "book_side": "bid", "yes_price_dollars": "zero"}}),
])
def test_malformed_frames_are_counted_logged_and_never_raise(ws, rec, data, caplog):
    with caplog.at_level(logging.WARNING, logger="kmm.kalshi.ws"):
        status = ws.handle_frame(data, 1)
    assert status in (NOT_BOOK, MALFORMED) and ws.stats.malformed == 1  # caught by the router or by us
    assert not rec.of("on_fill") and not rec.of("on_user_order")
    assert caplog.records and len(caplog.records[0].getMessage()) < 600


def test_malformed_book_frame_is_counted(ws):
    bad = frame(type="orderbook_delta", sid=1, seq=3, msg={"market_ticker": "A", "price_dollars": "x",
                                                           "delta_fp": "1.00", "side": "yes"})
    ws.handle_frame(snapshot(1, 2, "A"), 1)
    assert ws.handle_frame(bad, 2) == MALFORMED and ws.stats.malformed == 1


def test_unknown_type_is_counted_not_fatal(ws):
    ws.handle_frame(frame(type="brand_new_channel", msg={}), 1)
    assert ws.stats.unknown_type == 1


def test_raw_frame_hook_sees_every_frame_with_receive_time(rec):
    got = []

    class Capture(FeedHandler):
        def on_raw_frame(self, recv_ns, data):
            got.append((recv_ns, data))

    cfg = ConnectorConfig(env="sim", rest_url="http://x/trade-api/v2", ws_url="ws://x/trade-api/ws/v2")
    client = KalshiWs(cfg, Capture(), router=BookRouter(), book_factory=OrderBook)
    client.add_markets(["A"])
    client.handle_frame(snapshot(1, 1, "A"), 77)
    client.handle_frame(b"garbage", 78)
    assert got == [(77, snapshot(1, 1, "A")), (78, b"garbage")]


def test_raw_capture_comes_after_the_frames_callbacks_and_in_arrival_order():
    """The capture's enqueue is off the path from a frame to its decision: on_book (where the maker
    decides) runs first; the capture still sees every frame once, in order, even one whose callback
    raised."""
    order: list[tuple[str, int]] = []

    class H(FeedHandler):
        def on_raw_frame(self, recv_ns, data):
            order.append(("raw", recv_ns))

        def on_book(self, ticker, recv_ns):
            order.append(("book", recv_ns))
            if recv_ns == 3:
                raise RuntimeError("a callback that fails")

    cfg = ConnectorConfig(env="sim", rest_url="http://x/trade-api/v2", ws_url="ws://x/trade-api/ws/v2")
    client = KalshiWs(cfg, H(), router=BookRouter(), book_factory=OrderBook)
    client.add_markets(["A"])
    client.handle_frame(snapshot(1, 1, "A"), 1)
    client.handle_frame(delta(1, 2, "A"), 2)
    client.handle_frame(delta(1, 3, "A", d="-1.00"), 3)
    client.handle_frame(b"garbage", 4)
    assert order == [("book", 1), ("raw", 1), ("book", 2), ("raw", 2), ("book", 3), ("raw", 3), ("raw", 4)]
    assert client.stats.callback_errors == 1


def test_error_frame_needing_resubscribe_resubscribes_the_channel(ws, rec):
    ws.handle_frame(snapshot(1, 2, "A"), 1)
    ws.handle_frame(frame(id=9, type="error", sid=1, msg={"code": 25, "msg": "Subscription buffer overflow"}), 2)
    (err,), = rec.of("on_error")
    assert err.code == 25
    cmds = [(c["cmd"], c["params"]) for c in ws._transport.cmds]
    assert ("unsubscribe", {"sids": [1]}) in cmds
    assert ("subscribe", {"channels": ["orderbook_delta"], "market_tickers": ["A", "B"]}) in cmds
    assert ("A", "resubscribing") in rec.of("on_book_stale")


def test_add_and_remove_markets_update_subscriptions(ws, rec):
    ws.add_markets({"C": None})
    ws.remove_markets(["A"])
    cmds = [c["params"] for c in ws._transport.cmds]
    assert {"sids": [1], "action": "add_markets", "market_tickers": ["C"]} in cmds
    assert {"sids": [1], "action": "delete_markets", "market_tickers": ["A"]} in cmds
    assert {"sids": [2], "action": "add_markets", "market_tickers": ["C"]} in cmds
    assert ws.markets == ["B", "C"]


async def test_snapshots_not_arriving_in_time_fall_back_to_resubscribe(rec):
    from tests.kalshi.conftest import FakeClock
    clock = FakeClock()
    cfg = ConnectorConfig(env="sim", rest_url="http://x/trade-api/v2", ws_url="ws://x/trade-api/ws/v2",
                          ws_dead_after_s=60)
    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook, clock_ns=clock, resync_timeout_s=2)
    client.add_markets(["A"])
    client._transport = Sent()
    client._sid_channel[1] = "orderbook_delta"
    client._channel_sid["orderbook_delta"] = 1
    client._channel_markets["orderbook_delta"] = {"A"}
    client.stats.last_recv_ns = clock()
    client.handle_frame(snapshot(1, 2, "A"), clock())
    client.handle_frame(delta(1, 9, "A"), clock())  # gap -> get_snapshot
    clock.advance(1)
    client.stats.last_recv_ns = clock()
    client._check_alive()
    assert client.stats.resubscribes == 0
    clock.advance(1.5)
    client.stats.last_recv_ns = clock()
    client._check_alive()
    assert client.stats.resubscribes == 1
    cmds = [(c["cmd"], c["params"]) for c in client._transport.cmds]
    assert ("unsubscribe", {"sids": [1]}) in cmds
    assert ("subscribe", {"channels": ["orderbook_delta"], "market_tickers": ["A"]}) in cmds
    client._stop_watchdog()


async def test_nothing_received_for_dead_after_drops_the_connection(rec):
    from tests.kalshi.conftest import FakeClock
    clock = FakeClock()
    cfg = ConnectorConfig(env="sim", rest_url="http://x/trade-api/v2", ws_url="ws://x/trade-api/ws/v2",
                          ws_dead_after_s=10)

    class T(Sent):
        dropped = False

        def disconnect(self, graceful=True):
            self.dropped = True

    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook, clock_ns=clock)
    client._transport = T()
    client.stats.last_recv_ns = clock()
    clock.advance(9.9)
    client._check_alive()
    assert not client._transport.dropped
    clock.advance(0.2)
    client._check_alive()
    assert client._transport.dropped and client.stats.dead_detected == 1
    client._stop_watchdog()


def test_a_desync_delta_on_a_ready_book_reports_it_stale_and_asks_for_a_snapshot(ws, rec):
    ws.handle_frame(snapshot(1, 2, "A"), 100)
    assert ws.handle_frame(delta(1, 3, "A", d="-99.00"), 101) == MALFORMED    # would go negative
    assert rec.of("on_book_stale") == [("A", "book desync")]
    snap = [c for c in ws._transport.cmds if c["cmd"] == "update_subscription"]
    assert snap and snap[-1]["params"]["action"] == "get_snapshot" and snap[-1]["params"]["market_tickers"] == ["A"]
    assert ws.handle_frame(snapshot(1, 4, "A"), 102) == SNAPSHOT
    assert rec.of("on_book_ready") == [("A",), ("A",)]


def test_a_user_channel_error_is_reported_like_a_reconnect_and_books_are_resnapshotted(ws, rec):
    ws._sid_channel[9] = "fill"
    ws._channel_sid["fill"] = 9
    ws.handle_frame(snapshot(1, 2, "A"), 100)
    ws.handle_frame(frame(type="error", sid=9, msg={"code": 25, "msg": "Subscription buffer overflow"}), 101)
    assert [e[0] for e in rec.events].count("on_disconnected") == 1
    assert rec.of("on_book_stale") == [("A", "user channel error 25")]
    cmds = [c["cmd"] for c in ws._transport.cmds]
    assert "unsubscribe" in cmds and "subscribe" in cmds and "update_subscription" in cmds


def test_an_unreadable_fill_is_reported_so_the_engine_can_backfill(ws, rec):
    bad = frame(type="fill", sid=9, msg={"trade_id": "t1", "order_id": "o1", "market_ticker": "A",
                                         "yes_price_dollars": "0.4100", "count_fp": "not-a-number"})
    assert ws.handle_frame(bad, 100) == NOT_BOOK
    errors = rec.of("on_error")
    assert errors and "unreadable fill" in str(errors[-1][0])
    assert not rec.of("on_fill")


class PicowsTransport:
    """A real picows ``WSTransport`` over a recording stand-in for the socket transport (what it writes
    goes to ``sent``): the compiled listener takes only picows' own types. ``close()`` when done."""

    def __init__(self) -> None:
        import asyncio
        import logging
        import socket

        from picows.picows import WSTransport
        outer = self

        class _Under:
            def write(self, b: bytes) -> None:
                outer.sent.append(bytes(b))

            def get_write_buffer_size(self) -> int:
                return 0

            def get_extra_info(self, name: str, default: object = None) -> object:
                return outer._sock if name == "socket" else default

            def is_closing(self) -> bool:
                return False

        self.sent: list[bytes] = []
        self._sock = socket.socket()
        self._loop = asyncio.new_event_loop()
        self.transport = WSTransport(True, _Under(), logging.getLogger("kmm.test"), self._loop)

    def close(self) -> None:
        self._sock.close()
        self._loop.close()


def listeners() -> list[object]:
    """Both picows listeners of the connector: the Python one and the compiled one."""
    from kmm._core.listener import FeedListener
    from kmm.kalshi.ws import _Listener
    return [_Listener, FeedListener]


def text(data: bytes, last: bool) -> object:
    """A complete text frame as picows hands it over (``last``: the last frame of its socket read)."""
    from picows import WSMsgType

    from kmm._core.listener import make_frame
    return make_frame(WSMsgType.TEXT, data, True, last)


@pytest.mark.parametrize("listener", listeners(), ids=["python", "compiled"])
def test_frames_of_one_read_carry_the_reads_receive_stamp(rec, listener):
    """A frame that arrived in the same socket read as earlier frames is stamped when the read was
    handed over (the first frame's stamp), not when its own turn came after the earlier frames'
    callbacks: the time those took is part of its latency. Both listeners."""
    from picows import WSMsgType
    from picows.picows import _make_test_ws_frame
    now = iter(range(1000, 100_000, 1000))
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook, clock_ns=lambda: next(now))
    client.add_markets(["A", "B"])
    client._transport = Sent()
    client._sid_channel[1], client._channel_sid["orderbook_delta"] = "orderbook_delta", 1
    client._channel_markets["orderbook_delta"] = {"A", "B"}
    lis = listener(client)
    # read 1: one frame (picows' own test frame: last in its buffer)
    lis.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, snapshot(1, 2, "A"), True, False))
    # read 2: three frames; read 3: one
    lis.on_ws_frame(None, text(snapshot(1, 3, "B"), False))
    lis.on_ws_frame(None, text(delta(1, 4, "A"), False))
    lis.on_ws_frame(None, text(delta(1, 5, "B"), True))
    lis.on_ws_frame(None, text(delta(1, 6, "A", d="-1.00"), True))
    assert rec.of("on_book") == [("A", 1000), ("B", 2000), ("A", 2000), ("B", 2000), ("A", 3000)]
    assert client.stats.last_recv_ns == 3000


def test_the_compiled_listener_is_used_unless_turned_off_or_unloadable(rec, monkeypatch, caplog):
    """``compiled_listener`` (default on) gives each connection the compiled listener; off, the Python
    one; on but unloadable (a picows kmm was not built with), the Python one and one warning saying why
    and what to do."""
    import dataclasses

    from kmm._core.listener import FeedListener
    from kmm.kalshi import ws as wsmod
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    assert cfg.compiled_listener
    client = KalshiWs(cfg, rec, router=BookRouter(), book_factory=OrderBook)
    assert type(client._listener_factory()()) is FeedListener
    off = KalshiWs(dataclasses.replace(cfg, compiled_listener=False), rec, router=BookRouter(),
                   book_factory=OrderBook)
    assert type(off._listener_factory()()) is wsmod._Listener
    monkeypatch.setattr(wsmod, "_CompiledListener", None)
    monkeypatch.setattr(wsmod, "_NO_COMPILED_LISTENER", "picows.picows.WSFrame size changed")
    with caplog.at_level("WARNING", logger="kmm.kalshi.ws"):
        assert type(client._listener_factory()()) is wsmod._Listener
        assert type(client._listener_factory()()) is wsmod._Listener
    said = [r.message for r in caplog.records if "compiled WebSocket listener" in r.message]
    assert len(said) == 1 and "size changed" in said[0] and "reinstall kmm" in said[0]
