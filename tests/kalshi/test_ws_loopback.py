"""The WebSocket client against a scripted Kalshi-like server on 127.0.0.1: handshake, books, faults."""

from __future__ import annotations

import asyncio
import random

import pytest

from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.rest import KalshiRest
from kmm.kalshi.signing import Signer
from kmm.kalshi.ws import FeedHandler, KalshiWs
from kmm._core.book import OrderBook
from kmm._core.wire import BookRouter
from tests.kalshi.mini_exchange import MiniExchange

KEY_ID = "test-key-id"
TICKERS = ["KXA-1", "KXB-2", "KXC-3"]


class Events(FeedHandler):
    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.fills: list = []
        self.changed = asyncio.Event()

    def _add(self, *e) -> None:
        self.log.append(e)
        self.changed.set()

    def on_connected(self): self._add("connected")
    def on_disconnected(self, reason): self._add("disconnected", reason)
    def on_book_stale(self, ticker, reason): self._add("stale", ticker, reason)
    def on_book_ready(self, ticker): self._add("ready", ticker)
    def on_book(self, ticker, recv_ns): self._add("book", ticker)
    def on_fill(self, fill):
        self.fills.append(fill)
        self._add("fill", fill.trade_id)

    def count(self, kind, *args) -> int:
        return sum(1 for e in self.log if e[0] == kind and e[1:1 + len(args)] == args)

    async def until(self, pred, timeout=5.0) -> None:
        async def wait():
            while not pred():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def ex(rsa_key):
    async with MiniExchange(rsa_key.public_key(), KEY_ID, TICKERS, ping_interval_s=0.2) as server:
        yield server


def make_ws(ex, rsa_key, events, **kw) -> KalshiWs:
    cfg = ConnectorConfig(env="sim", rest_url=ex.rest_url, ws_url=ex.ws_url, reconnect_min_s=0.05,
                          reconnect_max_s=0.2, ws_dead_after_s=kw.pop("dead_after", 5.0))
    return KalshiWs(cfg, events, signer=Signer(KEY_ID, rsa_key), router=BookRouter(), book_factory=OrderBook,
                    rng=random.Random(1), **kw)


def ws_book(ws, ticker):
    yes, no = ws.book(ticker).levels()
    return {"yes": yes, "no": no}


async def rest_book(ex, rsa_key, ticker):
    cfg = ConnectorConfig(env="sim", rest_url=ex.rest_url, ws_url=ex.ws_url)
    async with KalshiRest(cfg, signer=Signer(KEY_ID, rsa_key)) as rest:
        b = await rest.get_orderbook(ticker)
    return {"yes": list(b.bids), "no": sorted((10000 - p, s) for p, s in b.asks)}


async def test_signed_handshake_subscribes_and_books_match_rest(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev)
    ws.add_markets({t: None for t in TICKERS[:2]})
    async with ws:
        await ev.until(lambda: ev.count("ready") == 2)
        assert ex.auth_failures == 0 and ev.count("connected") == 1
        await ex.push_delta("KXA-1", "yes", 4000, -300)
        await ex.push_delta("KXA-1", "no", 5100, 250)
        await ex.push_delta("KXA-1", "yes", 4100, -1000)
        await ev.until(lambda: ev.count("book", "KXA-1") == 4)
        assert ws_book(ws, "KXA-1") == await rest_book(ex, rsa_key, "KXA-1")
        assert ws_book(ws, "KXA-1")["yes"] == [(4000, 700), (4200, 1000)]


async def test_add_market_on_the_fly_gets_a_snapshot(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev)
    ws.add_markets(["KXA-1"])
    async with ws:
        await ev.until(lambda: ev.count("ready", "KXA-1") == 1)
        ws.add_markets(["KXC-3"])
        await ev.until(lambda: ev.count("ready", "KXC-3") == 1)
        assert ws_book(ws, "KXC-3") == await rest_book(ex, rsa_key, "KXC-3")
        ws.remove_markets(["KXA-1"])
        await asyncio.sleep(0.05)
        actions = [c["params"].get("action") for c in ex.commands if c["cmd"] == "update_subscription"]
        assert "add_markets" in actions and "delete_markets" in actions


