"""End to end: restart recovery, dry run, user cancel, 100 concurrent executions under the basic
rate tier, and the compare table/chart, all against the in-process simulator."""

from __future__ import annotations

import argparse
import asyncio
import io
import time

import pytest

from kmm.config import load_config
from kmm.engine.risk import RiskLimits
from kmm.execution import Action, ExecutionRequest
from kmm.execution.cli import run_execute
from kmm.execution.compare import CompareError, format_table, run_compare, summarize, write_chart
from kmm.execution.driver import ExecutionService
from kmm.record.store import StoreReader
from kmm.sim import MarketSpec, SimConfig, SimExchange

from tests.execution.simenv import THICK_ASKS, THICK_BIDS, build_book, connector, truth

T = "KXE-26-A"
LIMITS = RiskLimits(max_open_orders_total=500, max_open_orders_per_market=500, max_position=1_000_000,
                    max_total_position=10_000_000, max_order_notional=100_000_000, max_order_size=100_000)


async def _abandon(svc: ExecutionService) -> None:
    """What a crash leaves: connections gone, nothing cancelled, the store closed as it was."""
    svc._timer_task.cancel()
    for t in list(svc._tasks):
        t.cancel()
    await svc.ws.close()
    await svc.rest.close()
    await asyncio.get_running_loop().run_in_executor(None, svc.store.close)
    svc.started = False


async def test_execution_running_when_kmm_stopped_has_its_orders_cancelled_on_next_start(tmp_path):
    path = tmp_path / "kmm.sqlite"
    async with SimExchange(SimConfig(seed=1, flow="off", markets=[MarketSpec(T)])) as sim:
        key, pem = sim.create_key()
        maker, _ = sim.create_key(balance="1000000")
        build_book(sim, maker, T, THICK_ASKS, THICK_BIDS)
        conn = connector(sim, key, pem)
        svc = ExecutionService(conn, store=path, limits=LIMITS)
        await svc.start()
        # a passive bid below the best ask rests until its 300 s timeout
        h = await svc.submit(ExecutionRequest(T, Action.BUY_YES, 500, 4900, algo="simple",
                                              params={"timeout_s": 300}))
        for _ in range(200):
            if h.live_children and h.live_children[0].status == "resting":
                break
            await asyncio.sleep(0.01)
        assert truth(sim, key, h.execution_id).resting == 1
        await _abandon(svc)
        assert [r.execution_id for r in StoreReader(path).open_executions()] == [h.execution_id]

        async with ExecutionService(conn, store=path, limits=LIMITS) as svc2:
            assert svc2.recovered == [h.execution_id]
        assert truth(sim, key, h.execution_id).resting == 0
        reader = StoreReader(path)
        assert reader.open_executions() == []
        rec = reader.executions()[0]
        assert rec.status == "canceled" and "interrupted" in rec.reason and rec.ended_ns is not None
        assert [k.status for k in reader.execution_orders(h.execution_id)] == ["canceled"]


async def test_user_cancel_ends_execution_with_no_child_resting(tmp_path):
    async with SimExchange(SimConfig(seed=1, flow="off", markets=[MarketSpec(T)])) as sim:
        key, pem = sim.create_key()
        maker, _ = sim.create_key(balance="1000000")
        build_book(sim, maker, T, THICK_ASKS, THICK_BIDS)
        async with ExecutionService(connector(sim, key, pem), limits=LIMITS) as svc:
            h = await svc.submit(ExecutionRequest(T, Action.SELL_YES, 1000, 5600, algo="adaptive",
                                                  params={"timeout_s": 300}))
            for _ in range(200):
                if truth(sim, key, h.execution_id).resting:
                    break
                await asyncio.sleep(0.01)
            await h.cancel()
            m = await h.wait(10)
        assert m.end_reason == "cancelled" and m.filled_size == 0
        assert truth(sim, key, h.execution_id).resting == 0
        assert svc.stop_verified is True


def _cli_args(sim: SimExchange, key: str, keyfile, **kw) -> argparse.Namespace:
    base = dict(config=None, env=None, allow_prod=False, rest_url=sim.rest_url, ws_url=sim.ws_url,
                api_key_id=key, private_key=str(keyfile), set=[], market=T, action="buy-yes", size="10",
                limit="0.52", price=None, algo="capped", edge=None, confidence=None, param=[], timeout=None,
                dry_run=False, store=None, view="plain")
    base.update(kw)
    return argparse.Namespace(**base)


