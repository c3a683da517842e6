"""Raw feed capture: every received WebSocket frame with its receive times, gzip-compressed.

File format (the uncompressed stream of a standard gzip file, so ``zcat`` works)::

    magic   b"KMMCAP1\\n"                                     once, at the start
    record  <u32 length> <u32 crc32(frame)> <i64 recv_ns> <i64 wall_ns> <frame bytes>   (little endian)

``recv_ns`` is the monotonic receive time the connector stamped (``time.monotonic_ns()``), ``wall_ns``
the matching wall clock (``time.time_ns()``). The writer thread sync-flushes the compressor every
``flush_interval_s``, so a crash loses at most that interval; everything before the last flush
decompresses. Records are length-prefixed, so the reader detects a record cut short by a crash and
stops there (``CaptureReader.truncated`` tells), while a CRC mismatch inside the file is corruption and
raises.

Beside the frames (this module too):

- ``markets.json``: the market definitions a capture needs to replay on its own (price grid, maker and
  taker fee rates, close time, status, and the raw market object): :func:`write_market_defs`,
  :func:`read_market_defs`.
- Rotation: :class:`RotatingCaptureWriter` starts a new file (``capture.part0001.bin.gz``, ...) every
  ``rotate_bytes`` of frames or ``rotate_s`` seconds, so a long recording is many closed files, each
  readable on its own; :func:`capture_files` lists a directory's files in replay order.
- Gaps: :func:`gap_frame` is a frame ``{"type":"kmm_gap",...}`` written where the connection was lost;
  a replay treats it as the live engine treats a lost connection (every book stale, quotes pulled,
  quoting resumes on the next snapshots).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple

from kmm.record._worker import BackgroundWriter, RecordError

log = logging.getLogger("kmm.record.capture")

MAGIC = b"KMMCAP1\n"
_HEAD = struct.Struct("<IIqq")
MAX_FRAME = 64 << 20            # a larger length prefix can only be corruption


class CaptureRecord(NamedTuple):
    recv_ns: int                # monotonic ns at receive
    wall_ns: int                # wall clock ns at receive
    frame: bytes


class CaptureWriter(BackgroundWriter):
    """Writes frames to a new gzip capture file from a background thread.

    The file must not exist (a capture is one run; pick a new name rather than appending to a file
    that may end in a crash-truncated stream).
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval_s: float = 1.0,
                 flush_rows: int = 100_000, level: int = 6, fsync_on_close: bool = True,
                 cpus: frozenset[int] = frozenset()) -> None:
        self.path = Path(path)
        self._level = level
        self._fsync_on_close = fsync_on_close
        super().__init__(f"capture:{self.path.name}", flush_interval_s=flush_interval_s,
                         flush_rows=flush_rows, cpus=cpus)

    def write(self, recv_ns: int, frame: bytes | bytearray | memoryview, wall_ns: int | None = None) -> None:
        """Enqueue one frame (non-blocking, no I/O). A ``bytearray``/``memoryview`` is copied, since
        the connector may reuse its buffer; ``wall_ns`` defaults to the writer thread's estimate
        ``recv_ns + (time.time_ns() - time.monotonic_ns())`` taken when the batch is written."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        self._put((recv_ns, frame, wall_ns))

    def _open_sink(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._raw = open(self.path, "xb")
        except FileExistsError:
            raise RecordError(f"{self.path}: capture file already exists; captures are never appended "
                              "to. Choose a new file name or output directory.") from None
        self._z = zlib.compressobj(self._level, zlib.DEFLATED, 31)   # 31: gzip container
        self._raw.write(self._z.compress(MAGIC))

    def _sink(self, items: list[tuple[int, bytes, int | None]]) -> None:
        offset = time.time_ns() - time.monotonic_ns()
        pack, crc, parts = _HEAD.pack, zlib.crc32, []
        for recv_ns, frame, wall_ns in items:
            parts.append(pack(len(frame), crc(frame), recv_ns,
                              recv_ns + offset if wall_ns is None else wall_ns))
            parts.append(frame)
        out = self._z.compress(b"".join(parts))
        if out:
            self._raw.write(out)

    def _flush(self) -> None:
        self._raw.write(self._z.flush(zlib.Z_SYNC_FLUSH))
        self._raw.flush()

    def _close_sink(self) -> None:
        self._raw.write(self._z.flush(zlib.Z_FINISH))
        self._raw.flush()
        if self._fsync_on_close:
            os.fsync(self._raw.fileno())
        self._raw.close()


class CaptureReader:
    """Iterates a capture file's records; stops cleanly at a truncated tail.

    After iteration, ``truncated`` is True when the file ended mid-record or mid-stream (a crash), and
    ``count`` is the number of records yielded.
    """

    def __init__(self, path: str | os.PathLike[str], chunk_size: int = 1 << 16) -> None:
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.truncated = False
        self.count = 0

    def __iter__(self) -> Iterator[CaptureRecord]:
        buf = bytearray()
        pos = 0
        magic_seen = False
        z = zlib.decompressobj(31)
        stream_done = False
        with open(self.path, "rb") as f:
            while not self.truncated:
                chunk = f.read(self.chunk_size)
                if not chunk:
                    break
                while chunk:
                    try:
                        buf += z.decompress(chunk)
                    except zlib.error:
                        # garbage after a crash-truncated stream (or a damaged block): stop here
                        self.truncated = True
                        chunk = b""
                        break
                    if z.eof:
                        chunk = z.unused_data
                        stream_done = not chunk
                        if chunk:                       # a second gzip member follows
                            z = zlib.decompressobj(31)
                    else:
                        chunk = b""
                if not magic_seen:
                    if len(buf) < len(MAGIC):
                        continue
                    if bytes(buf[:len(MAGIC)]) != MAGIC:
                        raise RecordError(f"{self.path}: not a kmm capture (bad magic)")
                    pos = len(MAGIC)
                    magic_seen = True
                while True:
                    if len(buf) - pos < _HEAD.size:
                        break
                    length, crc, recv_ns, wall_ns = _HEAD.unpack_from(buf, pos)
                    if length > MAX_FRAME:
                        raise RecordError(f"{self.path}: record {self.count} claims {length} bytes; "
                                          "the file is corrupt")
                    end = pos + _HEAD.size + length
                    if end > len(buf):
                        break
                    frame = bytes(buf[pos + _HEAD.size:end])
                    if zlib.crc32(frame) != crc:
                        raise RecordError(f"{self.path}: CRC mismatch in record {self.count}; the file "
                                          "is corrupt")
                    pos = end
                    self.count += 1
                    yield CaptureRecord(recv_ns, wall_ns, frame)
                if pos > (1 << 20):
                    del buf[:pos]
                    pos = 0
        if not stream_done or pos != len(buf) or not magic_seen:
            self.truncated = True
        if self.truncated:
            log.warning("%s: capture ends with a truncated tail after %d complete record(s); the tail "
                        "was ignored", self.path, self.count)


def read_capture(path: str | os.PathLike[str]) -> Iterator[CaptureRecord]:
    """Yield ``(recv_ns, wall_ns, frame)`` records; a truncated tail is ignored (and logged)."""
    return iter(CaptureReader(path))


MARKETS_FILE = "markets.json"
MARKETS_SCHEMA = 1
GAP_TYPE = "kmm_gap"
_NAME = re.compile(r"^capture(?:\.(\d+))?(?:\.part(\d+))?\.bin\.gz$")


def gap_frame(reason: str, wall_ns: int) -> bytes:
    """The frame that marks a gap in a capture (connection lost: frames may be missing after it)."""
    return json.dumps({"type": GAP_TYPE, "msg": {"reason": reason, "wall_ns": wall_ns}},
                      separators=(",", ":")).encode()


def capture_files(path: str | os.PathLike[str]) -> list[Path]:
    """The capture files of ``path`` in replay order: a file is itself; a directory gives its
    ``capture[.N][.partK].bin.gz`` files by run N (none first), then part K (none first)."""
    p = Path(path)
    if p.is_file():
        return [p]
    found = []
    for f in p.iterdir() if p.is_dir() else ():
        m = _NAME.match(f.name)
        if m:
            found.append((int(m.group(1) or 0), int(m.group(2) or 0), f))
    return [f for _, _, f in sorted(found)]


def write_market_defs(out_dir: str | os.PathLike[str], markets: dict[str, dict[str, object]], *,
                      venue: str = "") -> Path:
    """Write ``markets.json`` beside a capture: ``{ticker: {price_ranges: [[start, end, step], ...]
    (1e-4 $), maker_rate_e6, taker_rate_e6, close_time_ns, fractional, status, raw}}``. Atomic
    (written to a temporary name, then renamed)."""
    path = Path(out_dir) / MARKETS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"schema": MARKETS_SCHEMA, "venue": venue, "markets": markets},
                              indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read_market_defs(path: str | os.PathLike[str]) -> dict[str, dict[str, object]]:
    """The market definitions of ``markets.json`` (or of the ``markets.json`` in a directory, or
    beside a capture file); ``{}`` when there is none."""
    p = Path(path)
    if p.is_dir():
        p = p / MARKETS_FILE
    elif p.name != MARKETS_FILE:
        p = p.parent / MARKETS_FILE
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"{p}: unreadable market definitions ({exc}); re-record or delete it") from exc
    if not isinstance(data, dict) or data.get("schema") != MARKETS_SCHEMA or not isinstance(data.get("markets"), dict):
        raise RecordError(f"{p}: not a kmm markets file of schema {MARKETS_SCHEMA}")
    return data["markets"]


class RotatingCaptureWriter:
    """A capture written as a series of files: a new one every ``rotate_bytes`` of frame data or
    ``rotate_s`` seconds of receive time (0 turns either off). Same ``write`` as :class:`CaptureWriter`."""

    def __init__(self, path: str | os.PathLike[str], *, rotate_bytes: int = 256 << 20,
                 rotate_s: float = 0.0, **kwargs: object) -> None:
        self.base = Path(path)
        self.rotate_bytes = rotate_bytes
        self.rotate_ns = int(rotate_s * 1e9)
        self._kwargs = kwargs
        self.parts: list[Path] = []
        self.frames = 0
        self._bytes = 0
        self._start_ns: int | None = None
        self._closing: list[threading.Thread] = []
        self._w = self._open(self.base)

    @property
    def name(self) -> str:
        return f"capture:{self.base.name}"

    def _open(self, path: Path) -> CaptureWriter:
        self.parts.append(path)
        return CaptureWriter(path, **self._kwargs)  # type: ignore[arg-type]

    def _part_path(self, k: int) -> Path:
        name = self.base.name
        stem = name[: -len(".bin.gz")] if name.endswith(".bin.gz") else name
        return self.base.with_name(f"{stem}.part{k:04d}.bin.gz")

    def write(self, recv_ns: int, frame: bytes | bytearray | memoryview, wall_ns: int | None = None) -> None:
        if self._start_ns is None:
            self._start_ns = recv_ns
        if ((self.rotate_bytes and self._bytes >= self.rotate_bytes)
                or (self.rotate_ns and recv_ns - self._start_ns >= self.rotate_ns)):
            self.rotate()
            self._start_ns = recv_ns
        self._w.write(recv_ns, frame, wall_ns)
        self._bytes += len(frame)
        self.frames += 1

    def rotate(self) -> Path:
        """Close the current file and start the next one; returns the new file's path."""
        old = self._w
        self._w = self._open(self._part_path(len(self.parts)))
        self._bytes = 0
        # closing drains and fsyncs: do it off the caller's thread (the event loop in kmm record)
        t = threading.Thread(target=old.close, kwargs={"raise_errors": False}, name="capture-rotate", daemon=True)
        t.start()
        self._closing.append(t)
        return self.parts[-1]

    def close(self, raise_errors: bool = True) -> None:
        self._w.close(raise_errors=raise_errors)
        for t in self._closing:
            t.join()


__all__ = ["CaptureReader", "CaptureRecord", "CaptureWriter", "GAP_TYPE", "MAGIC", "MARKETS_FILE",
           "RotatingCaptureWriter", "capture_files", "gap_frame", "read_capture", "read_market_defs",
           "write_market_defs"]
