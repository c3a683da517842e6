"""Operating a running ``kmm run``: the control socket (status, kill switch, resume, stop) and the
Prometheus endpoint, against a real run on the embedded exchange."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env

from kmm.cli.control import request, socket_path

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path)


def _kmm(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmm", *args]


def _ctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_kmm(*args), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=30)


def _status(tmp_path: Path, out: Path) -> dict:
    """Straight through the socket (cheap enough to poll); the commands are run as a user runs them below."""
    reply = request(out, "status")
    assert reply["ok"], reply
    return reply["status"]


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _value(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([-0-9.e+]+)$", text, re.M)
    assert m, f"{name} not in metrics"
    return float(m.group(1))


def test_status_kill_switch_resume_stop_through_the_control_socket_and_metrics(tmp_path):
    out = tmp_path / "run"
    err = tmp_path / "stderr.txt"
    with err.open("w") as ef:
        p = subprocess.Popen(_kmm("run", "--out", str(out), "--view", "off", "--duration", "90",
                                  "--metrics-port", "0", "--set", "sim.flow=busy"),
                             cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=ef, text=True)
    try:
        _wait(lambda: (out / "control.sock").exists() or (out / "control.sock.path").exists(), 60,
              "the control socket")
        sock = socket_path(out)   # in the run folder, or (a long path) a private temp folder it names
        st = sock.stat()
        if sock.parent != out:
            assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        _wait(lambda: _status(tmp_path, out)["open_orders"] > 0, 30, "quotes")
        s = _status(tmp_path, out)
        assert s["pid"] == p.pid and s["venue"] == "sim (in-process)" and s["kill_switch"] == "armed"
        assert s["out"] == str(out) and s["mode"] == "live" and not s["stopping"]
        raw = _ctl(tmp_path, "status", str(out), "--json")
        assert raw.returncode == 0 and json.loads(raw.stdout)["status"]["pid"] == p.pid
        human = _ctl(tmp_path, "status", str(out))
        assert human.returncode == 0 and f"pid {p.pid}" in human.stdout and "kill switch: armed" in human.stdout

        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", err.read_text())
        assert m, err.read_text()
        port = int(m.group(1))
        text = _metrics(port)
        assert _value(text, 'kmm_orders_total{kind="create"}') > 0
        assert _value(text, f'kmm_run_info{{pid="{p.pid}",venue="sim (in-process)"}}') == 1.0
        assert _value(text, "kmm_elapsed_seconds") > 0
        assert _value(text, 'kmm_kill_switch{state="armed"}') == 1.0
        assert _value(text, 'kmm_frame_to_request_seconds_bucket{le="+Inf"}') > 0
        assert "kmm_position_contracts{" in text and 'kmm_pnl_dollars{kind="net"}' in text
        assert "kmm_write_pressure " in text and 'kmm_open_orders{ticker="KXSIMA-26-A"}' in text

        k = _ctl(tmp_path, "kill-switch", str(out))
        assert k.returncode == 0 and "kill switch tripped" in k.stdout
        t0 = time.monotonic()
        _wait(lambda: _status(tmp_path, out)["open_orders"] == 0, 5, "quotes pulled after the kill switch")
        pulled_s = time.monotonic() - t0
        assert pulled_s < 5
        print(f"quotes pulled {pulled_s:.2f} s after kmm kill-switch returned")
        assert _status(tmp_path, out)["kill_switch"] in ("tripped", "paused")   # paused once swept
        assert _value(_metrics(port), 'kmm_kill_switch{state="armed"}') == 0.0
        time.sleep(1.0)
        assert _status(tmp_path, out)["open_orders"] == 0      # paused: nothing new is placed

        r = _ctl(tmp_path, "resume", str(out))
        assert r.returncode == 0 and "re-armed" in r.stdout
        _wait(lambda: _status(tmp_path, out)["open_orders"] > 0, 15, "quotes again after resume")

        s = _ctl(tmp_path, "stop", str(out))
        assert s.returncode == 0 and "stopping" in s.stdout
        stdout, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stdout + err.read_text()
    assert "orders resting after stop: 0 (verified over REST)" in stdout
    log = (out / "ops.log").read_text()
    assert "operator (control socket): kill switch tripped by hand" in log and "operator (control socket): stop" in log
    assert not sock.exists() and not (out / "control.sock.path").exists()
    gone = _ctl(tmp_path, "status", str(out))
    assert gone.returncode == 4 and "no running kmm" in gone.stderr


def test_status_without_a_running_kmm_says_so_with_exit_4(tmp_path):
    p = _ctl(tmp_path, "status")
    assert p.returncode == 4 and "no running kmm" in p.stderr and "Traceback" not in p.stderr
    p = _ctl(tmp_path, "stop", str(tmp_path / "nope"))
    assert p.returncode == 2 and "not a folder" in p.stderr
