"""WebSocket conformance: handshake auth, commands and errors, channels, seq, book equality, pings."""

import asyncio
import random

import aiohttp
import pytest

from kmm.sim import SimConfig, SimExchange
from tests.sim.client import SimClient, WsBook
from tests.sim.conftest import DECI, LIN


async def test_handshake_without_or_with_bad_auth_is_refused(sim: SimExchange, alice: SimClient):
    async with SimClient(sim.rest_url, sim.ws_url, None, None) as anon:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await anon.ws(auth=False)
        assert e.value.status == 401
    alice.ts_offset_ms = -120_000
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await alice.ws()
    assert e.value.status == 401


@pytest.mark.parametrize("cmd,params,code", [
    ("subscribe", None, 2),
    ("subscribe", {"channels": []}, 3),
    ("subscribe", {"channels": ["nope"]}, 8),
    ("subscribe", {"channels": ["orderbook_delta"]}, 14),
    ("subscribe", {"channels": ["orderbook_delta"], "market_ticker": "KXNOPE"}, 16),
    ("unsubscribe", {}, 4),
    ("unsubscribe", {"sids": [99]}, 7),
    ("update_subscription", {"sids": [1, 2], "action": "add_markets"}, 12),
    ("frobnicate", {}, 5),
])
async def test_bad_commands_answer_kalshi_error_codes(sim: SimExchange, alice: SimClient, cmd, params, code):
    ws = await alice.ws()
    cid = await ws.send(cmd, params)
    m = await ws.recv()
    assert m == {"id": cid, "type": "error", "msg": {"code": code, "msg": m["msg"]["msg"]}}
    await ws.close()


