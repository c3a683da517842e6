"""Decode a capture once: the replay's columnar cache.

A backtest spends most of a first pass on gzip, the record split and JSON: work that gives the same
answer every time the same capture is replayed (a sweep replays one capture hundreds of times). This
module does it once per capture file and keeps the result in a file:

- every record is classified the way the replay driver (:mod:`kmm.research.backtest`) would classify
  it, with the very same byte tests, so a replay from the cache takes the same branch for every frame:
  ``TICKER`` (the engine reads nothing from it), ``TRADE`` (a public trade in its usual form, decoded
  into ``(trade_id, ticker, YES price, count, taker side, ts_ms)`` as ``_fast_trade`` does), ``FEED``
  (a frame for the compiled ``BookRouter``, with the ticker of a book delta for the driver's
  taken-liquidity check), ``OWN`` (a book delta of the recorded run's own order, decoded into
  ``(ticker, side, price, delta, sid, seq)`` as the driver's ``_slow_delta`` reads it: the replay
  only tracks it, never applies it), ``REPORT`` (the recorded run's own order, fill or position
  message: its outcome, not the replay's; only a fitting pass reads it), ``IGNORE`` (a frame the
  driver reads nothing from: the router answers ``NOT_BOOK`` and its type is none the driver acts
  on, e.g. the recorded run's ``market_position``) and ``OTHER`` (anything else, and an own delta
  not in the usual form: the driver's general path, raw);
- the frames the router or the driver may still read (book frames, own deltas (a book-only replay
  feeds them to the router), ``REPORT``, ``OTHER``) are kept raw (the compiled scan of one delta
  costs less than reading it back from any decoded form would in Python); tickers and trades keep
  no bytes, nor do frames the driver ignores.

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
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kmm._core.fixed import parse_price, parse_signed_count
from kmm._core.wire import NOT_BOOK, BookRouter
from kmm.record.capture import GAP_TYPE
from kmm.research.events import load_frames

log = logging.getLogger("kmm.research.replaycache")

#: bump when the classification or the file layout changes: older files are then decoded again
FORMAT = 4
OTHER, TICKER, FEED, TRADE, OWN, REPORT, IGNORE = 0, 1, 2, 3, 4, 5, 6
_I64 = 1 << 63
SUFFIX = ".replay.npz"


@dataclass(slots=True)
class Replay:
    """One capture file, decoded, as columns: per record ``recv`` and ``wall`` (ns), ``kind``, ``xs``
    (the trade's fields for ``TRADE`` and the own delta's for ``OWN`` as a tuple, the delta's ticker or None
    for ``FEED``, else None) and ``frames`` (the raw bytes, :func:`keeps_frame`; ``b""`` for tickers
    and trades). :meth:`rows` zips them."""

    recv: list[int]
    wall: list[int]
    kind: list[int]
    xs: list[Any]
    frames: list[bytes]
    lv: list[int]              # a book delta's level (:func:`delta_level`), -1 for any other row
    source_hash: str
    decode_s: float            # first decode of this capture (gzip, split, classify), seconds
    load_s: float              # what getting it this time cost (the decode itself, or reading the cache)
    from_cache: bool
    _fills: bool | None = None
    # results derived from this capture and kept in its cache file (the fitted pick-off model):
    # key (see :func:`store_model`) -> JSON-able payload
    models: dict[str, Any] = field(default_factory=dict)
    cache_file: Path | None = None      # where this capture's cache lives (None: no cache file)
    # :meth:`packed`'s arrays, made once: a list every copy of this Replay shares (``replace`` copies the
    # reference; the copies the process keeps (_MEMO) hand out share the columns and so these)
    _packed: list[Any] = field(default_factory=list, repr=False, compare=False)

    def packed(self) -> tuple[array[int], array[int], array[int], array[int]]:
        """``recv``, ``wall`` (int64), ``kind`` (int8) and ``lv`` (int32) as arrays, made on the first call
        and kept: the compiled loop reads them as C integers (no Python int converted per record)."""
        if not self._packed:
            self._packed.append((array("q", self.recv), array("q", self.wall), array("b", self.kind),
                                 array("i", self.lv)))
        got: tuple[array[int], array[int], array[int], array[int]] = self._packed[0]
        return got

    def holds_fills(self) -> bool:
        """Whether a recorded run's fill messages are among the records (the pick-off model fits on them)."""
        if self._fills is None:
            self._fills = any(b'"type":"fill"' in f[:24] for f in self.frames if f)
        return self._fills

    def rows(self) -> Any:
        """``(recv_ns, wall_ns, kind, x, frame, level)`` per record, in order."""
        return zip(self.recv, self.wall, self.kind, self.xs, self.frames, self.lv)

    def __len__(self) -> int:
        return len(self.kind)


