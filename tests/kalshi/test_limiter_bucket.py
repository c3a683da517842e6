"""The compiled token bucket (kmm._core.bucket) against the plain-Python one it replaced
(tests/reference/bucket.py): the bucket alone, and a whole RateLimiter on each, over the same random
sequences of operations (takes and polls of every lane and shard, pressure, 429 pauses and successes,
budget changes, clock steps). Every answer, and every bucket's tokens and time, must be the same,
to the last bit."""

from __future__ import annotations

from contextlib import nullcontext
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.bucket import TokenBucket
from kmm.kalshi import limiter as _lim
from kmm.kalshi.limiter import AMEND, CANCEL, FAIR_KEY, PLACE, READ, RateLimiter
from tests.reference.bucket import TokenBucket as RefBucket


def bucket_state(b) -> tuple:
    return (b.tokens, b._last_ns, b.rate, b.capacity)


costs = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 10.0, 20.0, 100.0, 1000.0]),
                  st.floats(0.0, 500.0, allow_nan=False))
bucket_op = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 3_000_000_000)),
    st.tuples(st.just("refill")),
    st.tuples(st.just("wait_ns"), costs, st.sampled_from([0.0, 5.0, 20.0])),
    st.tuples(st.just("take"), costs, st.sampled_from([0.0, 5.0, 20.0])),
    st.tuples(st.just("level")),
    st.tuples(st.just("set_rate"), st.floats(0.5, 1000.0), st.floats(1.0, 5000.0)),
    st.tuples(st.just("set_tokens"), st.floats(-100.0, 200.0)),
)


@settings(max_examples=400, deadline=None)
@given(rate=st.floats(0.5, 1000.0), capacity=st.floats(1.0, 5000.0), start=st.integers(0, 10**15),
       ops=st.lists(bucket_op, max_size=80))
def test_the_compiled_bucket_is_the_reference(rate, capacity, start, ops):
    now = start
    new, ref = TokenBucket(rate, capacity, now), RefBucket(rate, capacity, now)
    for o in ops:
        if o[0] == "tick":
            now += o[1]
            continue
        if o[0] == "refill":
            got, want = new.refill(now), ref.refill(now)
        elif o[0] == "wait_ns":
            got, want = new.wait_ns(o[1], o[2]), ref.wait_ns(o[1], o[2])
        elif o[0] == "take":
            got, want = new.take(now, o[1], o[2]), ref.take(now, o[1], o[2])
        elif o[0] == "level":
            got, want = new.level(now), ref.level(now)
        elif o[0] == "set_rate":
            got, want = new.set_rate(o[1], o[2], now), ref.set_rate(o[1], o[2], now)
        else:
            new.tokens = ref.tokens = o[1]
            got = want = None
        assert got == want and type(got) is type(want), o
        assert bucket_state(new) == bucket_state(ref), o


def test_the_bucket_refuses_a_rate_or_capacity_of_zero():
    for cls in (TokenBucket, RefBucket):
        for args in ((0.0, 10.0, 0), (10.0, 0.0, 0), (-1.0, 10.0, 0)):
            try:
                cls(*args)
            except ValueError:
                continue
            raise AssertionError((cls, args))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def state(lim: RateLimiter) -> tuple:
    writes = [lim._w0, *(lim._shard_writes[k] for k in sorted(lim._shard_writes))]
    return (bucket_state(lim.read), lim.read_paused_until_ns, lim._read_backoff_ns,
            tuple((bucket_state(w.bucket), w.paused_until_ns, w.backoff_ns) for w in writes),
            tuple(lim._granted), lim.pauses, lim.rate_limited, lim.cancel_reserve,
            tuple(sorted((str(k), tuple(v)) for k, v in lim._fair.items())))


lanes = st.sampled_from([CANCEL, AMEND, PLACE, READ])
shards = st.sampled_from([None, -1, 0, 1, 2])
op = st.one_of(
    st.tuples(st.just("try_acquire"), lanes, costs, shards, st.sampled_from(["A", "B", ("A", "B"), None])),
    st.tuples(st.just("poll"), lanes, costs, shards),
    st.tuples(st.just("pressure"), st.sampled_from([None, 0, 1, 2])),
    st.tuples(st.just("read_pressure")),
    st.tuples(st.just("tick"), st.integers(0, 2_000_000_000)),
    st.tuples(st.just("429"), lanes, shards),
    st.tuples(st.just("success"), lanes, shards),
    st.tuples(st.just("set_budget"), st.floats(1.0, 200.0), st.floats(1.0, 500.0),
              st.one_of(st.none(), st.floats(10.0, 2000.0))),
    st.tuples(st.just("queue"), st.sampled_from([0, 1, 2]), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op, max_size=80), write_rate=st.sampled_from([10.0, 100.0, 1000.0]),
       reserve=st.sampled_from([0.0, 5.0, 20.0]))
def test_a_limiter_on_the_compiled_bucket_is_one_on_the_reference(ops, write_rate, reserve):
    clocks = (Clock(), Clock())

    def on_ref(i: int):     # the reference limiter's buckets (shards too, made on first use) are plain Python
        return patch.object(_lim, "TokenBucket", RefBucket) if i else nullcontext()

    lims = []
    for i, c in enumerate(clocks):
        with on_ref(i):
            lims.append(RateLimiter(20.0, write_rate, clock_ns=c, cancel_reserve=reserve))
    assert type(lims[0].write) is TokenBucket and type(lims[1].write) is RefBucket
    for o in ops:
        if o[0] == "tick":
            for c in clocks:
                c.now += o[1]
            continue
        got = []
        for i, lim in enumerate(lims):
            with on_ref(i):
                if o[0] == "try_acquire":
                    token = FAIR_KEY.set(o[4])
                    try:
                        got.append(lim.try_acquire(o[1], o[2], o[3]))
                    finally:
                        FAIR_KEY.reset(token)
                elif o[0] == "poll":
                    got.append(lim.poll(o[1], o[2], o[3]))
                elif o[0] == "pressure":
                    got.append(lim.pressure(o[1]))
                elif o[0] == "read_pressure":
                    got.append(lim.read_pressure())
                elif o[0] == "429":
                    got.append(lim.on_rate_limited(o[1], o[2]))
                elif o[0] == "success":
                    got.append(lim.on_success(o[1], o[2]))
                elif o[0] == "set_budget":
                    got.append(lim.set_budget(o[1], o[2], write_capacity=o[3]))
                else:               # a request of that lane queued (or not) on the unscoped bucket
                    lim._w0.waiters[o[1]]._n = int(o[2])
                    got.append(None)
        assert got[0] == got[1] and type(got[0]) is type(got[1]), o
        assert state(lims[0]) == state(lims[1]), o
    for lim in lims[1:]:
        for w in lim._all_writes():
            assert type(w.bucket) is RefBucket
