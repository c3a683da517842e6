"""The REST client against the late-2026 protocol (kalshi-api.md section 12), on a scripted server on
127.0.0.1 that answers in the spec's shapes and records what the client sent (where kmm sim does not
have the feature yet). Each test checks what matters to money: which shard a write reaches, what a
cancel-all covers, whether an answer about another order is believed, how the buckets are sized."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from kmm.errors import ExchangeError
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.decode import WireError
from kmm.kalshi.rest import ExchangePaused, KalshiRest, ShardBalanceError, TradingPaused, transfer_command
from kmm.kalshi.types import PAUSE_EXCHANGE, PAUSE_NONE, PAUSE_TRADING, OrderRequest

P = "/trade-api/v2"


def market(ticker: str, shard: int | None, ranges: list[dict[str, str]] | None = None,
           structure: str = "linear_cent") -> dict[str, Any]:
    m = {"ticker": ticker, "event_ticker": "EV", "market_type": "binary", "status": "active",
         "yes_sub_title": "y", "no_sub_title": "n", "created_time": "2026-08-01T00:00:00Z",
         "updated_time": "2026-08-02T00:00:00Z", "open_time": "2026-08-01T00:00:00Z",
         "close_time": "2026-12-01T00:00:00Z", "latest_expiration_time": "2026-12-02T00:00:00Z",
         "settlement_timer_seconds": 60, "result": "", "can_close_early": True,
         "yes_bid_dollars": "0.4200", "yes_bid_size_fp": "10.00", "yes_ask_dollars": "0.4800",
         "yes_ask_size_fp": "5.00", "no_bid_dollars": "0.5200", "no_ask_dollars": "0.5800",
         "last_price_dollars": "0.4500", "previous_yes_bid_dollars": "0.4100", "previous_yes_ask_dollars": "0.4900",
         "previous_price_dollars": "0.4500", "volume_fp": "100.00", "volume_24h_fp": "10.00",
         "open_interest_fp": "50.00", "notional_value_dollars": "1.0000", "settlement_bounds_type": "default",
         "expiration_value": "", "rules_primary": "r", "rules_secondary": "", "price_level_structure": structure,
         "price_ranges": ranges or [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
         "fractional_trading_enabled": False}
    if shard is not None:
        m["exchange_index"] = shard
    return m


class Scripted:
    """Answers each (method, path) with a handler's (status, body) and records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]] = {}
        self.seen: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    def on(self, method: str, path: str, fn: Callable[[dict[str, Any]], tuple[int, Any]] | Any,
           status: int = 200) -> None:
        self.routes[(method, P + path)] = fn if callable(fn) else (lambda _r, b=fn: (status, b))

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.seen if r["method"] == method and r["path"] == P + path]

    async def handle(self, q: web.Request) -> web.StreamResponse:
        raw = await q.read()
        r = {"method": q.method, "path": q.path, "query": dict(q.query), "body": orjson.loads(raw) if raw else None}
        self.seen.append(r)
        fn = self.routes.get((q.method, q.path))
        if fn is None:
            return web.json_response({"error": {"code": "not_found", "message": q.path}}, status=404)
        status, body = fn(r)
        if body is None:
            return web.Response(status=status)
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    async def __aenter__(self) -> Scripted:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def srv():
    async with Scripted() as s:
        yield s


@pytest.fixture
async def rest(srv):
    cfg = ConnectorConfig(env="sim", rest_url=f"http://127.0.0.1:{srv.port}/trade-api/v2",
                          ws_url=f"ws://127.0.0.1:{srv.port}/trade-api/ws/v2", retry_backoff_s=0.001,
                          fast_writes=False, sig_pool_depth=0)
    async with KalshiRest(cfg) as client:
        yield client


def ack(r: dict[str, Any], **extra: Any) -> tuple[int, Any]:
    b = r["body"]
    return 201, {"order_id": "oid-" + b["client_order_id"], "client_order_id": b["client_order_id"],
                 "fill_count": "0.00", "remaining_count": b["count"], "ts_ms": 1, **extra}


