"""kmm run --paper: the live engine quotes on the sim's live feed, the fill simulator fills, and no
order ever reaches the exchange."""

from __future__ import annotations

import asyncio

import pytest

from kmm.config import load_config
from kmm.engine.live import EngineOptions
from kmm.kalshi import ConnectorConfig
from kmm.record import Recorder
from kmm.research.paper import PaperEngine, PaperRest
from kmm.research.runrecord import write_run_outputs
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import default_markets

pytestmark = pytest.mark.slow

MARKETS = ("KXSIMA-26-A", "KXSIMM-26-M")


async def test_paper_engine_fills_on_the_live_feed_and_sends_no_order(tmp_path):
    known = {m.ticker: m for m in default_markets()}
    async with SimExchange(SimConfig(seed=5, flow="busy", speed=2.0, rate_tier="off",
                                     markets=[known[t] for t in MARKETS])) as sim:
        key_id, pem = sim.create_key()
        conn = ConnectorConfig(env="sim").with_server(sim.rest_url, sim.ws_url, api_key_id=key_id,
                                                      private_key_pem=pem)
        cfg = load_config(None, environ={}, cli={"run.markets": ",".join(MARKETS), "strategy.quote_size": "5"})
        recorder = Recorder.open(tmp_path / "out", console=False, logging_enabled=False)
        engine = PaperEngine(cfg, conn, recorder=recorder, venue="PAPER sim (test)",
                             options=EngineOptions(view="off", reconcile_interval_s=2.0, order_group_limit=0))
        stop = asyncio.Event()
        task = asyncio.ensure_future(engine.run(stop))
        await asyncio.sleep(8.0)
        stop.set()
        summary = await asyncio.wait_for(task, 30)
        s = write_run_outputs(engine, recorder, 0, mode="paper")
        recorder.close()
        # nothing of ours ever reached the exchange
        assert sim.orders(key_id) == [] and sim.orders(key_id, status="resting") == []
        assert isinstance(engine.rest, PaperRest) and engine.rest.writes > 0
        with pytest.raises(AttributeError, match="paper mode"):
            engine.rest.cancel_all          # any other write path is refused, not passed through
    assert engine.fills > 0 and engine.orders_sent > 0
    assert summary.verified_flat_orders and summary.portfolio_agrees      # the paper account agrees
    assert s is not None and s["mode"] == "paper" and s["fills"] == engine.fills
    assert engine.sim is not None and engine.sim.stats.maker_fills == engine.fills
