"""``kmm execute`` and ``kmm execute compare``.

``kmm execute --market T --action buy-yes --size 10 --limit 0.45 [--algo walker] [--dry-run]`` runs
one execution on the venue ``kmm run`` would use (the embedded exchange when there are no
credentials), shows progress, and prints the final metrics. Sizes are contracts, prices dollars in
the user's terms (a NO price for buy-no / sell-no). ``--dry-run`` prints the decision from the live
book and sends nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from kmm._core.fixed import format_count
from kmm.errors import ConfigError, KmmError
from kmm.execution.algos import ALGORITHMS
from kmm.execution.decision import decide, format_decision
from kmm.execution.request import (ExecutionRequest, RequestError, parse_action, parse_edge, parse_price_arg,
                                   parse_size_arg)

__all__ = ["add_parser", "execute_command", "compare_command", "parse_param", "build_request", "run_execute"]

log = logging.getLogger(__name__)

from kmm.cli import exits  # noqa: E402

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_ORDERS_LEFT = exits.OK, exits.ERROR, exits.USAGE, exits.ORDERS_LEFT


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from kmm.cli.args import venue_args as _venue_args
    p = subparsers.add_parser(
        "execute", help="execute one order with a liquidity-aware taker algorithm (or compare algorithms)",
        usage="kmm execute --market T --action buy-yes|sell-yes|buy-no|sell-no --size N --limit P [options]\n"
              "       kmm execute compare [--algos A,B] [--runs N] [options]",
        description="Buy or sell YES/NO contracts with an execution algorithm, never past --limit. Without "
                    "credentials and without --env, kmm runs it on its embedded exchange. "
                    "'kmm execute compare' runs the algorithms side by side on simulated markets.")
    _venue_args(p)
    p.add_argument("--market", help="market ticker")
    p.add_argument("--action", help="buy-yes, sell-yes, buy-no or sell-no")
    p.add_argument("--size", help="contracts, e.g. 10 (2.50 on fractional markets)")
    p.add_argument("--limit", help="worst price in dollars, in the contract's own terms (a NO price for *-no)")
    p.add_argument("--price", help="posting price for simple/adaptive (default: the limit)")
    p.add_argument("--algo", default="simple", choices=sorted(ALGORITHMS), help="execution algorithm")
    p.add_argument("--edge", help="your fair value minus the market: 3c or 0.03")
    p.add_argument("--confidence", type=float, help="confidence in the edge, 0..1")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="algorithm or liquidity-policy parameter, e.g. --param patience_s=5 (repeatable)")
    p.add_argument("--timeout", type=float, metavar="S", help="end the execution after S seconds")
    p.add_argument("--dry-run", action="store_true", help="print the decision from the live book; send nothing")
    p.add_argument("--store", metavar="FILE", help="SQLite store (default: <[run] out_dir>/executions.sqlite)")
    p.add_argument("--view", choices=("auto", "live", "plain", "off"), default="auto",
                   help="progress: live redraw, plain lines or nothing (auto: live on a terminal)")
    p.set_defaults(func=execute_command)
    sub = p.add_subparsers(dest="execute_command", metavar="compare", title="optional subcommand")
    c = sub.add_parser("compare", help="compare algorithms on identical simulated markets (table + PNG)",
                       description="Run the chosen algorithms on identical simulated markets (same seed and "
                                   "flow, a thin and a thick book) several times; print a table and write "
                                   "a PNG chart.")
    c.add_argument("--algos", default=",".join(sorted(ALGORITHMS)), help="comma-separated algorithms")
    c.add_argument("--runs", type=int, default=3, help="runs per algorithm and scenario (default 3)")
    c.add_argument("--seed", type=int, default=1, help="simulation seed of the first run")
    c.add_argument("--size", type=float, default=50, help="contracts per execution (default 50)")
    c.add_argument("--out", metavar="DIR", default="kmm-compare", help="where the PNG and CSV go")
    c.add_argument("--scale", type=float, default=20.0,
                   help="simulated seconds per wall second (flow and algorithm clocks; default 20)")
    c.add_argument("--sim-seconds", type=float, default=60.0,
                   help="simulated time each execution may take (default 60)")
    c.set_defaults(func=compare_command)
    return p


def parse_param(item: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value) with ints, floats, booleans, none and comma lists understood."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RequestError(f"--param {item!r} must look like key=value, e.g. patience_s=5")
    return key, _value(text.strip())


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text:
        return [_value(t.strip()) for t in text.split(",")]
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def build_request(args: argparse.Namespace, fractional: bool) -> ExecutionRequest:
    """The request from the command line (checked; errors say which flag and why)."""
    missing = [f"--{n}" for n in ("market", "action", "size", "limit") if not getattr(args, n)]
    if missing:
        raise RequestError(f"kmm execute needs {', '.join(missing)} (e.g. --market KXSIMA-26-A --action buy-yes "
                           "--size 10 --limit 0.55)")
    _check_size_text(args.size)
    params = dict(parse_param(p) for p in args.param)
    if args.timeout is not None:
        params["timeout_s"] = args.timeout
    return ExecutionRequest(
        ticker=args.market, action=parse_action(args.action), size=parse_size_arg(args.size, fractional),
        limit_price=parse_price_arg(args.limit, "--limit"), algo=args.algo, params=params,
        price=parse_price_arg(args.price, "--price") if args.price else None,
        edge=parse_edge(args.edge) if args.edge else None, confidence=args.confidence, fractional=fractional)


def _check_size_text(text: str) -> None:
    """--size in contracts, positive: said in contracts, before the lot check of the market."""
    from decimal import Decimal, InvalidOperation
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise RequestError(f"--size {text!r} is not a number of contracts such as 10 or 2.50") from None
    if not value.is_finite() or value <= 0:
        raise RequestError(f"--size {text}: give a positive number of contracts, e.g. 10")
    if value != value.quantize(Decimal("0.01")):
        raise RequestError(f"--size {text}: contracts have at most 2 decimals (e.g. 2.50 on fractional markets)")


def check_args(args: argparse.Namespace) -> None:
    """Everything checkable before the venue starts: raises RequestError / ConfigError (exit 2)."""
    if args.timeout is not None and not args.timeout > 0:
        raise RequestError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    if args.confidence is not None and not 0.0 <= args.confidence <= 1.0:
        raise RequestError(f"--confidence {args.confidence:g}: give a number in 0..1")
    build_request(args, fractional=True)        # the market's lot is checked again once it is known


def execute_command(args: argparse.Namespace) -> int:
    from kmm.cli.args import load, preflight
    from kmm.kalshi import loop as kloop
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_args(args)
        preflight(args, "execute")
        cfg, explicit = load(args)
    except (ConfigError, RequestError) as exc:
        print(f"kmm execute: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return kloop.run(run_execute(cfg, args, explicit, sys.stdout))
    except (ConfigError, RequestError) as exc:
        print(f"kmm execute: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KmmError as exc:
        print(f"kmm execute: {exc}", file=sys.stderr)
        return EXIT_ERROR


async def run_execute(cfg: Any, args: argparse.Namespace, explicit: bool, out: TextIO) -> int:
    """The body of ``kmm execute`` (an async function so tests can run it in their loop)."""
    from kmm.engine.app import open_venue
    from kmm.execution.driver import ExecutionService
    if not args.market:
        build_request(args, False)  # raises the "needs --market ..." error
    async with open_venue(cfg, args, explicit) as venue:
        print(f"kmm execute: {venue.label}", file=out)
        if args.dry_run:
            async with ExecutionService(venue, recover=False) as svc:
                info = await svc.market(args.market)
                req = build_request(args, info.fractional)
                req.check_market(info)
                book = await svc.book(args.market)
                levels = book.asks(20) if req.side == "bid" else book.bids(20)
                own = book.best_bid() if req.side == "bid" else book.best_ask()
                from kmm.execution.algos import build_algo
                algo = build_algo(req, info)    # validates the parameters as a real run would
                d = decide(levels, req.action, req.size, req.limit, policy=algo.policy, grid=info.grid,
                           lot=info.lot, edge=req.edge, confidence=req.confidence, opposite_best=own,
                           fee_rate_e6=info.taker_fee_rate_e6)
                print(format_decision(d, req.ticker, dry_run=True), file=out)
                print(f"algorithm {req.algo}: parameters accepted", file=out)
            return EXIT_OK
        store = Path(args.store) if args.store else Path(cfg.run.out_dir) / "executions.sqlite"
        view = args.view if args.view != "auto" else ("live" if out.isatty() else "plain")
        async with ExecutionService(venue, store=store, limits=cfg.risk_limits()) as svc:
            if svc.recovered:
                print(f"recovered {len(svc.recovered)} execution(s) left open by a previous run: "
                      f"{', '.join(svc.recovered)} (their resting orders were cancelled)", file=out)
            info = await svc.market(args.market)
            req = build_request(args, info.fractional)
            handle = await svc.submit(req)
            print(f"execution {handle.execution_id}: {req.describe()} (store {store})", file=out)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            try:
                await _progress(handle, stop, view, out)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(sig)
        m = handle.metrics
        reasons = reject_reasons(svc, handle)
        print(report(m, reasons), file=out)
        if not svc.stop_verified:
            print("kmm execute: child orders may still rest at the exchange: check and cancel them", file=sys.stderr)
            return EXIT_ORDERS_LEFT
    if m.filled_size < m.target_size:
        why = f"; rejects: {reasons}" if reasons else ""
        print(f"kmm execute: not done: filled {format_count(m.filled_size)} of {format_count(m.target_size)} "
              f"contracts, ended {ended(m)}{why}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def reject_reasons(svc: Any, handle: Any) -> str:
    """Why child orders were refused: the exchange's codes and the risk gate's reasons, counted."""
    # every refusal of this command's one execution goes through the service's count of reasons
    counts: dict[str, int] = dict(getattr(svc, "errors", {}) or {})
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def progress_line(handle: Any) -> str:
    algo = handle.algo
    m = handle.metrics
    act = algo.request.action
    avg = "-" if m.avg_fill_price is None else f"{act.from_yes(m.avg_fill_price) / 10000:.4f}"
    kids = handle.live_children
    show = ", ".join(f"{format_count(c.total - c.filled)}@{act.from_yes(c.price) / 10000:.4f}" for c in kids[:4])
    more = f" +{len(kids) - 4}" if len(kids) > 4 else ""
    return (f"filled {format_count(m.filled_size)}/{format_count(m.target_size)} avg {avg} "
            f"fees ${m.fees / 10000:.4f} | live children {len(kids)}: {show or '-'}{more}")


async def _progress(handle: Any, stop: asyncio.Event, view: str, out: TextIO) -> None:
    last = ""
    last_t = 0.0
    cancelled = False
    while not handle.done:
        if stop.is_set() and not cancelled:
            cancelled = True
            print("\ncancelling: every child order is being cancelled", file=out)
            await handle.cancel("cancelled by the user")
        line = progress_line(handle)
        if view == "live":
            out.write("\r\x1b[K" + line)
            out.flush()
        elif view == "plain" and (line != last and time.monotonic() - last_t >= 1.0):
            print(line, file=out)
            last, last_t = line, time.monotonic()
        await asyncio.sleep(0.2)
    if view == "live":
        out.write("\r\x1b[K" + progress_line(handle) + "\n")
    elif view == "plain":
        print(progress_line(handle), file=out)


def ended(m: Any) -> str:
    """``done``, ``partial``, ``expired``, ``canceled`` or ``failed``, with the algorithm's end reason:
    the store's execution status, except that an execution ended short of its size is ``partial``."""
    from kmm.execution.driver import store_status
    status = store_status(m.end_reason or "")
    if status == "done" and m.filled_size < m.target_size:
        status = "partial"
    return f"{status} ({m.end_reason or 'no reason recorded'})"


