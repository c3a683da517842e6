"""``kmm run`` and ``kmm probe`` as a user runs them: subprocesses against the embedded exchange."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env

from kmm.record.store import StoreReader
from kmm.record.tape import read_tape

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path)


def _kmm(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmm", *args]


def test_kmm_run_without_credentials_trades_on_the_embedded_exchange_and_stops_clean(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(_kmm("run", "--duration", "6", "--out", str(out), "--view", "plain",
                            "--set", "sim.flow=busy"),
                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "embedded exchange" in p.stderr
    assert "kmm run summary" in p.stdout and "verified over REST" in p.stdout
    assert "agrees to the cent" in p.stdout
    for name in ("ops.log", "tape.csv", "kmm.sqlite"):
        assert (out / name).stat().st_size > 0, name
    rows = list(read_tape(out / "tape.csv"))
    assert any(r.event == "decision" for r in rows)
    fills = StoreReader(out / "kmm.sqlite").fills()
    assert len({f.trade_id for f in fills}) == len(fills)
    assert "PRIVATE KEY" not in (out / "ops.log").read_text()


def test_kmm_run_exits_zero_after_a_verified_cancel_sweep_on_sigint(tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen(_kmm("run", "--out", str(out), "--view", "off"), cwd=tmp_path, env=_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        log = out / "ops.log"
        while time.monotonic() < deadline:
            if log.exists() and "quoting" in log.read_text():
                break
            time.sleep(0.2)
        time.sleep(2.0)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stdout + stderr
    assert "orders resting after stop: 0 (verified over REST)" in stdout
    assert "verified over REST that no order rests" in (out / "ops.log").read_text()


def test_kmm_run_refuses_prod_without_the_opt_in(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("not used")
    key.chmod(0o600)
    p = subprocess.run(_kmm("run", "--env", "prod", "--api-key-id", "abc", "--private-key", str(key),
                            "--markets", "KXA", "--duration", "1"),
                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "allow" in p.stderr and "prod" in p.stderr


def test_kmm_probe_places_and_cancels_one_order_with_latencies(tmp_path):
    p = subprocess.run(_kmm("probe"), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    for step in ("exchange status", "place 1 bid @ lowest price", "confirm order id", "cancel", "confirm cancel"):
        assert step in p.stdout
    assert "status=canceled" in p.stdout and p.stdout.rstrip().endswith("kmm probe: OK")
