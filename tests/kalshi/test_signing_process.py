"""The signature pool's signer process: signatures verify, the loop never signs in steady state, the
fallbacks are counted, and the pool is sized to the churn it sees."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from kmm.errors import ConfigError
from kmm.kalshi.signing import SignaturePool, Signer
from tests.kalshi.test_signing import PAIR, verify

AMEND = "/trade-api/v2/portfolio/events/orders/{}/amend"


@pytest.fixture(scope="module")
def signer(rsa_key) -> Signer:
    return Signer("key-id-9", rsa_key)


async def _filled(pool: SignaturePool, key: tuple[str, str], n: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pool.available(*key) < n:
        assert time.monotonic() < deadline, f"pool never reached {n} for {key}: {pool!r}"
        await asyncio.sleep(0.005)


def test_steady_churn_is_served_from_the_signer_process_with_zero_inline_fallbacks(signer):
    async def run() -> None:
        pool = SignaturePool(signer, [PAIR], depth=4, max_age_s=5.0)
        pool.start()
        try:
            assert pool._proc is not None and pool._proc.pid != os.getpid()
            await _filled(pool, PAIR, 4)
            taken = []
            for _ in range(150):           # ~1.5 s of a create every 10 ms, bursts of 2
                taken.append(pool.take(*PAIR))
                taken.append(pool.take(*PAIR))
                await asyncio.sleep(0.01)
            for h in taken[::7]:
                verify(signer, h, *PAIR)
            assert len({h["KALSHI-ACCESS-SIGNATURE"] for h in taken}) == len(taken)   # single use
            assert pool.stats.hits == 300
            assert pool.stats.fallbacks == 0 and pool.stats.misses == 0
            assert pool.stats.made >= 300
        finally:
            pool.close()
        assert pool._proc is None

    asyncio.run(run())


def test_a_burst_past_the_pool_is_signed_inline_and_counted_as_fallbacks(signer):
    async def run() -> None:
        pool = SignaturePool(signer, [PAIR], depth=3, max_age_s=5.0)
        pool.start()
        try:
            await _filled(pool, PAIR, 3)
            burst = [pool.take(*PAIR) for _ in range(5)]   # no yield to the loop in between
            for h in burst:
                verify(signer, h, *PAIR)
            assert pool.stats.hits == 3 and pool.stats.misses == 2 and pool.stats.fallbacks == 2
            pool.take("POST", "/trade-api/v2/portfolio/events/orders/x/decrease")
            assert pool.stats.unpooled == 1 and pool.stats.fallbacks == 3
            await _filled(pool, PAIR, 3)                   # topped up after the burst
        finally:
            pool.close()

    asyncio.run(run())


def test_depth_grows_with_the_measured_take_rate(signer, clock):
    pool = SignaturePool(signer, [PAIR], depth=2, max_age_s=5.0, clock_ns=clock, lead_s=0.05)
    assert pool.wanted_depth(PAIR) == 2
    pool._update_rates()
    for _ in range(400):                                   # 400 takes in 0.5 s: 800/s
        pool._takes[PAIR] = pool._takes.get(PAIR, 0) + 1
    clock.advance(0.5)
    pool._update_rates()
    assert pool.wanted_depth(PAIR) == 41                   # ceil(800 * 0.05) + 1
    clock.advance(60)                                      # a quiet minute: the peak fades
    pool._update_rates()
    assert pool.wanted_depth(PAIR) == 2


def test_per_order_paths_of_a_kind_never_used_stop_being_presigned(signer, clock):
    pool = SignaturePool(signer, [PAIR], depth=2, max_age_s=5.0, clock_ns=clock, per_order_warmup=3)
    keys = [("POST", AMEND.format(f"o{i}")) for i in range(5)]
    for k in keys[:3]:
        pool.add_pair(*k, depth=1)
    pool.fill_now()
    assert all(pool.available(*k) == 1 for k in keys[:3])  # within the warm-up: pre-signed
    for k in keys[3:]:
        pool.add_pair(*k, depth=1)
    made = pool.fill_now()
    assert made == 0 and all(pool.available(*k) == 0 for k in keys[3:])
    assert pool.stats.skipped == 2
    verify(signer, pool.take(*keys[0]), *keys[0])          # an amend is used: the kind comes back,
    pool.fill_now()                                        # two per order (re-priced within a refill)
    assert all(pool.available(*k) == 2 for k in keys)


def test_take_async_waits_for_the_signer_process_instead_of_signing_inline(signer):
    async def run() -> None:
        pool = SignaturePool(signer, [PAIR], depth=1, max_age_s=5.0)
        pool.start()
        try:
            await _filled(pool, PAIR, 1)
            first = await pool.take_async(*PAIR)
            second = await pool.take_async(*PAIR, wait_s=5.0)      # the pool is empty now
            amend = ("POST", AMEND.format("fresh"))
            pool.add_pair(*amend, depth=1)                         # an order just acked, amended at once
            third = await pool.take_async(*amend, wait_s=5.0)
            for h, k in ((first, PAIR), (second, PAIR), (third, amend)):
                verify(signer, h, *k)
            assert pool.stats.hits == 1 and pool.stats.waited == 2
            assert pool.stats.fallbacks == 0
        finally:
            pool.close()

    asyncio.run(run())


def _signer_in_thread(signer: Signer, rsa_key: Any) -> tuple[Any, Any]:
    """The signer process's function on a thread of this process, and our end of its pipe."""
    import multiprocessing
    import threading

    from cryptography.hazmat.primitives import serialization

    from kmm.kalshi.signing import _signer_process
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    here, there = multiprocessing.Pipe()
    worker = threading.Thread(target=_signer_process, args=(there, signer.key_id, pem), daemon=True)
    worker.start()
    return here, worker


