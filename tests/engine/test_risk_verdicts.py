"""The risk gate's fat-finger pass, decided without building messages, gives exactly the former verdict
(tests/reference/risk.py): the same Decision (reason, sentence, fat_finger flag) for every order, the
same denial counts. Markets whole or fractional, on a cent or a deci-cent grid, and unknown."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.grid import Grid
from kmm.engine.clock import ManualClock
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import RiskGate, RiskLimits
from tests.reference import risk as ref


def _gate(lim: dict) -> RiskGate:
    clock = ManualClock()
    pf = Portfolio()
    g = RiskGate(RiskLimits(**lim), clock, pf, OrderManager(clock))
    g.add_market("KXW", Grid("linear_cent"))
    g.add_market("KXF", Grid("deci_cent"), fractional=True)
    return g


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(dict(max_order_size=st.integers(1, 5000), max_order_notional=st.integers(1, 500_000),
                                  price_min=st.integers(0, 3000), price_max=st.integers(5000, 10_000))),
       st.lists(st.tuples(st.sampled_from(["KXW", "KXF", "KXNONE"]), st.sampled_from(["bid", "ask", "buy"]),
                          st.integers(-100, 10_100), st.integers(-200, 6000)), min_size=1, max_size=20))
def test_fat_finger_gives_the_former_verdicts(lim, orders):
    fast, slow = _gate(lim), _gate(lim)
    for t, side, price, count in orders:
        assert fast._fat_finger(t, side, price, count) == ref.fat_finger(slow, t, side, price, count)
    assert fast.denials == slow.denials
