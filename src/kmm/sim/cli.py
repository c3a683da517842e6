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

log = logging.getLogger("kmm.sim")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sim", help="run the embedded Kalshi-compatible exchange",
                              description="Run kmm's embedded Kalshi exchange (REST + WebSocket) on loopback.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--ready-file", help="write {rest_url, ws_url} JSON here once listening")
    p.add_argument("--api-key-id", action="append", default=[], help="register this key id (repeatable)")
    p.add_argument("--public-key", action="append", default=[], help="PEM public key for --api-key-id")
    p.add_argument("--balance", default="1000.00", help="starting balance per key, dollars")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flow", choices=("off", "calm", "busy"), default="calm")
    p.add_argument("--speed", type=float, default=1.0, help="scales the synthetic flow's message rate")
    p.add_argument("--rate-tier", choices=("off", *protocol.RATE_TIERS), default="basic")
    p.add_argument("--markets", default=None, help="a count, or a comma list of tickers")
    p.add_argument("--state-dir", default=".kmm-sim", help="where a generated key pair is kept")
    p.add_argument("--ping-interval", type=float, default=protocol.WS_PING_INTERVAL_S)
    p.add_argument("--tls-cert", metavar="PEM", help="serve https:// and wss:// with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--fault", action="append", default=[],
                   help="inject at start: drop_ws | skip_seq:N | stall:S | http429:N | http500:N | "
                        "delay:S:N | dup_fill | pause")
    p.set_defaults(func=run)
    return p


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
        raise SystemExit(f"kmm sim: unknown --fault {spec!r}")


async def _main(args: argparse.Namespace) -> int:
    from kmm.sim import SimConfig, SimExchange
    from kmm.sim.auth import new_key_pair

    if len(args.public_key) != len(args.api_key_id):
        print("kmm sim: give one --public-key per --api-key-id", file=sys.stderr)
        return 2
    try:
        cfg = SimConfig(seed=args.seed, flow=args.flow, speed=args.speed, rate_tier=args.rate_tier,
                        balance=args.balance, markets=_markets(args.markets), host=args.host, port=args.port,
                        ping_interval_s=args.ping_interval, tls_cert=args.tls_cert, tls_key=args.tls_key)
        sim = SimExchange(cfg)
    except ValueError as exc:
        print(f"kmm sim: {exc}", file=sys.stderr)
        return 2
    for key_id, path in zip(args.api_key_id, args.public_key, strict=True):
        sim.add_key(key_id, pathlib.Path(path).read_bytes())
    if not args.public_key:
        state = pathlib.Path(args.state_dir)
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
    async with sim:
        for spec in args.fault:
            apply_fault(sim, spec)
        print(f"kmm sim: REST {sim.rest_url}  WS {sim.ws_url}  markets {', '.join(sim.tickers)}", file=sys.stderr)
        if args.ready_file:
            _write_atomic(args.ready_file, json.dumps({"rest_url": sim.rest_url, "ws_url": sim.ws_url}).encode())
        await stop.wait()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        return uvloop.run(_main(args))
    except ImportError:
        return asyncio.run(_main(args))
