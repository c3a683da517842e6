"""REST conformance: auth, market data, V2 order endpoints, reads, error bodies and statuses."""

import time

import pytest

from kmm.sim import SimConfig, SimExchange
from tests.sim.client import SimClient
from tests.sim.conftest import DECI, FRAC, LIN, TAPER


# -- auth --------------------------------------------------------------------------------------------
async def test_public_market_data_needs_no_auth_but_portfolio_does(sim: SimExchange):
    async with SimClient(sim.rest_url, sim.ws_url, None, None) as anon:
        st, body = await anon.get("/exchange/status")
        assert st == 200 and body["exchange_active"] is True and body["trading_active"] is True
        assert [r["exchange_index"] for r in body["exchange_index_statuses"]] == [0, 1, 2, 3]
        st, body = await anon.get("/markets")
        assert st == 200 and len(body["markets"]) == 5
        st, body = await anon.get("/portfolio/balance")
        assert st == 401 and body["error"]["code"] == "missing_auth"


async def test_unknown_key_answers_401(sim: SimExchange):
    _, pem = sim.create_key()
    async with SimClient(sim.rest_url, sim.ws_url, "not-a-key", pem) as c:
        st, body = await c.get("/portfolio/balance")
        assert st == 401 and body["error"]["code"] == "unknown_api_key"


async def test_signature_by_another_key_answers_401(sim: SimExchange):
    key, _ = sim.create_key()
    _, other_pem = sim.create_key()
    async with SimClient(sim.rest_url, sim.ws_url, key, other_pem) as c:
        st, body = await c.get("/portfolio/balance")
        assert st == 401 and body["error"]["code"] == "invalid_signature"


