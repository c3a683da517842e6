"""``kmm sweep``: one backtest per (parameter set x capture) on Ray, collected into a table and a report.

Ray is an optional dependency (``pip install 'kmm[research]'``) imported only here, only when a sweep
runs. Locally, ``ray.init`` starts Ray on this machine with as many workers as cores (``--workers``
caps it); with ``--address`` the tasks go to an existing cluster.

Shape of a sweep directory (``--out``)::

    tasks/<task_id>/task.json       parameters, capture, seed (written before the task is submitted)
    tasks/<task_id>/summary.json    the task's summary (the backtest's own; the driver writes it too)
    tasks/<task_id>/error.txt       parameters and traceback of a failed task (retried on the next run)
    sweep.csv, sweep.parquet        one row per task: parameters, capture, status, every summary figure
    report.html                     the grid's heat maps/tables of net P&L, fills and max inventory

A task id is a hash of (parameters, capture files, seed), so re-running with the same ``--out`` skips
every task that already has its ``summary.json``. A capture (a file with the ``markets.json`` beside
it, or a directory of capture files) is put in Ray's object store once and written to worker-local
files once per worker; a task gets the object reference, not the bytes.

The task function is injectable: ``run_sweep(..., task_fn=f)`` with ``f(captures, cfg, out, *, seed)
-> dict`` (the signature of ``kmm.research.backtest.run_backtest``, which is the default).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from kmm.config import KmmConfig, load_config
from kmm.errors import ConfigError, KmmError

__all__ = ["SweepError", "SweepResult", "SweepTask", "TaskFn", "capture_bundle", "collect", "expand", "parse_grid",
           "run_sweep",
           "run_sweep_cli", "write_sweep_report"]

TaskFn = Callable[..., Mapping[str, Any]]

RAY_MISSING = ("kmm sweep runs on Ray, which is not installed: pip install 'kmm[research]' "
               "(installs ray[default] and pyarrow)")
EXIT_INTERRUPTED = 130

#: summary.json fields that are decimal strings; the sweep table also holds them as numbers
_DECIMAL_FIELDS = ("contracts_bought", "contracts_sold", "fees", "realized_pnl", "unrealized_pnl", "net_pnl")


class SweepError(KmmError):
    """The sweep cannot start: a bad --grid, a missing capture, Ray not installed or unreachable."""


# ---------------------------------------------------------------------------------------------- grid
def parse_grid(items: Sequence[str], *, base_config: str | os.PathLike[str] | None = None,
               fixed: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``["strategy.gamma=0.05,0.1", ...]`` -> ``{"strategy.gamma": ["0.05", "0.1"]}``, every parameter
    set checked against the config schema (unknown key, wrong type, out of range, a rule across keys)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise SweepError(f"--grid {item!r} must look like section.key=v1,v2,... "
                             "(e.g. strategy.gamma=0.05,0.1,0.2)")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise SweepError(f"--grid {key}: give at least one value after '='")
        if key in grid:
            raise SweepError(f"--grid {key} is given twice; put all its values in one flag")
        if len(set(vals)) != len(vals):
            raise SweepError(f"--grid {key}: a value is repeated in {values!r}")
        if key.split(".", 1)[0] in ("run", "kalshi", "records"):
            raise SweepError(f"--grid {key}: [{key.split('.', 1)[0]}] keys do not change a backtest's result; "
                             "sweep [strategy], [markets.TICKER], [risk] or [sim] keys")
        grid[key] = vals
    # every parameter set, as a task will load it: a type or range error names its key; a cross-key rule
    # (e.g. risk.resume_recovery <= risk.max_loss) names the combination that breaks it
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, combo))
        try:
            load_config(base_config, environ={}, cli={**(fixed or {}), **params})
        except ConfigError as exc:
            where = ", ".join(f"{k}={v}" for k, v in params.items())
            raise SweepError(f"--grid {where}: {exc}") from None
    return grid


@dataclass(slots=True, frozen=True)
class SweepTask:
    task_id: str
    params: dict[str, str]
    capture: Path
    seed: int

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items()) + f" on {self.capture.name}"


def capture_bundle(p: Path) -> list[Path]:
    """The files one capture stands for: a capture file and the ``markets.json`` beside it, or every
    capture file of a directory (rotation parts, later runs) and its ``markets.json``."""
    from kmm.record.capture import MARKETS_FILE, capture_files
    files = capture_files(p) if p.is_dir() else [p]
    defs = (p if p.is_dir() else p.parent) / MARKETS_FILE
    return files + ([defs] if defs.is_file() else [])


def _capture_identity(p: Path) -> str:
    return ";".join(f"{f.resolve()}:{f.stat().st_size}" for f in capture_bundle(p))


def expand(grid: Mapping[str, Sequence[str]], captures: Sequence[Path], seed: int = 0) -> list[SweepTask]:
    """Every (parameter set x capture), in a stable order; ids depend only on content."""
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        params = dict(zip(keys, combo))
        for cap in captures:
            h = hashlib.sha1(json.dumps({"p": params, "c": _capture_identity(cap), "s": seed},
                                        sort_keys=True).encode()).hexdigest()[:12]
            out.append(SweepTask(h, params, cap, seed))
    return out


# ---------------------------------------------------------------------------------------------- tasks
def _backtester() -> TaskFn:
    try:
        from kmm.research.backtest import run_backtest
    except ImportError as exc:
        raise SweepError(f"this kmm has no backtester (kmm.research.backtest: {exc}); kmm sweep runs "
                         "kmm backtest's run_backtest") from None
    return run_backtest


def _default_task(captures: Sequence[Path], cfg: KmmConfig, out: Path, *, seed: int = 0) -> Mapping[str, Any]:
    return _backtester()(captures, cfg, out, seed=seed)


def _max_inventory(out: Path) -> float | None:
    """Largest |position| of any market over the task's tape, contracts (None without a tape)."""
    tape = out / "tape.csv"
    if not tape.exists():
        return None
    from kmm.record.tape import read_tape
    best = None
    for r in read_tape(tape):
        v = abs(r.inventory) / 100
        best = v if best is None or v > best else best
    return best


