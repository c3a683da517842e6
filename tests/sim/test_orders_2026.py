"""2026 order semantics and limits: cancel-all, decrease, batch-cancel items, post-only crosses, limits, costs."""

from __future__ import annotations

import asyncio

import pytest

from kmm.sim import MarketSpec, SimConfig, SimExchange
from kmm.sim.ratelimit import TIERS
from tests.sim.client import SimClient
from tests.sim.conftest import DECI, LIN

S0 = MarketSpec("KXZERO-26-A")
S1 = MarketSpec("KXONE-26-A", exchange_index=1)


async def test_cancel_all_answers_204_and_cancels_on_every_shard_for_one_or_all_subaccounts():
    async with SimExchange(SimConfig(flow="off", rate_tier="off", markets=[S0, S1],
                                     cancel_all_tail_s=0)) as sim:
        key, pem = sim.create_key(shard_balances={1: "100.00"})
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            await c.place(S0.ticker, "bid", "0.1000", "1.00")
            await c.place(S1.ticker, "bid", "0.1000", "1.00")
            await c.place(S0.ticker, "bid", "0.1100", "1.00", subaccount=2)
            st, body = await c.req("DELETE", "/portfolio/events/orders", params={"subaccount": 2})
            assert st == 204 and body is None
            assert sorted(o["price"] for o in sim.orders(key, status="resting")) == [1000, 1000]
            st, body = await c.req("DELETE", "/portfolio/events/orders")
            assert st == 204 and body is None
            assert sim.orders(key, status="resting") == []


async def test_orders_placed_in_the_cancel_all_tail_are_cancelled_and_later_ones_rest():
    async with SimExchange(SimConfig(flow="off", rate_tier="off", markets=[S0], cancel_all_tail_s=0.3)) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            ws = await c.ws()
            await ws.send("subscribe", {"channels": ["user_orders"]})
            await ws.recv()
            st, _ = await c.req("DELETE", "/portfolio/events/orders")
            assert st == 204
            st, body = await c.place(S0.ticker, "bid", "0.1000", "1.00")
            assert st == 201  # accepted, then cancelled by the tail
            frames = await ws.recv_until(lambda m: m.get("type") == "user_order" and m["msg"]["status"] == "canceled")
            assert frames[-1]["msg"]["order_id"] == body["order_id"]
            assert sim.orders(key, status="resting") == []
            await asyncio.sleep(0.35)
            st, body = await c.place(S0.ticker, "bid", "0.1000", "1.00")
            assert [o["order_id"] for o in sim.orders(key, status="resting")] == [body["order_id"]]
            await ws.ws.close()


@pytest.mark.parametrize("body", [{}, {"reduce_by": "1.00", "reduce_to": "1.00"}])
async def test_decrease_takes_exactly_one_of_reduce_by_and_reduce_to(sim: SimExchange, alice: SimClient, body):
    _, o = await alice.place(LIN, "bid", "0.3000", "3.00")
    st, resp = await alice.req("POST", f"/portfolio/events/orders/{o['order_id']}/decrease", body)
    assert st == 400 and resp["error"]["code"] == "invalid_parameters"
    assert sim.orders(alice.key_id, status="resting")[0]["remaining"] == 300


async def test_batch_cancel_failed_items_carry_reduced_by_and_a_flat_error_without_ts(sim: SimExchange,
                                                                                      alice: SimClient):
    _, o = await alice.place(LIN, "bid", "0.3000", "3.00")
    st, body = await alice.req("DELETE", "/portfolio/events/orders/batched",
                               {"orders": [{"order_id": o["order_id"]}, {"order_id": "no-such"}]})
    ok, bad = body["orders"]
    assert ok["reduced_by"] == "3.00" and "ts_ms" in ok
    assert bad == {"order_id": "no-such", "reduced_by": "0.00",
                   "error": {"code": "order_not_found", "message": "order not found",
                             "details": bad["error"]["details"]}}


