"""Late-2026 WebSocket: order_group_updates with seq, lifecycle metadata/close-date events, error codes, events."""

from __future__ import annotations

import asyncio
import time

from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import ME_EVENT
from kmm.sim.hub import WS_ERRORS
from tests.sim.client import SimClient
from tests.sim.conftest import LIN


async def test_order_group_updates_stream_every_change_with_a_gapless_seq(sim: SimExchange, alice: SimClient,
                                                                         bob: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["order_group_updates"]})
    sub = await ws.recv()
    assert sub["msg"]["channel"] == "order_group_updates"
    st, g = await alice.req("POST", "/portfolio/order_groups/create", {"contracts_limit": 3})
    gid = g["order_group_id"]
    await alice.req("PUT", f"/portfolio/order_groups/{gid}/limit", {"contracts_limit": 2})
    await alice.place(LIN, "ask", "0.6000", "5.00", order_group_id=gid)
    await bob.place(LIN, "bid", "0.6000", "2.00", tif="immediate_or_cancel")  # 2 matched: the group fires
    await alice.req("PUT", f"/portfolio/order_groups/{gid}/reset")
    await alice.req("DELETE", f"/portfolio/order_groups/{gid}")
    frames = await ws.recv_until(lambda m: m.get("msg", {}).get("event_type") == "deleted")
    ups = [f for f in frames if f.get("type") == "order_group_updates"]
    assert [u["msg"]["event_type"] for u in ups] == ["created", "limit_updated", "triggered", "reset", "deleted"]
    assert all(u["msg"]["order_group_id"] == gid for u in ups)
    seqs = [u["seq"] for u in ups]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert ups[0]["msg"]["contracts_limit_fp"] == "3.00" and ups[1]["msg"]["contracts_limit_fp"] == "2.00"
    assert "contracts_limit_fp" not in ups[2]["msg"]
    await ws.ws.close()


async def test_close_time_and_metadata_changes_arrive_as_lifecycle_events(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["market_lifecycle_v2"], "market_tickers": [LIN]})
    await ws.recv()
    new_close = int(time.time()) + 3600
    sim.set_close_time(LIN, new_close)
    sim.update_metadata(LIN, floor_strike=42.5, yes_sub_title="Above 42.5")
    frames = await ws.recv_until(lambda m: m.get("msg", {}).get("event_type") == "metadata_updated")
    life = [f for f in frames if f.get("type") == "market_lifecycle_v2"]
    assert life[0]["msg"] == {"market_ticker": LIN, "event_type": "close_date_updated", "close_ts": new_close}
    assert life[1]["msg"] == {"market_ticker": LIN, "event_type": "metadata_updated", "floor_strike": 42.5,
                              "yes_sub_title": "Above 42.5"}
    assert life[1]["seq"] == life[0]["seq"] + 1
    st, body = await alice.get(f"/markets/{LIN}")
    m = body["market"]
    assert m["yes_sub_title"] == "Above 42.5" and m["floor_strike"] == 42.5
    assert m["close_time"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(new_close))
    await ws.ws.close()


def test_ws_error_table_holds_codes_one_to_twenty_eight():
    assert sorted(WS_ERRORS) == list(range(1, 29))
    assert WS_ERRORS[25] == "Subscription buffer overflow" and WS_ERRORS[28] == "Underlying tickers required"


async def test_the_mutually_exclusive_event_has_three_markets_with_synthetic_flow():
    async with SimExchange(SimConfig(seed=5, flow="busy", speed=2.0, rate_tier="off")) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            st, body = await c.get(f"/events/{ME_EVENT}")
            ev = body["event"]
            assert ev["mutually_exclusive"] is True and ev["collateral_return_type"] == "MECNET"
            tickers = [m["ticker"] for m in body["markets"]]
            assert len(tickers) == 3 and [m["ticker"] for m in ev["markets"]] == tickers
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                st, tr = await c.get("/markets/trades", params={"limit": 1000})
                traded = {t["market_ticker"] for t in tr["trades"]}
                if set(tickers) <= traded:
                    break
                await asyncio.sleep(0.2)
            assert set(tickers) <= traded  # the flow trades every market of the event
            for t in tickers:
                book = sim.book(t)
                assert book["yes"] and book["no"]


async def test_a_market_listed_mid_run_arrives_as_event_lifecycle_then_created(sim: SimExchange, alice: SimClient):
    from kmm.sim import MarketSpec
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["market_lifecycle_v2"]})
    await ws.recv()
    sim.add_market(MarketSpec("KXNEW-26-A", exchange_index=2, price_level_structure="center_half_edge_deci_cent"))
    frames = await ws.recv_until(lambda m: m.get("msg", {}).get("event_type") == "created")
    ev, created = frames[-2], frames[-1]
    assert ev["type"] == "event_lifecycle" and ev["msg"]["event_ticker"] == "KXNEW-26"
    assert ev["msg"]["exchange_index"] == 2
    msg = created["msg"]
    assert msg["market_ticker"] == "KXNEW-26-A" and msg["exchange_index"] == 2
    assert msg["price_level_structure"] == "center_half_edge_deci_cent" and len(msg["price_ranges"]) == 3
    assert isinstance(msg["open_ts"], int) and isinstance(msg["close_ts"], int)
    assert created["seq"] == ev["seq"] + 1
    st, body = await alice.get("/markets/KXNEW-26-A")
    assert st == 200 and body["market"]["exchange_index"] == 2
    await ws.ws.close()


