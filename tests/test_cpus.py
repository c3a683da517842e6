"""CPU placement ([run] cpus, [run] signer_cpus): lists parse as taskset -c writes them, a CPU kmm may
not use is refused with the CPUs it may, and the pinning reaches the thread and the signer process."""

from __future__ import annotations

import os
import threading

import pytest

from kmm.cpus import parse_cpus, pin_thread
from kmm.errors import ConfigError

linux = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


def test_lists_parse_as_taskset_writes_them():
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    first = allowed[0]
    assert parse_cpus("", "run.cpus") == frozenset()
    assert parse_cpus("  ", "run.cpus") == frozenset()
    assert parse_cpus(str(first), "run.cpus") == {first}
    if len(allowed) >= 2:
        a, b = allowed[0], allowed[1]
        assert parse_cpus(f"{a},{b}", "run.cpus") == {a, b}
        assert parse_cpus(f" {a} , {b} ", "run.cpus") == {a, b}
        if b == a + 1:
            assert parse_cpus(f"{a}-{b}", "run.cpus") == {a, b}


@pytest.mark.parametrize("text, words", [
    ("x", ["run.cpus = 'x'", "'x' is not a CPU number or range", "taskset -c"]),
    ("0,,1", ["'' is not a CPU number"]),
    ("3-1", ["'3-1' is not a range"]),
    ("-1", ["'-1'"]),
    ("1.5", ["'1.5' is not a CPU number"]),
])
def test_bad_lists_say_what_and_how_to_write_them(text, words):
    with pytest.raises(ConfigError) as e:
        parse_cpus(text, "run.cpus")
    for w in words:
        assert w in str(e.value)


@linux
def test_a_cpu_kmm_may_not_use_is_refused_naming_those_it_may():
    allowed = os.sched_getaffinity(0)
    bad = max(allowed) + 1000
    with pytest.raises(ConfigError) as e:
        parse_cpus(f"{min(allowed)},{bad}", "run.signer_cpus")
    msg = str(e.value)
    assert f"CPU {bad} is not available to kmm" in msg
    assert ",".join(str(c) for c in sorted(allowed)) in msg


@linux
def test_pinning_reaches_the_calling_thread_and_the_threads_it_starts():
    target = frozenset({min(os.sched_getaffinity(0))})
    seen: dict[str, set[int]] = {}

    def body() -> None:               # a thread of its own: the test process keeps its CPUs
        pin_thread(target, "run.cpus")
        seen["pinned"] = os.sched_getaffinity(0)
        child = threading.Thread(target=lambda: seen.__setitem__("child", os.sched_getaffinity(0)))
        child.start()
        child.join()

    before = os.sched_getaffinity(0)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen["pinned"] == target and seen["child"] == target
    assert os.sched_getaffinity(0) == before
    pin_thread(frozenset(), "run.cpus")          # empty: nothing changes
    assert os.sched_getaffinity(0) == before


@linux
def test_records_cpus_put_every_writer_thread_of_the_recorder_there_and_not_on_the_loops(tmp_path):
    """[run] records_cpus: the recorder's writer threads (tape, store, capture, ops.log) run on the CPUs
    named, while the thread that opened the recorder (the loop's, pinned by [run] cpus) keeps its own;
    every record is still written."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two CPUs: one for the loop, one for the writers")
    loop_cpus, records_cpus = frozenset(allowed[:1]), frozenset(allowed[1:2])
    from kmm.record import Recorder
    out: dict[str, object] = {}

    def body() -> None:               # the loop's thread, pinned as kmm run pins it
        import logging
        pin_thread(loop_cpus, "run.cpus")
        rec = Recorder.open(tmp_path / "out", console=False, cpus=records_cpus)
        try:
            threads = [rec.tape._thread, rec.store._thread, rec.capture._thread, rec.log._listener._thread]
            for th in threads:
                assert th is not None and th.native_id is not None
            # the writer pins itself as its thread starts: wait for it to have run (bounded)
            import time
            end = time.monotonic() + 5
            while time.monotonic() < end and any(os.sched_getaffinity(th.native_id) != records_cpus
                                                 for th in threads):
                time.sleep(0.01)
            out["writers"] = [os.sched_getaffinity(th.native_id) for th in threads]
            out["loop"] = os.sched_getaffinity(0)
            logging.getLogger("kmm.test").info("a line for ops.log")
            rec.capture.write(1, b'{"type":"ping"}', 1)
        finally:
            rec.close()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert out["writers"] == [records_cpus] * 4
    assert out["loop"] == loop_cpus
    assert "a line for ops.log" in (tmp_path / "out" / "ops.log").read_text()
    assert any(p.name.startswith("capture") for p in (tmp_path / "out").iterdir())
