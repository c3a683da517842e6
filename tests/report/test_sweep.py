"""``kmm sweep`` machinery on a real local Ray instance, with a small real task function (a toy market
maker replayed over a capture file; see sweep_tasks.py). What must be re-run once
``kmm.research.backtest.run_backtest`` lands: the same sweep with the default task function."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kmm

from kmm.config import load_config
from kmm.report import sweep as S
from tests.report.sweep_tasks import make_task, write_capture

pytestmark = pytest.mark.slow
# a local Ray binds to loopback only when this is set before Ray is imported (see kmm.report.sweep)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]
# the kmm under test (the source tree in development, site-packages in CI): subprocesses import it too
KMM_SRC = Path(kmm.__file__).resolve().parents[1]
GRID = ["strategy.gamma=0.005,0.02", "strategy.max_position=20,50"]


@pytest.fixture(scope="module")
def local_ray():
    started = S._init_ray(ray, None, 2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return write_capture(tmp_path_factory.mktemp("cap") / "capture.bin.gz")


def test_grid_keys_and_values_are_checked_against_the_config_schema():
    g = S.parse_grid(GRID)
    assert g == {"strategy.gamma": ["0.005", "0.02"], "strategy.max_position": ["20", "50"]}
    with pytest.raises(S.SweepError, match="strategy.gama") as e:
        S.parse_grid(["strategy.gama=0.1"])
    assert "gamma" in str(e.value)                                   # the suggestion
    with pytest.raises(S.SweepError, match=r"strategy.quote_size=-1"):
        S.parse_grid(["strategy.quote_size=-1"])
    with pytest.raises(S.SweepError, match=r"strategy.gamma=abc"):
        S.parse_grid(["strategy.gamma=0.1,abc"])
    with pytest.raises(S.SweepError, match="twice"):
        S.parse_grid(["strategy.gamma=0.1", "strategy.gamma=0.2"])
    with pytest.raises(S.SweepError, match="section.key=v1"):
        S.parse_grid(["gamma=0.1"])
    with pytest.raises(S.SweepError, match=r"\[run\] keys"):
        S.parse_grid(["run.duration_s=1,2"])
    assert S.parse_grid(["markets.KXA-1.gamma=0.1,0.2"]) == {"markets.KXA-1.gamma": ["0.1", "0.2"]}
    # a rule across keys is checked per parameter set, and the set that breaks it is named
    assert S.parse_grid(["risk.max_loss=50,100"], fixed={"risk.resume_recovery": "20"})
    with pytest.raises(S.SweepError, match=r"risk.max_loss=5, risk.resume_recovery=8: .*cannot exceed"):
        S.parse_grid(["risk.max_loss=5,50", "risk.resume_recovery=1,8"])


def test_expansion_is_every_parameter_set_times_every_capture_with_stable_ids(tmp_path, capture):
    other = write_capture(tmp_path / "other.bin.gz", seed=8)
    grid = S.parse_grid(GRID)
    tasks = S.expand(grid, [capture, other])
    assert len(tasks) == 8 and len({t.task_id for t in tasks}) == 8
    assert {(t.params["strategy.gamma"], t.params["strategy.max_position"], t.capture.name) for t in tasks} == {
        (g, m, c) for g in ("0.005", "0.02") for m in ("20", "50") for c in ("capture.bin.gz", "other.bin.gz")}
    assert [t.task_id for t in S.expand(grid, [capture, other])] == [t.task_id for t in tasks]
    assert not {t.task_id for t in S.expand(grid, [capture, other], seed=1)} & {t.task_id for t in tasks}


def test_a_2x2_sweep_runs_on_ray_and_collects_tables_and_a_report(tmp_path, capture, local_ray):
    out = tmp_path / "sweep"
    task = make_task()
    res = S.run_sweep([capture], S.parse_grid(GRID), out, task_fn=task, stream=None)
    assert len(res.done) == 4 and not res.failed and not res.interrupted
    rows = S.collect(out)
    S.write_tables(rows, out)
    report = S.write_sweep_report(out, rows)
    # every task ran in a Ray worker process, and gives what the same function gives in this process
    for r in rows:
        assert r["status"] == "done"
        assert r["pid"] != os.getpid()
        cfg = load_config(None, environ={}, cli={"strategy.gamma": r["param.strategy.gamma"],
                                                 "strategy.max_position": r["param.strategy.max_position"]})
        local = tmp_path / f"local-{r['task_id']}"
        local.mkdir()
        mine = task([capture], cfg, local)
        assert (r["fills"], r["net_pnl"]) == (mine["fills"], mine["net_pnl"])
        on_disk = json.loads((out / "tasks" / r["task_id"] / "summary.json").read_text())
        assert on_disk["net_pnl"] == r["net_pnl"]
        assert r["max_inventory"] == max(abs(float(v)) for v in [0] + [
            float(line.split(",")[9]) for line in (out / "tasks" / r["task_id"] / "run" / "tape.csv")
            .read_text().splitlines()[1:]])
    assert len({r["net_pnl"] for r in rows}) > 1         # the parameters matter
    # the capture reached the workers through the object store: each task read a worker-local copy
    copies = {r["capture_read"] for r in rows}
    assert len(copies) == 1 and str(capture) not in copies
    copy = Path(copies.pop())
    assert copy.read_bytes() == capture.read_bytes() and copy.parent.parent.name.startswith("kmm-sweep-")
    import pyarrow.parquet as pq
    table = pq.read_table(out / "sweep.parquet").to_pylist()
    assert sorted((t["task_id"], t["net_pnl_num"], t["fills"]) for t in table) == \
        sorted((r["task_id"], float(r["net_pnl"]), r["fills"]) for r in rows)
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and "param.strategy.gamma" in csv_lines[0]
    html = report.read_text()
    for name in ("sweep_net_pnl_num", "sweep_fills", "sweep_max_inventory"):
        assert f'<img data-chart="{name}"' in html and (out / "charts" / f"{name}.png").exists()
    for r in rows:
        assert f'data-task="{r["task_id"]}"' in html
    # a task's directory (summary.json + tape, like a backtest's) makes a report whose figures agree with it
    from kmm.report.build import build_report
    r = rows[0]
    page = build_report([out / "tasks" / r["task_id"] / "run"], tmp_path / "taskrep", ["html"])["html"][0].read_text()
    assert f'<span data-fig="fills">{r["fills"]}</span>' in page
    assert f'<span data-fig="net">${float(r["net_pnl"]):,.4f}</span>' in page
    assert "DIFFER" not in page and page.count('class="ok">agree') >= 4


@pytest.fixture(scope="module")
def run_capture(tmp_path_factory):
    """The frame capture of a 5 s ``kmm run`` against the in-process sim (busy flow)."""
    d = tmp_path_factory.mktemp("run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env.update(HOME=str(d), PYTHONPATH=str(KMM_SRC))
    p = subprocess.run([sys.executable, "-m", "kmm", "run", "--duration", "5", "--out", str(d / "out"), "--view",
                        "off", "--set", "sim.flow=busy"], env=env, cwd=d, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return d / "out" / "capture.bin.gz"


def test_a_2x2_sweep_of_real_backtests_on_ray_equals_run_backtest_in_process(tmp_path, run_capture, local_ray):
    from kmm.research.backtest import run_backtest
    grid = S.parse_grid(["strategy.gamma=0.05,0.3", "strategy.max_position=5,50"])
    out = tmp_path / "sweep"
    res = S.run_sweep([run_capture], grid, out, stream=None)        # the default task: run_backtest
    assert len(res.done) == 4 and not res.failed, res.failed
    rows = S.collect(out)
    for r in rows:
        assert r["mode"] == "backtest" and r["status"] == "done"
        cfg = load_config(None, environ={}, cli={"strategy.gamma": r["param.strategy.gamma"],
                                                 "strategy.max_position": r["param.strategy.max_position"]})
        mine = run_backtest([run_capture], cfg, tmp_path / f"local-{r['task_id']}", seed=0)
        for k in ("fills", "net_pnl", "fees", "contracts_bought", "contracts_sold", "orders_sent"):
            assert r[k] == mine[k], (k, r)
        assert r["max_inventory"] is not None
        assert r["max_inventory"] <= float(r["param.strategy.max_position"]) + 1e-9
    assert len({(r["fills"], r["net_pnl"]) for r in rows}) > 1      # the grid changes the result
    # the capture travelled with its markets.json (a replay without it uses a default grid and fees)
    assert all(r["fills"] > 0 for r in rows)
    S.write_tables(rows, out)
    html = S.write_sweep_report(out, rows).read_text()
    assert '<img data-chart="sweep_net_pnl_num"' in html


def test_a_failed_task_is_reported_with_parameters_and_traceback_and_a_rerun_only_does_what_is_left(
        tmp_path, capture, local_ray):
    out = tmp_path / "sweep"
    calls = tmp_path / "calls"
    calls.mkdir()
    res = S.run_sweep([capture], S.parse_grid(GRID), out, stream=None,
                      task_fn=make_task(fail_when={"gamma": 0.02, "max_position": 5000}, calls_dir=str(calls)))
    assert len(res.done) == 3 and len(res.failed) == 1      # the sweep went on past the failure
    (tid, err), = res.failed.items()
    assert "toy backtest refuses gamma=0.02 with max_position=5000" in err
    text = (out / "tasks" / tid / "error.txt").read_text()
    assert "strategy.gamma=0.02, strategy.max_position=50" in text and "Traceback (most recent call last)" in text
    rows = S.collect(out)
    html = S.write_sweep_report(out, rows).read_text()
    assert "Failed tasks" in html and "Traceback" in html
    assert sorted(r["status"] for r in rows) == ["done", "done", "done", "failed"]
    assert len(list(calls.iterdir())) == 4

    res2 = S.run_sweep([capture], S.parse_grid(GRID), out, stream=None, task_fn=make_task(calls_dir=str(calls)))
    assert sorted(res2.skipped) == sorted(res.done) and res2.done == [tid]
    assert len(list(calls.iterdir())) == 5                # only the failed task ran again
    assert not (out / "tasks" / tid / "error.txt").exists()
    assert all(r["status"] == "done" for r in S.collect(out))


def test_shared_path_mode_reads_the_capture_where_it_is(tmp_path, capture, local_ray):
    res = S.run_sweep([capture], {"strategy.gamma": ["0.01"]}, tmp_path / "o", task_fn=make_task(), stream=None,
                      ship="path")
    (tid,) = res.done
    summary = json.loads((tmp_path / "o" / "tasks" / tid / "summary.json").read_text())
    assert summary["capture_read"] == str(capture.resolve())


def test_without_a_backtester_the_sweep_stops_before_starting_ray(tmp_path, capture, monkeypatch):
    monkeypatch.setitem(sys.modules, "kmm.research.backtest", None)
    monkeypatch.setitem(sys.modules, "ray", None)       # would raise "Ray is not installed" if reached
    with pytest.raises(S.SweepError, match="no backtester"):
        S.run_sweep([capture], S.parse_grid(GRID), tmp_path / "o", stream=None)


def test_progress_line_shows_done_total_elapsed_and_eta():
    p = S.Progress(8, None)
    p.t0 -= 30
    p.update(True)
    p.update(False)
    line = p.render(now=p.t0 + 30)
    assert "2/8 tasks" in line and "elapsed 0:30" in line and "ETA 1:30" in line and "(1 failed)" in line


def test_without_ray_the_message_names_the_extra(tmp_path, capture, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)      # import ray -> ImportError
    with pytest.raises(S.SweepError) as e:
        S.run_sweep([capture], S.parse_grid(GRID), tmp_path / "o", task_fn=make_task(), stream=None)
    assert "pip install 'kmm[research]'" in str(e.value)


def test_cli_rejects_a_bad_grid_key_before_starting_anything(tmp_path, capture):
    p = subprocess.run([sys.executable, "-m", "kmm", "sweep", "--capture", str(capture), "--grid",
                        "strategy.gama=1,2", "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(KMM_SRC)))
    assert p.returncode == 2 and "strategy.gama" in p.stderr and "gamma" in p.stderr
    assert not (tmp_path / "o").exists()


DRIVER = """
import sys
sys.path[:0] = [{root!r}, {src!r}]
from kmm.report import cli
from kmm.report import sweep as S
from tests.report.sweep_tasks import make_task
import argparse
ap = argparse.ArgumentParser(); sub = ap.add_subparsers(); cli.add_parsers(sub)
args = ap.parse_args(sys.argv[1:])
sys.exit(S.run_sweep_cli(args, task_fn=make_task(sleep_s=2.0), stream=sys.stdout))
"""


def test_ctrl_c_cancels_the_rest_cleanly_and_a_rerun_finishes(tmp_path, capture):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(root=str(ROOT), src=str(KMM_SRC)))
    out = tmp_path / "sweep"
    argv = [sys.executable, str(script), "sweep", "--capture", str(capture), "--grid",
            "strategy.gamma=0.005,0.01,0.02", "--grid", "strategy.max_position=20,50", "--workers", "1",
            "--out", str(out)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("tasks/*/summary.json")):
            time.sleep(0.2)
        assert list(out.glob("tasks/*/summary.json")), "no task finished in time"
        t_int = time.monotonic()
        p.send_signal(signal.SIGINT)
        text, _ = p.communicate(timeout=60)
        stop_s = time.monotonic() - t_int
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == S.EXIT_INTERRUPTED, text
    assert "interrupted; run the same command again" in text
    assert stop_s < 30
    finished = len(list(out.glob("tasks/*/summary.json")))
    assert 1 <= finished < 6
    assert (out / "sweep.csv").exists()                    # what finished is collected
    p2 = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    assert f"{finished} already done" in p2.stdout
    assert len(list(out.glob("tasks/*/summary.json"))) == 6


@pytest.mark.skipif(os.environ.get("KMM_TEST_RAY_CLUSTER") != "1",
                    reason="starts a Ray cluster (head + worker) on 127.0.0.1: set KMM_TEST_RAY_CLUSTER=1")
def test_sweep_on_a_ray_cluster_started_by_the_test(tmp_path, run_capture):
    """Real backtests (the default task) of a kmm run capture on a head + worker cluster."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # token authentication off: a throwaway cluster on 127.0.0.1 that only this test uses
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(KMM_SRC), str(ROOT)]), RAY_AUTH_MODE="disabled")
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)   # `ray start` of a multi-node cluster refuses it
    ray_bin = str(Path(sys.executable).parent / "ray")
    import tempfile
    temp = Path(tempfile.mkdtemp(prefix="kmmray", dir="/tmp"))   # Ray's unix sockets need a short path
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                             f"--temp-dir={temp}"], env=env, stdout=(tmp_path / "head.log").open("w"),
                            stderr=subprocess.STDOUT)     # a file: an unread pipe would fill and stall Ray
    worker = None
    try:
        time.sleep(15)
        assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
        worker = subprocess.Popen([ray_bin, "start", "--block", f"--address=127.0.0.1:{port}",
                                   "--node-ip-address=127.0.0.1", "--num-cpus=1"], env=env,
                                  stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT)
        time.sleep(10)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        script = tmp_path / "driver.py"
        script.write_text(DRIVER.replace("make_task(sleep_s=2.0)", "None").format(
            root=str(ROOT), src=str(KMM_SRC)))
        p = subprocess.run([sys.executable, str(script), "sweep", "--capture", str(run_capture), *sum(
            (["--grid", g] for g in GRID), []), "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "o")],
            capture_output=True, text=True, timeout=240, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        rows = S.collect(tmp_path / "o")
        assert len(rows) == 4 and all(r["status"] == "done" and r["mode"] == "backtest" for r in rows)
        assert all(r["fills"] > 0 for r in rows)
        assert "4/4 tasks" in p.stdout
    finally:
        for proc in (worker, head):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        import shutil
        shutil.rmtree(temp, ignore_errors=True)
