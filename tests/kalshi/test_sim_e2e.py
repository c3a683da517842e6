"""End to end against the embedded exchange (``kmm.sim``) run in-process on 127.0.0.1.

Skipped, with the reason, while ``kmm.sim`` is not importable (branch sim not merged yet).
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

sim_mod = pytest.importorskip("kmm.sim", reason="kmm.sim (branch sim) is not merged into this branch yet")
SimExchange, SimConfig = sim_mod.SimExchange, sim_mod.SimConfig

from kmm.errors import ExchangeError, NotFound  # noqa: E402
from kmm.kalshi.config import ConnectorConfig  # noqa: E402
from kmm.kalshi.rest import KalshiRest, OrderNotPlaced  # noqa: E402
from kmm.kalshi.types import OrderRequest  # noqa: E402
from kmm.kalshi.ws import FeedHandler, KalshiWs  # noqa: E402
from tests.kalshi.routers import book_levels, make_router  # noqa: E402


class Events(FeedHandler):
    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.fills: list = []
        self.orders: list = []
        self.positions: list = []
        self.changed = asyncio.Event()

    def _add(self, *e) -> None:
        self.log.append(e)
        self.changed.set()

    def on_connected(self): self._add("connected")
    def on_disconnected(self, reason): self._add("disconnected", reason)
    def on_book_stale(self, ticker, reason): self._add("stale", ticker, reason)
    def on_book_ready(self, ticker): self._add("ready", ticker)
    def on_fill(self, fill):
        self.fills.append(fill)
        self._add("fill")
    def on_user_order(self, order):
        self.orders.append(order)
        self._add("user_order")
    def on_market_position(self, p):
        self.positions.append(p)
        self._add("position")

    def count(self, kind, *args) -> int:
        return sum(1 for e in self.log if e[0] == kind and e[1:1 + len(args)] == args)

    async def until(self, pred, timeout=8.0) -> None:
        async def wait():
            while not pred():
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
        await asyncio.wait_for(wait(), timeout)


def cfg_for(sim, key_id, pem, **kw) -> ConnectorConfig:
    base = ConnectorConfig(env="sim", retry_backoff_s=0.01, reconnect_min_s=0.05, reconnect_max_s=0.3, **kw)
    return base.with_server(sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=pem)


def coid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def sim():
    async with SimExchange(SimConfig(seed=1, flow="off", rate_tier="off")) as s:
        yield s


async def test_every_endpoint_with_a_signed_key(sim):
    key_id, pem = sim.create_key()
    t = sim.tickers[0]
    async with KalshiRest(cfg_for(sim, key_id, pem)) as rest:
        assert (await rest.get_exchange_status()).trading_active
        markets = await rest.get_markets(limit=2)
        assert [m.ticker for m in markets] == sim.tickers
        m = await rest.get_market(t)
        assert m.ticker == t and m.price_ranges
        series = t.split("-")[0]
        assert (await rest.get_series(series))["ticker"] == series
        book = await rest.get_orderbook(t)
        ref = sim.book(t)
        assert list(book.bids) == ref["yes"] and sorted((10000 - p, s) for p, s in book.asks) == ref["no"]
        assert (await rest.get_balance()).balance > 0

        bid = max(p for p, _ in ref["yes"]) if ref["yes"] else 1000
        ack = await rest.create_order(OrderRequest(t, "bid", bid, 200, coid(), post_only=True))
        assert ack.remaining_count == 200
        assert (await rest.get_order(ack.order_id)).status == "resting"
        am = await rest.amend_order(ack.order_id, ticker=t, side="bid", price=bid, count=300)
        assert am.order_id
        dec = await rest.decrease_order(ack.order_id, 100)
        assert dec.remaining_count == 100
        assert (await rest.cancel_order(ack.order_id)).reduced_by == 100
        assert (await rest.cancel_order(ack.order_id)).already_gone

        acks = await rest.create_orders([OrderRequest(t, "bid", bid, 100, coid(), post_only=True)
                                         for _ in range(3)])
        assert all(not isinstance(a, ExchangeError) for a in acks)
        res = await rest.cancel_orders([acks[0].order_id])
        assert res[0].reduced_by == 100
        await rest.cancel_all()
        assert not sim.orders(key_id, status="resting")
        orders = await rest.get_orders(ticker=t, limit=2)
        assert len(orders) == 4 and all(o.status == "canceled" for o in orders)
        assert await rest.get_fills() == []
        assert all(p.position == 0 for p in await rest.get_positions())

        gid = await rest.create_order_group(1000)
        assert (await rest.get_order_group(gid))
        assert any(gid in str(g) for g in await rest.list_order_groups())
        await rest.set_order_group_limit(gid, 500)
        await rest.trigger_order_group(gid)
        await rest.reset_order_group(gid)
        await rest.delete_order_group(gid)
        # the sim answers the spec's shape (read/write refill_rate and bucket_capacity, grants)
        limits = await rest.get_account_limits()
        assert limits.usage_tier and limits.read.refill_rate > 0 and limits.write.bucket_capacity > 0
        with pytest.raises(NotFound):
            await rest.get_order(str(uuid.uuid4()))


async def test_ws_book_equals_rest_book_and_sim_book_under_flow():
    async with SimExchange(SimConfig(seed=3, flow="busy", rate_tier="off")) as sim:
        key_id, pem = sim.create_key()
        router, factory = make_router()
        ev = Events()
        tickers = sim.tickers[:3]
        ws = KalshiWs(cfg_for(sim, key_id, pem), ev, router=router, book_factory=factory)
        async with KalshiRest(cfg_for(sim, key_id, pem)) as rest:
            markets = {m.ticker: m for m in await rest.get_markets()}
            assert {markets[t].price_level_structure for t in tickers} == {
                "linear_cent", "deci_cent", "tapered_deci_cent"}  # every grid
            ws.add_markets({t: markets[t] for t in tickers})
            await ws.start()
            await ev.until(lambda: all(ws.is_ready(t) for t in tickers))
            await asyncio.sleep(1.0)  # flow moves the books
            sim.flow_running = False
            await asyncio.sleep(0.3)
            for t in tickers:
                b = await rest.get_orderbook(t)
                rest_levels = {"yes": list(b.bids), "no": sorted((10000 - p, s) for p, s in b.asks)}
                assert book_levels(ws.book(t)) == rest_levels == sim.book(t)
            assert ws.stats.book_frames > len(tickers) and ws.stats.malformed == 0
        await ws.close()


async def _crossing_fill(sim, rest, t, maker_key) -> str:
    """A maker rests an ask; we lift it with an IOC bid. Returns our client_order_id."""
    sim.place_direct(maker_key, t, "ask", 5000, 100)
    cid = coid()
    await rest.create_order(OrderRequest(t, "bid", 5000, 100, cid, time_in_force="immediate_or_cancel"))
    return cid


async def test_user_channels_deliver_fill_order_position_and_duplicate_fill_surfaces_once(sim):
    key_id, pem = sim.create_key()
    maker, _ = sim.create_key()
    t = sim.tickers[0]
    router, factory = make_router()
    ev = Events()
    ws = KalshiWs(cfg_for(sim, key_id, pem), ev, router=router, book_factory=factory)
    ws.add_markets([t])
    async with ws, KalshiRest(cfg_for(sim, key_id, pem)) as rest:
        await ev.until(lambda: ws.is_ready(t))
        sim.faults.duplicate_next_fill()
        cid = await _crossing_fill(sim, rest, t, maker)
        await ev.until(lambda: ev.fills and ev.positions and ev.orders)
        await asyncio.sleep(0.2)
        assert len(ev.fills) == 1 and ws.stats.duplicate_fills == 1
        f = ev.fills[0]
        assert (f.client_order_id, f.side, f.price, f.count, f.is_taker) == (cid, "bid", 5000, 100, True)
        assert f.post_position == 100 and f.recv_ns > 0
        assert ev.positions[-1].position == 100
        backfill = await rest.get_fills()
        assert [x.trade_id for x in backfill] == [f.trade_id]


async def test_dropped_connection_reconnects_resubscribes_and_resnapshots(sim):
    key_id, pem = sim.create_key()
    router, factory = make_router()
    ev = Events()
    tickers = sim.tickers[:2]
    ws = KalshiWs(cfg_for(sim, key_id, pem), ev, router=router, book_factory=factory, rng=random.Random(2))
    ws.add_markets(tickers)
    async with ws:
        await ev.until(lambda: ev.count("ready") == 2)
        assert sim.faults.drop_ws_connections() == 1
        await ev.until(lambda: ev.count("connected") == 2 and ev.count("ready") == 4)
        assert ev.count("disconnected") == 1 and ev.count("stale") == 2
        for t in tickers:
            assert book_levels(ws.book(t)) == sim.book(t)


async def test_skipped_seq_marks_stale_then_resyncs(sim):
    key_id, pem = sim.create_key()
    maker, _ = sim.create_key()
    router, factory = make_router()
    ev = Events()
    t = sim.tickers[0]
    ws = KalshiWs(cfg_for(sim, key_id, pem), ev, router=router, book_factory=factory)
    ws.add_markets([t])
    async with ws:
        await ev.until(lambda: ws.is_ready(t))
        sim.faults.skip_seq(1)
        sim.place_direct(maker, t, "bid", 1200, 100)  # a book change carries the skipped seq
        await ev.until(lambda: ev.count("stale", t) == 1 and ev.count("ready", t) == 2)
        assert ws.stats.gaps == 1 and ws.stats.resync_requests == 1
        await asyncio.sleep(0.1)
        assert book_levels(ws.book(t)) == sim.book(t)


async def test_stalled_feed_is_detected_as_dead_and_reconnected(sim):
    key_id, pem = sim.create_key()
    router, factory = make_router()
    ev = Events()
    t = sim.tickers[0]
    ws = KalshiWs(cfg_for(sim, key_id, pem, ws_dead_after_s=0.5), ev, router=router, book_factory=factory)
    ws.add_markets([t])
    async with ws:
        await ev.until(lambda: ws.is_ready(t))
        sim.faults.stall_feed(1.5)
        await ev.until(lambda: ev.count("disconnected") == 1)
        assert ws.stats.dead_detected == 1
        await ev.until(lambda: ev.count("connected") == 2 and ws.is_ready(t))


async def test_429_and_500_bursts_are_retried_for_reads_and_never_for_creates(sim):
    key_id, pem = sim.create_key()
    t = sim.tickers[0]
    async with KalshiRest(cfg_for(sim, key_id, pem, create_lookup_window_s=0.2)) as rest:
        sim.faults.http_error_burst(status=429, count=2)
        assert (await rest.get_exchange_status()).exchange_active
        assert rest.limiter.rate_limited == 2 and rest.retries == 2
        sim.faults.http_error_burst(status=500, count=2)
        assert await rest.get_balance()
        # a 500 on a create leaves its outcome unknown: looked up by client_order_id, never re-sent
        sim.faults.http_error_burst(status=500, count=1)
        with pytest.raises(OrderNotPlaced):
            await rest.create_order(OrderRequest(t, "bid", 1000, 100, coid(), post_only=True))
        assert sim.orders(key_id) == [] and rest.lost_creates == 1


async def test_create_timeout_looks_the_order_up_instead_of_resending(sim):
    key_id, pem = sim.create_key()
    t = sim.tickers[0]
    async with KalshiRest(cfg_for(sim, key_id, pem, request_timeout_s=0.3)) as rest:
        sim.faults.delay_rest(1.0, count=1)
        cid = coid()
        ack = await rest.create_order(OrderRequest(t, "bid", 1000, 100, cid, post_only=True))
        assert ack.client_order_id == cid and rest.recovered_creates == 1
        assert [o["client_order_id"] for o in sim.orders(key_id)] == [cid]


async def test_batched_cancel_reports_refused_items_and_never_assumes_a_cancel(sim):
    key_id, pem = sim.create_key()
    t = sim.tickers[0]
    async with KalshiRest(cfg_for(sim, key_id, pem)) as rest:
        ack = await rest.create_order(OrderRequest(t, "bid", 1000, 100, coid(), post_only=True))
        acks = await rest.cancel_orders([ack.order_id, "no-such-order"])
        assert acks[0].order_id == ack.order_id and not acks[0].already_gone and acks[0].error is None
        assert acks[0].reduced_by == 100
        assert acks[1].already_gone and acks[1].error is None
        assert [o for o in sim.orders(key_id, status="resting")] == []
