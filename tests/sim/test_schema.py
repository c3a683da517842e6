"""Every sim answer carries the fields the late-2026 spec marks required, with the spec's types.

The field lists are data in tests/sim/spec_fields.py, read off kalshi-api.md; this file drives one session
that touches every endpoint and checks each answer (REST and WebSocket) against them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import ME_EVENT
from tests.sim.client import SimClient
from tests.sim.spec_fields import check, problems

LIN = "KXSIMA-26-A"
COMBO = "KXMVESIM-26-C1"  # shard 1


@pytest.fixture
async def dsim() -> AsyncIterator[SimExchange]:
    async with SimExchange(SimConfig(seed=1, flow="off", rate_tier="basic")) as s:
        yield s


def test_the_checker_catches_missing_mistyped_and_forbidden_fields():
    bad = {"ticker": 5, "fractional_trading_enabled": True}
    found = problems(bad, "market")
    assert "market.ticker: 5 is not str" in found
    assert "market.created_time: missing" in found
    assert "market.fractional_trading_enabled: present but removed from the protocol" in found
    assert problems({"balance": 1, "balance_dollars": "1.5", "portfolio_value": 0, "updated_ts": 0,
                     "balance_breakdown": []}, "balance") == ["balance.balance_dollars: '1.5' is not dollars"]


async def test_every_rest_and_ws_answer_carries_the_spec_required_fields(dsim: SimExchange):
    key, pem = dsim.create_key(balance="500.00", shard_balances={1: "100.00"})
    mkey, mpem = dsim.create_key(balance="500.00", shard_balances={1: "100.00"})
    async with SimClient(dsim.rest_url, dsim.ws_url, key, pem) as c, \
            SimClient(dsim.rest_url, dsim.ws_url, mkey, mpem) as mm:
        ws = await c.ws()
        await ws.send("subscribe", {"channels": ["fill", "user_orders", "order_group_updates",
                                                 "market_lifecycle_v2", "market_positions", "trade", "ticker"]})
        # market data
        st, body = await c.get("/markets", params={"limit": 1000})
        assert st == 200 and len(body["markets"]) == len(dsim.tickers)
        for m in body["markets"]:
            check(m, "market", m["ticker"])
        st, body = await c.get(f"/markets/{COMBO}")
        check(body["market"], "market")
        assert body["market"]["exchange_index"] == 1
        st, body = await c.get("/markets/orderbooks", params={"tickers": f"{LIN},{COMBO}"})
        assert st == 200 and [b["ticker"] for b in body["orderbooks"]] == [LIN, COMBO]
        for b in body["orderbooks"]:
            check(b, "orderbooks_item")
        st, body = await c.get("/series")
        assert st == 200 and body["series"]
        for s in body["series"]:
            check(s, "series", s["ticker"])
        st, body = await c.get("/series/KXSIMA")
        check(body["series"], "series")
        st, body = await c.get("/series/fee_changes")
        assert st == 200 and "series" not in body  # not swallowed by /series/{ticker}
        st, body = await c.get("/events", params={"with_nested_markets": "true"})
        assert st == 200
        for e in body["events"]:
            check(e, "event", e["event_ticker"])
            for m in e["markets"]:
                check(m, "market")
        st, body = await c.get(f"/events/{ME_EVENT}")
        check(body["event"], "event")
        for m in body["markets"]:
            check(m, "market")
        st, body = await c.get("/exchange/status")
        check(body, "exchange_status")
        st, body = await c.get("/exchange/schedule")
        check(body["schedule"], "schedule")
        st, body = await c.get("/historical/cutoff")
        check(body, "cutoff")
        st, body = await c.get("/account/endpoint_costs")
        check(body, "endpoint_costs")
        st, body = await c.get("/account/limits")
        check(body, "limits")

        # writes
        st, body = await c.req("POST", "/portfolio/order_groups/create", {"contracts_limit": 50})
        assert st == 201
        check(body, "group_create")
        gid = body["order_group_id"]
        st, body = await c.get(f"/portfolio/order_groups/{gid}")
        check(body, "group_get")
        await mm.place(LIN, "ask", "0.5000", "3.00")
        st, placed = await c.place(LIN, "bid", "0.5000", "1.50", order_group_id=gid)
        assert st == 201
        check(placed, "create_answer")
        st, rest = await c.place(LIN, "bid", "0.4000", "5.00")
        st, body = await c.req("POST", f"/portfolio/events/orders/{rest['order_id']}/amend",
                               {"ticker": LIN, "side": "bid", "price": "0.4100", "count": "4.00"})
        assert st == 200
        check(body, "amend_answer")
        st, body = await c.req("POST", f"/portfolio/events/orders/{rest['order_id']}/decrease", {"reduce_by": "1.00"})
        check(body, "decrease_answer")
        st, body = await c.req("DELETE", f"/portfolio/events/orders/{rest['order_id']}")
        check(body, "cancel_answer")
        st, body = await c.req("DELETE", "/portfolio/events/orders/batched", {"orders": [{"order_id": "gone"}]})
        check(body["orders"][0], "batch_cancel_failed")
        check(body["orders"][0]["error"], "error")
        await mm.place(COMBO, "ask", "0.3050", "2.00")
        st, combo = await c.place(COMBO, "bid", "0.3050", "2.00", exchange_index=1)
        assert st == 201 and combo["fill_count"] == "2.00"
        st, body = await c.req("POST", "/portfolio/intra_exchange_instance_transfer",
                               {"source": "event_contract", "destination": "event_contract", "amount": 10_000,
                                "source_exchange_shard": 0, "destination_exchange_shard": 2})
        assert st == 201
        check(body, "transfer_answer")
        st, body = await c.get(f"/portfolio/intra_exchange_instance_transfers/{body['transfer_id']}")
        check(body["transfer"], "transfer")

        # portfolio reads
        st, body = await c.get("/portfolio/orders")
        for o in body["orders"]:
            check(o, "order", o["order_id"])
        st, body = await c.get("/portfolio/fills")
        assert len(body["fills"]) == 2
        for f in body["fills"]:
            check(f, "fill")
        st, body = await c.get("/portfolio/positions")
        for p in body["market_positions"]:
            check(p, "market_position", p["ticker"])
        for e in body["event_positions"]:
            check(e, "event_position", e["event_ticker"])
        st, body = await c.get("/portfolio/balance")
        check(body, "balance")
        await dsim.settle(COMBO, "yes")
        st, body = await c.get("/portfolio/settlements")
        assert [s["ticker"] for s in body["settlements"]] == [COMBO]
        check(body["settlements"][0], "settlement")
        assert body["settlements"][0]["exchange_index"] == 1 and body["settlements"][0]["revenue"] == 200

        # websocket: fills, user orders, order group updates and a lifecycle event
        dsim.set_price_structure(LIN, "center_whole_edge_half_cent")
        frames = await ws.recv_until(lambda m: m.get("type") == "market_lifecycle_v2"
                                     and m["msg"]["event_type"] == "price_level_structure_updated")
        seen = {}
        for f in frames:
            seen.setdefault(f.get("type"), f)
        check(seen["fill"]["msg"], "ws_fill")
        check(seen["user_order"]["msg"], "user_order")
        check(seen["order_group_updates"]["msg"], "group_update")
        check(seen["market_position"]["msg"], "ws_position")
        check(seen["trade"]["msg"], "ws_trade")
        check(seen["ticker"]["msg"], "ws_ticker")
        assert isinstance(seen["order_group_updates"]["seq"], int)
        check(frames[-1]["msg"], "lifecycle_grid")
        await ws.ws.close()
