"""RateLimiter.try_acquire takes a write in one call (the order path's every request): held here to
what it was before, the composition of the limiter's own steps (_blocked_by_queue, poll, _count), over
random sequences of takes, 429 pauses, queued waiters, markets and shards: the same answers, tokens,
grants and per-market counts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.kalshi.limiter import CANCEL, FAIR_KEY, PLACE, READ, RateLimiter


def reference_try_acquire(lim: RateLimiter, lane: int, cost: float, shard: int | None = None) -> bool:
    """try_acquire as it was: the limiter's steps one after the other."""
    if lim._blocked_by_queue(lane, shard):
        return False
    if lim.poll(lane, cost, shard) == 0:
        lim._count(FAIR_KEY.get(), 0, False)
        return True
    return False


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def state(lim: RateLimiter) -> tuple:
    writes = [lim._w0, *(lim._shard_writes[k] for k in sorted(lim._shard_writes))]
    return (round(lim.read.tokens, 9), tuple((round(w.bucket.tokens, 9), w.paused_until_ns) for w in writes),
            tuple(lim._granted), tuple(sorted((k, tuple(v)) for k, v in lim._fair.items())))


op = st.one_of(
    st.tuples(st.just("take"), st.sampled_from([CANCEL, 1, PLACE, READ]), st.sampled_from([1.0, 2.0, 10.0, 100.0]),
              st.sampled_from([None, 0, 1, 2]), st.sampled_from(["A", "B", ("A", "B")])),
    st.tuples(st.just("tick"), st.integers(0, 2_000_000_000)),
    st.tuples(st.just("429"), st.sampled_from([1, PLACE, READ]), st.sampled_from([None, 1])),
    st.tuples(st.just("queue"), st.sampled_from([0, 1, 2]), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op, max_size=60), write_rate=st.sampled_from([10.0, 100.0, 1000.0]))
def test_try_acquire_in_one_call_matches_the_steps_it_replaces(ops, write_rate):
    clocks = (Clock(), Clock())
    fast, ref = (RateLimiter(20.0, write_rate, clock_ns=c, cancel_reserve=5.0) for c in clocks)
    for o in ops:
        if o[0] == "take":
            _, lane, cost, shard, key = o
            token = FAIR_KEY.set(key)
            try:
                got = fast.try_acquire(lane, cost, shard)
                want = reference_try_acquire(ref, lane, cost, shard)
            finally:
                FAIR_KEY.reset(token)
            assert got == want, o
        elif o[0] == "tick":
            for c in clocks:
                c.now += o[1]
        elif o[0] == "429":
            assert fast.on_rate_limited(o[1], shard=o[2]) == ref.on_rate_limited(o[1], shard=o[2])
        else:                               # a request of that lane queued (or not) on the unscoped bucket
            for lim in (fast, ref):
                lim._w0.waiters[o[1]]._n = int(o[2])
        assert state(fast) == state(ref), o
