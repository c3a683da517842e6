"""Loop-side cost of recording: kmm's enqueue-only writers against writing inline on the caller.

Each pair shares a group; ``ops`` is the number of records one round writes. The kmm side measures
what the event loop pays (the writer thread does the disk work concurrently); the baseline does the
same disk work inline, as a naive recorder on the loop would. After timing, every benchmark closes its
writer and asserts that every record it wrote is on disk.
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from kmm.kalshi.types import Fill
from kmm.record import CaptureWriter, Store, StoreReader, TapeRow, TapeWriter, read_capture, read_tape
from kmm.record.tape import HEADER, format_row

N = 1_000          # records per round
ROUNDS = 30
_medians: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    for group, roles in sorted(_medians.items()):
        if "kmm" in roles and "baseline" in roles:
            print(f"\n{group}: kmm {roles['kmm'] / N * 1e9:.0f} ns/record, baseline "
                  f"{roles['baseline'] / N * 1e9:.0f} ns/record, ratio baseline/kmm "
                  f"{roles['baseline'] / roles['kmm']:.1f}x (p99 kmm {roles['kmm_p99'] / N * 1e9:.0f} ns)")


def _run(benchmark: Any, group: str, role: str, body: Callable[[], None]) -> None:
    benchmark.group = group
    benchmark.extra_info.update(role=role, ops=N)
    benchmark.pedantic(body, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    data = sorted(benchmark.stats.stats.data)
    entry = _medians.setdefault(group, {})
    entry[role] = statistics.median(data)
    entry[f"{role}_p99"] = data[min(len(data) - 1, int(len(data) * 0.99))]


def _row(i: int) -> TapeRow:
    return TapeRow(ts_ns=i, ticker="KXMKT", event="decision", mid=4275.5, my_bid=4200, my_ask=4300,
                   bid_size=1000, ask_size=1000, inventory=-250, unrealized_pnl=-125, realized_pnl=i,
                   fees=70, latency_ns=8_000, reservation=4270.25, spread=95.0, sigma=0.012, ofi=-0.3)


def _fill(i: int) -> Fill:
    return Fill(f"trade-{i}", "ord-1", "coid-1", "KXMKT", "bid", 4275, 100, 18, True, 100, i, i)


def test_tape_write_kmm(benchmark: Any, tmp_path: Path) -> None:
    w = TapeWriter(tmp_path / "tape.csv")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            w.write(_row(i))
        n[0] += N

    _run(benchmark, "record: tape row", "kmm", body)
    w.close()
    assert sum(1 for _ in read_tape(tmp_path / "tape.csv")) == n[0]


def test_tape_write_baseline_inline(benchmark: Any, tmp_path: Path) -> None:
    f = open(tmp_path / "tape.csv", "w", newline="")
    out = csv.writer(f, lineterminator="\n")
    out.writerow(HEADER)
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            out.writerow(format_row(_row(i)))
            f.flush()
        n[0] += N

    _run(benchmark, "record: tape row", "baseline", body)
    f.close()
    assert sum(1 for _ in read_tape(tmp_path / "tape.csv")) == n[0]


def test_store_fill_kmm(benchmark: Any, tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            s.record_fill(_fill(i))
        n[0] += N

    _run(benchmark, "record: store fill", "kmm", body)
    s.close()
    assert len(s.fills()) == n[0]


def test_store_fill_baseline_inline_commit(benchmark: Any, tmp_path: Path) -> None:
    Store(tmp_path / "db.sqlite").close()          # same schema and pragmas
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            f = _fill(i)
            conn.execute("INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (f.trade_id, f.order_id, f.client_order_id, f.ticker, f.side, f.price, f.count,
                          f.fee, int(f.is_taker), f.post_position, f.ts_ms, f.recv_ns))   # autocommit
        n[0] += N

    _run(benchmark, "record: store fill", "baseline", body)
    conn.close()
    assert len(StoreReader(tmp_path / "db.sqlite").fills()) == n[0]


FRAME = (b'{"type":"orderbook_delta","sid":1,"seq":%d,"msg":{"market_ticker":"KXMKT","price_dollars":"0.4200",'
         b'"delta_fp":"-10.00","side":"yes"}}')


def test_capture_write_kmm(benchmark: Any, tmp_path: Path) -> None:
    c = CaptureWriter(tmp_path / "c.bin.gz")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            c.write(time.monotonic_ns(), FRAME % i)
        n[0] += N

    _run(benchmark, "record: capture frame", "kmm", body)
    c.close()
    assert sum(1 for _ in read_capture(tmp_path / "c.bin.gz")) == n[0]


def test_capture_write_baseline_inline_gzip(benchmark: Any, tmp_path: Path) -> None:
    g = gzip.open(tmp_path / "c.gz", "wb")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            frame = FRAME % i
            g.write(len(frame).to_bytes(4, "little") + time.monotonic_ns().to_bytes(8, "little") + frame)
        n[0] += N

    _run(benchmark, "record: capture frame", "baseline", body)
    g.close()
    data = gzip.decompress((tmp_path / "c.gz").read_bytes())
    count, pos = 0, 0
    while pos < len(data):
        pos += 12 + int.from_bytes(data[pos:pos + 4], "little")
        count += 1
    assert count == n[0]


def _raw(i: int) -> tuple[object, ...]:
    return (i, "KXMKT", "decision", 4275.5, 4200, 4300, 1000, 1000, -250, -125, i, 70, 8_000, 4270.25, 95.0,
            0.012, -0.3)


def test_tape_write_raw_kmm(benchmark: Any, tmp_path: Path) -> None:
    w = TapeWriter(tmp_path / "tape.csv")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            w.write_raw(_raw(i))
        n[0] += N

    _run(benchmark, "record: tape row, raw tuple (row built by the writer)", "kmm", body)
    w.close()
    rows = list(read_tape(tmp_path / "tape.csv"))
    assert len(rows) == n[0] and rows[-1].ts_ns == n[0] - 1 and rows[0].my_ask == 4300


def test_tape_write_row_object_baseline(benchmark: Any, tmp_path: Path) -> None:
    w = TapeWriter(tmp_path / "tape.csv")
    n = [0]

    def body() -> None:
        base = n[0]
        for i in range(base, base + N):
            w.write(_row(i))
        n[0] += N

    _run(benchmark, "record: tape row, raw tuple (row built by the writer)", "baseline", body)
    w.close()
    assert sum(1 for _ in read_tape(tmp_path / "tape.csv")) == n[0]


def _log_setup(tmp_path: Path, old: bool) -> Any:
    import copy
    import logging
    from kmm.record.oplog import setup_logging
    name = f"kmm.bench.log.{'old' if old else 'new'}"
    handle = setup_logging(tmp_path, "INFO", console=False, logger=name)
    if old:
        h = handle._handler

        def prepare(record: logging.LogRecord) -> logging.LogRecord:
            record = copy.copy(record)
            record.msg = record.getMessage()
            record.args = None
            return record

        h.prepare = prepare  # type: ignore[method-assign]
    lg = logging.getLogger(name)
    lg.propagate = False
    return handle, lg


@pytest.mark.parametrize("old", [False, True], ids=["kmm", "baseline"])
def test_log_line_on_the_loop(benchmark: Any, tmp_path: Path, old: bool) -> None:
    """The caller's (the loop's) cost of one log line; the listener is held while timing, so its own
    work (which shares the GIL) is not counted here, then started to write everything and checked."""
    handle, lg = _log_setup(tmp_path, old)
    handle._listener.stop()
    n = [0]

    def body() -> None:
        for i in range(N):
            lg.info("fill %s %s %s @ %.4f x %s (fee %.4f)", "KXMKT", "bid", "trade-1", 0.4275, 1.0, 0.0018)
        n[0] += N

    _run(benchmark, "record: ops.log line (message built by the listener)", "baseline" if old else "kmm", body)
    handle._listener.start()
    handle.stop()
    lines = (tmp_path / "ops.log").read_text().splitlines()
    assert len(lines) == n[0] and lines[-1].endswith("fill KXMKT bid trade-1 @ 0.4275 x 1.0 (fee 0.0018)")
