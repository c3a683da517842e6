"""Warm loop: the cost of one book frame in ``Engine.on_book`` (no I/O, no other work on the loop).

An engine with one market (no connection; requests are not sent: ``_act`` records the actions) holds
its two quotes, acked and resting. Each frame applies one level delta to the book and calls
``Engine.on_book`` the way the connector does:

* ``deep``: a delta below the top: the decision is "no action" (the usual frame);
* ``top``: the best bid alternates between 0.40 and 0.44: the quotes move (amend actions) and the marks run.

Variants: the compiled pipeline (``kmm``) and ``MarketPipeline(compiled=False)`` (``python``). The
script only uses APIs older engines have too, so ``PYTHONPATH=<other checkout>/src`` measures another
branch with the same loop (A/B). Prints ns per frame, the median of ``--repeat`` rounds.

    PYTHONPATH=src python bench/bench_frame_path.py [--frames 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import time
from typing import Any

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm.config import load_config
from kmm.engine import maker as maker_mod
from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.live import Engine, EngineOptions
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.kalshi import ConnectorConfig
from kmm.kalshi.types import OrderAck

T = "KXBENCH-26-A"


def build(compiled: bool) -> tuple[Engine, ManualClock, OrderBook, list[Any]]:
    cfg = load_config(None, environ={}, cli={"run.markets": T, "strategy.quote_size": "5",
                                            "strategy.max_position": "30"})
    clock = ManualClock(monotonic_ns=100 * NS_PER_S, time_ns=1_800_000_000 * NS_PER_S)
    e = Engine(cfg, ConnectorConfig(env="sim"), clock=clock, options=EngineOptions(view="off"))
    grid = Grid("linear_cent")
    e.gate.add_market(T, grid, close_time_ns=None, fractional=False)
    e.freshness.add(T)
    e.freshness.on_ready(T)
    orig = maker_mod.MarketPipeline
    maker_mod.MarketPipeline = functools.partial(MarketPipeline, compiled=compiled)  # type: ignore[misc]
    try:
        e._add_pipeline(MarketInfo(T, grid, None))
    finally:
        maker_mod.MarketPipeline = orig  # type: ignore[misc]
    book = OrderBook("linear_cent")
    book.apply_snapshot([["0.4000", "10.00"], ["0.3500", "50.00"]], [["0.5500", "12.00"], ["0.5000", "50.00"]])
    pipe = e.pipes[T]
    pipe.book = book
    pipe.ready = True
    e.quoting = True
    acts: list[Any] = []

    def act(p: Any, actions: Any, live: Any, trigger_ns: int, *rest: Any, **kw: Any) -> None:
        acts.append(actions)
        p.decided_ns = clock.monotonic_ns()
        if kw.get("marks"):
            e._mark_top(p)
    e._act = act  # type: ignore[method-assign]
    # the first decision: place both quotes; they rest (acked) from here on
    e.on_book(T, clock.monotonic_ns())
    for i, a in enumerate(acts[-1]):
        o = e.om.create(T, "bid" if a.side == 0 else "ask", a.price, a.size)
        e.om.on_ack(OrderAck(f"o{i}", o.client_order_id, 0, a.size))
    acts.clear()
    e.on_book(T, clock.monotonic_ns())
    assert acts and not acts[-1], f"the held quotes should match the target: {acts}"
    return e, clock, book, acts


def run(compiled: bool, kind: str, frames: int) -> float:
    e, clock, book, acts = build(compiled)
    on_book = e.on_book
    mono = clock.monotonic_ns
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        if kind == "deep":
            for i in range(frames):
                book.apply_level_delta(0, 3000, -100 if i & 1 else 100)
                on_book(T, mono())
        else:
            for i in range(frames):
                book.apply_level_delta(0, 4400, 500 if i & 1 == 0 else -500)
                on_book(T, mono())
        dt = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    if kind == "deep":
        assert not any(acts), "a deep delta should decide no action"
    else:
        assert sum(1 for a in acts if a) >= frames // 2 - 1, "moving the top should move the quotes"
    return dt / frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    for kind in ("deep", "top"):
        res: dict[str, list[float]] = {"kmm": [], "python": []}
        for _ in range(args.repeat):            # alternate the variants round by round
            for name, compiled in (("kmm", True), ("python", False)):
                res[name].append(run(compiled, kind, args.frames))
        for name, xs in res.items():
            print(f"{kind:5s} {name:7s} Engine.on_book per frame: median {statistics.median(xs) / 1000:6.2f} us "
                  f"(min {min(xs) / 1000:.2f}, max {max(xs) / 1000:.2f}; {args.repeat} x {args.frames} frames)")


if __name__ == "__main__":
    main()
