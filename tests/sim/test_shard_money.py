"""Money never moves between shards except by transfer: a property over random trading on two shards.

For every account and shard, ``cash + sum over the shard's markets of (cost + fees_paid - realized)`` equals
what was deposited there plus the transfers in minus the transfers out, to the 1e-4 $, after any sequence of
places, cancels, decreases, fills, transfers and settlements; no account ever has negative cash on a shard.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm.sim import MarketSpec
from kmm.sim.engine import ASK, BID, Engine
from kmm.sim.rejects import Reject
from kmm.sim.wire import grid_prices

SPECS = [MarketSpec("KXS0-26-A", fee_type="quadratic_with_maker_fees"),
         MarketSpec("KXS1-26-A", exchange_index=1, price_level_structure="center_deci_edge_centi_cent"),
         MarketSpec("KXS1-26-B", exchange_index=1, price_level_structure="deci_cent")]
START = {0: 50_000, 1: 30_000}  # 1e-4 $: $5 and $3
GRID_PRICES = {m.ticker: grid_prices(m.price_level_structure) for m in SPECS}
FILLS = [0]  # fills seen over all examples: the property must have exercised trading

place = st.tuples(st.just("place"), st.integers(0, 2), st.integers(0, 2), st.sampled_from((BID, ASK)),
                  st.integers(3000, 7000), st.integers(1, 400), st.booleans())
op = st.one_of(
    place, place, place,
    st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 50)),
    st.tuples(st.just("decrease"), st.integers(0, 2), st.integers(0, 50), st.integers(1, 300)),
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 40_000)),
)


def _ledger(eng: Engine, key: str, shard: int) -> int:
    a = eng.accounts[key]
    total = a.cash[shard]
    for t, p in a.positions.items():
        if eng.markets[t].shard == shard:
            total += p.cost + p.fees_paid - p.realized
    return total


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=20, max_size=80), results=st.lists(st.sampled_from(("yes", "no")),
                                                                     min_size=3, max_size=3))
def test_each_shards_ledger_balances_to_deposits_and_transfers(ops, results):
    eng = Engine(SPECS, n_shards=2)
    keys = [f"k{i}" for i in range(3)]
    deposited = {(k, s): v for k in keys for s, v in START.items()}
    for k in keys:
        a = eng.add_account(k, START[0])
        a.cash[1] = START[1]
    n = 0
    for o in ops:
        n += 1
        kind, who = o[0], keys[o[1]]
        a = eng.accounts[who]
        try:
            if kind == "place":
                m = SPECS[o[2]]
                side, px, cnt, ioc = o[3], o[4], o[5], o[6]
                prices = GRID_PRICES[m.ticker]
                px = prices[px * len(prices) // 10000]  # a valid price of the market's grid
                eng.place(a, m.ticker, side, px, cnt, coid=f"c{n}",
                          tif="immediate_or_cancel" if ioc else "good_till_canceled")
            elif kind in ("cancel", "decrease"):
                ids = sorted(a.orders)
                if ids:
                    oid = ids[o[2] % len(ids)]
                    if kind == "cancel":
                        eng.cancel(a, oid)
                    else:
                        eng.decrease(a, oid, None, o[3])
            else:
                src = o[2]
                eng.transfer(a, src, 1 - src, o[3])
                deposited[(who, src)] -= o[3]
                deposited[(who, 1 - src)] += o[3]
        except Reject:
            pass
        eng.out.clear()
        for k in keys:
            for s in (0, 1):
                assert eng.accounts[k].cash[s] >= 0, (k, s, o)
                assert eng.accounts[k].available_on(s) >= 0, (k, s, o)
                assert _ledger(eng, k, s) == deposited[(k, s)], (k, s, o)
    FILLS[0] += eng.stats["fills"]
    for spec, result in zip(SPECS, results):
        eng.settle(spec.ticker, result)
    for k in keys:
        for s in (0, 1):
            assert _ledger(eng, k, s) == deposited[(k, s)]
            assert eng.accounts[k].reserved[s] == 0


def test_the_property_above_saw_fills():
    test_each_shards_ledger_balances_to_deposits_and_transfers()
    assert FILLS[0] > 100
