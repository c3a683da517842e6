"""Latency model of a replay: feed, order entry and response, each a constant or a distribution.

On the replay's clock (a capture's receive times, monotonic ns) an order decided at ``t``:

- reaches the exchange at ``t + entry``; the book it meets there is the one the exchange had then,
  which we received ``feed`` later, so it acts after every recorded frame received up to
  ``t + entry + feed`` (orders act on the book as it is when they arrive, not as it was when decided);
- is answered (ack, taker fills) at ``t + entry + response``, never before it has acted.

Fills of resting orders reach us with the recorded trade that caused them (same feed path).

A :class:`Dist` is ``const:NS``, ``lognormal:MEDIAN_NS:SIGMA`` or an empirical list of samples (drawn
with the replay's seeded random generator, so a replay is deterministic per seed).
:func:`fit_latency` builds the model from a recorded ``kmm run`` directory: feed from the capture
(frame receive wall time - the exchange's ``ts_ms``), response from the capture (``user_order``
receive wall time - its ``created_ts_ms``), entry from the tape: a ``decision`` row is written right
after the decision's first request left (its bytes written, after any wait for write tokens), and the
exchange stamps what that request did (``last_updated_ts_ms`` of the market's next ``user_order``
that is not a fill); entry = that stamp + 0.5 ms (the stamp is the floor of a millisecond) - the row's
time. A decision whose first request changed nothing at the exchange (refused) matches a later
update: samples above ten times the median (at least 5 ms) are such mismatches and are left out.
Without a tape, entry comes from the store (``created_ts_ms`` - our create's record time), which
includes the wait for write tokens (modelled by the replay itself): only the fastest tenth is kept.
Negative samples (clock skew, rounding) count as 0.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

log = logging.getLogger("kmm.research.latency")

NS_PER_MS = 1_000_000


@dataclass(slots=True)
class Dist:
    """One latency: ``kind`` const | lognormal | empirical, in ns."""

    kind: str = "const"
    value_ns: int = 0                 # const: the value; lognormal: the median
    sigma: float = 0.0                # lognormal: sigma of log(latency)
    samples: tuple[int, ...] = ()     # empirical

    @classmethod
    def parse(cls, text: str) -> Dist:
        """``"250us"``/``"1.5ms"``/``"const:1500000"``/``"lognormal:1ms:0.5"``; plain numbers are ns."""
        parts = text.strip().split(":")
        if len(parts) == 1:
            return cls("const", _ns(parts[0]))
        kind = parts[0]
        if kind == "const" and len(parts) == 2:
            return cls("const", _ns(parts[1]))
        if kind == "lognormal" and len(parts) == 3:
            return cls("lognormal", _ns(parts[1]), float(parts[2]))
        raise ValueError(f"latency {text!r}: expected NS, const:NS or lognormal:MEDIAN:SIGMA "
                         "(units ns, us, ms or s, e.g. lognormal:2ms:0.4)")

    @classmethod
    def empirical(cls, samples: Sequence[int]) -> Dist:
        if not samples:
            return cls("const", 0)
        return cls("empirical", int(statistics.median(samples)), 0.0, tuple(sorted(int(s) for s in samples)))

    def draw(self, rng: random.Random) -> int:
        if self.kind == "const":
            return self.value_ns
        if self.kind == "lognormal":
            return int(self.value_ns * math.exp(rng.gauss(0.0, self.sigma))) if self.sigma > 0 else self.value_ns
        return self.samples[rng.randrange(len(self.samples))]

    @property
    def median_ns(self) -> int:
        return self.value_ns

    def describe(self) -> str:
        if self.kind == "const":
            return f"{self.value_ns / 1e6:.3f} ms"
        if self.kind == "lognormal":
            return f"lognormal median {self.value_ns / 1e6:.3f} ms sigma {self.sigma:g}"
        s = self.samples
        return (f"empirical n={len(s)} p50 {s[len(s) // 2] / 1e6:.3f} ms "
                f"p99 {s[min(len(s) - 1, int(0.99 * len(s)))] / 1e6:.3f} ms")


def _ns(text: str) -> int:
    t = text.strip().lower()
    for suffix, mult in (("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(float(t))


@dataclass(slots=True)
class LatencyModel:
    feed: Dist = field(default_factory=lambda: Dist("const", 1 * NS_PER_MS))
    entry: Dist = field(default_factory=lambda: Dist("const", 1 * NS_PER_MS))
    response: Dist = field(default_factory=lambda: Dist("const", 1 * NS_PER_MS))
    source: str = "default"

    def describe(self) -> str:
        return (f"feed {self.feed.describe()}, entry {self.entry.describe()}, "
                f"response {self.response.describe()} ({self.source})")


def fit_latency(run_dir: str | Path, *, max_frames: int = 200_000) -> LatencyModel:
    """The latency model of a recorded ``kmm run``: see the module docstring for what is measured."""
    from kmm.record.capture import read_capture
    from kmm.record.capture import capture_files
    run = Path(run_dir)
    feed: list[int] = []
    response: list[int] = []
    created_ms: dict[str, int] = {}
    updates: dict[str, list[int]] = {}          # ticker -> exchange stamps (ms) of our requests' effects
    last_fill: dict[str, object] = {}
    n = 0
    for path in capture_files(run):
        for rec in read_capture(path):
            n += 1
            if n > max_frames:
                break
            frame = rec.frame
            if b'"orderbook_delta"' in frame and b'"ts_ms"' in frame:
                i = frame.find(b'"ts_ms":')
                j = i + 8
                k = j
                while k < len(frame) and 48 <= frame[k] <= 57:
                    k += 1
                if k > j:
                    feed.append(max(0, rec.wall_ns - int(frame[j:k]) * NS_PER_MS))
            elif b'"user_order"' in frame:
                try:
                    msg = orjson.loads(frame).get("msg", {})
                except orjson.JSONDecodeError:
                    continue
                c = msg.get("created_ts_ms")
                coid = msg.get("client_order_id")
                upd = msg.get("last_updated_ts_ms") or c
                fc = msg.get("fill_count_fp", msg.get("fill_count"))
                if isinstance(upd, int) and coid:
                    if last_fill.get(coid, fc) == fc:       # not a fill: a request of ours did this
                        updates.setdefault(str(msg.get("ticker") or msg.get("market_ticker") or ""),
                                           []).append(upd)
                    last_fill[coid] = fc
                if isinstance(c, int) and coid and coid not in created_ms:
                    created_ms[coid] = c
                if isinstance(upd, int) and msg.get("status") == "resting" and upd == c:
                    response.append(max(0, rec.wall_ns - upd * NS_PER_MS))
    entry = _entry_from_tape(run, updates)
    entry_from_tape = bool(entry)
    store = run / "kmm.sqlite"
    if not entry and store.exists() and created_ms:
        from kmm.record.store import StoreReader
        for o in StoreReader(store).orders():
            c = created_ms.get(o.client_order_id or "")
            if c is not None and o.created_ns:
                entry.append(max(0, c * NS_PER_MS - o.created_ns))
    model = LatencyModel(source=f"fitted from {run}")
    if feed:
        model.feed = Dist.empirical(feed)
    if entry and entry_from_tape:
        model.entry = Dist.empirical(entry)
    elif entry:
        # the store cannot tell the network from the wait for write tokens (requests queue in the
        # limiter before they are sent; the replay models that wait itself with the same buckets):
        # the fastest tenth of the creates are the ones that did not wait
        entry.sort()
        model.entry = Dist.empirical(entry[: max(1, len(entry) // 10)])
    if response:
        model.response = Dist.empirical(response)
    log.info("latency fitted from %s: %s (feed n=%d, entry n=%d, response n=%d)", run, model.describe(),
             len(feed), len(entry), len(response))
    return model


def _entry_from_tape(run: Path, updates: dict[str, list[int]]) -> list[int]:
    """Entry samples (ns): each tape ``decision`` row (written when the decision's first request had
    left) to the exchange's stamp of the market's next non-fill ``user_order`` update."""
    import bisect

    from kmm.record._worker import RecordError
    from kmm.record.tape import read_tape
    path = run / "tape.csv"
    if not path.exists() or not updates:
        return []
    for stamps in updates.values():
        stamps.sort()
    out: list[int] = []
    try:
        for row in read_tape(path):
            if row.event != "decision":
                continue
            u = updates.get(row.ticker)
            if not u:
                continue
            i = bisect.bisect_left(u, row.ts_ns // NS_PER_MS)
            if i < len(u):
                out.append(max(0, u[i] * NS_PER_MS + NS_PER_MS // 2 - row.ts_ns))
    except (OSError, RecordError) as exc:
        log.warning("latency fit: tape %s unreadable (%s); entry latency from the store instead", path, exc)
        return []
    if not out:
        return []
    cut = max(10 * statistics.median(out), 5 * NS_PER_MS)
    return [x for x in out if x <= cut]


# ---------------------------------------------------------------------------------- kept fits
def model_payload(model: LatencyModel) -> dict[str, object]:
    """``model`` as JSON-able data (kept in a replay cache file: :func:`model_from_payload` reads it)."""
    return {"source": model.source,
            **{name: {"kind": d.kind, "value_ns": d.value_ns, "sigma": d.sigma, "samples": list(d.samples)}
               for name, d in (("feed", model.feed), ("entry", model.entry), ("response", model.response))}}


def model_from_payload(payload: dict[str, object]) -> LatencyModel:
    """The model :func:`model_payload` wrote; ValueError/TypeError/KeyError when it is not one."""
    def dist(x: object) -> Dist:
        if not isinstance(x, dict) or x.get("kind") not in ("const", "lognormal", "empirical"):
            raise ValueError(f"not a latency distribution: {x!r:.80}")
        samples = tuple(int(s) for s in x["samples"])
        if x["kind"] == "empirical" and not samples:
            raise ValueError("an empirical latency without samples")
        return Dist(str(x["kind"]), int(x["value_ns"]), float(x["sigma"]), samples)
    return LatencyModel(dist(payload["feed"]), dist(payload["entry"]), dist(payload["response"]),
                        source=str(payload["source"]))


def fit_key(run_dir: str | Path, *, max_frames: int = 200_000) -> str:
    """What :func:`fit_latency` of ``run_dir`` depends on: the content of every file it reads (the
    run's capture files, ``tape.csv``, ``kmm.sqlite`` and its WAL), ``max_frames`` and this module's
    code. A run record that changes in any of them gets another key, so a kept fit is never used for
    it. OSError when the run directory cannot be read."""
    import hashlib

    from kmm.record.capture import capture_files
    run = Path(run_dir)
    h = hashlib.blake2b(digest_size=16)
    h.update(Path(__file__).read_bytes())
    h.update(str(max_frames).encode())
    files = [*capture_files(run), run / "tape.csv", run / "kmm.sqlite", run / "kmm.sqlite-wal"]
    for p in files:
        h.update(p.name.encode() + b"\0")
        if not p.exists():
            h.update(b"-\0")
            continue
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        h.update(b"\0")
    return "latency:" + h.hexdigest()