def content_hash(path: Path) -> str:
    """The capture file's content hash (what its cache file is tied to). Kept in this process per
    file under its status (device, inode, size, mtime and ctime in ns): a replay after the first in
    the same process (the benchmark's rounds, a sweep worker's tasks) skips reading and hashing the
    file again (~1 ms per 700 kB, ~1.5 % of a replay of a 60 s run). Any write to the file moves its
    ctime, which no tool can set back, so a changed file is hashed again; a file changed less than
    ``HASH_SETTLED_NS`` before it was hashed is not kept (the clock the file system stamps with is
    coarse: two writes of the same size in one tick would leave the same status, as git's "racy clean"
    entries)."""
    try:
        st = os.stat(path)
        key: tuple[Any, ...] | None = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                      st.st_ctime_ns)
    except OSError:
        key = None
    if key is not None:
        got = _HASHES.get(key)
        if got is not None:
            return got
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    digest = h.hexdigest()
    if key is not None and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > HASH_SETTLED_NS:
        if len(_HASHES) >= 4096:
            _HASHES.clear()
        _HASHES[key] = digest
    return digest


_HASHES: dict[tuple[Any, ...], str] = {}    # content_hash's kept digests (file status -> digest)
HASH_SETTLED_NS = 2_000_000_000


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
        if b'"orderbook_delta"' in frame:
            own = own_delta(frame)
            return (OWN, own) if own is not None else (OTHER, None)
        return REPORT, None
    ticker = None
    if b'"orderbook_delta"' in frame:
        i = frame.find(b'"market_ticker":"')
        if i >= 0:
            j = frame.find(b'"', i + 17)
            try:
                ticker = frame[i + 17:j].decode()
            except UnicodeDecodeError:
                return OTHER, None
    elif ignored(frame):
        return IGNORE, None
    return FEED, ticker


#: what the driver's ``_json`` acts on (anything else it parses and drops)
_ACTED_ON = ("trade", "market_lifecycle_v2", GAP_TYPE, "subscribed")
_SCRATCH = BookRouter()     # no markets: whether a frame is a book frame does not depend on them


def ignored(frame: bytes) -> bool:
    """Whether the driver reads nothing from ``frame`` (a frame for the router that is not a trade,
    a ticker or the recorded run's order): the compiled router answers ``NOT_BOOK`` (valid JSON to
    its scan, a type other than a book snapshot or delta: a step that does not depend on the
    router's markets or sequence), and ``Backtest._json`` parses it and takes none of its branches."""
    if _SCRATCH.feed(frame, 0) != NOT_BOOK:
        return False
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return False            # counted as malformed by the driver
    return not isinstance(obj, dict) or obj.get("type") not in _ACTED_ON


def own_delta(frame: bytes) -> tuple[str, int, int, int, int, int] | None:
    """The recorded run's own book delta as the driver's ``_slow_delta`` reads it: (ticker, side 0 yes
    / 1 no, price in that side's terms, signed size, sid, seq); None when anything about it is off the
    usual form (unreadable, a ticker that is not a string, a number past int64): the row then stays
    ``OTHER`` and the replay takes the driver's general path, which says what is wrong the same way."""
    try:
        obj = orjson.loads(frame)
        msg = obj["msg"]
        t = msg["market_ticker"]
        side = 0 if msg["side"] == "yes" else 1
        price = parse_price(msg["price_dollars"])
        delta = parse_signed_count(msg["delta_fp"])
        sid, seq = int(obj.get("sid") or 0), int(obj.get("seq") or 0)
    except Exception:  # noqa: BLE001 - the general path reports it
        return None
    if type(t) is not str or not all(-_I64 <= v < _I64 for v in (price, delta, sid, seq)):
        return None
    return t, side, price, delta, sid, seq


def delta_level(frame: bytes) -> int:
    """The level a book delta frame moves, as ``side << 16 | price`` (side 0 yes, 1 no; the price of
    that side of the book, 1e-4 $): where the fill simulator's queue upkeep must look. -1 when the
    frame does not state it in the usual form (the replay then looks at every level of ours)."""
    i = frame.find(b'"price_dollars":"')
    j = frame.find(b'"side":"')
    if i < 0 or j < 0:
        return -1
    k = frame.find(b'"', i + 17)
    side = frame[j + 8:j + 12]
    if side == b'yes"':
        bside = 0
    elif side[:3] == b'no"':
        bside = 1
    else:
        return -1
    try:
        price = parse_price(frame[i + 17:k])
    except (ValueError, TypeError):
        return -1
    if not 0 < price < 10_000:
        return -1
    return bside << 16 | price


