"""One market's decision per book frame, in one process, no I/O: the compiled pipeline against the
Python path it replaces (and a Python strategy on the compiled signals, the "slower path").

A seeded busy stream (deltas near the touch, our own two quotes resting at the best prices, the
inventory moving, time advancing 0.2-3 ms per frame) is replayed through:

* kmm: ``MarketPipeline.frame`` on the compiled core (one crossing per frame: ex-own best prices,
  volatility, OFI, Avellaneda-Stoikov, diff);
* baseline: ``MarketPipeline(compiled=False)``: ``on_book`` + ``decide`` in Python around the compiled
  book, quote and differ (what kmm ran before);
* python strategy: a user's Python strategy class on the compiled signals and differ;
* own table: the compiled pipeline holding our orders itself (``own_set``/``own_remove`` outside the
  timing, where the order manager's transitions would call them) and ``frame_own``.

Each run asserts that the three decided the same actions on every frame.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.ofi import OFI
from kmm.config import StrategyParams
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.engine.orders import LiveOrder
from kmm.strategy.alpha import AlphaSource
from kmm.strategy.stoikov import StoikovStrategy

N = 20_000
WALL0 = 1_800_000_000 * 10**9
GROUP = "pipeline: book frame -> actions decided (one market, no I/O)"


class UserStoikov(StoikovStrategy):
    """The same quotes from a Python subclass: takes the Python-strategy path."""


def _stream(seed: int = 7) -> tuple[Any, list[tuple[int, list[tuple[int, int, int]], int, list[LiveOrder]]]]:
    rng = random.Random(seed)
    yes = {p: rng.randint(1, 50) * 100 for p in range(3500, 4500, 100)}
    no = {p: rng.randint(1, 50) * 100 for p in range(4500, 5500, 100)}
    first = ([[f"0.{p:04d}", f"{s / 100:.2f}"] for p, s in yes.items()],
             [[f"0.{p:04d}", f"{s / 100:.2f}"] for p, s in no.items()])
    frames = []
    t = 0
    for i in range(N):
        t += rng.randint(200_000, 3_000_000)
        deltas = []
        for _ in range(rng.randint(1, 3)):
            side = rng.randint(0, 1)
            book = yes if side == 0 else no
            p = rng.choice(list(book)) if book and rng.random() < 0.6 else rng.choice(range(3500, 4500, 100)) + side * 1000
            if side == 0 and p >= 10000 - max(no, default=1000) or side == 1 and p >= 10000 - max(yes, default=1000):
                continue                                       # keep the book uncrossed
            d = rng.randint(-book.get(p, 0), 3000)
            if d:
                book[p] = book.get(p, 0) + d
                if book[p] == 0:
                    del book[p]
                deltas.append((side, p, d))
        bb = max(yes) if yes else 100
        ba = 10000 - max(no) if no else 9900
        live = [LiveOrder("o1", "bid", min(bb, 9899), 500, 10**9, "c1", True),
                LiveOrder("o2", "ask", max(ba, bb + 100), 500, 10**9, "c2", True)] if i % 5 else []
        frames.append((t, deltas, rng.randint(-1500, 1500) // 100 * 100, live))
    return first, frames


FIRST, STREAM = _stream()


def _pipe(kind: str) -> tuple[MarketPipeline, OrderBook]:
    grid = Grid()
    params = StrategyParams(quote_size=500, max_position=5000, ofi_weight=0.001)
    cls = UserStoikov if kind == "python_strategy" else StoikovStrategy
    strat = cls(grid, gamma=params.gamma, kappa=params.kappa, quote_size=params.quote_size,
                max_position=params.max_position, min_spread=100)
    book = OrderBook()
    book.apply_snapshot(*FIRST)
    pipe = MarketPipeline(MarketInfo("T", grid, None), book, strat, params, AlphaSource(),
                          OFI(window_ns=10 * 10**9, half_life_ns=5 * 10**9), compiled=kind != "baseline")
    return pipe, book


def _replay(kind: str) -> tuple[list[Any], float]:
    """Apply every frame's deltas, then time the decision only (perf_counter_ns per frame)."""
    import time
    pipe, book = _pipe(kind)
    out: list[Any] = []
    spent = []
    clock = time.perf_counter_ns
    if kind == "own_table":
        core = pipe.core
        held: dict[str, Any] = {}
        for t, deltas, inv, live in STREAM:
            for side, p, d in deltas:
                book.apply_level_delta(side, p, d)
            now = {o.client_order_id: o for o in live}
            for coid in [c for c in held if c not in now]:      # the order manager's transitions
                core.own_remove(coid)
                del held[coid]
            for coid, o in now.items():
                if held.get(coid) != o:
                    core.own_set(coid, 0 if o.side == "bid" else 1, o.price, o.remaining, t - o.age_ns,
                                 o.order_id is not None)
                    held[coid] = o
            t0 = clock()
            acts = core.frame_own(t, WALL0 + t, inv, 0.0)
            spent.append(clock() - t0)
            out.append(acts)
    elif kind == "kmm":
        for t, deltas, inv, live in STREAM:
            for side, p, d in deltas:
                book.apply_level_delta(side, p, d)
            t0 = clock()
            acts = pipe.frame(t, WALL0 + t, inv, live)
            spent.append(clock() - t0)
            out.append(acts)
    else:
        for t, deltas, inv, live in STREAM:
            for side, p, d in deltas:
                book.apply_level_delta(side, p, d)
            t0 = clock()
            pipe.on_book(t, WALL0 + t, live)
            acts = pipe.decide(inv, live)
            spent.append(clock() - t0)
            out.append(acts)
    spent.sort()
    return [[a.astuple() for a in acts] for acts in out], spent


_DECISIONS: dict[str, list[Any]] = {}
ROLES = {"kmm": ("kmm", "compiled pipeline, one call"), "baseline": ("baseline", "Python path"),
         "python_strategy": ("kmm", "Python strategy on compiled signals"),
         "own_table": ("kmm", "compiled pipeline, own orders held in it (frame_own)")}


@pytest.mark.parametrize("kind", list(ROLES))
def test_pipeline_frame_to_decision(benchmark, kind):
    res: dict[str, Any] = {}

    def run() -> None:
        res["d"], res["t"] = _replay(kind)

    benchmark.group = GROUP            # before the run: pytest-benchmark records it then
    benchmark.pedantic(run, rounds=3, iterations=1)
    decisions, spent = res["d"], res["t"]
    assert sum(1 for d in decisions if d) > N // 10, "the stream must make the pipeline act"
    _DECISIONS[kind] = decisions
    if len(_DECISIONS) == len(ROLES):
        assert (_DECISIONS["kmm"] == _DECISIONS["baseline"] == _DECISIONS["python_strategy"]
                == _DECISIONS["own_table"]), "the compiled pipeline must decide like the Python path"
    p50, p99 = spent[len(spent) // 2], spent[int(len(spent) * 0.99)]
    role, label = ROLES[kind]
    benchmark.group = GROUP
    benchmark.extra_info.update(role=role, ops=N, label=label if role == "kmm" else None, p50_ns=p50, p99_ns=p99,
                                p999_ns=spent[int(len(spent) * 0.999)])
    print(f"\n{label}: p50 {p50} ns, p99 {p99} ns per frame ({N} frames)")
