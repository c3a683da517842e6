"""The ``kmm report`` and ``kmm sweep`` subcommands (parsers and entry points)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parsers", "report_command", "sweep_command"]


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="write a tearsheet (report.html + PNG charts) for run/execute/backtest output directories",
        description="Read one or more kmm output directories (kmm run, kmm run --paper, kmm backtest, "
                    "kmm execute) and write a self-contained report.html (opens with no network) and the "
                    "charts as PNGs. Several directories are compared side by side.")
    p.add_argument("dirs", nargs="+", metavar="RUN_DIR", help="output directory of a run")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the run directory; ./kmm-report for several)")
    p.add_argument("--format", default="html,png", help="comma-separated: html, png (default both)")
    p.set_defaults(func=report_command)

    s = subparsers.add_parser(
        "sweep", help="backtest a grid of parameters over captures on Ray (needs kmm[research])",
        description="Run one backtest per (parameter set x capture) on Ray, locally (default: as many "
                    "workers as cores) or on a cluster (--address), and collect sweep.parquet, sweep.csv "
                    "and a report.html. Re-running with the same --out skips finished tasks.")
    s.add_argument("--capture", action="append", required=True, metavar="PATH",
                   help="capture file (capture.bin.gz) to backtest on (repeatable; several per flag allowed "
                        "with commas)")
    s.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                   help="a config key and its values, e.g. strategy.gamma=0.05,0.1,0.2 (repeatable)")
    s.add_argument("--config", metavar="FILE", help="base kmm.toml (default: built-in defaults)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="fixed override for every task (repeatable)")
    s.add_argument("--address", help="Ray cluster address (e.g. ray://host:10001 or host:6379); default: local")
    s.add_argument("--workers", type=int, help="local Ray: number of CPUs to use (default: all cores)")
    s.add_argument("--out", default="kmm-sweep", metavar="DIR", help="sweep directory (default ./kmm-sweep)")
    s.add_argument("--seed", type=int, default=0, help="backtest seed for every task")
    s.add_argument("--shared-path", action="store_true",
                   help="workers read the captures where they are (a filesystem every worker sees) instead "
                        "of receiving them through Ray's object store")
    s.set_defaults(func=sweep_command)


def report_command(args: argparse.Namespace) -> int:
    from kmm.report.build import build_report
    from kmm.report.charts import ChartError
    from kmm.report.data import ReportError
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    try:
        written = build_report(args.dirs, args.out, formats)
    except (ReportError, ChartError) as exc:
        print(f"kmm report: {exc}", file=sys.stderr)
        return 2
    for p in written["html"]:
        print(f"kmm report: {p}")
    if written["png"]:
        print(f"kmm report: {len(written['png'])} charts in {written['png'][0].parent}")
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    from kmm.report.sweep import run_sweep_cli
    return run_sweep_cli(args)