def decode(path: Path, fast_trade: Any) -> tuple[list[int], list[int], list[int], list[Any], list[bytes], list[int]]:
    recv: list[int] = []
    wall: list[int] = []
    kind: list[int] = []
    xs: list[Any] = []
    frames: list[bytes] = []
    lv: list[int] = []
    for r, w, frame in load_frames(path):
        k, x = classify(frame, fast_trade)
        recv.append(r)
        wall.append(w)
        kind.append(k)
        xs.append(x)
        frames.append(frame if keeps_frame(k) else b"")
        lv.append(delta_level(frame) if k == FEED and x is not None else -1)
    return recv, wall, kind, xs, frames, lv


def keeps_frame(kind: int) -> bool:
    """Whether a row of ``kind`` keeps its raw frame: every one the router or the driver may still read
    (a book-only replay feeds own deltas to the router too)."""
    return kind != TICKER and kind != TRADE and kind != IGNORE


def cache_path(capture: Path, cache_dir: str, source_hash: str) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser() / f"{source_hash}.v{FORMAT}{SUFFIX}"
    return capture.with_name(capture.name + SUFFIX)


Cols = tuple[list[int], list[int], list[int], list[Any], list[bytes], list[int]]


def _save(dest: Path, cols: Cols, source_hash: str, decode_s: float, models: dict[str, Any] | None = None) -> None:
    recv, wall, kind, xs, frames, lv = cols
    n = len(kind)
    names: dict[str, int] = {}
    tk = np.full(n, -1, np.int16)
    trades = []
    owns = []
    for i, (k, x) in enumerate(zip(kind, xs)):
        if k == FEED and x is not None:
            tk[i] = names.setdefault(x, len(names))
        elif k == TRADE:
            tk[i] = names.setdefault(x[1], len(names))
            trades.append(x)
        elif k == OWN:
            tk[i] = names.setdefault(x[0], len(names))
            owns.append(x[1:])
    ofs = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, frames), np.int64, n), out=ofs[1:])
    side = orjson.dumps({"format": FORMAT, "source_hash": source_hash, "decode_s": decode_s,
                         "names": list(names), "trade_ids": [t[0] for t in trades],
                         "takers": [t[4] for t in trades], "models": models or {}})
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name, suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, recv=np.array(recv, np.int64), wall=np.array(wall, np.int64), kind=np.array(kind, np.int8),
                     tk=tk, ofs=ofs, lv=np.array(lv, np.int32), blob=np.frombuffer(b"".join(frames), np.uint8),
                     t_price=np.array([t[2] for t in trades], np.int64),
                     t_count=np.array([t[3] for t in trades], np.int64),
                     t_ts=np.array([t[5] for t in trades], np.int64),
                     own=np.array(owns, np.int64).reshape(len(owns), 5), side=np.frombuffer(side, np.uint8))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(src: Path, source_hash: str) -> tuple[Cols, float, dict[str, Any]] | None:
    try:
        with np.load(src, allow_pickle=False) as z:
            side = orjson.loads(z["side"].tobytes())
            if side.get("format") != FORMAT or side.get("source_hash") != source_hash:
                return None
            kind_a, tk = z["kind"], z["tk"]
            recv, wall, kind = z["recv"].tolist(), z["wall"].tolist(), kind_a.tolist()
            lv = z["lv"].tolist()
            ofs = z["ofs"]
            blob = z["blob"].tobytes()
            t_price, t_count, t_ts = z["t_price"].tolist(), z["t_count"].tolist(), z["t_ts"].tolist()
            own = z["own"].tolist()
        names = np.array([*side["names"], None], object)     # index -1: no ticker
        n = len(kind)
        if not (len(recv) == len(wall) == len(tk) == len(lv) == len(ofs) - 1 and
                len(side["trade_ids"]) == len(side["takers"]) == len(t_price) == len(t_count) == len(t_ts)):
            raise ValueError("columns of different lengths")
        # the delta's ticker for FEED rows, the trade tuple for TRADE rows, None for the rest
        x = names[np.where(kind_a == FEED, tk, -1)]
        xs = x.tolist()
        t_rows = np.flatnonzero(kind_a == TRADE)
        t_names = names[tk[t_rows]].tolist()
        for i, tr in zip(t_rows.tolist(), zip(side["trade_ids"], t_names, t_price, t_count, side["takers"], t_ts)):
            xs[i] = tr
        o_rows = np.flatnonzero(kind_a == OWN)
        if len(o_rows) != len(own):
            raise ValueError("own deltas and their rows differ in number")
        for i, name, od in zip(o_rows.tolist(), names[tk[o_rows]].tolist(), own):
            xs[i] = (name, *od)
        frames = [b""] * n
        f_rows = np.flatnonzero((kind_a != TICKER) & (kind_a != TRADE) & (kind_a != IGNORE))    # keeps_frame
        for i, a, b in zip(f_rows.tolist(), ofs[f_rows].tolist(), ofs[f_rows + 1].tolist()):
            frames[i] = blob[a:b]
    except (OSError, ValueError, KeyError, IndexError, orjson.JSONDecodeError) as exc:
        log.info("%s: replay cache unreadable (%s); decoding the capture again", src, exc)
        return None
    models = side.get("models")
    return (recv, wall, kind, xs, frames, lv), float(side.get("decode_s", 0.0)), \
        models if isinstance(models, dict) else {}


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


