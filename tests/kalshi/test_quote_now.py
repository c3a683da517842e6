"""The maker's quote written in one call (KalshiRest.place_quote_now) against the general order path
(create_order_now of the same OrderRequest): the same bytes on the wire, the same budget, signature and
connection rules (nothing taken or written when one is missing), the same outcomes (ack, refusal, a 429
that pauses the budget, an unknown outcome looked up by client_order_id and never re-sent)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.errors import ExchangeError, RateLimited
from kmm.kalshi.limiter import PLACE
from kmm.kalshi.rest import KalshiRest, OrderNotPlaced
from kmm.kalshi.signing import Signer
from kmm.kalshi.types import OrderRequest
from tests.kalshi.mini_exchange import MiniExchange
from tests.kalshi.test_rest_loopback import KEY_ID, TICKERS, config
from tests.kalshi.test_rest_now import Waiter, client

FULL = "/trade-api/v2/portfolio/events/orders"
FIXED_AUTH = {"KALSHI-ACCESS-TIMESTAMP": "1700000000000", "KALSHI-ACCESS-SIGNATURE": "c2lnbmF0dXJl"}


def quote_request(ticker: str, side: str, price: int, count: int, coid: str, group: str | None) -> OrderRequest:
    """What the maker's full path sends for a quote (Engine._send_place)."""
    return OrderRequest(ticker=ticker, side=side, price=price, count=count, client_order_id=coid,
                        post_only=True, cancel_order_on_pause=True, order_group_id=group)


class _Conn:
    """An idle connection that writes nowhere: each request's bytes and completion are kept in
    ``sent``, and it is idle again at once."""

    closed = False
    last_write_ns = 1

    def __init__(self, idle: Any, sent: list[tuple[bytes, Any]]) -> None:
        self.idle, self.sent = idle, sent

    def start(self, data: bytes, timeout_s: float, done: Any) -> None:
        self.sent.append((data, done))
        self.idle.append(self)


def sign_ahead(rest: KalshiRest, path: str = FULL) -> None:
    """One fresh pre-made signature (the fixed one) for ``path``: the compiled write takes it."""
    key = ("POST", path)
    if key not in rest.pool._slots:
        rest.pool.add_pair("POST", path)
    rest.pool._slots[key].append((time.monotonic_ns(), FIXED_AUTH))


@pytest.fixture(scope="module")
def offline(rsa_key):
    """A client that writes nowhere: every write's bytes and completion are captured; signatures are
    fixed (a real one differs at each take), the budget ample. The compiled writes take their
    signature from the pair's ring (:func:`sign_ahead`), the Python ones from ``pool.take``."""
    cfg = config(type("Ex", (), {"rest_url": "http://127.0.0.1:9/trade-api/v2",
                                 "ws_url": "ws://127.0.0.1:9/trade-api/ws/v2"})())
    rest = KalshiRest(cfg, signer=Signer(KEY_ID, rsa_key))
    rest._session = object()                    # started, as far as the order path asks
    sent: list[tuple[bytes, Any]] = []
    rest.fast._idle.append(_Conn(rest.fast._idle, sent))

    def send_raw(data: bytes, done: Any, timeout_s: float | None = None) -> int:
        sent.append((data, done))
        return 1
    rest.fast.send_raw = send_raw              # type: ignore[method-assign]
    sign_ahead(rest)
    rest.pool.take = lambda method, path: FIXED_AUTH   # type: ignore[method-assign]
    rest.limiter.set_budget(1e9, 1e9)
    return rest, sent


@settings(max_examples=300, deadline=None)
@given(ticker=st.sampled_from(["KXT-0", "KXSIMA-26-A", "KX.B-1_2"]), side=st.sampled_from(["bid", "ask"]),
       price=st.integers(1, 9999), count=st.integers(1, 10**7),
       coid=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
       group=st.one_of(st.none(), st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True)),
       shard=st.one_of(st.none(), st.integers(0, 3)))
