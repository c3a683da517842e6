"""``kmm config check FILE`` / ``kmm config example`` / ``kmm config markdown``.

``check`` loads the file exactly as ``kmm run --config FILE`` does (file, then ``KMM_*`` environment)
and exits as ``kmm run`` would for it: 0 when it loads, 2 (usage) when it is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kmm.cli import exits


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("config", help="check a kmm.toml, or print the example / the reference",
                              description="Check a configuration file as `kmm run --config FILE` would read "
                                          "it (exit 0, or 2 with the reason), or print the example file or "
                                          "the markdown reference of every key.")
    sub = p.add_subparsers(dest="config_command", metavar="check|example|markdown", required=True)
    c = sub.add_parser("check", help="load FILE (and the KMM_* environment) and report the first problem")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=check)
    e = sub.add_parser("example", help="print a kmm.toml with every key at its default")
    e.set_defaults(func=lambda a: _print("example"))
    m = sub.add_parser("markdown", help="print the markdown reference of every key")
    m.set_defaults(func=lambda a: _print("markdown"))
    return p


def _print(what: str) -> int:
    from kmm.config import render_example, render_markdown_reference
    sys.stdout.write(render_example() if what == "example" else render_markdown_reference())
    return exits.OK


def check(args: argparse.Namespace) -> int:
    from kmm.config import load_config, unknown_environment
    from kmm.errors import ConfigError
    for warning in unknown_environment():
        print(f"kmm config check: warning: {warning}", file=sys.stderr)
    try:
        cfg = load_config(args.file, environ=os.environ)
    except ConfigError as exc:
        print(f"kmm config check: {exc}", file=sys.stderr)
        return exits.USAGE
    print(f"{args.file}: ok (env {cfg.run.env}, {len(cfg.tickers())} markets, "
          f"{len(cfg.markets)} market overrides)")
    return exits.OK
