"""kmm record against the embedded exchange: frames, market definitions, a lost connection recorded
as a gap, and the recording replays."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kmm
from kmm.config import load_config
from kmm.record.capture import GAP_TYPE, capture_files, read_capture, read_market_defs
from kmm.research.backtest import Backtest, BacktestOptions
from kmm.research.record import record
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import default_markets

pytestmark = pytest.mark.slow

MARKETS = ("KXSIMA-26-A", "KXSIMM-26-M")


async def test_record_over_urls_writes_frames_definitions_and_a_gap_then_replays(tmp_path):
    specs = [m for m in default_markets() if m.ticker in MARKETS]
    async with SimExchange(SimConfig(seed=3, flow="busy", markets=specs)) as sim:
        key_id, pem = sim.create_key()
        key = tmp_path / "key.pem"
        key.write_bytes(pem)
        cfg = load_config(None, environ={}, cli={"run.markets": ",".join(MARKETS)})
        args = argparse.Namespace(rest_url=sim.rest_url, ws_url=sim.ws_url, api_key_id=key_id,
                                  private_key=str(key), env=None)
        out = tmp_path / "rec"
        task = asyncio.ensure_future(record(cfg, args, True, out, duration_s=4.0, rotate_bytes=0, rotate_s=1.5))
        await asyncio.sleep(1.5)
        assert sim.faults.drop_ws_connections() >= 1
        res = await asyncio.wait_for(task, 30)
    assert res["gaps"] == 1 and res["frames"] > 100 and res["markets"] == list(MARKETS)
    files = capture_files(out)
    assert len(files) >= 2                                   # rotated every 1.5 s
    frames = [r.frame for f in files for r in read_capture(f)]
    assert sum(1 for f in frames if GAP_TYPE.encode() in f[:30]) == 1
    assert sum(1 for f in frames if b'"orderbook_snapshot"' in f) >= 2 * len(MARKETS)   # again after the gap
    assert any(b'"type":"trade"' in f for f in frames) and any(b'"type":"ticker"' in f for f in frames)
    assert not any(b'"fill"' in f[:20] or b'"user_order"' in f[:20] for f in frames)  # no user channels
    defs = read_market_defs(out)
    assert set(defs) == set(MARKETS)
    assert defs["KXSIMM-26-M"]["maker_rate_e6"] == 17_500 and defs["KXSIMA-26-A"]["maker_rate_e6"] == 0
    assert defs["KXSIMA-26-A"]["taker_rate_e6"] == 70_000 and defs["KXSIMA-26-A"]["price_ranges"]
    b = Backtest([out], load_config(None, environ={}, cli={}), None, options=BacktestOptions())
    s = b.run()
    assert set(s["markets"]) == set(MARKETS)
    assert s["details"]["gaps"] >= 1 and s["book_messages"] > 50 and s["orders_sent"] > 0


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env["HOME"] = str(tmp_path)
    env["PYTHONPATH"] = str(Path(kmm.__file__).resolve().parents[1])      # the kmm under test
    return env


def test_kmm_record_cli_against_the_in_process_sim(tmp_path):
    out = tmp_path / "rec"
    p = subprocess.run([sys.executable, "-m", "kmm", "record", "--duration", "2", "--out", str(out),
                        "--markets", "KXSIMA-26-A"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=_env(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "0 gap(s)" in p.stdout and (out / "markets.json").exists() and (out / "capture.bin.gz").exists()
    p2 = subprocess.run([sys.executable, "-m", "kmm", "backtest", "--capture", str(out), "--out",
                         str(tmp_path / "bt"), "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=60, env=_env(tmp_path))
    assert p2.returncode == 0, p2.stderr
    assert '"mode": "backtest"' in p2.stdout and (tmp_path / "bt" / "summary.json").exists()
