"""Run the benchmarks and print the README's table: ``python bench/report.py [pytest args...]``.

Each pytest-benchmark group pairs kmm's implementation (extra_info role "kmm") with a baseline measured
in the same run (role "baseline"); times are divided by extra_info "ops" (operations per call), and the
ratio is baseline median / kmm median. Latency harnesses that measure their own distribution put
``p50_ns``/``p99_ns`` (optionally ``p999_ns``, ``budget_ns`` and ``budget_on`` = "p50" | "p99", default
"p50") in extra_info; they are printed as such. A harness that measures several stages in one run puts
them in ``extra_info["stages"]`` as ``{group: {p50_ns, p99_ns, ...}}``: each stage becomes its own row.
Budget column: "met" or "MISSED" against the stated percentile. Throughput harnesses may state their
budget as ns per operation (``budget_ns``) with ``unit`` saying what one operation is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def summarize(data: dict) -> list[dict]:
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))

    def add(group: str, name: str, role: str, info: dict, med: float, p99: float | None) -> None:
        groups[group][role].append(
            {"name": name, "median_ns": med, "p99_ns": p99, "p999_ns": info.get("p999_ns"),
             "budget_ns": info.get("budget_ns"), "budget_on": info.get("budget_on", "p50"),
             "unit": info.get("unit"), "label": info.get("label")})

    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        role = info.get("role", "kmm")
        ops = max(1, int(info.get("ops", 1)))
        stats = b["stats"]
        raw = stats.get("data") or []
        if "stages" in info:
            for group, st in info["stages"].items():
                add(group, b["name"], role, st, float(st["p50_ns"]), float(st.get("p99_ns") or 0.0) or None)
            continue
        if "p50_ns" in info:
            med, p99 = float(info["p50_ns"]), float(info.get("p99_ns", 0.0)) or None
        else:
            med = stats["median"] * 1e9 / ops
            p99 = _percentile(raw, 0.99) * 1e9 / ops if raw else None
        add(b.get("group") or b["name"], b["name"], role, info, med, p99)
    rows = []
    for group in sorted(groups):
        roles = groups[group]
        base = roles.get("baseline", [])
        kmm = roles.get("kmm", [])
        if not kmm:
            rows.append({"group": group, "kmm": None, "baseline": base[0] if base else None, "ratio": None})
        for k in kmm:
            ratio = (base[0]["median_ns"] / k["median_ns"]) if base and k["median_ns"] else None
            name = f"{group} [{k['label']}]" if k["label"] else group   # several kmm rows, one baseline
            rows.append({"group": name, "kmm": k, "baseline": base[0] if base else None, "ratio": ratio})
    return rows


#: Which configuration each row was measured in, by the prefix of its group.
CONFIGURATIONS = (
    ("kmm run config:", "kmm run's own configuration: recorder on (ops.log, tape.csv, kmm.sqlite, capture), "
                        "compiled pipeline, 3 markets, busy flow, simulator in its own process"),
    ("wire to wire:", "kmm run's configuration, stamped by the simulator (frame write -> order arrival); "
                      "baseline = the minimal pre-built-request client"),
    ("scale:", "kmm run's configuration, 1/10/100/300 markets on one connection; CPU per book message "
               "and frame -> decided"),
    ("engine:", "the quiet configuration: no recorder (bench_engine.py), 3 markets, busy flow"),
    ("", "everything else: one component in one process, no I/O"),
)


def configuration(group: str) -> str:
    for prefix, text in CONFIGURATIONS:
        if group.startswith(prefix):
            return text
    return CONFIGURATIONS[-1][1]


def legend() -> str:
    return "\n".join(f"- `{p or '(other)'}` rows: {t}" for p, t in CONFIGURATIONS)


def render(rows: list[dict]) -> str:
    out = [legend(), "",
           "| operation | kmm median | kmm p99 | baseline median | speed-up | budget |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        k, b = r["kmm"], r["baseline"]
        if k is None:
            out.append(f"| {r['group']} | - | - | {_fmt_ns(b['median_ns']) if b else '-'} | - | - |")
            continue
        budget = "-"
        if k["budget_ns"]:
            on = k["budget_on"]
            value = k["p99_ns"] if on == "p99" else k["median_ns"]
            verdict = "" if value is None else (" met" if value <= k["budget_ns"] else " **MISSED**")
            budget = f"{on} <= {_fmt_ns(k['budget_ns'])}{verdict}"
        ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "-"
        out.append(f"| {r['group']} | {_fmt_ns(k['median_ns'])} | {_fmt_ns(k['p99_ns'])} | "
                   f"{_fmt_ns(b['median_ns']) if b else '-'} | {ratio} | {budget} |")
    return "\n".join(out)


def wire_ratios(rows: list[dict]) -> str:
    """Issue 15's wire-to-wire targets are ratios to the floor at p50 (2x) and at p99 (3x); the table's
    speed-up column is the baseline's median over kmm's, so both ratios are printed under it."""
    out = []
    for r in rows:
        k, b = r["kmm"], r["baseline"]
        if not r["group"].startswith("wire to wire:") or k is None or b is None:
            continue
        p99 = (f"{k['p99_ns'] / b['p99_ns']:.2f}x (floor p99 {_fmt_ns(b['p99_ns'])})"
               if k["p99_ns"] and b["p99_ns"] else "-")
        out.append(f"- {r['group']}: kmm / floor p50 {k['median_ns'] / b['median_ns']:.2f}x (target 2x), "
                   f"p99 {p99} (target 3x)")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={out}", "--benchmark-save-data", *argv]
        rc = subprocess.call(cmd)
        if not out.exists():
            print(f"benchmarks failed (exit {rc}); no results written", file=sys.stderr)
            return rc or 1
        rows = summarize(json.loads(out.read_text()))
        print(render(rows))
        ratios = wire_ratios(rows)
        if ratios:
            print("\n" + ratios)
        if rc != 0:
            print(f"\nsome benchmarks failed (exit {rc}): the table holds only those that ran", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
