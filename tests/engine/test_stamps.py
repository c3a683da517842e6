"""The decision's latency means what its name says: frame received -> the first request's bytes
written. Against the in-process simulator, every stamp the maker records (the summary's frame ->
request percentiles, the tape's latency) is the stamp the order connection took right after
``transport.write`` returned, never a time before the request was built."""

from __future__ import annotations

import asyncio

import pytest

from kmm.kalshi import fasthttp
from kmm.record.tape import read_tape
from tests.engine.test_live import engine_on_sim, until

pytestmark = pytest.mark.slow


async def test_decision_latency_is_stamped_after_the_bytes_are_written(tmp_path, monkeypatch):
    writes: set[int] = set()
    orig_start = fasthttp._Conn.start          # every write: the coroutine path's send() calls it too

    def start(conn, data, timeout_s, done):
        orig_start(conn, data, timeout_s, done)
        writes.add(conn.last_write_ns)        # taken after transport.write returned

    monkeypatch.setattr(fasthttp._Conn, "start", start)
    issued: list[tuple[int, int]] = []
    async with engine_on_sim(tmp_path) as run:
        e = run.engine
        orig_issued = e._issued

        def spy(pipe, trigger_ns, issued_ns, waited_ns=0):
            issued.append((trigger_ns, issued_ns, waited_ns))
            orig_issued(pipe, trigger_ns, issued_ns, waited_ns)

        e._issued = spy  # type: ignore[method-assign]
        n0 = len(e._latency_ns)
        await until(lambda: len(issued) >= 50, 30, "50 decisions with requests")
        await asyncio.sleep(0.2)
        samples = list(e._latency_ns)[n0:]
    assert len(issued) >= 50
    not_written = [s for _, s, _ in issued if s not in writes]
    assert not not_written, f"{len(not_written)} of {len(issued)} stamps are not write stamps"
    # and what the maker keeps (summary percentiles, tape) is exactly frame received -> written, less
    # the time the request stood waiting for the write budget (reported apart)
    recorded = {s - t - w for t, s, w in issued}
    assert samples and set(samples) <= recorded and all(x > 0 for x in samples)
    tape = [r for r in read_tape(run.out / "tape.csv") if r.event == "decision" and r.latency_ns is not None]
    assert set(recorded) & {r.latency_ns for r in tape}
