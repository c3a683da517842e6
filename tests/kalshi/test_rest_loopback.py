"""The REST client against a scripted Kalshi-like server on 127.0.0.1 (signatures verified server-side)."""

from __future__ import annotations

import pytest

from kmm.errors import AuthError, DuplicateOrder, ExchangeError, NotFound, RateLimited
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.rest import KalshiRest, OrderNotPlaced
from kmm.kalshi.signing import Signer
from kmm.kalshi.types import OrderRequest
from tests.kalshi.mini_exchange import MiniExchange

KEY_ID = "test-key-id"
TICKERS = [f"KXT-{i}" for i in range(5)]


@pytest.fixture
async def ex(rsa_key):
    async with MiniExchange(rsa_key.public_key(), KEY_ID, TICKERS) as server:
        yield server


def config(ex, **kw) -> ConnectorConfig:
    base = ConnectorConfig(env="sim", rest_url=ex.rest_url, ws_url=ex.ws_url, retry_backoff_s=0.001,
                           request_timeout_s=kw.pop("request_timeout_s", 2.0), **kw)
    return base


@pytest.fixture
async def rest(ex, rsa_key):
    async with KalshiRest(config(ex), signer=Signer(KEY_ID, rsa_key)) as client:
        yield client


def req(coid: str, ticker: str = "KXT-0", price: int = 4500) -> OrderRequest:
    return OrderRequest(ticker, "bid", price, 1000, coid, post_only=True)


async def test_signed_requests_are_accepted_and_reads_decode(rest, ex):
    status = await rest.get_exchange_status()
    assert status.trading_active and ex.auth_failures == 0
    book = await rest.get_orderbook("KXT-1")
    assert book.bids == ((4000, 1000), (4100, 1000), (4200, 1000))
    assert book.asks == ((4800, 500), (4900, 500), (5000, 500))
    m = await rest.get_market("KXT-2")
    assert m.price_ranges == ((100, 9900, 100),) and m.yes_bid == 4200
    assert (await rest.get_series("KXT"))["fee_type"] == "quadratic"
    assert (await rest.get_balance()).balance == 100000 * 100
    (pos,) = await rest.get_positions()
    assert pos.position == -200 and pos.position_cost == 11000


async def test_wrong_key_is_refused_with_auth_error(ex, rsa_key):
    async with KalshiRest(config(ex), signer=Signer("someone-else", rsa_key)) as client:
        with pytest.raises(AuthError, match="401"):
            await client.get_balance()


async def test_markets_and_fills_follow_cursor_pages(rest, ex):
    markets = await rest.get_markets(limit=2)
    assert [m.ticker for m in markets] == TICKERS
    assert sum(1 for m, p in ex.requests if p.endswith("/markets")) == 3
    fills = await rest.get_fills()
    assert [f.trade_id for f in fills] == ["t0", "t1", "t2"] and fills[0].ts_ms == 100_000
    capped = [m async for m in rest.iter_markets(limit=2, max_pages=1)]
    assert len(capped) == 2


async def test_order_lifecycle_create_amend_decrease_cancel(rest, ex):
    ack = await rest.create_order(req("c1"))
    assert ack.client_order_id == "c1" and ack.remaining_count == 1000 and ack.fill_count == 0
    order = await rest.get_order(ack.order_id)
    assert (order.status, order.price, order.side) == ("resting", 4500, "bid")
    am = await rest.amend_order(ack.order_id, ticker="KXT-0", side="bid", price=4600, count=800)
    assert am.remaining_count == 800 and ex.orders[ack.order_id]["yes_price_dollars"] == "0.4600"
    dec = await rest.decrease_order(ack.order_id, 300)
    assert dec.remaining_count == 300
    c = await rest.cancel_order(ack.order_id)
    assert c.reduced_by == 300 and not c.already_gone
    again = await rest.cancel_order(ack.order_id)  # 404: already done
    assert again.already_gone


async def test_batched_create_and_cancel_report_per_item(rest, ex):
    acks = await rest.create_orders([req("b1"), req("b2", "KXT-1"), req("b1")])
    assert [type(a).__name__ for a in acks] == ["OrderAck", "OrderAck", "ExchangeError"]
    ids = [acks[0].order_id, acks[1].order_id, "no-such-order"]
    res = await rest.cancel_orders(ids)
    assert [r.already_gone for r in res] == [False, False, True]
    assert res[0].reduced_by == 1000


async def test_cancel_all_cancels_every_resting_order(rest, ex):
    for i in range(3):
        await rest.create_order(req(f"a{i}"))
    assert await rest.cancel_all() is None          # 204, no body
    assert len(ex.orders) == 3 and all(o["status"] == "canceled" for o in ex.orders.values())
    assert ex.cancel_all_queries == [{}]            # no ticker: it covers the whole account
    await rest.cancel_all(subaccount=2)
    assert ex.cancel_all_queries[-1] == {"subaccount": "2"}


async def test_duplicate_client_order_id_raises_duplicate_order(rest):
    await rest.create_order(req("dup"))
    with pytest.raises(DuplicateOrder) as exc:
        await rest.create_order(req("dup"))
    assert exc.value.status == 409 and exc.value.code == "order_already_exists"