async def test_skipped_seq_marks_stale_then_resyncs(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev)
    ws.add_markets(TICKERS[:2])
    async with ws:
        await ev.until(lambda: ev.count("ready") == 2)
        await ex.push_delta("KXA-1", "yes", 4000, -100, skip_seq=1)
        await ev.until(lambda: ev.count("ready", "KXA-1") == 2 and ev.count("ready", "KXB-2") == 2)
        assert ev.count("stale", "KXA-1") == 1 and ev.count("stale", "KXB-2") == 1
        assert ws.stats.gaps == 1
        await ex.push_delta("KXB-2", "no", 5000, -500)
        await ev.until(lambda: ws_book(ws, "KXB-2")["no"] == [(5100, 500), (5200, 500)])
        assert ws_book(ws, "KXA-1") == await rest_book(ex, rsa_key, "KXA-1")


async def test_dropped_connection_reconnects_resubscribes_and_resnapshots(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev)
    ws.add_markets(TICKERS[:2])
    async with ws:
        await ev.until(lambda: ev.count("ready") == 2)
        await ex.drop_connections()
        await ev.until(lambda: ev.count("connected") == 2 and ev.count("ready") == 4)
        kinds = [e[0] for e in ev.log if e[0] in ("stale", "disconnected", "connected")]
        assert kinds[:4] == ["connected", "stale", "stale", "disconnected"] and kinds[-1] == "connected"
        assert ex.ws_connects == 2 and ex.auth_failures == 0
        await ex.push_delta("KXA-1", "yes", 4200, 100)
        await ev.until(lambda: ws_book(ws, "KXA-1") == {"yes": [(4000, 1000), (4100, 1000), (4200, 1100)],
                                                         "no": [(5000, 500), (5100, 500), (5200, 500)]})


async def test_stalled_feed_is_detected_as_dead_and_reconnected(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev, dead_after=0.6)
    ws.add_markets(["KXA-1"])
    async with ws:
        await ev.until(lambda: ev.count("ready") == 1)
        ex.stalled = True
        await ev.until(lambda: ev.count("disconnected") == 1)
        ex.stalled = False
        await ev.until(lambda: ev.count("connected") == 2 and ev.count("ready") == 2)
        assert ws.stats.dead_detected == 1
        reason = next(e[1] for e in ev.log if e[0] == "disconnected")
        assert reason.startswith("dead")


async def test_pings_are_answered_with_the_same_payload(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev)
    ws.add_markets(["KXA-1"])
    async with ws:
        await ev.until(lambda: ev.count("ready") == 1)
        for _ in range(50):
            if ex.pongs:
                break
            await asyncio.sleep(0.05)
        assert ex.pongs and ex.pongs[0] == b"heartbeat" and ws.stats.pings >= 1


async def test_duplicate_fill_over_the_wire_is_surfaced_once(ex, rsa_key):
    ev = Events()
    ws = make_ws(ex, rsa_key, ev)
    ws.add_markets(["KXA-1"])
    fill = {"trade_id": "T1", "order_id": "O1", "market_ticker": "KXA-1", "book_side": "bid",
            "yes_price_dollars": "0.4000", "count_fp": "1.00", "fee_cost": "0.0070", "is_taker": True, "ts_ms": 9}
    async with ws:
        await ev.until(lambda: ev.count("connected") == 1)
        await ex.push_user("fill", fill)
        await ex.push_user("fill", fill)
        await ex.push_user("fill", {**fill, "trade_id": "T2"})
        await ev.until(lambda: len(ev.fills) == 2)
        assert [f.trade_id for f in ev.fills] == ["T1", "T2"] and ws.stats.duplicate_fills == 1


async def test_refused_handshake_reports_auth_error(ex, rsa_key):
    errors = []

    class H(FeedHandler):
        def on_error(self, err):
            errors.append(err)

    cfg = ConnectorConfig(env="sim", rest_url=ex.rest_url, ws_url=ex.ws_url, reconnect_min_s=0.05,
                          reconnect_max_s=0.1)
    ws = KalshiWs(cfg, H(), signer=Signer("wrong-id", rsa_key), router=BookRouter(), book_factory=OrderBook)
    with pytest.raises(Exception, match="no WebSocket connection"):
        await ws.start(timeout_s=0.5)
    await ws.close()
    assert errors and type(errors[0]).__name__ == "AuthError"
