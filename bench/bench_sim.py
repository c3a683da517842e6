"""kmm sim throughput against the design budgets (design.md section 9).

* ``sim-fanout``: book messages fanned out per second to one WebSocket subscriber (budget >= 20,000/s).
  kmm: orders placed and cancelled inside the engine, every delta encoded per subscription and sent;
  baseline: the same number of pre-encoded frames pushed through the same aiohttp socket (transport ceiling).
* ``sim-match``: orders matched per second (budget >= 2,000/s), every order crossing one resting order,
  with a subscriber on the book and the private channels so the fan-out cost is included;
  baseline: a naive plain-Python sorted-list matcher doing the same matches without accounts or events.
Every run is bounded in count and time and asserts what it produced.
"""

from __future__ import annotations

import asyncio
import bisect
import time

import orjson
import pytest

from kmm.sim import SimConfig, SimExchange
from kmm.sim.engine import ASK, BID
from tests.sim.client import SimClient

FANOUT_N = 20_000
MATCH_N = 4_000
BUDGET_FANOUT = 20_000
BUDGET_MATCH = 2_000
TIME_LIMIT_S = 30.0


async def _fanout(use_engine: bool) -> tuple[int, float]:
    async with SimExchange(SimConfig(flow="off", markets=1)) as sim:
        key, pem = sim.create_key()
        maker = sim.engine.add_account("bench-maker", 10**15, unlimited=True)
        t = sim.tickers[0]
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            ws = await c.ws()
            await ws.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": t})
            await ws.recv()
            await ws.recv()  # snapshot
            got = 0
            last_seq = 1

            async def consume() -> None:
                nonlocal got, last_seq
                deadline = time.monotonic() + TIME_LIMIT_S
                while got < FANOUT_N and time.monotonic() < deadline:
                    m = orjson.loads((await ws.ws.receive(timeout=TIME_LIMIT_S)).data)
                    if use_engine:
                        assert m["seq"] == last_seq + 1
                        last_seq = m["seq"]
                    got += 1

            t0 = time.perf_counter()
            task = asyncio.create_task(consume())
            if use_engine:
                eng = sim.engine
                for i in range(FANOUT_N // 2):  # each place + cancel = 2 deltas
                    o = eng.place(maker, t, BID, 100 + 100 * (i % 40), 100, coid=f"b{i}")
                    eng._cancel_resting(o)  # noqa: SLF001
                    if i % 64 == 0:
                        sim.flush()
                        await asyncio.sleep(0)
                sim.flush()
            else:
                conn = next(iter(sim.hub.conns))
                frame = ('{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"' + t +
                         '","price_dollars":"0.4100","delta_fp":"1.00","side":"yes","ts_ms":0}}')
                for i in range(FANOUT_N):
                    conn.push(frame)
                    if i % 128 == 0:
                        await asyncio.sleep(0)
            await asyncio.wait_for(task, TIME_LIMIT_S)
            dt = time.perf_counter() - t0
            await ws.close()
            return got, dt


async def _match() -> tuple[int, float, int]:
    async with SimExchange(SimConfig(flow="off", markets=1)) as sim:
        key, pem = sim.create_key()
        t = sim.tickers[0]
        eng = sim.engine
        maker = eng.add_account("bench-maker", 10**15, unlimited=True)
        taker = eng.add_account("bench-taker", 10**15, unlimited=True)
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            ws = await c.ws()
            await ws.send("subscribe", {"channels": ["orderbook_delta", "trade", "ticker"], "market_ticker": t})
            fills0 = eng.stats["fills"]
            t0 = time.perf_counter()
            for i in range(MATCH_N):
                px = 100 + 100 * (i % 90)
                eng.place(maker, t, ASK, px, 200, coid=f"m{i}")
                o = eng.place(taker, t, BID, px, 200, coid=f"t{i}", tif="immediate_or_cancel")
                assert o.filled == 200
                sim.flush()
                if i % 64 == 0:
                    await asyncio.sleep(0)
                if time.perf_counter() - t0 > TIME_LIMIT_S:
                    break
            dt = time.perf_counter() - t0
            await ws.close()
            return eng.stats["orders_matched"], dt, eng.stats["fills"] - fills0


def _naive_match() -> tuple[int, float]:
    asks: list[tuple[int, int, int]] = []  # (price, seq, size)
    matched = 0
    t0 = time.perf_counter()
    for i in range(MATCH_N):
        px = 100 + 100 * (i % 90)
        bisect.insort(asks, (px, i, 200))
        need = 200
        while need and asks and asks[0][0] <= px:
            p, s, q = asks.pop(0)
            take = min(q, need)
            need -= take
            if q > take:
                asks.insert(0, (p, s, q - take))
        matched += need == 0
    return matched, time.perf_counter() - t0


@pytest.mark.parametrize("role", ["kmm", "baseline"])
def test_bench_sim_fanout(benchmark, role):
    benchmark.group = "sim: book messages fanned out, per message (median of 3 runs)"
    benchmark.extra_info.update({"role": role, "ops": FANOUT_N})
    results = []

    def run():
        got, dt = asyncio.run(_fanout(role == "kmm"))
        results.append(got / dt)
        return got

    got = benchmark.pedantic(run, rounds=3, iterations=1)
    assert got == FANOUT_N
    rate = sorted(results)[len(results) // 2]
    benchmark.extra_info.update(messages_per_s=round(rate), p50_ns=1e9 / rate, unit="ns per book message",
                                budget_ns=1e9 / BUDGET_FANOUT if role == "kmm" else None)
    print(f"\nsim-fanout {role}: {rate:,.0f} messages/s (budget {BUDGET_FANOUT:,}/s)")
    if role == "kmm":
        assert rate >= BUDGET_FANOUT, f"fan-out {rate:,.0f}/s is below the {BUDGET_FANOUT:,}/s budget"


@pytest.mark.parametrize("role", ["kmm", "baseline"])
def test_bench_sim_match(benchmark, role):
    benchmark.group = "sim: orders matched, per order (median of 3 runs)"
    benchmark.extra_info.update({"role": role, "ops": MATCH_N})
    results = []

    def run():
        if role == "kmm":
            matched, dt, fills = asyncio.run(_match())
            assert fills == 2 * matched
        else:
            matched, dt = _naive_match()
        results.append(matched / dt)
        return matched

    matched = benchmark.pedantic(run, rounds=3, iterations=1)
    assert matched == MATCH_N
    rate = sorted(results)[len(results) // 2]
    benchmark.extra_info.update(orders_matched_per_s=round(rate), p50_ns=1e9 / rate, unit="ns per order matched",
                                budget_ns=1e9 / BUDGET_MATCH if role == "kmm" else None)
    print(f"\nsim-match {role}: {rate:,.0f} orders matched/s (budget {BUDGET_MATCH:,}/s)")
    if role == "kmm":
        assert rate >= BUDGET_MATCH, f"matching {rate:,.0f}/s is below the {BUDGET_MATCH:,}/s budget"