def _stop(here: Any, worker: Any) -> None:
    here.send(None)
    worker.join(5)
    assert not worker.is_alive()


def _signed(here: Any, n: int, signer: Signer) -> list[str]:
    """The paths of the next ``n`` signatures the signer process sends (in messages of one or more),
    each verified."""
    order: list[str] = []
    while len(order) < n:
        assert here.poll(10), "the signer stopped answering"
        for method, path, sigs in here.recv():
            for _, ts, sig in sigs:
                verify(signer, {"KALSHI-ACCESS-TIMESTAMP": str(ts), "KALSHI-ACCESS-SIGNATURE": sig}, method, path)
                order.append(path)
    return order


def test_the_signer_serves_a_pair_with_nothing_signed_before_queued_refreshes(signer, rsa_key):
    here, worker = _signer_in_thread(signer, rsa_key)
    fresh = ("POST", AMEND.format("just-acked"))
    here.send([("POST", PAIR[1], 8, False)])          # a batch of refreshes for a pair that has some
    here.send([(*fresh, 1, True)])                      # an order just acknowledged: nothing signed yet
    order = _signed(here, 9, signer)
    _stop(here, worker)
    assert order.count(PAIR[1]) == 8 and order.index(fresh[1]) <= 2, order


def test_the_signer_serves_a_waiting_request_before_new_pairs_and_refreshes(signer, rsa_key):
    """Level 2 (a request waits for the signature) goes before everything queued: many orders just
    acknowledged (level 1, each with nothing signed) and refills (level 0). At 100 markets a create
    waited behind every new order's amend pair until take_async gave up."""
    here, worker = _signer_in_thread(signer, rsa_key)
    fresh = [("POST", AMEND.format(f"acked-{i}")) for i in range(6)]
    waiting = ("POST", "/trade-api/v2/portfolio/orders/batched")
    here.send([("POST", PAIR[1], 6, 0)] + [(*f, 2, 1) for f in fresh])   # queued: refills, new pairs
    here.send([(*waiting, 2, 2)])                                         # then two requests wait
    order = _signed(here, 6 + 12 + 2, signer)
    _stop(here, worker)
    # the pipe is read after every signature: the waiting pair's two come right after the one (or two)
    # signed before its job arrived, before the rest of the queue
    first = order.index(waiting[1])
    assert first <= 2 and order[first + 1] == waiting[1], order
    assert order.count(PAIR[1]) == 6 and sorted(set(order) - {PAIR[1], waiting[1]}) == sorted(f[1] for f in fresh)


@pytest.mark.asyncio
async def test_a_waiting_take_asks_the_process_for_its_signature_first(signer):
    """take_async on an empty pair sends a level-2 job for the one it waits for (and the pair's refill
    apart), so the process signs it before its queue."""
    pool = SignaturePool(signer, [PAIR], depth=3)
    sent: list[Any] = []

    class Conn:
        def send(self, jobs: Any) -> None:
            sent.append(jobs)
    pool._conn = Conn()
    pool._loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(pool.take_async(*PAIR, wait_s=1.0))
    await asyncio.sleep(0.01)
    key = ("POST", PAIR[1])
    jobs = sent[-1]
    assert jobs[0] == (*key, 1, 2, True) and (*key, 3, 1, True) in jobs, jobs
    pool._receive((*key, [(time.monotonic_ns(), 1, "sig")]))
    headers = await asyncio.wait_for(task, 1.0)
    assert headers["KALSHI-ACCESS-SIGNATURE"] == "sig" and pool.stats.waited == 1


