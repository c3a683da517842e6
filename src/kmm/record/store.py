"""The SQLite store: orders, fills, P&L snapshots, executions and their metrics, book snapshots.

Writes: every ``record_*`` / ``update_*`` method builds a small tuple and enqueues it (no I/O on the
caller's thread). One background thread owns the write connection (WAL journal) and executes the
queue in transactions, committing every ``commit_interval_s`` or ``commit_rows`` statements, and on
``flush()`` / ``close()``. A crash loses at most the uncommitted batch and never leaves half a record:
each commit is atomic.

Reads: the read helpers open their own short-lived connection, so they work from any thread, while
the writer runs and after ``close()``; they see what has been committed (call ``flush()`` first, off
the event loop, to see everything written so far). :class:`StoreReader` offers them alone, for
reports and restart recovery on an existing file.

Units in the database are kmm's integer units (design section 2): prices ``INTEGER`` 1e-4 $ in YES
terms, sizes ``INTEGER`` 1e-2 contracts, money and fees ``INTEGER`` 1e-4 $, times ``INTEGER`` ns
(``*_ns`` wall clock from ``time.time_ns()`` unless said otherwise; ``ts_ms`` is exchange time in ms;
``recv_ns`` and durations are monotonic ns). Sides are V2 book sides on the YES book: ``bid`` buys YES,
``ask`` sells YES. Averages and slippage are ``REAL`` in 1e-4 $ (they can be fractional).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from kmm.kalshi.types import Fill, UserOrder
from kmm.record._worker import BackgroundWriter, RecordError

# ---- schema ---------------------------------------------------------------------------------------

#: (version, DDL). Append a new entry to migrate; never edit a shipped one.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    client_order_id TEXT UNIQUE,
    order_id        TEXT UNIQUE,
    ticker          TEXT,
    side            TEXT,              -- bid | ask
    price           INTEGER,           -- 1e-4 $ YES
    count           INTEGER,           -- 1e-2 contracts, size of the order (after amends)
    fill_count      INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,     -- pending | resting | canceled | executed | rejected | unknown
    execution_id    TEXT,
    strategy        TEXT,
    reason          TEXT,
    created_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL
);
CREATE INDEX orders_by_ticker ON orders (ticker, status);
CREATE INDEX orders_by_execution ON orders (execution_id);
CREATE TABLE order_events (
    id              INTEGER PRIMARY KEY,
    client_order_id TEXT,
    order_id        TEXT,
    status          TEXT NOT NULL,
    price           INTEGER,
    count           INTEGER,
    fill_count      INTEGER,
    reason          TEXT,
    ts_ns           INTEGER NOT NULL
);
CREATE TABLE fills (
    trade_id        TEXT PRIMARY KEY,  -- dedupe key: a replayed fill is ignored
    order_id        TEXT NOT NULL,
    client_order_id TEXT,
    ticker          TEXT NOT NULL,
    side            TEXT NOT NULL,
    price           INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    fee             INTEGER NOT NULL,
    is_taker        INTEGER NOT NULL,
    post_position   INTEGER,
    ts_ms           INTEGER NOT NULL,
    recv_ns         INTEGER NOT NULL
);
CREATE INDEX fills_by_ticker ON fills (ticker, ts_ms);
CREATE INDEX fills_by_order ON fills (order_id);
CREATE TABLE pnl (
    id              INTEGER PRIMARY KEY,
    ts_ns           INTEGER NOT NULL,
    ticker          TEXT NOT NULL,     -- '*' for the whole portfolio
    position        INTEGER NOT NULL,  -- signed 1e-2 contracts
    cash            INTEGER NOT NULL,
    realized        INTEGER NOT NULL,  -- net of fees
    unrealized      INTEGER NOT NULL,
    fees            INTEGER NOT NULL
);
CREATE INDEX pnl_by_ticker ON pnl (ticker, ts_ns);
CREATE TABLE executions (
    execution_id    TEXT PRIMARY KEY,
    ticker          TEXT NOT NULL,
    side            TEXT NOT NULL,     -- bid (buy YES) | ask (sell YES)
    target_size     INTEGER NOT NULL,
    limit_price     INTEGER,
    algo            TEXT NOT NULL,
    params          TEXT NOT NULL,     -- JSON
    state           TEXT,              -- JSON, the algorithm's resumable state
    status          TEXT NOT NULL,
    reason          TEXT,
    started_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL,
    ended_ns        INTEGER            -- NULL while open
);
CREATE INDEX executions_open ON executions (ended_ns);
CREATE TABLE execution_orders (
    client_order_id TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL,
    order_id        TEXT,
    level           INTEGER NOT NULL,
    target_price    INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    status          TEXT NOT NULL,
    filled          INTEGER NOT NULL DEFAULT 0,
    created_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL,
    filled_ns       INTEGER
);
CREATE INDEX execution_orders_by_execution ON execution_orders (execution_id);
CREATE TABLE execution_metrics (
    execution_id    TEXT PRIMARY KEY,
    ts_ns           INTEGER NOT NULL,
    target_size     INTEGER NOT NULL,
    filled_size     INTEGER NOT NULL,
    fill_rate       REAL NOT NULL,
    target_price    INTEGER,
    limit_price     INTEGER,
    avg_fill_price  REAL,
    arrival_bid     INTEGER,
    arrival_ask     INTEGER,
    slippage_arrival REAL,
    slippage_limit  REAL,
    fees            INTEGER NOT NULL,
    time_to_first_fill_ns INTEGER,
    time_to_full_fill_ns  INTEGER,
    walks           INTEGER NOT NULL,
    splits          INTEGER NOT NULL,
    api_calls       INTEGER NOT NULL
);
CREATE TABLE book_snapshots (
    id              INTEGER PRIMARY KEY,
    ts_ns           INTEGER NOT NULL,
    ticker          TEXT NOT NULL,
    seq             INTEGER,
    reason          TEXT NOT NULL,
    bids            TEXT NOT NULL,     -- JSON [[price, size], ...] best first
    asks            TEXT NOT NULL      -- JSON [[price, size], ...] best first, YES prices
);
CREATE INDEX book_snapshots_by_ticker ON book_snapshots (ticker, ts_ns);
"""),
    (2, """
CREATE TABLE incentive_samples (
    id              INTEGER PRIMARY KEY,
    ts_ns           INTEGER NOT NULL,
    ticker          TEXT NOT NULL,
    program_id      TEXT NOT NULL,
    qualifies       INTEGER NOT NULL,  -- 1: our resting quotes score in this snapshot
    score           REAL NOT NULL,     -- our score, contracts x distance multiplier (both sides)
    share           REAL,              -- our score / everyone's, NULL when nobody scores
    bid_qualifying  INTEGER NOT NULL,  -- 1e-2 contracts of our bid that count
    ask_qualifying  INTEGER NOT NULL,
    reasons         TEXT NOT NULL      -- why not (or not all) of our size counts, empty when it all does
);
CREATE INDEX incentive_samples_by_ticker ON incentive_samples (ticker, ts_ns);
"""),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: Execution statuses that end an execution; ``update_execution`` stamps ``ended_ns`` on them.
TERMINAL_EXECUTION_STATUSES = frozenset({"done", "canceled", "failed", "expired"})


