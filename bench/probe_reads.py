"""What the loop's long WebSocket reads hold, in situ (issue 15's p99).

Runs bench_kmm_run's variant (default ``kmm-py-listener``: kmm run's configuration with the Python
WebSocket listener, which this probe wraps; the compiled one cannot be wrapped; 3 markets, busy flow, the
simulator in its own process) and times every socket read of the market-data WebSocket from its first
frame to the end of its last (``_Listener.on_ws_frame``: the frames, the decisions they trigger and
the requests written before the next read can start), with the message types it held and the requests
it wrote (``fasthttp._Conn.start``). Prints the reads by speed (fastest half, p90-p99, slowest 1 %),
reads with and without one of our fills, and reads without a fill by the requests they wrote.

A frame that waits in a read behind a fill's bookkeeping and the requests of the decisions before it
is the tail of frame -> decided, so this says where that tail comes from. The wrappers add ~1 us per
frame; read the figures as shares. Run: ``PYTHONPATH=src:. python -m bench.probe_reads [variant]``.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

_TYPE = re.compile(rb'"type"\s*:\s*"([a-z_]+)"')


def _pct(values: list[int], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] / 1e3


def main() -> None:
    from bench import bench_kmm_run as bk
    from kmm.kalshi import fasthttp
    from kmm.kalshi import ws as wsmod
    clock = time.perf_counter_ns
    reads: list[tuple[int, dict[str, int], int]] = []
    cur: dict[str, Any] = {"t0": 0, "types": Counter(), "writes": 0}
    orig_frame = wsmod._Listener.on_ws_frame
    orig_start = fasthttp._Conn.start

    def on_frame(self: Any, transport: Any, frame: Any) -> None:
        if not self._read_open:
            cur["t0"], cur["types"], cur["writes"] = clock(), Counter(), 0
        m = _TYPE.search(frame.get_payload_as_bytes()[:40])
        cur["types"][m.group(1).decode() if m else "other"] += 1
        orig_frame(self, transport, frame)
        if frame.last_in_buffer:
            reads.append((clock() - cur["t0"], dict(cur["types"]), cur["writes"]))

    def start(self: Any, *a: Any, **k: Any) -> Any:
        cur["writes"] += 1
        return orig_start(self, *a, **k)

    wsmod._Listener.on_ws_frame = on_frame  # type: ignore[method-assign]
    fasthttp._Conn.start = start  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as d:
            bk.run_variant(Path(d), bk.VARIANTS[sys.argv[1] if len(sys.argv) > 1 else "kmm-py-listener"])
    finally:
        wsmod._Listener.on_ws_frame = orig_frame  # type: ignore[method-assign]
        fasthttp._Conn.start = orig_start  # type: ignore[method-assign]
    reads.sort(key=lambda r: r[0])
    n = len(reads)

    def held(rows: list[tuple[int, dict[str, int], int]], label: str) -> None:
        types: Counter[str] = Counter()
        for _, t, _w in rows:
            types.update(t)
        k = len(rows) or 1
        print(f"{label:13s} n={len(rows):5d} mean {sum(r[0] for r in rows) / k / 1e3:7.0f} us; per read: "
              f"requests {sum(r[2] for r in rows) / k:.2f}; "
              + ", ".join(f"{t} {v / k:.2f}" for t, v in types.most_common()))

    print(f"{n} reads of the market-data WebSocket")
    held(reads[: n // 2], "fastest half")
    held(reads[int(n * 0.9): int(n * 0.99)], "p90-p99")
    held(reads[int(n * 0.99):], "slowest 1 %")
    for label, with_fill in (("with a fill", True), ("no fill", False)):
        v = sorted(r[0] for r in reads if bool(r[1].get("fill")) == with_fill)
        if v:
            print(f"{label:13s} n={len(v):5d} p50 {_pct(v, .5):6.0f}  p90 {_pct(v, .9):6.0f}  "
                  f"p99 {_pct(v, .99):6.0f} us")
    for w in range(6):
        v = sorted(r[0] for r in reads if r[2] == w and not r[1].get("fill"))
        if v:
            print(f"no fill, {w} requests written: n={len(v):5d} p50 {_pct(v, .5):6.0f}  p90 {_pct(v, .9):6.0f} us")


if __name__ == "__main__":
    main()
