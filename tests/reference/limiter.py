"""``RateLimiter.dispatch`` and ``_expire`` as they were before the dispatch skipped empty lanes: every
lane served and asked for its oldest waiter whatever it holds; and the steps under them as they were
before they were written out (Nov 28, session 9): ``serve`` calls ``poll`` (which calls the bucket's
``refill`` and ``wait_ns``) for every head, ``head`` cleans every key's queue with ``FairQueue._live``
and asks ``served(key)`` for every key. The limiter's fast version is held to this
(tests/kalshi/test_limiter_fast.py): the same grants, drops, waits, tokens and queue states."""

from __future__ import annotations

from kmm.kalshi.limiter import AMEND, CANCEL, PLACE, READ, FairQueue, NotSent, RateLimiter, _NS, _Waiter


def poll(lim: RateLimiter, lane: int, cost: float, shard: int | None = None) -> int:
    now = lim._clock()
    if lane == READ:
        if now < lim.read_paused_until_ns:
            return lim.read_paused_until_ns - now
        bucket = lim.read
        floor = 0.0
    else:
        w = lim._writes(shard)
        if lane != CANCEL and now < w.paused_until_ns:
            return w.paused_until_ns - now
        bucket = w.bucket
        floor = 0.0 if lane == CANCEL else lim.cancel_reserve
    bucket.refill(now)
    wait = bucket.wait_ns(cost, floor)
    if wait == 0:
        bucket.tokens -= cost
        lim._granted[lane] += 1
    return wait


def head(q: FairQueue) -> _Waiter | None:
    served = q._served
    best: tuple[int, object] | None = None
    for key in list(q._round):
        qq = q._live(key)
        if qq is None:
            continue
        if served is None:
            q._next = key
            return qq[0]
        n = served(key)
        if best is None or n < best[0]:
            best = (n, key)
            if n == 0:
                break
    if best is None:
        return None
    q._next = best[1]
    return q._by_key[best[1]][0]


def serve(lim: RateLimiter, lane: int, shard: int | None, q: FairQueue) -> int | None:
    while True:
        w = head(q)
        if w is None:
            return None
        if w.fut.done():
            q.pop()
            continue
        wait = poll(lim, lane, w.cost, shard)
        if wait:
            return wait
        lim._grant(q, w, lim._clock())


def expire(lim: RateLimiter, before_ns: int) -> None:
    for w in lim._all_writes():
        for lane in (AMEND, PLACE):
            q = w.waiters[lane]
            while (x := q.oldest_waiter()) is not None and x.enq_ns < before_ns:
                q.pop_waiter(x)
                lim.expired += 1
                x.fut.set_exception(NotSent(f"waited {(lim._clock() - x.enq_ns) / _NS:.1f} s in the "
                                            "rate limiter's queue: the decision is stale"))


def dispatch(lim: RateLimiter) -> int | None:
    next_wait: int | None = None

    def later(wait: int | None) -> None:
        nonlocal next_wait
        if wait is not None:
            next_wait = wait if next_wait is None else min(next_wait, wait)

    if lim.max_queue_ns:
        expire(lim, lim._clock() - lim.max_queue_ns)
    for shard, w in [(None, lim._w0), *lim._shard_writes.items()]:
        cancel_q, amend_q, place_q = w.waiters
        wait = serve(lim, CANCEL, shard, cancel_q)
        if wait is not None:
            later(wait)
            continue
        oldest = place_q.oldest_waiter()
        if amend_q and oldest is not None and lim._clock() - oldest.enq_ns >= lim.promote_after_ns:
            lim.promotions += 1
            wait = serve(lim, PLACE, shard, place_q)
            if wait is not None:
                later(wait)
                continue
        wait = serve(lim, AMEND, shard, amend_q)
        if wait is not None:
            later(wait)
            continue
        later(serve(lim, PLACE, shard, place_q))
    later(serve(lim, READ, None, lim._read_waiters))
    return next_wait
