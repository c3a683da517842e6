"""Exchange shards (kalshi-api.md 10): per-shard cash, transfers, routing, write buckets, pauses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kmm.sim import MarketSpec, SimConfig, SimExchange
from tests.sim.client import SimClient

S0 = MarketSpec("KXZERO-26-A", fair_value=0.5)
S1 = MarketSpec("KXONE-26-A", exchange_index=1, price_level_structure="center_deci_edge_centi_cent", fair_value=0.5)
S1B = MarketSpec("KXONE-26-B", exchange_index=1, fair_value=0.5)


@pytest.fixture
async def two() -> AsyncIterator[SimExchange]:
    async with SimExchange(SimConfig(seed=1, flow="off", rate_tier="basic", shards=2, markets=[S0, S1, S1B])) as s:
        yield s


async def test_two_shard_run_keeps_cash_per_shard_and_needs_collateral_on_the_markets_shard(two: SimExchange):
    key, pem = two.create_key(balance="100.00")
    mkey, mpem = two.create_key(balance="100.00", shard_balances={1: "100.00"})
    async with SimClient(two.rest_url, two.ws_url, key, pem) as c, \
            SimClient(two.rest_url, two.ws_url, mkey, mpem) as mm:
        st, body = await c.get("/portfolio/balance")
        assert body["balance_dollars"] == "100.0000"
        assert body["balance_breakdown"] == [{"exchange_index": 0, "balance": "100.0000"},
                                             {"exchange_index": 1, "balance": "0.0000"}]
        # no money on shard 1: refused, with the way out in the message
        st, body = await c.place(S1.ticker, "bid", "0.5000", "1.00")
        assert st == 400 and body["error"]["code"] == "insufficient_balance"
        assert "intra_exchange_instance_transfer" in body["error"]["details"]
        st, body = await c.req("POST", "/portfolio/intra_exchange_instance_transfer",
                               {"source": "event_contract", "destination": "event_contract", "amount": 200_000,
                                "source_exchange_shard": 0, "destination_exchange_shard": 1,
                                "client_transfer_id": "t-1"})
        assert st == 201
        tid = body["transfer_id"]
        st, body = await c.get("/portfolio/balance")
        assert [r["balance"] for r in body["balance_breakdown"]] == ["80.0000", "20.0000"]
        assert body["balance_dollars"] == "100.0000"  # the total spans every shard
        st, body = await c.get("/portfolio/balance", params={"exchange_index": 1})
        assert body["balance_dollars"] == "20.0000" and len(body["balance_breakdown"]) == 1
        # trade on shard 1: cash moves there only
        await mm.place(S1.ticker, "ask", "0.4010", "10.00", exchange_index=1)
        st, body = await c.place(S1.ticker, "bid", "0.4010", "10.00", exchange_index=1)
        assert st == 201 and body["fill_count"] == "10.00"
        # $4.01 for the contracts plus the taker fee 0.07 x 10 x 0.401 x 0.599 = $0.168, charged as $0.17
        assert two.cash(key, 1) == 200_000 - 40_100 - 1700
        assert two.cash(key, 0) == 800_000
        st, body = await c.get("/portfolio/fills")
        assert [f["exchange_index"] for f in body["fills"]] == [1]
        st, body = await c.get("/portfolio/positions")
        assert [(p["ticker"], p["exchange_index"]) for p in body["market_positions"]] == [(S1.ticker, 1)]
        # a transfer of more than the free cash on the source shard is refused; history reads back
        st, body = await c.req("POST", "/portfolio/intra_exchange_instance_transfer",
                               {"source": "event_contract", "destination": "event_contract", "amount": 200_000,
                                "source_exchange_shard": 1, "destination_exchange_shard": 0})
        assert st == 400 and body["error"]["code"] == "insufficient_balance"
        st, body = await c.req("POST", "/portfolio/intra_exchange_instance_transfer",
                               {"source": "event_contract", "destination": "event_contract", "amount": 1,
                                "source_exchange_shard": 0, "destination_exchange_shard": 1,
                                "client_transfer_id": "t-1"})
        assert st == 409 and body["error"]["code"] == "transfer_already_exists"
        st, body = await c.get("/portfolio/intra_exchange_instance_transfers")
        assert [t["transfer_id"] for t in body["transfers"]] == [tid]
        assert body["transfers"][0]["amount"] == 200_000 and body["transfers"][0]["status"] == "complete"
        await two.settle(S1.ticker, "yes")
        assert two.cash(key, 1) == 200_000 - 40_100 - 1700 + 100_000  # $1 x 10 paid on shard 1


async def test_cancels_and_decreases_reach_the_orders_shard_only_when_routed_there(two: SimExchange):
    key, pem = two.create_key(balance="10.00", shard_balances={1: "10.00"})
    async with SimClient(two.rest_url, two.ws_url, key, pem) as c:
        st, o = await c.place(S1B.ticker, "bid", "0.2000", "3.00")  # no exchange_index: routed by ticker
        assert st == 201
        oid = o["order_id"]
        # an order id does not name its shard: without exchange_index or market_ticker the cancel goes to 0
        st, body = await c.req("DELETE", f"/portfolio/events/orders/{oid}")
        assert st == 404 and body["error"]["code"] == "order_not_found"
        st, body = await c.req("DELETE", f"/portfolio/events/orders/{oid}", params={"exchange_index": 0})
        assert st == 404
        st, body = await c.req("POST", f"/portfolio/events/orders/{oid}/decrease",
                               {"reduce_by": "1.00", "market_ticker": S1B.ticker})
        assert st == 200 and body["remaining_count"] == "2.00"
        st, body = await c.req("POST", f"/portfolio/events/orders/{oid}/decrease",
                               {"reduce_to": "1.00", "exchange_index": 1})
        assert st == 200 and body["remaining_count"] == "1.00"
        st, body = await c.req("DELETE", f"/portfolio/events/orders/{oid}", params={"market_ticker": S1B.ticker})
        assert st == 200 and body["reduced_by"] == "1.00"
        # naming the wrong shard for a ticker is refused
        st, body = await c.place(S1B.ticker, "bid", "0.2000", "1.00", exchange_index=0)
        assert st == 404 and body["error"]["code"] == "market_not_found"
        st, body = await c.place(S1B.ticker, "bid", "0.2000", "1.00", exchange_index=-1)
        assert st == 201  # -1 = route by ticker
        st, body = await c.req("DELETE", "/portfolio/events/orders/batched",
                               {"orders": [{"order_id": body["order_id"], "exchange_index": 1}]})
        assert body["orders"][0]["reduced_by"] == "1.00"


async def test_each_shard_has_its_own_write_bucket_and_batches_bill_the_unscoped_one(two: SimExchange):
    key, pem = two.create_key(balance="100.00", shard_balances={1: "100.00"})
    async with SimClient(two.rest_url, two.ws_url, key, pem) as c:
        # Basic: 100 write tokens/s, 1 s burst: 10 creates per bucket
        s1 = [(await c.place(S1B.ticker, "bid", "0.0100", "1.00", exchange_index=1))[0] for _ in range(11)]
        assert s1[:10] == [201] * 10 and s1[10] == 429
        s0 = [(await c.place(S0.ticker, "bid", "0.0100", "1.00"))[0] for _ in range(10)]
        assert s0 == [201] * 10  # shard 1's empty bucket does not slow shard 0
        # shard-1 orders routed by ticker (no exchange_index) bill the unscoped bucket, now empty too
        st, _ = await c.place(S1B.ticker, "bid", "0.0100", "1.00")
        assert st == 429


async def test_a_pause_on_one_shard_leaves_the_others_trading(two: SimExchange):
    key, pem = two.create_key(balance="10.00", shard_balances={1: "10.00"})
    two.pause_trading(shard=1)
    async with SimClient(two.rest_url, two.ws_url, key, pem) as c:
        st, body = await c.get("/exchange/status")
        assert body["trading_active"] is True  # top level = shard 0
        rows = {r["exchange_index"]: r for r in body["exchange_index_statuses"]}
        assert rows[1]["trading_active"] is False and rows[1]["exchange_active"] is True
        st, body = await c.place(S1B.ticker, "bid", "0.2000", "1.00")
        assert st == 409 and body["error"]["code"] == "trading_paused"
        st, body = await c.place(S0.ticker, "bid", "0.2000", "1.00")
        assert st == 201
        two.resume_exchange(shard=1)
        st, body = await c.place(S1B.ticker, "bid", "0.2000", "1.00")
        assert st == 201


async def test_default_markets_span_three_shards_and_every_market_has_an_event():
    async with SimExchange(SimConfig(flow="off", rate_tier="off")) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            st, body = await c.get("/markets", params={"limit": 1000})
            shards = {m["exchange_index"] for m in body["markets"]}
            assert shards == {0, 1, 2}
            st, ev = await c.get("/events", params={"limit": 200})
            events = {e["event_ticker"]: e for e in ev["events"]}
            assert {m["event_ticker"] for m in body["markets"]} == set(events)
            for m in body["markets"]:
                assert events[m["event_ticker"]]["exchange_index"] == m["exchange_index"]


async def test_events_filter_by_event_tickers_and_series():
    async with SimExchange(SimConfig(flow="off", rate_tier="off")) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            st, body = await c.get("/events", params={"tickers": "KXSIMWIN-26,KXBTCSIM-26"})
            assert sorted(e["event_ticker"] for e in body["events"]) == ["KXBTCSIM-26", "KXSIMWIN-26"]
            assert "markets" not in body["events"][0]
            st, body = await c.get("/events", params={"series_ticker": "KXBTCSIM"})
            assert [e["exchange_index"] for e in body["events"]] == [2]


async def test_markets_status_paused_lists_the_markets_of_paused_shards(two: SimExchange):
    key, pem = two.create_key()
    two.pause_exchange(shard=1)
    async with SimClient(two.rest_url, two.ws_url, key, pem) as c:
        st, body = await c.get("/markets", params={"status": "paused"})
        assert sorted(m["ticker"] for m in body["markets"]) == [S1.ticker, S1B.ticker]
        st, body = await c.get("/markets", params={"status": "open"})
        assert len(body["markets"]) == 3  # still active, only their shard is paused


def test_cli_markets_all_grids_selects_the_twelve_grid_set():
    from kmm.sim.cli import _markets
    from kmm.sim.wire import GRIDS
    cfg = SimConfig(markets=_markets("all-grids"))
    assert sorted(m.price_level_structure for m in cfg.market_specs()) == sorted(GRIDS)


async def test_target_balance_allocation_moves_free_capital_toward_the_targets():
    cfg = SimConfig(flow="off", rate_tier="off", shards=2, markets=[S0, S1, S1B], rebalance_interval_s=0.1)
    async with SimExchange(cfg) as sim:
        key, pem = sim.create_key(balance="100.00")
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            await c.place(S0.ticker, "bid", "0.5000", "20.00")  # holds $10.00 (+ fee estimate) on shard 0
            st, _ = await c.req("POST", "/portfolio/target_balance_allocation",
                                {"allocations": [{"exchange_index": 0, "percent": 75},
                                                 {"exchange_index": 1, "percent": 25}]})
            assert st == 200
            await asyncio.sleep(0.35)
            # free capital $90.00 (sum reservation): 25 % = $22.50 moves to shard 1, once
            assert sim.cash(key, 1) == 225_000 and sim.cash(key, 0) == 1_000_000 - 225_000
            st, body = await c.get("/portfolio/intra_exchange_instance_transfers")
            assert [t["amount"] for t in body["transfers"]] == [225_000]
            st, body = await c.get("/portfolio/target_balance_allocation")
            assert body["allocations"] == [{"exchange_index": 0, "percent": 75},
                                           {"exchange_index": 1, "percent": 25}]
            st, body = await c.req("POST", "/portfolio/target_balance_allocation",
                                   {"allocations": [{"exchange_index": 0, "percent": 70}]})
            assert st == 400 and body["error"]["code"] == "invalid_parameters"  # must sum to 100
