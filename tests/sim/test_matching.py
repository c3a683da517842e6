"""Matching rules: price-time priority, STP, post-only, IOC/FOK, amend/decrease, pause, expiry, groups."""

import asyncio
import time

from kmm.sim import SimExchange
from tests.sim.client import SimClient
from tests.sim.conftest import FRAC, LIN


async def test_price_time_priority_fills_better_price_then_earlier_order(sim: SimExchange, alice: SimClient,
                                                                        bob: SimClient):
    carol, pem = sim.create_key()
    async with SimClient(sim.rest_url, sim.ws_url, carol, pem) as c:
        _, first = await bob.place(LIN, "ask", "0.5000", "2.00")
        _, second = await c.place(LIN, "ask", "0.5000", "2.00")
        _, better = await c.place(LIN, "ask", "0.4900", "1.00")
        st, body = await alice.place(LIN, "bid", "0.5000", "4.00")
        assert body["fill_count"] == "4.00"
        # 1 @ 0.49 + 2 @ 0.50 (bob, first in time) + 1 @ 0.50 (carol); average 0.4975
        assert body["average_fill_price"] == "0.4975"
        by_order = {f["order_id"]: f["count"] for f in sim.fills() if not f["is_taker"]}
        assert by_order == {better["order_id"]: 100, first["order_id"]: 200, second["order_id"]: 100}


async def test_taker_at_cross_cancels_the_takers_remainder_and_keeps_partials(sim: SimExchange, alice: SimClient,
                                                                             bob: SimClient):
    await bob.place(LIN, "ask", "0.4000", "2.00")
    _, own = await alice.place(LIN, "ask", "0.4500", "5.00")
    await bob.place(LIN, "ask", "0.5000", "5.00")
    st, body = await alice.place(LIN, "bid", "0.5000", "10.00", stp="taker_at_cross")
    assert st == 201 and body["fill_count"] == "2.00" and body["remaining_count"] == "0.00"
    mine = {o["order_id"]: o for o in sim.orders(alice.key_id)}
    assert mine[own["order_id"]]["status"] == "resting"  # the maker order survives
    assert mine[body["order_id"]]["status"] == "canceled"


async def test_maker_stp_cancels_the_resting_own_order_and_keeps_matching(sim: SimExchange, alice: SimClient,
                                                                         bob: SimClient):
    _, own = await alice.place(LIN, "ask", "0.4500", "5.00")
    await bob.place(LIN, "ask", "0.4600", "5.00")
    st, body = await alice.place(LIN, "bid", "0.5000", "3.00", stp="maker")
    assert body["fill_count"] == "3.00" and body["average_fill_price"] == "0.4600"
    assert {o["order_id"]: o["status"] for o in sim.orders(alice.key_id)}[own["order_id"]] == "canceled"


async def test_post_only_that_would_cross_is_cancelled_and_rests_otherwise(sim: SimExchange, alice: SimClient,
                                                                          bob: SimClient):
    await bob.place(LIN, "ask", "0.5000", "1.00")
    st, body = await alice.place(LIN, "bid", "0.5000", "1.00", post_only=True)
    # since Jun 4 2026: accepted with nothing filled, then cancelled with reason PostOnlyCrossCancel
    assert st == 201 and body["fill_count"] == "0.00" and body["remaining_count"] == "0.00"
    st, got = await alice.get(f"/portfolio/orders/{body['order_id']}")
    assert got["order"]["status"] == "canceled" and got["order"]["last_update_reason"] == "PostOnlyCrossCancel"
    assert sim.book(LIN) == {"yes": [], "no": [(5000, 100)]}
    st, body = await alice.place(LIN, "bid", "0.4900", "1.00", post_only=True)
    assert st == 201 and body["remaining_count"] == "1.00"


