from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import pytest

from kmm.kalshi.types import Fill
from kmm.record import Recorder, RecordError, TapeRow, equity_curve, read_capture
from kmm.record.oplog import LogHandle


@pytest.fixture(autouse=True)
def kmm_logger_restored() -> Iterator[None]:
    kmm = logging.getLogger("kmm")
    handlers, level = list(kmm.handlers), kmm.level
    yield
    for h in list(kmm.handlers):
        if h not in handlers:
            kmm.removeHandler(h)
    kmm.setLevel(level)


def _kmm_queue_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger("kmm").handlers if isinstance(getattr(h, "_kmm_handle", None), LogHandle)]


def test_recorder_writes_all_four_records_and_close_is_idempotent(tmp_path: Path) -> None:
    rec = Recorder.open(tmp_path / "run")
    rec.tape.write(TapeRow(ts_ns=1, ticker="MKT", event="fill", realized_pnl=-18, unrealized_pnl=50, fees=18))
    rec.store.record_fill(Fill("t1", "o1", "c1", "MKT", "bid", 4275, 100, 18, True, 100, 1))
    assert rec.capture is not None
    rec.capture.write(time.monotonic_ns(), b'{"type":"trade"}')
    logging.getLogger("kmm.engine").info("quoting started")
    rec.close()
    rec.close()
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == ["capture.bin.gz", "kmm.sqlite", "ops.log", "tape.csv"]
    assert equity_curve(out / "tape.csv") == [(1, 32)]
    assert [f.trade_id for f in rec.store.fills()] == ["t1"]
    assert [r.frame for r in read_capture(out / "capture.bin.gz")] == [b'{"type":"trade"}']
    assert "quoting started" in (out / "ops.log").read_text()
    assert _kmm_queue_handlers() == []
    with pytest.raises(RecordError, match="write after close"):
        rec.tape.write(TapeRow(ts_ns=2, ticker="MKT", event="decision"))


def test_second_run_in_the_same_directory_appends_and_gets_its_own_capture(tmp_path: Path) -> None:
    for run in range(2):
        with Recorder.open(tmp_path) as rec:
            rec.tape.write(TapeRow(ts_ns=run, ticker="MKT", event="decision"))
            rec.store.record_execution(execution_id=f"e{run}", ticker="MKT", side="bid", target_size=1,
                                       algo="limit")
            assert rec.capture is not None
            rec.capture.write(run, b"run %d" % run)
    assert [ts for ts, _ in equity_curve(tmp_path / "tape.csv")] == [0, 1]
    assert [e.execution_id for e in rec.store.open_executions()] == ["e0", "e1"]
    assert [r.frame for r in read_capture(tmp_path / "capture.1.bin.gz")] == [b"run 1"]


def test_failed_open_closes_what_was_opened_and_leaves_no_handler(tmp_path: Path) -> None:
    (tmp_path / "tape.csv").write_text("not,a,tape\n")
    with pytest.raises(RecordError, match="not a tape"):
        Recorder.open(tmp_path)
    assert _kmm_queue_handlers() == []


def test_capture_and_logging_can_be_turned_off(tmp_path: Path) -> None:
    rec = Recorder.open(tmp_path, capture=False, logging_enabled=False)
    assert rec.capture is None and rec.log is None
    rec.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kmm.sqlite", "tape.csv"]
