"""Fast access to captures for replays.

- :func:`load_frames`: a whole capture file decompressed at once and split into ``(recv_ns, wall_ns,
  frame)`` tuples (a truncated tail dropped like :class:`kmm.record.capture.CaptureReader` does; record
  CRCs checked unless gzip's own CRC of the whole stream already was); a few times cheaper per frame
  than iterating the reader.
- :class:`BookEvents`: the book messages of a capture decoded once into integer arrays (per market:
  snapshots, and runs of deltas as ``int64`` side/price/delta columns), like hftbacktest converts a
  feed into its event files before replaying it. Replaying them (:meth:`BookEvents.replay`) applies
  the runs with ``OrderBook.apply_deltas``: the book alone at compiled speed. The recorded run's own
  deltas (``client_order_id``) are left out, as in a full replay; a seq gap ends the book until the
  next snapshot.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kmm._core.book import OrderBook
from kmm._core.fixed import parse_price, parse_signed_count
from kmm._core.grid import Grid
from kmm.record._worker import RecordError
from kmm.record.capture import MAGIC, MAX_FRAME, capture_files

log = logging.getLogger("kmm.research.events")

_HEAD = struct.Struct("<IIqq")


def _decompress(path: Path) -> tuple[bytes, bool]:
    raw = path.read_bytes()
    out = []
    truncated = False
    while raw:
        d = zlib.decompressobj(31)
        try:
            out.append(d.decompress(raw))
        except zlib.error:
            truncated = True
            break
        if not d.eof:
            truncated = True
            break
        raw = d.unused_data
    return b"".join(out), truncated


def load_frames(path: str | Path) -> list[tuple[int, int, bytes]]:
    """Every record of one capture file, in order."""
    p = Path(path)
    buf, truncated = _decompress(p)
    if len(buf) < len(MAGIC) or buf[:len(MAGIC)] != MAGIC:
        if truncated and len(buf) < len(MAGIC):
            return []
        raise RecordError(f"{p}: not a kmm capture (bad magic)")
    unpack, crc, n = _HEAD.unpack_from, zlib.crc32, len(buf)
    pos = len(MAGIC)
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    # a complete gzip stream has passed gzip's own CRC-32 of everything: the records' CRCs are then
    # checked by that; after a crash (a cut stream) each record's CRC is checked
    check = truncated
    while pos + 24 <= n:
        length, c, recv, wall = unpack(buf, pos)
        if length > MAX_FRAME:
            raise RecordError(f"{p}: record {len(out)} claims {length} bytes; the file is corrupt")
        end = pos + 24 + length
        if end > n:
            truncated = True
            break
        frame = buf[pos + 24:end]
        if check and crc(frame) != c:
            raise RecordError(f"{p}: CRC mismatch in record {len(out)}; the file is corrupt")
        append((recv, wall, frame))
        pos = end
    if truncated or pos != n:
        log.warning("%s: capture ends with a truncated tail after %d complete record(s); the tail was "
                    "ignored", p, len(out))
    return out


def load_captures(paths: Iterable[str | Path]) -> list[tuple[int, int, bytes]]:
    return [r for p in paths for f in capture_files(p) for r in load_frames(f)]


class BookEvents:
    """The book messages of some captures as integer runs per market (see the module docstring)."""

    def __init__(self, markets: dict[str, Any]) -> None:
        self.tickers = list(markets)
        self.grids = {t: Grid(list(d)) for t, d in markets.items()}
        # ops: (0, ticker index, yes levels, no levels) snapshot | (1, ticker index, sides, prices, deltas)
        # | (2, -1, None, None) gap: every book stale until its next snapshot
        self.ops: list[tuple[Any, ...]] = []
        self.messages = 0
        self.own_removed = 0

    @classmethod
    def decode(cls, frames: Sequence[tuple[int, int, bytes]], markets: dict[str, Any]) -> BookEvents:
        """``markets``: ticker -> price_ranges (wire form)."""
        ev = cls(markets)
        index = {t: i for i, t in enumerate(ev.tickers)}
        run_t = -1
        sides: list[int] = []
        prices: list[int] = []
        deltas: list[int] = []
        last_seq: dict[int, int] = {}

        def flush() -> None:
            nonlocal run_t
            if run_t >= 0 and sides:
                ev.ops.append((1, run_t, np.array(sides, np.int64), np.array(prices, np.int64),
                               np.array(deltas, np.int64)))
            sides.clear()
            prices.clear()
            deltas.clear()
            run_t = -1

        for _, _, frame in frames:
            head = frame[:40]
            if b"orderbook_" not in head:
                if b'"kmm_gap"' in head:
                    flush()
                    ev.ops.append((2, -1, None, None))
                    last_seq.clear()
                continue
            obj = orjson.loads(frame)
            msg = obj.get("msg") or {}
            t = index.get(str(msg.get("market_ticker")))
            sid, seq = obj.get("sid"), obj.get("seq")
            if t is None:
                continue
            if isinstance(sid, int) and isinstance(seq, int):
                prev = last_seq.get(sid)
                last_seq[sid] = seq
                if obj.get("type") == "orderbook_delta" and prev is not None and seq != prev + 1:
                    flush()
                    ev.ops.append((2, -1, None, None))
            if obj.get("type") == "orderbook_snapshot":
                flush()
                ev.ops.append((0, t, msg.get("yes_dollars_fp") or [], msg.get("no_dollars_fp") or []))
                ev.messages += 1
                continue
            if msg.get("client_order_id"):
                ev.own_removed += 1
                continue
            if t != run_t:
                flush()
                run_t = t
            sides.append(0 if msg.get("side") == "yes" else 1)
            prices.append(parse_price(msg["price_dollars"]))
            deltas.append(parse_signed_count(msg["delta_fp"]))
            ev.messages += 1
        flush()
        return ev

    def replay(self) -> tuple[dict[str, OrderBook], int]:
        """Apply every event to fresh books; returns the books and the book messages applied."""
        books = [OrderBook(self.grids[t]) for t in self.tickers]
        ready = [False] * len(books)
        applied = 0
        for op in self.ops:
            kind = op[0]
            if kind == 1:
                i = op[1]
                if ready[i]:
                    applied += books[i].apply_deltas(op[2], op[3], op[4])
            elif kind == 0:
                books[op[1]].apply_snapshot(op[2], op[3])
                ready[op[1]] = True
                applied += 1
            else:
                ready = [False] * len(books)
        return dict(zip(self.tickers, books)), applied