async def test_ioc_fills_what_it_can_and_cancels_the_rest(sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(LIN, "ask", "0.5000", "3.00")
    st, body = await alice.place(LIN, "bid", "0.5000", "5.00", tif="immediate_or_cancel")
    assert body["fill_count"] == "3.00" and body["remaining_count"] == "0.00"
    assert sim.book(LIN) == {"yes": [], "no": []}
    assert [o["status"] for o in sim.orders(alice.key_id)] == ["canceled"]


async def test_fok_without_enough_volume_is_rejected_untouched_and_fills_fully_otherwise(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(LIN, "ask", "0.5000", "3.00")
    await bob.place(LIN, "ask", "0.5200", "3.00")
    st, body = await alice.place(LIN, "bid", "0.5100", "4.00", tif="fill_or_kill")
    assert st == 409 and body["error"]["code"] == "fok_insufficient_volume"
    assert sim.book(LIN)["no"] == [(4800, 300), (5000, 300)]
    st, body = await alice.place(LIN, "bid", "0.5200", "4.00", tif="fill_or_kill")
    assert st == 201 and body["fill_count"] == "4.00"


async def test_fok_meeting_own_order_under_taker_at_cross_is_a_self_cross_reject(sim: SimExchange,
                                                                                alice: SimClient):
    await alice.place(LIN, "ask", "0.5000", "3.00")
    st, body = await alice.place(LIN, "bid", "0.5000", "1.00", tif="fill_or_kill")
    assert st == 409 and body["error"]["code"] == "self_cross_attempt"


async def test_expiration_time_is_gtc_only_and_cancels_the_order_when_due(sim: SimExchange, alice: SimClient):
    st, body = await alice.place(LIN, "bid", "0.3000", "1.00", tif="immediate_or_cancel",
                                 expiration_time=int(time.time()) + 60)
    assert st == 400 and body["error"]["code"] == "invalid_order"
    st, body = await alice.place(LIN, "bid", "0.3000", "1.00", expiration_time=int(time.time()) + 1)
    assert st == 201
    for _ in range(60):
        if sim.book(LIN)["yes"] == []:
            break
        await asyncio.sleep(0.05)
    assert sim.book(LIN)["yes"] == []
    assert sim.orders(alice.key_id)[0]["status"] == "canceled"


async def test_decrease_keeps_queue_priority(sim: SimExchange, alice: SimClient, bob: SimClient):
    _, a = await alice.place(LIN, "bid", "0.4000", "5.00")
    await bob.place(LIN, "bid", "0.4000", "5.00")
    st, body = await alice.req("POST", f"/portfolio/events/orders/{a['order_id']}/decrease", {"reduce_to": "2.00"})
    assert st == 200 and body["remaining_count"] == "2.00"
    st, q = await alice.get(f"/portfolio/orders/{a['order_id']}/queue_position")
    assert q["queue_position_fp"] == "0.00"
    st, body = await alice.req("POST", f"/portfolio/events/orders/{a['order_id']}/decrease", {"reduce_by": "1.00"})
    assert body["remaining_count"] == "1.00"
    st, body = await alice.req("POST", f"/portfolio/events/orders/{a['order_id']}/decrease", {"reduce_to": "3.00"})
    assert st == 400
    st, body = await alice.req("POST", f"/portfolio/events/orders/{a['order_id']}/decrease",
                               {"reduce_to": "0.50", "reduce_by": "0.50"})
    assert st == 400
    assert sim.book(LIN)["yes"] == [(4000, 600)]


async def test_amend_size_down_keeps_priority_and_size_up_or_reprice_loses_it(sim: SimExchange, alice: SimClient,
                                                                             bob: SimClient):
    _, a = await alice.place(LIN, "bid", "0.4000", "5.00")
    await bob.place(LIN, "bid", "0.4000", "5.00")
    amend = f"/portfolio/events/orders/{a['order_id']}/amend"
    st, body = await alice.req("POST", amend, {"ticker": LIN, "side": "bid", "price": "0.4000", "count": "4.00"})
    assert st == 200 and body["remaining_count"] == "4.00"
    _, q = await alice.get(f"/portfolio/orders/{a['order_id']}/queue_position")
    assert q["queue_position_fp"] == "0.00"
    st, body = await alice.req("POST", amend, {"ticker": LIN, "side": "bid", "price": "0.4000", "count": "6.00"})
    assert st == 200 and body["remaining_count"] == "6.00"
    _, q = await alice.get(f"/portfolio/orders/{a['order_id']}/queue_position")
    assert q["queue_position_fp"] == "5.00"  # behind bob now
    st, body = await alice.req("POST", amend, {"ticker": LIN, "side": "ask", "price": "0.4000", "count": "6.00"})
    assert st == 400  # side must match


async def test_amend_count_is_the_new_total_and_an_amend_may_cross_and_fill(sim: SimExchange, alice: SimClient,
                                                                           bob: SimClient):
    await bob.place(LIN, "ask", "0.4500", "2.00")
    _, a = await alice.place(LIN, "bid", "0.4500", "5.00")  # fills 2, rests 3
    amend = f"/portfolio/events/orders/{a['order_id']}/amend"
    st, body = await alice.req("POST", amend, {"ticker": LIN, "side": "bid", "price": "0.4500", "count": "2.00"})
    assert st == 400  # not above the filled 2
    await bob.place(LIN, "ask", "0.4800", "10.00")
    st, body = await alice.req("POST", amend, {"ticker": LIN, "side": "bid", "price": "0.4800", "count": "6.00",
                                               "updated_client_order_id": "renamed"})
    assert st == 200 and body["fill_count"] == "6.00" and body["remaining_count"] == "0.00"
    assert body["client_order_id"] == "renamed"
    assert sim.book(LIN)["no"] == [(5200, 600)]


async def test_trading_pause_cancels_cancel_on_pause_orders_and_rejects_new_ones(sim: SimExchange,
                                                                                 alice: SimClient):
    _, keep = await alice.place(LIN, "bid", "0.3000", "1.00")
    _, gone = await alice.place(LIN, "bid", "0.3100", "1.00", cancel_order_on_pause=True)
    sim.pause_trading()
    status = {o["order_id"]: o["status"] for o in sim.orders(alice.key_id)}
    assert status == {keep["order_id"]: "resting", gone["order_id"]: "canceled"}
    st, body = await alice.get("/exchange/status")
    assert body["trading_active"] is False and body["exchange_active"] is True
    st, body = await alice.place(LIN, "bid", "0.3000", "1.00")
    assert st == 409 and body["error"]["code"] == "trading_paused"
    st, _ = await alice.req("DELETE", f"/portfolio/events/orders/{keep['order_id']}")
    assert st == 200  # cancels still work in a trading pause
    sim.resume_exchange()
    assert (await alice.place(LIN, "bid", "0.3000", "1.00"))[0] == 201


async def test_exchange_pause_refuses_cancels_and_decreases_too(sim: SimExchange, alice: SimClient):
    _, keep = await alice.place(LIN, "bid", "0.3000", "2.00")
    sim.pause_exchange()
    st, body = await alice.get("/exchange/status")
    assert body["exchange_active"] is False and body["trading_active"] is False
    st, body = await alice.req("DELETE", f"/portfolio/events/orders/{keep['order_id']}")
    assert st == 409 and body["error"]["code"] == "exchange_paused"
    st, body = await alice.req("POST", f"/portfolio/events/orders/{keep['order_id']}/decrease", {"reduce_by": "1.00"})
    assert st == 409 and body["error"]["code"] == "exchange_paused"
    st, body = await alice.place(LIN, "bid", "0.3000", "1.00")
    assert st == 409 and body["error"]["code"] == "exchange_paused"
    assert [o["remaining"] for o in sim.orders(alice.key_id, status="resting")] == [200]
    sim.resume_exchange()
    st, _ = await alice.req("DELETE", f"/portfolio/events/orders/{keep['order_id']}")
    assert st == 200 and sim.orders(alice.key_id, status="resting") == []


async def test_reduce_only_is_capped_to_the_position_and_refused_when_flat(sim: SimExchange, alice: SimClient,
                                                                          bob: SimClient):
    st, body = await alice.place(LIN, "ask", "0.5000", "1.00", reduce_only=True)
    assert st == 400 and body["error"]["code"] == "reduce_only_would_increase"
    await bob.place(LIN, "ask", "0.5000", "3.00")
    await alice.place(LIN, "bid", "0.5000", "3.00")
    st, body = await alice.place(LIN, "ask", "0.6000", "10.00", reduce_only=True)
    assert st == 201 and body["remaining_count"] == "3.00"


async def test_every_market_trades_hundredths_of_a_contract(sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(FRAC, "ask", "0.4550", "0.50")
    st, body = await alice.place(FRAC, "bid", "0.4550", "0.25")
    assert st == 201 and body["fill_count"] == "0.25"
    assert sim.position(alice.key_id, FRAC)["position"] == 25
    await bob.place(LIN, "ask", "0.4500", "1.00")
    st, body = await alice.place(LIN, "bid", "0.4500", "0.25")
    assert st == 201 and body["fill_count"] == "0.25"
    st, body = await alice.place(LIN, "bid", "0.4500", "0.255")
    assert st == 400 and body["error"]["code"] == "invalid_count"


async def test_order_group_triggers_at_its_limit_cancels_resting_and_rejects_until_reset(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    st, body = await alice.req("POST", "/portfolio/order_groups/create", {"contracts_limit": 5})
    assert st == 201
    gid = body["order_group_id"]
    _, resting = await alice.place(LIN, "bid", "0.3000", "10.00", order_group_id=gid)
    _, quote = await alice.place(LIN, "ask", "0.6000", "10.00", order_group_id=gid)
    await bob.place(LIN, "bid", "0.6000", "5.00", tif="immediate_or_cancel")  # matches 5 -> limit hit
    status = {o["order_id"]: o["status"] for o in sim.orders(alice.key_id)}
    assert status[resting["order_id"]] == "canceled" and status[quote["order_id"]] == "canceled"
    st, body = await alice.place(LIN, "bid", "0.3000", "1.00", order_group_id=gid)
    assert st == 409 and body["error"]["code"] == "exceeded_order_group_risk_limit"
    st, g = await alice.get(f"/portfolio/order_groups/{gid}")
    assert st == 200 and g["is_auto_cancel_enabled"] is True
    assert (await alice.req("PUT", f"/portfolio/order_groups/{gid}/reset"))[0] == 200
    assert (await alice.place(LIN, "bid", "0.3000", "1.00", order_group_id=gid))[0] == 201
    st, lst = await alice.get("/portfolio/order_groups")
    assert [x["order_group_id"] for x in lst["order_groups"]] == [gid]


async def test_order_group_manual_trigger_limit_change_and_delete(sim: SimExchange, alice: SimClient,
                                                                 bob: SimClient):
    _, g = await alice.req("POST", "/portfolio/order_groups/create", {"contracts_limit_fp": "100.00"})
    gid = g["order_group_id"]
    await alice.place(LIN, "bid", "0.3000", "1.00", order_group_id=gid)
    assert (await alice.req("PUT", f"/portfolio/order_groups/{gid}/trigger"))[0] == 200
    assert sim.orders(alice.key_id, status="resting") == []
    await alice.req("PUT", f"/portfolio/order_groups/{gid}/reset")
    await alice.place(LIN, "ask", "0.6000", "10.00", order_group_id=gid)
    await bob.place(LIN, "bid", "0.6000", "3.00", tif="immediate_or_cancel")
    # lowering the limit below current usage triggers the group
    assert (await alice.req("PUT", f"/portfolio/order_groups/{gid}/limit", {"contracts_limit": 2}))[0] == 200
    assert sim.orders(alice.key_id, status="resting") == []
    await alice.req("PUT", f"/portfolio/order_groups/{gid}/reset")
    await alice.place(LIN, "bid", "0.2000", "1.00", order_group_id=gid)
    assert (await alice.req("DELETE", f"/portfolio/order_groups/{gid}"))[0] == 200
    assert sim.orders(alice.key_id, status="resting") == []
    st, body = await alice.get(f"/portfolio/order_groups/{gid}")
    assert st == 404 and body["error"]["code"] == "order_group_not_found"
