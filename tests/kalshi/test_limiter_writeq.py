"""The compiled write queue (kmm._core.writeq: the fair queue, the limiter's poll/_count/_grant/_serve/
dispatch/_expire, the replay's ReplayWriteQueue) against the plain-Python limiter and replay queue it
replaced (tests/reference/ratelimiter.py, tests/reference/writequeue.py): the same random requests
(lanes, costs, markets, batches, shards), clock steps, dispatches, callers giving up, drops and 429s
given to both, and every outcome compared after every step: each grant and drop in order, the answers
and waits returned, tokens to the last bit, pauses, per-market counts and every queue's inner state.
The order path's ``try_acquire``, ``acquire`` and ``pressure`` (compiled too) are compared as well."""

from __future__ import annotations

import asyncio

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kmm.kalshi import limiter as new_lim
from kmm.research import writequeue as new_wq
from tests.reference import ratelimiter as ref_lim
from tests.reference import writequeue as ref_wq

CANCEL, AMEND, PLACE, READ = 0, 1, 2, 3


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


class _Fut:
    """What a queued request awaits: records its grant or drop."""

    def __init__(self, name: int, log: list) -> None:
        self.name, self.log, self.state = name, log, 0

    def done(self) -> bool:
        return self.state != 0

    def set_result(self, _: object) -> None:
        self.state = 1
        self.log.append(("grant", self.name))

    def set_exception(self, exc: BaseException) -> None:
        self.state = 2
        self.log.append(("drop", self.name, type(exc).__name__, str(exc)))


def state(lim) -> tuple:
    """Buckets (unrounded), pauses, grants, per-market counts, counters and every queue's inner state; the order path's
``try_acquire``, ``acquire`` and ``pressure`` too."""
    writes = [lim._w0, *(lim._shard_writes[k] for k in sorted(lim._shard_writes))]
    qs = [lim._read_waiters, *(q for w in writes for q in w.waiters)]
    return ((lim.read.tokens, lim.read._last_ns, lim.read_paused_until_ns),
            tuple((w.bucket.tokens, w.bucket._last_ns, w.paused_until_ns, w.backoff_ns) for w in writes),
            tuple(lim._granted), tuple(sorted((str(k), tuple(v)) for k, v in lim._fair.items())),
            lim.promotions, lim.expired, lim.rate_limited, lim.pauses,
            tuple((len(q), bool(q), q._n, tuple(q._round),
                   tuple((k, tuple(x.fut.name for x in d)) for k, d in q._by_key.items()),
                   tuple((x.fut.name, x.done) for x in q._fifo)) for q in qs))


keys = st.sampled_from(["A", "B", "C", None, ("A", "B"), ("B", "C")])
shards = st.sampled_from([None, None, 0, 1, 2])
_queue = st.tuples(st.just("queue"), st.sampled_from([CANCEL, AMEND, PLACE, PLACE, AMEND, READ]),
                   st.sampled_from([2.0, 10.0, 10.0, 30.0]), shards, keys)
op = st.one_of(
    _queue, _queue, _queue,
    st.tuples(st.just("try"), st.sampled_from([CANCEL, AMEND, PLACE, READ]), st.sampled_from([2.0, 10.0]),
              shards, keys),
    st.tuples(st.just("poll"), st.sampled_from([CANCEL, AMEND, PLACE, READ]), st.sampled_from([2.0, 10.0]), shards),
    st.tuples(st.just("tick"), st.integers(0, 900_000_000)),
    st.tuples(st.just("dispatch")), st.tuples(st.just("dispatch")),
    st.tuples(st.just("cancel"), st.integers(0, 40), st.booleans()),   # the caller gave up (removed or not yet)
    st.tuples(st.just("drop"), st.sampled_from([None, ("A",), ("B", "C")])),
    st.tuples(st.just("429"), st.sampled_from([AMEND, PLACE, READ]), shards),
    st.tuples(st.just("success"), st.sampled_from([AMEND, PLACE, READ]), shards),
    st.tuples(st.just("backoff"), st.sampled_from([None, 0.1, 2.0])),
    st.tuples(st.just("pressure"), shards),
)


@settings(max_examples=600, deadline=None)
@given(ops=st.lists(op, min_size=5, max_size=90), write_rate=st.sampled_from([10.0, 30.0, 100.0]),
       max_queue_s=st.sampled_from([0.0, 1.0, 4.0]), promote_after_s=st.sampled_from([0.0, 0.5, 1.0]),
       tokens=st.sampled_from([0.0, 12.0, None]))
