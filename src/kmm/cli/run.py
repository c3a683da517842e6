"""``kmm run`` and ``kmm probe``: the checks of :mod:`kmm.cli.args` first (exit 2 before anything
connects), then the engine's commands in :mod:`kmm.engine.app`."""

from __future__ import annotations

import argparse
import sys

from kmm.cli import exits
from kmm.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from kmm.cli.args import out_dir, preflight
    from kmm.engine import app
    try:
        cfg = preflight(args, "run")
        args.out = str(out_dir(cfg, args))
    except ConfigError as exc:
        print(f"kmm run: {exc}", file=sys.stderr)
        return exits.USAGE
    return int(app.run_command(args))


def probe(args: argparse.Namespace) -> int:
    from kmm.cli.args import preflight
    from kmm.engine import app
    try:
        preflight(args, "probe")
    except ConfigError as exc:
        print(f"kmm probe: {exc}", file=sys.stderr)
        return exits.USAGE
    return int(app.probe_command(args))
