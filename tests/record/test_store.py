from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from kmm.kalshi.types import Fill, UserOrder
from kmm.record import ExecutionMetrics, RecordError, Store, StoreReader, signed_slippage
from kmm.record.store import SCHEMA_VERSION


class FakeClock:
    def __init__(self, start: int = 1_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _fill(trade_id: str, *, ticker: str = "MKT", ts_ms: int = 1, recv_ns: int = 5, count: int = 100) -> Fill:
    return Fill(trade_id, "ord-1", "coid-1", ticker, "bid", 4275, count, 18, True, count, ts_ms, recv_ns)


def test_fill_round_trip_returns_the_connector_record(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    f = _fill("t1")
    s.record_fill(f)
    s.close()
    assert s.fills() == [f]


def test_fill_with_a_trade_id_already_stored_is_ignored_and_counted(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    ws = _fill("t1", recv_ns=77)
    s.record_fill(ws)
    s.record_fill(_fill("t1", recv_ns=0))          # REST backfill of the same trade
    s.record_fill(_fill("t2", ts_ms=2))
    s.close()
    assert [f.trade_id for f in s.fills()] == ["t1", "t2"]
    assert s.fills()[0].recv_ns == 77               # the first copy wins
    assert s.duplicate_fills == 1


def test_fill_dedupe_holds_across_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    s = Store(path)
    s.record_fill(_fill("t1"))
    s.close()
    s2 = Store(path)
    s2.record_fill(_fill("t1"))
    s2.close()
    assert len(s2.fills()) == 1 and s2.duplicate_fills == 1


def test_fills_filter_by_ticker_and_order(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    s.record_fill(_fill("a", ticker="A"))
    s.record_fill(_fill("b", ticker="B"))
    s.close()
    assert [f.trade_id for f in s.fills("B")] == ["b"]
    assert [f.trade_id for f in s.fills(order_id="ord-1")] == ["a", "b"]


def test_close_drains_10k_fills_written_back_to_back(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite", commit_rows=500)
    for i in range(10_000):
        s.record_fill(_fill(f"t{i:05d}", ts_ms=i))
    s.close()
    fills = s.fills()
    assert len(fills) == 10_000 and fills[-1].trade_id == "t09999"


def test_order_lifecycle_updates_one_row_and_keeps_every_event(tmp_path: Path) -> None:
    clock = FakeClock()
    s = Store(tmp_path / "db.sqlite", clock=clock)
    s.record_order(status="pending", client_order_id="c1", ticker="MKT", side="bid", price=4200,
                   count=1000, strategy="as", reason="quote")
    s.record_order(status="resting", client_order_id="c1", order_id="o1")
    s.record_order(status="resting", order_id="o1", price=4300, count=800, reason="amend")
    s.record_order(status="canceled", order_id="o1", fill_count=200)
    s.close()
    (o,) = s.orders()
    assert (o.client_order_id, o.order_id, o.ticker, o.side, o.price, o.count, o.fill_count) == \
        ("c1", "o1", "MKT", "bid", 4300, 800, 200)
    assert (o.status, o.strategy, o.reason) == ("canceled", "as", "amend")
    assert o.created_ns == 1_001 and o.updated_ns == 1_004
    assert [e[2] for e in s.order_events("c1")] == ["pending", "resting"]
    assert [e[2] for e in s.order_events()] == ["pending", "resting", "resting", "canceled"]
    assert s.orders(status=("resting", "pending")) == [] and len(s.orders(status="canceled")) == 1


def test_record_user_order_maps_the_connector_record(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    s.record_user_order(UserOrder("o9", "c9", "MKT", "resting", "ask", 5500, 1000, 300, 700),
                        execution_id="e1", ts_ns=42)
    s.close()
    (o,) = s.orders(execution_id="e1")
    assert (o.order_id, o.client_order_id, o.side, o.price, o.count, o.fill_count, o.status) == \
        ("o9", "c9", "ask", 5500, 1000, 300, "resting")
    assert o.created_ns == 42


def test_record_order_without_any_id_is_rejected_on_the_caller(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    with pytest.raises(ValueError, match="client_order_id or order_id"):
        s.record_order(status="pending")
    assert s.pending == 0
    s.close()


def test_open_executions_are_found_after_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    s = Store(path, clock=FakeClock())
    s.record_execution(execution_id="e1", ticker="MKT", side="bid", target_size=5000, algo="walker",
                       limit_price=4500, params={"max_walks": 10, "walk_interval_s": 4})
    s.record_execution(execution_id="e2", ticker="MKT", side="ask", target_size=100, algo="twap")
    s.update_execution("e1", state={"walks": 3, "remaining": 2000}, status="running")
    s.update_execution("e2", status="done")
    s.close()
    reopened = Store(path)
    try:
        (e,) = reopened.open_executions()
        assert (e.execution_id, e.side, e.target_size, e.limit_price, e.algo, e.status) == \
            ("e1", "bid", 5000, 4500, "walker", "running")
        assert e.params == {"max_walks": 10, "walk_interval_s": 4}
        assert e.state == {"walks": 3, "remaining": 2000}
        assert e.ended_ns is None
        done = [x for x in reopened.executions() if x.execution_id == "e2"][0]
        assert done.status == "done" and done.ended_ns is not None
    finally:
        reopened.close()


def test_record_execution_rejects_a_side_that_is_not_a_book_side(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    with pytest.raises(ValueError, match="'bid' or 'ask'"):
        s.record_execution(execution_id="e", ticker="T", side="yes", target_size=1, algo="x")
    s.close()


def test_update_of_an_unknown_execution_is_reported_by_close(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    s.update_execution("missing", status="done")
    with pytest.raises(RecordError, match="1 write error"):
        s.close()
    assert s.errors == 1


def test_execution_children_metrics_and_book_snapshot_round_trip(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite", clock=FakeClock())
    s.record_execution(execution_id="e1", ticker="MKT", side="bid", target_size=3000, algo="walker")
    s.record_book_snapshot(ticker="MKT", bids=[(4200, 500), (4100, 900)], asks=iter([(4300, 700)]),
                           reason="arrival", seq=17, ts_ns=5)
    s.record_execution_order(execution_id="e1", client_order_id="c1", level=0, target_price=4300, size=2000,
                             status="pending")
    s.record_execution_order(execution_id="e1", client_order_id="c1", level=0, target_price=4300, size=2000,
                             status="executed", filled=2000, order_id="o1", filled_ns=99)
    s.record_execution_order(execution_id="e1", client_order_id="c2", level=1, target_price=4400, size=1000,
                             status="resting")
    m = ExecutionMetrics("e1", 7, 3000, 2000, 2000 / 3000, 4300, 4500, 4300.0, 4200, 4300,
                         signed_slippage("bid", 4300.0, 4300), signed_slippage("bid", 4300.0, 4500), 36,
                         1_000_000, None, walks=1, splits=2, api_calls=4)
    s.record_execution_metrics(m)
    s.record_execution_metrics(dataclasses.replace(m, walks=2, api_calls=5))
    s.record_pnl(ticker="MKT", position=2000, cash=-860_000, realized=0, unrealized=-2000, fees=36, ts_ns=8)
    s.record_pnl(position=2000, cash=-860_000, realized=0, unrealized=-2000, fees=36, ts_ns=9)
    s.close()
    (snap,) = s.book_snapshots("MKT", reason="arrival")
    assert (snap.seq, snap.bids, snap.asks, snap.ts_ns) == (17, [(4200, 500), (4100, 900)], [(4300, 700)], 5)
    c1, c2 = s.execution_orders("e1")
    assert (c1.client_order_id, c1.order_id, c1.status, c1.filled, c1.filled_ns) == ("c1", "o1", "executed", 2000, 99)
    assert c1.created_ns < c1.updated_ns and c2.level == 1
    (got,) = s.execution_metrics("e1")
    assert got.walks == 2 and got.api_calls == 5 and got.slippage_arrival == 0.0 and got.slippage_limit == -200.0
    assert [p.ticker for p in s.pnl()] == ["MKT", "*"] and s.pnl("*")[0].cash == -860_000


def test_signed_slippage_is_positive_when_worse_for_us() -> None:
    assert signed_slippage("bid", 4310.0, 4300) == 10.0
    assert signed_slippage("ask", 4290.0, 4300) == 10.0
    assert signed_slippage("ask", 4310.0, 4300) == -10.0
    with pytest.raises(ValueError):
        signed_slippage("yes", 1.0, 1)


def test_reads_from_another_thread_see_committed_rows_while_the_writer_runs(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    for i in range(100):
        s.record_fill(_fill(f"t{i}", ts_ms=i))
    s.flush()
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(len(s.fills())))
    t.start()
    t.join()
    assert seen == [100]
    s.close()


def test_store_is_in_wal_mode_with_the_current_schema_version(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite")
    s.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert StoreReader(tmp_path / "db.sqlite").schema_version() == SCHEMA_VERSION
    Store(tmp_path / "db.sqlite").close()          # reopening does not re-apply migrations
    assert StoreReader(tmp_path / "db.sqlite")._query("SELECT COUNT(*) FROM schema_version")[0][0] == SCHEMA_VERSION


def test_store_written_by_a_newer_kmm_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(RecordError, match="newer than this kmm supports"):
        Store(path)


def test_reader_on_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such store"):
        StoreReader(tmp_path / "nope.sqlite").fills()
