"""The live console in a real terminal: tmux runs ``kmm run`` in an 80x24 window, capture-pane reads the
screen, send-keys presses the console's keys."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmm.cli.control import request
from tests.cli.conftest import clean_env

pytestmark = pytest.mark.slow


def _tmux() -> str:
    found = shutil.which("tmux")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "tmux"], capture_output=True, timeout=300)
        found = shutil.which("tmux")
        if found:
            return found
    pytest.skip("tmux is not installed and cannot be installed here (apt-get install tmux)")


class Term:
    def __init__(self, tmp_path: Path, cols: int, rows: int, command: str) -> None:
        self.tmux = _tmux()
        self.sock = f"kmm-test-{os.getpid()}-{cols}x{rows}"
        self.env = clean_env(tmp_path)
        self.env["TERM"] = "xterm-256color"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items() if k in ("HOME", "PYTHONPATH", "PATH"))
        self._run("new-session", "-d", "-s", "k", "-x", str(cols), "-y", str(rows),
                  f"cd {shlex.quote(str(tmp_path))} && env {exports} {command}; echo EXIT=$?; sleep 600")

    def _run(self, *args: str) -> str:
        return subprocess.run([self.tmux, "-L", self.sock, *args], env=self.env, capture_output=True,
                              text=True, timeout=20, check=True).stdout

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "k")

    def keys(self, *keys: str) -> None:
        self._run("send-keys", "-t", "k", *keys)

    def wait(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.sock, "kill-server"], capture_output=True, timeout=20)


def _status(tmp_path: Path, out: Path) -> dict:
    return request(out, "status")["status"]


def test_live_console_in_80x24_with_keys_for_kill_switch_resume_and_stop(tmp_path):
    out = tmp_path / "run"
    t = Term(tmp_path, 80, 24, f"{shlex.quote(sys.executable)} -m kmm run --duration 120 --out {out} "
                               "--set sim.flow=busy")
    try:
        s = t.wait("kill switch armed", 60)
        s = t.wait("*10", 20)                       # our orders marked on the ladders
        lines = s.rstrip("\n").split("\n")
        assert len(lines) <= 24 and max(len(x) for x in lines) <= 80
        head = lines[0]
        pid = _status(tmp_path, out)["pid"]
        assert f"pid {pid}" in head and "sim (in-process)" in head and "left" in head and head.startswith("kmm live")
        assert f"out {out}"[:78] in lines[1]
        for word in ("market", "our bid", "our ask", "room", "KXSIMA-26-A", "open orders", "log"):
            assert word in s, word
        assert lines[-1].startswith("k kill switch  r resume  q stop")

        t.keys("k")
        s = t.wait("kill switch paused", 10)        # tripped, swept, paused
        deadline = time.monotonic() + 5
        while _status(tmp_path, out)["open_orders"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status(tmp_path, out)["open_orders"] == 0
        t.keys("r")
        t.wait("kill switch armed", 10)

        t.keys("q")
        s = t.wait("EXIT=", 60)
        assert "EXIT=0" in s
        assert "orders resting after stop: 0 (verified over REST)" in s   # back on the normal screen
        log = (out / "ops.log").read_text()
        assert "operator (key): kill switch tripped by hand" in log and "operator (key): stop" in log
    finally:
        t.close()


def test_a_run_is_stopped_by_sigterm_while_the_console_shows(tmp_path):
    out = tmp_path / "run"
    t = Term(tmp_path, 120, 40, f"{shlex.quote(sys.executable)} -m kmm run --duration 120 --out {out}")
    try:
        t.wait("kill switch armed", 60)
        s = t.screen()
        assert len(s.rstrip("\n").split("\n")) <= 40
        os.kill(_status(tmp_path, out)["pid"], 15)
        s = t.wait("EXIT=", 60)
        assert "EXIT=0" in s and "verified over REST" in s
    finally:
        t.close()
