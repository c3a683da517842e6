"""``kmm report`` on real output directories: a short ``kmm run`` (and a ``kmm execute``) against the
in-process ``kmm sim``; the figures in the report are checked against the database, the tape and the
run's own printed summary, computed here independently of kmm.report."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import kmm

from kmm.report import write_run_report
from kmm.report.charts import CHARTS
from kmm.report.data import load_run
from kmm.report.figures import compute

pytestmark = pytest.mark.slow
SRC = Path(kmm.__file__).resolve().parents[1]   # the kmm under test (source tree, or site-packages in CI)

CHART_NAMES = ("equity", "inventory", "quotes", "spread_captured", "markouts", "attribution", "latency",
               "fill_queue", "rate_limit", "events")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env["HOME"] = str(home)
    # this source tree, whatever the working directory (a relative PYTHONPATH=src would not follow)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _kmm(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmm", *args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs on the embedded exchange, started together: stoikov (seed 1), whose kill switch the
    operator trips (SIGUSR2) ~2.5 s after quoting starts, and inside (seed 2)."""
    import signal
    import time
    base = tmp_path_factory.mktemp("runs")
    a, b = base / "stoikov", base / "inside"
    procs = [subprocess.Popen(_kmm("run", "--duration", "6", "--out", str(a), "--view", "plain",
                                   "--set", "sim.flow=busy"),
                              cwd=base, env=_env(base), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen(_kmm("run", "--duration", "6", "--out", str(b), "--view", "plain", "--strategy",
                                   "inside", "--set", "sim.flow=busy", "--set", "sim.seed=2", "--report"),
                              cwd=base, env=_env(base), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        log = a / "ops.log"
        if log.exists() and "quoting" in log.read_text():
            break
        time.sleep(0.1)
    time.sleep(2.5)
    procs[0].send_signal(signal.SIGUSR2)
    outs = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=150)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, so + se
        outs.append(so)
    return {"a": a, "b": b, "stdout_a": outs[0], "stdout_b": outs[1], "base": base}


def _db(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path / "kmm.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _span(html: str, attr: str, key: str) -> str:
    m = re.search(rf'data-{attr}="{re.escape(key)}">([^<]*)<', html)
    assert m, f"no data-{attr}={key} in the report"
    return m.group(1)


def _usd(text: str) -> int:
    return int(Decimal(text.replace("$", "").replace(",", "")) * 10_000)


def _tape(path: Path) -> list[dict[str, str]]:
    import csv
    with open(path / "tape.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_report_figures_equal_the_database_tape_and_the_run_summary(runs, tmp_path):
    run = runs["a"]
    out = tmp_path / "rep"
    p = subprocess.run(_kmm("report", str(run), "--out", str(out)), env=_env(tmp_path), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    html = (out / "report.html").read_text()

    # fills, contracts, fees: straight from the fills table
    n, bought, sold, fill_fees = _db(run, "SELECT COUNT(*), "
                                          "COALESCE(SUM(CASE WHEN side='bid' THEN count END), 0), "
                                          "COALESCE(SUM(CASE WHEN side='ask' THEN count END), 0), "
                                          "COALESCE(SUM(fee), 0) FROM fills")[0]
    assert n > 5, "the busy sim should give fills in 6 s"
    assert int(_span(html, "fig", "fills")) == n
    assert Decimal(_span(html, "fig", "bought")) * 100 == bought
    assert Decimal(_span(html, "fig", "sold")) * 100 == sold
    assert _usd(_span(html, "fig", "fees")) == fill_fees        # no settlement in a 6 s run: fees = fills' fees

    # final P&L and positions: the last P&L snapshot of each market ...
    last = _db(run, "SELECT ticker, position, realized, unrealized, fees FROM pnl p WHERE id = "
                    "(SELECT MAX(id) FROM pnl q WHERE q.ticker = p.ticker) AND ticker != '*'")
    net = sum(r - f + u for _, _, r, u, f in last)
    # the headline is the run's exact total (summary.json: the portfolio rounds its total once); the
    # markets' rows, each rounded to $0.0001 on its own, sum to it within $0.0001 a market
    summary = json.loads((run / "summary.json").read_text())
    assert _usd(_span(html, "fig", "net")) == _usd(summary["net_pnl"])
    assert abs(_usd(_span(html, "fig", "net")) - net) <= len(last)
    for ticker, pos, r, u, f in last:
        assert Decimal(_span(html, "pos", ticker)) * 100 == pos
        assert _usd(_span(html, "net", ticker)) == r - f + u
        # ... equals the signed sum of the market's fills (the run started flat)
        signed = _db(run, f"SELECT COALESCE(SUM(CASE WHEN side='bid' THEN count ELSE -count END), 0) "
                          f"FROM fills WHERE ticker = '{ticker}'")[0][0]
        assert signed == pos
    # ... and equals the session's net P&L kmm run printed (the run started flat, so session = account;
    # cents may round by 1e-4 per market)
    m = re.search(r"session P&L net (-?\$-?[\d,.]+) \(this session only", runs["stdout_a"])
    assert m
    printed = _usd(m.group(1))
    assert abs(printed - net) <= len(last)
    pos_line = re.search(r"positions: (.*)", runs["stdout_a"]).group(1)
    for ticker, pos, *_ in last:
        if pos:
            assert f"{ticker} {pos / 100:+g}" in pos_line


def test_attribution_terms_are_computed_from_fills_and_tape_and_sum_to_net_pnl(runs):
    run = runs["a"]
    figs = compute(load_run(run))
    rows = _tape(run)
    mid_at_fill = {r["trade_id"]: Decimal(r["mid"]) * 10_000 for r in rows if r["event"] == "fill" and r["mid"]}
    fills = _db(run, "SELECT trade_id, side, price, count FROM fills")
    spread = sum((1 if s == "bid" else -1) * Decimal(c) / 100 * (mid_at_fill[t] - p) for t, s, p, c in fills)
    a = figs.attribution
    assert a is not None and a.complete
    assert a.spread_capture == pytest.approx(float(spread), abs=0.5)
    assert a.fees == -sum(f for *_, f in _db(run, "SELECT ticker, fees FROM pnl p WHERE id = "
                                                   "(SELECT MAX(id) FROM pnl q WHERE q.ticker = p.ticker) "
                                                   "AND ticker != '*'"))
    assert a.total == pytest.approx(figs.totals["net"], abs=1e-6)
    # the settlement-and-mark remainder is the final position valued at the engine's mark minus the last mid:
    # it is zero for a market that ended flat
    for t, mf in figs.markets.items():
        if mf.position == 0 and mf.attribution is not None:
            assert mf.attribution.settlement_and_mark == pytest.approx(0, abs=1e-6)


def test_markouts_use_the_mid_h_seconds_later_and_none_past_the_end_of_the_tape(runs):
    run = runs["a"]
    figs = compute(load_run(run))
    rows = _tape(run)
    checked = 0
    for fv in figs.fills:
        mids = [(int(r["ts_ns"]), float(Decimal(r["mid"]) * 10_000)) for r in rows
                if r["ticker"] == fv.ticker and r["mid"]]
        later = fv.ts_ns + 1_000_000_000
        if mids[-1][0] < later:
            assert fv.markouts[1] is None          # not seen: not drawn as 0
            continue
        m_later = [m for t, m in mids if t <= later][-1]
        assert fv.markouts[1] == pytest.approx(fv.sign * (m_later - fv.mid), abs=0.01)
        checked += 1
    assert checked > 0
    assert all(fv.markouts[30] is None for fv in figs.fills)   # a 6 s run cannot show a 30 s markout


def test_every_chart_is_drawn_inline_and_as_png_and_the_page_needs_no_network(runs, tmp_path):
    out = tmp_path / "rep"
    p = subprocess.run(_kmm("report", str(runs["a"]), "--out", str(out), "--format", "html,png"),
                       env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html = (out / "report.html").read_text()
    assert len(CHART_NAMES) == len(CHARTS)
    for name in CHART_NAMES:
        assert re.search(rf'<img data-chart="{name}"[^>]* src="data:image/png;base64,', html), name
        png = out / "charts" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "Not shown" not in html
    # the operator's kill-switch trip is on the timeline, with its ops.log line
    assert re.search(r'<td class="">kill</td><td class="">CRITICAL</td><td class="">risk: kill switch tripped',
                     html)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'src="(?!data:)', html)


def test_missing_records_are_named_not_invented(runs, tmp_path):
    d = tmp_path / "tape_only"
    d.mkdir()
    shutil.copy(runs["a"] / "tape.csv", d / "tape.csv")
    out = tmp_path / "rep"
    p = subprocess.run(_kmm("report", str(d), "--out", str(out), "--format", "html"), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html = (out / "report.html").read_text()
    assert "no kmm.sqlite" in html and "no ops.log" in html and "no capture.bin.gz" in html
    assert 'data-chart="fill_queue">Not shown' in html
    assert 'data-chart="events">Not shown' in html
    assert _span(html, "fig", "fills") == "n/a"    # no fills table: unknown, not zero
    assert not (out / "charts").exists()           # --format html: no PNGs

    p = subprocess.run(_kmm("report", str(tmp_path / "nope")), env=_env(tmp_path), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "no such output directory" in p.stderr
    p = subprocess.run(_kmm("report", str(runs["a"]), "--format", "pdf"), env=_env(tmp_path), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "html, png" in p.stderr


def test_summary_json_is_cross_checked_and_a_disagreement_is_shown(runs, tmp_path):
    d = tmp_path / "with_summary"
    shutil.copytree(runs["a"], d)
    figs = compute(load_run(d))
    t = figs.totals
    summary = {"schema": 1, "mode": "live", "venue": "sim", "markets": list(figs.markets), "fills": t["fills"],
               "fees": f"{t['fees'] / 1e4:.4f}", "realized_pnl": f"{t['realized'] / 1e4:.4f}",
               "unrealized_pnl": f"{t['unrealized'] / 1e4:.4f}", "net_pnl": f"{t['net'] / 1e4:.4f}"}
    (d / "summary.json").write_text(json.dumps(summary))
    assert write_run_report(d, build=True).startswith("kmm run: report written")
    assert write_run_report(d, build=False) == f"kmm run: to draw this run's tearsheet, run: kmm report {d}"
    html = (d / "report.html").read_text()
    assert html.count('class="ok">agree') == 5 and "DIFFER" not in html

    summary["net_pnl"] = f"{(t['net'] + 10_000) / 1e4:.4f}"     # a dollar off
    (d / "summary.json").write_text(json.dumps(summary))
    figs = compute(load_run(d))
    assert [k for k, _, _, ok in figs.checks if not ok] == ["net_pnl"]


def test_two_directories_side_by_side(runs, tmp_path):
    out = tmp_path / "cmp"
    p = subprocess.run(_kmm("report", str(runs["a"]), str(runs["b"]), "--out", str(out)), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    html = (out / "report.html").read_text()
    assert "Runs side by side" in html and "stoikov vs inside" in html
    side = html.split("<h2>Runs side by side</h2>")[1].split("<h2 id=")[0]
    for key in ("a", "b"):
        figs = compute(load_run(runs[key]))
        assert f"${figs.totals['net'] / 1e4:,.4f}" in side
        assert f'<span data-fig="fills">{figs.totals["fills"]}</span>' in side
    assert re.search(r'<img data-chart="compare_equity"', html)
    assert (out / "charts" / "compare_equity.png").exists()
    assert (out / "charts" / "stoikov" / "equity.png").exists() and (out / "charts" / "inside" / "equity.png").exists()


def test_report_of_a_kmm_execute_store_shows_the_execution_metrics(tmp_path):
    d = tmp_path / "exec"
    d.mkdir()
    p = subprocess.run(_kmm("execute", "--market", "KXSIMA-26-A", "--action", "buy-yes", "--size", "5",
                            "--limit", "0.60", "--store", str(d / "executions.sqlite"), "--view", "off",
                            "--timeout", "10"), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(_kmm("report", str(d)), env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html = (d / "report.html").read_text()
    conn = sqlite3.connect(d / "executions.sqlite")
    (eid, filled, fees), = conn.execute("SELECT execution_id, filled_size, fees FROM execution_metrics").fetchall()
    nfills, fill_fees = conn.execute("SELECT COUNT(*), SUM(fee) FROM fills").fetchone()
    conn.close()
    row = html.split(f"<td class=\"l\">{eid}</td>")[1].split("</tr>")[0]
    assert f"{filled / 100:,.2f}" in row and f"${fees / 1e4:,.4f}" in row
    assert int(_span(html, "fig", "fills")) == nfills
    assert _usd(_span(html, "fig", "fees")) == fill_fees
    assert _span(html, "fig", "net") == "n/a"       # no marks in an execute store: not invented


def test_report_of_a_kmm_backtest_of_the_run_equals_its_summary_and_database(runs, tmp_path):
    bt = tmp_path / "bt"
    p = subprocess.run(_kmm("backtest", "--capture", str(runs["a"]), "--out", str(bt)), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(_kmm("report", str(bt)), env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html = (bt / "report.html").read_text()
    summary = json.loads((bt / "summary.json").read_text())
    assert summary["mode"] == "backtest"
    assert int(_span(html, "fig", "fills")) == summary["fills"] == _db(bt, "SELECT COUNT(*) FROM fills")[0][0]
    assert _usd(_span(html, "fig", "fees")) == _usd(summary["fees"])
    # per-market P&L snapshots sum to the portfolio figure within a 1e-4 $ rounding per market
    assert abs(_usd(_span(html, "fig", "net")) - _usd(summary["net_pnl"])) <= len(summary["markets"])
    for ticker, pos in summary["positions"].items():
        assert Decimal(_span(html, "pos", ticker)) == Decimal(pos)
    assert "DIFFER" not in html and html.count('class="ok">agree') == 5
    # the market's best bid/ask come from the capture the backtest names in summary.json
    assert "best bid/ask: no capture" not in html
    for name in CHART_NAMES:
        if name == "rate_limit":      # a backtest logs no status lines: said, not drawn
            assert 'data-chart="rate_limit">Not shown: not recorded' in html
        else:
            assert re.search(rf'<img data-chart="{name}"', html), name


def test_kmm_run_prints_the_report_command_and_with_report_writes_the_tearsheet(runs):
    """Without --report the run ends with the command that builds its report; with it, report.html is in
    the run directory and its net P&L is the run's summary.json net P&L."""
    assert f"kmm run: to draw this run's tearsheet, run: kmm report {runs['a']}" in runs["stdout_a"]
    assert not (runs["a"] / "report.html").exists()
    page = runs["b"] / "report.html"
    assert f"kmm run: report written to {page}" in runs["stdout_b"]
    summary = json.loads((runs["b"] / "summary.json").read_text())
    assert _usd(_span(page.read_text(), "fig", "net")) == _usd(summary["net_pnl"])


def test_report_shows_the_maker_metrics_and_the_per_event_roll_up_of_the_run(runs, tmp_path):
    run = runs["b"]
    out = tmp_path / "rep"
    p = subprocess.run(_kmm("report", str(run), "--out", str(out)), env=_env(tmp_path), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    html = (out / "report.html").read_text()
    details = json.loads((run / "summary.json").read_text())["details"]
    mm = details["maker_metrics"]
    # the engine's figures as summary.json has them
    assert _span(html, "maker", "resting_orders_placed") == f"{mm['resting_orders_placed']:,}"
    assert mm["resting_orders_placed"] > 0
    assert _span(html, "maker", "contract_seconds_near_best") == f"{mm['contract_seconds_near_best']:,.2f}"
    assert _span(html, "maker", "volume_30d_contracts") == f"{mm['volume_30d_contracts']:,.2f}"
    assert "30-day volume: the account" in html            # where the figure comes from is said
    # ... and beside them, maker and taker contracts computed from the store's fills
    maker, taker = _db(run, "SELECT COALESCE(SUM(CASE WHEN is_taker = 0 THEN count END), 0), "
                            "COALESCE(SUM(CASE WHEN is_taker = 1 THEN count END), 0) FROM fills")[0]
    assert Decimal(_span(html, "makerrec", "maker_contracts").replace(",", "")) * 100 == maker
    assert Decimal(_span(html, "makerrec", "taker_contracts").replace(",", "")) * 100 == taker
    assert mm["maker_contracts"] * 100 == maker
    # the per-event roll-up: one row per event of the run
    assert details["events"] and all(_span(html, "event", ev["event"]) == ev["event"] for ev in details["events"])