def report(m: Any, rejects: str = "") -> str:
    """The final report: the execution's metrics, one per line, in the user's terms."""
    act = m.action

    def px(v: float | None) -> str:
        return "-" if v is None else f"{act.from_yes(v) / 10000:.4f}"

    def secs(ns: int | None) -> str:
        if ns is None:
            return "-"
        return f"{ns / 1e6:.1f} ms" if ns < 1_000_000_000 else f"{ns / 1e9:.2f} s"

    # the end can be stamped before the last fill's record: the execution lasted at least until it
    spans = [t for t in (m.duration_ns, m.time_to_full_fill_ns, m.time_to_first_fill_ns) if t is not None]
    duration = max(spans) if spans else None

    def slip(v: float | None, pct: float | None) -> str:
        return "-" if v is None else f"{v / 10000:+.4f} $/contract ({pct:+.2f} %)"

    calls = ", ".join(f"{k} {v}" for k, v in sorted(m.api_calls.items())) or "none"
    rows = [
        ("execution", f"{m.execution_id} ({m.algo}, {act.value})"),
        ("filled", f"{format_count(m.filled_size)} / {format_count(m.target_size)} contracts ({m.fill_rate:.1%})"),
        ("average price", px(m.avg_fill_price)),
        ("limit", px(m.limit)),
        ("arrival best", px(m.arrival_price)),
        ("slippage vs arrival", slip(m.slippage_vs_arrival, m.slippage_vs_arrival_pct)),
        ("slippage vs limit", slip(m.slippage_vs_limit, m.slippage_vs_limit_pct)),
        ("fees", f"${m.fees / 10000:.4f}"),
        ("time to first fill", secs(m.time_to_first_fill_ns)),
        ("time to full fill", secs(m.time_to_full_fill_ns)),
        ("duration", secs(duration)),
        ("child orders", f"{m.child_orders} (walks {m.walks}, splits {m.splits}, rejects {m.rejects})"),
        *((("rejected because", rejects),) if rejects else ()),
        ("API calls", calls),
        ("ended", ended(m)),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def check_compare_args(args: argparse.Namespace) -> None:
    """Before any simulation runs: the algorithms, the numbers, and matplotlib for the chart."""
    import importlib.util
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = [a for a in algos if a not in ALGORITHMS]
    if not algos or unknown:
        raise RequestError(f"--algos {args.algos!r}: unknown {', '.join(unknown) or '(none given)'}; "
                           f"choose from {', '.join(sorted(ALGORITHMS))}")
    if len(set(algos)) != len(algos):
        raise RequestError(f"--algos {args.algos!r}: an algorithm is listed twice")
    for name, value in (("--runs", args.runs), ("--scale", args.scale), ("--sim-seconds", args.sim_seconds)):
        if not value > 0:
            raise RequestError(f"{name} {value:g}: must be positive")
    if not args.size > 0 or round(args.size * 100) % 100:
        raise RequestError(f"--size {args.size:g}: give a positive whole number of contracts")
    if importlib.util.find_spec("matplotlib") is None:
        raise RequestError("kmm execute compare draws its chart with matplotlib, which is not installed: "
                           "pip install 'kmm[plot]' (nothing was run)")


def compare_command(args: argparse.Namespace) -> int:
    from kmm.execution.compare import CompareError, run_compare_cli
    from kmm.kalshi import loop as kloop
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_compare_args(args)
        return kloop.run(run_compare_cli(args, sys.stdout))
    except (RequestError, CompareError) as exc:
        print(f"kmm execute compare: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KmmError as exc:
        print(f"kmm execute compare: {exc}", file=sys.stderr)
        return EXIT_ERROR
