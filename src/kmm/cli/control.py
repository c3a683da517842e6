"""The control socket of a running ``kmm run`` and the commands that use it:
``kmm status [RUN_DIR]``, ``kmm kill-switch``, ``kmm resume``, ``kmm stop``.

The socket is a unix socket ``control.sock`` in the run's output folder, created owner-only (mode 600,
under a umask of 077), so only the user running kmm can talk to it. When the folder's path is too long
for a unix socket address, the socket lives in a private folder (mode 700) under the temp dir and the run
folder holds ``control.sock.path`` naming it. One JSON line in (``{"cmd": "status"}``), one JSON line
out. The actions are the signals' (SIGUSR2 kill switch, SIGUSR1 resume, SIGTERM stop).

Without RUN_DIR the commands look for the newest run folder under ``[run] out_dir`` (``./kmm-out``) whose
kmm still answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from kmm.cli import exits

SOCK = "control.sock"
POINTER = "control.sock.path"
MAX_UNIX_PATH = 100
COMMANDS = ("status", "kill-switch", "resume", "stop")


class ControlServer:
    """Serves the control socket while the engine runs."""

    def __init__(self, engine: Any, stop: asyncio.Event, run_dir: str, *, mode: str = "live",
                 duration_s: float | None = None) -> None:
        self.engine, self.stop, self.run_dir = engine, stop, Path(run_dir)
        self.mode, self.duration_s = mode, duration_s
        self.path: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._private_dir: Path | None = None

    async def __aenter__(self) -> ControlServer:
        path = self.run_dir.resolve() / SOCK
        if len(str(path)) > MAX_UNIX_PATH:
            self._private_dir = Path(tempfile.mkdtemp(prefix="kmm-ctl-"))   # mode 700
            path = self._private_dir / SOCK
            (self.run_dir / POINTER).write_text(str(path) + "\n")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.path = path
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for p in (self.path, self.run_dir / POINTER):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
        if self._private_dir is not None:
            with contextlib.suppress(OSError):
                self._private_dir.rmdir()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            try:
                cmd = str(json.loads(line or b"{}").get("cmd", ""))
            except (ValueError, AttributeError):
                cmd = ""
            reply = self.handle(cmd)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def handle(self, cmd: str) -> dict[str, Any]:
        from kmm.cli.console import act
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd in COMMANDS:
            return {"ok": True, "message": act(self.engine, self.stop, cmd, "control socket"),
                    "status": self.status()}
        return {"ok": False, "message": f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}"}

    def status(self) -> dict[str, Any]:
        from kmm.cli.console import build_snapshot
        s = build_snapshot(self.engine, mode=self.mode, out=str(self.run_dir), duration_s=self.duration_s,
                           tail=None, stopping=self.stop.is_set())
        return {
            "pid": s.pid, "venue": s.venue, "mode": s.mode, "out": s.out, "elapsed_s": round(s.elapsed_s, 3),
            "duration_s": s.duration_s, "stopping": s.stopping, "kill_switch": s.kill_state,
            "fills": s.fills, "orders_sent": s.orders_sent, "open_orders": len(s.open_orders),
            "fees": f"{s.fees / 10000:.4f}",
            "net_pnl": f"{sum(m.realized + m.unrealized for m in s.markets) / 10000:.4f}",
            "markets": {m.ticker: {"position": f"{m.position / 100:.2f}", "state": m.state,
                                   "bid": None if m.my_bid is None else f"{m.my_bid / 10000:.4f}",
                                   "ask": None if m.my_ask is None else f"{m.my_ask / 10000:.4f}",
                                   "pnl": f"{(m.realized + m.unrealized) / 10000:.4f}",
                                   **({"incentive": m.incentive} if m.incentive else {})} for m in s.markets},
            "events": [{"event": e.event, "status": e.status, "positions": f"{e.positions / 100:.2f}",
                        "inventory": f"{e.inventory / 100:.2f}", "worst_now": f"{e.worst_now / 10000:.4f}",
                        "worst_resting": f"{e.worst_resting / 10000:.4f}",
                        "max_event_loss": f"{e.max_event_loss / 10000:.4f}", "pnl": f"{e.pnl / 10000:.4f}"}
                       for e in s.events],
            "incentives": s.incentives,
        }


# -------------------------------------------------------------------------------------- client side
def add_parsers(subparsers: Any) -> None:
    helps = {"status": "show the state of a running kmm run (through its control socket)",
             "kill-switch": "trip the kill switch of a running kmm run: cancel everything, pause (as SIGUSR2)",
             "resume": "re-arm the kill switch of a running kmm run and quote again (as SIGUSR1)",
             "stop": "stop a running kmm run cleanly: cancel, verify, summarize (as SIGTERM)"}
    for cmd in COMMANDS:
        p = subparsers.add_parser(cmd, help=helps[cmd], description=helps[cmd] + ". Without RUN_DIR: the "
                                  "newest run under ./kmm-out (or $KMM_RUN_OUT_DIR) that answers.")
        p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="the run's output folder")
        p.add_argument("--json", action="store_true", help="print the raw JSON reply")
        p.set_defaults(func=command, control=cmd)


def socket_path(run_dir: Path) -> Path:
    ptr = run_dir / POINTER
    if ptr.is_file():
        return Path(ptr.read_text().strip())
    return run_dir / SOCK


def request(run_dir: Path, cmd: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send one command; raise OSError when nothing answers there."""
    path = socket_path(run_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return dict(json.loads(buf))


def _candidates() -> list[Path]:
    base = Path(os.environ.get("KMM_RUN_OUT_DIR") or "kmm-out")
    if not base.is_dir():
        return []
    runs = [d for d in base.iterdir() if (d / SOCK).exists() or (d / POINTER).exists()]
    return sorted(runs, key=lambda d: d.stat().st_mtime, reverse=True)


def command(args: argparse.Namespace) -> int:
    cmd = args.control
    name = f"kmm {cmd}"
    if args.run_dir:
        dirs = [Path(args.run_dir)]
        if not dirs[0].is_dir():
            print(f"{name}: {args.run_dir} is not a folder; give the output folder of a running kmm run",
                  file=sys.stderr)
            return exits.USAGE
    else:
        dirs = _candidates()
    for d in dirs:
        try:
            reply = request(d, cmd)
        except (OSError, ValueError):
            continue
        if args.json:
            print(json.dumps(reply, indent=2))
        else:
            if reply.get("message"):
                print(f"{name}: {reply['message']}")
            if cmd == "status" and "status" in reply:
                print(format_status(reply["status"]))
        return exits.OK if reply.get("ok") else exits.ERROR
    where = args.run_dir or "./kmm-out (no run folder there has a control socket that answers)"
    print(f"{name}: no running kmm answers at {where}; is it running? give its output folder "
          "(printed at start: 'writing ... to DIR')", file=sys.stderr)
    return exits.NOT_RUNNING


def format_status(s: dict[str, Any]) -> str:
    left = "until stopped" if not s.get("duration_s") else f"{max(0.0, s['duration_s'] - s['elapsed_s']):.0f} s left"
    def money(text: str) -> str:
        return f"-${text[1:]}" if text.startswith("-") else f"${text}"
    lines = [f"kmm {s['mode']} on {s['venue']}, pid {s['pid']}, {s['elapsed_s']:.0f} s in, "
             f"{'stopping' if s['stopping'] else left}",
             f"  out: {s['out']}",
             f"  kill switch: {s['kill_switch']}   fills {s['fills']}   open orders {s['open_orders']}   "
             f"orders sent {s['orders_sent']}",
             f"  P&L: net {money(s['net_pnl'])} (fees {money(s['fees'])})"]
    markets = list(s["markets"].items())
    many = len(markets) > 20
    if many:   # the ones that need a look; the events carry the rest
        markets = sorted(markets, key=lambda kv: (kv[1]["state"] == "quoting", -abs(float(kv[1]["position"]))))[:10]
    for t, m in markets:
        lines.append(f"  {t:<16} pos {m['position']:>8}  bid {m['bid'] or '-':>7}  ask {m['ask'] or '-':>7}  "
                     f"pnl {money(m['pnl'])}  {m['state']}" + (f"  LIP {m['incentive']}" if m.get("incentive") else ""))
    if many:
        lines.append(f"  ... {len(s['markets']) - 10} more markets (kmm status --json lists them all)")
    evs = s.get("events") or []
    if evs:
        lines.append(f"  events ({len(evs)}, worst first):")
        for e in evs[:10]:
            lines.append(f"    {e['event']:<18} pos {e['positions']:>8}  E {e['inventory']:>8}  worst "
                         f"{money(e['worst_now'])} / {money(e['worst_resting'])} with resting of "
                         f"{money(e['max_event_loss'])}  pnl {money(e['pnl'])}  {e['status']}")
    if s.get("incentives"):
        lines.append(f"  {s['incentives']}")
    return "\n".join(lines)
