"""The order path without a coroutine per request (KalshiRest.*_now): written at once when a warm
connection, the budget and a pre-made signature are there, answered by callback; otherwise nothing is
taken or written (0) and the caller takes the coroutine path. Same outcomes, same safety: a create
whose outcome is unknown is looked up by client_order_id, never re-sent; a 429 pauses the budget."""

from __future__ import annotations

import asyncio

import pytest

from kmm.errors import RateLimited
from kmm.kalshi.limiter import PLACE
from kmm.kalshi.rest import KalshiRest, OrderNotPlaced
from kmm.kalshi.signing import Signer
from tests.kalshi.mini_exchange import MiniExchange
from tests.kalshi.test_rest_loopback import KEY_ID, TICKERS, config, req

CREATE = ("POST", "/trade-api/v2/portfolio/events/orders")


@pytest.fixture
async def ex(rsa_key):
    async with MiniExchange(rsa_key.public_key(), KEY_ID, TICKERS) as server:
        yield server


class Waiter:
    """A done(result, exc) callback that a test can await, and a spawn that keeps its tasks."""

    def __init__(self) -> None:
        self.fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task] = []

    def done(self, result, exc) -> None:
        assert not self.fut.done(), "a request completes once"
        self.fut.set_result((result, exc))

    def spawn(self, coro) -> asyncio.Task:
        t = asyncio.ensure_future(coro)
        self.tasks.append(t)
        return t

    async def get(self, timeout_s: float = 5.0):
        return await asyncio.wait_for(self.fut, timeout_s)


async def client(ex, rsa_key, **kw) -> KalshiRest:
    rest = await KalshiRest(config(ex, **kw), signer=Signer(KEY_ID, rsa_key)).start()
    rest.pool.close()            # no signer process: the test fills the pool by hand
    rest.pool.fill_now()
    return rest


async def test_create_amend_cancel_written_at_once_and_answered_by_callback_without_a_task(ex, rsa_key):
    rest = await client(ex, rsa_key)
    try:
        w = Waiter()
        tasks_before = len(asyncio.all_tasks())
        written = rest.create_order_now(req("n1"), w.done, w.spawn)
        assert written > 0                                    # the write stamp
        assert len(asyncio.all_tasks()) == tasks_before       # no task, future chain or coroutine for it
        ack, exc = await w.get()
        assert exc is None and ack.client_order_id == "n1" and ack.remaining_count == 1000
        assert ex.orders[ack.order_id]["status"] == "resting"
        rest.presign_order(ack.order_id)
        rest.pool.fill_now()
        w = Waiter()
        assert rest.amend_order_now(ack.order_id, ticker="KXT-0", side="bid", price=4600, count=800,
                                    client_order_id="n1", done=w.done, spawn=w.spawn) > 0
        am, exc = await w.get()
        assert exc is None and am.remaining_count == 800 and ex.orders[ack.order_id]["yes_price_dollars"] == "0.4600"
        w = Waiter()
        assert rest.cancel_orders_now([ack.order_id, "no-such-order"], w.done, w.spawn) > 0
        acks, exc = await w.get()
        assert exc is None and [a.already_gone for a in acks] == [False, True] and acks[0].reduced_by == 800
        assert ex.orders[ack.order_id]["status"] == "canceled" and not w.tasks
        assert ex.auth_failures == 0 and rest.pool.stats.misses == 0 and rest.pool.stats.hits == 3
    finally:
        await rest.close()


async def test_nothing_is_taken_or_written_when_a_signature_the_budget_or_a_connection_is_missing(ex, rsa_key):
    rest = await client(ex, rsa_key)
    try:
        w = Waiter()
        tokens = rest.limiter.write.tokens
        # an amend of an order whose path has no pre-made signature
        assert rest.amend_order_now("oid-x", ticker="KXT-0", side="bid", price=4600, count=800,
                                    client_order_id=None, done=w.done, spawn=w.spawn) == 0
        assert rest.limiter.write.tokens == pytest.approx(tokens, abs=1.0) and rest.fast.requests == 0
        # no budget now
        while rest.limiter.try_acquire(PLACE, 10.0):
            pass
        made = rest.pool.available("POST", "/trade-api/v2/portfolio/events/orders")
        assert rest.create_order_now(req("n2"), w.done, w.spawn) == 0
        assert rest.pool.available("POST", "/trade-api/v2/portfolio/events/orders") == made   # not spent
        rest.limiter.set_budget(1e6, 1e6)
        # no idle connection
        idle = list(rest.fast._idle)
        rest.fast._idle.clear()
        assert rest.create_order_now(req("n3"), w.done, w.spawn) == 0
        rest.fast._idle.extend(idle)
        assert rest.fast.requests == 0 and not [r for r in ex.requests if r == CREATE] and not w.fut.done()
    finally:
        await rest.close()


async def test_a_429_pauses_the_budget_and_a_500_is_looked_up_never_resent(ex, rsa_key):
    rest = await client(ex, rsa_key, create_lookup_window_s=0.2)
    try:
        ex.error_burst = [429]
        w = Waiter()
        assert rest.create_order_now(req("r1"), w.done, w.spawn) > 0
        ack, exc = await w.get()
        assert ack is None and isinstance(exc, RateLimited)
        assert rest.limiter.rate_limited == 1 and rest.limiter.place_pause_ns() > 0
        rest.limiter.set_backoff(0.0, 0.0)      # end the pause; the bucket refills (it was emptied)
        rest.limiter.set_budget(1e6, 1e6)
        await asyncio.sleep(0.01)
        ex.error_burst = [500]
        rest.pool.fill_now()
        w = Waiter()
        assert rest.create_order_now(req("r2"), w.done, w.spawn) > 0
        ack, exc = await w.get()
        assert ack is None and isinstance(exc, OrderNotPlaced) and exc.client_order_id == "r2"
        assert len(w.tasks) == 1                              # the lookups ran in a coroutine
        lookups = [r for r in ex.requests if r[0] == "GET" and r[1].startswith("/trade-api/v2/portfolio/orders")]
        assert len([r for r in ex.requests if r == CREATE]) == 2 and lookups and not ex.orders
    finally:
        await rest.close()


async def test_a_create_timed_out_by_the_pool_timer_returns_the_order_the_exchange_holds(ex, rsa_key):
    rest = await client(ex, rsa_key, request_timeout_s=0.3)
    try:
        ex.delay_creates, ex.delay_count = 1.0, 2
        w1, w2 = Waiter(), Waiter()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert rest.create_order_now(req("s1"), w1.done, w1.spawn) > 0
        assert rest.create_order_now(req("s2", "KXT-1"), w2.done, w2.spawn) > 0
        # two requests in flight, one timer for both (the pool's, at the earliest deadline)
        assert len(rest.fast._busy) == 2 and rest.fast._sweep is not None
        (a1, e1), (a2, e2) = await w1.get(), await w2.get()
        assert e1 is None and e2 is None and loop.time() - t0 >= 0.3
        assert {a1.client_order_id, a2.client_order_id} == {"s1", "s2"} and a1.order_id in ex.orders
        assert rest.recovered_creates == 2 and len([r for r in ex.requests if r == CREATE]) == 2   # not re-sent
        assert not rest.fast._busy
    finally:
        await rest.close()