# ---- markets, grids and shards ---------------------------------------------------------------

async def test_markets_decode_the_spec_fields_and_teach_the_client_each_markets_shard(srv, rest):
    centi = [{"start": "0.0000", "end": "0.0100", "step": "0.0001"},
             {"start": "0.0100", "end": "0.9900", "step": "0.0010"},
             {"start": "0.9900", "end": "1.0000", "step": "0.0001"}]
    srv.on("GET", "/markets", {"markets": [market("A", 0), market("C", 1, centi, "a_new_label_from_2027")],
                               "cursor": ""})
    a, c = await rest.get_markets()
    assert (a.exchange_index, c.exchange_index) == (0, 1) and rest.shards == {"A": 0, "C": 1}
    assert c.price_ranges == ((0, 100, 1), (100, 9900, 10), (9900, 10000, 1))
    assert (a.created_time, a.updated_time, a.settlement_bounds_type, a.can_close_early) == \
        ("2026-08-01T00:00:00Z", "2026-08-02T00:00:00Z", "default", True)
    assert a.fractional_trading_enabled is True   # the wire's False is not read: every market takes 0.01


async def test_every_write_reaches_the_markets_shard(srv, rest):
    srv.on("GET", "/markets/C", {"market": market("C", 3)})
    srv.on("POST", "/portfolio/events/orders", ack)
    srv.on("POST", "/portfolio/events/orders/batched",
           lambda r: (201, {"orders": [ack({"body": o})[1] for o in r["body"]["orders"]]}))
    srv.on("POST", "/portfolio/events/orders/oid-c1/amend",
           lambda r: (200, {"order_id": "oid-c1", "client_order_id": "c1", "ts_ms": 2, "remaining_count": "3.00",
                            "fill_count": "0.00"}))
    srv.on("POST", "/portfolio/events/orders/oid-c1/decrease",
           lambda r: (200, {"order_id": "oid-c1", "client_order_id": "c1", "remaining_count": "1.00", "ts_ms": 3}))
    srv.on("DELETE", "/portfolio/events/orders/oid-c1",
           lambda r: (200, {"order_id": "oid-c1", "client_order_id": "c1", "reduced_by": "1.00", "ts_ms": 4}))
    srv.on("DELETE", "/portfolio/events/orders/batched",
           lambda r: (200, {"orders": [{"order_id": o["order_id"], "reduced_by": "1.00"}
                                       for o in r["body"]["orders"]]}))
    await rest.get_market("C")
    await rest.create_order(OrderRequest("C", "bid", 4100, 500, "c1"))
    await rest.create_orders([OrderRequest("C", "ask", 6000, 100, "c2"), OrderRequest("X", "ask", 6000, 100, "c3")])
    await rest.amend_order("oid-c1", ticker="C", side="bid", price=4200, count=300)
    await rest.decrease_order("oid-c1", reduce_by=200)
    await rest.cancel_order("oid-c1")
    await rest.cancel_orders(["oid-c2", "oid-c3", "foreign"], tickers={"foreign": "C"})
    assert srv.sent("POST", "/portfolio/events/orders")[0]["body"]["exchange_index"] == 3
    batch = srv.sent("POST", "/portfolio/events/orders/batched")[0]["body"]["orders"]
    assert batch[0]["exchange_index"] == 3 and "exchange_index" not in batch[1]   # X: unknown, auto-routed
    assert srv.sent("POST", "/portfolio/events/orders/oid-c1/amend")[0]["body"]["exchange_index"] == 3
    dec = srv.sent("POST", "/portfolio/events/orders/oid-c1/decrease")[0]["body"]
    assert dec == {"reduce_by": "2.00", "exchange_index": 3, "market_ticker": "C"}
    assert srv.sent("DELETE", "/portfolio/events/orders/oid-c1")[0]["query"] == \
        {"exchange_index": "3", "market_ticker": "C"}
    items = srv.sent("DELETE", "/portfolio/events/orders/batched")[0]["body"]["orders"]
    assert items == [{"order_id": "oid-c2", "exchange_index": 3, "market_ticker": "C"},
                     {"order_id": "oid-c3", "market_ticker": "X"},
                     {"order_id": "foreign", "exchange_index": 3, "market_ticker": "C"}]


