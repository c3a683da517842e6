"""``kmm execute`` argument handling (no network)."""

from __future__ import annotations

import pytest

from kmm.cli import build_parser
from kmm.execution import Action, RequestError
from kmm.execution.cli import build_request, compare_command, execute_command, parse_param


def test_execute_and_compare_are_registered_with_their_own_handlers():
    p = build_parser()
    a = p.parse_args(["execute", "--market", "KXA-1", "--action", "buy-no", "--size", "5", "--limit", "0.40",
                      "--algo", "walker", "--param", "walk_interval_seconds=2", "--dry-run"])
    assert a.func is execute_command and a.dry_run and a.algo == "walker"
    c = p.parse_args(["execute", "compare", "--algos", "simple,walker", "--runs", "2"])
    assert c.func is compare_command and c.runs == 2 and c.algos == "simple,walker"


def test_build_request_converts_user_terms_and_parameters():
    a = build_parser().parse_args(["execute", "--market", "KXA-1", "--action", "buy-no", "--size", "5",
                                   "--limit", "0.40", "--param", "split_weights=0.6,0.4", "--timeout", "9",
                                   "--edge", "3c", "--confidence", "0.7"])
    r = build_request(a, fractional=False)
    assert r.action is Action.BUY_NO and r.size == 500 and r.limit_price == 4000 and r.limit == 6000
    assert r.params == {"split_weights": [0.6, 0.4], "timeout_s": 9.0} and r.edge == 300


def test_build_request_without_market_names_the_missing_flags():
    a = build_parser().parse_args(["execute", "--action", "buy-yes"])
    with pytest.raises(RequestError, match="--market, --size, --limit"):
        build_request(a, fractional=False)


def test_parse_param_refuses_a_value_without_key():
    assert parse_param("mode=patient") == ("mode", "patient")
    assert parse_param("remainder=none") == ("remainder", None)
    with pytest.raises(RequestError, match="key=value"):
        parse_param("patience")


# ------------------------------------------------------------------ as a user runs it (subprocesses)
import subprocess  # noqa: E402
import sys  # noqa: E402

from tests.cli.conftest import clean_env  # noqa: E402


def _run(tmp_path, *args):
    p = subprocess.run([sys.executable, "-m", "kmm", "execute", *args], cwd=tmp_path, env=clean_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_execute_checks_arguments_before_starting_the_venue_and_speaks_contracts(tmp_path):
    for argv, words in ((["--size", "0"], "--size 0: give a positive number of contracts"),
                        (["--size", "-2"], "--size -2: give a positive number of contracts"),
                        (["--size", "1.234"], "at most 2 decimals"),
                        (["--size", "5", "--timeout", "0"], "--timeout 0"),
                        (["--size", "5", "--confidence", "2"], "--confidence 2")):
        p = _run(tmp_path, "--market", "KXSIMA-26-A", "--action", "buy-yes", "--limit", "0.60", *argv)
        assert p.returncode == 2 and words in p.stderr, p.stderr
        assert "1e-2" not in p.stderr and "embedded exchange" not in p.stderr   # nothing was started
    p = _run(tmp_path, "--market", "KXNOPE-1", "--action", "buy-yes", "--size", "1", "--limit", "0.5")
    assert p.returncode == 2 and "not listed" in p.stderr


def test_a_full_fill_exits_0_and_reports_times_in_order(tmp_path):
    p = _run(tmp_path, "--market", "KXSIMA-26-A", "--action", "buy-yes", "--size", "5", "--limit", "0.90",
             "--view", "off", "--store", str(tmp_path / "e.sqlite"))
    assert p.returncode == 0, p.stdout + p.stderr
    rows = dict(line.split(None, 1) if False else (line[:21].strip(), line[21:].strip())
                for line in p.stdout.splitlines() if line[:21].strip())
    assert rows["filled"].startswith("5.00 / 5.00") and rows["ended"].startswith("done (")

    def ns(text):
        v, unit = text.split()
        return float(v) * (1e6 if unit == "ms" else 1e9)
    assert ns(rows["time to first fill"]) <= ns(rows["time to full fill"]) <= ns(rows["duration"])


def test_a_failed_execution_exits_1_and_says_why_the_orders_were_refused(tmp_path):
    p = _run(tmp_path, "--market", "KXSIMA-26-A", "--action", "buy-yes", "--size", "5", "--limit", "0.90",
             "--view", "off", "--store", str(tmp_path / "e.sqlite"),
             "--set", "risk.max_order_size=2", "--set", "strategy.quote_size=1")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "ended failed (too_many_rejects)" in p.stderr and "risk:max_order_size" in p.stderr
    assert "rejected because" in p.stdout and "risk:max_order_size" in p.stdout
    assert "filled 0.00 of 5.00 contracts" in p.stderr


def test_a_partial_execution_exits_1(tmp_path):
    p = _run(tmp_path, "--market", "KXSIMA-26-A", "--action", "buy-yes", "--size", "5", "--limit", "0.05",
             "--algo", "twap", "--timeout", "2", "--view", "off", "--store", str(tmp_path / "e.sqlite"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "not done: filled 0.00 of 5.00 contracts, ended expired (timeout)" in p.stderr


def test_the_dry_run_says_nothing_was_sent_once(tmp_path):
    p = _run(tmp_path, "--market", "KXSIMA-26-A", "--action", "buy-yes", "--size", "5", "--limit", "0.60",
             "--dry-run")
    assert p.returncode == 0 and p.stdout.count("nothing was sent") == 1


def test_usage_shows_compare_as_optional():
    usage = build_parser()._subparsers._group_actions[0].choices["execute"].format_usage()
    assert usage.startswith("usage: kmm execute --market T") and "kmm execute compare [" in usage


def test_compare_checks_matplotlib_and_its_arguments_before_any_work(monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    c = build_parser().parse_args(["execute", "compare", "--algos", "simple", "--runs", "1"])
    assert compare_command(c) == 2
    err = capsys.readouterr()
    assert "pip install 'kmm[plot]'" in err.err and "nothing was run" in err.err and err.out == ""
    monkeypatch.undo()
    c = build_parser().parse_args(["execute", "compare", "--algos", "simple,nope"])
    assert compare_command(c) == 2 and "unknown nope" in capsys.readouterr().err
