"""``kmm sweep`` on Ray against running the same tasks one by one in this process.

The task is the toy market maker of ``tests/report/sweep_tasks.py`` replayed over a 20,000-message
capture (a real task: it reads the capture, writes a tape and a summary). Groups:

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


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    d = Path(tempfile.mkdtemp(prefix="kmm-bench-sweep-"))
    cap = write_capture(d / "capture.bin.gz", n=MESSAGES)
    started = S._init_ray(ray, None, WORKERS)
    yield {"dir": d, "cap": cap, "n": 0}
    if started:
        ray.shutdown()


def _fresh(env: dict[str, Any]) -> Path:
    env["n"] += 1
    return env["dir"] / f"out{env['n']}"


def _in_process(env: dict[str, Any], fn: Any) -> None:
    out = _fresh(env)
    tasks = S.expand(GRID, [env["cap"]])
    cfgs = {}
    for t in tasks:
        key = tuple(sorted(t.params.items()))
        if key not in cfgs:
            cfgs[key] = load_config(None, environ={}, cli=dict(t.params))
        res = S.execute_task(fn, None, str(env["cap"]), "", cfgs[key], str(out / t.task_id), 0)
        assert res["ok"], res


def _on_ray(env: dict[str, Any], fn: Any, in_flight: int) -> None:
    out = _fresh(env)
    res = S.run_sweep([env["cap"]], GRID, out, task_fn=fn, stream=None, max_in_flight=in_flight)
    assert len(res.done) == N and not res.failed


@pytest.mark.parametrize("task", ["toy", "noop"])
@pytest.mark.parametrize("mode", ["one process", "ray 1 in flight", f"ray {WORKERS} in flight"])
def test_sweep_throughput(benchmark: Any, env: dict[str, Any], task: str, mode: str) -> None:
    fn = make_task() if task == "toy" else _make_noop()
    benchmark.group = f"sweep {task} task"
    benchmark.extra_info.update(role="baseline" if mode == "one process" else "kmm", ops=N, mode=mode,
                                workers=WORKERS)
    if mode == "one process":
        benchmark.pedantic(_in_process, args=(env, fn), rounds=ROUNDS, iterations=1)
    else:     # a warm-up round starts the workers and imports kmm in them
        k = 1 if mode.startswith("ray 1 ") else WORKERS
        benchmark.pedantic(_on_ray, args=(env, fn, k), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    s = benchmark.stats.stats
    print(f"\n{benchmark.group} [{mode}]: median {s.median / N * 1e3:.1f} ms/task, "
          f"{N / s.median * 60:.0f} tasks/min")
