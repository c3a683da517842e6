"""The ``kmm`` command: every subcommand's parser is registered here, side by side.

Each entry of :data:`COMMANDS` is a module with ``add_parser(subparsers)``; adding a subcommand is one
line. Exit codes are in :mod:`kmm.cli.exits`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kmm import __version__

# (module, function) registering one subcommand each, in the order `kmm --help` lists them
COMMANDS: list[tuple[str, str]] = [
    ("kmm.cli.args", "add_run_parser"),
    ("kmm.cli.args", "add_probe_parser"),
    ("kmm.execution.cli", "add_parser"),
    ("kmm.research.cli", "add_parsers"),      # kmm record, kmm backtest
    ("kmm.report.cli", "add_parsers"),        # kmm report, kmm sweep
    ("kmm.sim.cli", "add_parser"),
    ("kmm.cli.control", "add_parsers"),
    ("kmm.cli.config_cmd", "add_parser"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmm",
        description="Low-latency market making and execution for Kalshi, with an embedded exchange.",
    )
    parser.add_argument("--version", action="version", version=f"kmm {__version__} (core: {_core_build()})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, func in COMMANDS:
        getattr(importlib.import_module(module), func)(subparsers)
    return parser


def _core_build() -> str:
    try:
        from kmm._core import BUILD
    except ImportError as exc:  # an uncompiled source tree
        return f"not compiled: {exc}"
    return BUILD


# the commands that replay captures run the engine modules' compiled copies (kmm._pure says why); the
# choice is made before the parser's imports load the engine
REPLAYING = frozenset({"backtest", "sweep"})


def main(argv: Sequence[str] | None = None) -> int:
    from kmm.cli import exits
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in REPLAYING:
        from kmm import _pure
        _pure.use_compiled()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return exits.USAGE
    func = getattr(args, "func", None)
    if func is not None:
        try:
            return int(func(args))
        except KeyboardInterrupt:
            print(f"kmm {args.command}: interrupted", file=sys.stderr)
            return 130
        except OSError as exc:   # a path or port the user named: say which, no traceback
            where = f" {exc.filename}" if exc.filename else ""
            print(f"kmm {args.command}: {exc.strerror or exc}{where}; check the path or port you gave",
                  file=sys.stderr)
            return exits.ERROR
    return exits.OK


if __name__ == "__main__":
    raise SystemExit(main())