async def test_post_only_cross_reaches_the_ws_as_a_cancelled_user_order(sim: SimExchange, alice: SimClient,
                                                                        bob: SimClient):
    await bob.place(DECI, "ask", "0.4000", "1.00")
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["user_orders"]})
    await ws.recv()
    st, body = await alice.place(DECI, "bid", "0.4100", "1.00", post_only=True)
    assert st == 201 and body["fill_count"] == "0.00" and body["remaining_count"] == "0.00"
    frames = await ws.recv_until(lambda m: m.get("type") == "user_order")
    msg = frames[-1]["msg"]
    assert msg["order_id"] == body["order_id"] and msg["status"] == "canceled"
    assert msg["last_update_reason"] == "PostOnlyCrossCancel" and msg["fill_count_fp"] == "0.00"
    assert sim.fills(alice.key_id) == []
    await ws.ws.close()


@pytest.mark.parametrize("tier,read_burst,write_burst", [
    ("basic", 2, 1), ("advanced", 2, 2), ("expert", 1, 2), ("premier", 1, 2), ("paragon", 1, 2),
    ("prime", 1, 2), ("prestige", 1, 2)])
async def test_account_limits_report_refill_and_capacity_with_the_tiers_burst(tier, read_burst, write_burst):
    async with SimExchange(SimConfig(flow="off", rate_tier=tier, markets=[S0])) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            st, body = await c.get("/account/limits")
            read, write = TIERS[tier]
            assert body["usage_tier"] == tier
            assert body["read"] == {"refill_rate": read, "bucket_capacity": read * read_burst}
            assert body["write"] == {"refill_rate": write, "bucket_capacity": write * write_burst}
            assert body["grants"] == [{"exchange_instance": "event_contract", "level": tier, "source": "manual"}]


async def test_endpoint_costs_list_the_non_default_routes_and_need_no_auth(sim: SimExchange):
    async with SimClient(sim.rest_url, sim.ws_url, None, None) as anon:
        st, body = await anon.get("/account/endpoint_costs")
    assert st == 200 and body["default_cost"] == 10
    costs = {(e["method"], e["path"]): e["cost"] for e in body["endpoint_costs"]}
    assert costs[("DELETE", "/trade-api/v2/portfolio/events/orders/{order_id}")] == 2
    assert all(c != 10 for c in costs.values())


async def test_exchange_schedule_lists_the_thursday_trading_pause(sim: SimExchange, alice: SimClient):
    st, body = await alice.get("/exchange/schedule")
    hours = body["schedule"]["standard_hours"][0]
    assert hours["thursday"] == [{"open_time": "00:00", "close_time": "03:00"},
                                 {"open_time": "05:00", "close_time": "23:59"}]
    assert hours["monday"] == [{"open_time": "00:00", "close_time": "23:59"}]


async def test_amend_expiration_time_keeps_sets_or_clears_the_expiry(sim: SimExchange, alice: SimClient):
    import time as _t
    _, o = await alice.place(LIN, "bid", "0.3000", "2.00")
    oid = o["order_id"]
    amend = {"ticker": LIN, "side": "bid", "price": "0.3000", "count": "2.00"}
    st, _ = await alice.req("POST", f"/portfolio/events/orders/{oid}/amend",
                            {**amend, "expiration_time": int(_t.time()) + 1})
    assert st == 200
    st, got = await alice.get(f"/portfolio/orders/{oid}")
    assert got["order"]["expiration_time"] is not None
    st, _ = await alice.req("POST", f"/portfolio/events/orders/{oid}/amend", {**amend, "expiration_time": 0})
    st, got = await alice.get(f"/portfolio/orders/{oid}")
    assert st == 200 and got["order"]["expiration_time"] is None
    st, body = await alice.req("POST", f"/portfolio/events/orders/{oid}/amend", {**amend, "expiration_time": 5})
    assert st == 400 and body["error"]["code"] == "invalid_order"  # in the past
    st, _ = await alice.req("POST", f"/portfolio/events/orders/{oid}/amend",
                            {**amend, "expiration_time": int(_t.time()) + 1})
    await asyncio.sleep(2.1)
    assert sim.orders(alice.key_id, status="resting") == []  # expired


async def test_own_book_deltas_carry_the_orders_subaccount(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": LIN})
    await ws.recv()
    await ws.recv()  # snapshot
    st, o = await alice.place(LIN, "bid", "0.3000", "1.00", subaccount=3, client_order_id="sub-three")
    frames = await ws.recv_until(lambda m: m.get("type") == "orderbook_delta")
    msg = frames[-1]["msg"]
    assert msg["client_order_id"] == "sub-three" and msg["subaccount"] == 3 and msg["delta_fp"] == "1.00"
    await ws.ws.close()
