from __future__ import annotations

import asyncio

import pytest

from kmm.kalshi.limiter import AMEND, CANCEL, PLACE, READ, RateLimiter, TokenBucket, limits_from_account

NS = 1_000_000_000


def test_bucket_refills_continuously_up_to_capacity():
    b = TokenBucket(100, 200, now_ns=0)
    b.tokens = 0
    b.refill(NS // 10)
    assert b.tokens == pytest.approx(10)
    b.refill(10 * NS)
    assert b.tokens == 200


def make(clock, write=100.0, read=200.0, reserve=20.0):
    return RateLimiter(read, write, burst_s=2.0, cancel_reserve=reserve, backoff_base_s=0.25,
                       backoff_max_s=2.0, clock_ns=clock)


def test_burst_holds_two_seconds_of_budget_then_places_wait_for_refill(clock):
    lim = make(clock)
    # 200 tokens, 20 reserved for cancels: 18 places of 10 go through at once
    granted = sum(1 for _ in range(30) if lim.poll(PLACE, 10) == 0)
    assert granted == 18
    wait = lim.poll(PLACE, 10)
    assert wait == pytest.approx(0.1 * NS, rel=0.01)  # 10 tokens at 100/s
    clock.advance(0.1)
    assert lim.poll(PLACE, 10) == 0


def test_cancels_cost_two_and_may_use_the_reserve(clock):
    lim = make(clock)
    while lim.poll(PLACE, 10) == 0:
        pass
    assert lim.write.tokens == pytest.approx(20)
    assert sum(1 for _ in range(20) if lim.poll(CANCEL, 2) == 0) == 10
    assert lim.poll(CANCEL, 2) > 0


def test_batch_cost_is_per_item(clock):
    lim = make(clock)
    assert lim.poll(PLACE, 10 * 5) == 0
    assert lim.write.tokens == pytest.approx(150)
    assert lim.poll(CANCEL, 2 * 20) == 0
    assert lim.write.tokens == pytest.approx(110)


def test_read_bucket_is_independent_of_writes(clock):
    lim = make(clock)
    while lim.poll(CANCEL, 2) == 0:
        pass
    assert lim.poll(READ, 10) == 0
    assert lim.read.tokens == pytest.approx(390)


def test_a_write_429_pauses_places_and_amends_but_not_cancels_or_reads(clock):
    lim = make(clock)
    pause = lim.on_rate_limited(PLACE)
    assert pause == 0.25 * NS
    assert lim.poll(PLACE, 10) > 0 and lim.poll(AMEND, 10) > 0
    assert lim.poll(READ, 10) == 0          # Kalshi's read and write buckets are independent
    clock.advance(0.03)  # bucket assumed empty after a 429: 3 tokens back
    assert lim.poll(CANCEL, 2) == 0
    assert lim.pressure() == 1.0


def test_a_read_429_pauses_reads_only(clock):
    lim = make(clock)
    assert lim.on_rate_limited(READ) == 0.25 * NS
    assert lim.poll(READ, 10) > 0
    assert lim.poll(PLACE, 10) == 0 and lim.poll(CANCEL, 2) == 0


def test_429_backoff_doubles_per_pause_up_to_the_cap_and_resets_after_success(clock):
    lim = make(clock)
    assert lim.on_rate_limited() == 0.25 * NS
    clock.advance(0.1)
    assert lim.on_rate_limited() == 0.15 * NS    # answers to requests sent together count once
    pauses = []
    for _ in range(4):
        clock.advance(2.5)                        # each 429 after the previous pause ended escalates
        pauses.append(lim.on_rate_limited())
    assert pauses == [0.5 * NS, 1.0 * NS, 2.0 * NS, 2.0 * NS]
    clock.advance(3)
    lim.on_success()
    assert lim.on_rate_limited() == 0.25 * NS


def test_pressure_reports_fraction_of_write_budget_used(clock):
    lim = make(clock)
    assert lim.pressure() == 0.0
    lim.poll(PLACE, 100)
    assert lim.pressure() == pytest.approx(0.5)
    clock.advance(0.5)
    assert lim.pressure() == pytest.approx(0.25)


async def test_waiting_place_never_delays_a_cancel(clock):
    lim = make(clock)
    while lim.poll(PLACE, 10) == 0:
        pass
    place = asyncio.ensure_future(lim.acquire(PLACE, 10))
    await asyncio.sleep(0)
    assert lim.queue_depths()["place"] == 1
    await asyncio.wait_for(lim.acquire(CANCEL, 2), 0.1)  # goes straight past the queued place
    assert not place.done()
    clock.advance(1.0)
    lim.dispatch()
    await asyncio.sleep(0)
    assert place.done() and lim.queue_depths()["place"] == 0
    lim.close()


async def test_queued_lanes_are_served_cancel_then_amend_then_place(clock):
    lim = make(clock, reserve=0)
    while lim.poll(CANCEL, 2) == 0:
        pass
    order: list[str] = []

    async def go(lane, name):
        await lim.acquire(lane, 10)
        order.append(name)

    tasks = [asyncio.ensure_future(go(PLACE, "place")), asyncio.ensure_future(go(AMEND, "amend")),
             asyncio.ensure_future(go(CANCEL, "cancel"))]
    await asyncio.sleep(0)
    assert lim.queue_depths() == {"cancel": 1, "amend": 1, "place": 1, "read": 0}
    for _ in range(3):
        clock.advance(0.1)  # 10 tokens: one request at a time
        lim.dispatch()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert order == ["cancel", "amend", "place"]
    await asyncio.gather(*tasks)
    lim.close()


async def test_acquire_when_budget_allows_returns_without_queueing(clock):
    lim = make(clock)
    await lim.acquire(PLACE, 10)
    assert lim.granted()["place"] == 1 and lim.queue_depths()["place"] == 0


def test_set_budget_from_account_limits(clock):
    lim = make(clock)
    lim.set_budget(*limits_from_account({"usage_tier": "premier"}))
    assert (lim.read.rate, lim.write.rate, lim.write.capacity) == (1000, 1000, 2000)
    assert limits_from_account({"read_limit": 300, "write_limit": {"rate": 300}}) == (300.0, 300.0)
    assert limits_from_account({"nothing": 1}) is None


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.kalshi.conftest import FakeClock  # noqa: E402

_steps = st.lists(st.tuples(st.sampled_from([CANCEL, AMEND, PLACE]), st.sampled_from([2, 10, 20, 50]),
                            st.floats(min_value=0, max_value=0.2)), max_size=200)


@given(_steps)
def test_granted_writes_never_exceed_burst_plus_refill(steps):
    clock = FakeClock()
    lim = make(clock)
    spent = 0.0
    elapsed = 0.0
    for lane, cost, dt in steps:
        clock.advance(dt)
        elapsed += int(dt * 1e9) / 1e9
        if lim.poll(lane, cost) == 0:
            spent += cost
        assert spent <= lim.write.capacity + lim.write.rate * elapsed + 1e-6
        assert -1e-6 <= lim.write.tokens <= lim.write.capacity + 1e-6


@given(_steps)
def test_places_never_spend_the_cancel_reserve(steps):
    clock = FakeClock()
    lim = make(clock)
    for lane, cost, dt in steps:
        clock.advance(dt)
        if lim.poll(lane, cost) == 0 and lane != CANCEL:
            assert lim.write.tokens >= lim.cancel_reserve - 1e-6


async def test_close_fails_waiting_requests_with_an_error_not_a_cancellation(clock):
    from kmm.errors import KmmError
    lim = make(clock)
    while lim.poll(PLACE, 10) == 0:
        pass
    waiting = asyncio.ensure_future(lim.acquire(PLACE, 10))
    await asyncio.sleep(0)
    lim.close()
    with pytest.raises(KmmError, match="closed"):
        await waiting


# -- per-shard write buckets (kalshi-api.md 5) -------------------------------------------------------

def test_each_shard_has_its_own_write_bucket_with_the_full_budget(clock):
    lim = make(clock)
    assert sum(1 for _ in range(30) if lim.poll(PLACE, 10) == 0) == 18     # unscoped: empty to the reserve
    assert lim.poll(PLACE, 10, shard=0) > 0 and lim.poll(PLACE, 10, shard=-1) > 0  # 0/-1 bill it too
    for shard in (1, 2):
        assert sum(1 for _ in range(30) if lim.poll(PLACE, 10, shard=shard) == 0) == 18
        assert lim.shard_bucket(shard).tokens == pytest.approx(20)
        assert lim.shard_bucket(shard).capacity == lim.write.capacity
    assert lim.poll(PLACE, 10, shard=1) == pytest.approx(0.1 * NS, rel=0.01)
    # the shards' spending never touched the unscoped bucket's cancel reserve
    assert lim.write.tokens == pytest.approx(20)
    assert lim.pressure(1) == pytest.approx(0.9) and lim.pressure() == pytest.approx(0.9)


def test_a_429_on_one_shard_pauses_that_shard_only(clock):
    lim = make(clock)
    assert lim.on_rate_limited(PLACE, shard=2) == 0.25 * NS
    assert lim.poll(PLACE, 10, shard=2) > 0
    assert lim.poll(PLACE, 10, shard=1) == 0 and lim.poll(PLACE, 10) == 0
    clock.advance(0.03)
    assert lim.poll(CANCEL, 2, shard=2) == 0                 # cancels still go on the paused shard
    assert lim.place_pause_ns(2) == 0.22 * NS and lim.place_pause_ns(0) == 0
    assert lim.place_pause_ns() == 0.22 * NS                  # no shard named: the longest pause
    assert lim.pressure(2) == 1.0 and lim.pressure(0) < 1.0
    clock.advance(0.3)
    lim.on_success(PLACE, shard=2)
    assert lim.on_rate_limited(PLACE, shard=2) == 0.25 * NS   # back to the base after a success


def test_set_budget_resizes_every_shard_bucket(clock):
    lim = make(clock)
    lim.poll(PLACE, 10, shard=3)
    lim.set_budget(400, 300, write_capacity=600)
    assert (lim.shard_bucket(3).rate, lim.shard_bucket(3).capacity) == (300, 600)
    assert (lim.shard_bucket(4).rate, lim.shard_bucket(4).capacity) == (300, 600)   # made later: same


async def test_a_place_queued_on_one_shard_does_not_hold_back_another(clock):
    lim = make(clock, reserve=0)
    while lim.poll(PLACE, 10, shard=1) == 0:
        pass
    waiting = asyncio.ensure_future(lim.acquire(PLACE, 10, shard=1))
    await asyncio.sleep(0)
    assert lim.queue_depths()["place"] == 1
    await asyncio.wait_for(lim.acquire(PLACE, 10, shard=2), 0.1)
    await asyncio.wait_for(lim.acquire(PLACE, 10), 0.1)
    assert not waiting.done()
    clock.advance(0.1)
    lim.dispatch()
    await asyncio.sleep(0)
    assert waiting.done() and lim.queue_depths()["place"] == 0
    lim.close()