async def test_subscribe_update_list_and_unsubscribe_follow_kalshi_shapes(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    cid = await ws.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": LIN})
    assert await ws.recv() == {"id": cid, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
    snap = await ws.recv()
    assert snap["type"] == "orderbook_snapshot" and snap["sid"] == 1 and snap["seq"] == 1
    assert "yes_dollars_fp" not in snap["msg"] and "no_dollars_fp" not in snap["msg"]  # empty sides omitted
    cid = await ws.send("update_subscription", {"sids": [1], "action": "add_markets", "market_tickers": [DECI]})
    snap2 = await ws.recv()
    assert snap2["type"] == "orderbook_snapshot" and snap2["seq"] == 2 and snap2["msg"]["market_ticker"] == DECI
    ok = await ws.recv()
    assert ok == {"id": cid, "sid": 1, "seq": 2, "type": "ok", "msg": {"market_tickers": sorted([LIN, DECI])}}
    cid = await ws.send("update_subscription", {"sid": 1, "action": "get_snapshot", "market_tickers": [LIN]})
    assert (await ws.recv())["seq"] == 3
    assert (await ws.recv())["type"] == "ok"
    cid = await ws.send("update_subscription", {"sid": 1, "action": "explode", "market_tickers": [LIN]})
    assert (await ws.recv())["msg"]["code"] == 13
    cid = await ws.send("update_subscription", {"sid": 1, "market_tickers": [LIN]})
    assert (await ws.recv())["msg"]["code"] == 15
    cid = await ws.send("update_subscription", {"sid": 1, "action": "delete_markets", "market_tickers": [DECI]})
    assert (await ws.recv())["msg"] == {"market_tickers": [LIN]}
    cid = await ws.send("subscribe", {"channels": ["ticker", "trade"]})
    assert [(await ws.recv())["msg"]["sid"] for _ in range(2)] == [2, 3]
    cid = await ws.send("list_subscriptions")
    assert await ws.recv() == {"id": cid, "type": "ok", "msg": [
        {"channel": "orderbook_delta", "sid": 1}, {"channel": "ticker", "sid": 2}, {"channel": "trade", "sid": 3}]}
    cid = await ws.send("unsubscribe", {"sids": [1]})
    assert await ws.recv() == {"id": cid, "sid": 1, "seq": 3, "type": "unsubscribed"}
    await ws.close()


async def test_own_deltas_carry_client_order_id_and_others_do_not(sim: SimExchange, alice: SimClient,
                                                                 bob: SimClient):
    wa, wb = await alice.ws(), await bob.ws()
    for w in (wa, wb):
        await w.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": LIN})
        await w.recv_until(lambda m: m["type"] == "orderbook_snapshot")
    _, placed = await alice.place(LIN, "bid", "0.4100", "25.00")
    da, db = await wa.recv(), await wb.recv()
    assert da["msg"]["client_order_id"] == placed["client_order_id"] and da["msg"]["subaccount"] == 0
    assert "client_order_id" not in db["msg"]
    for d in (da, db):
        assert d["type"] == "orderbook_delta" and d["seq"] == 2
        assert {k: d["msg"][k] for k in ("market_ticker", "price_dollars", "delta_fp", "side")} == {
            "market_ticker": LIN, "price_dollars": "0.4100", "delta_fp": "25.00", "side": "yes"}
        assert isinstance(d["msg"]["ts_ms"], int) and d["msg"]["market_id"]
    await bob.place(LIN, "ask", "0.4100", "5.00")  # fills: the maker level shrinks
    da, db = await wa.recv(), await wb.recv()
    assert da["msg"]["delta_fp"] == "-5.00" and da["seq"] == 3
    assert da["msg"]["client_order_id"] == placed["client_order_id"]  # the maker's own fill reduction
    assert db["msg"]["delta_fp"] == "-5.00" and "client_order_id" not in db["msg"]
    await bob.place(LIN, "ask", "0.4500", "2.00")  # an ask shows on the NO side at 1 - p
    db = await wb.recv()
    assert db["msg"]["side"] == "no" and db["msg"]["price_dollars"] == "0.5500" and db["msg"]["delta_fp"] == "2.00"
    await wa.close()
    await wb.close()


async def test_private_channels_carry_kalshi_fields_without_seq(sim: SimExchange, alice: SimClient,
                                                               bob: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["fill", "user_orders", "market_positions"]})
    await ws.drain(0.1)
    await bob.place(LIN, "ask", "0.4000", "10.00")
    _, placed = await alice.place(LIN, "bid", "0.4000", "4.00", tif="immediate_or_cancel")
    frames = await ws.drain(0.2)
    kinds = [f["type"] for f in frames]
    assert kinds.count("fill") == 1 and kinds.count("market_position") == 1 and kinds.count("user_order") == 1
    assert all("seq" not in f for f in frames)
    fill = next(f for f in frames if f["type"] == "fill")["msg"]
    assert {k: fill[k] for k in ("order_id", "client_order_id", "market_ticker", "is_taker", "yes_price_dollars",
                                 "count_fp", "fee_cost", "outcome_side", "book_side", "post_position_fp",
                                 "side", "action", "purchased_side")} == {
        "order_id": placed["order_id"], "client_order_id": placed["client_order_id"], "market_ticker": LIN,
        "is_taker": True, "yes_price_dollars": "0.4000", "count_fp": "4.00", "fee_cost": "0.0700",
        "outcome_side": "yes", "book_side": "bid", "post_position_fp": "4.00", "side": "yes", "action": "buy",
        "purchased_side": "yes"}
    assert fill["trade_id"] and isinstance(fill["ts_ms"], int) and isinstance(fill["ts"], int)
    pos = next(f for f in frames if f["type"] == "market_position")["msg"]
    assert pos["position_fp"] == "4.00" and pos["position_cost_dollars"] == "1.6000"
    assert pos["fees_paid_dollars"] == "0.0700" and pos["realized_pnl_dollars"] == "0.0000"
    uo = next(f for f in frames if f["type"] == "user_order")["msg"]
    assert uo["status"] == "executed" and uo["fill_count_fp"] == "4.00" and uo["remaining_count_fp"] == "0.00"
    assert uo["initial_count_fp"] == "4.00" and uo["taker_fill_cost_dollars"] == "1.6000"
    assert uo["taker_fees_dollars"] == "0.0700" and uo["ticker"] == LIN and uo["book_side"] == "bid"
    await ws.close()


async def test_trade_and_ticker_channels_report_public_activity(sim: SimExchange, alice: SimClient,
                                                               bob: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["trade", "ticker"], "market_tickers": [LIN],
                                "send_initial_snapshot": True})
    first = await ws.drain(0.1)
    assert [f["type"] for f in first].count("ticker") == 1
    await bob.place(LIN, "ask", "0.6000", "3.00")
    await alice.place(LIN, "bid", "0.6000", "2.00")
    frames = await ws.drain(0.2)
    trade = next(f for f in frames if f["type"] == "trade")
    assert "seq" in trade and trade["msg"]["count_fp"] == "2.00" and trade["msg"]["taker_outcome_side"] == "yes"
    assert trade["msg"]["yes_price_dollars"] == "0.6000" and trade["msg"]["no_price_dollars"] == "0.4000"
    tick = [f for f in frames if f["type"] == "ticker"][-1]
    assert "seq" not in tick
    assert tick["msg"]["price_dollars"] == "0.6000" and tick["msg"]["yes_ask_dollars"] == "0.6000"
    assert tick["msg"]["yes_ask_size_fp"] == "1.00" and tick["msg"]["volume_fp"] == "2.00"
    assert tick["msg"]["open_interest_fp"] == "2.00"
    await ws.close()


