"""Many markets on one write budget: how fairly the writes are shared (tests/engine/manymarkets.py).

Runs the maker on N simulated markets (events of five, every other one mutually exclusive) for a
while on a rate tier the simulator enforces, and prints, per run: the start time, markets never
quoted, writes per market (min / median / max, Jain's fairness index), the time to the first quote
(median / max), the longest wait of one write (limiter queue + round trip), the longest gap between
two writes of one market, 429s, and what rested after the stop.

    PYTHONPATH=src python bench/bench_fair.py                       # 300 markets: basic 90 s, premier 10 s
    KMM_BENCH_FAIR="300:basic:90,300:prestige:10" PYTHONPATH=src python bench/bench_fair.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine.manymarkets import measure  # noqa: E402

RUNS = [tuple(x.split(":")) for x in os.environ.get("KMM_BENCH_FAIR", "300:basic:90,300:premier:10").split(",")]
KEYS = ("markets", "tier", "seconds", "start_s", "never_quoted", "writes_min", "writes_median", "writes_max",
        "one_sided", "jain_index", "first_quote_median_s", "first_quote_max_s", "write_wait_max_s",
        "write_wait_median_of_max_s", "gap_between_writes_max_s", "gap_between_writes_median_of_max_s",
        "orders_sent", "amends_sent", "cancels_sent", "sim_429", "skipped_reprices", "resting_after_stop",
        "verified_flat", "resting_two_sided_at_end", "resting_none_at_end")


async def main() -> None:
    for n, tier, secs in RUNS:
        with tempfile.TemporaryDirectory() as d:
            r = await measure(Path(d), int(n), tier, float(secs))
        out = {k: r[k] for k in KEYS}
        out["one_sided"] = len(out["one_sided"])
        out["stray_orders"] = len(r["engine"].events_of("stray_order"))
        lim = r["engine"].rest.limiter if r["engine"].rest is not None else None
        if lim is not None:
            out["limiter_expired"], out["limiter_promotions"] = lim.expired, lim.promotions
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
