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
