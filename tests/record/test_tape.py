from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm.record import RecordError, TapeRow, TapeWriter, equity_curve, read_tape
from kmm.record.tape import HEADER, COLUMNS, _parse, format_row

money = st.integers(-10**12, 10**12)
opt_price = st.none() | st.integers(0, 10_000)
opt_float = st.none() | st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def tape_rows(draw: st.DrawFn) -> TapeRow:
    return TapeRow(
        ts_ns=draw(st.integers(0, 4 * 10**18)), ticker=draw(st.sampled_from(["A-1", "KX,Y", 'Q"Z'])),
        event=draw(st.sampled_from(["decision", "fill", "reconcile"])),
        mid=draw(opt_float), my_bid=draw(opt_price), my_ask=draw(opt_price),
        bid_size=draw(st.integers(0, 10**9)), ask_size=draw(st.integers(0, 10**9)),
        inventory=draw(st.integers(-10**9, 10**9)), unrealized_pnl=draw(money),
        realized_pnl=draw(money), fees=draw(st.integers(0, 10**9)),
        latency_ns=draw(st.none() | st.integers(0, 10**12)), reservation=draw(opt_float),
        spread=draw(opt_float), sigma=draw(opt_float), ofi=draw(opt_float),
        fill_side=draw(st.none() | st.sampled_from(["bid", "ask"])), fill_price=draw(opt_price),
        fill_size=draw(st.none() | st.integers(1, 10**9)), fill_fee=draw(st.none() | st.integers(0, 10**6)),
        trade_id=draw(st.none() | st.text("abc-123", min_size=1, max_size=8)),
        note=draw(st.none() | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
                                      min_size=1, max_size=20)),
    )