async def test_decrease_sends_exactly_one_of_reduce_by_and_reduce_to(srv, rest):
    srv.on("POST", "/portfolio/events/orders/o/decrease",
           lambda r: (200, {"order_id": "o", "client_order_id": None, "remaining_count": "4.00", "ts_ms": 3}))
    assert (await rest.decrease_order("o", 400)).remaining_count == 400
    assert (await rest.decrease_order("o", reduce_by=100)).remaining_count == 400
    bodies = [r["body"] for r in srv.sent("POST", "/portfolio/events/orders/o/decrease")]
    assert bodies == [{"reduce_to": "4.00"}, {"reduce_by": "1.00"}]
    for kw in ({}, {"reduce_to": 1, "reduce_by": 1}):
        with pytest.raises(ValueError, match="exactly one"):
            await rest.decrease_order("o", **kw)


# ---- answers that describe another order (CL May 21) --------------------------------------------

async def test_cancel_amend_and_decrease_answers_about_another_order_are_not_trusted(srv, rest):
    other = {"order_id": "someone-else", "client_order_id": "zz", "reduced_by": "9.00", "remaining_count": "9.00",
             "fill_count": "9.00", "ts_ms": 1}
    srv.on("DELETE", "/portfolio/events/orders/mine", other)
    srv.on("POST", "/portfolio/events/orders/mine/amend", other)
    srv.on("POST", "/portfolio/events/orders/mine/decrease", other)
    srv.on("GET", "/portfolio/orders/mine", {"order": {
        "order_id": "mine", "client_order_id": "c", "ticker": "A", "status": "resting", "book_side": "bid",
        "yes_price_dollars": "0.4200", "initial_count_fp": "5.00", "fill_count_fp": "1.00",
        "remaining_count_fp": "2.00", "created_ts_ms": 7}})
    c = await rest.cancel_order("mine")
    assert (c.order_id, c.mismatch, c.reduced_known, c.reduced_by) == ("mine", True, False, 0)
    a = await rest.amend_order("mine", ticker="A", side="bid", price=4200, count=300)
    assert (a.order_id, a.mismatch, a.fill_count, a.remaining_count) == ("mine", True, 100, 200)
    d = await rest.decrease_order("mine", 200)
    assert (d.order_id, d.mismatch, d.remaining_count) == ("mine", True, 200)
    assert rest.mismatched_answers == 3 and len(srv.sent("GET", "/portfolio/orders/mine")) == 2


async def test_post_only_cross_is_a_cancel_not_an_error(srv, rest):
    srv.on("POST", "/portfolio/events/orders", lambda r: (201, {
        "order_id": "x", "client_order_id": r["body"]["client_order_id"], "fill_count": "0.00",
        "remaining_count": "0.00", "ts_ms": 1}))
    a = await rest.create_order(OrderRequest("A", "bid", 5000, 100, "po", post_only=True))
    assert a.post_only_cross and a.remaining_count == 0 and a.fill_count == 0
    b = await rest.create_order(OrderRequest("A", "bid", 5000, 100, "ioc", time_in_force="immediate_or_cancel"))
    assert not b.post_only_cross


# ---- cancel-all -------------------------------------------------------------------------------

async def test_cancel_all_is_one_delete_without_ticker_and_takes_204_with_no_body(srv, rest):
    srv.on("DELETE", "/portfolio/events/orders", lambda r: (204, None))
    assert await rest.cancel_all() is None
    await rest.cancel_all(subaccount=3)
    assert [r["query"] for r in srv.sent("DELETE", "/portfolio/events/orders")] == [{}, {"subaccount": "3"}]
    assert all(r["body"] is None for r in srv.sent("DELETE", "/portfolio/events/orders"))
    srv.on("DELETE", "/portfolio/events/orders", {"error": {"code": "exchange_paused", "message": "paused"}}, 503)
    with pytest.raises(ExchangePaused):
        await rest.cancel_all()