async def test_signature_over_the_path_with_query_string_is_rejected(sim: SimExchange, alice: SimClient):
    assert alice.session is not None
    path = "/trade-api/v2/portfolio/orders"
    hdrs = alice.headers("GET", path + "?limit=5")  # our helper strips it: sign the query by hand instead
    ts = hdrs["KALSHI-ACCESS-TIMESTAMP"]
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    sig = alice.key.sign((ts + "GET" + path + "?limit=5").encode(),  # type: ignore[union-attr]
                         padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    hdrs["KALSHI-ACCESS-SIGNATURE"] = base64.b64encode(sig).decode()
    async with alice.session.get(sim.rest_url + "/portfolio/orders?limit=5", headers=hdrs) as r:
        assert r.status == 401
    st, _ = await alice.get("/portfolio/orders", params={"limit": 5})  # signed without the query: fine
    assert st == 200


@pytest.mark.parametrize("offset_ms", [-61_000, 61_000])
async def test_timestamp_outside_the_window_answers_401(sim: SimExchange, alice: SimClient, offset_ms: int):
    alice.ts_offset_ms = offset_ms
    st, body = await alice.get("/portfolio/balance")
    assert st == 401 and body["error"]["code"] == "timestamp_out_of_window"
    alice.ts_offset_ms = 30_000
    st, _ = await alice.get("/portfolio/balance")
    assert st == 200


# -- market data -------------------------------------------------------------------------------------
async def test_market_object_carries_fixed_point_fields_and_price_ranges(sim: SimExchange, alice: SimClient):
    st, body = await alice.get(f"/markets/{TAPER}")
    m = body["market"]
    for field in ("ticker", "event_ticker", "market_type", "status", "result", "open_time", "close_time",
                  "expiration_time", "latest_expiration_time", "settlement_timer_seconds", "can_close_early",
                  "yes_bid_dollars", "yes_ask_dollars", "yes_bid_size_fp", "yes_ask_size_fp", "no_bid_dollars",
                  "no_ask_dollars", "last_price_dollars", "volume_fp", "volume_24h_fp", "open_interest_fp",
                  "notional_value_dollars", "price_level_structure", "price_ranges", "exchange_index"):
        assert field in m, field
    assert "fractional_trading_enabled" not in m and "tick_size" not in m  # removed by Kalshi in 2026
    assert m["status"] == "active" and m["market_type"] == "binary"
    assert m["price_ranges"] == [{"start": "0.0000", "end": "0.1000", "step": "0.0010"},
                                 {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
                                 {"start": "0.9000", "end": "1.0000", "step": "0.0010"}]
    assert "yes_bid" not in m and "volume" not in m  # legacy integer twins are gone
    st, body = await alice.get("/markets/NOPE")
    assert st == 404 and body["error"]["code"] == "market_not_found"


async def test_markets_list_filters_and_paginates_with_an_empty_last_cursor(sim: SimExchange, alice: SimClient):
    seen = []
    cursor = ""
    for _ in range(5):
        st, body = await alice.get("/markets", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [m["ticker"] for m in body["markets"]]
        cursor = body["cursor"]
        if not cursor:
            break
    assert seen == sim.tickers
    st, body = await alice.get("/markets", params={"tickers": f"{LIN},{DECI}"})
    assert [m["ticker"] for m in body["markets"]] == [LIN, DECI]
    st, body = await alice.get("/markets", params={"status": "open", "event_ticker": "KXT-26"})
    assert len(body["markets"]) == 4
    st, body = await alice.get("/markets", params={"series_ticker": "KXM"})
    assert len(body["markets"]) == 1
    st, body = await alice.get("/markets", params={"status": "settled"})
    assert body["markets"] == [] and body["cursor"] == ""
    st, body = await alice.get("/markets", params={"status": "bogus"})
    assert st == 400


async def test_orderbook_lists_yes_and_no_bids_ascending_with_depth(sim: SimExchange, alice: SimClient,
                                                                  bob: SimClient):
    for p in ("0.4000", "0.4200", "0.4100"):
        await alice.place(LIN, "bid", p, "1.00")
    for p in ("0.5000", "0.4500"):
        await bob.place(LIN, "ask", p, "2.00")
    st, body = await alice.get(f"/markets/{LIN}/orderbook", auth=False)
    assert body == {"orderbook_fp": {"yes_dollars": [["0.4000", "1.00"], ["0.4100", "1.00"], ["0.4200", "1.00"]],
                                     "no_dollars": [["0.5000", "2.00"], ["0.5500", "2.00"]]}}
    st, body = await alice.get(f"/markets/{LIN}/orderbook", params={"depth": 1})
    assert body["orderbook_fp"] == {"yes_dollars": [["0.4200", "1.00"]], "no_dollars": [["0.5500", "2.00"]]}
    st, body = await alice.get(f"/markets/{LIN}")
    assert body["market"]["yes_bid_dollars"] == "0.4200" and body["market"]["yes_ask_dollars"] == "0.4500"
    assert body["market"]["no_bid_dollars"] == "0.5500"


async def test_trades_endpoint_lists_trades_newest_first(sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(LIN, "ask", "0.6000", "3.00")
    await alice.place(LIN, "bid", "0.6000", "1.00")
    await alice.place(LIN, "bid", "0.6000", "2.00")
    st, body = await alice.get("/markets/trades", params={"ticker": LIN})
    assert st == 200 and [t["count_fp"] for t in body["trades"]] == ["2.00", "1.00"]
    t = body["trades"][0]
    assert t["yes_price_dollars"] == "0.6000" and t["no_price_dollars"] == "0.4000"
    assert t["taker_outcome_side"] == "yes" and t["taker_book_side"] == "bid"


# -- orders ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,code", [
    ("price", "0.4550", "invalid_price"),  # off the linear_cent grid
    ("price", "1.2000", "invalid_price"),
    ("price", 45, "invalid_price"),
    ("count", "1.555", "invalid_count"),  # counts have 0.01 steps
    ("count", "1.001", "invalid_count"),
    ("count", "0", "invalid_count"),
    ("side", "buy", "invalid_parameters"),
    ("time_in_force", "day", "invalid_parameters"),
    ("self_trade_prevention_type", "none", "invalid_parameters"),
    ("post_only", "yes", "invalid_parameters"),
])
async def test_invalid_order_fields_answer_400_with_the_field_named(sim: SimExchange, alice: SimClient,
                                                                     field, value, code):
    body = alice.order(LIN, "bid", "0.4500", "1.00")
    body[field] = value
    st, resp = await alice.req("POST", "/portfolio/events/orders", body)
    assert st == 400 and resp["error"]["code"] == code
    assert sim.orders(alice.key_id) == []


@pytest.mark.parametrize("missing", ["ticker", "client_order_id", "side", "count", "price", "time_in_force",
                                     "self_trade_prevention_type"])
async def test_missing_required_order_field_answers_400(sim: SimExchange, alice: SimClient, missing):
    body = alice.order(LIN, "bid", "0.4500", "1.00")
    del body[missing]
    st, resp = await alice.req("POST", "/portfolio/events/orders", body)
    assert st == 400 and resp["error"]["code"] == "missing_parameters" and missing in resp["error"]["details"]


async def test_grids_accept_their_steps_only(sim: SimExchange, alice: SimClient):
    assert (await alice.place(DECI, "bid", "0.4550", "1.00"))[0] == 201
    assert (await alice.place(TAPER, "bid", "0.0550", "1.00"))[0] == 201
    st, body = await alice.place(TAPER, "bid", "0.4550", "1.00")
    assert st == 400 and body["error"]["code"] == "invalid_price" and "tapered_deci_cent" in body["error"]["details"]
    assert (await alice.place(FRAC, "bid", "0.4550", "1.25"))[0] == 201


async def test_duplicate_client_order_id_answers_409(sim: SimExchange, alice: SimClient):
    st, _ = await alice.place(LIN, "bid", "0.4000", "1.00", client_order_id="same")
    assert st == 201
    st, body = await alice.place(LIN, "bid", "0.4100", "1.00", client_order_id="same")
    assert st == 409 and body["error"]["code"] == "order_already_exists"


async def test_market_not_found_on_order_answers_404(sim: SimExchange, alice: SimClient):
    st, body = await alice.place("KXNOPE-1", "bid", "0.4000", "1.00")
    assert st == 404 and body["error"]["code"] == "market_not_found"


@pytest.mark.parametrize("method,path", [
    ("POST", "/portfolio/orders"), ("DELETE", "/portfolio/orders/abc"), ("POST", "/portfolio/orders/abc/amend"),
    ("POST", "/portfolio/orders/abc/decrease"), ("POST", "/portfolio/orders/batched"),
    ("DELETE", "/portfolio/orders/batched"),
])
async def test_v1_order_paths_answer_410(sim: SimExchange, alice: SimClient, method, path):
    st, body = await alice.req(method, path, {"ticker": LIN})
    assert st == 410 and body["error"]["code"] == "deprecated_v1_order_endpoint"


async def test_cancel_answers_reduced_by_and_a_second_cancel_404(sim: SimExchange, alice: SimClient):
    _, placed = await alice.place(LIN, "bid", "0.4000", "7.00")
    st, body = await alice.req("DELETE", f"/portfolio/events/orders/{placed['order_id']}")
    assert st == 200 and body["reduced_by"] == "7.00" and body["order_id"] == placed["order_id"]
    assert body["client_order_id"] == placed["client_order_id"] and isinstance(body["ts_ms"], int)
    st, body = await alice.req("DELETE", f"/portfolio/events/orders/{placed['order_id']}")
    assert st == 404
    st, body = await alice.req("DELETE", "/portfolio/events/orders/no-such-order")
    assert st == 404 and body["error"]["code"] == "order_not_found"


async def test_batched_create_and_cancel_give_per_item_results(sim: SimExchange, alice: SimClient):
    orders = [alice.order(LIN, "bid", "0.3000", "1.00"), alice.order(LIN, "bid", "0.3050", "1.00"),
              alice.order(DECI, "ask", "0.7050", "2.00")]
    st, body = await alice.req("POST", "/portfolio/events/orders/batched", {"orders": orders})
    assert st == 201
    res = body["orders"]
    assert res[0]["order_id"] and res[0]["remaining_count"] == "1.00"
    assert res[1]["order_id"] is None and res[1]["error"]["code"] == "invalid_price"
    assert res[2]["order_id"] and res[2]["client_order_id"] == orders[2]["client_order_id"]
    st, body = await alice.req("DELETE", "/portfolio/events/orders/batched",
                               {"orders": [{"order_id": res[0]["order_id"]}, {"order_id": "nope"}]})
    assert st == 200
    assert body["orders"][0]["reduced_by"] == "1.00" and body["orders"][1]["error"]["code"] == "order_not_found"
    assert [o["ticker"] for o in sim.orders(alice.key_id, status="resting")] == [DECI]


async def test_cancel_all_cancels_every_resting_order_of_the_caller_only(sim: SimExchange, alice: SimClient,
                                                                       bob: SimClient):
    for p in ("0.1000", "0.2000"):
        await alice.place(LIN, "bid", p, "1.00")
    await alice.place(DECI, "bid", "0.1000", "1.00")
    await bob.place(LIN, "bid", "0.3000", "1.00")
    # Kalshi's cancel-all has no ticker filter: ?ticker= is ignored and every market's orders go, 204 no body
    st, body = await alice.req("DELETE", "/portfolio/events/orders", params={"ticker": LIN})
    assert st == 204 and body is None
    assert sim.orders(alice.key_id, status="resting") == []
    assert len(sim.orders(bob.key_id, status="resting")) == 1


async def test_legacy_cancel_all_keeps_the_per_ticker_filter_and_the_json_answer():
    async with SimExchange(SimConfig(flow="off", rate_tier="off", legacy_cancel_all=True)) as sim:
        key, pem = sim.create_key()
        a, b = sim.tickers[:2]
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            await c.place(a, "bid", "0.1000", "1.00")
            await c.place(b, "bid", "0.1000", "1.00")
            st, body = await c.req("DELETE", "/portfolio/events/orders", params={"ticker": a})
            assert st == 200 and [o["reduced_by"] for o in body["orders"]] == ["1.00"]
            assert [o["ticker"] for o in sim.orders(key, status="resting")] == [b]


async def test_order_reads_filter_and_paginate(sim: SimExchange, alice: SimClient):
    ids = []
    for i in range(5):
        _, b = await alice.place(LIN if i < 3 else DECI, "bid", "0.2000", "1.00")
        ids.append(b["order_id"])
    await alice.req("DELETE", f"/portfolio/events/orders/{ids[0]}")
    st, body = await alice.get("/portfolio/orders", params={"ticker": LIN, "status": "resting"})
    assert sorted(o["order_id"] for o in body["orders"]) == sorted(ids[1:3])
    st, body = await alice.get("/portfolio/orders", params={"status": "canceled"})
    assert [o["order_id"] for o in body["orders"]] == [ids[0]]
    st, body = await alice.get("/portfolio/orders", params={"min_ts": int(time.time()) + 100})
    assert body["orders"] == []
    st, p1 = await alice.get("/portfolio/orders", params={"limit": 3})
    st, p2 = await alice.get("/portfolio/orders", params={"limit": 3, "cursor": p1["cursor"]})
    assert p2["cursor"] == "" and len(p1["orders"]) + len(p2["orders"]) == 5
    st, one = await alice.get(f"/portfolio/orders/{ids[1]}")
    o = one["order"]
    assert o["status"] == "resting" and o["yes_price_dollars"] == "0.2000" and o["remaining_count_fp"] == "1.00"
    assert o["book_side"] == "bid" and o["outcome_side"] == "yes"
    st, _ = await alice.get("/portfolio/orders/nope")
    assert st == 404


async def test_queue_position_counts_contracts_ahead_at_the_same_price(sim: SimExchange, alice: SimClient,
                                                                      bob: SimClient):
    await bob.place(LIN, "bid", "0.4000", "3.00")
    _, mine = await alice.place(LIN, "bid", "0.4000", "2.00")
    st, body = await alice.get(f"/portfolio/orders/{mine['order_id']}/queue_position")
    assert st == 200 and body["queue_position_fp"] == "3.00"
    st, body = await alice.get("/portfolio/orders/queue_positions", params={"market_tickers": LIN})
    assert body["queue_positions"] == [{"order_id": mine["order_id"], "market_ticker": LIN,
                                        "queue_position_fp": "3.00"}]


async def test_account_limits_report_the_tier_buckets(sim: SimExchange, alice: SimClient):
    st, body = await alice.get("/account/limits")
    # rate_tier "off" enforces nothing and reports the largest tier, so a client sizing from it never limits
    assert st == 200 and body["usage_tier"] == "prestige"
    assert body["read"] == {"refill_rate": 10000, "bucket_capacity": 10000}
    assert body["write"] == {"refill_rate": 8000, "bucket_capacity": 16000}
    assert body["grants"] == [{"exchange_instance": "event_contract", "level": "prestige", "source": "manual"}]


async def test_rate_limit_answers_429_when_the_write_bucket_is_empty():
    async with SimExchange(SimConfig(flow="off", rate_tier="basic")) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            t = sim.tickers[0]
            # basic: write 100 tokens/s, burst 1 s = 100 tokens = 10 creates; then 429 with Kalshi's body
            statuses = [(await c.place(t, "bid", "0.0100", "1.00"))[0] for _ in range(12)]
            assert statuses[:10] == [201] * 10 and statuses[10] == 429
            st, body = await c.place(t, "bid", "0.0100", "1.00")
            assert st == 429 and body == {"error": "too many requests"}
            st, body = await c.get("/account/limits")
            assert st == 200 and body["usage_tier"] == "basic"
            assert body["write"] == {"refill_rate": 100, "bucket_capacity": 100}
            assert body["read"] == {"refill_rate": 200, "bucket_capacity": 400}
            assert sim.stats["rest_429"] >= 2