def test_take_async_stops_waiting_for_a_signer_process_that_does_not_deliver(signer):
    """A stuck or starved signer process must not cost every write wait_s: after one timeout,
    take_async signs inline at once (counted as fallbacks) until ``no_wait_after_timeout_ns`` passes."""
    async def run() -> None:
        pool = SignaturePool(signer, [PAIR], depth=1, max_age_s=5.0)
        pool.start()
        try:
            await _filled(pool, PAIR, 1)
            pool._request_fill = lambda *a, **k: None            # the process gets no more work
            await pool.take_async(*PAIR)                           # the pool's one signature
            await asyncio.sleep(0.05)
            assert pool.available(*PAIR) == 0
            t0 = time.monotonic()
            verify(signer, await pool.take_async(*PAIR, wait_s=0.2), *PAIR)
            first_s = time.monotonic() - t0
            t1 = time.monotonic()
            for _ in range(5):
                verify(signer, await pool.take_async(*PAIR, wait_s=0.2), *PAIR)
            rest_s = time.monotonic() - t1
            assert first_s >= 0.2 and pool.stats.wait_timeouts == 1
            assert rest_s < 0.2, f"5 takes after the timeout took {rest_s:.3f} s: they waited again"
            assert pool.stats.misses == 6 and pool.stats.fallbacks == 6
            pool._no_wait_until_ns = 0                             # the hold-off over: waits again
            t2 = time.monotonic()
            await pool.take_async(*PAIR, wait_s=0.1)
            assert time.monotonic() - t2 >= 0.1 and pool.stats.wait_timeouts == 2
        finally:
            pool.close()

    asyncio.run(run())


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_the_signer_process_runs_on_the_cpus_it_is_given(signer):
    target = frozenset({max(os.sched_getaffinity(0))})

    async def run() -> None:
        pool = SignaturePool(signer, [PAIR], depth=2, cpus=target)
        pool.start()
        try:
            assert pool._proc is not None and pool._proc.pid is not None
            assert os.sched_getaffinity(pool._proc.pid) == target
            assert pool.take(*PAIR)["KALSHI-ACCESS-SIGNATURE"]     # and it still signs
        finally:
            pool.close()

    asyncio.run(run())


def test_a_signer_process_that_died_at_start_is_reported_at_once_not_waited_out(signer, caplog):
    """A spawned signer that exits (e.g. a script without a ``__main__`` guard, which the child runs
    and leaves) is named in a warning as soon as ``wait_ready`` sees it, instead of waiting out the
    timeout; the pool then signs inline, counted."""
    async def run() -> None:
        pool = SignaturePool(signer, [PAIR], depth=3, max_age_s=5.0)
        pool.start()
        try:
            assert pool._proc is not None
            pool._proc.kill()
            pool._proc.join(timeout=5.0)
            t0 = time.monotonic()
            with caplog.at_level("WARNING", logger="kmm.kalshi.signing"):
                ready = await pool.wait_ready(timeout_s=10.0)
            assert ready is False
            assert time.monotonic() - t0 < 2.0          # not the 10 s timeout
            assert any("signer process exited at start" in r.getMessage() and "__main__" in r.getMessage()
                       for r in caplog.records)
            pool.take(*PAIR)                            # still works: signed inline
            assert pool.stats.fallbacks >= 1
        finally:
            pool.close()

    asyncio.run(run())


def test_the_signer_process_lowers_its_priority_by_the_niceness_it_is_given(signer):
    """The signer works ahead of need, so it runs at the engine's priority plus ``nice`` ([run]
    signer_nice) and gives way on a shared core; with 0 it keeps the engine's."""
    own = os.getpriority(os.PRIO_PROCESS, 0)

    async def run(nice: int) -> int:
        pool = SignaturePool(signer, [PAIR], depth=2, nice=nice)
        pool.start()
        try:
            assert await pool.wait_ready(timeout_s=20.0)     # the child has lowered itself by now
            assert pool.take(*PAIR)["KALSHI-ACCESS-SIGNATURE"]
            assert pool._proc is not None and pool._proc.pid is not None
            return os.getpriority(os.PRIO_PROCESS, pool._proc.pid)
        finally:
            pool.close()

    assert asyncio.run(run(7)) == min(19, own + 7)
    assert asyncio.run(run(0)) == own
    with pytest.raises(ConfigError, match="signer_nice"):
        SignaturePool(signer, [PAIR], depth=2, nice=20)