# ---- rate limits --------------------------------------------------------------------------------

LIMITS = {"usage_tier": "premier", "read": {"refill_rate": 1000, "bucket_capacity": 1000},
          "write": {"refill_rate": 1000, "bucket_capacity": 2000},
          "grants": [{"exchange_instance": "event_contract", "level": "premier", "expires_ts": 1751558400,
                      "source": "volume"}, {"exchange_instance": "margined", "level": "basic", "source": "manual"}]}


async def test_account_limits_are_typed_and_size_the_buckets_rate_and_capacity(srv, rest):
    srv.on("GET", "/account/limits", LIMITS)
    lim = await rest.get_account_limits()
    assert (lim.usage_tier, lim.read.refill_rate, lim.write.bucket_capacity, lim.burst_s("write")) == \
        ("premier", 1000.0, 2000.0, 2.0)
    assert [(g.level, g.expires_ts) for g in lim.grants] == [("premier", 1751558400), ("basic", None)]
    assert await rest.apply_account_limits() == (1000.0, 1000.0)
    assert (rest.limiter.write.rate, rest.limiter.write.capacity, rest.limiter.read.capacity) == (1000, 2000, 1000)
    srv.on("GET", "/account/limits", {"usage_tier": "basic", "read": {"refill_rate": 200}, "grants": [],
                                       "write": {"refill_rate": 100, "bucket_capacity": 100}})
    with pytest.raises(WireError, match="bucket_capacity"):
        await rest.get_account_limits()


async def test_endpoint_costs_give_the_cost_of_cancel_all(srv, rest):
    srv.on("GET", "/account/endpoint_costs", {"default_cost": 10, "endpoint_costs": [
        {"method": "DELETE", "path": "/portfolio/events/orders", "cost": 40},
        {"method": "DELETE", "path": "/portfolio/events/orders/{order_id}", "cost": 2}]})
    ec = await rest.get_endpoint_costs()
    assert ec.cost_of("DELETE", "/portfolio/events/orders") == 40 and ec.cost_of("GET", "/markets") == 10
    assert rest._cost("DELETE", "/portfolio/events/orders", 10) == 40


# ---- exchange status, schedule and pauses -----------------------------------------------------

async def test_status_per_shard_tells_a_trading_pause_from_an_exchange_pause(srv, rest):
    srv.on("GET", "/exchange/status", {
        "exchange_active": True, "trading_active": False, "exchange_estimated_resume_time": "2026-11-26T10:00:00Z",
        "intra_exchange_transfers_active": True, "exchange_index_statuses": [
            {"exchange_index": 0, "description": "main", "exchange_active": True, "trading_active": False,
             "intra_exchange_transfers_active": True},
            {"exchange_index": 2, "description": "crypto", "exchange_active": False, "trading_active": False,
             "intra_exchange_transfers_active": False},
            {"exchange_index": 3, "description": "sports", "exchange_active": True, "trading_active": True,
             "intra_exchange_transfers_active": True}]})
    st = await rest.get_exchange_status()
    assert (st.pause(0), st.pause(2), st.pause(3)) == (PAUSE_TRADING, PAUSE_EXCHANGE, PAUSE_NONE)
    assert st.can_cancel(0) and not st.can_place(0) and not st.can_cancel(2) and st.can_place(3)
    assert st.pause(7) == PAUSE_TRADING   # a shard not listed: the top level


@pytest.mark.parametrize("code,cls", [("trading_paused", TradingPaused), ("TRADING_PAUSED", TradingPaused),
                                      ("exchange_paused", ExchangePaused), ("EXCHANGE_PAUSED", ExchangePaused)])
