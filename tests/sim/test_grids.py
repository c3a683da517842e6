"""The twelve price structures (kalshi-api.md 2.2): bands, step checks, $0.0001 grids, a grid change mid-run."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
import time

import pytest

from kmm.sim import MarketSpec, SimConfig, SimExchange
from kmm.sim.engine import ASK, BID, Engine
from kmm.sim.wire import GRIDS, fmt_price, grid_prices, on_grid
from tests.sim.client import SimClient

# (structure, edge step, centre step) in 1e-4 $, written from the table on the page, not from the code.
TABLE = {
    "linear_cent": (100, 100), "deci_cent": (10, 10), "tapered_deci_cent": (10, 100),
    "center_whole_edge_half_cent": (50, 100), "center_whole_edge_quint_cent": (20, 100),
    "center_half_edge_half_cent": (50, 50), "center_half_edge_quint_cent": (20, 50),
    "center_half_edge_deci_cent": (10, 50), "center_quint_edge_quint_cent": (20, 20),
    "center_quint_edge_deci_cent": (10, 20), "center_centi_edge_centi_cent": (1, 1),
}


def expected_step(structure: str, p: int) -> int:
    """The step of the band holding p (a price strictly inside a band) per the page's table."""
    if structure == "center_deci_edge_centi_cent":
        return 1 if p < 100 or p > 9900 else 10
    edge, centre = TABLE[structure]
    return edge if p < 1000 or p > 9000 else centre


def test_there_are_twelve_structures_and_each_matches_the_table():
    assert len(GRIDS) == 12 and set(TABLE) | {"center_deci_edge_centi_cent"} == set(GRIDS)
    for s in GRIDS:
        for p in range(1, 10000):
            step = expected_step(s, p)
            # whole cents are valid everywhere; otherwise a price is valid iff it is on its band's step
            assert on_grid(s, p) == (p % step == 0 or p % 100 == 0), (s, p)
        assert not on_grid(s, 0) and not on_grid(s, 10000)


def test_the_two_centi_cent_grids_have_their_slot_counts():
    assert len(grid_prices("center_centi_edge_centi_cent")) == 9999  # 10,001 slots with 0 and 1
    # 0.0001..0.0099 and 0.9901..0.9999 by 0.0001, 0.0100..0.9900 by 0.001
    assert len(grid_prices("center_deci_edge_centi_cent")) == 99 + 981 + 99


