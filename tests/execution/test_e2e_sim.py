"""End to end: every algorithm through ExecutionService against the in-process simulator, thin and
thick books, with the metrics checked against the simulator's own fills."""

from __future__ import annotations

import asyncio

import pytest

from kmm.engine.risk import RiskLimits
from kmm.execution import Action, ExecutionRequest
from kmm.execution.algos import ALGORITHMS
from kmm.execution.driver import ExecutionService
from kmm.record.store import StoreReader
from kmm.sim import MarketSpec, SimConfig, SimExchange

from tests.execution.simenv import (THICK_ASKS, THICK_BIDS, THIN_ASKS, THIN_BIDS, build_book, connector,
                                    truth)

ALGOS = sorted(ALGORITHMS)
LIMITS = RiskLimits(max_open_orders_total=500, max_open_orders_per_market=100, max_position=1_000_000,
                    max_total_position=10_000_000, max_order_notional=100_000_000, max_order_size=100_000)
# the algorithms' clock runs 20x faster than the wall (flow is off, so the sim is unaffected):
# a 40 s timeout is 2 s of test time
SCALE = 20.0
PARAMS = {"timeout_s": 40.0}
EXTRA = {"twap": {"duration_s": 20.0, "slices": 4, "final_wait_s": 5.0}, "slice": {"patience_s": 5.0}}


def _requests(tickers: dict[str, str], action: Action, limit: int, size: int) -> list[ExecutionRequest]:
    return [ExecutionRequest(tickers[a], action, size, limit, algo=a, params={**PARAMS, **EXTRA.get(a, {})})
            for a in ALGOS]


async def _run_all(tmp_path, asks, bids, action: Action, limit: int, size: int):
    markets = [MarketSpec(f"KXE-26-{a.upper()}") for a in ALGOS]
    tickers = {a: m.ticker for a, m in zip(ALGOS, markets)}
    async with SimExchange(SimConfig(seed=3, flow="off", rate_tier="off", markets=markets)) as sim:
        key, pem = sim.create_key()
        maker, _ = sim.create_key(balance="1000000")
        for t in tickers.values():
            build_book(sim, maker, t, asks, bids)
        store_path = tmp_path / "kmm.sqlite"
        async with ExecutionService(connector(sim, key, pem), store=store_path, limits=LIMITS,
                                    time_scale=SCALE) as svc:
            handles = [await svc.submit(r) for r in _requests(tickers, action, limit, size)]
            metrics = await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 30)
        assert svc.stop_verified is True
        truths = [truth(sim, key, h.execution_id) for h in handles]
    return handles, metrics, truths, StoreReader(store_path)


def _check(handles, metrics, truths, reader, *, side: str, limit_yes: int) -> None:
    rows = {r.execution_id: r for r in reader.executions()}
    stored_metrics = {m.execution_id: m for m in reader.execution_metrics()}
    assert reader.open_executions() == []
    for h, m, t in zip(handles, metrics, truths):
        name = h.request.algo
        assert m.filled_size == t.filled, name
        assert m.filled_size <= m.target_size, name
        assert m.fees == t.fees, name
        if t.filled:
            assert m.avg_fill_price == pytest.approx(t.avg), name
        for p in t.prices:
            assert (p <= limit_yes) if side == "bid" else (p >= limit_yes), (name, p)
        assert t.resting == 0, name
        assert m.api_calls.get("place", 0) >= t.orders, name
        assert h.done and not h.live_children, name
        row = rows[h.execution_id]
        assert row.ended_ns is not None and row.status in ("done", "expired", "canceled"), (name, row.status)
        assert stored_metrics[h.execution_id].filled_size == t.filled, name
        kids = reader.execution_orders(h.execution_id)
        assert len(kids) == len(h.children), name
        assert sum(k.filled for k in kids) == t.filled, name
    assert len(reader.book_snapshots(reason="arrival")) == len(handles)


async def test_every_algorithm_on_thick_book_buys_within_limit_and_metrics_match_sim_fills(tmp_path):
    handles, metrics, truths, reader = await _run_all(tmp_path, THICK_ASKS, THICK_BIDS, Action.BUY_YES, 5200, 2000)
    _check(handles, metrics, truths, reader, side="bid", limit_yes=5200)
    by = {h.request.algo: m for h, m in zip(handles, metrics)}
    # a thick book inside the limit: the takers fill completely at once
    for name in ("capped", "vwslice", "walker", "simple"):
        assert by[name].filled_size == 2000, name


async def test_every_algorithm_on_thin_book_buys_no_within_limit_and_metrics_match_sim_fills(tmp_path):
    # buy NO at most 0.56 = sell YES at no less than 0.44: takes the YES bids 0.48 (5 contracts) then
    # nothing else inside the limit (0.42 and 0.41 are beyond it)
    handles, metrics, truths, reader = await _run_all(tmp_path, THIN_ASKS, THIN_BIDS, Action.BUY_NO, 5600, 2000)
    _check(handles, metrics, truths, reader, side="ask", limit_yes=4400)
    for h, m in zip(handles, metrics):
        assert m.filled_size <= 500, h.request.algo   # only the 0.48 level lies inside the limit
