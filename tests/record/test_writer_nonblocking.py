"""The loop-side methods only enqueue: with the disk write held on an Event, writes still return and
pile up in the queue, and everything arrives once the sink is released."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from kmm.kalshi.types import Fill
from kmm.record import CaptureWriter, RecordError, Store, TapeRow, TapeWriter, read_capture, read_tape
from kmm.record._worker import BackgroundWriter


def _fill(i: int) -> Fill:
    return Fill(f"t{i}", f"o{i}", None, "MKT", "bid", 4200, 100, 7, False, None, 1_000 + i)


def _tape(tmp: Path) -> tuple[TapeWriter, Callable[[int], None], Callable[[], list[int]]]:
    w = TapeWriter(tmp / "tape.csv")
    return w, lambda i: w.write(TapeRow(ts_ns=i, ticker="MKT", event="decision")), \
        lambda: [r.ts_ns for r in read_tape(tmp / "tape.csv")]


def _store(tmp: Path) -> tuple[Store, Callable[[int], None], Callable[[], list[int]]]:
    s = Store(tmp / "kmm.sqlite")
    return s, lambda i: s.record_fill(_fill(i)), lambda: [f.ts_ms - 1_000 for f in s.fills()]


def _capture(tmp: Path) -> tuple[CaptureWriter, Callable[[int], None], Callable[[], list[int]]]:
    c = CaptureWriter(tmp / "cap.bin.gz")
    return c, lambda i: c.write(i, b"frame %d" % i), \
        lambda: [r.recv_ns for r in read_capture(tmp / "cap.bin.gz")]


@pytest.mark.parametrize("make", [_tape, _store, _capture], ids=["tape", "store", "capture"])
def test_write_returns_while_sink_is_blocked_and_items_wait_in_queue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any) -> None:
    writer, write, read_back = make(tmp_path)
    entered, release = threading.Event(), threading.Event()
    real_sink = writer._sink

    def blocked_sink(items: list[Any]) -> None:
        entered.set()
        release.wait(30)
        real_sink(items)

    monkeypatch.setattr(writer, "_sink", blocked_sink)
    write(0)
    assert entered.wait(10), "writer thread never reached the sink"
    for i in range(1, 1001):
        write(i)
    # the writer thread is parked inside the sink with item 0: every later write is still queued
    assert writer.pending == 1000
    assert writer.written == 0
    release.set()
    writer.close()
    assert read_back() == list(range(1001))


class _ListWriter(BackgroundWriter):
    def __init__(self, fail_on: int | None = None) -> None:
        self.out: list[int] = []
        self.flushes = 0
        self.fail_on = fail_on
        super().__init__("list", flush_interval_s=60.0, flush_rows=1_000_000)

    def _open_sink(self) -> None:
        pass

    def _sink(self, items: list[int]) -> None:
        if self.fail_on is not None and self.fail_on in items:
            raise OSError(28, "No space left on device")
        self.out.extend(items)

    def _flush(self) -> None:
        self.flushes += 1

    def _close_sink(self) -> None:
        pass


def test_flush_returns_after_everything_before_it_is_flushed() -> None:
    w = _ListWriter()
    for i in range(500):
        w._put(i)
    w.flush()
    assert w.out == list(range(500))
    assert w.flushes >= 1
    w.close()


def test_sink_error_is_reported_by_close_with_count_of_lost_items() -> None:
    w = _ListWriter(fail_on=3)
    w._put(3)
    w.flush()
    w._put(4)
    with pytest.raises(RecordError, match="1 write error.*1 item"):
        w.close()
    assert w.out == [4]
    assert w.errors == 1
    w.close()                      # idempotent, and the error is reported once


def test_write_after_close_raises_record_error() -> None:
    w = _ListWriter()
    w.close()
    with pytest.raises(RecordError, match="write after close"):
        w._put(1)


def test_invalid_batch_policy_is_rejected() -> None:
    class Bad(_ListWriter):
        def __init__(self) -> None:
            BackgroundWriter.__init__(self, "bad", flush_interval_s=0, flush_rows=1)

    with pytest.raises(ValueError, match="flush_interval_s"):
        Bad()


class _RarePoller(BackgroundWriter):
    def _open_sink(self) -> None:
        self.got: list[Any] = []

    def _sink(self, items: list[Any]) -> None:
        self.got.extend(items)

    def _flush(self) -> None:
        pass

    def _close_sink(self) -> None:
        pass


def test_flush_and_close_wake_a_writer_that_polls_rarely() -> None:
    """A put never wakes the writer thread (it polls); flush() and close() do, so neither waits for
    the poll: with an hour's poll they still finish within their own timeouts."""
    w = _RarePoller("rare", flush_interval_s=3600.0, flush_rows=10**6, poll_s=3600.0)
    w._put(1)
    w.flush(timeout_s=10.0)              # raises RecordError if it waited for the poll
    assert w.got == [1]
    w._put(2)
    done = threading.Thread(target=w.close)
    done.start()
    done.join(10.0)
    assert not done.is_alive() and w.got == [1, 2]


def test_a_large_batch_brings_the_next_look_sooner() -> None:
    """After a batch of BUSY_BATCH items or more the writer looks again after BUSY_POLL_S, not after its
    (here hour-long) poll; after a small batch it goes back to the poll."""
    import time

    from kmm.record import _worker
    w = _RarePoller("busy", flush_interval_s=3600.0, flush_rows=10**6, poll_s=3600.0)
    for i in range(_worker.BUSY_BATCH + 10):
        w._put(i)
    w.flush(timeout_s=10.0)                       # wakes it: one batch of BUSY_BATCH + 10 (and the barrier)
    w._put("soon")
    for _ in range(500):                          # at most 5 s; the busy poll is 10 ms
        if "soon" in w.got:
            break
        time.sleep(0.01)
    assert "soon" in w.got                        # looked again without a wake
    time.sleep(0.1)                               # that look's batch of one: back to the hour-long poll
    w._put("later")
    time.sleep(0.3)
    assert "later" not in w.got and w.pending == 1
    w.close()
    assert w.got[-1] == "later"
