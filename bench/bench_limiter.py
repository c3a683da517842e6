"""The write rate limiter's per-request steps, ns per call: ``try_acquire`` (every order request written
at once), ``pressure`` (every decision) and ``poll`` (a replay's every look at the bucket), on the
compiled token bucket (kmm._core.bucket) against the same limiter on the plain-Python bucket it replaced
(tests/reference/bucket.py). The clock is a C callable that steps 1 ms a call, so the bucket refills at
every call, as it does live.

To compare with an older limiter, run this file with that tree's ``src`` first on PYTHONPATH: the kmm
role then measures that tree's limiter."""

from __future__ import annotations

import itertools
from functools import partial
from unittest.mock import patch

import pytest

from kmm.kalshi import limiter as _lim
from kmm.kalshi.limiter import PLACE, RateLimiter
from tests.reference.bucket import TokenBucket as RefBucket

N = 20_000


def _limiter(python_bucket: bool) -> RateLimiter:
    clock = partial(next, itertools.count(1_000_000_000, 1_000_000))     # +1 ms a call
    if python_bucket:
        with patch.object(_lim, "TokenBucket", RefBucket):
            return RateLimiter(20.0, 100.0, clock_ns=clock, cancel_reserve=20.0)
    return RateLimiter(20.0, 100.0, clock_ns=clock, cancel_reserve=20.0)


ROLES = [pytest.param(False, id="compiled"), pytest.param(True, id="python_bucket")]


@pytest.mark.parametrize("python_bucket", ROLES)
def test_try_acquire(benchmark, python_bucket):
    lim = _limiter(python_bucket)
    take = lim.try_acquire

    def run() -> int:
        n = 0
        for _ in range(N):
            n += take(PLACE, 0.05)        # 0.1 token refilled a call: every call granted
        return n

    benchmark.group = "limiter: try_acquire (granted)"
    benchmark.extra_info.update(role="baseline" if python_bucket else "kmm", ops=N)
    assert benchmark(run) == N


@pytest.mark.parametrize("python_bucket", ROLES)
def test_try_acquire_refused(benchmark, python_bucket):
    lim = _limiter(python_bucket)
    lim.write.tokens = 0.0
    take = lim.try_acquire

    def run() -> int:
        n = 0
        for _ in range(N):
            n += take(PLACE, 10.0)        # the reserve never refills far enough: every call refused
        return n

    benchmark.group = "limiter: try_acquire (refused)"
    benchmark.extra_info.update(role="baseline" if python_bucket else "kmm", ops=N)
    lim.write.tokens = -1e12
    assert benchmark(run) == 0


@pytest.mark.parametrize("python_bucket", ROLES)
def test_pressure(benchmark, python_bucket):
    lim = _limiter(python_bucket)
    pressure = lim.pressure

    def run() -> float:
        x = 0.0
        for _ in range(N):
            x += pressure()
        return x

    benchmark.group = "limiter: pressure"
    benchmark.extra_info.update(role="baseline" if python_bucket else "kmm", ops=N)
    assert benchmark(run) == 0.0


@pytest.mark.parametrize("python_bucket", ROLES)
def test_poll(benchmark, python_bucket):
    lim = _limiter(python_bucket)
    poll = lim.poll

    def run() -> int:
        n = 0
        for _ in range(N):
            n += poll(PLACE, 0.05) == 0
        return n

    benchmark.group = "limiter: poll (granted)"
    benchmark.extra_info.update(role="baseline" if python_bucket else "kmm", ops=N)
    assert benchmark(run) == N


# -- the write queue (kmm._core.writeq) against the plain-Python limiter it replaced -------------------
QROLES = [pytest.param(False, id="compiled"), pytest.param(True, id="python_queue")]
NQ = 2_000


def _queue_limiter(python_queue: bool):
    from tests.reference import ratelimiter as ref_lim
    cls = ref_lim.RateLimiter if python_queue else RateLimiter
    clock = partial(next, itertools.count(1_000_000_000, 1_000_000))     # +1 ms a call
    return cls(20.0, 100.0, clock_ns=clock, cancel_reserve=20.0, max_queue_s=1e6)


@pytest.mark.parametrize("python_queue", QROLES)
def test_acquire_granted(benchmark, python_queue):
    """``acquire`` taken at once (the live order path's common case): the queue check, poll and count."""
    import asyncio

    async def run() -> int:
        lim = _queue_limiter(python_queue)
        for _ in range(N):
            await lim.acquire(PLACE, 0.05)
        return sum(lim._granted)

    benchmark.group = "limiter: acquire (granted at once)"
    benchmark.extra_info.update(role="baseline" if python_queue else "kmm", ops=N)
    assert benchmark(lambda: asyncio.run(run())) == N


class _Fut:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = 0

    def done(self) -> bool:
        return self.state != 0

    def set_result(self, _: object) -> None:
        self.state = 1


@pytest.mark.parametrize("python_queue", QROLES)
def test_dispatch_queued(benchmark, python_queue):
    """``dispatch`` of a write queue holding NQ amends and places of three markets (the limiter's timer
    after a burst), called until the queue is empty: the bucket refills 0.1 token a clock call, so most
    of the 75,628 dispatches grant nothing and return the wait for the next grant (as a replay's do)."""
    from tests.reference import ratelimiter as ref_lim
    mod = ref_lim if python_queue else _lim

    def run() -> int:
        lim = _queue_limiter(python_queue)
        lim.write.tokens = 0.0
        for i in range(NQ):
            lim._queue(PLACE if i % 3 else 1, None).append(mod._Waiter(10.0, _Fut(), "ABC"[i % 3], lim._clock()))
        n = 0
        while lim.dispatch() is not None:
            n += 1
        return sum(lim._granted)

    benchmark.group = "limiter: dispatch (queued requests)"
    benchmark.extra_info.update(role="baseline" if python_queue else "kmm", ops=NQ)
    assert benchmark(run) == NQ
