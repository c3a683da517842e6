"""``kmm sim``: run the embedded exchange until SIGINT/SIGTERM (exit 0)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import signal
import sys
import tempfile
from typing import Any

from kmm import protocol
from kmm.cli import exits

log = logging.getLogger("kmm.sim")


FAULTS = {
    "drop_ws": "close every WebSocket connection once",
    "skip_seq:N": "skip N sequence numbers on the next book message (a gap)",
    "stall:S": "stop the feed for S seconds",
    "http429:N": "answer the next N REST requests with 429",
    "http500:N": "answer the next N REST requests with 500",
    "delay:S:N": "delay the next N REST answers by S seconds",
    "dup_fill": "send the next fill twice",
    "pause": "pause trading on the exchange",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sim", help="run the embedded Kalshi-compatible exchange",
                              description="Run kmm's embedded Kalshi exchange (REST + WebSocket) on loopback "
                                          "until SIGINT/SIGTERM; it prints the `kmm run` line that trades on it.",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="faults (--fault, repeatable):\n" + "\n".join(
                                  f"  {k:<12} {v}" for k, v in FAULTS.items()))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=0, help="TCP port 0..65535 (default 0: any free port)")
    p.add_argument("--ready-file", metavar="FILE", help="write {rest_url, ws_url} JSON here once listening")
    p.add_argument("--api-key-id", action="append", default=[], metavar="ID",
                   help="register this key id (repeatable; one --public-key each)")
    p.add_argument("--public-key", action="append", default=[], metavar="PEM",
                   help="PEM public key file for the --api-key-id in the same position")
    p.add_argument("--balance", default="1000.00", metavar="DOLLARS", help="starting balance per key (default 1000.00)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the synthetic flow (default 1)")
    p.add_argument("--flow", choices=("off", "calm", "busy"), default="calm",
                   help="synthetic traders: none, calm or busy (default calm)")
    p.add_argument("--speed", type=float, default=1.0, help="scales the synthetic flow's message rate (default 1)")
    p.add_argument("--rate-tier", choices=("off", *protocol.RATE_TIERS), default="basic",
                   help="Kalshi rate-limit tier to enforce (default basic; off: no limits)")
    p.add_argument("--markets", default=None, metavar="N|T1,T2",
                   help="how many markets to list, or a comma list of its tickers (default: all six)")
    p.add_argument("--state-dir", default=".kmm-sim", metavar="DIR",
                   help="where a generated key pair is kept (default .kmm-sim)")
    p.add_argument("--ping-interval", type=float, default=protocol.WS_PING_INTERVAL_S, metavar="S",
                   help=f"seconds between WebSocket pings (default {protocol.WS_PING_INTERVAL_S:g})")
    p.add_argument("--tls-cert", metavar="PEM", help="serve https:// and wss:// with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--fault", action="append", default=[], metavar="FAULT",
                   help="inject a fault at start (repeatable); the list is below")
    p.set_defaults(func=run)
    return p


class UsageError(ValueError):
    pass


def check_fault(spec: str) -> None:
    """Refuse a --fault before anything listens: say which are valid."""
    name, *args = spec.split(":")
    arity = {k.split(":")[0]: k.count(":") for k in FAULTS}
    if name not in arity:
        raise UsageError(f"unknown --fault {spec!r}; valid: {', '.join(FAULTS)}")
    if len(args) > arity[name]:
        what = FAULTS[next(k for k in FAULTS if k.split(":")[0] == name)]
        raise UsageError(f"--fault {spec!r}: {name} takes at most {arity[name]} value(s) ({what})")
    for a in args:
        try:
            float(a)
        except ValueError:
            raise UsageError(f"--fault {spec!r}: {a!r} is not a number") from None


def check_args(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: a TCP port is 0..65535 (0: any free port)")
    if len(args.public_key) != len(args.api_key_id):
        raise UsageError("give one --public-key per --api-key-id")
    if not (args.speed > 0):
        raise UsageError(f"--speed {args.speed}: must be > 0")
    if not (args.ping_interval > 0):
        raise UsageError(f"--ping-interval {args.ping_interval}: must be > 0 seconds")
    for spec in args.fault:
        check_fault(spec)
    for path in args.public_key:
        if not pathlib.Path(path).is_file():
            raise UsageError(f"--public-key {path}: no such file")
    if args.markets is not None and not args.markets.isdigit():
        from kmm.cli.args import parse_markets
        from kmm.errors import ConfigError
        try:
            parse_markets(args.markets)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.markets is not None and args.markets.isdigit() and int(args.markets) < 1:
        raise UsageError("--markets 0: list at least one market")


def _markets(spec: str | None) -> Any:
    from kmm.sim.config import MarketSpec, default_markets
    if spec is None:
        return None
    if spec.isdigit():
        return int(spec)
    if spec == "all-grids":  # one market on each of the twelve price structures
        return spec
    known = {m.ticker: m for m in default_markets()}
    return [known.get(t) or MarketSpec(t) for t in spec.split(",") if t]


def _write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def apply_fault(sim: Any, spec: str) -> None:
    name, *args = spec.split(":")
    f = sim.faults
    if name == "drop_ws":
        f.drop_ws_connections()
    elif name == "skip_seq":
        f.skip_seq(int(args[0]) if args else 1)
    elif name == "stall":
        f.stall_feed(float(args[0]))
    elif name in ("http429", "http500"):
        f.http_error_burst(int(name[4:]), int(args[0]) if args else 1)
    elif name == "delay":
        f.delay_rest(float(args[0]), int(args[1]) if len(args) > 1 else 1)
    elif name == "dup_fill":
        f.duplicate_next_fill()
    elif name == "pause":
        sim.pause_exchange()
    else:
        raise UsageError(f"unknown --fault {spec!r}; valid: {', '.join(FAULTS)}")


async def _main(args: argparse.Namespace) -> int:
    from kmm.sim import SimConfig, SimExchange
    from kmm.sim.auth import new_key_pair

    try:
        check_args(args)
    except UsageError as exc:
        print(f"kmm sim: {exc}", file=sys.stderr)
        return exits.USAGE
    try:
        cfg = SimConfig(seed=args.seed, flow=args.flow, speed=args.speed, rate_tier=args.rate_tier,
                        balance=args.balance, markets=_markets(args.markets), host=args.host, port=args.port,
                        ping_interval_s=args.ping_interval, tls_cert=args.tls_cert, tls_key=args.tls_key)
        sim = SimExchange(cfg)
    except ValueError as exc:
        print(f"kmm sim: {exc}", file=sys.stderr)
        return exits.USAGE
    for key_id, path in zip(args.api_key_id, args.public_key, strict=True):
        try:
            sim.add_key(key_id, pathlib.Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            print(f"kmm sim: --public-key {path}: {exc}", file=sys.stderr)
            return exits.USAGE
    if not args.public_key:
        state = pathlib.Path(args.state_dir)
        try:
            state.mkdir(parents=True, exist_ok=True)
            probe = state / ".kmm-write-check"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            print(f"kmm sim: --state-dir {state}: {exc.strerror}; choose a writable folder", file=sys.stderr)
            return exits.USAGE
        priv_path, id_path = state / "private_key.pem", state / "api_key_id"
        pub_path = state / "public_key.pem"
        if not (priv_path.exists() and id_path.exists() and pub_path.exists()):
            import uuid
            priv, pub = new_key_pair()
            _write_atomic(str(priv_path), priv, 0o600)
            _write_atomic(str(pub_path), pub)
            _write_atomic(str(id_path), (str(uuid.uuid4()) + "\n").encode())
        key_id = id_path.read_text().strip()
        sim.add_key(key_id, pub_path.read_bytes())
        print(f"kmm sim: api key id {key_id}; private key {priv_path.resolve()}", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.__aenter__()
    except OSError as exc:
        print(f"kmm sim: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another "
              "--port (0: any free port)", file=sys.stderr)
        return exits.USAGE
    try:
        for spec in args.fault:
            apply_fault(sim, spec)
        print(f"kmm sim: REST {sim.rest_url}  WS {sim.ws_url}  markets {', '.join(sim.tickers)}", file=sys.stderr)
        key_arg = (f"--api-key-id {key_id} --private-key {priv_path.resolve()}" if not args.public_key
                   else f"--api-key-id {args.api_key_id[0]} --private-key YOUR_PRIVATE_KEY.pem")
        print(f"kmm sim: trade on it with:\n  kmm run --rest-url {sim.rest_url} --ws-url {sim.ws_url} "
              f"{key_arg} --markets {','.join(sim.tickers[:3])}", file=sys.stderr)
        if args.ready_file:
            _write_atomic(args.ready_file, json.dumps({"rest_url": sim.rest_url, "ws_url": sim.ws_url}).encode())
        await stop.wait()
    finally:
        await sim.__aexit__(None, None, None)
    return exits.OK


def run(args: argparse.Namespace) -> int:
    from kmm.record.oplog import UtcFormatter
    handler = logging.StreamHandler()
    handler.setFormatter(UtcFormatter())     # the same lines as ops.log
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        import uvloop
        return uvloop.run(_main(args))
    except ImportError:
        return asyncio.run(_main(args))