def test_a_take_tops_up_only_the_pair_it_took_from_and_the_tick_looks_at_every_pair(signer):
    """300 orders' amend pairs and one create pair: the top-up after a take looks at the pair taken from
    (one depth computed, not 301), and it is refilled; the periodic tick looks at every pair, so a pair
    that lost its signatures without a take (aged out) is refilled too."""
    async def run() -> None:
        pairs = [PAIR] + [("POST", AMEND.format(f"o{i}")) for i in range(300)]
        pool = SignaturePool(signer, pairs, depth=1, max_age_s=5.0)
        pool.start()
        try:
            await _filled(pool, PAIR, 1)
            await _filled(pool, pairs[-1], 1, timeout_s=30.0)
            looked: list[tuple[str, str]] = []
            wanted = pool.wanted_depth
            pool.wanted_depth = lambda key: (looked.append(key), wanted(key))[1]   # type: ignore[method-assign]
            verify(signer, pool.take(*PAIR), *PAIR)
            await asyncio.sleep(0)                       # the top-up runs after the caller's callback
            assert looked == [PAIR]
            await _filled(pool, PAIR, 1)
            pool._slots[pairs[7]].clear()                # gone without a take: only the tick sees it
            looked.clear()
            pool._request_fill()                         # what the periodic tick (_tick) asks
            assert len(looked) == len(pairs)
            await _filled(pool, pairs[7], 1)
            assert pool.stats.misses == 0
        finally:
            pool.close()

    asyncio.run(run())


def test_the_signer_sends_refills_in_batches_and_a_waited_signature_at_once(signer, rsa_key):
    """Refills go in messages of several signatures (the loop reads one message per turn); a signature
    a request waits for is sent alone, at once."""
    from kmm.kalshi.signing import SIGNER_BATCH
    here, worker = _signer_in_thread(signer, rsa_key)
    here.send([("POST", PAIR[1], 40, 0)])
    sizes = []
    while sum(sizes) < 40:
        assert here.poll(10), "the signer stopped answering"
        msg = here.recv()
        assert all(path == PAIR[1] for _, path, _ in msg)
        sizes.append(sum(len(sigs) for _, _, sigs in msg))
    assert sum(sizes) == 40 and max(sizes) <= SIGNER_BATCH and len(sizes) < 40 / 2, sizes
    waiting = ("POST", "/trade-api/v2/portfolio/orders/batched")
    here.send([(*waiting, 1, 2)])
    assert here.poll(10)
    assert [(p, len(s)) for _, p, s in here.recv()] == [(waiting[1], 1)]
    _stop(here, worker)


def test_the_pool_asks_for_fixed_pairs_before_order_paths(signer):
    """Creates' and batched cancels' refills go at level 1, an order's amend at 0 (a new one flagged
    for the front of those): the signer serves every fixed pair before any order's path."""
    pool = SignaturePool(signer, [PAIR], depth=2)
    sent: list[Any] = []

    class Conn:
        def send(self, jobs: Any) -> None:
            sent.append(jobs)
    pool._conn = Conn()
    amend = ("POST", AMEND.format("o1"))
    pool.add_pair(*amend, depth=1)          # asked at once (no loop: no turn to wait for)
    pool._request_fill()
    jobs = [j for batch in sent for j in batch]
    assert ("POST", PAIR[1], 2, 1, True) in jobs and ("POST", amend[1], 1, 0, True) in jobs, jobs
    assert all(j[3] == 1 for batch in sent for j in batch if j[1] == PAIR[1]), sent


def test_the_signer_serves_fixed_pairs_before_order_paths_and_new_orders_before_refills(signer, rsa_key):
    here, worker = _signer_in_thread(signer, rsa_key)
    old, new = ("POST", AMEND.format("old")), ("POST", AMEND.format("new"))
    here.send([(*old, 2, 0, False), (*new, 1, 0, True), ("POST", PAIR[1], 3, 1, False)])
    order = _signed(here, 6, signer)
    _stop(here, worker)
    assert order[:3] == [PAIR[1]] * 3 and order[3] == new[1] and order[4:] == [old[1]] * 2, order
