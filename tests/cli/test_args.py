"""Everything a new user can get wrong is refused before anything connects: exit 2, a message that
says what and what to do, no traceback, no output folder, nothing listening."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kmm.cli.args import out_dir, parse_markets
from kmm.config import load_config, unknown_environment
from kmm.errors import ConfigError
from tests.cli.conftest import clean_env


def kmm(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    e = clean_env(tmp_path)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "kmm", *args], cwd=tmp_path, env=e, capture_output=True, text=True,
                       timeout=timeout)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    return p


def _key(tmp_path: Path, mode: int = 0o600) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(mode)
    return path


def _no_output(tmp_path: Path) -> None:
    assert not (tmp_path / "kmm-out").exists(), "a refused run must not create an output folder"


def test_a_key_file_that_is_not_a_key_is_refused_before_anything_starts(tmp_path):
    bad = tmp_path / "notakey.pem"
    bad.write_text("not a key")
    bad.chmod(0o600)
    p = kmm(tmp_path, "run", "--api-key-id", "abc", "--private-key", str(bad), "--markets", "KXA-26-A")
    assert p.returncode == 2
    assert "notakey.pem" in p.stderr and "could not be loaded" in p.stderr
    assert "trading on Kalshi demo" in p.stderr          # the credentials chose the venue
    assert "embedded exchange" not in p.stderr
    _no_output(tmp_path)


def test_credentials_select_demo_by_default_and_prod_only_with_allow_prod(tmp_path):
    key = _key(tmp_path)
    p = kmm(tmp_path, "run", "--api-key-id", "abc", "--private-key", str(key))
    assert p.returncode == 2 and "trading on Kalshi demo" in p.stderr and "markets is empty" in p.stderr
    p = kmm(tmp_path, "run", "--api-key-id", "abc", "--private-key", str(key), "--allow-prod")
    assert p.returncode == 2 and "trading on Kalshi prod" in p.stderr and "markets is empty" in p.stderr
    p = kmm(tmp_path, "probe", "--api-key-id", "abc", "--private-key", str(key))
    assert p.returncode == 2 and "demo" in p.stderr
    p = kmm(tmp_path, "run", "--env", "sim", "--api-key-id", "abc", "--private-key", str(key))
    assert p.returncode == 2 and "--env sim" in p.stderr and "choose --env demo" in p.stderr
    p = kmm(tmp_path, "run", "--api-key-id", "abc")
    assert p.returncode == 2 and "add --private-key" in p.stderr
    _no_output(tmp_path)


def test_credentials_from_the_environment_select_demo_too(tmp_path):
    key = _key(tmp_path)
    p = kmm(tmp_path, "run", env={"KALSHI_API_KEY_ID": "abc", "KALSHI_PRIVATE_KEY_PATH": str(key)})
    assert p.returncode == 2 and "trading on Kalshi demo" in p.stderr


def test_the_key_permission_warning_reaches_the_terminal(tmp_path):
    key = _key(tmp_path, 0o644)
    p = kmm(tmp_path, "run", "--api-key-id", "abc", "--private-key", str(key))
    assert p.returncode == 2 and f"chmod 600 {key}" in p.stderr
    assert p.stderr.count("chmod 600") == 1


@pytest.mark.parametrize("argv, words", [
    (["run", "--markets", "KXSIMA-26-A,KXSIMA-26-A"], ["KXSIMA-26-A is listed twice"]),
    (["run", "--markets", "KXSIMA-26-A,,KXSIMB-26-B"], ["empty entry"]),
    (["run", "--markets", "kxsima-26-a"], ["upper case: KXSIMA-26-A"]),
    (["run", "--markets", "KXNOPE-99-Z"], ["KXNOPE-99-Z is not listed on kmm's embedded exchange", "KXSIMA-26-A"]),
    (["probe", "--market", "KXNOPE-99-Z"], ["KXNOPE-99-Z is not listed"]),
    (["run", "--rest-url", "http://127.0.0.1:9/trade-api/v2"], ["--rest-url needs --ws-url"]),
    (["probe", "--ws-url", "ws://127.0.0.1:9/trade-api/ws/v2"], ["--ws-url needs --rest-url"]),
    (["run", "--duration", "-3"], ["--duration -3"]),
    (["run", "--duration", "nan"], ["positive number of seconds"]),
    (["run", "--metrics-port", "99999"], ["--metrics-port 99999"]),
    (["run", "--set", "risk.max_los=3"], ["Did you mean 'max_loss'"]),
    (["run", "--set", "run.cpus=zero"], ["run.cpus = 'zero'", "taskset -c"]),
    (["run", "--set", "run.cpus=4095"], ["run.cpus = '4095': CPU 4095 is not available to kmm"]),
    (["run", "--set", "run.signer_cpus=1-0"], ["run.signer_cpus = '1-0'", "not a range"]),
    (["execute", "--market", "KXSIMA-26-A", "--action", "buy-yes", "--size", "0", "--limit", "0.5"],
     ["--size 0"]),
])
def test_bad_arguments_exit_2_before_any_connection(tmp_path, argv, words):
    p = kmm(tmp_path, *argv)
    assert p.returncode == 2, p.stderr
    for w in words:
        assert w in p.stderr
    assert "embedded exchange (kmm sim) in-process" not in p.stderr    # nothing was started
    _no_output(tmp_path)


def test_a_server_that_does_not_answer_is_one_clear_error_on_the_terminal(tmp_path):
    with socket.socket() as s:        # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = kmm(tmp_path, "run", "--rest-url", f"http://127.0.0.1:{port}/trade-api/v2",
            "--ws-url", f"ws://127.0.0.1:{port}/trade-api/ws/v2", "--out", str(tmp_path / "o"))
    assert p.returncode == 1
    assert f"Cannot connect to host 127.0.0.1:{port}" in p.stderr.splitlines()[-1]
    assert "resting" not in p.stdout + p.stderr and "DISAGREES" not in p.stdout + p.stderr


def test_every_run_gets_its_own_output_folder(tmp_path):
    cfg = load_config(None, environ={}, cli={"run.out_dir": str(tmp_path / "outs")})
    ns = argparse.Namespace(out=None)
    a, b, c = (out_dir(cfg, ns) for _ in range(3))
    assert len({a, b, c}) == 3 and all(d.is_dir() and not any(d.iterdir()) for d in (a, b, c))
    (a / "ops.log").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        out_dir(cfg, argparse.Namespace(out=str(a)))


def test_two_runs_started_together_write_two_folders(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "kmm", "run", "--duration", "2", "--view", "off"], cwd=tmp_path,
                              env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
    runs = sorted((tmp_path / "kmm-out").iterdir())
    assert len(runs) == 2
    for r in runs:
        assert (r / "ops.log").read_text().count("recording to") == 1
        assert not list(r.glob("capture.1*"))


def test_an_existing_out_folder_with_files_is_refused(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "ops.log").write_text("an earlier run")
    p = kmm(tmp_path, "run", "--out", str(tmp_path / "o"), "--duration", "1")
    assert p.returncode == 2 and "not an empty folder" in p.stderr
    assert (tmp_path / "o" / "ops.log").read_text() == "an earlier run"


def test_config_check_exits_as_kmm_run_does_for_the_same_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk]\nmax_los = 3\n")
    check = kmm(tmp_path, "config", "check", str(bad))
    run = kmm(tmp_path, "run", "--config", str(bad))
    assert check.returncode == run.returncode == 2
    assert "Did you mean 'max_loss'" in check.stderr and "Did you mean 'max_loss'" in run.stderr
    good = tmp_path / "good.toml"
    good.write_text("[risk]\nmax_loss = 30\n")
    ok = kmm(tmp_path, "config", "check", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    assert kmm(tmp_path, "config", "example").stdout.startswith("# kmm configuration")


def test_a_misspelled_kmm_variable_is_warned_about(tmp_path):
    assert unknown_environment({"KMM_RISK_MAX_LOS": "3", "KMM_RISK_MAX_LOSS": "3", "KMM_CONFIG": "x"}) == [
        "environment variable KMM_RISK_MAX_LOS is not a kmm setting and is ignored. Did you mean KMM_RISK_MAX_LOSS?"]
    p = kmm(tmp_path, "run", "--markets", "KXNOPE-1", env={"KMM_RISK_MAX_LOS": "3"})
    assert "KMM_RISK_MAX_LOS is not a kmm setting" in p.stderr and "KMM_RISK_MAX_LOSS" in p.stderr


def test_parse_markets():
    assert parse_markets("KXA-1, KXB-2") == ["KXA-1", "KXB-2"]
    with pytest.raises(ConfigError, match="twice"):
        parse_markets("KXA-1,KXA-1")


# ----------------------------------------------------------------------------------------------- kmm sim
def test_kmm_sim_refuses_bad_ports_and_faults_before_listening(tmp_path):
    p = kmm(tmp_path, "sim", "--port", "99999")
    assert p.returncode == 2 and "--port 99999" in p.stderr
    p = kmm(tmp_path, "sim", "--fault", "bogus", "--port", "0")
    assert p.returncode == 2 and "unknown --fault 'bogus'" in p.stderr and "drop_ws" in p.stderr
    assert "listening" not in p.stderr
    p = kmm(tmp_path, "sim", "--fault", "stall:abc")
    assert p.returncode == 2 and "not a number" in p.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = kmm(tmp_path, "sim", "--port", str(s.getsockname()[1]), "--state-dir", str(tmp_path / "st"))
    assert p.returncode == 2 and "cannot listen" in p.stderr and "another --port" in p.stderr


def test_kmm_sim_help_describes_every_option(tmp_path):
    from kmm.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    sim = sub.choices["sim"]
    missing = [a.option_strings for a in sim._actions if not a.help]
    assert not missing
    assert "dup_fill" in sim.format_help()


def test_kmm_sim_prints_a_kmm_run_line_that_trades_on_it(tmp_path):
    import time
    err = tmp_path / "sim.err"
    with err.open("w") as ef:
        sim = subprocess.Popen([sys.executable, "-m", "kmm", "sim", "--state-dir", str(tmp_path / "st")],
                               cwd=tmp_path, env=clean_env(tmp_path), stdout=subprocess.DEVNULL, stderr=ef)
    try:
        deadline = time.monotonic() + 30
        while "trade on it with" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = err.read_text()
        line = text.split("trade on it with:\n", 1)[1].splitlines()[0].strip()
        assert line.startswith("kmm run --rest-url http://127.0.0.1:")
        # its log lines look like ops.log's: 2026-..Z INFO    kmm.sim.exchange: ...
        assert any(ln[:4].isdigit() and ln[23:24] == "Z" and " INFO    kmm.sim" in ln for ln in text.splitlines())
        p = kmm(tmp_path, *line.split()[1:], "--duration", "3", "--view", "plain", "--out", str(tmp_path / "o"))
        assert p.returncode == 0, p.stderr
        assert "orders resting after stop: 0 (verified over REST)" in p.stdout
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    assert sim.returncode == 0


def test_the_in_process_exchange_itself_refuses_an_unknown_ticker():
    import asyncio

    from kmm.engine.app import open_venue
    args = argparse.Namespace(set=[], env=None, allow_prod=False, rest_url=None, ws_url=None, api_key_id=None,
                              private_key=None, config=None, markets="KXNOPE-99-Z")
    cfg = load_config(None, environ={}, cli={"run.markets": "KXNOPE-99-Z"})

    async def main():
        async with open_venue(cfg, args, False):
            raise AssertionError("the venue opened for a market it does not list")
    with pytest.raises(ConfigError, match="KXNOPE-99-Z is not listed on kmm's embedded exchange"):
        asyncio.run(main())


def test_unwritable_paths_and_busy_ports_are_messages_not_tracebacks(tmp_path):
    p = kmm(tmp_path, "run", "--out", "/proc/kmm-nope/run")
    assert p.returncode == 2 and "--out /proc/kmm-nope/run: cannot create it" in p.stderr
    p = kmm(tmp_path, "sim", "--state-dir", "/proc/kmm-nope")
    assert p.returncode == 2 and "--state-dir /proc/kmm-nope" in p.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = kmm(tmp_path, "run", "--metrics-port", str(port))
    assert p.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in p.stderr
    _no_output(tmp_path)