def test_the_quote_path_writes_the_bytes_of_the_full_path(offline, ticker, side, price, count, coid, group, shard):
    rest, sent = offline
    if shard is None:
        rest.shards.pop(ticker, None)
    else:
        rest.shards[ticker] = shard
    del sent[:]
    granted = dict(rest.limiter.granted())
    assert rest.create_order_now(quote_request(ticker, side, price, count, coid, group), lambda *a: None,
                                 lambda c: None) == 1
    sign_ahead(rest)
    places = rest._qw.places
    assert rest.place_quote_now(ticker, side, price, count, coid, group, lambda *a: None, None,
                                lambda c: None) == 1
    assert rest._qw.places == places + 1                    # the compiled write made these bytes
    assert len(sent) == 2 and sent[0][0] == sent[1][0]
    after = rest.limiter.granted()
    assert after["place"] == granted["place"] + 2           # one grant each, same lane


@pytest.mark.parametrize("price,count,side,coid", [(0, 100, "bid", "a"), (10_000, 100, "ask", "a"),
                                                     (5000, 0, "bid", "a"), (5000, 100, "buy", "a"),
                                                     (5000, 100, "bid", "")])
def test_a_value_the_encoder_refuses_is_not_written_and_the_full_path_raises(offline, price, count, side, coid):
    rest, sent = offline
    del sent[:]
    assert rest.place_quote_now("KXT-0", side, price, count, coid, None, lambda *a: None, None,
                                lambda c: None) == 0
    with pytest.raises(ValueError):
        rest.create_order_now(quote_request("KXT-0", side, price, count, coid, None), lambda *a: None,
                              lambda c: None)
    assert sent == []


@pytest.fixture
async def ex(rsa_key):
    async with MiniExchange(rsa_key.public_key(), KEY_ID, TICKERS) as server:
        yield server


class CtxWaiter(Waiter):
    def done3(self, ctx, result, exc) -> None:
        assert ctx == "ctx"
        self.done(result, exc)


async def test_a_quote_is_acked_like_the_full_path_and_nothing_is_taken_when_a_part_is_missing(ex, rsa_key):
    rest = await client(ex, rsa_key)
    try:
        w = CtxWaiter()
        tasks_before = len(asyncio.all_tasks())
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "q1", None, w.done3, "ctx", w.spawn) > 0
        assert len(asyncio.all_tasks()) == tasks_before
        ack, exc = await w.get()
        assert exc is None and ack.client_order_id == "q1" and ack.remaining_count == 1000
        assert ex.orders[ack.order_id]["status"] == "resting" and rest.pool.stats.hits == 1
        # no budget now: nothing taken or written
        while rest.limiter.try_acquire(PLACE, 10.0):
            pass
        made = rest.pool.available("POST", FULL)
        w = CtxWaiter()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "q2", None, w.done3, "ctx", w.spawn) == 0
        assert rest.pool.available("POST", FULL) == made
        rest.limiter.set_budget(1e6, 1e6)
        # no idle connection
        idle = list(rest.fast._idle)
        rest.fast._idle.clear()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "q3", None, w.done3, "ctx", w.spawn) == 0
        rest.fast._idle.extend(idle)
        # no pre-made signature
        rest.pool._slots[("POST", FULL)].clear()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "q4", None, w.done3, "ctx", w.spawn) == 0
        assert rest.fast.requests == 1 and not w.fut.done()
        assert {o["client_order_id"] for o in ex.orders.values()} == {"q1"}
    finally:
        await rest.close()