async def test_pause_error_codes_raise_typed_errors(srv, rest, code, cls):
    srv.on("POST", "/portfolio/events/orders", {"error": {"code": code, "message": "paused"}}, 400)
    with pytest.raises(cls) as exc:
        await rest.create_order(OrderRequest("A", "bid", 4100, 100, "p"))
    assert isinstance(exc.value, ExchangeError) and exc.value.code == code


async def test_exchange_schedule_decodes(srv, rest):
    srv.on("GET", "/exchange/schedule", {"schedule": {
        "standard_hours": [{"start_time": "2026-01-01T00:00:00Z", "end_time": "2027-01-01T00:00:00Z",
                            "monday": [{"open_time": "00:00", "close_time": "23:59"}], "tuesday": [],
                            "wednesday": [], "thursday": [{"open_time": "05:00", "close_time": "23:59"}],
                            "friday": [], "saturday": [], "sunday": []}],
        "maintenance_windows": [{"start_datetime": "2026-11-26T08:00:00Z", "end_datetime": "2026-11-26T10:00:00Z"}]}})
    sch = await rest.get_exchange_schedule()
    assert sch.standard_hours[0].days["thursday"] == (("05:00", "23:59"),)
    assert sch.maintenance_windows == (("2026-11-26T08:00:00Z", "2026-11-26T10:00:00Z"),)


# ---- balances and transfers per shard ----------------------------------------------------------

async def test_balance_breakdown_and_the_shard_check_names_the_transfer_to_make(srv, rest):
    srv.on("GET", "/portfolio/balance", {"balance": 15000, "balance_dollars": "150.0000", "portfolio_value": 0,
                                         "updated_ts": 5, "balance_breakdown": [
                                             {"exchange_index": 0, "balance": "140.0000"},
                                             {"exchange_index": 2, "balance": "10.0000"}]})
    srv.on("GET", "/markets/BTC", {"market": market("BTC", 2)})
    rest.set_shard("POL", 0)
    bal = await rest.get_balance()
    assert bal.balance == 1_500_000 and bal.shard_balance(2) == 100_000 and bal.shard_balance(3) == 0
    assert (await rest.check_shard_balances({"POL": 500_000, "BTC": 50_000})).balance == 1_500_000
    with pytest.raises(ShardBalanceError) as exc:
        await rest.check_shard_balances({"POL": 500_000, "BTC": 300_000})
    msg = str(exc.value)
    assert exc.value.shortfalls == [(2, 100_000, 300_000, ["BTC"])]
    assert "shard 2 (BTC) holds $10.0000 and needs $30.0000" in msg
    assert '"amount":200000,"source_exchange_shard":0,"destination_exchange_shard":2' in msg
    assert transfer_command(200_000, 0, 2) in msg
    assert ("python -m kmm.kalshi.transfer --config <your kmm config> --from-shard 0 --to-shard 2 "
            "--amount 20.0000 --yes") in msg


async def test_transfer_between_shards_sends_the_spec_body(srv, rest):
    srv.on("POST", "/portfolio/intra_exchange_instance_transfer", {"transfer_id": "tr-1"})
    assert await rest.transfer_between_shards(20_000, 0, 2, client_transfer_id="u-1") == "tr-1"
    (r,) = srv.sent("POST", "/portfolio/intra_exchange_instance_transfer")
    assert r["body"] == {"source": "event_contract", "destination": "event_contract", "amount": 20_000,
                         "source_exchange_shard": 0, "destination_exchange_shard": 2, "client_transfer_id": "u-1"}
    with pytest.raises(ValueError):
        await rest.transfer_between_shards(0, 0, 2)


# ---- the other answers of the spec ---------------------------------------------------------------