def migrate(conn: sqlite3.Connection, path: object = "") -> int:
    """Bring ``conn`` to ``SCHEMA_VERSION``; return the version found before. Raises on a newer file."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                 "(version INTEGER NOT NULL, applied_ns INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    found = row[0] or 0
    if found > SCHEMA_VERSION:
        raise RecordError(f"{path}: database schema version {found} is newer than this kmm supports "
                          f"({SCHEMA_VERSION}); upgrade kmm or use a new output directory")
    for version, ddl in MIGRATIONS:
        if version > found:
            conn.execute("BEGIN")
            try:
                for stmt in ddl.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time_ns()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    return found


# ---- row types (what the read helpers return) ----------------------------------------------------

@dataclass(slots=True, frozen=True)
class OrderRecord:
    client_order_id: str | None
    order_id: str | None
    ticker: str | None
    side: str | None
    price: int | None
    count: int | None
    fill_count: int
    status: str
    execution_id: str | None
    strategy: str | None
    reason: str | None
    created_ns: int
    updated_ns: int


@dataclass(slots=True, frozen=True)
class PnlSnapshot:
    ts_ns: int
    ticker: str
    position: int
    cash: int
    realized: int
    unrealized: int
    fees: int


@dataclass(slots=True, frozen=True)
class ExecutionRecord:
    execution_id: str
    ticker: str
    side: str
    target_size: int
    limit_price: int | None
    algo: str
    params: dict[str, Any]
    state: dict[str, Any] | None
    status: str
    reason: str | None
    started_ns: int
    updated_ns: int
    ended_ns: int | None


@dataclass(slots=True, frozen=True)
class ExecutionOrderRecord:
    client_order_id: str
    execution_id: str
    order_id: str | None
    level: int
    target_price: int
    size: int
    status: str
    filled: int
    created_ns: int
    updated_ns: int
    filled_ns: int | None


@dataclass(slots=True, frozen=True)
class ExecutionMetrics:
    """Execution quality, one row per execution (re-recording replaces it).

    Slippage is per contract in 1e-4 $, positive when worse for us (see :func:`signed_slippage`):
    ``slippage_arrival`` against the best opposite price at arrival (ask for a buy, bid for a sell),
    ``slippage_limit`` against the limit. Durations are monotonic ns from the execution's start.
    """

    execution_id: str
    ts_ns: int
    target_size: int
    filled_size: int
    fill_rate: float
    target_price: int | None
    limit_price: int | None
    avg_fill_price: float | None
    arrival_bid: int | None
    arrival_ask: int | None
    slippage_arrival: float | None
    slippage_limit: float | None
    fees: int
    time_to_first_fill_ns: int | None
    time_to_full_fill_ns: int | None
    walks: int = 0
    splits: int = 0
    api_calls: int = 0


@dataclass(slots=True, frozen=True)
class BookSnapshot:
    ts_ns: int
    ticker: str
    seq: int | None
    reason: str
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


def signed_slippage(side: str, avg_fill_price: float, reference_price: int) -> float:
    """Per-contract slippage in 1e-4 $, positive when the fill is worse than ``reference_price``:
    a buy (``bid``) paying more, or a sell (``ask``) receiving less."""
    if side == "bid":
        return avg_fill_price - reference_price
    if side == "ask":
        return reference_price - avg_fill_price
    raise ValueError(f"signed_slippage: side must be 'bid' or 'ask', got {side!r}")


# ---- reading --------------------------------------------------------------------------------------

def _j(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class StoreReader:
    """Synchronous reads on a store file; each call opens and closes its own connection."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            raise RecordError(f"{self.path}: no such store")
        conn = sqlite3.connect(self.path, timeout=10.0)
        try:
            conn.execute("PRAGMA query_only = 1")
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def schema_version(self) -> int:
        return int(self._query("SELECT MAX(version) FROM schema_version")[0][0] or 0)

    def fills(self, ticker: str | None = None, *, order_id: str | None = None) -> list[Fill]:
        """Our fills in exchange-time order (then trade_id), optionally for one market or order."""
        where, args = _where(ticker=ticker, order_id=order_id)
        rows = self._query(
            "SELECT trade_id, order_id, client_order_id, ticker, side, price, count, fee, is_taker, "
            f"post_position, ts_ms, recv_ns FROM fills{where} ORDER BY ts_ms, trade_id", args)
        return [Fill(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], r[10], r[11])
                for r in rows]

    def orders(self, ticker: str | None = None, *, status: str | Iterable[str] | None = None,
               execution_id: str | None = None, client_order_id: str | None = None) -> list[OrderRecord]:
        """Orders (current state), oldest first. ``status`` may be one status or several."""
        where, args = _where(ticker=ticker, status=status, execution_id=execution_id,
                             client_order_id=client_order_id)
        rows = self._query(
            "SELECT client_order_id, order_id, ticker, side, price, count, fill_count, status, "
            f"execution_id, strategy, reason, created_ns, updated_ns FROM orders{where} ORDER BY id", args)
        return [OrderRecord(*r) for r in rows]

    def order_events(self, client_order_id: str | None = None) -> list[tuple[Any, ...]]:
        """``(client_order_id, order_id, status, price, count, fill_count, reason, ts_ns)`` history."""
        where, args = _where(client_order_id=client_order_id)
        return self._query("SELECT client_order_id, order_id, status, price, count, fill_count, reason, "
                           f"ts_ns FROM order_events{where} ORDER BY id", args)

    def pnl(self, ticker: str | None = None) -> list[PnlSnapshot]:
        where, args = _where(ticker=ticker)
        rows = self._query("SELECT ts_ns, ticker, position, cash, realized, unrealized, fees "
                           f"FROM pnl{where} ORDER BY id", args)
        return [PnlSnapshot(*r) for r in rows]

    def _executions(self, where: str, args: Sequence[Any]) -> list[ExecutionRecord]:
        rows = self._query(
            "SELECT execution_id, ticker, side, target_size, limit_price, algo, params, state, status, "
            f"reason, started_ns, updated_ns, ended_ns FROM executions{where} ORDER BY started_ns, "
            "execution_id", args)
        return [ExecutionRecord(r[0], r[1], r[2], r[3], r[4], r[5], _j(r[6]), _j(r[7]), *r[8:])
                for r in rows]

    def executions(self, ticker: str | None = None) -> list[ExecutionRecord]:
        where, args = _where(ticker=ticker)
        return self._executions(where, args)

    def open_executions(self) -> list[ExecutionRecord]:
        """Executions not ended (``ended_ns`` NULL): what a restart must resume or wind down."""
        return self._executions(" WHERE ended_ns IS NULL", ())

    def execution_orders(self, execution_id: str | None = None) -> list[ExecutionOrderRecord]:
        where, args = _where(execution_id=execution_id)
        rows = self._query(
            "SELECT client_order_id, execution_id, order_id, level, target_price, size, status, filled, "
            f"created_ns, updated_ns, filled_ns FROM execution_orders{where} ORDER BY created_ns, "
            "client_order_id", args)
        return [ExecutionOrderRecord(*r) for r in rows]

    def execution_metrics(self, execution_id: str | None = None) -> list[ExecutionMetrics]:
        where, args = _where(execution_id=execution_id)
        rows = self._query(f"SELECT {_METRIC_COLS} FROM execution_metrics{where} ORDER BY ts_ns", args)
        return [ExecutionMetrics(*r) for r in rows]

    def incentive_samples(self, ticker: str | None = None) -> list[tuple[Any, ...]]:
        """``(ts_ns, ticker, program_id, qualifies, score, share, bid_qualifying, ask_qualifying,
        reasons)`` rows in time order (an older store without the table: none)."""
        where, args = _where(ticker=ticker)
        try:
            return self._query("SELECT ts_ns, ticker, program_id, qualifies, score, share, bid_qualifying, "
                               f"ask_qualifying, reasons FROM incentive_samples{where} ORDER BY id", args)
        except sqlite3.OperationalError:
            return []

    def book_snapshots(self, ticker: str | None = None, *, reason: str | None = None) -> list[BookSnapshot]:
        where, args = _where(ticker=ticker, reason=reason)
        rows = self._query(f"SELECT ts_ns, ticker, seq, reason, bids, asks FROM book_snapshots{where} "
                           "ORDER BY id", args)
        return [BookSnapshot(r[0], r[1], r[2], r[3], [tuple(x) for x in json.loads(r[4])],
                             [tuple(x) for x in json.loads(r[5])]) for r in rows]


