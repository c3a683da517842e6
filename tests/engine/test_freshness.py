"""Book freshness: judged from book data only, escalating pull -> resubscribe -> reconnect."""

from __future__ import annotations

from kmm.engine import freshness as F
from kmm.engine.clock import NS_PER_S, ManualClock


def make():
    clock = ManualClock()
    fr = F.Freshness(clock, stale_after_s=2.0, answer_s=0.5, step_s=2.0)
    fr.add("A")
    fr.add("B")
    return clock, fr


def test_waiting_until_a_snapshot_then_fresh_while_data_flows():
    clock, fr = make()
    assert not fr.fresh("A")
    fr.on_ready("A")
    assert fr.fresh("A") and not fr.fresh("B")
    clock.advance(1.5)
    fr.on_data("A", clock.monotonic_ns())
    clock.advance(1.5)
    assert fr.silent(clock.monotonic_ns()) == []           # data 1.5 s ago: not silent


def test_a_quiet_book_answered_by_its_snapshot_keeps_quoting():
    clock, fr = make()
    fr.on_ready("A")
    clock.advance(2.1)
    assert fr.silent(clock.monotonic_ns()) == ["A"]
    assert fr.fresh("A")                                    # checking: quotes stay for answer_s
    clock.advance(0.3)
    fr.on_data("A", clock.monotonic_ns())                   # the snapshot came
    clock.advance(1.0)
    assert fr.escalations(clock.monotonic_ns()) == [] and fr.fresh("A")


def test_an_unanswered_request_escalates_pull_resubscribe_reconnect_whatever_pings_do():
    clock, fr = make()
    fr.on_ready("A")
    clock.advance(2.1)
    t_silent = clock.monotonic_ns()
    fr.silent(t_silent)
    clock.advance(0.49)
    assert fr.escalations(clock.monotonic_ns()) == []
    clock.advance(0.02)
    assert fr.escalations(clock.monotonic_ns()) == [("A", F.PULL)]
    assert not fr.fresh("A") and "unanswered" in fr.why_not("A")
    clock.advance(1.9)
    assert fr.escalations(clock.monotonic_ns()) == []
    clock.advance(0.2)
    assert fr.escalations(clock.monotonic_ns()) == [("A", F.RESUBSCRIBE)]
    clock.advance(2.1)
    assert fr.escalations(clock.monotonic_ns()) == [("A", F.RECONNECT)]
    clock.advance(10)
    assert fr.escalations(clock.monotonic_ns()) == []       # nothing beyond a reconnect
    fr.on_ready("A")
    assert fr.fresh("A")
    assert (clock.monotonic_ns() - t_silent) > 4 * NS_PER_S


def test_a_disconnect_makes_every_book_wait_for_its_snapshot():
    clock, fr = make()
    fr.on_ready("A")
    fr.on_ready("B")
    fr.on_disconnected()
    assert not fr.fresh("A") and not fr.fresh("B")