@example(ops=[("queue", PLACE, 10.0, None, "A"), ("queue", AMEND, 10.0, None, "B"), ("dispatch",),
              ("tick", 600_000_000), ("dispatch",), ("queue", CANCEL, 2.0, None, "C"), ("tick", 600_000_000),
              ("dispatch",), ("tick", 900_000_000), ("tick", 900_000_000), ("tick", 900_000_000),
              ("tick", 900_000_000), ("queue", AMEND, 10.0, 1, "A"), ("dispatch",)],
         write_rate=10.0, max_queue_s=4.0, promote_after_s=0.5, tokens=0.0)
def test_the_compiled_limiter_grants_drops_and_waits_as_the_plain_python_one(ops, write_rate, max_queue_s,
                                                                            promote_after_s, tokens):
    clocks = (Clock(), Clock())
    mods = (new_lim, ref_lim)
    lims = tuple(m.RateLimiter(20.0, write_rate, clock_ns=c, cancel_reserve=5.0, promote_after_s=promote_after_s,
                               max_queue_s=max_queue_s) for m, c in zip(mods, clocks))
    assert isinstance(lims[0], new_lim.LimiterCore) and not isinstance(lims[1], new_lim.LimiterCore)
    if tokens is not None:
        for lim in lims:
            lim.write.tokens = tokens
    logs: tuple[list, list] = ([], [])
    waiting: tuple[list, list] = ([], [])
    n = 0
    for o in ops:
        got = []
        if o[0] == "queue":
            _, lane, cost, shard, key = o
            for m, lim, log, ws in zip(mods, lims, logs, waiting):
                q = lim._queue(lane, shard if lane != READ else None)
                w = m._Waiter(cost, _Fut(n, log), key, lim._clock())
                q.append(w)
                ws.append((w, q))
            n += 1
        elif o[0] == "try":
            for lim in lims:
                token = new_lim.FAIR_KEY.set(o[4])
                try:
                    got.append(lim.try_acquire(o[1], o[2], o[3]))
                finally:
                    new_lim.FAIR_KEY.reset(token)
        elif o[0] == "poll":
            got = [lim.poll(o[1], o[2], o[3]) for lim in lims]
        elif o[0] == "tick":
            for c in clocks:
                c.now += o[1]
        elif o[0] == "dispatch":
            got = [lim.dispatch() for lim in lims]
        elif o[0] == "cancel":
            for ws in waiting:
                if o[1] < len(ws):
                    w, q = ws[o[1]]
                    if not w.fut.done():
                        w.fut.state = 3     # cancelled
                        if o[2]:
                            got.append(q.remove(w))
        elif o[0] == "drop":
            got = [lim.drop_waiting("stop", o[1]) for lim in lims]
        elif o[0] == "429":
            got = [lim.on_rate_limited(o[1], shard=o[2]) for lim in lims]
        elif o[0] == "success":
            got = [lim.on_success(o[1], shard=o[2]) for lim in lims]
        elif o[0] == "pressure":
            got = [lim.pressure(o[1]) for lim in lims]
        else:
            got = [lim.set_backoff(max_s=o[1]) for lim in lims]
        if got:
            assert got[0] == got[1] and type(got[0]) is type(got[1]), o
        assert logs[0] == logs[1], o
        assert state(lims[0]) == state(lims[1]), o
        assert lims[0].queue_depths() == lims[1].queue_depths() and lims[0].fair_stats() == lims[1].fair_stats()


def _queues(r) -> tuple:
    qs = [r._read_waiters, *r._w0.waiters]
    return (tuple((q._n, tuple(q._round), tuple((k, len(d)) for k, d in q._by_key.items()), len(q._fifo))
                  for q in qs), r.promotions, r.expired, tuple(r._granted),
            tuple(sorted((str(k), tuple(v)) for k, v in r._fair.items())),
            r.write.tokens, r.write._last_ns)


_wq_op = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from([CANCEL, AMEND, PLACE]), st.sampled_from(["A", "B", "C", None])),
    st.tuples(st.just("submit"), st.sampled_from([CANCEL, AMEND, PLACE]), st.sampled_from("ABC")),
    st.tuples(st.just("odd"), st.sampled_from([AMEND, PLACE]), st.sampled_from("ABC")),
    st.tuples(st.just("tick"), st.integers(0, 900_000_000)),
    st.tuples(st.just("dispatch"),),
    st.tuples(st.just("dispatch"),),
    st.tuples(st.just("429"),),
)


