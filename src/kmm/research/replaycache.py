"""Decode a capture once: the replay's columnar cache.

A backtest spends most of a first pass on gzip, the record split and JSON: work that gives the same
answer every time the same capture is replayed (a sweep replays one capture hundreds of times). This
module does it once per capture file and keeps the result in a file:

- every record is classified the way the replay driver (:mod:`kmm.research.backtest`) would classify
  it, with the very same byte tests, so a replay from the cache takes the same branch for every frame:
  ``TICKER`` (the engine reads nothing from it), ``TRADE`` (a public trade in its usual form, decoded
  into ``(trade_id, ticker, YES price, count, taker side, ts_ms)`` as ``_fast_trade`` does), ``FEED``
  (a frame for the compiled ``BookRouter``, with the ticker of a book delta for the driver's
  taken-liquidity check) and ``OTHER`` (anything else: the driver's general path, raw);
- the frames the router still reads (book frames, ``OTHER``) are kept raw (the compiled scan of one
  delta costs less than reading it back from any decoded form would in Python); tickers and trades
  keep no bytes.

The file is ``numpy``'s ``.npz`` (uncompressed: loading is a copy): ``recv``/``wall`` (int64 ns),
``kind`` (int8), ``blob`` (the raw frames, uint8) with ``ofs`` (int64, one more than rows) and a JSON
part (the trades, the delta tickers). It lives beside the capture (``capture.bin.gz`` ->
``capture.bin.gz.replay.npz``) or, with a cache directory, under the capture's content hash there.
It is used only if it holds the capture's content hash (BLAKE2b of the compressed file) and this
module's :data:`FORMAT`; otherwise the capture is decoded again and the file rewritten (atomically:
written aside, then renamed, so parallel sweep workers never read half a file). A directory that
cannot be written just means no cache (logged once).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kmm.research.events import load_frames

log = logging.getLogger("kmm.research.replaycache")

#: bump when the classification or the file layout changes: older files are then decoded again
FORMAT = 2
OTHER, TICKER, FEED, TRADE = 0, 1, 2, 3
SUFFIX = ".replay.npz"


@dataclass(slots=True)
class Replay:
    """One capture file, decoded, as columns: per record ``recv`` and ``wall`` (ns), ``kind``, ``xs``
    (the trade's fields for ``TRADE`` as a tuple, the delta's ticker or None for ``FEED``, else None) and ``frames``
    (the raw bytes for ``FEED`` and ``OTHER``, else ``b""``). :meth:`rows` zips them."""

    recv: list[int]
    wall: list[int]
    kind: list[int]
    xs: list[Any]
    frames: list[bytes]
    source_hash: str
    decode_s: float            # first decode of this capture (gzip, split, classify), seconds
    load_s: float              # what getting it this time cost (the decode itself, or reading the cache)
    from_cache: bool
    _fills: bool | None = None

    def holds_fills(self) -> bool:
        """Whether a recorded run's fill messages are among the records (the pick-off model fits on them)."""
        if self._fills is None:
            self._fills = any(b'"type":"fill"' in f[:24] for f in self.frames if f)
        return self._fills

    def rows(self) -> Any:
        """``(recv_ns, wall_ns, kind, x, frame)`` per record, in order."""
        return zip(self.recv, self.wall, self.kind, self.xs, self.frames)

    def __len__(self) -> int:
        return len(self.kind)


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def classify(frame: bytes, fast_trade: Any) -> tuple[int, Any]:
    """The driver's branch for ``frame`` (``Backtest._frame``'s byte tests, in its order)."""
    head = frame[:24]
    if b'"type":"ticker"' in head:
        return TICKER, None
    if b'"type":"trade"' in head:
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return OTHER, None
        if isinstance(obj, dict) and obj.get("type") == "trade":
            msg = obj.get("msg")
            if isinstance(msg, dict):
                tr = fast_trade(msg)
                if tr is not None:
                    return TRADE, tr
        return OTHER, None
    if b'"client_order_id"' in frame:
        return OTHER, None
    ticker = None
    if b'"orderbook_delta"' in frame:
        i = frame.find(b'"market_ticker":"')
        if i >= 0:
            j = frame.find(b'"', i + 17)
            try:
                ticker = frame[i + 17:j].decode()
            except UnicodeDecodeError:
                return OTHER, None
    return FEED, ticker


def decode(path: Path, fast_trade: Any) -> tuple[list[int], list[int], list[int], list[Any], list[bytes]]:
    recv: list[int] = []
    wall: list[int] = []
    kind: list[int] = []
    xs: list[Any] = []
    frames: list[bytes] = []
    for r, w, frame in load_frames(path):
        k, x = classify(frame, fast_trade)
        recv.append(r)
        wall.append(w)
        kind.append(k)
        xs.append(x)
        frames.append(frame if k == FEED or k == OTHER else b"")
    return recv, wall, kind, xs, frames