async def test_dry_run_prints_decision_and_sends_no_order(tmp_path):
    async with SimExchange(SimConfig(seed=1, flow="off", markets=[MarketSpec(T)])) as sim:
        key, pem = sim.create_key()
        maker, _ = sim.create_key(balance="1000000")
        build_book(sim, maker, T, THICK_ASKS, THICK_BIDS)
        keyfile = tmp_path / "key.pem"
        keyfile.write_bytes(pem)
        keyfile.chmod(0o600)
        args = _cli_args(sim, key, keyfile, dry_run=True, algo="walker")
        out = io.StringIO()
        cfg = load_config(None, environ={}, cli={})
        rc = await run_execute(cfg, args, True, out)
        text = out.getvalue()
        assert rc == 0
        assert "DRY RUN: buy-yes 10.00 KXE-26-A" in text and "nothing was sent" in text
        assert sim.orders(key) == []
        assert sim.stats.get("orders_placed", 0) == len(sim.orders(maker))

        # the same command without --dry-run does trade, and reports the metrics
        out = io.StringIO()
        args = _cli_args(sim, key, keyfile, store=str(tmp_path / "x.sqlite"))
        assert await run_execute(cfg, args, True, out) == 0
        assert "filled               10.00 / 10.00 contracts (100.0%)" in out.getvalue()
        assert sum(f["count"] for f in sim.fills(key)) == 1000


async def test_hundred_concurrent_executions_stay_within_rate_limits_and_targets(tmp_path):
    markets = [MarketSpec(f"KXL-26-{i}") for i in range(4)]
    async with SimExchange(SimConfig(seed=2, flow="off", rate_tier="basic", markets=markets)) as sim:
        key, pem = sim.create_key(balance="100000")
        maker, _ = sim.create_key(balance="1000000")
        for m in markets:
            build_book(sim, maker, m.ticker, [(5000, 30000), (5100, 30000)], [(4800, 30000)])
        algos = ["simple", "capped", "vwslice", "walker", "slice"]
        reqs = [ExecutionRequest(markets[i % 4].ticker, Action.BUY_YES, 100 * (1 + i % 3), 5100,
                                 algo=algos[i % len(algos)], params={"timeout_s": 60})
                for i in range(100)]
        t0 = time.monotonic()
        async with ExecutionService(connector(sim, key, pem), limits=LIMITS, store=tmp_path / "k.sqlite") as svc:
            handles = [await svc.submit(r) for r in reqs]
            metrics = await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 60)
            elapsed = time.monotonic() - t0
            limiter = svc.rest.limiter
            granted = limiter.granted()
        assert svc.stop_verified is True
        assert all(h.done for h in handles)
        for h, m in zip(handles, metrics):
            t = truth(sim, key, h.execution_id)
            assert m.filled_size == t.filled <= h.request.size
            assert all(p <= 5100 for p in t.prices)
            assert t.resting == 0
        assert sum(m.filled_size for m in metrics) == sum(r.size for r in reqs)  # deep book: all filled
        # no 429 storm: the client limiter kept the writes inside the tier's budget
        assert sim.stats["rest_429"] <= 3
        assert granted["place"] >= 100
        tokens = 10 * (svc.calls["place"] + svc.calls["amend"] + svc.calls["decrease"]) + 2 * svc.calls["cancel"]
        assert tokens <= 200 + 100 * elapsed + 20, (tokens, elapsed)
        # 100+ places at 10 tokens with 100 tokens/s and a 200-token burst cannot be done in under ~8 s
        assert elapsed >= (10 * svc.calls["place"] - 200) / 100 * 0.9


async def test_compare_prints_table_and_writes_png_or_says_matplotlib_is_missing(tmp_path):
    results = await run_compare(["capped", "walker"], runs=1, seed=1, size=2000, scale=20.0, sim_seconds=20.0)
    assert {(r.scenario, r.algo) for r in results} == {(s, a) for s in ("thin", "thick")
                                                       for a in ("capped", "walker")}
    for r in results:
        assert 0 <= r.metrics.filled_size <= 2000 and r.api_calls >= 1
    summary = summarize(results)
    table = format_table(summary, 1)
    assert "fill rate %" in table and "thick     walker" in table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(CompareError, match="pip install 'kmm\\[plot\\]'"):
            write_chart(summary, tmp_path / "c.png")
        return
    png = write_chart(summary, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_without_matplotlib_fails_with_install_instruction(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    summary = {("thin", "capped"): {"fill rate %": (50.0, 1.0)}}
    with pytest.raises(CompareError, match="pip install 'kmm\\[plot\\]'"):
        write_chart(summary, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