@given(tape_rows())
def test_format_then_parse_keeps_integer_fields_exact_and_floats_close(row: TapeRow) -> None:
    back = _parse(format_row(row), "test")
    for name in ("ts_ns", "ticker", "event", "my_bid", "my_ask", "bid_size", "ask_size", "inventory",
                 "unrealized_pnl", "realized_pnl", "fees", "latency_ns", "fill_side", "fill_price",
                 "fill_size", "fill_fee", "trade_id", "note"):
        assert getattr(back, name) == getattr(row, name), name
    for name, tol in (("mid", 0.051), ("reservation", 0.051), ("spread", 0.051)):
        a, b = getattr(row, name), getattr(back, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert abs(a - b) <= tol, name
    for name in ("sigma", "ofi"):
        assert getattr(back, name) == getattr(row, name)


def test_format_row_shows_dollars_and_contracts_for_humans() -> None:
    cells = dict(zip(HEADER, format_row(TapeRow(
        ts_ns=1_767_225_600_123_456_789, ticker="KX", event="fill", mid=4275.5, my_bid=4275, my_ask=None,
        bid_size=1000, inventory=-250, unrealized_pnl=-125, realized_pnl=3300, fees=70,
        latency_ns=12_345, fill_side="bid", fill_price=4275, fill_size=50, fill_fee=9))))
    assert cells["ts"] == "2026-01-01T00:00:00.123Z"
    assert (cells["mid"], cells["my_bid"], cells["my_ask"]) == ("0.42755", "0.4275", "")
    assert (cells["bid_size"], cells["inventory"], cells["fill_size"]) == ("10.00", "-2.50", "0.50")
    assert (cells["unrealized_pnl"], cells["realized_pnl"], cells["fees"]) == ("-0.0125", "0.3300", "0.0070")
    assert cells["latency_ms"] == "0.012345"


def test_every_column_is_documented_and_formatted() -> None:
    assert HEADER == list(COLUMNS) and all(COLUMNS[c] for c in HEADER)
    assert len(format_row(TapeRow(ts_ns=0, ticker="T", event="decision"))) == len(HEADER)


def test_close_drains_10k_rows_written_back_to_back(tmp_path: Path) -> None:
    w = TapeWriter(tmp_path / "tape.csv")
    for i in range(10_000):
        w.write(TapeRow(ts_ns=i, ticker="T", event="decision", realized_pnl=i, inventory=-i))
    w.close()
    rows = list(read_tape(tmp_path / "tape.csv"))
    assert [r.ts_ns for r in rows] == list(range(10_000))
    assert rows[-1].realized_pnl == 9_999 and rows[-1].inventory == -9_999


def test_read_tape_skips_a_last_line_cut_by_a_crash(tmp_path: Path) -> None:
    p = tmp_path / "tape.csv"
    w = TapeWriter(p)
    for i in range(3):
        w.write(TapeRow(ts_ns=i, ticker="T", event="decision"))
    w.close()
    data = p.read_bytes()
    p.write_bytes(data[:-7])                      # cut inside the last row
    assert [r.ts_ns for r in read_tape(p)] == [0, 1]


def test_reopening_a_tape_cuts_the_partial_tail_and_appends_without_a_second_header(tmp_path: Path) -> None:
    p = tmp_path / "tape.csv"
    w = TapeWriter(p)
    w.write(TapeRow(ts_ns=1, ticker="T", event="decision"))
    w.write(TapeRow(ts_ns=2, ticker="T", event="decision"))
    w.close()
    p.write_bytes(p.read_bytes()[:-5])
    w = TapeWriter(p)
    w.write(TapeRow(ts_ns=3, ticker="T", event="fill"))
    w.close()
    assert [(r.ts_ns, r.event) for r in read_tape(p)] == [(1, "decision"), (3, "fill")]
    with open(p, newline="") as f:
        assert sum(1 for cells in csv.reader(f) if cells == HEADER) == 1


def test_opening_a_file_with_another_header_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "tape.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(RecordError, match="not a tape"):
        TapeWriter(p)
    assert p.read_text() == "a,b,c\n1,2,3\n"


def test_read_tape_rejects_a_foreign_csv(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(RecordError, match="not a kmm tape"):
        list(read_tape(p))


def test_equity_curve_sums_the_latest_equity_of_each_ticker(tmp_path: Path) -> None:
    p = tmp_path / "tape.csv"
    w = TapeWriter(p)
    w.write(TapeRow(ts_ns=1, ticker="A", event="fill", realized_pnl=100, unrealized_pnl=-30))
    w.write(TapeRow(ts_ns=2, ticker="B", event="fill", realized_pnl=-50, unrealized_pnl=0))
    w.write(TapeRow(ts_ns=3, ticker="A", event="decision", realized_pnl=100, unrealized_pnl=10))
    w.close()
    assert equity_curve(p) == [(1, 70), (2, 20), (3, 60)]
    assert equity_curve(p, ticker="A") == [(1, 70), (3, 110)]


def test_empty_tape_has_header_only_and_no_rows(tmp_path: Path) -> None:
    p = tmp_path / "tape.csv"
    TapeWriter(p).close()
    assert p.read_text() == ",".join(HEADER) + "\n"
    assert list(read_tape(p)) == [] and equity_curve(p) == []
    assert os.path.getsize(p) > 0


def test_note_with_newlines_is_written_as_one_line(tmp_path: Path) -> None:
    p = tmp_path / "tape.csv"
    w = TapeWriter(p)
    w.write(TapeRow(ts_ns=1, ticker="T", event="kill", note="loss limit\nhit, pulling"))
    w.close()
    assert len(p.read_text().splitlines()) == 2
    assert [r.note for r in read_tape(p)] == ["loss limit hit, pulling"]


def test_raw_tuples_are_built_into_rows_on_the_writer_thread_and_written_like_rows(tmp_path):
    from kmm.record.tape import TapeRow, TapeWriter, read_tape
    row = TapeRow(ts_ns=1_700_000_000_123_456_789, ticker="KXA", event="decision", mid=4275.5, my_bid=4200,
                  my_ask=4300, bid_size=500, ask_size=500, inventory=-100, unrealized_pnl=-25,
                  realized_pnl=130, fees=7, latency_ns=12_345, reservation=4270.25, spread=95.0, sigma=5.0)
    w = TapeWriter(tmp_path / "a.csv")
    w.write(row)
    w.close()
    raw = TapeWriter(tmp_path / "b.csv")
    raw.write_raw((row.ts_ns, "KXA", "decision", 4275.5, 4200, 4300, 500, 500, -100, -25, 130, 7, 12_345,
                   4270.25, 95.0, 5.0))
    raw.write_raw((row.ts_ns + 1, "KXA", "fill"))          # trailing fields left out: their defaults
    raw.close()
    assert (tmp_path / "b.csv").read_text().splitlines()[:2] == (tmp_path / "a.csv").read_text().splitlines()
    rows = list(read_tape(tmp_path / "b.csv"))
    assert rows[0] == next(iter(read_tape(tmp_path / "a.csv"))) and (rows[1].event, rows[1].my_bid, rows[1].bid_size) == ("fill", None, 0)


def test_log_lines_are_formatted_on_the_listener_thread_and_mutable_arguments_are_frozen_first(tmp_path):
    import logging
    import threading
    from kmm.record.oplog import setup_logging
    seen: list[str] = []

    class Spy(logging.Formatter):
        def format(self, record):
            seen.append(threading.current_thread().name)
            return super().format(record)

    handle = setup_logging(tmp_path, "INFO", console=False, logger="kmm.test.raw")
    for h in handle._outputs:
        h.setFormatter(Spy("%(message)s"))
    log = logging.getLogger("kmm.test.raw")
    items = [1, 2]
    log.info("plain %d %s", 7, "x")
    log.info("mutable %s", items)
    items.append(3)                     # after the call: the line must still say [1, 2]
    handle.stop()
    text = (tmp_path / "ops.log").read_text()
    assert "plain 7 x" in text and "mutable [1, 2]" in text and "[1, 2, 3]" not in text
    assert seen and threading.main_thread().name not in seen