async def test_series_events_settlements_cutoff_orderbooks_and_positions_decode(srv, rest):
    series = {"ticker": "KXBTC", "frequency": "daily", "title": "BTC", "category": "Crypto",
              "categories": ["Crypto", "Finance"], "tags": None, "settlement_sources": [{"name": "CF", "url": "u"}],
              "contract_url": "https://k/c.pdf", "contract_terms_url": "https://k/t.pdf", "fee_type": "quadratic",
              "fee_multiplier": 0.5, "additional_prohibitions": None, "exchange_index": 2}
    srv.on("GET", "/series", {"series": [series]})
    srv.on("GET", "/series/KXBTC", {"series": series})
    event = {"event_ticker": "EV", "series_ticker": "KXBTC", "sub_title": "s", "title": "t",
             "collateral_return_type": "MECNET", "mutually_exclusive": True, "settlement_sources": [],
             "exchange_index": 2}
    srv.on("GET", "/events", {"events": [event], "cursor": ""})
    srv.on("GET", "/events/EV", {"event": event, "markets": [market("BTC-1", 2), market("BTC-2", 2)]})
    srv.on("GET", "/portfolio/settlements", {"settlements": [{
        "ticker": "BTC-1", "event_ticker": "EV", "exchange_index": 2, "market_result": "yes", "yes_count_fp": "3.50",
        "yes_total_cost_dollars": "1.2000", "no_count_fp": "0.00", "no_total_cost_dollars": "0.0000", "revenue": 350,
        "settled_time": "2026-11-01T00:00:00Z", "fee_cost": "0.0100", "value": 100}], "cursor": ""})
    srv.on("GET", "/historical/cutoff", {"market_settled_ts": "2026-08-01T00:00:00Z",
                                         "trades_created_ts": "2026-08-02T00:00:00Z",
                                         "orders_updated_ts": "2026-08-03T00:00:00Z"})
    srv.on("GET", "/markets/orderbooks", lambda r: (200, {"orderbooks": [
        {"ticker": t, "orderbook_fp": {"yes_dollars": [["0.4100", "2.50"]], "no_dollars": [["0.5500", "1.00"]]}}
        for t in r["query"]["tickers"].split(",")]}))
    srv.on("GET", "/portfolio/positions", {"market_positions": [{
        "ticker": "BTC-1", "exchange_index": 2, "position_fp": "-2.50", "market_exposure_dollars": "1.2500",
        "realized_pnl_dollars": "0.0000", "fees_paid_dollars": "0.0100", "total_traded_dollars": "1.2500",
        "last_updated_ts": "2026-11-01T00:00:00Z"}], "event_positions": [{
            "event_ticker": "EV", "total_cost_dollars": "1.2500", "total_cost_shares_fp": "2.50",
            "event_exposure_dollars": "1.2500", "realized_pnl_dollars": "0.0000", "fees_paid_dollars": "0.0100"}],
        "cursor": ""})
    (s,) = await rest.list_series()
    assert (s.categories, s.contract_url, s.contract_terms_url, s.tags, s.fee_multiplier, s.exchange_index) == \
        (("Crypto", "Finance"), "https://k/c.pdf", "https://k/t.pdf", None, 0.5, 2)
    assert (await rest.get_series_info("KXBTC")).settlement_sources == (("CF", "u"),)
    (e,) = await rest.get_events()
    assert e.mutually_exclusive and e.markets == ()
    e = await rest.get_event("EV")
    assert [m.ticker for m in e.markets] == ["BTC-1", "BTC-2"] and rest.shard_of("BTC-2") == 2
    (st,) = await rest.get_settlements()
    assert (st.exchange_index, st.yes_count, st.revenue, st.fee_cost, st.value) == (2, 350, 35_000, 100, 10_000)
    cut = await rest.get_historical_cutoff()
    assert cut.orders_updated_ts == "2026-08-03T00:00:00Z" and cut.market_positions_last_updated_ts is None
    books = await rest.get_orderbooks([f"T{i}" for i in range(150)])
    assert len(books) == 150 and books["T7"].bids == ((4100, 250),) and books["T7"].asks == ((4500, 100),)
    assert [len(r["query"]["tickers"].split(",")) for r in srv.sent("GET", "/markets/orderbooks")] == [100, 50]
    (p,) = await rest.get_positions()
    assert (p.position, p.exchange_index, p.last_updated_ts) == (-250, 2, "2026-11-01T00:00:00Z")
    (ep,) = await rest.get_event_positions()
    assert (ep.total_cost_shares, ep.total_cost) == (250, 12_500)


