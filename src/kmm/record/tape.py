"""``tape.csv``: one row per decision, fill or lifecycle event, for humans and for equity-curve replay.

The loop builds a :class:`TapeRow` in kmm's integer units and calls :meth:`TapeWriter.write`, which
only enqueues; or it enqueues the raw field tuple with :meth:`TapeWriter.write_raw` and the writer
thread builds the row. The writer thread formats rows as CSV (prices and money in dollars, sizes in contracts)
and writes each batch with one ``write`` call, so rows are whole; a reader drops a last line that has
no newline (the only thing a crash can leave behind). Every column is documented in ``COLUMNS`` and in
``docs/records.md``.

P&L convention: ``realized_pnl`` is closed P&L *net of every fee paid*; ``fees`` is the cumulative fee
total, shown for information and already included in ``realized_pnl``. Equity is therefore
``realized_pnl + unrealized_pnl``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

from kmm.record._worker import BackgroundWriter, RecordError

#: Column name -> meaning. Order is the CSV order.
COLUMNS: dict[str, str] = {
    "ts": "wall time of the event, ISO 8601 UTC with milliseconds (from ts_ns)",
    "ts_ns": "wall time of the event, int ns since the epoch (time.time_ns())",
    "ticker": "market ticker",
    "event": "decision | fill | reconcile | snapshot | cancel_all | kill | pause | resume | settle | stop",
    "mid": "book mid (or microprice), $ YES terms, 5 dp (may be a half tick)",
    "my_bid": "our bid after this event, $ YES, 4 dp; empty when we do not bid",
    "my_ask": "our ask after this event, $ YES, 4 dp; empty when we do not offer",
    "bid_size": "size of our bid, contracts, 2 dp",
    "ask_size": "size of our ask, contracts, 2 dp",
    "inventory": "signed net position after the event, contracts, 2 dp (> 0 long YES)",
    "unrealized_pnl": "mark-to-market P&L of the open position, $, 4 dp",
    "realized_pnl": "closed P&L net of all fees paid, $, 4 dp",
    "fees": "cumulative fees paid, $, 4 dp (already inside realized_pnl)",
    "latency_ms": ("frame received -> the decision's first request written, less any wait for the write budget "
                   "or a connection (the summary reports those apart), ms, 6 dp (exact ns); empty if no request"),
    "reservation": "model reservation price, $ YES, 5 dp",
    "spread": "model total quoted spread, $, 5 dp",
    "sigma": "volatility estimate used by the model, in the model's units",
    "ofi": "order-flow imbalance signal used by the model",
    "fill_side": "fill rows: our book side, bid (bought YES) | ask (sold YES)",
    "fill_price": "fill rows: YES price, $, 4 dp",
    "fill_size": "fill rows: contracts, 2 dp",
    "fill_fee": "fill rows: fee of this fill, $, 4 dp",
    "trade_id": "fill rows: exchange trade id",
    "note": "free text (one line; newlines become spaces): reason for a reconcile, kill switch, pause",
}
HEADER = list(COLUMNS)


@dataclass(slots=True)
class TapeRow:
    """One tape row in kmm units: prices 1e-4 $ (YES), sizes 1e-2 contracts, money 1e-4 $, time ns.

    ``mid``, ``reservation`` and ``spread`` are model values in 1e-4 $ and may be fractional.
    ``latency_ns`` is monotonic frame-receive -> request-sent; ``None`` when no request followed.
    """

    ts_ns: int
    ticker: str
    event: str
    mid: float | None = None
    my_bid: int | None = None
    my_ask: int | None = None
    bid_size: int = 0
    ask_size: int = 0
    inventory: int = 0
    unrealized_pnl: int = 0
    realized_pnl: int = 0
    fees: int = 0
    latency_ns: int | None = None
    reservation: float | None = None
    spread: float | None = None
    sigma: float | None = None
    ofi: float | None = None
    fill_side: str | None = None
    fill_price: int | None = None
    fill_size: int | None = None
    fill_fee: int | None = None
    trade_id: str | None = None
    note: str | None = None

    @property
    def equity(self) -> int:
        """realized + unrealized P&L, 1e-4 $."""
        return self.realized_pnl + self.unrealized_pnl


# ---- formatting (writer thread) -------------------------------------------------------------------

def _px4(v: int | None) -> str:       # 1e-4 $ int -> "0.4275"
    if v is None:
        return ""
    sign = "-" if v < 0 else ""
    q, r = divmod(abs(v), 10_000)
    return f"{sign}{q}.{r:04d}"


def _sz2(v: int | None) -> str:       # 1e-2 contracts int -> "10.00"
    if v is None:
        return ""
    sign = "-" if v < 0 else ""
    q, r = divmod(abs(v), 100)
    return f"{sign}{q}.{r:02d}"


def _f(v: float | None, scale: float, dp: int) -> str:
    return "" if v is None else f"{v / scale:.{dp}f}"


def _g(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _lat(ns: int) -> str:           # ns int -> ms with 6 dp, exact
    sign = "-" if ns < 0 else ""
    q, r = divmod(abs(ns), 1_000_000)
    return f"{sign}{q}.{r:06d}"


def _one_line(text: str | None) -> str:
    # rows stay one physical line each, so a crash can only ever cut the last one
    return "" if not text else text.replace("\r", " ").replace("\n", " ")


def _iso(ts_ns: int) -> str:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    base = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns // 1_000_000:03d}Z"


def format_row(r: TapeRow) -> list[str]:
    """The CSV cells of one row, in ``HEADER`` order."""
    return [
        _iso(r.ts_ns), str(r.ts_ns), r.ticker, r.event,
        _f(r.mid, 10_000, 5), _px4(r.my_bid), _px4(r.my_ask), _sz2(r.bid_size), _sz2(r.ask_size),
        _sz2(r.inventory), _px4(r.unrealized_pnl), _px4(r.realized_pnl), _px4(r.fees),
        "" if r.latency_ns is None else _lat(r.latency_ns),
        _f(r.reservation, 10_000, 5), _f(r.spread, 10_000, 5), _g(r.sigma), _g(r.ofi),
        r.fill_side or "", _px4(r.fill_price), _sz2(r.fill_size), _px4(r.fill_fee),
        r.trade_id or "", _one_line(r.note),
    ]


# ---- parsing (readers) ----------------------------------------------------------------------------

def _int_scaled(cell: str, scale: int) -> int | None:
    return None if cell == "" else int(Decimal(cell) * scale)


def _float_scaled(cell: str, scale: int) -> float | None:
    return None if cell == "" else float(cell) * scale


def _parse(cells: list[str], where: str) -> TapeRow:
    if len(cells) != len(HEADER):
        raise RecordError(f"{where}: expected {len(HEADER)} columns, got {len(cells)}")
    c = dict(zip(HEADER, cells))
    try:
        lat = c["latency_ms"]
        return TapeRow(
            ts_ns=int(c["ts_ns"]), ticker=c["ticker"], event=c["event"],
            mid=_float_scaled(c["mid"], 10_000),
            my_bid=_int_scaled(c["my_bid"], 10_000), my_ask=_int_scaled(c["my_ask"], 10_000),
            bid_size=_int_scaled(c["bid_size"], 100) or 0, ask_size=_int_scaled(c["ask_size"], 100) or 0,
            inventory=_int_scaled(c["inventory"], 100) or 0,
            unrealized_pnl=_int_scaled(c["unrealized_pnl"], 10_000) or 0,
            realized_pnl=_int_scaled(c["realized_pnl"], 10_000) or 0,
            fees=_int_scaled(c["fees"], 10_000) or 0,
            latency_ns=None if lat == "" else int(Decimal(lat) * 1_000_000),
            reservation=_float_scaled(c["reservation"], 10_000),
            spread=_float_scaled(c["spread"], 10_000),
            sigma=None if c["sigma"] == "" else float(c["sigma"]),
            ofi=None if c["ofi"] == "" else float(c["ofi"]),
            fill_side=c["fill_side"] or None, fill_price=_int_scaled(c["fill_price"], 10_000),
            fill_size=_int_scaled(c["fill_size"], 100), fill_fee=_int_scaled(c["fill_fee"], 10_000),
            trade_id=c["trade_id"] or None, note=c["note"] or None,
        )
    except (ValueError, ArithmeticError) as exc:
        raise RecordError(f"{where}: unparseable tape row: {exc}") from exc


def read_tape(path: str | os.PathLike[str]) -> Iterator[TapeRow]:
    """Yield the rows of a tape. A last line without a newline (a crash mid-write) is skipped."""
    p = Path(path)
    with open(p, newline="", encoding="utf-8") as f:
        text = f.read()
    if not text:
        return
    complete, _, tail = text.rpartition("\n")
    if not complete and tail:            # a header cut short: nothing usable
        return
    reader = csv.reader(io.StringIO(complete + "\n"))
    header = next(reader, None)
    if header != HEADER:
        raise RecordError(f"{p}: not a kmm tape (header {header!r}); expected {HEADER!r}")
    for n, cells in enumerate(reader, start=2):
        yield _parse(cells, f"{p}:{n}")


def equity_curve(path: str | os.PathLike[str], ticker: str | None = None) -> list[tuple[int, int]]:
    """``[(ts_ns, equity)]``, equity = realized + unrealized in 1e-4 $, one point per row.

    With ``ticker=None`` the equity is the sum over tickers of each ticker's latest row, so a tape that
    interleaves markets gives the portfolio curve.
    """
    latest: dict[str, int] = {}
    total = 0
    out: list[tuple[int, int]] = []
    for row in read_tape(path):
        if ticker is not None and row.ticker != ticker:
            continue
        eq = row.equity
        total += eq - latest.get(row.ticker, 0)
        latest[row.ticker] = eq
        out.append((row.ts_ns, total))
    return out


def engine_fields(ts_ns: int, ticker: str, event: str, inputs: Any, target: Any, live: Iterable[Any], pf: Any,
                  latency_ns: int | None = None, fill: Any = None) -> tuple[object, ...]:
    """The raw row (:meth:`TapeWriter.write_raw`) the engine writes for a market: its pipeline's
    ``inputs`` and ``target``, our first live bid and ask (``live``: the order manager's live orders),
    the portfolio's position and P&L, the decision's latency, the fill. The live maker and
    ``kmm backtest`` both write their rows with it."""
    bid = ask = None
    for o in live:
        if o.side == "bid":
            bid = bid or o
        elif ask is None:
            ask = o
    fees = pf.fees_paid(ticker)
    mid = inputs.mid
    half = target.half_spread
    return (ts_ns, ticker, event, None if mid is None else int(round(mid)),
            bid.price if bid else None, ask.price if ask else None,
            bid.remaining if bid else 0, ask.remaining if ask else 0,
            pf.position(ticker), pf.unrealized_pnl(ticker), pf.realized_pnl(ticker) - fees, fees,
            latency_ns if event == "decision" else None,
            target.reservation, (2 * half) if half else None, inputs.sigma, inputs.ofi_skew or None,
            *((fill.side, fill.price, fill.count, fill.fee, fill.trade_id) if fill else ()))


# ---- writer ---------------------------------------------------------------------------------------

class TapeWriter(BackgroundWriter):
    """Appends :class:`TapeRow` s to a CSV file from a background thread.

    A new or empty file gets the header. An existing tape is appended to after its header is checked
    and a partial last line (from a crash) is cut off.
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval_s: float = 0.2,
                 flush_rows: int = 1000, fsync_on_close: bool = True, cpus: frozenset[int] = frozenset()) -> None:
        self.path = Path(path)
        self._fsync_on_close = fsync_on_close
        super().__init__(f"tape:{self.path.name}", flush_interval_s=flush_interval_s,
                         flush_rows=flush_rows, cpus=cpus)

    def write(self, row: TapeRow) -> None:
        """Enqueue one row (non-blocking, no I/O)."""
        self._put(row)

    def write_raw(self, fields: tuple[object, ...]) -> None:
        """Enqueue one row as a plain tuple of :class:`TapeRow`'s fields in their order (``ts_ns,
        ticker, event, mid, ...``; trailing ones may be left out): the row object is built on the
        writer thread, so the event loop pays one tuple and one queue put."""
        self._put(fields)

    def _open_sink(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size:
            with open(self.path, "rb") as f:
                head = f.readline().decode("utf-8", "replace").rstrip("\r\n")
                if head != ",".join(HEADER):
                    raise RecordError(f"{self.path}: exists and is not a tape with this kmm's columns; "
                                      "use a new output directory or move the file away")
                f.seek(0, os.SEEK_END)
                # cut a partial last line left by a crash, so appended rows start on a line of their own
                pos = f.tell()
                back = min(pos, 1 << 16)
                f.seek(pos - back)
                tail = f.read(back)
            if not tail.endswith(b"\n"):
                cut = pos - back + tail.rfind(b"\n") + 1
                os.truncate(self.path, cut)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if not size:
            self._file.write(",".join(HEADER) + "\n")
            self._file.flush()
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")

    def _sink(self, items: list[TapeRow | tuple[object, ...]]) -> None:
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._csv.writerows(format_row(r if isinstance(r, TapeRow) else TapeRow(*r)) for r in items)  # type: ignore[arg-type]
        self._file.write(buf.getvalue())     # one write per batch: rows go out whole

    def _flush(self) -> None:
        self._file.flush()

    def _close_sink(self) -> None:
        self._file.flush()
        if self._fsync_on_close:
            os.fsync(self._file.fileno())
        self._file.close()


__all__ = ["COLUMNS", "HEADER", "TapeRow", "TapeWriter", "equity_curve", "format_row", "read_tape"]
