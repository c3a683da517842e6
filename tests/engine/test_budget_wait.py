"""A decision's latency is kmm's own path: the time its first request stood waiting for the write
budget (the limiter's queue, a 429 pause) or a free connection is measured apart. A run under a
throttled budget must not raise the "high latency" warning from those waits alone, and the warning
must still fire when kmm's own path is slow (a delay injected before the bytes are written)."""

from __future__ import annotations

import json
import time

import pytest

from kmm.kalshi import fasthttp
from kmm.record.tape import read_tape
from kmm.research.runrecord import write_run_outputs
from tests.engine.test_live import engine_on_sim, until

pytestmark = pytest.mark.slow

WARN_US = 20_000          # kmm run's default [run] latency_warn_us


def _p99(xs: list[int]) -> int:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


async def test_waits_for_a_throttled_write_budget_are_reported_apart_and_raise_no_warning(tmp_path):
    writes: list[tuple[int, int]] = []

    async with engine_on_sim(tmp_path, markets=("KXSIMA-26-A", "KXSIMB-26-B", "KXSIMM-26-M"),
                             settings={"run.latency_warn_us": str(WARN_US), "run.latency_window_s": "60"}) as run:
        e = run.engine
        orig = e._issued

        def spy(pipe, trigger_ns, issued_ns, waited_ns=0):
            if pipe.tape_trigger_ns != trigger_ns:       # the decision's first write (what is stamped)
                writes.append((issued_ns - trigger_ns, waited_ns))
            orig(pipe, trigger_ns, issued_ns, waited_ns)

        e._issued = spy  # type: ignore[method-assign]
        # a throttled account: 30 write tokens/s (3 creates or amends a second for 3 busy markets)
        e.rest.limiter.set_budget(1000.0, 30.0, write_capacity=30.0)
        await until(lambda: sum(1 for _, w in writes if w > WARN_US * 1000) >= 25, 60,
                    "25 decisions that waited longer than the warning threshold for the budget")
        warn_now = e.check_latency(e.clock.monotonic_ns(), min_samples=20)
        assert e.rest.budget_waits >= 25
        # summary.json (what kmm run writes) carries both figures under details.latency
        write_run_outputs(e, e.recorder, 0)
        lat = json.loads((run.out / "summary.json").read_text())["details"]["latency"]
    s = run.summary
    waited = [w for _, w in writes if w > 0]
    # the waits were real and, counted in, would have raised the warning: frame -> written with the
    # wait has a p99 far over the threshold
    assert _p99([t for t, _ in writes]) > 2 * WARN_US * 1000
    assert _p99(waited) > WARN_US * 1000
    # without them (kmm's own path) it is under the threshold, so no warning, now or during the run
    assert warn_now == "" and e.high_latency == "" and not e.events_of("high_latency")
    assert _p99([t - w for t, w in writes]) < WARN_US * 1000
    # the summary says both figures, apart
    assert s.budget_waits == len(e.budget_wait_ns) >= 25 and s.decisions >= len(writes)
    assert s.latency_p99_us is not None and s.latency_p99_us < WARN_US
    assert s.budget_wait_p99_us is not None and s.budget_wait_p99_us > WARN_US
    assert lat["budget_wait"]["n"] >= 25 and lat["budget_wait"]["p99_us"] > WARN_US
    assert lat["frame_to_written"]["p99_us"] < WARN_US and lat["decided_to_written"]["n"] > 0
    assert lat["budget_wait"]["decisions"] >= lat["budget_wait"]["n"]
    text = s.render()
    assert "write-budget waits excluded" in text and f"{s.budget_waits} of {s.decisions} decisions" in text
    # the tape's latency_ms is the same figure as the summary's (waits excluded)
    tape = {r.latency_ns for r in read_tape(run.out / "tape.csv") if r.event == "decision" and r.latency_ns}
    assert tape and max(tape) < max(t for t, _ in writes)
    assert {t - w for t, w in writes} & tape
    assert s.verified_flat_orders and s.resting_after_stop == 0


async def test_a_slow_path_before_the_write_still_raises_the_warning(tmp_path, monkeypatch):
    delay_s = 0.04                              # 40 ms of kmm's own, before the bytes are written
    orig_start = fasthttp._Conn.start           # every write goes through it (callback and coroutine paths)

    def slow_start(conn, data, timeout_s, done):
        if data.startswith(b"POST"):            # creates and amends: a slow encoder, say (it holds the loop)
            time.sleep(delay_s)
        orig_start(conn, data, timeout_s, done)

    monkeypatch.setattr(fasthttp._Conn, "start", slow_start)
    async with engine_on_sim(tmp_path, settings={"run.latency_warn_us": str(WARN_US),
                                                 "run.latency_window_s": "60"}) as run:
        e = run.engine
        e.rest.limiter.set_budget(1e6, 1e6)     # no budget waits at all
        n0 = e.stamped
        await until(lambda: e.stamped - n0 >= 40, 60, "40 decisions")
        warn = e.check_latency(e.clock.monotonic_ns(), min_samples=20)
    assert "high latency: frame -> request p99" in warn, warn
    assert e.events_of("high_latency")
    assert len(e.budget_wait_ns) <= e.stamped // 10          # the delay is not counted as a budget wait
    assert run.summary.latency_p99_us is not None and run.summary.latency_p99_us > delay_s * 1e6 * 0.9