def cache_path(capture: Path, cache_dir: str, source_hash: str) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser() / f"{source_hash}.v{FORMAT}{SUFFIX}"
    return capture.with_name(capture.name + SUFFIX)


def _save(dest: Path, cols: tuple[list[int], list[int], list[int], list[Any], list[bytes]], source_hash: str,
          decode_s: float) -> None:
    recv, wall, kind, xs, frames = cols
    n = len(kind)
    names: dict[str, int] = {}
    tk = np.full(n, -1, np.int16)
    trades = []
    for i, (k, x) in enumerate(zip(kind, xs)):
        if k == FEED and x is not None:
            tk[i] = names.setdefault(x, len(names))
        elif k == TRADE:
            tk[i] = names.setdefault(x[1], len(names))
            trades.append(x)
    ofs = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, frames), np.int64, n), out=ofs[1:])
    side = orjson.dumps({"format": FORMAT, "source_hash": source_hash, "decode_s": decode_s,
                         "names": list(names), "trade_ids": [t[0] for t in trades],
                         "takers": [t[4] for t in trades]})
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name, suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, recv=np.array(recv, np.int64), wall=np.array(wall, np.int64), kind=np.array(kind, np.int8),
                     tk=tk, ofs=ofs, blob=np.frombuffer(b"".join(frames), np.uint8),
                     t_price=np.array([t[2] for t in trades], np.int64),
                     t_count=np.array([t[3] for t in trades], np.int64),
                     t_ts=np.array([t[5] for t in trades], np.int64), side=np.frombuffer(side, np.uint8))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(src: Path, source_hash: str) -> tuple[tuple[list[int], list[int], list[int], list[Any], list[bytes]],
                                                float] | None:
    try:
        with np.load(src, allow_pickle=False) as z:
            side = orjson.loads(z["side"].tobytes())
            if side.get("format") != FORMAT or side.get("source_hash") != source_hash:
                return None
            kind_a, tk = z["kind"], z["tk"]
            recv, wall, kind = z["recv"].tolist(), z["wall"].tolist(), kind_a.tolist()
            ofs = z["ofs"]
            blob = z["blob"].tobytes()
            t_price, t_count, t_ts = z["t_price"].tolist(), z["t_count"].tolist(), z["t_ts"].tolist()
        names = np.array([*side["names"], None], object)     # index -1: no ticker
        n = len(kind)
        if not (len(recv) == len(wall) == len(tk) == len(ofs) - 1 and
                len(side["trade_ids"]) == len(side["takers"]) == len(t_price) == len(t_count) == len(t_ts)):
            raise ValueError("columns of different lengths")
        # the delta's ticker for FEED rows, the trade tuple for TRADE rows, None for the rest
        x = names[np.where(kind_a == FEED, tk, -1)]
        xs = x.tolist()
        t_rows = np.flatnonzero(kind_a == TRADE)
        t_names = names[tk[t_rows]].tolist()
        for i, tr in zip(t_rows.tolist(), zip(side["trade_ids"], t_names, t_price, t_count, side["takers"], t_ts)):
            xs[i] = tr
        frames = [b""] * n
        f_rows = np.flatnonzero((kind_a == FEED) | (kind_a == OTHER))
        for i, a, b in zip(f_rows.tolist(), ofs[f_rows].tolist(), ofs[f_rows + 1].tolist()):
            frames[i] = blob[a:b]
    except (OSError, ValueError, KeyError, IndexError, orjson.JSONDecodeError) as exc:
        log.info("%s: replay cache unreadable (%s); decoding the capture again", src, exc)
        return None
    return (recv, wall, kind, xs, frames), float(side.get("decode_s", 0.0))


def load(path: Path, fast_trade: Any, cache_dir: str = "", *, write: bool = True) -> Replay:
    """The decoded capture file ``path``: from its cache file when that holds this content, else
    decoded now (and the cache written when ``write``). ``cache_dir``: "" beside the capture, "off"
    no cache file at all, else that directory."""
    # tens of thousands of small objects at once: the cyclic collector would walk them again and again
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_or_decode(path, fast_trade, cache_dir, write)
    finally:
        if enabled:
            gc.enable()


def _load_or_decode(path: Path, fast_trade: Any, cache_dir: str, write: bool) -> Replay:
    t0 = time.perf_counter()
    if cache_dir == "off":
        cols = decode(path, fast_trade)
        dt = time.perf_counter() - t0
        return Replay(*cols, "", dt, dt, False)
    h = content_hash(path)
    dest = cache_path(path, cache_dir, h)
    if dest.exists():
        got = _load(dest, h)
        if got is not None:
            cols, decode_s = got
            return Replay(*cols, h, decode_s, time.perf_counter() - t0, True)
    cols = decode(path, fast_trade)
    dt = time.perf_counter() - t0
    if write:
        try:
            _save(dest, cols, h, dt)
        except OSError as exc:
            log.info("%s: cannot write the replay cache (%s); the next replay decodes the capture again",
                     dest, exc)
    return Replay(*cols, h, dt, dt, False)
