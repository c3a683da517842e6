"""The amend's short path against the full one: ``RiskGate.amend_allowed`` says yes exactly when
``check_amend`` allows, over the random gate states of test_place_fast (limits, positions, open
orders, kill switch, pauses, close, stale book, back-off), and an allowed amend is ``ALLOW`` itself,
so ``QuotePlanner.other`` gives the same step either way; ``RiskGate.amend_size`` (the planner's reduce-only
sizing and the check in one call) gives the size the two steps gave, and -1 exactly when they refused."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.engine.risk import ALLOW
from tests.engine.test_place_fast import T, gate_state


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_amend_allowed_says_yes_exactly_when_check_amend_allows(data):
    gate, _, _, om = gate_state(data.draw)
    # valid values drawn more often than the fat-finger cases, so that the allows are not rare
    side = data.draw(st.sampled_from(["bid", "ask", "bid", "ask", "buy"]))
    price = data.draw(st.sampled_from([4500, 5000, 100, 9900, 4500, 5000, 50, 4550, 9950]))
    remaining = data.draw(st.sampled_from([100, 500, 1000, 100, 500, -100, 0, 150, 5000]))
    old = data.draw(st.sampled_from([0, 100, 500, 1000]))
    before = dict(gate.denials)
    fast = gate.amend_allowed(T, side, price, remaining, old)
    assert gate.denials == before                     # the short path never counts a denial
    d = gate.check_amend(T, side, price, remaining, old)
    assert fast == bool(d)
    if fast:
        assert d is ALLOW
    assert gate.amend_allowed("KXNONE", side, price, remaining, old) is False


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_amend_allowed_on_valid_orders_follows_the_state(data):
    """Orders the fat-finger checks pass: the answer turns on the gate's state (position, resting,
    reduce-only, kill switch, pauses, close, stale book, back-off)."""
    gate, _, _, _ = gate_state(data.draw)
    side = data.draw(st.sampled_from(["bid", "ask"]))
    price = data.draw(st.sampled_from([4500, 5000, 100, 9900]))
    remaining = data.draw(st.sampled_from([100, 500, 1000]))
    old = data.draw(st.sampled_from([0, 100, 500, 1000]))
    d = gate.check_amend(T, side, price, remaining, old)
    assert gate.amend_allowed(T, side, price, remaining, old) == bool(d)


def two_steps(gate, pf, om, side, price, size, old_remaining, old_price):
    """QuotePlanner.other's amend sizing and check before RiskGate.amend_size (the reference): the
    size to amend to, 0 for nothing to send, -1 for "ask check_amend"."""
    if gate.reduce_only_reason(T):
        q = pf.position(T)
        reducing = q * (1 if side == "bid" else -1) < 0
        room = abs(q) - (om.open_qty(T, side) - old_remaining) if reducing else 0
        size = min(size, room)
        if size > 0 and size == old_remaining and price == old_price:
            return 0
    if size > 0 and gate.amend_allowed(T, side, price, size, old_remaining):
        return size
    return -1


@settings(max_examples=1000, deadline=None)
@given(data=st.data())
def test_amend_size_is_the_planners_two_steps(data):
    gate, _, pf, om = gate_state(data.draw)
    side = data.draw(st.sampled_from(["bid", "ask"]))
    price = data.draw(st.sampled_from([4500, 5000, 100, 9900, 4550, 50]))
    size = data.draw(st.sampled_from([100, 500, 1000, 150, 3000]))
    old_remaining = data.draw(st.sampled_from([0, 100, 500, 1000]))
    old_price = data.draw(st.sampled_from([price, 4000, 5000]))
    before = dict(gate.denials)
    got = gate.amend_size(T, side, price, size, old_remaining, old_price)
    assert gate.denials == before                     # never counts a denial
    want = two_steps(gate, pf, om, side, price, size, old_remaining, old_price)
    assert got == want
    if got > 0:                                       # the size it gives is one check_amend allows
        assert gate.check_amend(T, side, price, got, old_remaining) is ALLOW


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_amend_size_under_reduce_only_sizes_to_the_position(data):
    """The same, with the loss near its limit (reduce-only whatever the position): the sizing cases."""
    gate, _, pf, om = gate_state(data.draw)
    gate.last_pnl = -90_000
    side = data.draw(st.sampled_from(["bid", "ask"]))
    price = data.draw(st.sampled_from([4500, 5000]))
    size = data.draw(st.sampled_from([100, 500, 1000, 3000]))
    old_remaining = data.draw(st.sampled_from([0, 100, 500]))
    old_price = data.draw(st.sampled_from([price, 4000]))
    got = gate.amend_size(T, side, price, size, old_remaining, old_price)
    assert got == two_steps(gate, pf, om, side, price, size, old_remaining, old_price)
    if got > 0:
        q = pf.position(T)
        assert q * (1 if side == "bid" else -1) < 0              # only ever reduces ...
        assert om.open_qty(T, side) - old_remaining + got <= abs(q)   # ... and never past zero
