"""The limiter's fair queue across markets (kalshi/limiter.py): round-robin inside a lane, places that
waited too long before the amends, dropping queued writes, batches sized to the bucket.

Deterministic: the clock is fake and the test drives ``dispatch`` itself (the timer is disabled)."""

from __future__ import annotations

import asyncio
import random

import pytest

from kmm.kalshi.limiter import AMEND, CANCEL, FAIR_KEY, PLACE, NotSent, RateLimiter

NS = 1_000_000_000


def basic(clock, **kw):
    lim = RateLimiter(200, 100, burst_s=1.0, cancel_reserve=20.0, clock_ns=clock, **kw)
    lim._schedule = lambda delay_ns: None          # the test calls dispatch() itself
    return lim


def drain(lim, clock):
    while lim.poll(PLACE, 10) == 0:
        pass
    lim.write.tokens = 20.0                        # exactly the cancel reserve: places must wait


async def enqueue(lim, lane, key, log, cost=10.0):
    async def one():
        FAIR_KEY.set(key)
        await lim.acquire(lane, cost)
        log.append(key)
    t = asyncio.get_running_loop().create_task(one())
    await asyncio.sleep(0)
    return t


async def step(lim, clock, seconds):
    clock.advance(seconds)
    lim.dispatch()
    await asyncio.sleep(0)


async def test_a_busy_market_gets_one_grant_per_round_not_the_whole_lane(clock):
    lim = basic(clock)
    drain(lim, clock)
    log: list[str] = []
    tasks = [await enqueue(lim, PLACE, "HOG", log) for _ in range(10)]
    tasks += [await enqueue(lim, PLACE, k, log) for k in "ABCDE"]
    for _ in range(15):
        await step(lim, clock, 0.1)                # 10 tokens: one place per step
    await asyncio.gather(*tasks)
    # the five other markets are served in the first round, not after the hog's ten requests
    assert log[:6] == ["HOG", "A", "B", "C", "D", "E"]
    assert log[6:] == ["HOG"] * 9
    st = lim.fair_stats()
    assert st["HOG"]["grants"] == 10 and st["E"]["grants"] == 1 and st["E"]["max_wait_s"] <= 0.6 + 1e-9


async def test_a_place_that_waited_goes_before_amends_that_keep_coming(clock):
    lim = basic(clock, promote_after_s=1.0)
    drain(lim, clock)
    log: list[str] = []
    tasks = [await enqueue(lim, PLACE, "NEW", log)]
    # quoted markets keep asking for amends, one more every step: with strict lanes NEW would never go
    for i in range(40):
        tasks.append(await enqueue(lim, AMEND, f"Q{i % 7}", log))
        await step(lim, clock, 0.1)
    assert "NEW" in log
    waited = lim.fair_stats()["NEW"]["max_wait_s"]
    assert 1.0 <= waited <= 1.0 + 0.1 + 1e-9, waited       # promoted once it had waited 1 s
    assert lim.promotions >= 1
    for t in tasks:
        t.cancel()


async def test_no_market_waits_longer_than_the_queue_takes_to_drain(clock):
    # 300 markets, each asking a place and then amends at random, on Basic's 10 writes/s: the
    # longest wait of any request is bounded by the backlog / rate (+ the promotion delay)
    rng = random.Random(3)
    lim = basic(clock, promote_after_s=1.0, max_queue_s=0)     # nothing expires: every request is served
    drain(lim, clock)
    log: list[str] = []
    tasks = [await enqueue(lim, PLACE, f"M{i}", log) for i in range(300)]
    for s in range(400):                            # 40 s of refill
        if s % 4 == 0:
            for _ in range(3):
                tasks.append(await enqueue(lim, AMEND, f"M{rng.randrange(300)}", log))
        await step(lim, clock, 0.1)
    for t in tasks:
        t.cancel()
    st = lim.fair_stats()
    first = [st[f"M{i}"]["grants"] for i in range(300)]
    assert min(first) >= 1                          # every market got its place
    # 300 places + 300 amends over 40 s at 10 writes/s: nothing waited past ~31 s of backlog
    assert max(v["max_wait_s"] for v in st.values()) < 32.0


async def test_drop_waiting_fails_queued_places_and_amends_but_not_cancels(clock):
    lim = basic(clock)
    drain(lim, clock)
    lim.write.tokens = 0.0
    log: list[str] = []
    p1 = await enqueue(lim, PLACE, "A", log)
    p2 = await enqueue(lim, PLACE, "B", log)
    a1 = await enqueue(lim, AMEND, "A", log)
    c1 = await enqueue(lim, CANCEL, "A", log, cost=2.0)
    assert lim.drop_waiting("event A reduce-only", keys={"A"}) == 2
    await asyncio.sleep(0)
    for t in (p1, a1):
        with pytest.raises(NotSent):
            t.result()
    assert not p2.done() and not c1.done()
    await step(lim, clock, 0.05)
    assert c1.done() and c1.exception() is None
    assert lim.drop_waiting("stop") == 1
    await asyncio.sleep(0)
    with pytest.raises(NotSent):
        p2.result()


def test_a_batch_fits_the_write_bucket_with_the_cancel_reserve(clock):
    lim = basic(clock)                              # Basic: 100 tokens, 20 kept for cancels
    assert lim.batch_room() == 8
    lim.set_budget(1000, 1000, write_capacity=2000)
    assert lim.batch_room() == 198                  # capped by the caller at protocol.BATCH_CREATE_MAX


async def test_a_write_queued_past_max_queue_s_is_dropped_never_sent(clock):
    lim = basic(clock, max_queue_s=4.0)
    drain(lim, clock)
    lim.write.tokens = 0.0
    lim.write.rate = 1e-9                           # no refill: only the expiry can move anything
    log: list[str] = []
    old = await enqueue(lim, PLACE, "A", log)
    clock.advance(3.0)
    young = await enqueue(lim, AMEND, "B", log)
    cancel = await enqueue(lim, CANCEL, "A", log, cost=2.0)
    clock.advance(1.5)
    lim.dispatch()
    await asyncio.sleep(0)
    with pytest.raises(NotSent, match="stale"):
        old.result()
    assert not young.done() and lim.expired == 1
    clock.advance(3.0)
    lim.dispatch()
    await asyncio.sleep(0)
    with pytest.raises(NotSent):
        young.result()
    assert not cancel.done()                         # a cancel is never dropped
    cancel.cancel()


async def test_a_batch_counts_as_a_grant_for_each_of_its_markets(clock):
    lim = basic(clock)
    drain(lim, clock)
    log: list[str] = []
    batch = await enqueue(lim, PLACE, ("A", "B"), log)
    await step(lim, clock, 0.1)
    assert batch.done() and lim.fair_stats()["A"]["grants"] == 1 == lim.fair_stats()["B"]["grants"]
    # C (never served) goes before A's and B's next requests, whatever the order they came in
    tasks = [await enqueue(lim, PLACE, k, log) for k in ("A", "B", "C")]
    for _ in range(3):
        await step(lim, clock, 0.1)
    await asyncio.gather(*tasks)
    assert log[1:] == ["C", "A", "B"]
    # dropping the places of market B takes a queued batch that holds B too
    lim.write.tokens = 0.0
    b2 = await enqueue(lim, PLACE, ("B", "D"), log)
    assert lim.drop_waiting("event pull", keys={"B"}) == 1
    await asyncio.sleep(0)
    with pytest.raises(NotSent):
        b2.result()
