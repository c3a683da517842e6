"""What a run says when it never reached the exchange, and when the session order group could not be
deleted at stop: only the truth, in the summary."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kmm.config import load_config
from kmm.engine.live import Engine, EngineOptions
from kmm.errors import RateLimited
from kmm.kalshi import ConnectorConfig
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import default_markets
from tests.cli.conftest import clean_env

pytestmark = pytest.mark.slow

FALSE_ALARMS = ("NOT verified", "DISAGREES", "stop sequence failed", "stop sweep attempt", "CRITICAL kmm.engine",
                "check the exchange for resting orders")


def _key(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kmm", "run", "--view", "plain", "--duration", "5", *args],
                          cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=120)


def _no_false_alarms(out: Path, p: subprocess.CompletedProcess[str]) -> None:
    text = (out / "ops.log").read_text() + p.stdout + p.stderr
    for alarm in FALSE_ALARMS:
        assert alarm not in text, alarm
    assert "Traceback" not in text
    assert "did not start" in (out / "ops.log").read_text() and "nothing was sent" in (out / "ops.log").read_text()
    # no empty tape, store, capture or summary that would read as a run: only the log that says why
    assert sorted(f.name for f in out.iterdir()) == ["ops.log"]


def test_no_server_there_is_one_error_and_no_false_alarm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "o"
    p = _run(tmp_path, "--rest-url", f"http://127.0.0.1:{port}/trade-api/v2", "--ws-url",
             f"ws://127.0.0.1:{port}/trade-api/ws/v2", "--api-key-id", "abc", "--private-key", str(_key(tmp_path)),
             "--markets", "KXSIMA-26-A", "--out", str(out))
    assert p.returncode == 1
    _no_false_alarms(out, p)


def test_a_key_the_exchange_refuses_is_one_error_and_no_false_alarm(tmp_path):
    async def main() -> subprocess.CompletedProcess[str]:
        async with SimExchange(SimConfig(seed=1, flow="off", markets=1)) as sim:
            sim.create_key()          # the sim knows a key, but not ours
            return await asyncio.to_thread(
                _run, tmp_path, "--rest-url", sim.rest_url, "--ws-url", sim.ws_url, "--api-key-id", "not-a-key-id",
                "--private-key", str(_key(tmp_path)), "--markets", sim.tickers[0], "--out", str(tmp_path / "o"))
    p = asyncio.run(main())
    assert p.returncode == 1
    assert "401" in p.stderr or "auth" in p.stderr.lower()
    _no_false_alarms(tmp_path / "o", p)


@pytest.mark.parametrize("failures, deleted", [(1, True), (99, False)])
async def test_the_session_order_group_is_deleted_at_stop_or_the_summary_says_it_was_not(tmp_path, failures, deleted):
    known = {m.ticker: m for m in default_markets()}
    async with SimExchange(SimConfig(seed=3, flow="busy", speed=2.0, rate_tier="off",
                                     markets=[known["KXSIMA-26-A"]])) as sim:
        key_id, pem = sim.create_key()
        conn = ConnectorConfig(env="sim").with_server(sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=pem)
        cfg = load_config(None, environ={}, cli={"run.markets": "KXSIMA-26-A", "strategy.quote_size": "5",
                                                 "risk.max_order_size": "30", "strategy.max_position": "30"})
        engine = Engine(cfg, conn, venue="sim (test)", options=EngineOptions(view="off", order_group_limit=10_000))
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop, duration_s=30))
        deadline = asyncio.get_running_loop().time() + 20
        while not (engine.group_id and engine.orders_sent):
            assert asyncio.get_running_loop().time() < deadline, "never quoted"
            await asyncio.sleep(0.05)
        group = engine.group_id
        assert engine.rest is not None
        real = engine.rest.delete_order_group
        calls = []

        async def flaky(gid: str) -> None:
            calls.append(gid)
            if len(calls) <= failures:
                raise RateLimited(429, "too_many_requests", "DELETE order group: rate limited")
            await real(gid)
        engine.rest.delete_order_group = flaky   # type: ignore[method-assign]
        stop.set()
        summary = await task
        assert summary.verified_flat_orders and summary.resting_after_stop == 0
        text = summary.render()
        if deleted:
            assert len(calls) == 2 and "order group" not in text
        else:
            assert len(calls) == 4
            assert f"note: the session order group {group} could not be deleted" in text and "429" in text
