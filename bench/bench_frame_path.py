"""Warm loop: the cost of one book frame in ``Engine.on_book`` (no I/O, no other work on the loop).

An engine with one market (no connection; requests are not sent: ``_act`` records the actions) holds
its two quotes, acked and resting. Each frame applies one level delta to the book and calls
``Engine.on_book`` the way the connector does:

* ``deep``: a delta below the top: the decision is "no action" (the usual frame);
* ``top``: the best bid alternates between 0.40 and 0.44: the quotes move (amend actions) and the marks run.

Variants: the compiled pipeline (``kmm``) and ``MarketPipeline(compiled=False)`` (``python``). The
script only uses APIs older engines have too, so ``PYTHONPATH=<other checkout>/src`` measures another
branch with the same loop (A/B). Prints ns per frame, the median of ``--repeat`` rounds.

From the frame's bytes (``--bytes``, the system clock): the same frames as delta messages handed to the
connector the way picows's listener does (``KalshiWs._feed``): ``python-ws`` and ``kmm-ws`` through
``KalshiWs.handle_frame`` (router, then ``Engine.on_book``), and ``entry`` through the compiled frame
entry (``kmm._core.entry.FrameEntry``: router and decision in one compiled call; ``_act`` entered only
with actions). Needs an engine with ``Engine.frame_entry``.

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


def build_ws(mode: str) -> tuple[Engine, Any, list[Any]]:
    """An engine behind a connector (no connection), fed bytes; the system clock. ``mode``:
    ``python-ws`` | ``kmm-ws`` | ``entry``."""
    from kmm.engine.clock import SystemClock
    from kmm.kalshi.ws import KalshiWs
    from kmm._core.wire import BookRouter
    import orjson
    cfg = load_config(None, environ={}, cli={"run.markets": T, "strategy.quote_size": "5",
                                            "strategy.max_position": "30"})
    clock = SystemClock()
    e = Engine(cfg, ConnectorConfig(env="sim"), clock=clock, options=EngineOptions(view="off"))
    e.opt.frame_entry = mode == "entry"
    grid = Grid("linear_cent")
    e.gate.add_market(T, grid, close_time_ns=None, fractional=False)
    e.freshness.add(T)
    orig = maker_mod.MarketPipeline
    maker_mod.MarketPipeline = functools.partial(MarketPipeline, compiled=mode != "python-ws")  # type: ignore[misc]
    try:
        e._add_pipeline(MarketInfo(T, grid, None))
    finally:
        maker_mod.MarketPipeline = orig  # type: ignore[misc]
    e.quoting = True
    acts: list[Any] = []

    def act(p: Any, actions: Any, live: Any, trigger_ns: int, *rest: Any, **kw: Any) -> None:
        acts.append(actions)
        p.decided_ns = kw.get("decided_ns") or clock.monotonic_ns()
        if kw.get("marks"):
            e._mark_top(p)
    e._act = act  # type: ignore[method-assign]
    ws = KalshiWs(ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                                  ws_url="ws://127.0.0.1:1/trade-api/ws/v2"), e, router=BookRouter(),
                  book_factory=OrderBook)
    assert (getattr(ws, "entry", None) is not None) is (mode == "entry")
    ws.add_markets({T: "linear_cent"})
    e.session.ws = ws
    ws.handle_frame(orjson.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {
        "market_ticker": T, "yes_dollars_fp": [["0.4000", "10.00"], ["0.3500", "50.00"]],
        "no_dollars_fp": [["0.5500", "12.00"], ["0.5000", "50.00"]]}}), clock.monotonic_ns())
    for i, a in enumerate(acts[-1]):
        o = e.om.create(T, "bid" if a.side == 0 else "ask", a.price, a.size)
        e.om.on_ack(OrderAck(f"o{i}", o.client_order_id, 0, a.size))
    if mode != "python-ws":
        e.pipes[T].core.own_sync(e.om.live_orders(T), clock.monotonic_ns())   # what the loop does soon after
    acts.clear()
    return e, ws, acts


def run_ws(mode: str, kind: str, frames: int) -> float:
    import orjson
    e, ws, acts = build_ws(mode)
    feed = ws._feed if mode == "entry" else ws.handle_frame
    price, sizes = ("0.3000", ("1.00", "-1.00")) if kind == "deep" else ("0.4400", ("5.00", "-5.00"))
    data = [orjson.dumps({"type": "orderbook_delta", "sid": 1, "seq": 2 + i, "msg": {
        "market_ticker": T, "price_dollars": price, "delta_fp": sizes[i & 1], "side": "yes", "ts_ms": 1}})
        for i in range(frames)]
    mono = time.monotonic_ns
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for d in data:
            feed(d, mono())
        dt = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    assert ws.stats.book_frames == frames + 1, ws.stats
    if kind == "deep":
        assert not any(acts), "a deep delta should decide no action"
    else:
        assert sum(1 for a in acts if a) >= frames // 2 - 1, "moving the top should move the quotes"
    if mode == "entry":
        assert ws.entry.handed == 0, "every delta should be decided in the compiled entry"
    return dt / frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--bytes", action="store_true", help="from the frame's bytes through the connector")
    args = ap.parse_args()
    if args.bytes:
        for kind in ("deep", "top"):
            res: dict[str, list[float]] = {"entry": [], "kmm-ws": [], "python-ws": []}
            for _ in range(args.repeat):
                for name in res:
                    res[name].append(run_ws(name, kind, args.frames))
            for name, xs in res.items():
                print(f"{kind:5s} {name:9s} frame bytes -> decided per frame: median {statistics.median(xs) / 1000:6.2f} us "
                      f"(min {min(xs) / 1000:.2f}, max {max(xs) / 1000:.2f}; {args.repeat} x {args.frames} frames)")
        return
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
