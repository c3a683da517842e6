"""Load one output directory (``kmm run``, ``--paper``, ``kmm backtest``, ``kmm execute``) for a report.

Everything is read from the records as they are on disk: ``kmm.sqlite`` (fills, orders and their
history, P&L snapshots, executions), ``tape.csv``, ``ops.log``, ``capture.*.bin.gz`` and ``summary.json``
when present. A record that is missing or unreadable is noted in :attr:`RunData.notes`; the report then
says which figure could not be computed instead of inventing it. Units stay kmm's integer units.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kmm.errors import KmmError
from kmm.kalshi.types import Fill
from kmm.record.store import ExecutionMetrics, ExecutionRecord, OrderRecord, PnlSnapshot, StoreReader
from kmm.record.tape import TapeRow, read_tape

log = logging.getLogger("kmm.report")

__all__ = ["LogEvent", "ReportError", "RunData", "load_run", "replay_bbo"]


class ReportError(KmmError):
    """A report could not be built (no such directory, nothing readable in it)."""


@dataclass(slots=True, frozen=True)
class LogEvent:
    """An ops.log line that matters on the timeline: ``kind`` is ``kill``, ``rearm``, ``pull``,
    ``pause``, ``stale``, ``disconnect``, ``rate_limit`` or ``stop``."""

    ts_ns: int
    level: str
    kind: str
    text: str


#: (kind, regex on the message) for timeline events; the first match wins.
_EVENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rearm", re.compile(r"kill switch re-armed", re.I)),
    ("kill", re.compile(r"kill switch|kill-switch|loss limit|tripped", re.I)),
    ("pull", re.compile(r"pulling \d+ quotes|cancelling all \d+ live orders", re.I)),
    ("stale", re.compile(r"book stale", re.I)),
    ("disconnect", re.compile(r"websocket lost|connection lost", re.I)),
    ("pause", re.compile(r"trading (paused|inactive)|staying paused", re.I)),
    ("rate_limit", re.compile(r"\b429\b|rate.limit(ed)?\b.*(refus|wait)|too many requests", re.I)),
    ("stop", re.compile(r"duration of .* reached|^stop:", re.I)),
)
_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+)\s+([\w.]+): (.*)$")
_PRESSURE = re.compile(r"\bpressure=(\d+)%")


@dataclass(slots=True)
class RunData:
    """One output directory, read. Lists are in time order."""

    path: Path
    label: str
    summary: dict[str, Any] | None = None
    fills: list[Fill] = field(default_factory=list)
    tape: list[TapeRow] = field(default_factory=list)
    pnl: list[PnlSnapshot] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    order_events: list[tuple[Any, ...]] = field(default_factory=list)
    executions: list[ExecutionRecord] = field(default_factory=list)
    execution_metrics: list[ExecutionMetrics] = field(default_factory=list)
    log_events: list[LogEvent] = field(default_factory=list)
    pressure: list[tuple[int, float]] = field(default_factory=list)    # (ts_ns, write-bucket use 0..1)
    bbo: dict[str, list[tuple[int, int | None, int | None]]] = field(default_factory=dict)
    has_store: bool = False
    has_tape: bool = False
    has_log: bool = False
    has_capture: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def tickers(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in (self.summary or {}).get("markets", []) or []:
            seen[str(t)] = None
        for r in self.tape:
            seen.setdefault(r.ticker, None)
        for f in self.fills:
            seen.setdefault(f.ticker, None)
        for p in self.pnl:
            if p.ticker != "*":
                seen.setdefault(p.ticker, None)
        return list(seen)

    @property
    def mode(self) -> str:
        if self.summary and self.summary.get("mode"):
            return str(self.summary["mode"])
        if self.executions and not self.tape:
            return "execute"
        return "run"


def _iso_ms_to_ns(text: str) -> int:
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def read_log_events(path: Path) -> tuple[list[LogEvent], list[tuple[int, float]]]:
    """Timeline events and write-pressure samples (from the plain status lines) of an ops.log."""
    events: list[LogEvent] = []
    pressure: list[tuple[int, float]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LINE.match(line.rstrip("\n"))
            if m is None:
                continue
            ts = _iso_ms_to_ns(m.group(1))
            msg = m.group(4)
            p = _PRESSURE.search(msg)
            if p is not None and msg.startswith("t="):
                pressure.append((ts, int(p.group(1)) / 100.0))
                continue
            for kind, pat in _EVENT_PATTERNS:
                if pat.search(msg):
                    events.append(LogEvent(ts, m.group(2), kind, msg))
                    break
    return events, pressure


def _px(text: Any) -> int:
    return int(round(float(text) * 10_000))


def _sz(text: Any) -> int:
    return int(round(float(text) * 100))


def replay_bbo(frames: Iterable[tuple[int, bytes]]) -> dict[str, list[tuple[int, int | None, int | None]]]:
    """Best YES bid and best YES ask (1e-4 $, None when a side is empty) after every book message.

    ``frames`` are ``(wall_ns, frame)`` from a capture. Kalshi's book holds bids on both outcomes: the
    best YES ask is 1 - the best NO bid. A snapshot replaces the ticker's book; a delta adds its signed
    size change; a level at 0 is dropped. Other messages are skipped. The points include our own
    resting quotes (they are in the exchange's book).
    """
    import orjson
    books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
    out: dict[str, list[tuple[int, int | None, int | None]]] = {}
    for wall_ns, frame in frames:
        try:
            doc = orjson.loads(frame)
        except orjson.JSONDecodeError:
            continue
        for m in doc if isinstance(doc, list) else (doc,):
            if not isinstance(m, dict):
                continue
            kind = m.get("type")
            if kind not in ("orderbook_snapshot", "orderbook_delta"):
                continue
            msg = m.get("msg") or {}
            ticker = msg.get("market_ticker")
            if not ticker:
                continue
            if kind == "orderbook_snapshot":
                yes = {_px(p): _sz(s) for p, s in msg.get("yes_dollars_fp") or ()}
                no = {_px(p): _sz(s) for p, s in msg.get("no_dollars_fp") or ()}
                books[ticker] = (yes, no)
            else:
                book = books.get(ticker)
                if book is None:
                    continue        # a delta before any snapshot: nothing to apply it to
                side = book[0] if msg.get("side") == "yes" else book[1]
                px = _px(msg.get("price_dollars"))
                size = side.get(px, 0) + _sz(msg.get("delta_fp"))
                if size > 0:
                    side[px] = size
                else:
                    side.pop(px, None)
            yes, no = books[ticker]
            bid = max(yes) if yes else None
            ask = 10_000 - max(no) if no else None
            pts = out.setdefault(ticker, [])
            if not pts or pts[-1][1:] != (bid, ask):
                pts.append((wall_ns, bid, ask))
    return out


def _captures(path: Path) -> list[Path]:
    return sorted(path.glob("capture*.bin.gz"), key=lambda p: (len(p.name), p.name))


def load_run(path: str | Path, label: str | None = None, *, capture: bool = True) -> RunData:
    """Read an output directory. Raises :class:`ReportError` when nothing kmm wrote is in it."""
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"{p}: no such output directory; give the --out directory of a kmm run, "
                          "kmm execute or kmm backtest")
    run = RunData(path=p, label=label or p.name)
    sj = p / "summary.json"
    if sj.exists():
        try:
            run.summary = json.loads(sj.read_text())
        except (OSError, ValueError) as exc:
            run.notes.append(f"summary.json unreadable ({exc}); figures come from the other records")
    else:
        run.notes.append("no summary.json (written by newer kmm runs); figures come from kmm.sqlite and tape.csv")
    db = p / "kmm.sqlite"
    if not db.exists() and (p / "executions.sqlite").exists():
        db = p / "executions.sqlite"      # kmm execute's default store name
    if db.exists():
        try:
            st = StoreReader(db)
            run.fills = st.fills()
            run.pnl = st.pnl()
            run.orders = st.orders()
            run.order_events = st.order_events()
            run.executions = st.executions()
            run.execution_metrics = st.execution_metrics()
            run.has_store = True
        except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not fatal
            run.notes.append(f"{db.name} unreadable ({exc}): fills, orders and executions are missing")
    else:
        run.notes.append("no kmm.sqlite: fills, orders, queue times and executions cannot be shown")
    tape = p / "tape.csv"
    if tape.exists():
        try:
            run.tape = list(read_tape(tape))
            run.has_tape = True
        except Exception as exc:  # noqa: BLE001
            run.notes.append(f"tape.csv unreadable ({exc}): curves over time are missing")
    else:
        run.notes.append("no tape.csv: equity, inventory, quotes, markouts and latency cannot be shown")
    oplog = p / "ops.log"
    if oplog.exists():
        run.log_events, run.pressure = read_log_events(oplog)
        run.has_log = True
    else:
        run.notes.append("no ops.log: pull, kill-switch and rate-limit events cannot be shown")
    caps = _captures(p)
    if not caps and run.summary:
        # a backtest names the captures it replayed (summary.json details.files)
        files = (run.summary.get("details") or {}).get("files") or []
        caps = [Path(f) for f in files if str(f).endswith(".bin.gz") and Path(f).is_file()]
    if capture and caps:
        from kmm.record.capture import read_capture
        try:
            def frames() -> Iterable[tuple[int, bytes]]:
                for c in caps:
                    for rec in read_capture(c):
                        yield rec.wall_ns, rec.frame
            run.bbo = replay_bbo(frames())
            run.has_capture = True
        except Exception as exc:  # noqa: BLE001
            run.notes.append(f"capture unreadable ({exc}): the market's best bid/ask is not shown")
    elif capture:
        run.notes.append("no capture.bin.gz: the market's best bid/ask over time is not shown")
    if not (run.has_store or run.has_tape or run.summary):
        raise ReportError(f"{p}: no kmm.sqlite, tape.csv or summary.json here; is this a kmm output directory?")
    return run