async def test_the_transfer_command_dry_runs_then_moves_the_money(srv, tmp_path, capsys):
    import asyncio

    from kmm.kalshi import transfer
    srv.on("GET", "/portfolio/balance", {"balance": 1000, "balance_dollars": "10.0000", "updated_ts": 1,
                                         "balance_breakdown": [{"exchange_index": 0, "balance": "10.0000"}]})
    srv.on("POST", "/portfolio/intra_exchange_instance_transfer", {"transfer_id": "tr-9"})
    cfg = tmp_path / "kmm.toml"
    cfg.write_text(f'[kalshi]\nenv = "sim"\nrest_url = "http://127.0.0.1:{srv.port}/trade-api/v2"\n'
                   f'ws_url = "ws://127.0.0.1:{srv.port}/trade-api/ws/v2"\n')
    argv = ["--config", str(cfg), "--from-shard", "0", "--to-shard", "2", "--amount", "2.50"]
    assert await asyncio.to_thread(transfer.main, argv) == 0
    assert srv.sent("POST", "/portfolio/intra_exchange_instance_transfer") == []   # dry run: nothing sent
    assert "shard 0: $10.0000" in capsys.readouterr().out
    assert await asyncio.to_thread(transfer.main, argv + ["--yes", "--client-transfer-id", "u-7"]) == 0
    (r,) = srv.sent("POST", "/portfolio/intra_exchange_instance_transfer")
    assert r["body"]["amount"] == 25_000 and r["body"]["destination_exchange_shard"] == 2
    assert "transfer tr-9: $2.5000 from shard 0 to shard 2" in capsys.readouterr().out
    assert await asyncio.to_thread(transfer.main, argv[:-1] + ["-1"]) == 2
    srv.on("POST", "/portfolio/intra_exchange_instance_transfer",
           {"error": {"code": "insufficient_balance", "message": "no"}}, 400)
    assert await asyncio.to_thread(transfer.main, argv + ["--yes"]) == 1


async def test_an_order_group_is_created_on_the_shard_it_serves(srv, rest):
    srv.on("POST", "/portfolio/order_groups/create", {"order_group_id": "og-2", "subaccount": 0, "exchange_index": 2})
    assert await rest.create_order_group(1050, exchange_index=2) == "og-2"
    (r,) = srv.sent("POST", "/portfolio/order_groups/create")
    assert r["body"] == {"contracts_limit_fp": "10.50", "exchange_index": 2}


class ShardLimiter:
    """A limiter that keeps per-shard write buckets: records which bucket each request bills."""

    def __init__(self) -> None:
        self.billed: list[tuple[int, float, int | None]] = []

    async def acquire(self, lane: int, cost: float, shard: int | None = None) -> None:
        self.billed.append((lane, cost, shard))

    def on_success(self, lane: int, shard: int | None = None) -> None: ...

    def on_rate_limited(self, lane: int, shard: int | None = None) -> int:
        return 0

    def close(self) -> None: ...


