"""The ``kmm record`` and ``kmm backtest`` subcommands (registered by ``kmm.cli``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from kmm.errors import ConfigError, KmmError

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


def add_parsers(subparsers: Any) -> None:
    add_record_parser(subparsers)
    add_backtest_parser(subparsers)


def add_record_parser(subparsers: Any) -> argparse.ArgumentParser:
    from kmm.engine.app import _venue_args
    from kmm.research.record import record_command
    p = subparsers.add_parser(
        "record", help="capture the public feed of markets (no trading) for kmm backtest",
        description="Record book, trades, ticker and lifecycle frames of the markets into the capture "
                    "format, with markets.json beside it. Without credentials and --env it records the "
                    "embedded exchange started in-process, like kmm run.")
    _venue_args(p)
    p.add_argument("--markets", help="comma-separated market tickers (default: the sim's markets)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds (default: SIGINT)")
    p.add_argument("--out", metavar="DIR", help="output directory (default ./kmm-out/record-<timestamp>)")
    p.add_argument("--rotate-mb", type=float, default=256.0, metavar="MB",
                   help="start a new capture file after this many MB of frames (default 256; 0: never)")
    p.add_argument("--rotate-s", type=float, default=0.0, metavar="SECONDS",
                   help="start a new capture file this often (default 0: never)")
    p.set_defaults(func=record_command)
    return p


def add_backtest_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "backtest", help="replay captures through the engine against the fill simulator",
        description="Replay recorded frames through kmm's own pipeline, strategy, differ, risk gate, order "
                    "manager and portfolio, with a queue-position and latency model in place of the "
                    "exchange. Writes ops.log, tape.csv, kmm.sqlite and summary.json into --out. "
                    "--set backtest.KEY=VALUE sets the replay's own knobs (queue_model, queue_power, "
                    "feed_latency, entry_latency, response_latency, latency_from, trade_window_ms, "
                    "rate_tier, book_only, settle=T1=yes,T2=no).")
    p.add_argument("--capture", nargs="+", metavar="PATH", default=[],
                   help="capture files or directories (a kmm run or kmm record output directory)")
    p.add_argument("--compare", metavar="RUN_DIR",
                   help="replay this kmm run directory with the latency fitted from it and compare with it")
    p.add_argument("--config", metavar="FILE", help="kmm.toml (the strategy and risk settings to replay with)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a kmm.toml key or a backtest.KEY (repeatable)")
    p.add_argument("--markets", help="comma-separated tickers to replay (default: all in markets.json)")
    p.add_argument("--strategy", choices=("stoikov", "inside"), help="quoting strategy (default stoikov)")
    p.add_argument("--out", metavar="DIR", help="output directory (default ./kmm-out/backtest-<timestamp>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latency draws (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=backtest_command)
    return p


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    import os

    from kmm.config import load_config, parse_set_args
    from kmm.research.backtest import BacktestOptions
    pairs = parse_set_args(args.set)
    bt = {k.split(".", 1)[1]: v for k, v in pairs.items() if k.startswith("backtest.")}
    cli = {k: v for k, v in pairs.items() if not k.startswith("backtest.")}
    if args.markets:
        cli["run.markets"] = args.markets
    if args.strategy:
        cli["run.strategy"] = args.strategy
    cfg = load_config(args.config or os.environ.get("KMM_CONFIG"), environ=os.environ, cli=cli)
    return cfg, BacktestOptions.from_pairs(bt)


def backtest_command(args: argparse.Namespace) -> int:
    try:
        cfg, opt = _load(args)
    except (ConfigError, KmmError, ValueError) as exc:
        print(f"kmm backtest: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not args.capture and not args.compare:
        print("kmm backtest: give --capture PATH... or --compare RUN_DIR", file=sys.stderr)
        return EXIT_CONFIG
    out = Path(args.out) if args.out else Path(cfg.run.out_dir) / ("backtest-" + time.strftime("%Y%m%d-%H%M%S"))

    def progress(frac: float) -> None:
        if not args.quiet:
            print(f"kmm backtest: {frac * 100:5.1f}%", file=sys.stderr, flush=True)
    try:
        if args.compare:
            from kmm.research.compare import compare_run, render
            result = compare_run(Path(args.compare), cfg, out, seed=args.seed, options=opt)
            print(render(result))
            print(f"kmm backtest: records and compare.json in {out}", file=sys.stderr)
            return EXIT_OK
        from kmm.research.backtest import Backtest
        summary = Backtest([Path(c) for c in args.capture], cfg, out, seed=args.seed, options=opt,
                           progress=progress).run()
    except (ConfigError, KmmError, OSError, ValueError) as exc:
        print(f"kmm backtest: {exc}", file=sys.stderr)
        return EXIT_ERROR
    d = summary.get("details", {})
    print(json.dumps({k: v for k, v in summary.items() if k != "details"}, indent=1))
    print(f"kmm backtest: {summary['book_messages']} book messages in {d.get('elapsed_s')} s "
          f"({summary['messages_per_s']:,.0f}/s, {d.get('speedup_vs_real_time')}x real time); records in {out}",
          file=sys.stderr)
    return EXIT_OK