def execute_task(task_fn: TaskFn, bundle: dict[str, bytes] | None, capture_name: str, capture_key: str,
                 cfg: KmmConfig, out: str, seed: int) -> dict[str, Any]:
    """Runs on a Ray worker (also callable in-process): materialise the capture (its files by name, from
    the object store) once per worker, run the task, return ``{"ok": True, "summary": ...,
    "max_inventory": ...}`` or ``{"ok": False, "error": ..., "traceback": ...}``. It never raises, so one
    failure cannot stop the sweep. ``bundle`` None: read ``capture_name`` where it is (a shared path)."""
    t0 = time.perf_counter()
    try:
        if bundle is None:
            cap = Path(capture_name)
        else:
            import tempfile
            home = Path(tempfile.gettempdir()) / f"kmm-sweep-{os.getuid()}" / capture_key
            home.mkdir(parents=True, exist_ok=True)
            for name, data in bundle.items():
                f = home / name
                if not f.exists():
                    tmp = home / f".{name}.{os.getpid()}.part"
                    tmp.write_bytes(data)
                    os.replace(tmp, f)
            # a directory stays a directory; a file keeps its markets.json beside it
            cap = home if Path(capture_name).is_dir() or len(
                [n for n in bundle if n.endswith(".bin.gz")]) > 1 else home / Path(capture_name).name
        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        summary = dict(task_fn([cap], cfg, outp, seed=seed))
        return {"ok": True, "summary": summary, "max_inventory": _max_inventory(outp),
                "seconds": time.perf_counter() - t0, "host": os.uname().nodename}
    except BaseException as exc:  # noqa: BLE001 - reported with its traceback, the sweep goes on
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - t0, "host": os.uname().nodename}


# ---------------------------------------------------------------------------------------------- sweep
@dataclass(slots=True)
class SweepResult:
    out: Path
    tasks: list[SweepTask]
    done: list[str] = field(default_factory=list)          # task ids finished in this call
    skipped: list[str] = field(default_factory=list)       # finished by an earlier call
    failed: dict[str, str] = field(default_factory=dict)   # task id -> error
    cancelled: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0