async def test_not_found_maps_to_not_found(rest):
    with pytest.raises(NotFound) as exc:
        await rest.get_market("NOPE")
    assert exc.value.code == "not_found" and "/markets/NOPE" in str(exc.value)


async def test_reads_retry_through_a_500_and_429_burst(rest, ex):
    ex.error_burst = [500, 429, 500]
    status = await rest.get_exchange_status()
    assert status.exchange_active and rest.retries == 3 and rest.limiter.rate_limited == 1


async def test_reads_give_up_after_the_retry_budget(rest, ex):
    ex.error_burst = [500] * 10
    with pytest.raises(ExchangeError) as exc:
        await rest.get_exchange_status()
    assert exc.value.status == 500


async def test_create_is_never_retried_on_429_or_500(ex, rsa_key):
    async with KalshiRest(config(ex, create_lookup_window_s=0.2), signer=Signer(KEY_ID, rsa_key)) as rest:
        ex.error_burst = [429]
        with pytest.raises(RateLimited):
            await rest.create_order(req("r1"))
        # a 500 leaves the outcome unknown: the order is looked up by client_order_id, never re-sent
        ex.error_burst = [500]
        with pytest.raises(OrderNotPlaced):
            await rest.create_order(req("r2"))
    creates = [r for r in ex.requests if r == ("POST", "/trade-api/v2/portfolio/events/orders")]
    lookups = [r for r in ex.requests if r[0] == "GET" and r[1].startswith("/trade-api/v2/portfolio/orders")]
    assert len(creates) == 2 and not ex.orders and lookups


async def test_create_timeout_returns_the_order_the_exchange_holds(ex, rsa_key):
    async with KalshiRest(config(ex, request_timeout_s=0.3), signer=Signer(KEY_ID, rsa_key)) as rest:
        ex.delay_creates, ex.delay_count = 1.0, 1
        ack = await rest.create_order(req("slow"))
        assert ack.client_order_id == "slow" and ack.order_id in ex.orders
        assert rest.recovered_creates == 1
        creates = [r for r in ex.requests if r == ("POST", "/trade-api/v2/portfolio/events/orders")]
        assert len(creates) == 1  # looked up, not re-sent


async def test_create_timeout_with_no_order_reports_not_placed(ex, rsa_key):
    async with KalshiRest(config(ex, request_timeout_s=0.3, create_lookup_window_s=0.3),
                          signer=Signer(KEY_ID, rsa_key)) as rest:
        ex.delay_creates, ex.delay_count = 1.0, 1
        orig = ex._place
        ex._place = lambda body: ({"error": {"code": "x", "message": "x"}}, 400)  # the exchange drops it
        with pytest.raises(OrderNotPlaced) as exc:
            await rest.create_order(req("lost"))
        ex._place = orig
        assert exc.value.client_order_id == "lost" and rest.lost_creates == 1
        lookups = [r for r in ex.requests if r == ("GET", "/trade-api/v2/portfolio/orders")]
        assert len(lookups) >= 3  # looked more than once before giving up


async def test_order_groups_and_account_limits(rest):
    gid = await rest.create_order_group(1000)
    assert gid == "g1"
    assert (await rest.get_order_group(gid))["id"] == "g1"
    assert len(await rest.list_order_groups()) == 1
    await rest.reset_order_group(gid)
    await rest.trigger_order_group(gid)
    await rest.set_order_group_limit(gid, 500)
    await rest.delete_order_group(gid)
    assert await rest.apply_account_limits() == (300.0, 300.0)
    assert rest.limiter.write.rate == 300


async def test_hot_paths_use_the_signature_pool(rest, ex):
    rest.pool.fill_now()
    await rest.create_order(req("p1"))
    await rest.cancel_orders(["x"])
    assert rest.pool.stats.hits == 2 and ex.auth_failures == 0
    await rest.cancel_order("y")  # per-order path: signed inline, still accepted
    assert rest.pool.stats.unpooled >= 1 and ex.auth_failures == 0


async def test_a_long_paged_read_gives_the_loop_a_turn_every_chunk(rest, monkeypatch):
    """A page of 130 items is handed out in chunks of PAGE_CHUNK with a turn of the event loop between
    them: a callback queued when the read starts runs after the first chunk, not after the page (what
    the caller does per item would otherwise hold book frames for the whole page)."""
    from kmm.kalshi.rest import PAGE_CHUNK
    from tests.loopturns import record_turns

    async def one_page(method, path, params=None, **kw):
        return {"items": [{"n": i} for i in range(130)], "cursor": ""}
    monkeypatch.setattr(rest, "request", one_page)
    seen: list[int] = []
    ran_after = record_turns(lambda: len(seen))
    async for item in rest.paginate("/x", "items"):
        seen.append(item["n"])
    assert seen == list(range(130))
    # the (scripted) page is at hand at once: the queued callback first runs after the first full chunk,
    # then after the second; the last 30 items need no turn of their own
    assert PAGE_CHUNK == 50 and ran_after[:2] == [PAGE_CHUNK, 2 * PAGE_CHUNK]
