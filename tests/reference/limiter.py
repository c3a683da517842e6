"""``RateLimiter.dispatch`` and ``_expire`` as they were before the dispatch skipped empty lanes: every
lane served (``_serve`` -> ``FairQueue.head``) and asked for its oldest waiter whatever it holds. The
limiter's fast version is held to this (tests/kalshi/test_limiter_fast.py): the same grants, drops,
waits and queue states."""

from __future__ import annotations

from kmm.kalshi.limiter import AMEND, CANCEL, PLACE, READ, NotSent, RateLimiter, _NS


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
        wait = lim._serve(CANCEL, shard, cancel_q)
        if wait is not None:
            later(wait)
            continue
        oldest = place_q.oldest_waiter()
        if amend_q and oldest is not None and lim._clock() - oldest.enq_ns >= lim.promote_after_ns:
            lim.promotions += 1
            wait = lim._serve(PLACE, shard, place_q)
            if wait is not None:
                later(wait)
                continue
        wait = lim._serve(AMEND, shard, amend_q)
        if wait is not None:
            later(wait)
            continue
        later(lim._serve(PLACE, shard, place_q))
    later(lim._serve(READ, None, lim._read_waiters))
    return next_wait