@settings(max_examples=500, deadline=None)
@given(ops=st.lists(_wq_op, min_size=5, max_size=120), tokens=st.sampled_from([0.0, 12.0, 200.0]),
       max_queue_s=st.sampled_from([0.0, 1.5, 4.0]), odd=st.booleans())
def test_the_compiled_replay_queue_is_the_plain_python_one(ops, tokens, max_queue_s, odd):
    """ReplayWriteQueue compiled (on the compiled limiter) against the plain-Python one (on the
    plain-Python limiter): the same answers to submit and dispatch, grants and drops in the same order,
    the same queued and dropped counts, and every queue, count and token the same after every step."""
    clocks = (Clock(), Clock())
    lims = (new_lim.RateLimiter.for_tier("basic", clock_ns=clocks[0], promote_after_s=1.0, max_queue_s=max_queue_s),
            ref_lim.RateLimiter.for_tier("basic", clock_ns=clocks[1], promote_after_s=1.0, max_queue_s=max_queue_s))
    qs = (new_wq.ReplayWriteQueue(lims[0]), ref_wq.ReplayWriteQueue(lims[1]))
    for r in lims:
        r.write.tokens = tokens
    logs: tuple[list, list] = ([], [])
    cost = {CANCEL: 2, AMEND: 10, PLACE: 10}
    n = 0
    for o in ops:
        if o[0] in ("submit", "odd"):
            if o[0] == "odd" and not odd:
                continue
            c = cost[o[1]] if o[0] == "submit" else 7
            got = [q.submit(o[1], c, o[2], lambda i=n, lg=lg: lg.append(("grant", i)),
                            lambda exc, i=n, lg=lg: lg.append(("drop", i, type(exc).__name__, str(exc))))
                   for q, lg in zip(qs, logs)]
            assert got[0] == got[1]
            n += 1
        elif o[0] == "tick":
            for c in clocks:
                c.now += o[1]
        elif o[0] == "429":
            assert lims[0].on_rate_limited(PLACE) == lims[1].on_rate_limited(PLACE)
        else:
            got = [q.dispatch() for q in qs]
            assert got[0] == got[1] and type(got[0]) is type(got[1]), o
        assert logs[0] == logs[1], o
        assert _queues(lims[0]) == _queues(lims[1]), o
        assert (qs[0].queued, qs[0].dropped, qs[0].waiting()) == (qs[1].queued, qs[1].dropped, qs[1].waiting())


def test_the_replay_queue_refuses_reads():
    import pytest
    for m, wm in ((new_lim, new_wq), (ref_lim, ref_wq)):
        q = wm.ReplayWriteQueue(m.RateLimiter.for_tier("basic", clock_ns=Clock()))
        with pytest.raises(ValueError):
            q.submit(READ, 1, "A", lambda: None, lambda e: None)


async def _acquire_run(mod, script) -> list:
    """Tasks acquiring on one limiter (a stepped clock, the limiter's own timer) in the order given."""
    clock = Clock()
    lim = mod.RateLimiter(20.0, 10.0, clock_ns=clock, cancel_reserve=5.0, promote_after_s=0.3, max_queue_s=1.0)
    lim.write.tokens = 0.0
    out: list = []

    async def one(i: int, lane: int, key: str) -> None:
        new_lim.FAIR_KEY.set(key)
        try:
            await lim.acquire(lane, 2.0 if lane == CANCEL else 10.0)
            out.append(("grant", i))
        except new_lim.NotSent:
            out.append(("drop", i))
    tasks = [asyncio.create_task(one(i, lane, key)) for i, (lane, key) in enumerate(script)]
    for _ in range(40):                 # step the clock, let the limiter's timer run
        await asyncio.sleep(0)
        clock.now += 100_000_000
        lim.dispatch()
        await asyncio.sleep(0)
    lim.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out + [state_of(lim)]


def state_of(lim) -> tuple:
    return tuple(lim._granted), tuple(sorted((str(k), tuple(v)) for k, v in lim._fair.items())), \
        lim.promotions, lim.expired, lim.write.tokens


@settings(max_examples=60, deadline=None)
@given(script=st.lists(st.tuples(st.sampled_from([CANCEL, AMEND, PLACE]), st.sampled_from("ABC")),
                       min_size=1, max_size=25))
def test_acquire_on_the_compiled_limiter_serves_tasks_as_the_plain_python_one(script):
    assert asyncio.run(_acquire_run(new_lim, script)) == asyncio.run(_acquire_run(ref_lim, script))
