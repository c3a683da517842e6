"""The execution service's OrderManager against the simulator: after an end-to-end run of every
algorithm, the order manager knows every child the exchange saw, in its final state, with the
exchange's fill counts, and the risk gate reads its open orders from it."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from kmm.engine.orders import OrderState
from kmm.execution import Action, ExecutionRequest
from kmm.execution.driver import ExecutionService
from kmm.sim import MarketSpec, SimConfig, SimExchange

from tests.execution.simenv import THIN_ASKS, THIN_BIDS, build_book, connector
from tests.execution.test_e2e_sim import ALGOS, EXTRA, LIMITS, PARAMS, SCALE

TERMINAL = {OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED}


async def test_order_manager_agrees_with_simulator_orders_after_every_algorithm_runs_on_thin_book():
    markets = [MarketSpec(f"KXO-26-{a.upper()}") for a in ALGOS]
    async with SimExchange(SimConfig(seed=5, flow="off", rate_tier="off", markets=markets)) as sim:
        key, pem = sim.create_key()
        maker, _ = sim.create_key(balance="1000000")
        for m in markets:
            build_book(sim, maker, m.ticker, THIN_ASKS, THIN_BIDS)
        async with ExecutionService(connector(sim, key, pem), limits=LIMITS, time_scale=SCALE) as svc:
            assert svc.gate.orders is svc.om
            # sell YES down to 0.44: takes the 0.48 bids (5 contracts), then waits passively
            handles = [await svc.submit(ExecutionRequest(m.ticker, Action.SELL_YES, 2000, 4400, algo=a,
                                                         params={**PARAMS, **EXTRA.get(a, {})}))
                       for a, m in zip(ALGOS, markets)]
            await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 30)
        assert svc.stop_verified is True
        om = svc.om
        sim_orders = {o["client_order_id"]: o for o in sim.orders(key)}
        sim_fills: dict[str, list[dict]] = defaultdict(list)
        for f in sim.fills(key):
            sim_fills[f["order_id"]].append(f)

    assert sim_orders, "the run placed no orders"
    assert sum(len(v) for v in sim_fills.values()) > 0, "the run filled nothing"
    # every order the exchange saw is known to the order manager, terminal, with the exchange's counts
    for coid, so in sim_orders.items():
        o = om.get(coid)
        assert o is not None, coid
        assert o.order_id == so["order_id"], coid
        assert o.state in TERMINAL and not o.is_live, (coid, o.state)
        assert o.fill_count == so["filled"], coid
        assert o.filled == sum(f["count"] for f in sim_fills[so["order_id"]]), coid   # every Fill counted once
        assert o.fees == sum(f["fee"] for f in sim_fills[so["order_id"]]), coid
        assert o.state is (OrderState.FILLED if so["filled"] >= so["initial"] else OrderState.CANCELED), coid
    # and it knows nothing the exchange did not see (children refused before sending never reach it)
    for h in handles:
        for c in h.children:
            if c.order is None:
                assert om.get(c.child_id) is None and c.place == "rejected", c.child_id
            else:
                assert c.order is om.get(c.child_id) and c.child_id in sim_orders, c.child_id
                assert c.filled == c.order.fill_count, c.child_id
    assert len(om.orders()) == len(sim_orders)
    assert om.open_count() == 0 and om.live_orders(markets[0].ticker) == []
    assert om.stats.illegal == 0 and om.stats.unknown_acks == 0   # every answer fitted its state
    assert svc.calls["cancel"] > 0 and svc.calls["amend"] > 0       # the request paths were exercised
    assert om.stats.overfills == 0 and om.orphan_fill_count() == 0
