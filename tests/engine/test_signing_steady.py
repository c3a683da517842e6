"""Signing costs the loop nothing in steady state: against the simulator's busy flow, every write
(create, amend, decrease, cancel) of a steady-state window takes a pre-made signature (or awaits the
signer process's next one); none is signed inline on the loop (the pool's write fallbacks stay 0;
reads are signed inline by design and counted apart), and the run summary reports the counters."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.engine.test_live import engine_on_sim, until

pytestmark = pytest.mark.slow


async def test_no_inline_signing_in_a_steady_state_window_against_the_sim(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        e = run.engine
        pool = e.rest.pool
        assert pool is not None and pool.mode == "process"
        # warm-up: the pool learns the churn (per-order amend/decrease paths start being pre-signed)
        await until(lambda: e.amends_sent >= 10, 30, "10 amends (warm-up)")
        await asyncio.sleep(1.0)
        st = pool.stats
        m0, u0, h0, w0 = st.misses, st.unpooled - st.unpooled_reads, st.hits, st.waited
        a0, o0 = e.amends_sent, e.orders_sent
        t0 = time.monotonic()
        r0 = e.rest.requests
        # at least 4 s: the window holds the status polls (0.5 s) and reconciles (2 s) too (reads:
        # signed inline by design, counted apart)
        await asyncio.sleep(4.0)
        await until(lambda: e.amends_sent - a0 >= 30 and e.orders_sent - o0 >= 5, 40,
                    "30 amends and 5 creates in the steady-state window")
        reads = e.rest.requests - r0 - (e.amends_sent - a0) - (e.orders_sent - o0)

        def served_now() -> int:
            return (st.hits - h0) + (st.waited - w0)

        def writes_now() -> int:
            return (e.amends_sent - a0) + (e.orders_sent - o0)
        # a create or amend that could not be written at once (no idle connection or budget) is counted
        # when its coroutine starts and takes its signature only once it may be written: the counts are
        # compared at a moment when none is between the two (a write that never takes a pooled
        # signature keeps served behind for good, and the wait fails)
        await until(lambda: served_now() >= writes_now(), 10, "every counted write served a signature")
        window_s = time.monotonic() - t0
        misses, unpooled = st.misses - m0, st.unpooled - st.unpooled_reads - u0
        served, writes = served_now(), writes_now()
    print(f"\nsteady window {window_s:.1f} s: {writes} creates+amends, {served} signatures served "
          f"({st.waited - w0} awaited), inline fallbacks {misses + unpooled}")
    detail = (f"window {window_s:.1f} s: misses {misses} (all run: {st.miss_kinds}), unpooled writes {unpooled}, "
              f"served {served}, writes {writes}, other requests {reads}")
    assert misses == 0 and unpooled == 0, detail
    assert served >= writes, detail         # every create and amend of the window was served signed
    assert reads > 0, detail                # and other requests (reads, cancels) went out meanwhile
    s = run.summary
    assert s is not None and s.signatures is not None
    sg = s.signatures
    assert sg["fallbacks"] == sg["misses"] + sg["unpooled"]
    assert sg["write_fallbacks"] == sg["fallbacks"] - sg["unpooled_reads"] and sg["unpooled_reads"] > 0
    assert "signed inline on the loop" in s.render()