async def test_lifecycle_channel_reports_determination_and_settlement(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["market_lifecycle_v2"]})
    await ws.recv()
    await sim.settle(LIN, "no")
    a, b = await ws.recv(), await ws.recv()
    assert (a["msg"]["event_type"], b["msg"]["event_type"]) == ("determined", "settled")
    assert a["msg"]["market_ticker"] == LIN and a["msg"]["result"] == "no" and b["seq"] == a["seq"] + 1
    await ws.close()


async def test_book_over_websocket_equals_rest_and_ground_truth_after_each_burst():
    cfg = SimConfig(seed=7, flow="busy", speed=2.0, rate_tier="off")
    async with SimExchange(cfg) as sim:
        key, pem = sim.create_key(balance="100000.00")
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            ws = await c.ws()
            await ws.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers})
            book = WsBook()
            rng = random.Random(3)
            t = sim.tickers[0]
            for burst in range(4):
                sim.flow_running = True
                for _ in range(8):
                    px = rng.randrange(30, 70) * 100
                    await c.place(t, rng.choice(["bid", "ask"]), f"0.{px:04d}", f"{rng.randint(1, 5)}.00",
                                  tif=rng.choice(["good_till_canceled", "immediate_or_cancel"]), stp="maker")
                await asyncio.sleep(0.15)
                sim.flow_running = False  # freeze the synthetic flow, then let the feed catch up
                for f in await ws.drain(0.1):
                    book.apply(f)
                st, rest = await c.get(f"/markets/{t}/orderbook")
                for tk in sim.tickers:
                    assert book.levels(tk) == sim.book(tk), (burst, tk)
                rest_yes = [(int(p.replace(".", "")), int(s.replace(".", ""))) for p, s in
                            rest["orderbook_fp"]["yes_dollars"]]
                rest_no = [(int(p.replace(".", "")), int(s.replace(".", ""))) for p, s in
                           rest["orderbook_fp"]["no_dollars"]]
                assert {"yes": rest_yes, "no": rest_no} == sim.book(t)
            assert sim.stats["trades"] > 0 and sim.stats["book_messages_out"] > 50
            await ws.close()


async def test_server_pings_with_heartbeat_and_drops_a_client_that_stops_ponging():
    cfg = SimConfig(flow="off", ping_interval_s=0.1, pong_timeout_s=0.2)
    async with SimExchange(cfg) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            assert c.session is not None
            hdrs = c.headers("GET", "/trade-api/ws/v2")
            ws = await c.session.ws_connect(sim.ws_url, headers=hdrs, autoping=False)
            msg = await ws.receive(timeout=1)
            assert msg.type == aiohttp.WSMsgType.PING and msg.data == b"heartbeat"
            await ws.pong(msg.data)
            # now go silent: the server must cut us off
            closed = False
            for _ in range(40):
                msg = await ws.receive(timeout=1)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.ERROR):
                    closed = True
                    break
            assert closed
            assert sim.stats["ws_dropped_no_pong"] == 1