async def test_a_429_pauses_the_budget_a_refusal_is_told_and_a_500_is_looked_up_never_resent(ex, rsa_key):
    rest = await client(ex, rsa_key, create_lookup_window_s=0.2)
    try:
        ex.error_burst = [429]
        w = CtxWaiter()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "r1", None, w.done3, "ctx", w.spawn) > 0
        ack, exc = await w.get()
        assert ack is None and isinstance(exc, RateLimited)
        assert rest.limiter.rate_limited == 1 and rest.limiter.place_pause_ns() > 0
        rest.limiter.set_backoff(0.0, 0.0)
        rest.limiter.set_budget(1e6, 1e6)
        await asyncio.sleep(0.01)
        rest.pool.fill_now()
        # a refusal: the exchange's error, as the full path gives it
        ex.error_burst = [400]
        w = CtxWaiter()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "r1", None, w.done3, "ctx", w.spawn) > 0
        ack, exc = await w.get()
        assert ack is None and isinstance(exc, ExchangeError) and exc.status == 400 and exc.code == "internal"
        # a 500: the outcome is unknown; looked up by client_order_id (not found: not placed), not re-sent
        ex.error_burst = [500]
        creates = sum(1 for r in ex.requests if r == ("POST", FULL))
        rest.pool.fill_now()
        w = CtxWaiter()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "r2", None, w.done3, "ctx", w.spawn) > 0
        ack, exc = await w.get()
        assert ack is None and isinstance(exc, OrderNotPlaced) and len(w.tasks) == 1
        assert sum(1 for r in ex.requests if r == ("POST", FULL)) == creates + 1
    finally:
        await rest.close()


@settings(max_examples=200, deadline=None)
@given(order_id=st.from_regex(r"[a-f0-9-]{8,36}", fullmatch=True), ticker=st.sampled_from(["KXT-0", "KX.B-1_2"]),
       side=st.sampled_from(["bid", "ask"]), price=st.integers(1, 9999), count=st.integers(1, 10**7),
       coid=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)),
       shard=st.one_of(st.none(), st.integers(0, 3)))
def test_the_amend_path_writes_the_bytes_of_the_full_path(offline, order_id, ticker, side, price, count, coid,
                                                          shard):
    rest, sent = offline
    if shard is None:
        rest.shards.pop(ticker, None)
    else:
        rest.shards[ticker] = shard
    sign_ahead(rest, f"{FULL}/{order_id}/amend")
    del sent[:]
    granted = rest.limiter.granted()["amend"]
    assert rest.amend_order_now(order_id, ticker=ticker, side=side, price=price, count=count, client_order_id=coid,
                                done=lambda *a: None, spawn=lambda c: None) == 1
    amends = rest._qw.amends
    assert rest.amend_quote_now(order_id, ticker, side, price, count, coid, lambda *a: None, None,
                                lambda c: None) == 1
    assert rest._qw.amends == amends + 1                    # the compiled write made these bytes
    assert len(sent) == 2 and sent[0][0] == sent[1][0]
    assert rest.limiter.granted()["amend"] == granted + 2


async def test_an_amend_is_acked_like_the_full_path_and_needs_its_pre_made_signature(ex, rsa_key):
    rest = await client(ex, rsa_key)
    try:
        w = CtxWaiter()
        assert rest.place_quote_now("KXT-0", "bid", 4500, 1000, "a1", None, w.done3, "ctx", w.spawn) > 0
        ack, exc = await w.get()
        w = CtxWaiter()
        # no pre-made signature for the order's amend path yet: nothing taken or written
        assert rest.amend_quote_now(ack.order_id, "KXT-0", "bid", 4600, 800, "a1", w.done3, "ctx", w.spawn) == 0
        rest.presign_order(ack.order_id)
        rest.pool.fill_now()
        assert rest.amend_quote_now(ack.order_id, "KXT-0", "bid", 4600, 800, "a1", w.done3, "ctx", w.spawn) > 0
        am, exc = await w.get()
        assert exc is None and am.remaining_count == 800 and ex.orders[ack.order_id]["yes_price_dollars"] == "0.4600"
        assert ex.auth_failures == 0 and rest.pool.stats.misses == 0 and not w.tasks
    finally:
        await rest.close()