_METRIC_COLS = ("execution_id, ts_ns, target_size, filled_size, fill_rate, target_price, limit_price, "
                "avg_fill_price, arrival_bid, arrival_ask, slippage_arrival, slippage_limit, fees, "
                "time_to_first_fill_ns, time_to_full_fill_ns, walks, splits, api_calls")


def _where(**conds: Any) -> tuple[str, list[Any]]:
    parts, args = [], []
    for col, val in conds.items():
        if val is None:
            continue
        if isinstance(val, (list, tuple, set, frozenset)):
            vals = list(val)
            parts.append(f"{col} IN ({','.join('?' * len(vals))})")
            args.extend(vals)
        else:
            parts.append(f"{col} = ?")
            args.append(val)
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


# ---- writing --------------------------------------------------------------------------------------

# operation codes of queued items: (code, params)
_ORDER, _FILL, _PNL, _EXEC, _EXEC_UPD, _EXEC_ORDER, _METRICS, _BOOK, _INCENTIVE = range(9)


class Store(StoreReader, BackgroundWriter):
    """The SQLite store. Construct off the event loop (it opens and migrates the file); then the
    ``record_*`` methods are safe on the loop (enqueue only), and ``flush()``/``close()`` are not."""

    def __init__(self, path: str | os.PathLike[str], *, commit_interval_s: float = 0.1,
                 commit_rows: int = 2000, synchronous: str = "NORMAL",
                 clock: Callable[[], int] = time.time_ns, cpus: frozenset[int] = frozenset()) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"Store: synchronous must be OFF|NORMAL|FULL|EXTRA, got {synchronous!r}")
        StoreReader.__init__(self, path)
        self._synchronous = synchronous.upper()
        self._clock = clock
        self.duplicate_fills = 0     # fills ignored because their trade_id was already stored
        BackgroundWriter.__init__(self, f"store:{self.path.name}", flush_interval_s=commit_interval_s,
                                  flush_rows=commit_rows, cpus=cpus)

    # ---- record API (event loop: enqueue only) ---------------------------------------------------

    def record_order(self, *, status: str, client_order_id: str | None = None,
                     order_id: str | None = None, ticker: str | None = None, side: str | None = None,
                     price: int | None = None, count: int | None = None, fill_count: int | None = None,
                     execution_id: str | None = None, strategy: str | None = None,
                     reason: str | None = None, ts_ns: int | None = None) -> None:
        """Insert or update one order, found by ``client_order_id`` then ``order_id``; ``None`` fields
        keep their stored value. Every call also appends to ``order_events``."""
        if client_order_id is None and order_id is None:
            raise ValueError("record_order: give client_order_id or order_id (or both)")
        self._put((_ORDER, (client_order_id, order_id, ticker, side, price, count, fill_count, status,
                            execution_id, strategy, reason,
                            self._clock() if ts_ns is None else ts_ns)))

    def record_user_order(self, order: UserOrder, *, execution_id: str | None = None,
                          strategy: str | None = None, reason: str | None = None,
                          ts_ns: int | None = None) -> None:
        """``record_order`` from a connector :class:`UserOrder`."""
        self.record_order(status=order.status, client_order_id=order.client_order_id,
                          order_id=order.order_id, ticker=order.ticker, side=order.side,
                          price=order.price, count=order.initial_count, fill_count=order.fill_count,
                          execution_id=execution_id, strategy=strategy, reason=reason, ts_ns=ts_ns)

    def record_fill(self, fill: Fill) -> None:
        """Store a fill once: a second fill with the same ``trade_id`` is ignored (and counted in
        ``duplicate_fills``)."""
        self._put((_FILL, fill))

    def record_pnl(self, *, ticker: str = "*", position: int, cash: int, realized: int,
                   unrealized: int, fees: int, ts_ns: int | None = None) -> None:
        """A P&L snapshot for one market or, with ``ticker='*'``, the portfolio. ``realized`` is net
        of fees; ``fees`` is the cumulative fee total."""
        self._put((_PNL, (self._clock() if ts_ns is None else ts_ns, ticker, position, cash, realized,
                          unrealized, fees)))

    def record_execution(self, *, execution_id: str, ticker: str, side: str, target_size: int,
                         algo: str, limit_price: int | None = None,
                         params: Mapping[str, Any] | None = None, status: str = "running",
                         state: Mapping[str, Any] | None = None, reason: str | None = None,
                         started_ns: int | None = None) -> None:
        """Start an execution. The caller owns ``execution_id`` (a uuid), so child orders can name it
        at once. ``params`` and ``state`` must be JSON-serialisable (checked here, on the caller)."""
        if side not in ("bid", "ask"):
            raise ValueError(f"record_execution {execution_id}: side must be 'bid' or 'ask', got {side!r}")
        ts = self._clock() if started_ns is None else started_ns
        self._put((_EXEC, (execution_id, ticker, side, target_size, limit_price, algo,
                           json.dumps(dict(params or {}), sort_keys=True),
                           None if state is None else json.dumps(dict(state), sort_keys=True),
                           status, reason, ts, ts)))

    def update_execution(self, execution_id: str, *, status: str | None = None,
                         state: Mapping[str, Any] | None = None, reason: str | None = None,
                         ended_ns: int | None = None, ts_ns: int | None = None) -> None:
        """Update an execution's status/state/reason. A status in ``TERMINAL_EXECUTION_STATUSES``
        ends it (``ended_ns`` defaults to now), so ``open_executions()`` no longer lists it."""
        ts = self._clock() if ts_ns is None else ts_ns
        if ended_ns is None and status in TERMINAL_EXECUTION_STATUSES:
            ended_ns = ts
        self._put((_EXEC_UPD, (status, None if state is None else json.dumps(dict(state), sort_keys=True),
                               reason, ended_ns, ts, execution_id)))

    def record_execution_order(self, *, execution_id: str, client_order_id: str, level: int,
                               target_price: int, size: int, status: str, filled: int = 0,
                               order_id: str | None = None, filled_ns: int | None = None,
                               ts_ns: int | None = None) -> None:
        """Insert or update one child order of an execution (keyed by ``client_order_id``)."""
        self._put((_EXEC_ORDER, (client_order_id, execution_id, order_id, level, target_price, size,
                                 status, filled, self._clock() if ts_ns is None else ts_ns, filled_ns)))

    def record_execution_metrics(self, metrics: ExecutionMetrics) -> None:
        """Store (or replace) the metrics row of ``metrics.execution_id``."""
        self._put((_METRICS, metrics))

    def record_book_snapshot(self, *, ticker: str, bids: Iterable[tuple[int, int]],
                             asks: Iterable[tuple[int, int]], reason: str, seq: int | None = None,
                             ts_ns: int | None = None) -> None:
        """A book snapshot (levels best first, ``(price, size)`` in kmm units, YES prices on both
        sides), e.g. ``reason='arrival'`` when an execution starts. The levels are copied here."""
        self._put((_BOOK, (self._clock() if ts_ns is None else ts_ns, ticker, seq, reason,
                           [(int(p), int(s)) for p, s in bids], [(int(p), int(s)) for p, s in asks])))

    def record_incentive(self, *, ticker: str, program_id: str, qualifies: bool, score: float,
                         share: float | None, bid_qualifying: int, ask_qualifying: int, reasons: str,
                         ts_ns: int | None = None) -> None:
        """One incentive-program snapshot of our quotes in ``ticker`` (:mod:`kmm.engine.incentives`)."""
        self._put((_INCENTIVE, (self._clock() if ts_ns is None else ts_ns, ticker, program_id, int(qualifies),
                                float(score), share, int(bid_qualifying), int(ask_qualifying), reasons)))

    # ---- writer thread -----------------------------------------------------------------------------

    def _open_sink(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=10.0)
        except sqlite3.Error as exc:
            raise RecordError(f"{self.path}: cannot open the store: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RecordError(f"{self.path}: could not switch the store to WAL (got {mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn      # from here on used by the writer thread only

    def _sink(self, items: list[tuple[int, Any]]) -> None:
        conn = self._conn
        if not conn.in_transaction:
            conn.execute("BEGIN")
        handlers = self._handlers
        for code, args in items:
            try:
                handlers[code](self, conn, args)
            except sqlite3.Error as exc:
                self._written -= 1     # the base counts the batch as written; undo for this item
                self._note_error(exc, 1, f"writing {_OP_NAMES[code]} {args!r:.200}")

    def _flush(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def _close_sink(self) -> None:
        try:
            self._flush()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()

    # each handler: (self, conn, args)

    def _w_order(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        coid, oid, ticker, side, price, count, fill_count, status, exec_id, strategy, reason, ts = a
        row = None
        if coid is not None:
            row = conn.execute("SELECT id FROM orders WHERE client_order_id = ?", (coid,)).fetchone()
        if row is None and oid is not None:
            row = conn.execute("SELECT id FROM orders WHERE order_id = ?", (oid,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO orders (client_order_id, order_id, ticker, side, price, count, fill_count, "
                "status, execution_id, strategy, reason, created_ns, updated_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (coid, oid, ticker, side, price, count, fill_count or 0, status, exec_id, strategy,
                 reason, ts, ts))
        else:
            conn.execute(
                "UPDATE orders SET client_order_id = COALESCE(client_order_id, ?), "
                "order_id = COALESCE(?, order_id), ticker = COALESCE(?, ticker), "
                "side = COALESCE(?, side), price = COALESCE(?, price), count = COALESCE(?, count), "
                "fill_count = COALESCE(?, fill_count), status = ?, "
                "execution_id = COALESCE(?, execution_id), strategy = COALESCE(?, strategy), "
                "reason = COALESCE(?, reason), updated_ns = ? WHERE id = ?",
                (coid, oid, ticker, side, price, count, fill_count, status, exec_id, strategy, reason,
                 ts, row[0]))
        conn.execute("INSERT INTO order_events (client_order_id, order_id, status, price, count, "
                     "fill_count, reason, ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (coid, oid, status, price, count, fill_count, reason, ts))

    def _w_fill(self, conn: sqlite3.Connection, f: Fill) -> None:
        cur = conn.execute(
            "INSERT OR IGNORE INTO fills (trade_id, order_id, client_order_id, ticker, side, price, "
            "count, fee, is_taker, post_position, ts_ms, recv_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.trade_id, f.order_id, f.client_order_id, f.ticker, f.side, f.price, f.count, f.fee,
             int(f.is_taker), f.post_position, f.ts_ms, f.recv_ns))
        if cur.rowcount == 0:
            self.duplicate_fills += 1

    def _w_pnl(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        conn.execute("INSERT INTO pnl (ts_ns, ticker, position, cash, realized, unrealized, fees) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", a)

    def _w_exec(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        conn.execute("INSERT INTO executions (execution_id, ticker, side, target_size, limit_price, algo, "
                     "params, state, status, reason, started_ns, updated_ns) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", a)

    def _w_exec_upd(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        cur = conn.execute("UPDATE executions SET status = COALESCE(?, status), state = COALESCE(?, state), "
                           "reason = COALESCE(?, reason), ended_ns = COALESCE(?, ended_ns), "
                           "updated_ns = ? WHERE execution_id = ?", a)
        if cur.rowcount == 0:
            raise sqlite3.IntegrityError(f"update_execution: no execution {a[-1]!r} was recorded")

    def _w_exec_order(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        coid, exec_id, oid, level, target_price, size, status, filled, ts, filled_ns = a
        conn.execute(
            "INSERT INTO execution_orders (client_order_id, execution_id, order_id, level, target_price, "
            "size, status, filled, created_ns, updated_ns, filled_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (client_order_id) DO UPDATE SET order_id = COALESCE(excluded.order_id, order_id), "
            "level = excluded.level, target_price = excluded.target_price, size = excluded.size, "
            "status = excluded.status, filled = excluded.filled, updated_ns = excluded.updated_ns, "
            "filled_ns = COALESCE(excluded.filled_ns, filled_ns)",
            (coid, exec_id, oid, level, target_price, size, status, filled, ts, ts, filled_ns))

    def _w_metrics(self, conn: sqlite3.Connection, m: ExecutionMetrics) -> None:
        conn.execute(f"INSERT OR REPLACE INTO execution_metrics ({_METRIC_COLS}) "
                     f"VALUES ({','.join('?' * 18)})",
                     (m.execution_id, m.ts_ns, m.target_size, m.filled_size, m.fill_rate, m.target_price,
                      m.limit_price, m.avg_fill_price, m.arrival_bid, m.arrival_ask, m.slippage_arrival,
                      m.slippage_limit, m.fees, m.time_to_first_fill_ns, m.time_to_full_fill_ns,
                      m.walks, m.splits, m.api_calls))

    def _w_book(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        ts, ticker, seq, reason, bids, asks = a
        conn.execute("INSERT INTO book_snapshots (ts_ns, ticker, seq, reason, bids, asks) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (ts, ticker, seq, reason, json.dumps(bids, separators=(",", ":")),
                      json.dumps(asks, separators=(",", ":"))))

    def _w_incentive(self, conn: sqlite3.Connection, a: tuple[Any, ...]) -> None:
        conn.execute("INSERT INTO incentive_samples (ts_ns, ticker, program_id, qualifies, score, share, "
                     "bid_qualifying, ask_qualifying, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", a)

    _handlers: Sequence[Callable[[Store, sqlite3.Connection, Any], None]] = (
        _w_order, _w_fill, _w_pnl, _w_exec, _w_exec_upd, _w_exec_order, _w_metrics, _w_book, _w_incentive)


_OP_NAMES = ("order", "fill", "pnl", "execution", "execution update", "execution order",
             "execution metrics", "book snapshot", "incentive sample")

__all__ = [
    "BookSnapshot", "ExecutionMetrics", "ExecutionOrderRecord", "ExecutionRecord", "MIGRATIONS",
    "OrderRecord", "PnlSnapshot", "SCHEMA_VERSION", "Store", "StoreReader",
    "TERMINAL_EXECUTION_STATUSES", "migrate", "signed_slippage",
]
