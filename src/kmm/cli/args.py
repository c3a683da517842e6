"""The arguments of ``kmm run`` and ``kmm probe`` (and the venue flags ``kmm execute`` shares), and the
checks that run before anything connects.

Everything a user can get wrong on the command line is refused here with exit 2 and a message that says
what, where and what to do, before a socket is opened or a file is written: the pair ``--rest-url`` /
``--ws-url``, the market list, the configuration, the venue the credentials select, the private key
itself (loaded and parsed), and the output folder (each run gets its own).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from kmm.config import KmmConfig, load_config, parse_set_args
from kmm.errors import ConfigError

__all__ = ["add_run_parser", "add_probe_parser", "venue_args", "load", "has_credentials", "out_dir",
           "preflight", "parse_markets"]

TICKER = re.compile(r"^[A-Z0-9][A-Z0-9._-]*$")


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    from kmm.cli import run as run_cli
    p = subparsers.add_parser(
        "run", help="market-make on Kalshi (the embedded exchange when no credentials are configured)",
        description="Quote both sides of one or more Kalshi markets. Without credentials and without "
                    "--env, kmm starts its embedded exchange in-process and trades there; credentials "
                    "select Kalshi demo (or prod with --allow-prod).")
    venue_args(p)
    p.add_argument("--markets", help="comma-separated market tickers (default: [run] markets, or the sim's)")
    p.add_argument("--strategy", choices=("stoikov", "inside"), help="quoting strategy (default stoikov)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--out", metavar="DIR", help="output directory, new or empty (default ./kmm-out/<timestamp>)")
    p.add_argument("--view", choices=("auto", "live", "plain", "off"), default="auto",
                   help="live full-screen console, plain status lines, or nothing (auto: live on a terminal)")
    p.add_argument("--report", action="store_true",
                   help="write report.html (the run's tearsheet, see kmm report) into the output directory at the end")
    p.add_argument("--paper", action="store_true",
                   help="paper trading: quote on the live feed, the fill simulator fills; no order is sent")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0: any free port)")
    p.set_defaults(func=run_cli.run)
    return p


def add_probe_parser(subparsers: Any) -> argparse.ArgumentParser:
    from kmm.cli import run as run_cli
    p = subparsers.add_parser(
        "probe", help="connectivity check: place one 1-contract bid at the lowest price and cancel it",
        description="Connect, place 1 contract bid at the market's lowest price, confirm the order id, "
                    "cancel it, confirm the cancel; print each step with its latency.")
    venue_args(p)
    p.add_argument("--market", help="market ticker (default: the first configured market)")
    p.set_defaults(func=run_cli.probe)
    return p


def venue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="kmm.toml (default: $KMM_CONFIG, else built-in defaults)")
    p.add_argument("--env", choices=("sim", "demo", "prod"),
                   help="venue (default: sim without credentials, demo with them)")
    p.add_argument("--allow-prod", action="store_true", help="required to trade real money on Kalshi prod")
    p.add_argument("--rest-url", help="REST base URL of a Kalshi-compatible server (.../trade-api/v2); "
                                      "needs --ws-url too")
    p.add_argument("--ws-url", help="WebSocket URL of that server (.../trade-api/ws/v2); needs --rest-url too")
    p.add_argument("--api-key-id", help="Kalshi API key id (or $KALSHI_API_KEY_ID)")
    p.add_argument("--private-key", metavar="PATH", help="RSA private key PEM file (or $KALSHI_PRIVATE_KEY_PATH)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any kmm.toml key, e.g. --set risk.max_loss=25 (repeatable)")


def load(args: argparse.Namespace) -> tuple[KmmConfig, bool]:
    """The typed config from file + environment + flags; True when the venue was named explicitly."""
    cli = parse_set_args(args.set)
    for key, value in (("run.env", args.env), ("run.strategy", getattr(args, "strategy", None)),
                       ("run.duration_s", getattr(args, "duration", None)),
                       ("run.out_dir", getattr(args, "out", None))):
        if value is not None:
            cli[key] = str(value)
    markets = getattr(args, "markets", None) or getattr(args, "market", None)
    if markets:
        cli["run.markets"] = markets
    if args.allow_prod:
        cli["run.allow_prod"] = "true"
    path = args.config or os.environ.get("KMM_CONFIG")
    cfg = load_config(path, environ=os.environ, cli=cli)
    explicit = args.env is not None or bool(args.rest_url) or (cfg.source is not None and cfg.run.env != "sim")
    return cfg, explicit


def _key_id(cfg: KmmConfig | None, args: argparse.Namespace) -> str | None:
    from kmm.kalshi.config import ENV_KEY_ID
    return (getattr(args, "api_key_id", None) or os.environ.get(ENV_KEY_ID)
            or (cfg.kalshi.get("api_key_id") if cfg is not None else None) or None)


def _key_path(cfg: KmmConfig | None, args: argparse.Namespace) -> str | None:
    from kmm.kalshi.config import ENV_KEY_PATH
    k = cfg.kalshi if cfg is not None else {}
    return (getattr(args, "private_key", None) or os.environ.get(ENV_KEY_PATH)
            or k.get("private_key_path") or k.get("private_key") or None)


def has_credentials(cfg: KmmConfig, args: argparse.Namespace) -> bool:
    return bool(_key_id(cfg, args) and _key_path(cfg, args))


def out_dir(cfg: KmmConfig, args: argparse.Namespace) -> Path:
    """The run's output folder, created now: ``--out`` (new or empty), else a new timestamped folder
    under ``[run] out_dir``: two runs started in the same second get two folders."""
    if getattr(args, "out", None):
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"--out {out}: already exists and is not an empty folder; every run writes its "
                              "own folder: pick a new path, or leave --out out for a timestamped one")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot create it ({exc.strerror}); choose a writable folder") from None
        return out
    base = Path(cfg.run.out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        cand = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            cand.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"[run] out_dir {str(base)!r}: cannot create {cand.name}: {exc.strerror}; "
                              "choose a writable folder with --out or [run] out_dir") from None
        return cand
    raise ConfigError(f"[run] out_dir {str(base)!r}: no free folder name for {stamp}")


def parse_markets(text: str, flag: str = "--markets") -> list[str]:
    """A comma-separated ticker list: no empty entries, no duplicates, Kalshi's ticker characters."""
    out: list[str] = []
    for raw in text.split(","):
        t = raw.strip()
        if not t:
            raise ConfigError(f"{flag} {text!r}: an empty entry; separate tickers with single commas, "
                              "e.g. KXSIMA-26-A,KXSIMB-26-B")
        if not TICKER.match(t):
            hint = f" (tickers are upper case: {t.upper()})" if TICKER.match(t.upper()) else ""
            raise ConfigError(f"{flag}: {t!r} is not a Kalshi market ticker{hint}")
        if t in out:
            raise ConfigError(f"{flag}: {t} is listed twice; name each market once")
        out.append(t)
    return out


