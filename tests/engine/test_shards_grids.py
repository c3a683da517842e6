"""The engine on late-2026 Kalshi, end to end against the in-process ``kmm sim``: refusing to start on an
unfunded shard (kmm run exits 2 with the transfer to make), quoting on two shards at once with a clean
stop in every market, and quoting a market on each of the twelve price grids, on-grid, with nothing left
resting after the stop."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kmm._core.grid import Grid
from kmm.cli import exits
from kmm.kalshi.rest import ShardBalanceError
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import MarketSpec, grid_markets

from .test_live import Run, engine_against, resting, until

pytestmark = pytest.mark.slow

S0 = MarketSpec("KXSHZERO-26-A", fair_value=0.50)
S1 = MarketSpec("KXSHONE-26-A", exchange_index=1, price_level_structure="center_deci_edge_centi_cent",
                fair_value=0.40)


@contextlib.asynccontextmanager
async def engine_on(tmp_path: Path, specs: list[MarketSpec] | str, *, balance: str = "1000.00",
                    shard_balances: dict[int, str] | None = None, wait_quoting: bool = True,
                    settings: dict[str, str] | None = None) -> AsyncIterator[Run]:
    async with SimExchange(SimConfig(seed=5, flow="busy", speed=2.0, rate_tier="off", markets=specs)) as sim:
        tickers = [m.ticker for m in sim.cfg.market_specs()] if isinstance(specs, str) else [m.ticker for m in specs]
        key_id, pem = sim.create_key(balance=balance, shard_balances=shard_balances)
        ready = (lambda e: e.quoting and e.orders_sent > 0) if wait_quoting else None
        async with engine_against(sim, key_id, pem, tmp_path, tickers, settings=settings, ready=ready, ready_s=20,
                                  stop_errors=(ShardBalanceError,)) as run:
            yield run


def quoted_tickers(run: Run) -> set[str]:
    return {o["ticker"] for o in resting(run.sim, run.key_id)}


# ---- per-shard balance at start ------------------------------------------------------------------

async def test_engine_refuses_to_start_when_a_markets_shard_holds_no_cash(tmp_path):
    async with engine_on(tmp_path, [S0, S1], balance="1000.00", wait_quoting=False) as run:
        with pytest.raises(ShardBalanceError) as err:
            await asyncio.wait_for(asyncio.shield(run.task), 20)
        msg = str(err.value)
        # names the short shard, its market, and the exact transfer to run
        assert "shard 1" in msg and S1.ticker in msg
        assert "--from-shard 0 --to-shard 1" in msg and "kmm.kalshi.transfer" in msg
        # refused before anything was sent: not one order reached the exchange
        assert run.engine.orders_sent == 0 and run.sim.orders(run.key_id) == []
        assert not run.engine.quoting


async def test_engine_starts_when_each_shard_holds_one_quote_at_the_worst_price(tmp_path):
    # need = quote_size 5 contracts x $1.00 = $5.00 per market on its shard; exactly that is enough
    async with engine_on(tmp_path, [S0, S1], balance="5.00", shard_balances={1: "5.00"}) as run:
        assert run.engine.quoting
    assert run.summary is not None and run.summary.verified_flat_orders


async def test_kmm_run_exits_2_with_the_transfer_command_when_a_shard_is_unfunded(tmp_path):
    from tests.cli.conftest import clean_env
    async with SimExchange(SimConfig(seed=5, flow="off", rate_tier="off", markets=[S0, S1])) as sim:
        key_id, pem = sim.create_key(balance="100.00")      # nothing on shard 1
        keyfile = tmp_path / "k.pem"
        keyfile.write_bytes(pem)
        keyfile.chmod(0o600)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kmm", "run", "--env", "sim", "--rest-url", sim.rest_url, "--ws-url",
            sim.ws_url, "--api-key-id", key_id, "--private-key", str(keyfile),
            "--markets", f"{S0.ticker},{S1.ticker}", "--duration", "5", "--out", str(tmp_path / "out"),
            "--view", "off", cwd=tmp_path, env=clean_env(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        text = err.decode()
        assert proc.returncode == exits.USAGE, out.decode() + text
        assert "shard 1" in text and "--from-shard 0 --to-shard 1" in text
        assert sim.orders(key_id) == []


# ---- two shards at once --------------------------------------------------------------------------

async def test_two_shard_run_quotes_on_both_and_stops_clean_in_every_market(tmp_path):
    async with engine_on(tmp_path, [S0, S1], balance="200.00", shard_balances={1: "200.00"}) as run:
        await until(lambda: quoted_tickers(run) == {S0.ticker, S1.ticker}, 20, "quotes resting on both shards")
        lim = run.engine.session.rest.limiter
        # the shard-1 market's single writes billed shard 1's own bucket (made on its first use), with
        # the full budget; no write named another shard
        assert set(lim._shard_writes) == {1}
        assert lim.shard_bucket(1).capacity == lim.write.capacity
    s = run.summary
    assert s is not None and s.verified_flat_orders and s.resting_after_stop == 0
    for t in (S0.ticker, S1.ticker):
        assert resting(run.sim, run.key_id, t) == [], t
    # every order sat on its market's shard and grid
    shard_of = {S0.ticker: 0, S1.ticker: 1}
    grids = {S0.ticker: Grid(S0.price_level_structure), S1.ticker: Grid(S1.price_level_structure)}
    orders = run.sim.orders(run.key_id)
    assert {o["ticker"] for o in orders} == {S0.ticker, S1.ticker}
    for o in orders:
        assert grids[o["ticker"]].is_valid(o["price"]), o
    acct = run.sim.engine.accounts[run.key_id]
    for o in acct.orders.values():
        assert o.market.shard == shard_of[o.market.ticker]


# ---- every grid ----------------------------------------------------------------------------------

async def test_a_market_on_each_of_the_twelve_grids_is_quoted_on_grid_and_stopped_clean(tmp_path):
    specs = grid_markets()
    assert len({m.price_level_structure for m in specs}) == 12
    async with engine_on(tmp_path, "all-grids", balance="2000.00") as run:
        await until(lambda: quoted_tickers(run) == {m.ticker for m in specs}, 30, "quotes in all twelve markets")
        grids = {m.ticker: Grid(m.price_level_structure) for m in specs}
        live = resting(run.sim, run.key_id)
        for o in live:
            assert grids[o["ticker"]].is_valid(o["price"]), o
        by_ticker: dict[str, list[dict[str, Any]]] = {}
        for o in live:
            by_ticker.setdefault(o["ticker"], []).append(o)
        for t, os_ in by_ticker.items():
            bids = [o["price"] for o in os_ if o["side"] == "bid"]
            asks = [o["price"] for o in os_ if o["side"] == "ask"]
            if bids and asks:
                assert max(bids) < min(asks), (t, bids, asks)
    s = run.summary
    assert s is not None and s.verified_flat_orders and s.resting_after_stop == 0
    for m in specs:
        assert resting(run.sim, run.key_id, m.ticker) == [], m.ticker
    for o in run.sim.orders(run.key_id):    # every order ever sent sat on its grid
        assert Grid(next(m for m in specs if m.ticker == o["ticker"]).price_level_structure).is_valid(o["price"]), o


# ---- a moved close time --------------------------------------------------------------------------

async def test_a_moved_close_time_moves_tau_the_reduce_only_window_and_the_stop_before_close(tmp_path):
    import time
    t = S0.ticker
    async with engine_on(tmp_path, [S0]) as run:
        await until(lambda: bool(resting(run.sim, run.key_id, t)), 20, "quotes resting")
        eng, pipe = run.engine, run.engine.pipes[t]
        assert pipe.core.tau_s == pytest.approx(3600.0)         # far close: the 1 h horizon caps tau
        assert eng.gate.reduce_only_reason(t, 0) == ""
        # 30 min away: tau counts to the close now, still two-sided
        close = int(time.time()) + 1800
        run.sim.set_close_time(t, close)
        await until(lambda: eng.gate.markets[t].close_time_ns == close * 1_000_000_000, 5, "the gate's close")
        assert pipe.core.close_time_ns == close * 1_000_000_000 and pipe.info.close_time_ns == close * 1_000_000_000
        assert 1790 <= pipe.core.tau_s <= 1800
        assert eng.gate.reduce_only_reason(t, 0) == ""
        # 5 min away: inside reduce_only_before_close (600 s)
        run.sim.set_close_time(t, int(time.time()) + 300)
        await until(lambda: eng.gate.reduce_only_reason(t, 0) == "market close near", 5, "reduce-only")
        assert pipe.core.tau_s <= 300
        # 30 s away: inside stop_before_close (60 s): the quotes come off at once and none is placed again
        t0 = time.monotonic()
        moved_ms = time.time_ns() // 1_000_000
        run.sim.set_close_time(t, int(time.time()) + 30)
        await until(lambda: not resting(run.sim, run.key_id, t), 5, "quotes pulled")
        pulled_s = time.monotonic() - t0
        print(f"close moved inside the stop window: quotes pulled in {pulled_s:.3f} s")
        assert pulled_s < 2.0
        await asyncio.sleep(1.5)
        assert resting(run.sim, run.key_id, t) == []
        assert [o for o in run.sim.orders(run.key_id) if o["created_ms"] > moved_ms + 200] == []
        assert len(eng.session.events_of("close_moved", t)) == 3
    assert run.summary is not None and run.summary.verified_flat_orders
