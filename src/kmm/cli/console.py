"""What ``kmm run`` attaches to a running engine: the full-screen console (rich, alternate screen),
the control socket (``kmm status/kill-switch/resume/stop``) and the Prometheus metrics endpoint.

None of them sits on the hot path: the console and the control socket read the engine's state when
they draw or answer; the metrics are computed at scrape time. The keys, the control commands and the
signals call the same engine functions: ``operator_trip`` (kill switch), ``operator_resume`` and the
stop event.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from kmm.engine.view import MarketRow, Snapshot, render_console

log = logging.getLogger("kmm.console")


class LogTail(logging.Handler):
    """The last log lines and warnings, for the console (ops.log keeps everything)."""

    def __init__(self, n: int = 200) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=n)
        self.warnings: collections.deque[str] = collections.deque(maxlen=n)
        self.fills: collections.deque[str] = collections.deque(maxlen=n)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the console
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {msg}"
        self.lines.append(line)
        if record.levelno >= logging.WARNING:
            self.warnings.append(f"{stamp} {record.levelname[0]} {msg}")
        if msg.startswith("fill ") and record.args and len(record.args) >= 5:
            a: Any = record.args   # ticker, side, trade id, price, count (see the engine's fill log line)
            with contextlib.suppress(TypeError, ValueError, IndexError):
                self.fills.append(f"{stamp} {a[0]} {a[1]} {float(a[4]):g} @ {float(a[3]) * 100:.1f}c")


def build_snapshot(engine: Any, *, mode: str, out: str, duration_s: float | None, tail: LogTail | None,
                   stopping: bool = False) -> Snapshot:
    """The engine's snapshot plus what the console shows besides: ladders with our orders, open
    orders, limits, recent fills, warnings and log lines."""
    snap: Snapshot = engine.snapshot()
    snap.mode, snap.pid, snap.out, snap.duration_s = mode, os.getpid(), out, duration_s
    snap.kill_state = engine.gate.kill_state.value
    snap.stopping = stopping or bool(getattr(engine, "stopping", False))
    risk = engine.cfg.risk
    snap.max_loss, snap.max_total_position = risk.max_loss, risk.max_total_position
    snap.max_open_orders = risk.max_open_orders_total
    rows: list[MarketRow] = []
    opens: list[tuple[str, str, int, int]] = []
    for row in snap.markets:
        pipe = engine.pipes.get(row.ticker)
        live = engine.om.live_orders(row.ticker)
        for o in live:
            opens.append((row.ticker, o.side, o.price, o.remaining))
            mine = row.mine_bids if o.side == "bid" else row.mine_asks
            mine[o.price] = mine.get(o.price, 0) + o.remaining
        if pipe is not None:
            with contextlib.suppress(Exception):
                row.bids = list(pipe.book.bids(8))
                row.asks = list(pipe.book.asks(8))
            row.max_position = getattr(pipe.params, "max_position", 0)
        rows.append(row)
    snap.markets = rows
    snap.open_orders = opens
    if tail is not None:
        snap.recent_fills = list(tail.fills)
        snap.warnings = list(tail.warnings)
        snap.log_lines = list(tail.lines)
    return snap


class LiveConsole:
    """The alternate-screen console: redraws twice a second, reads single keys from the terminal."""

    def __init__(self, engine: Any, stop: asyncio.Event, *, mode: str, out: str, duration_s: float | None) -> None:
        self.engine = engine
        self.stop = stop
        self.mode, self.out, self.duration_s = mode, out, duration_s
        self.tail = LogTail()
        self._live: Any = None
        self._task: asyncio.Future[Any] | None = None
        self._tty_state: Any = None
        self._fd: int | None = None

    def snapshot(self) -> Snapshot:
        return build_snapshot(self.engine, mode=self.mode, out=self.out, duration_s=self.duration_s,
                              tail=self.tail, stopping=self.stop.is_set())

    def _render(self) -> Any:
        size = self._live.console.size if self._live is not None else None
        w, h = (size.width, size.height) if size is not None else (80, 24)
        try:
            return render_console(self.snapshot(), w, h)
        except Exception as exc:  # noqa: BLE001 - the console must never stop the engine
            from rich.text import Text
            return Text(f"kmm console: cannot draw ({exc!r}); the run goes on, see ops.log")

    async def __aenter__(self) -> LiveConsole:
        from rich.console import Console
        from rich.live import Live
        logging.getLogger("kmm").addHandler(self.tail)
        console = Console(file=sys.stdout)
        self._live = Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                          redirect_stderr=False, get_renderable=self._render)
        self._live.start()
        self._keys_on()
        self._task = asyncio.get_running_loop().create_task(self._redraw())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._keys_off()
        if self._live is not None:
            self._live.stop()
        logging.getLogger("kmm").removeHandler(self.tail)

    async def _redraw(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self._live.refresh()
            await asyncio.sleep(0.5)

    # ---------------------------------------------------------------------------------- keys
    def _keys_on(self) -> None:
        if not sys.stdin.isatty():
            return
        import termios
        import tty
        fd = sys.stdin.fileno()
        try:
            self._tty_state = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            asyncio.get_running_loop().add_reader(fd, self._on_key)
            self._fd = fd
        except (termios.error, OSError, NotImplementedError, RuntimeError):
            self._tty_state = None

    def _keys_off(self) -> None:
        if self._fd is None:
            return
        import termios
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(Exception):
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._tty_state)
        self._fd = None

    def _on_key(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 32)
        except OSError:
            return
        for ch in data.decode(errors="ignore").lower():
            act(self.engine, self.stop, {"k": "kill-switch", "r": "resume", "q": "stop"}.get(ch, ""), "key")
        with contextlib.suppress(Exception):
            self._live.refresh()


def act(engine: Any, stop: asyncio.Event, command: str, via: str) -> str:
    """Do what a signal does: kill switch (SIGUSR2), resume (SIGUSR1), stop (SIGTERM)."""
    if command == "kill-switch":
        log.warning("operator (%s): kill switch tripped by hand", via)
        engine.operator_trip(f"operator ({via})")
        return "kill switch tripped: every order is being cancelled; quoting paused until resume"
    if command == "resume":
        log.warning("operator (%s): resume", via)
        engine.operator_resume()
        return "kill switch re-armed: quoting resumes"
    if command == "stop":
        log.warning("operator (%s): stop", via)
        stop.set()
        return "stopping: cancelling every order and verifying over REST"
    return ""


@contextlib.asynccontextmanager
async def attached(engine: Any, stop: asyncio.Event, args: Any, view: str) -> AsyncIterator[None]:
    """Everything ``kmm run`` adds around ``engine.run``: control socket, metrics, console."""
    from kmm.cli.control import ControlServer
    out = str(getattr(args, "out", "") or "")
    duration = engine.cfg.run.duration_s or None
    mode = "paper" if getattr(args, "paper", False) else "live"
    async with contextlib.AsyncExitStack() as stack:
        if out and hasattr(socket, "AF_UNIX"):
            await stack.enter_async_context(ControlServer(engine, stop, out, mode=mode, duration_s=duration))
        port = getattr(args, "metrics_port", None)
        if port is not None:
            from kmm.cli.metrics import serve_metrics
            server = serve_metrics(engine, port)
            stack.callback(server.close)
            print(f"kmm run: Prometheus metrics on http://127.0.0.1:{server.port}/metrics", file=sys.stderr)
        if view == "live":
            await stack.enter_async_context(LiveConsole(engine, stop, mode=mode, out=out, duration_s=duration))
        yield