def _print_key_mode(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"kmm: warning: private key file {path} is readable by other users (mode "
              f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}", file=sys.stderr)


def preflight(args: argparse.Namespace, command: str) -> KmmConfig:
    """Check everything that can be checked without a connection; raise ConfigError (exit 2) on the
    first problem. Side effects on ``args``: the venue chosen by credentials is written to
    ``args.env``, and for ``kmm run`` the new output folder to ``args.out``."""
    if bool(args.rest_url) != bool(args.ws_url):
        have, need = ("--rest-url", "--ws-url") if args.rest_url else ("--ws-url", "--rest-url")
        raise ConfigError(f"{have} needs {need} as well: a Kalshi-compatible server has a REST and a "
                          "WebSocket URL (e.g. http://127.0.0.1:PORT/trade-api/v2 and "
                          "ws://127.0.0.1:PORT/trade-api/ws/v2, as `kmm sim` prints them)")
    for flag in ("markets", "market"):
        value = getattr(args, flag, None)
        if value is not None:
            tickers = parse_markets(value, f"--{flag}")
            if flag == "market" and len(tickers) != 1:
                raise ConfigError("--market takes one ticker")
    duration = getattr(args, "duration", None)
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ConfigError(f"--duration {duration:g}: give a positive number of seconds")
    port = getattr(args, "metrics_port", None)
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port}: a TCP port is 0..65535 (0: any free port)")
    if port:
        import socket
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                raise ConfigError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
                                  "choose another port (0: any free port)") from None
    cli_creds = bool(getattr(args, "api_key_id", None) or getattr(args, "private_key", None))
    cfg, _ = load(args)
    from kmm.cpus import parse_cpus
    parse_cpus(cfg.run.cpus, "run.cpus")
    parse_cpus(cfg.run.signer_cpus, "run.signer_cpus")
    parse_cpus(cfg.run.records_cpus, "run.records_cpus")
    from kmm.config import unknown_environment
    for warning in unknown_environment():
        print(f"kmm {command}: warning: {warning}", file=sys.stderr)
    creds = has_credentials(cfg, args)
    if cli_creds and not creds:
        missing = "--private-key PATH" if getattr(args, "api_key_id", None) else "--api-key-id ID"
        raise ConfigError(f"credentials need both a key id and a private key file: add {missing}")
    key_path = _key_path(cfg, args)
    if key_path:
        _print_key_mode(Path(str(key_path)).expanduser())
    venue_named = args.env is not None or cfg.run.env != "sim"
    if creds and not args.rest_url:
        if args.env == "sim":
            raise ConfigError("--env sim trades on kmm's embedded exchange, which makes its own key: drop "
                              "--api-key-id/--private-key (and unset KALSHI_API_KEY_ID/KALSHI_PRIVATE_KEY_PATH), "
                              "or choose --env demo")
        if not venue_named:
            args.env = "prod" if args.allow_prod else "demo"
            print(f"kmm {command}: credentials given: trading on Kalshi {args.env}"
                  + ("" if args.env == "prod" else " (pass --allow-prod to trade on prod with real money)"),
                  file=sys.stderr)
            cfg, _ = load(args)
    remote = bool(args.rest_url) or cfg.run.env != "sim"
    if remote:
        if not cfg.tickers():
            raise ConfigError(f"kmm {command} on {args.rest_url or cfg.run.env} needs the markets to trade: "
                              f"--market{'s T1,T2' if command != 'probe' else ' T'} (or [run] markets)")
        _check_remote(cfg, args)
    else:
        _check_sim_markets(cfg)
    return cfg


