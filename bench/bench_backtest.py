"""Replay speed of ``kmm backtest`` (design section 9: >= 200,000 book messages/s with quoting on,
>= 2,000,000/s for the book alone), each against a baseline measured in the same run.

The capture: ``kmm record`` of the embedded exchange's three default markets with busy synthetic flow
at 4x speed for 8 s (recorded once per session, in-process; about half its frames are trades and
tickers). Groups (ns per book message; the report prints the ratio baseline / kmm):

- ``backtest book only, from the capture``: the raw capture (decompress, CRC, frame scan) through the
  compiled ``BookRouter``; baseline: the same frames through the plain-Python reference router.
- ``backtest book only, decoded events``: the capture decoded once into integer runs
  (``kmm.research.events.BookEvents``, like hftbacktest's event files) applied with
  ``OrderBook.apply_deltas``; baseline: the same runs through the plain-Python reference book.
- ``backtest with quoting``: the whole replay (engine pipeline, strategy, differ, risk gate, order
  manager, portfolio, fill simulator, latency and rate-limit model; no records); baseline: the same
  replay with the market pipelines' plain-Python signals and strategy and the reference OFI
  (``Backtest(python_pipeline=True)``; the compiled pipeline takes compiled books only, so the router
  and book stay compiled); it must make the same decisions and fills. The speed-up over real time
  is printed and stored in ``extra_info``.

Run: ``PYTHONPATH=src python -m pytest bench/bench_backtest.py``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kmm._core.book import OrderBook
from kmm._core.wire import BookRouter
from kmm.config import load_config
from kmm.record.capture import read_market_defs
from kmm.research.backtest import Backtest, BacktestOptions
from kmm.research.events import BookEvents, load_captures
from tests.reference.book import RefBook
from tests.reference.ofi import RefOFI
from tests.reference.wire import DELTA as REF_DELTA
from tests.reference.wire import SNAPSHOT as REF_SNAPSHOT
from tests.reference.wire import RefRouter

RECORD_S = 8.0


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    import argparse

    from kmm.research.record import record
    out = tmp_path_factory.mktemp("bench-capture")
    cfg = load_config(None, environ={}, cli={"sim.flow": "busy", "sim.speed": "4", "sim.rate_tier": "off"})
    args = argparse.Namespace(rest_url=None, ws_url=None, api_key_id=None, private_key=None, env=None)
    res = asyncio.run(record(cfg, args, False, out, duration_s=RECORD_S, rotate_bytes=0, rotate_s=0))
    assert res["frames"] > 1000 and res["gaps"] == 0
    return out


def info(benchmark, group: str, role: str, ops: int, **extra) -> None:
    benchmark.group = group
    benchmark.extra_info.update({"role": role, "ops": ops, **extra})


def _cfg():
    return load_config(None, environ={}, cli={})


def _book_only(capture: Path) -> dict:
    logging.disable(logging.WARNING)
    try:
        return Backtest([capture], _cfg(), None, options=BacktestOptions(book_only=True)).run()
    finally:
        logging.disable(logging.NOTSET)


def _quoting(capture: Path) -> dict:
    logging.disable(logging.WARNING)
    try:
        return Backtest([capture], _cfg(), None, seed=1).run()
    finally:
        logging.disable(logging.NOTSET)


def test_book_only_from_capture_kmm(benchmark, capture):
    s = _book_only(capture)
    info(benchmark, "backtest book only, from the capture (per book message)", "kmm", s["book_messages"])
    got = benchmark.pedantic(_book_only, (capture,), rounds=5, iterations=1)
    assert got["book_messages"] == s["book_messages"] > 1000
    benchmark.extra_info["messages_per_s"] = got["messages_per_s"]


def test_book_only_from_capture_reference(benchmark, capture):
    frames = load_captures([capture])
    defs = read_market_defs(capture)
    n_kmm = _book_only(capture)["book_messages"]

    def run() -> int:
        r = RefRouter()
        for t, d in defs.items():
            r.add(t, RefBook(d["price_ranges"]))
        n = 0
        for recv, _, f in load_captures([capture]):
            st = r.feed(f, recv)
            if st == REF_DELTA or st == REF_SNAPSHOT:
                n += 1
        return n
    info(benchmark, "backtest book only, from the capture (per book message)", "baseline", n_kmm)
    assert benchmark.pedantic(run, rounds=3, iterations=1) == n_kmm and len(frames) > n_kmm


def _events(capture: Path) -> BookEvents:
    defs = {t: d["price_ranges"] for t, d in read_market_defs(capture).items()}
    return BookEvents.decode(load_captures([capture]), defs)


def test_book_only_decoded_events_kmm(benchmark, capture):
    ev = _events(capture)
    info(benchmark, "backtest book only, decoded events (per book message)", "kmm", ev.messages, budget_ns=500)
    books, n = benchmark(ev.replay)
    assert n == ev.messages == _book_only(capture)["book_messages"]
    # the same books as the router built from the raw frames
    b = Backtest([capture], _cfg(), None, options=BacktestOptions(book_only=True))
    b.run()
    assert all(books[t].levels() == b.books[t].levels() for t in books)


def test_book_only_decoded_events_reference(benchmark, capture):
    ev = _events(capture)
    plain = [(op[0], op[1], op[2].tolist(), op[3].tolist(), op[4].tolist()) if op[0] == 1 else op for op in ev.ops]

    def run() -> int:
        books = [RefBook(ev.grids[t].ranges and [
            {"start": f"{a / 1e4:.4f}", "end": f"{b / 1e4:.4f}", "step": f"{s / 1e4:.4f}"}
            for a, b, s in ev.grids[t].ranges]) for t in ev.tickers]
        ready = [False] * len(books)
        n = 0
        for op in plain:
            if op[0] == 1:
                if ready[op[1]]:
                    n += books[op[1]].apply_deltas(op[2], op[3], op[4])
            elif op[0] == 0:
                books[op[1]].apply_snapshot(op[2], op[3])
                ready[op[1]] = True
                n += 1
            else:
                ready = [False] * len(books)
        return n
    info(benchmark, "backtest book only, decoded events (per book message)", "baseline", ev.messages)
    assert benchmark.pedantic(run, rounds=5, iterations=1) == ev.messages


def test_backtest_with_quoting_kmm(benchmark, capture):
    s = _quoting(capture)
    info(benchmark, "backtest with quoting (per book message)", "kmm", s["book_messages"], budget_ns=5_000)
    got = benchmark.pedantic(_quoting, (capture,), rounds=5, iterations=1)
    d = got["details"]
    assert got["book_messages"] == s["book_messages"] and got["orders_sent"] > 0 and d["decisions"] > 0
    assert got["fills"] == s["fills"]                  # deterministic: every round the same replay
    benchmark.extra_info["messages_per_s"] = got["messages_per_s"]
    benchmark.extra_info["speedup_vs_real_time"] = d["speedup_vs_real_time"]
    print(f"\nbacktest with quoting: {got['messages_per_s']:,.0f} book messages/s, "
          f"{d['speedup_vs_real_time']}x real time ({d['replayed_span_s']} s replayed in {d['elapsed_s']} s)")


def _quoting_reference(capture: Path) -> dict:
    # the compiled pipeline takes compiled books only: the baseline runs the plain-Python signals,
    # strategy and OFI on the compiled router and book (the book alone has its own baseline above)
    logging.disable(logging.WARNING)
    try:
        return Backtest([capture], _cfg(), None, seed=1, python_pipeline=True,
                        core=(BookRouter, OrderBook, lambda: RefOFI(window_ns=10 * 10**9, half_life_ns=5 * 10**9))
                        ).run()
    finally:
        logging.disable(logging.NOTSET)


def test_backtest_with_quoting_reference_core(benchmark, capture):
    s = _quoting(capture)
    info(benchmark, "backtest with quoting (per book message)", "baseline", s["book_messages"])
    got = benchmark.pedantic(_quoting_reference, (capture,), rounds=3, iterations=1)
    # the plain-Python core makes the very same decisions and fills
    assert got["book_messages"] == s["book_messages"] and got["fills"] == s["fills"]
    assert got["orders_sent"] == s["orders_sent"] and got["net_pnl"] == s["net_pnl"]
