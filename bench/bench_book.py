"""Benchmarks of the compiled book, frame router and OFI against plain-Python baselines.

Run: ``.venv/bin/python -m pytest bench/bench_book.py``. Budgets (design section 9): apply_deltas
<= 50 ns per delta and >= 20x the reference; decode one orderbook_delta frame + apply <= 1.5 us.
Every benchmark asserts the state its last round produced.
"""

from __future__ import annotations

import json
import random

import numpy as np
import orjson
import pytest

from kmm._core.book import OrderBook
from kmm._core.ofi import OFI
from kmm._core.wire import DELTA, SNAPSHOT, BookRouter
from tests.reference.book import RefBook
from tests.reference.ofi import RefOFI

N = 10_000
rng = random.Random(7)
YES = [[f"{p / 100:.4f}", f"{rng.randint(1, 500)}.00"] for p in range(20, 50)]
NO = [[f"{p / 100:.4f}", f"{rng.randint(1, 500)}.00"] for p in range(20, 50)]  # YES asks 0.51..0.80


def s4(p: int) -> str:
    return f"{p / 10000:.4f}"


def s2(q: int) -> str:
    return f"{q / 100:.2f}"


def seeded(cls):
    book = cls()
    book.apply_snapshot(YES, NO)
    return book


def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N deltas that net to zero: N/2 adds over the whole grid, then their removals in reverse, so
    levels appear above and vanish at the best, and the book ends where it started."""
    adds = [(rng.randint(0, 1), rng.randint(1, 99) * 100, rng.randint(1, 2000)) for _ in range(N // 2)]
    rows = adds + [(s, p, -d) for s, p, d in reversed(adds)]
    return tuple(np.array(col, dtype=np.int64) for col in zip(*rows))


SIDES, PRICES, DELTAS = batch()
STRINGS = [(("yes", "no")[s], s4(p), s2(d)) for s, p, d in zip(SIDES.tolist(), PRICES.tolist(), DELTAS.tolist())]


def info(benchmark, group: str, role: str, ops: int, budget_ns: float | None = None) -> None:
    benchmark.group = group
    benchmark.extra_info.update({"role": role, "ops": ops})
    if budget_ns is not None and role == "kmm":
        benchmark.extra_info["budget_ns"] = budget_ns      # design section 9, per operation


# ---- apply_deltas: the batched integer path -------------------------------------------------

def test_apply_deltas_batch_kmm(benchmark):
    info(benchmark, "book apply_deltas (per delta)", "kmm", N, budget_ns=50)
    book = seeded(OrderBook)
    before = book.levels()
    assert benchmark(book.apply_deltas, SIDES, PRICES, DELTAS) == N
    assert book.levels() == before and book.version % N == 1


def test_apply_deltas_batch_reference(benchmark):
    info(benchmark, "book apply_deltas (per delta)", "baseline", N)
    book = seeded(RefBook)
    before = book.levels()
    sides, prices, deltas = SIDES.tolist(), PRICES.tolist(), DELTAS.tolist()
    benchmark.pedantic(book.apply_deltas, (sides, prices, deltas), rounds=5, iterations=1)
    assert book.levels() == before and book.version == 1 + 5 * N


# ---- apply_delta from wire strings ----------------------------------------------------------

def _string_loop(book):
    apply = book.apply_delta
    for side, price, amount in STRINGS:
        apply(side, price, amount)


def test_apply_delta_strings_kmm(benchmark):
    info(benchmark, "book apply_delta strings (per delta)", "kmm", N)
    book = seeded(OrderBook)
    before = book.levels()
    benchmark(_string_loop, book)
    assert book.levels() == before and book.version % N == 1


def test_apply_delta_strings_reference(benchmark):
    info(benchmark, "book apply_delta strings (per delta)", "baseline", N)
    book = seeded(RefBook)
    before = book.levels()
    benchmark.pedantic(_string_loop, (book,), rounds=5, iterations=1)
    assert book.levels() == before


# ---- router.feed: decode one orderbook_delta frame and apply it ----------------------------

SNAP_FRAME = json.dumps({"type": "orderbook_snapshot", "sid": 7, "seq": 1, "msg": {
    "market_ticker": "KXA-1", "market_id": "9b0f6d2c-3c1e-4a57-8f5e-2f1d7f0c9a11",
    "yes_dollars_fp": YES, "no_dollars_fp": NO}}, separators=(",", ":")).encode()
DELTA_FRAMES = [
    json.dumps({"type": "orderbook_delta", "sid": 7, "seq": 2 + i, "msg": {
        "market_ticker": "KXA-1", "market_id": "9b0f6d2c-3c1e-4a57-8f5e-2f1d7f0c9a11",
        "price_dollars": price, "delta_fp": amount, "side": side, "ts_ms": 1767225600123 + i}},
        separators=(",", ":")).encode()
    for i, (side, price, amount) in enumerate(STRINGS[:2000])]
DELTA_FRAMES += [  # undo them so every round ends on the snapshot's book
    json.dumps({"type": "orderbook_delta", "sid": 7, "seq": 2002 + i, "msg": {
        "market_ticker": "KXA-1", "market_id": "9b0f6d2c-3c1e-4a57-8f5e-2f1d7f0c9a11",
        "price_dollars": price, "delta_fp": s2(-int(round(float(amount) * 100))), "side": side,
        "ts_ms": 1767225600123}}, separators=(",", ":")).encode()
    for i, (side, price, amount) in enumerate(reversed(STRINGS[:2000]))]


def _router_round(router):
    feed = router.feed
    feed(SNAP_FRAME, 0)
    ok = 0
    for frame in DELTA_FRAMES:
        ok += feed(frame, 0) == DELTA
    return ok


def test_router_feed_delta_kmm(benchmark):
    info(benchmark, "router.feed delta frame (per frame)", "kmm", len(DELTA_FRAMES), budget_ns=1500)
    router = BookRouter()
    router.add("KXA-1", OrderBook())
    assert router.feed(SNAP_FRAME) == SNAPSHOT
    before = router.book("KXA-1").levels()
    assert benchmark(_router_round, router) == len(DELTA_FRAMES)
    assert router.book("KXA-1").levels() == before and router.stale_tickers() == []


class DictRouter:
    """Baseline: orjson.loads into dicts, seq check, dict-of-levels book."""

    def __init__(self):
        self.seq = {}
        self.books = {"KXA-1": ({}, {})}

    def feed(self, frame, recv_ns=0):
        obj = orjson.loads(frame)
        typ = obj.get("type")
        msg = obj["msg"]
        book = self.books[msg["market_ticker"]]
        if typ == "orderbook_snapshot":
            self.seq[obj["sid"]] = obj["seq"]
            for side, key in zip(book, ("yes_dollars_fp", "no_dollars_fp")):
                side.clear()
                side.update((round(float(p) * 10000), round(float(q) * 100)) for p, q in msg.get(key, ()))
            return SNAPSHOT
        if obj["seq"] != self.seq[obj["sid"]] + 1:
            raise AssertionError("gap")
        self.seq[obj["sid"]] = obj["seq"]
        side = book[msg["side"] == "no"]
        price = round(float(msg["price_dollars"]) * 10000)
        size = side.get(price, 0) + round(float(msg["delta_fp"]) * 100)
        if size < 0:
            raise AssertionError("desync")
        if size:
            side[price] = size
        else:
            side.pop(price, None)
        return DELTA


def test_router_feed_delta_orjson_baseline(benchmark):
    info(benchmark, "router.feed delta frame (per frame)", "baseline", len(DELTA_FRAMES))
    router = DictRouter()
    assert benchmark(_router_round, router) == len(DELTA_FRAMES)
    assert sorted(router.books["KXA-1"][0].items()) == [(round(float(p) * 10000), round(float(q) * 100))
                                                          for p, q in YES]


# ---- snapshots -------------------------------------------------------------------------------

@pytest.mark.parametrize("role,cls", [("kmm", OrderBook), ("baseline", RefBook)])
def test_apply_snapshot(benchmark, role, cls):
    info(benchmark, "book apply_snapshot 30+30 levels", role, 1)
    book = cls()
    benchmark(book.apply_snapshot, YES, NO)
    assert book.best_bid() == 4900 and book.best_ask() == 5100 and len(book.bids()) == 30


def test_router_feed_snapshot_kmm(benchmark):
    info(benchmark, "router.feed snapshot frame 30+30 levels", "kmm", 1)
    router = BookRouter()
    router.add("KXA-1", OrderBook())
    assert benchmark(router.feed, SNAP_FRAME, 0) == SNAPSHOT
    assert router.book("KXA-1").best_bid() == 4900


def test_router_feed_snapshot_orjson_baseline(benchmark):
    info(benchmark, "router.feed snapshot frame 30+30 levels", "baseline", 1)
    router = DictRouter()
    assert benchmark(router.feed, SNAP_FRAME) == SNAPSHOT
    assert max(router.books["KXA-1"][0]) == 4900


# ---- queries ---------------------------------------------------------------------------------

def _queries(book):
    return book.best_bid(), book.best_ask(), book.mid(), book.microprice()


@pytest.mark.parametrize("role,cls", [("kmm", OrderBook), ("baseline", RefBook)])
def test_top_of_book_queries(benchmark, role, cls):
    info(benchmark, "book best_bid+best_ask+mid+microprice (per query)", role, 4)
    book = seeded(cls)
    bid, ask, mid, micro = benchmark(_queries, book)
    assert (bid, ask, mid) == (4900, 5100, 5000.0) and bid < micro < ask


@pytest.mark.parametrize("role,cls", [("kmm", OrderBook), ("baseline", RefBook)])
def test_buy_vwap(benchmark, role, cls):
    info(benchmark, "book buy_vwap across ~10 levels", role, 1)
    book = seeded(cls)
    size = sum(s for _, s in book.asks(10))
    vwap = benchmark(book.buy_vwap, size)
    assert 5100 < vwap < 6000


# ---- OFI -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role,cls,book_cls", [("kmm", OFI, OrderBook), ("baseline", RefOFI, RefBook)])
def test_ofi_update(benchmark, role, cls, book_cls):
    info(benchmark, "ofi update, 5 levels", role, 1)
    book = seeded(book_cls)
    ofi = cls(window_ns=10**9, half_life_ns=10**9, levels=5, capacity=4096)
    clock = iter(range(0, 10**18, 10**6))
    benchmark(lambda: ofi.update(book, next(clock)))
    assert ofi.events > 1 and ofi.window_sum == 0 and ofi.count == min(ofi.events, 1000)
    assert ofi.avg_depth > 0 and ofi.overflowed == 0


# ---- a $0.0001 grid (10,001 slots) costs what a cent grid costs per delta -------------------
# Group "... $0.0001 vs cent grid": role "kmm" is the centi-cent book, role "baseline" the cent book
# fed the same shape of batch, so the report's ratio is cent cost / centi-cent cost (about 1).

CENTI = "center_centi_edge_centi_cent"


def _grid_batch(step: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = random.Random(seed)
    adds = [(r.randint(0, 1), r.randint(1, 10000 // step - 1) * step, r.randint(1, 2000)) for _ in range(N // 2)]
    rows = adds + [(s, p, -d) for s, p, d in reversed(adds)]
    return tuple(np.array(col, dtype=np.int64) for col in zip(*rows))


@pytest.mark.parametrize("role,structure,step", [("kmm", CENTI, 1), ("baseline", "linear_cent", 100)])
def test_apply_deltas_centi_cent_grid_vs_cent_grid(benchmark, role, structure, step):
    info(benchmark, "book apply_deltas $0.0001 vs cent grid (per delta)", role, N, budget_ns=50)
    book = OrderBook(structure)
    book.apply_snapshot(YES, NO)
    sides, prices, deltas = _grid_batch(step, 11)
    before = book.levels()
    assert benchmark(book.apply_deltas, sides, prices, deltas) == N
    assert book.levels() == before and book.grid.n_slots == 10000 // step + 1


def _grid_frames(step: int) -> list[bytes]:
    r = random.Random(13)
    rows = [(r.choice(("yes", "no")), r.randint(1, 10000 // step - 1) * step, r.randint(1, 2000)) for _ in range(2000)]
    rows += [(s, p, -d) for s, p, d in reversed(rows)]
    return [json.dumps({"type": "orderbook_delta", "sid": 7, "seq": 2 + i, "msg": {
        "market_ticker": "KXA-1", "market_id": "9b0f6d2c-3c1e-4a57-8f5e-2f1d7f0c9a11",
        "price_dollars": s4(p), "delta_fp": s2(d), "side": side, "ts_ms": 1767225600123 + i}},
        separators=(",", ":")).encode() for i, (side, p, d) in enumerate(rows)]


@pytest.mark.parametrize("role,structure,step", [("kmm", CENTI, 1), ("baseline", "linear_cent", 100)])
def test_router_feed_centi_cent_grid_vs_cent_grid(benchmark, role, structure, step):
    info(benchmark, "router.feed delta $0.0001 vs cent grid (per frame)", role, 4000, budget_ns=1500)
    frames = _grid_frames(step)
    router = BookRouter()
    router.add("KXA-1", OrderBook(structure))

    def round_():
        feed = router.feed
        feed(SNAP_FRAME, 0)
        return sum(feed(f, 0) == DELTA for f in frames)

    assert benchmark(round_) == len(frames)
    assert router.book("KXA-1").best_bid() == 4900 and router.stale_tickers() == []