def test_the_weekly_trading_pause_follows_thursday_three_to_five_eastern():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from kmm.sim.exchange import in_weekly_pause
    et = ZoneInfo("America/New_York")

    def ms(s: str) -> int:
        return int(datetime.strptime(s, "%Y-%m-%d %H:%M").replace(tzinfo=et).timestamp() * 1000)
    assert [in_weekly_pause(ms(s)) for s in ("2026-11-26 02:59", "2026-11-26 03:00", "2026-11-26 04:59",
                                              "2026-11-26 05:00", "2026-11-25 03:30")] == [
        False, True, True, False, False]


async def test_the_weekly_pause_switch_pauses_trading_and_resumes_it(sim: SimExchange, alice: SimClient):
    from datetime import datetime
    from zoneinfo import ZoneInfo
    et = ZoneInfo("America/New_York")
    inside = int(datetime(2026, 11, 26, 3, 30, tzinfo=et).timestamp() * 1000)
    _, keep = await alice.place(LIN, "bid", "0.3000", "1.00")
    sim._follow_weekly_pause(inside)  # noqa: SLF001 (the wall clock is injected here)
    st, body = await alice.place(LIN, "bid", "0.3000", "1.00")
    assert st == 409 and body["error"]["code"] == "trading_paused"
    st, _ = await alice.req("DELETE", f"/portfolio/events/orders/{keep['order_id']}")
    assert st == 200
    sim._follow_weekly_pause(inside + 2 * 3600 * 1000)  # noqa: SLF001
    assert (await alice.place(LIN, "bid", "0.3000", "1.00"))[0] == 201


async def test_ws_shard_params_and_market_limits_answer_codes_19_to_22_and_26(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    cases = [({"shard_factor": 0}, 19), ({"shard_key": 1}, 20), ({"shard_factor": 4, "shard_key": 4}, 21),
             ({"shard_factor": 101}, 22)]
    for extra, code in cases:
        cid = await ws.send("subscribe", {"channels": ["trade"], **extra})
        m = await ws.recv()
        assert m["id"] == cid and m["msg"]["code"] == code
    sim.cfg.ws_max_markets_per_sub = 1
    cid = await ws.send("subscribe", {"channels": ["ticker"], "market_tickers": sim.tickers[:2]})
    assert (await ws.recv())["msg"]["code"] == 26
    await ws.send("subscribe", {"channels": ["ticker"], "market_tickers": sim.tickers[:1]})
    sid = (await ws.recv())["msg"]["sid"]
    await ws.send("update_subscription", {"sid": sid, "action": "add_markets", "market_tickers": sim.tickers[1:2]})
    assert (await ws.recv())["msg"]["code"] == 26
    await ws.ws.close()


async def test_more_commands_than_the_per_second_limit_answer_code_27(sim: SimExchange, alice: SimClient):
    sim.cfg.ws_max_commands_per_s = 5
    ws = await alice.ws()
    for _ in range(7):
        await ws.send("list_subscriptions")
    got = [await ws.recv() for _ in range(7)]
    assert [m["type"] for m in got[:5]] == ["ok"] * 5
    assert [m["msg"]["code"] for m in got[5:]] == [27, 27]
    await ws.ws.close()


async def test_settling_the_mutually_exclusive_event_pays_only_the_winner():
    async with SimExchange(SimConfig(flow="off", rate_tier="off")) as sim:
        key, pem = sim.create_key()
        mkey, mpem = sim.create_key()
        reds, greens = f"{ME_EVENT}-RED", f"{ME_EVENT}-GREEN"
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c, \
                SimClient(sim.rest_url, sim.ws_url, mkey, mpem) as mm:
            for t in (reds, greens):
                await mm.place(t, "ask", "0.4000", "2.00")
                st, body = await c.place(t, "bid", "0.4000", "2.00")
                assert body["fill_count"] == "2.00"
            before = sim.cash(key)
            await sim.settle_event(ME_EVENT, greens)
            assert sim.cash(key) - before == 20_000  # $1 x 2 on GREEN, nothing on RED
            st, body = await c.get("/portfolio/settlements")
            assert {s["ticker"]: s["market_result"] for s in body["settlements"]} == {reds: "no", greens: "yes"}
            st, body = await c.get(f"/events/{ME_EVENT}")
            assert sorted(m["result"] for m in body["markets"]) == ["no", "no", "yes"]