async def test_all_grids_market_set_quotes_and_trades_on_every_structure():
    async with SimExchange(SimConfig(flow="off", rate_tier="off", markets="all-grids")) as sim:
        a_key, a_pem = sim.create_key()
        b_key, b_pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, a_key, a_pem) as a, \
                SimClient(sim.rest_url, sim.ws_url, b_key, b_pem) as b:
            st, body = await a.get("/markets")
            by_structure = {m["price_level_structure"]: m for m in body["markets"]}
            assert set(by_structure) == set(GRIDS)
            for s, m in by_structure.items():
                t = m["ticker"]
                ranges = [(r["start"], r["end"], r["step"]) for r in m["price_ranges"]]
                assert ranges[0][0] == "0.0000" and ranges[-1][1] == "1.0000", s
                # the finest edge price: accepted and tradable; one finer: refused by the band's step
                base = 50 if s == "center_deci_edge_centi_cent" else 500  # inside the finest edge band
                fine = expected_step(s, base)
                px = fmt_price(base + fine) if fine < 100 else "0.0600"
                st, body = await a.place(t, "bid", px, "1.00")
                assert st == 201, (s, body)
                st, body = await b.place(t, "ask", px, "0.50", tif="immediate_or_cancel")
                assert st == 201 and body["fill_count"] == "0.50", (s, body)
                if fine > 1:
                    st, body = await a.place(t, "bid", fmt_price(base + fine + 1), "1.00")
                    assert st == 400 and body["error"]["code"] == "invalid_price", s
                centre = expected_step(s, 5000)
                if centre > 1:
                    st, body = await a.place(t, "bid", fmt_price(5000 + centre // 2 if centre > 2 else 5001),
                                             "1.00")
                    assert st == 400 and body["error"]["code"] == "invalid_price", s


async def test_grid_change_mid_run_sends_lifecycle_keeps_orders_and_applies_the_new_steps():
    spec = MarketSpec("KXCOMBO-26-X", price_level_structure="deci_cent", fair_value=0.5)
    async with SimExchange(SimConfig(seed=4, flow="calm", speed=4.0, rate_tier="off", markets=[spec])) as sim:
        key, pem = sim.create_key()
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            ws = await c.ws()
            await ws.send("subscribe", {"channels": ["market_lifecycle_v2"]})
            await ws.recv()
            st, keep = await c.place(spec.ticker, "bid", "0.0050", "2.00")
            assert st == 201
            st, body = await c.place(spec.ticker, "bid", "0.0055", "1.00")
            assert st == 400 and body["error"]["code"] == "invalid_price"  # not on deci_cent
            sim.set_price_structure(spec.ticker, "center_deci_edge_centi_cent")
            m = await ws.recv_until(lambda f: f.get("type") == "market_lifecycle_v2")
            msg = m[-1]["msg"]
            assert msg["event_type"] == "price_level_structure_updated"
            assert msg["price_level_structure"] == "center_deci_edge_centi_cent"
            assert msg["price_ranges"][0] == {"start": "0.0000", "end": "0.0100", "step": "0.0001"}
            assert [o["order_id"] for o in sim.orders(key, status="resting")] == [keep["order_id"]]
            st, body = await c.place(spec.ticker, "bid", "0.0055", "1.00")
            assert st == 201  # the new edge band takes $0.0001 steps
            st, body = await c.place(spec.ticker, "bid", "0.4555", "1.00")
            assert st == 400 and body["error"]["code"] == "invalid_price"  # centre stays $0.001
            st, body = await c.get(f"/markets/{spec.ticker}")
            assert body["market"]["price_level_structure"] == "center_deci_edge_centi_cent"
            await asyncio.sleep(0.5)  # the synthetic flow keeps quoting, on the new grid
            yes = sim.book(spec.ticker)["yes"]
            assert yes and all(on_grid("center_deci_edge_centi_cent", p) for p, _ in yes)
            await ws.ws.close()


def _timed(fn: Callable[[], object]) -> tuple[object, int]:
    """Run ``fn`` with the garbage collector held off; return (its result, elapsed ns)."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        out = fn()
        return out, time.perf_counter_ns() - t0
    finally:
        gc.enable()


def _interleaved_min(measure: Callable[[str], float], base: str, fine: str,
                     rounds: int = 4) -> tuple[float, float]:
    """Fastest per-item cost of each grid, measured in alternation so that load on this shared machine
    falls on both alike."""
    b, f = [], []
    for _ in range(rounds):
        b.append(measure(base))
        f.append(measure(fine))
    return min(b), min(f)


LEVELS = 40


def _levels(structure: str) -> tuple[list[int], list[int]]:
    """``LEVELS`` bid and ask prices spread over the grid: the same number of occupied levels on every grid,
    since the cost may depend on how many levels are occupied (a sorted list of them), never on how many
    slots the grid has."""
    prices = grid_prices(structure)
    bids = [p for p in prices if p < 5000]
    asks = [p for p in prices if p > 5000]
    return ([bids[k * len(bids) // LEVELS] for k in range(LEVELS)],
            [asks[k * len(asks) // LEVELS] for k in range(LEVELS)])


def _place_cancel_cost_ns(structure: str, n: int = 2000) -> float:
    """Fastest-run ns per place+cancel of a resting order at spread-out prices on ``structure``."""
    eng = Engine([MarketSpec("KXB-26-B", price_level_structure=structure)])
    a = eng.add_account("a", 10**12)
    bids, asks = _levels(structure)
    samples = []
    for rep in range(3):
        def run() -> None:
            ids = []
            for i in range(n):
                if i % 2:
                    o = eng.place(a, "KXB-26-B", BID, bids[i % LEVELS], 100, coid=f"{rep}-{i}")
                else:
                    o = eng.place(a, "KXB-26-B", ASK, asks[i % LEVELS], 100, coid=f"{rep}-{i}")
                ids.append(o.id)
            for oid in ids:
                eng.cancel(a, oid)
            eng.out.clear()
        samples.append(_timed(run)[1] / n)
    assert not eng.markets["KXB-26-B"].prices[0] and not eng.markets["KXB-26-B"].prices[1]
    return min(samples)  # the least disturbed run: this machine is shared, load only adds time


@pytest.mark.parametrize("fine", ["center_centi_edge_centi_cent", "center_deci_edge_centi_cent"])
def test_a_ten_thousand_slot_grid_costs_about_what_a_cent_grid_costs_per_order(fine):
    base, cost = _interleaved_min(_place_cancel_cost_ns, "linear_cent", fine)
    print(f"place+cancel: linear_cent {base:.0f} ns, {fine} {cost:.0f} ns, ratio {cost / base:.2f}")
    assert cost < 1.5 * base  # same data structures: occupied levels, never a per-slot array


def _fanout_cost_ns(structure: str, n: int = 4000) -> float:
    """Fastest-run ns per book delta encoded and queued for one orderbook_delta subscriber (engine -> hub)."""
    from kmm.sim.hub import Conn, Hub
    eng = Engine([MarketSpec("KXB-26-B", price_level_structure=structure)])
    a = eng.add_account("a", 10**12)
    hub = Hub(eng)
    conn = Conn(None, None)
    hub.conns.add(conn)
    hub.add_sub(conn, "orderbook_delta", {"KXB-26-B"})
    bids, _ = _levels(structure)
    samples, frames = [], 0
    for rep in range(3):
        eng.out.clear()
        conn.pending.clear()
        ids = [eng.place(a, "KXB-26-B", BID, bids[i % LEVELS], 100, coid=f"{rep}-{i}").id
               for i in range(n // 2)]
        for oid in ids:
            eng.cancel(a, oid)
        events = eng.out
        eng.out = []
        samples.append(_timed(lambda: hub.dispatch(events))[1] / n)
        frames = len(conn.pending)
    assert frames == n  # every place and cancel became one delta frame
    return min(samples)


@pytest.mark.parametrize("fine", ["center_centi_edge_centi_cent", "center_deci_edge_centi_cent"])
def test_book_fan_out_on_a_ten_thousand_slot_grid_costs_about_what_a_cent_grid_costs_per_delta(fine):
    base, cost = _interleaved_min(_fanout_cost_ns, "linear_cent", fine)
    print(f"fan-out per delta: linear_cent {base:.0f} ns, {fine} {cost:.0f} ns, ratio {cost / base:.2f}")
    assert cost < 1.5 * base
