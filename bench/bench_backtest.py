"""Replay speed of ``kmm backtest`` (design section 9: >= 200,000 book messages/s with quoting on,
>= 2,000,000/s for the book alone), each against a baseline measured in the same run.

The capture: ``kmm record`` of the embedded exchange's three default markets with busy synthetic flow
at 4x speed for 20 s (recorded once per session, in-process; about half its frames are trades and
tickers). Groups (ns per book message; the report prints the ratio baseline / kmm; p99 is over the
rounds, each round one whole replay):

- ``backtest with quoting``: the whole replay (engine pipeline, strategy, differ, risk gate, order
  manager, portfolio, fill simulator, latency and rate-limit model; no records), each round a new
  ``Backtest`` that reads the decoded capture cache from disk (``kmm.research.replaycache``: the
  replays after the first); baseline: the reference path (``Backtest(fast=False)``: the raw capture,
  decompressed and split each time, every frame through the byte tests and JSON); both must make the
  same fills, orders and P&L. Messages/s and the multiple of real time (capture span / replay wall
  time, construction and cache read included) are printed and stored in ``extra_info``. The kmm side
  runs the compiled replay loop (``kmm._core.replay.ReplayLoop``).
- ``backtest with quoting, compiled loop vs Python fast loop``: the same replay from the cache through
  the compiled loop against the same loop in Python (``Backtest(compiled_loop=False)``, the previous
  fast path); the same fills, orders and P&L.
- ``backtest with quoting, compiled vs plain-Python pipeline``: the reference path with the compiled
  pipeline against the same with the market pipelines' plain-Python signals, strategy and OFI
  (``Backtest(python_pipeline=True)``); the same decisions and fills.
- ``backtest capture first decode``: decoding a capture file into the cache (gzip, record split,
  classification, the cache file written); baseline: what the reference path pays on every replay
  (``load_frames``). ``backtest capture from the cache``: reading the cache file back.
- ``backtest book only, from the decoded cache``: ``Backtest(book_only=True)`` over the cached raw book
  frames (the compiled ``BookRouter``); baseline: the same from the raw capture (reference path).
- ``backtest book only, from the capture``: the raw capture (decompress, CRC, frame scan) through the
  compiled ``BookRouter``; baseline: the same frames through the plain-Python reference router.
- ``backtest book only, decoded events``: the capture decoded once into integer runs
  (``kmm.research.events.BookEvents``, like hftbacktest's event files) applied with
  ``OrderBook.apply_deltas``; baseline: the same runs through the plain-Python reference book.

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
from kmm.research import replaycache
from kmm.research.backtest import Backtest, BacktestOptions, _fast_trade
from kmm.research.events import BookEvents, load_captures, load_frames
from tests.reference.book import RefBook
from tests.reference.ofi import RefOFI
from tests.reference.wire import DELTA as REF_DELTA
from tests.reference.wire import SNAPSHOT as REF_SNAPSHOT
from tests.reference.wire import RefRouter

RECORD_S = 20.0


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


def _book_only(capture: Path, fast: bool = False) -> dict:
    logging.disable(logging.WARNING)
    try:
        return Backtest([capture], _cfg(), None, options=BacktestOptions(book_only=True), fast=fast).run()
    finally:
        logging.disable(logging.NOTSET)


def _quoting(capture: Path, fast: bool = True, compiled: bool = True) -> dict:
    logging.disable(logging.WARNING)
    try:
        return Backtest([capture], _cfg(), None, seed=1, fast=fast, compiled_loop=compiled).run()
    finally:
        logging.disable(logging.NOTSET)


def _file(capture: Path) -> Path:
    return capture / "capture.bin.gz"


def test_capture_first_decode_kmm(benchmark, capture, tmp_path):
    n = _book_only(capture)["book_messages"]
    dirs = iter(range(100))

    def decode() -> replaycache.Replay:      # a new cache directory each round: a first decode
        return replaycache.load(_file(capture), _fast_trade, str(tmp_path / f"c{next(dirs)}"))
    info(benchmark, "backtest capture first decode (per book message)", "kmm", n)
    got = benchmark.pedantic(decode, rounds=3, iterations=1)
    assert not got.from_cache and len(got) == len(load_frames(_file(capture)))
    benchmark.extra_info["decode_s"] = got.decode_s


def test_capture_first_decode_reference(benchmark, capture):
    n = _book_only(capture)["book_messages"]
    info(benchmark, "backtest capture first decode (per book message)", "baseline", n)
    assert len(benchmark.pedantic(load_frames, (_file(capture),), rounds=3, iterations=1)) > n


def test_capture_from_the_cache_kmm(benchmark, capture):
    n = _book_only(capture)["book_messages"]
    replaycache.load(_file(capture), _fast_trade)        # written beside the capture (if not yet)
    info(benchmark, "backtest capture from the cache (per book message)", "kmm", n)
    def read() -> replaycache.Replay:      # from the file each round, not the copy kept in the process
        replaycache.forget()
        return replaycache.load(_file(capture), _fast_trade)
    got = benchmark.pedantic(read, rounds=5, iterations=1)
    assert got.from_cache and len(got) == len(load_frames(_file(capture)))


def test_capture_from_the_cache_reference(benchmark, capture):
    n = _book_only(capture)["book_messages"]
    info(benchmark, "backtest capture from the cache (per book message)", "baseline", n)
    assert len(benchmark.pedantic(load_frames, (_file(capture),), rounds=3, iterations=1)) > n


def test_book_only_from_the_cache_kmm(benchmark, capture):
    s = _book_only(capture, fast=True)
    info(benchmark, "backtest book only, from the decoded cache (per book message)", "kmm", s["book_messages"])
    got = benchmark.pedantic(_book_only, (capture, True), rounds=5, iterations=1)
    assert got["book_messages"] == s["book_messages"] == _book_only(capture)["book_messages"] > 1000
    benchmark.extra_info["messages_per_s"] = got["messages_per_s"]
    print(f"\nbook only from the decoded cache: {got['messages_per_s']:,.0f} book messages/s")


def test_book_only_from_the_cache_reference(benchmark, capture):
    s = _book_only(capture)
    info(benchmark, "backtest book only, from the decoded cache (per book message)", "baseline", s["book_messages"])
    got = benchmark.pedantic(_book_only, (capture,), rounds=3, iterations=1)
    assert got["book_messages"] == s["book_messages"]


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


QUOTING = "backtest with quoting (per book message)"
LOOPS = "backtest with quoting, compiled loop vs Python fast loop (per book message)"
PIPELINES = "backtest with quoting, compiled vs plain-Python pipeline (per book message)"


def _same_replay(a: dict, b: dict) -> None:
    assert a["book_messages"] == b["book_messages"] and a["fills"] == b["fills"]
    assert a["orders_sent"] == b["orders_sent"] and a["net_pnl"] == b["net_pnl"] and a["fees"] == b["fees"]
    assert a["details"]["decisions"] == b["details"]["decisions"]


def test_backtest_with_quoting_kmm(benchmark, capture):
    s = _quoting(capture)                   # the first replay decodes and writes the cache
    assert s["details"]["replay_path"] == "compiled"
    info(benchmark, QUOTING, "kmm", s["book_messages"], budget_ns=5_000)
    got = benchmark.pedantic(_quoting, (capture,), rounds=7, iterations=1)
    d = got["details"]
    assert got["book_messages"] == s["book_messages"] and got["orders_sent"] > 0 and d["decisions"] > 0
    _same_replay(got, s)                    # deterministic: every round the same replay
    _same_replay(got, _quoting(capture, fast=False))    # and the reference path's
    _same_replay(got, _quoting(capture, compiled=False))    # and the Python fast loop's
    _rates(benchmark, got, "backtest with quoting (compiled loop)")


def _rates(benchmark, got: dict, what: str) -> None:
    """Messages/s at the median and the slowest round, and the multiple of real time, printed and kept."""
    times = sorted(benchmark.stats.stats.data)
    span = got["details"]["replayed_span_s"]
    benchmark.extra_info.update({
        "messages_per_s": got["book_messages"] / times[len(times) // 2],
        "messages_per_s_p99": got["book_messages"] / times[-1],
        "speedup_vs_real_time": span / times[len(times) // 2], "replayed_span_s": span})
    print(f"\n{what}: {benchmark.extra_info['messages_per_s']:,.0f} book messages/s "
          f"median ({benchmark.extra_info['messages_per_s_p99']:,.0f} at the slowest round), "
          f"{benchmark.extra_info['speedup_vs_real_time']:.0f}x real time ({span} s replayed)")


def test_backtest_with_quoting_compiled_loop(benchmark, capture):
    s = _quoting(capture)
    info(benchmark, LOOPS, "kmm", s["book_messages"])
    got = benchmark.pedantic(_quoting, (capture,), rounds=7, iterations=1)
    _same_replay(got, s)
    _rates(benchmark, got, "backtest with quoting (compiled loop, paired with the Python fast loop)")


def test_backtest_with_quoting_python_fast_loop(benchmark, capture):
    s = _quoting(capture, compiled=False)
    assert s["details"]["replay_path"] == "fast"
    info(benchmark, LOOPS, "baseline", s["book_messages"])
    got = benchmark.pedantic(_quoting, (capture, True, False), rounds=7, iterations=1)
    _same_replay(got, s)
    _rates(benchmark, got, "backtest with quoting (Python fast loop)")


def test_backtest_with_quoting_reference_path(benchmark, capture):
    s = _quoting(capture, fast=False)
    info(benchmark, QUOTING, "baseline", s["book_messages"])
    got = benchmark.pedantic(_quoting, (capture, False), rounds=5, iterations=1)
    _same_replay(got, s)
    times = sorted(benchmark.stats.stats.data)
    benchmark.extra_info.update({"messages_per_s": got["book_messages"] / times[len(times) // 2],
                                 "speedup_vs_real_time": got["details"]["replayed_span_s"] / times[len(times) // 2]})
    print(f"\nbacktest with quoting (reference path): {benchmark.extra_info['messages_per_s']:,.0f} book "
          f"messages/s median, {benchmark.extra_info['speedup_vs_real_time']:.0f}x real time")


def test_backtest_with_quoting_compiled_pipeline(benchmark, capture):
    s = _quoting(capture, fast=False)
    info(benchmark, PIPELINES, "kmm", s["book_messages"])
    _same_replay(benchmark.pedantic(_quoting, (capture, False), rounds=3, iterations=1), s)


def _quoting_reference(capture: Path) -> dict:
    # the compiled pipeline takes compiled books only: the baseline runs the plain-Python signals,
    # strategy and OFI on the compiled router and book (the book alone has its own baseline above)
    logging.disable(logging.WARNING)
    try:
        return Backtest([capture], _cfg(), None, seed=1, python_pipeline=True, fast=False,
                        core=(BookRouter, OrderBook, lambda: RefOFI(window_ns=10 * 10**9, half_life_ns=5 * 10**9))
                        ).run()
    finally:
        logging.disable(logging.NOTSET)


def test_backtest_with_quoting_reference_core(benchmark, capture):
    s = _quoting(capture, fast=False)
    info(benchmark, PIPELINES, "baseline", s["book_messages"])
    got = benchmark.pedantic(_quoting_reference, (capture,), rounds=3, iterations=1)
    # the plain-Python core makes the very same decisions and fills
    _same_replay(got, s)


# ---------------------------------------------------------------------------------- a kmm run capture
RUN_GROUP = "backtest with quoting, kmm run capture (per book message)"


@pytest.fixture(scope="module")
def run_capture(tmp_path_factory):
    """A recorded ``kmm run`` (its own orders, fills, and so the fitted pick-off model) named by
    ``KMM_BENCH_RUN`` (a run directory; copied, so the cache files are written in the copy). Its
    groups: the compiled loop against the reference path, and against the Python fast loop."""
    import os
    import shutil
    src = os.environ.get("KMM_BENCH_RUN")
    if not src:
        pytest.skip("KMM_BENCH_RUN (a kmm run directory) not set")
    out = tmp_path_factory.mktemp("bench-run") / "run"
    out.mkdir()
    for name in ("capture.bin.gz", "markets.json"):
        shutil.copy(Path(src) / name, out / name)
    return out


def _quoting_b(capture: Path, fast: bool = True, compiled: bool = True) -> tuple[Backtest, dict]:
    logging.disable(logging.WARNING)
    try:
        b = Backtest([capture], _cfg(), None, seed=1, fast=fast, compiled_loop=compiled)
        return b, b.run()
    finally:
        logging.disable(logging.NOTSET)


def test_run_capture_first_replay_kmm(benchmark, run_capture):
    """The first fast replay of a capture: decoding it into the cache and the pick-off model's fitting
    pass (kept in the cache) included. Its own group: paid once per capture."""
    n = _quoting(run_capture, fast=False)["book_messages"]
    info(benchmark, "backtest kmm run capture, first replay (decode + fit, per book message)", "kmm", n)
    rounds = iter(range(100))

    def first() -> tuple[Backtest, dict]:
        for p in run_capture.glob("*" + replaycache.SUFFIX):
            p.unlink()
        next(rounds)
        return _quoting_b(run_capture)
    b, s = benchmark.pedantic(first, rounds=3, iterations=1)
    assert not b.pickoff_cached and b.cache_hits == 0 and b.pickoff_fit_s > 0
    benchmark.extra_info.update({"pickoff_fit_s": b.pickoff_fit_s, "decode_s": b.decode_s})
    print(f"\nkmm run capture, first replay: pick-off fit {b.pickoff_fit_s * 1e3:.1f} ms, "
          f"decode {b.decode_s * 1e3:.1f} ms")


def test_run_capture_kmm(benchmark, run_capture):
    s0 = _quoting(run_capture)              # decodes, fits and keeps both in the cache
    info(benchmark, RUN_GROUP, "kmm", s0["book_messages"])
    b, got = benchmark.pedantic(_quoting_b, (run_capture,), rounds=7, iterations=1)
    assert b.pickoff_cached and b.cache_hits == 1 and got["details"]["pickoff_model"].startswith("fitted")
    _same_replay(got, s0)
    _same_replay(got, _quoting(run_capture, fast=False))
    _same_replay(got, _quoting(run_capture, compiled=False))
    _rates(benchmark, got, "kmm run capture (compiled loop, model from the cache)")


RUN_LOOPS = "backtest kmm run capture, compiled loop vs Python fast loop (per book message)"


def test_run_capture_compiled_loop(benchmark, run_capture):
    s = _quoting(run_capture)
    info(benchmark, RUN_LOOPS, "kmm", s["book_messages"])
    b, got = benchmark.pedantic(_quoting_b, (run_capture,), rounds=7, iterations=1)
    assert b.pickoff_cached and got["details"]["replay_path"] == "compiled"
    _same_replay(got, s)
    _rates(benchmark, got, "kmm run capture (compiled loop, paired with the Python fast loop)")


def test_run_capture_python_fast_loop(benchmark, run_capture):
    s = _quoting(run_capture, compiled=False)
    info(benchmark, RUN_LOOPS, "baseline", s["book_messages"])
    b, got = benchmark.pedantic(_quoting_b, (run_capture, True, False), rounds=7, iterations=1)
    assert b.pickoff_cached and got["details"]["replay_path"] == "fast"
    _same_replay(got, s)
    _rates(benchmark, got, "kmm run capture (Python fast loop)")


def test_run_capture_reference_path(benchmark, run_capture):
    s = _quoting(run_capture, fast=False)
    info(benchmark, RUN_GROUP, "baseline", s["book_messages"])
    got = benchmark.pedantic(_quoting, (run_capture, False), rounds=5, iterations=1)
    _same_replay(got, s)
    times = sorted(benchmark.stats.stats.data)
    benchmark.extra_info.update({"messages_per_s": got["book_messages"] / times[len(times) // 2],
                                 "speedup_vs_real_time": got["details"]["replayed_span_s"] / times[len(times) // 2]})
    print(f"\nkmm run capture (reference path, fitted every replay): {benchmark.extra_info['messages_per_s']:,.0f} "
          f"book messages/s median")


# ------------------------------------------------------------------ the engine modules' compiled copies
RUN_COPIES = ("backtest with quoting, kmm run capture, as kmm backtest runs it: compiled engine modules vs "
              "their source (per book message)")


class CompiledReplayer:
    """A worker process on the engine modules' compiled copies (``bench/replay_worker.py``: it chooses
    them as ``kmm backtest`` does, before it imports the engine): ``replay()`` asks it for one whole
    replay and waits for the summary (a pipe round trip of ~0.1 ms on a ~35 ms replay)."""

    def __init__(self, capture: Path) -> None:
        import multiprocessing as mp
        import os

        from bench.replay_worker import serve
        from kmm import _pure
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, str(capture)), daemon=True)
        saved = os.environ.pop(_pure.ENV, None)     # the child makes the choice kmm backtest makes
        try:
            self.proc.start()
        finally:
            if saved is not None:
                os.environ[_pure.ENV] = saved
        child.close()
        self.compiled, self.which = self.conn.recv()

    def replay(self) -> dict:
        self.conn.send(True)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(False)
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


def test_run_capture_compiled_copies_kmm(benchmark, run_capture):
    """The whole replay as ``kmm backtest`` runs it (the engine modules' compiled copies), in a worker
    process; paired with the same replay in this process, on their source (what every other process
    runs, kmm._pure). The same fills, orders and P&L."""
    s0 = _quoting(run_capture)              # the decoded cache and the fitted model, made here once
    w = CompiledReplayer(run_capture)
    try:
        assert w.compiled and all(w.which), w.which
        info(benchmark, RUN_COPIES, "kmm", s0["book_messages"], budget_ns=5_000)
        got = benchmark.pedantic(w.replay, rounds=9, iterations=1, warmup_rounds=1)
    finally:
        w.close()
    _same_replay(got, s0)
    _rates(benchmark, got, "kmm run capture (compiled engine modules, as kmm backtest runs)")


def test_run_capture_compiled_copies_source(benchmark, run_capture):
    import importlib

    from kmm import _pure
    assert not any(_pure.is_compiled(importlib.import_module(m)) for m in _pure.MODULES)
    s0 = _quoting(run_capture)
    info(benchmark, RUN_COPIES, "baseline", s0["book_messages"])
    b, got = benchmark.pedantic(_quoting_b, (run_capture,), rounds=9, iterations=1, warmup_rounds=1)
    _same_replay(got, s0)
    _rates(benchmark, got, "kmm run capture (engine modules from source, this process)")
