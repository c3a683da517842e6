"""RateLimiter.try_acquire takes a write in one call (the order path's every request): held here to
what it was before, the composition of the limiter's own steps (_blocked_by_queue, poll, _count), over
random sequences of takes, 429 pauses, queued waiters, markets and shards: the same answers, tokens,
grants and per-market counts."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
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
            tuple(lim._granted), tuple(sorted(((k, tuple(v)) for k, v in lim._fair.items()), key=repr)))


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


calm_op = st.one_of(
    op,
    st.tuples(st.just("calm"), st.sampled_from([CANCEL, 1, PLACE]), st.sampled_from([1.0, 2.0, 10.0, 100.0]),
              st.sampled_from([None, 0, 1, 2]), st.sampled_from([None, "A", "B"]),
              st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0, 2.0])),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(calm_op, max_size=60), write_rate=st.sampled_from([10.0, 100.0, 1000.0]))
def test_try_acquire_calm_is_the_pressure_check_then_try_acquire(ops, write_rate):
    """``try_acquire_calm(lane, cost, shard, max_pressure, key)`` (the frame entry's first request) is
    ``pressure() <= max_pressure`` (no shard: the most used write bucket), then ``try_acquire`` with
    ``key`` as the fair key: the same answers, tokens, grants and per-market counts."""
    clocks = (Clock(), Clock())
    fast, ref = (RateLimiter(20.0, write_rate, clock_ns=c, cancel_reserve=5.0) for c in clocks)
    refused_by_pressure = 0
    for o in ops:
        if o[0] == "calm":
            _, lane, cost, shard, key, mp = o
            got = fast.try_acquire_calm(lane, cost, shard, mp, key)
            calm = not (mp < 1.0 and ref.pressure() > mp)
            token = FAIR_KEY.set(key)
            try:
                want = calm and reference_try_acquire(ref, lane, cost, shard)
            finally:
                FAIR_KEY.reset(token)
            refused_by_pressure += not calm
            assert got == want, o
        elif o[0] == "take":
            _, lane, cost, shard, key = o
            token = FAIR_KEY.set(key)
            try:
                assert fast.try_acquire(lane, cost, shard) == reference_try_acquire(ref, lane, cost, shard), o
            finally:
                FAIR_KEY.reset(token)
        elif o[0] == "tick":
            for c in clocks:
                c.now += o[1]
        elif o[0] == "429":
            assert fast.on_rate_limited(o[1], shard=o[2]) == ref.on_rate_limited(o[1], shard=o[2])
        else:
            for lim in (fast, ref):
                lim._w0.waiters[o[1]]._n = int(o[2])
        assert state(fast) == state(ref), o


def test_try_acquire_calm_refuses_under_pressure_and_counts_its_key():
    clock = Clock()
    lim = RateLimiter(20.0, 100.0, clock_ns=clock, cancel_reserve=5.0)
    assert lim.pressure() == 0.0
    assert lim.try_acquire_calm(PLACE, 10.0, None, 0.5, "KXA")
    assert lim._fair["KXA"][0] == 1 and lim.pressure() > 0.0
    while lim.pressure() <= 0.5:
        assert lim.try_acquire_calm(PLACE, 10.0, None, 2.0, "KXB")
    tokens = lim._w0.bucket.tokens
    assert not lim.try_acquire_calm(PLACE, 1.0, None, 0.5, "KXA")       # above 0.5: nothing taken
    assert lim._w0.bucket.tokens == tokens and lim._fair["KXA"][0] == 1
    assert lim.try_acquire_calm(PLACE, 1.0, None, 1.0, "KXA")           # 1.0: never refused for pressure
    with pytest.raises(ValueError, match="write lane"):
        lim.try_acquire_calm(READ, 1.0)


class _Fut:
    """What a queued request awaits (as kmm.research.writequeue._Grant): records its grant or drop."""

    def __init__(self, name: int, log: list) -> None:
        self.name, self.log, self.state = name, log, 0

    def done(self) -> bool:
        return self.state != 0

    def set_result(self, _: object) -> None:
        self.state = 1
        self.log.append(("grant", self.name))

    def set_exception(self, exc: BaseException) -> None:
        self.state = 2
        self.log.append(("drop", self.name, type(exc).__name__))


def queues(lim: RateLimiter) -> tuple:
    """Every queue's inner state: counts, the round's order, each key's entries, the FIFO's length."""
    qs = [lim._read_waiters, *(q for w in lim._all_writes() for q in w.waiters)]
    return tuple((q._n, tuple(q._round), tuple((k, tuple(x.fut.name for x in d)) for k, d in q._by_key.items()),
                  len(q._fifo)) for q in qs), lim.promotions, lim.expired


def buckets(lim: RateLimiter) -> tuple:
    """Every bucket's tokens (unrounded) and refill time, and the write pauses."""
    return ((lim.read.tokens, lim.read._last_ns),
            *((w.bucket.tokens, w.bucket._last_ns, w.paused_until_ns) for w in lim._all_writes()))


_submit = st.tuples(st.just("submit"), st.sampled_from([CANCEL, 1, PLACE, PLACE, 1, READ]),
                    st.sampled_from([2.0, 10.0]), st.sampled_from([None, None, 1]),
                    st.sampled_from(["A", "B", "C", ("A", "B")]))
dispatch_op = st.one_of(
    _submit, _submit, _submit,
    st.tuples(st.just("tick"), st.integers(0, 700_000_000)),
    st.tuples(st.just("dispatch")), st.tuples(st.just("dispatch")),
    st.tuples(st.just("cancel"), st.integers(0, 40), st.booleans()),   # the caller gave up (removed or not yet)
    st.tuples(st.just("drop"), st.sampled_from([None, ("A",), ("B", "C")])),
    st.tuples(st.just("429"), st.sampled_from([1, PLACE, READ]), st.sampled_from([None, 1])),
)


@settings(max_examples=500, deadline=None)
@given(ops=st.lists(dispatch_op, min_size=8, max_size=80), write_rate=st.sampled_from([10.0, 30.0, 100.0]),
       max_queue_s=st.sampled_from([0.0, 1.0, 4.0]))
@example(ops=[("submit", PLACE, 10.0, None, "A"), ("submit", 1, 10.0, None, "B"), ("dispatch",),
              ("tick", 600_000_000), ("dispatch",), ("submit", CANCEL, 2.0, None, "C"), ("tick", 600_000_000),
              ("dispatch",), ("tick", 4_000_000_000), ("submit", 1, 10.0, 1, "A"), ("dispatch",)],
         write_rate=10.0, max_queue_s=4.0)     # a promoted place, a cancel first, an expiry, a shard
@example(ops=[("submit", 1, 10.0, None, "A"), ("submit", 1, 10.0, None, "B"), ("dispatch",), ("cancel", 0, False),
              ("tick", 100_000_000), ("dispatch",), ("submit", 1, 10.0, None, "A"), ("dispatch",),
              ("tick", 2_000_000_000), ("dispatch",), ("submit", PLACE, 10.0, None, "C"), ("cancel", 3, False),
              ("dispatch",), ("tick", 900_000_000), ("dispatch",)],
         write_rate=10.0, max_queue_s=4.0)     # an oldest amend/place given up but not removed: _expire runs
@example(ops=[("submit", 1, 10.0, None, "A"), ("submit", 1, 10.0, None, "A"), ("submit", 1, 10.0, None, "B"),
              ("cancel", 0, False), ("tick", 1_600_000_000), ("dispatch",), ("tick", 1_000_000_000), ("dispatch",)],
         write_rate=10.0, max_queue_s=0.0)     # a key's first entry given up: head() cleans it, the round keeps A first
def test_dispatch_skipping_empty_lanes_matches_the_plain_dispatch(ops, write_rate, max_queue_s):
    """dispatch and _expire, which skip lanes with nothing in their round or FIFO, grant and drop the same
    requests in the same order, return the same waits and leave every queue (counts, round order,
    entries) as the former versions that served every lane (tests/reference/limiter.py)."""
    from kmm.kalshi.limiter import _Waiter
    from tests.reference import limiter as ref_limiter
    clocks = (Clock(), Clock())
    fast, ref = (RateLimiter(20.0, write_rate, clock_ns=c, cancel_reserve=5.0, promote_after_s=0.5,
                             max_queue_s=max_queue_s) for c in clocks)
    for lim in (fast, ref):             # an empty write bucket: requests queue and wait their turn
        lim.write.tokens = 0.0
    logs: tuple[list, list] = ([], [])
    waiting: tuple[list, list] = ([], [])
    n = 0
    for o in ops:
        if o[0] == "submit":
            _, lane, cost, shard, key = o
            for lim, log, ws in zip((fast, ref), logs, waiting):
                w = _Waiter(cost, _Fut(n, log), key, lim._clock())   # type: ignore[arg-type]
                lim._queue(lane, shard if lane != READ else None).append(w)
                ws.append((w, lim._queue(lane, shard if lane != READ else None)))
            n += 1
        elif o[0] == "tick":
            for c in clocks:
                c.now += o[1]
        elif o[0] == "dispatch":
            assert fast.dispatch() == ref_limiter.dispatch(ref), o
        elif o[0] == "cancel":
            for ws in waiting:
                if o[1] < len(ws):
                    w, q = ws[o[1]]
                    if not w.fut.done():
                        w.fut.state = 3     # cancelled
                        if o[2]:
                            q.remove(w)
        elif o[0] == "drop":
            assert fast.drop_waiting("stop", o[1]) == ref.drop_waiting("stop", o[1])
        else:
            assert fast.on_rate_limited(o[1], shard=o[2]) == ref.on_rate_limited(o[1], shard=o[2])
        assert logs[0] == logs[1], o
        assert state(fast) == state(ref), o
        assert queues(fast) == queues(ref), o
        assert buckets(fast) == buckets(ref), o     # to the last bit: poll's refill is written out in _serve