def _check_remote(cfg: KmmConfig, args: argparse.Namespace) -> None:
    """Resolve the connector settings and load the private key now: a bad key is refused before a
    socket opens or a folder is made."""
    from kmm.engine.app import _connector_cli
    from kmm.kalshi import ConnectorConfig
    from kmm.kalshi.signing import Signer
    import logging
    logging.disable(logging.WARNING)
    try:
        conn = ConnectorConfig.resolve(cfg.kalshi, _connector_cli(cfg, args), os.environ)
    finally:
        logging.disable(logging.NOTSET)
    if conn.private_key_path is not None:
        if not conn.api_key_id:
            raise ConfigError("a private key without a key id: add --api-key-id (or $KALSHI_API_KEY_ID)")
        import logging
        logging.disable(logging.WARNING)    # the mode warning is printed above; ops.log gets it at start
        try:
            Signer.from_file(conn.api_key_id, conn.private_key_path)
        finally:
            logging.disable(logging.NOTSET)
    elif conn.env != "sim":
        raise ConfigError(f"Kalshi {conn.env} needs credentials: --api-key-id and --private-key")


def _check_sim_markets(cfg: KmmConfig) -> None:
    """The embedded exchange lists a fixed set of markets; a ticker it does not list is refused, as the
    standalone ``kmm sim`` refuses it."""
    from kmm.sim.config import default_markets
    known = [m.ticker for m in default_markets()]
    unknown = [t for t in cfg.tickers() if t not in known]
    if unknown:
        raise ConfigError(f"market {', '.join(unknown)} is not listed on kmm's embedded exchange; it lists "
                          f"{', '.join(known)} (pass credentials or --rest-url/--ws-url to trade other markets)")
