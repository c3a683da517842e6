"""``kmm run`` and ``kmm probe``: resolve the venue, start the embedded exchange when there is no
account, open the records, run the live loop under uvloop, and stop cleanly on SIGINT/SIGTERM.

Which venue: with ``--env demo|prod`` (or ``[run] env``) kmm talks to Kalshi with the configured key.
With no ``--env`` on the command line and no credentials anywhere, it starts ``kmm sim`` in-process on
127.0.0.1 with synthetic flow, creates an account there, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kmm.cli import exits
from kmm.cli.args import has_credentials as _has_credentials
from kmm.cli.args import load
from kmm.cli.args import out_dir as _out_dir
from kmm.cli.args import venue_args as _venue_args
from kmm.config import KmmConfig
from kmm.cpus import parse_cpus, pin_thread
from kmm.errors import ConfigError, KmmError

log = logging.getLogger("kmm.app")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_ORDERS_LEFT = exits.OK, exits.ERROR, exits.USAGE, exits.ORDERS_LEFT
__all__ = ["load", "open_venue", "run_command", "probe_command", "_venue_args", "_has_credentials", "_out_dir"]


@dataclass(slots=True)
class Venue:
    """Where the engine connects: a ConnectorConfig plus a label, and the in-process sim if any."""

    conn: Any
    label: str
    sim: Any = None


def _connector_cli(cfg: KmmConfig, args: argparse.Namespace) -> dict[str, Any]:
    cli: dict[str, Any] = dict(cfg.kalshi_cli)
    cli.update({"env": cfg.run.env, "allow_prod": cfg.run.allow_prod or None, "rest_url": args.rest_url,
                "ws_url": args.ws_url, "api_key_id": args.api_key_id, "private_key": args.private_key})
    return {k: v for k, v in cli.items() if v not in (None, "")}


@contextlib.asynccontextmanager
async def open_venue(cfg: KmmConfig, args: argparse.Namespace, explicit: bool) -> AsyncIterator[Venue]:
    """Yield the venue; an in-process sim is started (and stopped on exit) when that is the venue."""
    from kmm.kalshi import ConnectorConfig
    use_sim = cfg.run.env == "sim" and not args.rest_url and not (explicit is False and _has_credentials(cfg, args)
                                                                   and cfg.run.env != "sim")
    signer_cpus = parse_cpus(cfg.run.signer_cpus, "run.signer_cpus")
    if not use_sim:
        conn = ConnectorConfig.resolve(cfg.kalshi, _connector_cli(cfg, args), os.environ)
        conn = replace(conn, signer_cpus=signer_cpus, signer_nice=cfg.run.signer_nice)
        yield Venue(conn, f"{conn.env} ({conn.rest_url})")
        return
    from kmm.sim import SimConfig, SimExchange
    from kmm.sim.config import default_markets
    known = {m.ticker: m for m in default_markets()}
    unknown = [t for t in cfg.tickers() if t not in known]
    if unknown:  # never invent a market: an unknown ticker is an error, as the standalone kmm sim answers
        raise ConfigError(f"market {', '.join(unknown)} is not listed on kmm's embedded exchange; it lists "
                          f"{', '.join(known)}")
    specs = [known[t] for t in cfg.tickers()]
    scfg = SimConfig(seed=cfg.sim.seed, flow=cfg.sim.flow, speed=cfg.sim.speed, rate_tier=cfg.sim.rate_tier,
                     balance=str(cfg.sim.balance // 10_000), markets=specs)
    async with SimExchange(scfg) as sim:
        # the embedded account holds the configured balance on every shard the chosen markets use, as if
        # transferred there already (a real account must fund each shard: kmm run checks it at start)
        extra = {m.exchange_index: scfg.balance for m in specs if m.exchange_index}
        key_id, pem = sim.create_key(shard_balances=extra)
        conn = ConnectorConfig.resolve(cfg.kalshi, {**_connector_cli(cfg, args), "env": "sim",
                                                    "rest_url": sim.rest_url, "ws_url": sim.ws_url}, {})
        conn = conn.with_server(sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=pem)
        conn = replace(conn, signer_cpus=signer_cpus, signer_nice=cfg.run.signer_nice)
        reason = "no Kalshi credentials configured" if not _has_credentials(cfg, args) else "env = sim"
        msg = (f"{reason}: trading on kmm's embedded exchange (kmm sim) in-process at {sim.rest_url} "
               f"with {cfg.sim.flow} synthetic flow (seed {cfg.sim.seed})")
        log.info("%s", msg)
        print(msg, file=sys.stderr)
        yield Venue(conn, "sim (in-process)", sim)


# ---------------------------------------------------------------------------------------- kmm run
def run_command(args: argparse.Namespace) -> int:
    from kmm.kalshi import loop as kloop
    from kmm.kalshi.rest import ShardBalanceError
    from kmm.record import Recorder
    try:
        cfg, explicit = load(args)
    except ConfigError as exc:
        print(f"kmm run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:   # before anything starts a thread or a process: they inherit the loop's CPUs (the lists
        # were checked by kmm.cli.args.preflight; the operating system may still refuse)
        pin_thread(parse_cpus(cfg.run.cpus, "run.cpus"), "run.cpus")
    except ConfigError as exc:
        print(f"kmm run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    out = _out_dir(cfg, args)
    view = args.view if args.view != "auto" else ("live" if sys.stdout.isatty() else "plain")
    rec = cfg.records
    recorder = Recorder.open(out, log_level=cfg.run.log_level, console=False, capture=rec.raw_capture,
                             logging_enabled=rec.ops_log,
                             cpus=parse_cpus(cfg.run.records_cpus, "run.records_cpus"))
    names = [n for n, on in (("ops.log", rec.ops_log), ("tape.csv", True), ("kmm.sqlite", True),
                             ("the frame capture", rec.raw_capture)) if on]
    print(f"kmm run: writing {', '.join(names)} to {out}", file=sys.stderr)
    # CPython's default switch interval (5 ms): the 0.5 ms kmm run set until the eighth session no
    # longer measured better once the records left the decision path (docs/records.md, four
    # alternating runs); bench_kmm_run's kmm-0.5ms variant keeps the comparison in every report
    started: dict[str, Any] = {}          # the engine, once built: did its start reach the exchange?
    try:
        summary = kloop.run(_run_async(cfg, args, explicit, recorder, view, started))
    except (ConfigError, ShardBalanceError) as exc:   # refused before any order: fix and rerun
        print(f"kmm run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KmmError as exc:
        log.critical("kmm run stopped on an error: %s", exc)
        print(f"kmm run: {exc}", file=sys.stderr)
        engine = started.get("engine")
        if engine is not None and getattr(engine, "_not_started", None) is not None:
            recorder.close()
            _prune_unstarted(out)
        return EXIT_ERROR
    finally:
        recorder.close()
    print(summary.render())
    if summary.not_started is not None:
        _prune_unstarted(out)
    else:                                 # a tearsheet of the run: built now (--report) or the command for it
        from kmm.report import write_run_report
        print(write_run_report(out, build=bool(getattr(args, "report", False))))
    if not summary.verified_flat_orders and not cfg.run.leave_orders_on_exit:
        print("kmm run: orders may still rest at the exchange: check and cancel them", file=sys.stderr)
        return EXIT_ORDERS_LEFT
    return EXIT_OK


def _prune_unstarted(out: Path) -> None:
    """A run that never reached the exchange keeps only ``ops.log``, which says why: its empty tape,
    store, capture and summary would otherwise read as a run that happened."""
    for p in out.iterdir():
        if p.name == "ops.log":
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


async def _run_async(cfg: KmmConfig, args: argparse.Namespace, explicit: bool, recorder: Any, view: str,
                     started: dict[str, Any] | None = None) -> Any:
    from kmm.engine.live import Engine, EngineOptions
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with open_venue(cfg, args, explicit) as venue:
        if venue.sim is not None and cfg.run.markets == () and not getattr(args, "markets", None):
            cfg = replace(cfg, run=replace(cfg.run, markets=tuple(venue.sim.tickers[:len(cfg.sim.markets)])))
        # the live console is drawn by kmm.cli.console, not by the engine
        opts = EngineOptions(view="off" if view == "live" else view, order_group_limit=cfg.risk.order_group_limit)
        paper = bool(getattr(args, "paper", False))
        if paper:   # docs/research.md: the same engine, writes served by the fill simulator
            from kmm.research.paper import PaperEngine
            engine: Engine = PaperEngine(cfg, venue.conn, recorder=recorder, venue=f"PAPER {venue.label}",
                                         options=opts, out=sys.stdout)
        else:
            engine = Engine(cfg, venue.conn, recorder=recorder, venue=venue.label, options=opts, out=sys.stdout)
        if started is not None:
            started["engine"] = engine
        for usr_sig, handler in ((getattr(signal, "SIGUSR1", None), engine.operator_resume),
                                 (getattr(signal, "SIGUSR2", None), engine.operator_trip)):
            if usr_sig is not None:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(usr_sig, handler)
        print(f"kmm run: pid {os.getpid()}; SIGINT/SIGTERM stop cleanly, SIGUSR2 trips the kill switch, "
              "SIGUSR1 re-arms it", file=sys.stderr)
        from kmm.cli.console import attached   # control socket, metrics, live console
        start_ns = time.time_ns()
        async with attached(engine, stop, args, view):
            result = await engine.run(stop)
        from kmm.research.runrecord import write_run_outputs   # summary.json + markets.json (docs/research.md)
        write_run_outputs(engine, recorder, start_ns, mode="paper" if paper else "live")
        return result


# ---------------------------------------------------------------------------------------- kmm probe
def probe_command(args: argparse.Namespace) -> int:
    from kmm.kalshi import loop as kloop
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg, explicit = load(args)
        return kloop.run(_probe_async(cfg, args, explicit))
    except ConfigError as exc:
        print(f"kmm probe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KmmError as exc:
        print(f"kmm probe: FAILED: {exc}", file=sys.stderr)
        return EXIT_ERROR


async def _probe_async(cfg: KmmConfig, args: argparse.Namespace, explicit: bool) -> int:
    from kmm._core.grid import Grid
    from kmm.kalshi import KalshiRest, KalshiWs, new_client_order_id
    from kmm.kalshi.types import OrderRequest

    def step(name: str, t0: int, detail: str = "") -> None:
        print(f"  {name:<28} {(time.perf_counter_ns() - t0) / 1e6:8.2f} ms  {detail}")

    async with open_venue(cfg, args, explicit) as venue:
        ticker = (getattr(args, "market", None) or (cfg.tickers() or (None,))[0]
                  or (venue.sim.tickers[0] if venue.sim is not None else None))
        if not ticker:
            raise ConfigError("kmm probe needs a market: --market TICKER")
        print(f"kmm probe: {venue.label}, market {ticker}")
        async with KalshiRest(venue.conn) as rest:
            t0 = time.perf_counter_ns()
            st = await rest.get_exchange_status()
            step("exchange status", t0, f"trading_active={st.trading_active}")
            t0 = time.perf_counter_ns()
            raw = await rest.get_market_raw(ticker)
            grid = Grid(raw.get("price_ranges") or raw.get("price_level_structure") or None)
            step("market", t0, f"{raw.get('status')} {raw.get('price_level_structure', '')}")
            t0 = time.perf_counter_ns()
            ws = KalshiWs(venue.conn)
            ws.add_markets({ticker: raw.get("price_ranges")})
            await ws.start()
            step("websocket connected", t0)
            try:
                coid = new_client_order_id()
                req = OrderRequest(ticker=ticker, side="bid", price=grid.min_price, count=100,
                                   client_order_id=coid, post_only=True, cancel_order_on_pause=True)
                t0 = time.perf_counter_ns()
                ack = await rest.create_order(req)
                step("place 1 bid @ lowest price", t0, f"order_id={ack.order_id} price={grid.min_price / 1e4:.4f}")
                try:
                    t0 = time.perf_counter_ns()
                    found = await rest.get_order(ack.order_id)
                    if found.client_order_id not in (None, coid):
                        raise KmmError(f"order {ack.order_id} came back with client_order_id "
                                       f"{found.client_order_id}, expected {coid}")
                    step("confirm order id", t0, f"status={found.status}")
                finally:
                    t0 = time.perf_counter_ns()
                    c = await rest.cancel_order(ack.order_id)
                    step("cancel", t0, "already gone" if c.already_gone else f"reduced_by={c.reduced_by / 100:g}")
                t0 = time.perf_counter_ns()
                after = await rest.get_order(ack.order_id)
                if after.status == "resting":
                    raise KmmError(f"order {ack.order_id} still rests after the cancel")
                step("confirm cancel", t0, f"status={after.status}")
            finally:
                await ws.close()
    print("kmm probe: OK")
    return EXIT_OK