#: decoded captures kept in this process (a sweep worker replays the same captures task after task):
#: (cache file, content hash, FORMAT) -> (the cache file's stat when read, the Replay); the oldest go
#: first beyond MEMO_ROWS rows in all
_MEMO: OrderedDict[tuple[str, str, int], tuple[tuple[int, int, int], Replay]] = OrderedDict()
MEMO_ROWS = 2_000_000


def _stat(p: Path) -> tuple[int, int, int] | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _remember(rep: Replay) -> None:
    if rep.cache_file is None or MEMO_ROWS <= 0:
        return
    st = _stat(rep.cache_file)
    if st is None:
        return
    key = (str(rep.cache_file), rep.source_hash, FORMAT)
    _MEMO[key] = (st, rep)
    _MEMO.move_to_end(key)
    rows = sum(len(r) for _, r in _MEMO.values())
    while len(_MEMO) > 1 and rows > MEMO_ROWS:
        _, (_, old) = _MEMO.popitem(last=False)
        rows -= len(old)


def forget() -> None:
    """Drop the decoded captures and content hashes kept in this process (the next load reads the
    capture and the cache file)."""
    _MEMO.clear()
    _HASHES.clear()


def _load_or_decode(path: Path, fast_trade: Any, cache_dir: str, write: bool) -> Replay:
    t0 = time.perf_counter()
    if cache_dir == "off":
        cols = decode(path, fast_trade)
        dt = time.perf_counter() - t0
        return Replay(*cols, "", dt, dt, False)
    h = content_hash(path)
    dest = cache_path(path, cache_dir, h)
    kept = _MEMO.get((str(dest), h, FORMAT))
    if kept is not None and kept[0] == _stat(dest):
        # the very cache file read before in this process: its columns are read-only, shared
        return replace(kept[1], load_s=time.perf_counter() - t0)
    if dest.exists():
        got = _load(dest, h)
        if got is not None:
            cols, decode_s, models = got
            rep = Replay(*cols, h, decode_s, time.perf_counter() - t0, True, models=models, cache_file=dest)
            _remember(rep)
            return rep
    cols = decode(path, fast_trade)
    dt = time.perf_counter() - t0
    written = None
    if write:
        try:
            _save(dest, cols, h, dt)
            written = dest
        except OSError as exc:
            log.info("%s: cannot write the replay cache (%s); the next replay decodes the capture again",
                     dest, exc)
    # not kept in memory: the next load reads the file back (what a later process would read)
    return Replay(*cols, h, dt, dt, False, cache_file=written)


def store_model(rep: Replay, key: str, payload: Any) -> bool:
    """Keep ``payload`` (JSON-able) under ``key`` in ``rep``'s cache file, beside the decoded columns:
    what a replay derives from the capture alone and would otherwise derive again on every replay
    (the pick-off model's fitting pass). The key must name everything the payload depends on besides
    this file's content (which the cache file is already tied to); a capture whose content changes
    gets a new cache file without the old payloads. False: no cache file to keep it in (kept in
    memory on ``rep`` only)."""
    rep.models[key] = payload
    if rep.cache_file is None:
        return False
    gc_on = gc.isenabled()
    gc.disable()
    try:
        _save(rep.cache_file, (rep.recv, rep.wall, rep.kind, rep.xs, rep.frames, rep.lv), rep.source_hash,
              rep.decode_s, rep.models)
    except OSError as exc:
        log.info("%s: cannot keep the %s in the replay cache (%s)", rep.cache_file, key, exc)
        return False
    finally:
        if gc_on:
            gc.enable()
    if rep.from_cache:
        _remember(rep)      # the file changed: the kept copy goes with its new stat
    return True
