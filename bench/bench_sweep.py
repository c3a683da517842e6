"""``kmm sweep`` on Ray against running the same tasks one by one in this process.

Tasks: ``kmm.research.backtest.run_backtest`` over the capture of a 10 s ``kmm run`` (busy sim flow);
the toy market maker of ``tests/report/sweep_tasks.py`` over a 20,000-message capture (reads the
capture, writes a tape and a summary); and a no-op. Groups:

- ``sweep backtest task``: N real backtests in one process vs on Ray;

- ``sweep toy task``: N tasks in one process (baseline) vs ``run_sweep`` on local Ray with 1 and
  with all workers in flight (kmm); ``ops`` = N, so times are per task and the ratio is throughput;
- ``sweep noop task``: the same with a task that returns at once, i.e. Ray's own cost per task
  (object-store capture, scheduling, result, summary.json on disk) against a plain call.

Ray starts once per module (its start-up, ~10 s here, is not in the timings). Every round writes into
a fresh output directory so nothing is skipped as already done; each round asserts N summaries.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

ray = pytest.importorskip("ray")

from kmm.config import load_config  # noqa: E402
from kmm.report import sweep as S  # noqa: E402
from tests.report.sweep_tasks import make_task, write_capture  # noqa: E402

N = 24
MESSAGES = 20_000       # book messages per capture: a toy task then takes ~0.2 s here
ROUNDS = 3
GRID = {"strategy.gamma": ["0.005", "0.01", "0.015", "0.02", "0.03", "0.04"],
        "strategy.max_position": ["10", "20", "30", "50"]}     # 6 x 4 = 24 tasks
WORKERS = os.cpu_count() or 1


def _make_noop() -> Any:
    # a closure, so Ray ships it by value (workers cannot import this bench module)
    def noop(captures: Any, cfg: Any, out: Path, *, seed: int = 0) -> dict[str, Any]:
        return {"schema": 1, "mode": "backtest", "fills": 0, "net_pnl": "0.0000"}
    return noop


def _run_capture(d: Path) -> Path:
    """The capture (and markets.json) of a 10 s ``kmm run`` on the in-process sim, busy flow."""
    import subprocess
    import sys
    src = Path(__file__).resolve().parents[1] / "src"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env.update(HOME=str(d), PYTHONPATH=str(src))
    p = subprocess.run([sys.executable, "-m", "kmm", "run", "--duration", "10", "--out", str(d / "run"), "--view",
                        "off", "--set", "sim.flow=busy"], env=env, cwd=d, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    return d / "run" / "capture.bin.gz"


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    d = Path(tempfile.mkdtemp(prefix="kmm-bench-sweep-"))
    cap = write_capture(d / "capture.bin.gz", n=MESSAGES)
    run_cap = _run_capture(d)
    started = S._init_ray(ray, None, WORKERS)
    yield {"dir": d, "cap": cap, "run_cap": run_cap, "n": 0}
    if started:
        ray.shutdown()


def _fresh(env: dict[str, Any]) -> Path:
    env["n"] += 1
    return env["dir"] / f"out{env['n']}"


def _in_process(env: dict[str, Any], fn: Any, cap: Path) -> None:
    out = _fresh(env)
    tasks = S.expand(GRID, [cap])
    cfgs = {}
    for t in tasks:
        key = tuple(sorted(t.params.items()))
        if key not in cfgs:
            cfgs[key] = load_config(None, environ={}, cli=dict(t.params))
        res = S.execute_task(fn, None, str(cap), "", cfgs[key], str(out / t.task_id), 0)
        assert res["ok"], res


def _on_ray(env: dict[str, Any], fn: Any, cap: Path, in_flight: int) -> None:
    out = _fresh(env)
    res = S.run_sweep([cap], GRID, out, task_fn=fn, stream=None, max_in_flight=in_flight)
    assert len(res.done) == N and not res.failed


@pytest.mark.parametrize("task", ["backtest", "toy", "noop"])
@pytest.mark.parametrize("mode", ["one process", "ray 1 in flight", f"ray {WORKERS} in flight"])
def test_sweep_throughput(benchmark: Any, env: dict[str, Any], task: str, mode: str) -> None:
    from kmm.research.backtest import run_backtest
    fn = {"toy": make_task, "noop": _make_noop, "backtest": lambda: run_backtest}[task]()
    cap = env["run_cap"] if task == "backtest" else env["cap"]
    benchmark.group = f"sweep {task} task"
    benchmark.extra_info.update(role="baseline" if mode == "one process" else "kmm", ops=N, mode=mode,
                                workers=WORKERS)
    if mode == "one process":
        benchmark.pedantic(_in_process, args=(env, fn, cap), rounds=ROUNDS, iterations=1)
    else:     # a warm-up round starts the workers and imports kmm in them
        k = 1 if mode.startswith("ray 1 ") else WORKERS
        benchmark.pedantic(_on_ray, args=(env, fn, cap, k), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    s = benchmark.stats.stats
    print(f"\n{benchmark.group} [{mode}]: median {s.median / N * 1e3:.1f} ms/task, "
          f"{N / s.median * 60:.0f} tasks/min")
