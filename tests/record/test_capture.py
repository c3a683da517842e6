from __future__ import annotations

import gzip
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

from kmm.record import CaptureReader, CaptureWriter, RecordError, read_capture
from kmm.record.capture import MAGIC


def _frames(n: int) -> list[bytes]:
    return [b'{"type":"orderbook_delta","seq":%d,"msg":{"price_dollars":"0.%04d"}}' % (i, i % 10_000)
            for i in range(n)]


def test_round_trip_keeps_frames_and_times_in_order(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    w = CaptureWriter(p)
    frames = [b"", b"\x00\xff" * 3, bytes(range(256))]
    w.write(10, frames[0], wall_ns=1_000)
    w.write(20, bytearray(frames[1]), wall_ns=2_000)
    w.write(30, memoryview(frames[2]), wall_ns=3_000)
    w.close()
    assert list(read_capture(p)) == [(10, 1_000, frames[0]), (20, 2_000, frames[1]), (30, 3_000, frames[2])]


def test_reused_receive_buffer_is_copied_at_write(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    w = CaptureWriter(p)
    buf = bytearray(b"first")
    w.write(1, buf)
    buf[:] = b"XXXXX"                     # the connector reuses its buffer for the next frame
    w.write(2, buf)
    w.close()
    assert [r.frame for r in read_capture(p)] == [b"first", b"XXXXX"]


def test_default_wall_time_is_derived_from_the_monotonic_receive_time(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    w = CaptureWriter(p)
    before = time.time_ns()
    w.write(time.monotonic_ns(), b"x")
    after = time.time_ns()
    w.close()
    (rec,) = list(read_capture(p))
    # the estimate may be off by clock adjustments while the batch waited; allow 1 s either way
    assert before - 10**9 <= rec.wall_ns <= after + 10**9


def test_file_is_a_standard_gzip_stream_starting_with_the_magic(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    w = CaptureWriter(p)
    w.write(5, b"abc", wall_ns=6)
    w.close()
    raw = gzip.decompress(p.read_bytes())
    assert raw[:len(MAGIC)] == MAGIC
    length, crc, recv_ns, wall_ns = struct.unpack_from("<IIqq", raw, len(MAGIC))
    assert (length, crc, recv_ns, wall_ns) == (3, zlib.crc32(b"abc"), 5, 6)
    assert raw[len(MAGIC) + 24:] == b"abc"


def test_close_drains_10k_frames_written_back_to_back(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    frames = _frames(10_000)
    w = CaptureWriter(p)
    for i, f in enumerate(frames):
        w.write(i, f, wall_ns=i)
    w.close()
    reader = CaptureReader(p)
    got = list(reader)
    assert [r.frame for r in got] == frames and [r.recv_ns for r in got] == list(range(10_000))
    assert not reader.truncated and reader.count == 10_000


def test_truncated_tail_is_ignored_wherever_the_file_is_cut(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    frames = _frames(300)
    w = CaptureWriter(p)
    for i, f in enumerate(frames):
        w.write(i, f, wall_ns=i)
    w.close()
    data = p.read_bytes()
    cut_file = tmp_path / "cut.bin.gz"
    previous = 0
    for cut in list(range(0, len(data), 7)) + list(range(len(data) - 40, len(data))):
        cut_file.write_bytes(data[:cut])
        reader = CaptureReader(cut_file)
        got = list(reader)
        assert reader.truncated
        assert [r.frame for r in got] == frames[:len(got)]     # a clean prefix, never garbage
        previous = max(previous, len(got))
    assert previous > 0


def test_copy_taken_while_writing_has_everything_up_to_the_last_flush(tmp_path: Path) -> None:
    """A crash leaves a gzip stream with no trailer; whatever was flushed must still read back."""
    p = tmp_path / "c.bin.gz"
    frames = _frames(1_000)
    w = CaptureWriter(p, flush_interval_s=3600)
    for i, f in enumerate(frames):
        w.write(i, f, wall_ns=i)
    w.flush()                          # the periodic flush, forced
    crashed = tmp_path / "crashed.bin.gz"
    shutil.copyfile(p, crashed)
    w.write(1_000, b"after the flush", wall_ns=0)
    w.close()
    reader = CaptureReader(crashed)
    assert [r.frame for r in reader] == frames
    assert reader.truncated
    assert [r.frame for r in read_capture(p)][-1] == b"after the flush"


def test_corrupted_record_raises_instead_of_returning_garbage(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    raw = bytearray(MAGIC + struct.pack("<IIqq", 3, zlib.crc32(b"abc"), 1, 2) + b"abd")
    p.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(RecordError, match="CRC mismatch"):
        list(read_capture(p))


def test_file_that_is_not_a_capture_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    p.write_bytes(gzip.compress(b"hello world, not a capture"))
    with pytest.raises(RecordError, match="bad magic"):
        list(read_capture(p))


def test_existing_capture_is_never_overwritten_or_appended(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    p.write_bytes(b"previous run")
    with pytest.raises(RecordError, match="already exists"):
        CaptureWriter(p)
    assert p.read_bytes() == b"previous run"


def test_empty_file_reads_as_truncated_with_no_records(tmp_path: Path) -> None:
    p = tmp_path / "c.bin.gz"
    p.write_bytes(b"")
    reader = CaptureReader(p)
    assert list(reader) == [] and reader.truncated