async def test_single_writes_on_a_shard_bill_that_shards_bucket_batches_the_unscoped_one(srv):
    lim = ShardLimiter()
    cfg = ConnectorConfig(env="sim", rest_url=f"http://127.0.0.1:{srv.port}/trade-api/v2",
                          ws_url=f"ws://127.0.0.1:{srv.port}/trade-api/ws/v2", fast_writes=False, sig_pool_depth=0)
    srv.on("POST", "/portfolio/events/orders", ack)
    srv.on("DELETE", "/portfolio/events/orders/oid-a", {"order_id": "oid-a", "reduced_by": "1.00"})
    srv.on("DELETE", "/portfolio/events/orders/batched", {"orders": []})
    async with KalshiRest(cfg, limiter=lim) as rest:  # type: ignore[arg-type]
        rest.set_shard("S2", 2)
        rest.set_shard("S0", 0)
        await rest.create_order(OrderRequest("S2", "bid", 4100, 100, "a"))
        await rest.create_order(OrderRequest("S0", "bid", 4100, 100, "b"))
        await rest.cancel_order("oid-a")
        srv.on("DELETE", "/portfolio/events/orders/oid-a", {"order_id": "oid-a", "reduced_by": "0.00"})
        await rest.cancel_orders(["oid-a", "oid-b"])
    # create S2, create S0, cancel S2, the batch (unscoped), then the ids the batch did not answer, one
    # by one: oid-a on shard 2, oid-b on shard 0 (unscoped)
    assert [s for _lane, _cost, s in lim.billed] == [2, None, 2, None, 2, None]


@pytest.mark.parametrize("body", [[1, 2], "x", 5, None])
async def test_an_answer_that_is_not_a_json_object_is_a_clear_exchange_error(srv, rest, body):
    srv.routes[("GET", P + "/markets/A")] = lambda r: (200, body) if body is not None else (200, "null")
    with pytest.raises(ExchangeError, match="not a JSON object|not JSON") as exc:
        await rest.get_market("A")
    assert exc.value.code == "bad_json"
    srv.on("GET", "/markets/B", {"market": {"ticker": ["B"], "status": "active"}})
    with pytest.raises(WireError, match="field ticker"):
        await rest.get_market("B")


async def test_a_single_write_on_a_shard_bills_that_shards_bucket_and_a_429_there_pauses_it_alone(srv, rest):
    srv.on("GET", "/markets/C", {"market": market("C", 3)})
    srv.on("GET", "/markets/A", {"market": market("A", 0)})
    srv.on("POST", "/portfolio/events/orders", ack)
    srv.on("POST", "/portfolio/events/orders/batched",
           lambda r: (201, {"orders": [ack({"body": o})[1] for o in r["body"]["orders"]]}))
    await rest.get_market("C")
    await rest.get_market("A")
    assert rest._limiter_shards                       # the connector found the limiter's shard= support
    lim = rest.limiter
    full = lim.write.capacity
    await rest.create_order(OrderRequest("C", "bid", 4100, 500, "c1"))
    assert lim.shard_bucket(3).tokens == pytest.approx(full - 10, abs=0.5)
    assert lim.write.tokens == pytest.approx(full, abs=0.5)            # the unscoped bucket is untouched
    await rest.create_orders([OrderRequest("C", "ask", 6000, 100, "c2"), OrderRequest("C", "ask", 6100, 100, "c3")])
    assert lim.write.tokens == pytest.approx(full - 20, abs=0.5)       # a batch bills the unscoped bucket
    await rest.create_order(OrderRequest("A", "bid", 4100, 500, "a1"))
    assert lim.write.tokens == pytest.approx(full - 30, abs=0.5)       # shard 0 bills the unscoped bucket
    srv.on("POST", "/portfolio/events/orders", {"error": {"code": "too_many_requests", "message": "slow"}}, 429)
    with pytest.raises(ExchangeError):
        await rest.create_order(OrderRequest("C", "bid", 4000, 500, "c4"))
    assert lim.place_pause_ns(3) > 0 and lim.place_pause_ns(0) == 0


async def test_a_raw_market_read_teaches_the_shard_map_so_no_second_read_is_needed(srv, rest):
    srv.on("GET", "/markets/C", {"market": market("C", 2)})
    srv.on("GET", "/portfolio/balance", {"balance": 50_000, "balance_breakdown": [
        {"exchange_index": 0, "balance": "5.0000"}, {"exchange_index": 2, "balance": "0.5000"}]})
    await rest.get_market_raw("C")
    assert rest.shard_of("C") == 2
    with pytest.raises(ShardBalanceError, match="shard 2"):
        await rest.check_shard_balances({"C": 10_000})
    assert len(srv.sent("GET", "/markets/C")) == 1
