"""The amend's short path against the full one: ``RiskGate.amend_allowed`` says yes exactly when
``check_amend`` allows, over the random gate states of test_place_fast (limits, positions, open
orders, kill switch, pauses, close, stale book, back-off), and an allowed amend is ``ALLOW`` itself,
so ``QuotePlanner.other`` gives the same step either way."""

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
