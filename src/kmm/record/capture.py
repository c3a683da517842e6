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
"""

from __future__ import annotations

import logging
import os
import struct
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
                 flush_rows: int = 100_000, level: int = 6, fsync_on_close: bool = True) -> None:
        self.path = Path(path)
        self._level = level
        self._fsync_on_close = fsync_on_close
        super().__init__(f"capture:{self.path.name}", flush_interval_s=flush_interval_s,
                         flush_rows=flush_rows)

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


__all__ = ["CaptureReader", "CaptureRecord", "CaptureWriter", "MAGIC", "read_capture"]
