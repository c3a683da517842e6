"""The ``kmm`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kmm import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmm",
        description="Low-latency market making and execution for Kalshi, with an embedded exchange.",
    )
    parser.add_argument("--version", action="version", version=f"kmm {__version__} (core: {_core_build()})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from kmm.engine import app
    from kmm.execution import cli as execute_cli
    from kmm.report import cli as report_cli
    from kmm.sim import cli as sim_cli
    app.add_run_parser(subparsers)
    app.add_probe_parser(subparsers)
    execute_cli.add_parser(subparsers)
    sim_cli.add_parser(subparsers)
    report_cli.add_parsers(subparsers)
    return parser


def _core_build() -> str:
    try:
        from kmm._core import BUILD
    except ImportError as exc:  # an uncompiled source tree
        return f"not compiled: {exc}"
    return BUILD


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    func = getattr(args, "func", None)
    if func is not None:
        return int(func(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
