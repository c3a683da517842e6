"""Engine parts on the decision path: the risk gate per place, and the fill path (orders + portfolio).

Baselines, measured in the same run:
- risk.check_place: the same checks answered by scanning every order of the session (what the
  gate would cost without the order manager's live-order index), with 2,000 closed orders kept.
- fill_path: booking the same fills in the portfolio alone, so the ratio shows the order manager's
  share of the fill path.
"""

from __future__ import annotations

import gc

from kmm._core.grid import Grid
from kmm.engine.clock import ManualClock
from kmm.engine.orders import TERMINAL, OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import RiskGate, RiskLimits
from kmm.kalshi.types import Fill, OrderAck

T = "KXBENCH-1"
N_CHECKS = 1000
N_FILLS = 1000


def _session():
    clock = ManualClock()
    pf = Portfolio(cash=100_000_000)
    om = OrderManager(clock, session="b")
    for i in range(2000):                              # a long session: many closed orders
        o = om.create(T, "bid", 4000, 100)
        om.on_ack(OrderAck(f"c{i}", o.client_order_id, 0, 100))
        om.on_cancel_ack(f"c{i}")
    for i in range(10):                                # a few live quotes
        o = om.create(T, "bid" if i % 2 else "ask", 4000 + (100 if i % 2 == 0 else -100), 100)
        om.on_ack(OrderAck(f"l{i}", o.client_order_id, 0, 100))
    gate = RiskGate(RiskLimits(max_open_orders_per_market=50), clock, pf, om)
    gate.add_market(T, Grid("linear_cent"))
    gate.on_book_update(T)
    return gate, om


class _ScanningOrders:
    """The gate's order queries answered by scanning every order of the session."""

    def __init__(self, om: OrderManager) -> None:
        self.om = om

    def open_count(self, ticker=None):
        return sum(1 for o in self.om.orders()
                   if o.state not in TERMINAL and (ticker is None or o.ticker == ticker))

    def open_qty(self, ticker, side):
        return sum(o.remaining for o in self.om.orders()
                   if o.state not in TERMINAL and o.ticker == ticker and o.side == side)


def _run_checks(gate):
    ok = 0
    for i in range(N_CHECKS):
        ok += bool(gate.check_place(T, "bid", 3000 + (i % 10) * 100, 100))
    return ok


def test_risk_check_place(benchmark):
    gate, _ = _session()
    benchmark.group = "risk.check_place"
    benchmark.extra_info.update(role="kmm", ops=N_CHECKS)
    assert benchmark(_run_checks, gate) == N_CHECKS


def test_risk_check_place_scanning_baseline(benchmark):
    gate, om = _session()
    gate.orders = _ScanningOrders(om)
    benchmark.group = "risk.check_place"
    benchmark.extra_info.update(role="baseline", ops=N_CHECKS)
    assert benchmark(_run_checks, gate) == N_CHECKS


def _fills(prefix: str, om: OrderManager):
    out = []
    for i in range(N_FILLS):
        o = om.create(T, "bid" if i % 2 else "ask", 4000, 100)
        om.on_ack(OrderAck(f"{prefix}{i}", o.client_order_id, 0, 100))
        out.append(Fill(f"{prefix}t{i}", f"{prefix}{i}", o.client_order_id, T, o.side, 4000, 100, 7,
                        False, None, 0))
    return out


def test_fill_path(benchmark):
    state = {"n": 0}

    def setup():
        state["n"] += 1
        om = OrderManager(ManualClock(), session="f")
        pf = Portfolio(cash=100_000_000)
        fills = _fills(f"r{state['n']}-", om)
        gc.collect()                                   # the setup's garbage is not the fill path's
        return (om, pf, fills), {}

    def run(om, pf, fills):
        for f in fills:
            if om.on_fill(f):
                pf.apply_fill(f)
        return om, pf

    benchmark.group = "fill_path"
    benchmark.extra_info.update(role="kmm", ops=N_FILLS)
    om, pf = benchmark.pedantic(run, setup=setup, rounds=20)
    assert om.open_count() == 0 and pf.position(T) == 0 and pf.fees_paid(T) == 7 * N_FILLS


def test_fill_path_portfolio_only_baseline(benchmark):
    state = {"n": 0}

    def setup():
        state["n"] += 1
        om = OrderManager(ManualClock(), session="p")
        fills = _fills(f"p{state['n']}-", om)
        gc.collect()
        return (Portfolio(cash=100_000_000), fills), {}

    def run(pf, fills):
        for f in fills:
            pf.apply_fill(f)
        return pf

    benchmark.group = "fill_path"
    benchmark.extra_info.update(role="baseline", ops=N_FILLS)
    pf = benchmark.pedantic(run, setup=setup, rounds=20)
    assert pf.position(T) == 0 and pf.fees_paid(T) == 7 * N_FILLS
