"""Clocks: the manual clock moves only when told; the system clock satisfies the protocol."""

import pytest

from kmm.engine.clock import NS_PER_S, Clock, ManualClock, SystemClock


def test_manual_clock_moves_both_readings_together():
    c = ManualClock(monotonic_ns=5, time_ns=1_000)
    c.advance(1.5)
    assert c.monotonic_ns() == 5 + 3 * NS_PER_S // 2
    assert c.time_ns() == 1_000 + 3 * NS_PER_S // 2
    c.advance_ns(7)
    assert c.monotonic_ns() == 5 + 3 * NS_PER_S // 2 + 7


def test_manual_clock_refuses_to_go_back():
    with pytest.raises(ValueError, match="forward"):
        ManualClock().advance_ns(-1)


def test_manual_clock_wall_time_can_jump_alone():
    c = ManualClock(monotonic_ns=0, time_ns=0)
    c.set_time_ns(10 * NS_PER_S)
    assert (c.monotonic_ns(), c.time_ns()) == (0, 10 * NS_PER_S)


def test_both_clocks_satisfy_the_protocol_and_system_clock_is_monotonic():
    s = SystemClock()
    assert isinstance(s, Clock) and isinstance(ManualClock(), Clock)
    a = s.monotonic_ns()
    assert s.monotonic_ns() >= a
    assert s.time_ns() > 1_600_000_000 * NS_PER_S