class Progress:
    """``[####......] 12/40 tasks  elapsed 0:41  ETA 1:35  (1 failed)`` on one line of ``stream``."""

    def __init__(self, total: int, stream: IO[str] | None, width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream, width
        self.t0 = time.monotonic()
        self.done = self.failed = 0

    @staticmethod
    def _clock(s: float) -> str:
        s = int(round(s))
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"

    def render(self, now: float | None = None) -> str:
        el = (time.monotonic() if now is None else now) - self.t0
        n = self.done + self.failed
        fill = int(self.width * n / self.total) if self.total else self.width
        eta = "?" if n == 0 else self._clock(el / n * (self.total - n))
        tail = f"  ({self.failed} failed)" if self.failed else ""
        return (f"[{'#' * fill}{'.' * (self.width - fill)}] {n}/{self.total} tasks  "
                f"elapsed {self._clock(el)}  ETA {eta}{tail}")

    def update(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.show(changed=True)

    def show(self, changed: bool = True) -> None:
        """Redraw in place on a terminal; elsewhere (a log, a pipe) one line per finished task."""
        if self.stream is None:
            return
        tty = getattr(self.stream, "isatty", lambda: False)()
        if tty:
            self.stream.write("\r" + self.render())
        elif changed:
            self.stream.write(self.render() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")
            self.stream.flush()


def _task_dir(out: Path, t: SweepTask) -> Path:
    return out / "tasks" / t.task_id


def _finished(out: Path, t: SweepTask) -> bool:
    return (_task_dir(out, t) / "summary.json").exists()


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _record(out: Path, t: SweepTask, res: Mapping[str, Any]) -> None:
    d = _task_dir(out, t)
    d.mkdir(parents=True, exist_ok=True)
    if res.get("ok"):
        (d / "error.txt").unlink(missing_ok=True)
        _write_json(d / "result.json", {k: v for k, v in res.items() if k != "summary"})
        _write_json(d / "summary.json", res["summary"])          # last: its presence marks the task done
    else:
        (d / "error.txt").write_text(f"task {t.task_id}: {t.describe()}\n{res.get('error')}\n\n"
                                     f"{res.get('traceback', '')}")


# Ray on Linux resolves a node address of 127.0.0.1 to the machine's outward address and binds its
# servers there (or on every interface). A local sweep's Ray is this machine's alone, so before Ray is
# imported, this switch (read once, at import) keeps the node on loopback: every server binds 127.0.0.1.
_RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _ray(address: str | None = None) -> Any:
    if address is None and "ray" not in sys.modules:
        os.environ.setdefault(_RAY_LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def _init_ray(ray: Any, address: str | None, workers: int | None) -> bool:
    """Start (or join) Ray; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "WARNING"}
    if address:
        kw["address"] = address
    else:
        kw["num_cpus"] = workers or os.cpu_count() or 1
        # a local Ray is this machine's alone: its processes bind to loopback, never another interface
        kw["_node_ip_address"] = "127.0.0.1"
        # local workers import this same kmm: hand them the driver's import path for kmm when it is a
        # source tree rather than an installed package
        import kmm
        root = str(Path(kmm.__file__).resolve().parent.parent)
        paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        kw["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(
            str(Path(p).resolve()) for p in paths))}}
    from kmm import _pure
    if os.environ.get(_pure.ENV):
        # the workers run the engine modules this process chose (`kmm sweep`: the compiled copies)
        kw.setdefault("runtime_env", {"env_vars": {}})["env_vars"][_pure.ENV] = os.environ[_pure.ENV]
    try:
        ray.init(**kw)
    except Exception as exc:  # noqa: BLE001
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SweepError(f"could not start or reach {where}: {exc}") from exc
    return True


def run_sweep(captures: Sequence[str | Path], grid: Mapping[str, Sequence[str]], out: str | Path, *,
              task_fn: TaskFn | None = None, address: str | None = None, workers: int | None = None,
              base_config: str | os.PathLike[str] | None = None, fixed: Mapping[str, str] | None = None,
              seed: int = 0, stream: IO[str] | None = sys.stderr, ship: str = "object_store",
              max_in_flight: int | None = None) -> SweepResult:
    """Run the sweep (see the module doc). ``ship="path"`` hands tasks the capture paths instead of
    the object store (a filesystem every worker sees). Ctrl-C cancels what is left and returns with
    ``interrupted`` set; what finished is kept."""
    caps = [Path(c) for c in captures]
    if task_fn is None:
        _backtester()           # fail before starting Ray, not once per task
    missing = [str(c) for c in caps if not (c.is_file() or (c.is_dir() and capture_bundle(c)))]
    if missing:
        raise SweepError(f"--capture: no capture file at {', '.join(missing)} (give capture.bin.gz files or "
                         "directories holding them)")
    if ship not in ("object_store", "path"):
        raise ValueError(f"run_sweep: ship must be 'object_store' or 'path', got {ship!r}")
    outp = Path(out)
    (outp / "tasks").mkdir(parents=True, exist_ok=True)
    tasks = expand(grid, caps, seed)
    result = SweepResult(outp, tasks)
    todo = []
    for t in tasks:
        if _finished(outp, t):
            result.skipped.append(t.task_id)
        else:
            todo.append(t)
    cfgs = {}
    for t in todo:
        key = json.dumps(t.params, sort_keys=True)
        if key not in cfgs:
            cfgs[key] = load_config(base_config, environ={}, cli={**(fixed or {}), **t.params})
        d = _task_dir(outp, t)
        d.mkdir(parents=True, exist_ok=True)
        _write_json(d / "task.json", {"task_id": t.task_id, "params": t.params, "capture": str(t.capture),
                                      "seed": t.seed})
    progress = Progress(len(tasks), stream)
    progress.done = len(result.skipped)
    t0 = time.monotonic()
    if not todo:
        progress.show()
        progress.close()
        return result
    ray = _ray(address)
    started = _init_ray(ray, address, workers)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_task)
        fn_ref = ray.put(task_fn or _default_task)
        cap_refs: dict[Path, Any] = {}
        cap_keys: dict[Path, str] = {}
        for c in {t.capture for t in todo}:
            cap_keys[c] = hashlib.sha1(_capture_identity(c).encode()).hexdigest()[:12]
            cap_refs[c] = (ray.put({f.name: f.read_bytes() for f in capture_bundle(c)})   # shipped once
                           if ship == "object_store" else None)
        cfg_refs = {k: ray.put(v) for k, v in cfgs.items()}
        pending: dict[Any, SweepTask] = {}
        queue = list(todo)
        limit = max_in_flight or max(4, 4 * int(ray.cluster_resources().get("CPU", 1)))
        progress.t0 = time.monotonic()       # the ETA counts from the first task, not from Ray's start-up
        progress.show()
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    t = queue.pop(0)
                    ref = remote.remote(fn_ref, cap_refs[t.capture], str(t.capture.resolve()), cap_keys[t.capture],
                                        cfg_refs[json.dumps(t.params, sort_keys=True)],
                                        str(_task_dir(outp, t).resolve() / "run"), t.seed)
                    pending[ref] = t
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    t = pending.pop(ref)
                    try:
                        res = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a worker died: report it like a failure
                        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc()}
                    _record(outp, t, res)
                    if res.get("ok"):
                        result.done.append(t.task_id)
                    else:
                        result.failed[t.task_id] = str(res.get("error"))
                        if stream is not None:
                            stream.write(f"\ntask {t.task_id} failed ({t.describe()}): {res.get('error')}"
                                         f" (traceback in {_task_dir(outp, t) / 'error.txt'})\n")
                    progress.update(bool(res.get("ok")))
                if not ready:
                    progress.show(changed=False)     # the elapsed time moves on a terminal
        except KeyboardInterrupt:
            result.interrupted = True
            for ref, t in pending.items():
                ray.cancel(ref, force=True)
                result.cancelled.append(t.task_id)
            result.cancelled.extend(t.task_id for t in queue)
    finally:
        progress.close()
        result.elapsed_s = time.monotonic() - t0
        if started:
            ray.shutdown()
    return result


# ---------------------------------------------------------------------------------------------- collect
def _flat_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k, v in s.items():
        if k == "positions" and isinstance(v, Mapping):
            for t, q in v.items():
                row[f"position.{t}"] = q
        elif k == "markets" and isinstance(v, list):
            row["markets"] = " ".join(map(str, v))
        elif isinstance(v, (dict, list)):
            row[k] = json.dumps(v, sort_keys=True)
        else:
            row[k] = v
    for k in _DECIMAL_FIELDS:
        if k in row:
            try:
                row[f"{k}_num"] = float(Decimal(str(row[k])))
            except (InvalidOperation, ValueError):
                row[f"{k}_num"] = None
    return row


def collect(out: str | Path) -> list[dict[str, Any]]:
    """One row per task directory: parameters, capture, status, every summary figure, max inventory."""
    outp = Path(out)
    rows = []
    for d in sorted((outp / "tasks").glob("*")):
        tj = d / "task.json"
        if not tj.exists():
            continue
        task = json.loads(tj.read_text())
        row: dict[str, Any] = {"task_id": task["task_id"], "capture": Path(task["capture"]).name,
                               "seed": task["seed"]}
        row.update({f"param.{k}": v for k, v in task["params"].items()})
        if (d / "summary.json").exists():
            row["status"] = "done"
            extra = json.loads((d / "result.json").read_text()) if (d / "result.json").exists() else {}
            row["max_inventory"] = extra.get("max_inventory")
            row["task_seconds"] = extra.get("seconds")
            row.update(_flat_summary(json.loads((d / "summary.json").read_text())))
        elif (d / "error.txt").exists():
            row["status"] = "failed"
            row["error"] = (d / "error.txt").read_text().splitlines()[1] if (d / "error.txt").read_text() else ""
        else:
            row["status"] = "not run"
        rows.append(row)
    return rows


def write_tables(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    written = [out / "sweep.csv"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    # one type per column: numbers stay numbers, anything mixed becomes text
    data: dict[str, list[Any]] = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        kinds = {type(v) for v in vals if v is not None}
        if kinds <= {int} or kinds <= {int, float}:
            data[c] = vals
        else:
            data[c] = [None if v is None else str(v) for v in vals]
    pq.write_table(pa.table(data), out / "sweep.parquet")
    written.append(out / "sweep.parquet")
    return written


# ---------------------------------------------------------------------------------------------- report
def _num(v: Any) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _grid_matrix(rows: list[dict[str, Any]], kx: str, ky: str | None, metric: str
                 ) -> tuple[list[str], list[str], list[list[float | None]]]:
    """Mean of ``metric`` over captures for each (x, y) cell; None where no task finished."""
    def order(vals: list[str]) -> list[str]:
        uniq = list(dict.fromkeys(vals))
        return sorted(uniq, key=float) if all(_num(v) is not None for v in uniq) else uniq
    xs = order([str(r[kx]) for r in rows])
    ys = order([str(r[ky]) for r in rows]) if ky else [""]
    mat: list[list[float | None]] = []
    for y in ys:
        line: list[float | None] = []
        for x in xs:
            vals = [v for r in rows if str(r[kx]) == x and (ky is None or str(r[ky]) == y)
                    and r.get("status") == "done" and (v := _num(r.get(metric))) is not None]
            line.append(sum(vals) / len(vals) if vals else None)
        mat.append(line)
    return xs, ys, mat


METRICS = (("net_pnl_num", "Net P&L ($)"), ("fills", "Fills"), ("max_inventory", "Max inventory (contracts)"))


def write_sweep_report(out: str | Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """``report.html`` of a sweep: heat maps (two grid keys), bar charts (one) or tables (more), the
    task table and the failures with their tracebacks."""
    from kmm.report import html as H
    from kmm.report.charts import Chart, _plt
    outp = Path(out)
    rows = collect(outp) if rows is None else rows
    pkeys = [k for k in (rows[0] if rows else {}) if k.startswith("param.")]
    for r in rows[1:]:
        for k in r:
            if k.startswith("param.") and k not in pkeys:
                pkeys.append(k)
    parts = []
    n_done = sum(r["status"] == "done" for r in rows)
    n_fail = sum(r["status"] == "failed" for r in rows)
    parts.append(f"<p>{len(rows)} tasks: {n_done} done, {n_fail} failed, {len(rows) - n_done - n_fail} not run. "
                 f"Cells are means over captures ({len({r['capture'] for r in rows})}).</p>")
    charts_dir = outp / "charts"
    charts_dir.mkdir(exist_ok=True)
    if pkeys and len(pkeys) <= 2:
        plt = _plt()
        kx = pkeys[0]
        ky = pkeys[1] if len(pkeys) == 2 else None
        for metric, label in METRICS:
            xs, ys, mat = _grid_matrix(rows, kx, ky, metric)
            c = Chart(f"sweep_{metric}", f"{label} over the grid")
            if all(v is None for line in mat for v in line):
                c.missing = f"no finished task reports {metric}"
            elif ky is None:
                fig, ax = plt.subplots(figsize=(7, 3.5))
                have = [(i, v) for i, v in enumerate(mat[0]) if v is not None]
                ax.bar([i for i, _ in have], [v for _, v in have], color="tab:blue")
                for i, v in enumerate(mat[0]):
                    if v is None:
                        ax.text(i, 0, "n/a", ha="center", va="bottom")
                ax.set_xticks(range(len(xs)))
                ax.set_xticklabels(xs)
                ax.set_xlabel(kx.removeprefix("param."))
                ax.set_ylabel(label)
                ax.set_title(c.title)
                c.png = _png_of(fig)
            else:
                import numpy as np
                arr = np.array([[np.nan if v is None else v for v in line] for line in mat], dtype=float)
                fig, ax = plt.subplots(figsize=(1.3 * len(xs) + 3, 0.8 * len(ys) + 2))
                norm = None
                cmap = "viridis"
                if metric == "net_pnl_num":     # red only for losses, green only for gains
                    lo_v, hi_v = float(np.nanmin(arr)), float(np.nanmax(arr))
                    if lo_v < 0 < hi_v:
                        from matplotlib.colors import TwoSlopeNorm
                        cmap, norm = "RdYlGn", TwoSlopeNorm(vcenter=0.0)
                    else:
                        cmap = "Greens" if lo_v >= 0 else "Reds_r"
                im = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, aspect="auto", norm=norm, origin="lower")
                for yi, line in enumerate(mat):
                    for xi, v in enumerate(line):
                        ax.text(xi, yi, "n/a" if v is None else f"{v:,.4g}", ha="center", va="center", fontsize=9,
                                bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0})
                ax.set_xticks(range(len(xs)))
                ax.set_xticklabels(xs)
                ax.set_yticks(range(len(ys)))
                ax.set_yticklabels(ys)
                ax.set_xlabel(kx.removeprefix("param."))
                ax.set_ylabel(ky.removeprefix("param."))
                ax.set_title(c.title)
                fig.colorbar(im, ax=ax, label=label)
                c.png = _png_of(fig)
            if c.png is not None:
                (charts_dir / f"{c.name}.png").write_bytes(c.png)
            parts.append(H.img(c))
            cells = [[H.e(y)] + ["n/a" if v is None else f"{v:,.4f}" for v in line] for y, line in zip(ys, mat)]
            parts.append(H.table([(ky or "").removeprefix("param.") + " \\ " + kx.removeprefix("param.")] + xs,
                                 cells))
    elif pkeys:
        parts.append("<p class='note'>More than two grid keys: see the task table (and sweep.csv) "
                     "rather than a heat map.</p>")
    cols = ["task_id", "capture"] + pkeys + ["status", "fills", "net_pnl", "fees", "max_inventory", "task_seconds"]
    parts.append("<h2>Tasks</h2>" + H.table(
        [c.removeprefix("param.") for c in cols],
        [[f'<span data-task="{H.e(r["task_id"])}">{H.e(r["task_id"])}</span>'] +
         [H.e("n/a" if r.get(c) is None else r.get(c)) for c in cols[1:]] for r in rows], left=2 + len(pkeys)))
    fails = [r for r in rows if r["status"] == "failed"]
    if fails:
        parts.append("<h2>Failed tasks</h2>")
        for r in fails:
            txt = (outp / "tasks" / r["task_id"] / "error.txt").read_text()
            parts.append(f"<h3>{H.e(r['task_id'])}</h3><pre>{H.e(txt)}</pre>")
    path = outp / "report.html"
    path.write_text(H.page(f"kmm sweep: {outp.name}", "\n".join(parts)), encoding="utf-8")
    return path


def _png_of(fig: Any) -> bytes:
    from kmm.report.charts import _png
    return _png(fig)


# ---------------------------------------------------------------------------------------------- CLI
def run_sweep_cli(args: Any, *, task_fn: TaskFn | None = None, stream: IO[str] = sys.stderr) -> int:
    from kmm.config import parse_set_args
    caps = [c.strip() for item in args.capture for c in item.split(",") if c.strip()]
    try:
        fixed = parse_set_args(args.set)
        grid = parse_grid(args.grid, base_config=args.config, fixed=fixed)
        res = run_sweep(caps, grid, args.out, task_fn=task_fn, address=args.address, workers=args.workers,
                        base_config=args.config, fixed=fixed, seed=args.seed, stream=stream,
                        ship="path" if getattr(args, "shared_path", False) else "object_store")
    except (SweepError, ConfigError) as exc:
        print(f"kmm sweep: {exc}", file=sys.stderr)
        return 2
    rows = collect(res.out)
    tables = write_tables(rows, res.out)
    report = write_sweep_report(res.out, rows)
    print(f"kmm sweep: {len(res.done)} done, {len(res.skipped)} already done, {len(res.failed)} failed, "
          f"{len(res.cancelled)} cancelled in {res.elapsed_s:.1f} s", file=stream)
    for t in res.tasks:
        if t.task_id in res.failed:
            print(f"  failed {t.task_id} ({t.describe()}): {res.failed[t.task_id]}", file=stream)
    print(f"kmm sweep: {', '.join(str(p) for p in tables)}, {report}", file=stream)
    if res.interrupted:
        print(f"kmm sweep: interrupted; run the same command again to finish the {len(res.cancelled)} "
              "remaining tasks", file=stream)
        return EXIT_INTERRUPTED
    return 1 if res.failed else 0
