"""The fast replay (decoded capture cache + lean per-message path) against the reference replay
(``Backtest(fast=False)``: raw frames, every step as before): the same fills, P&L, orders, decisions
and records, on a live run's capture (own orders, recorded fills, the fitted pick-off model), on a
``kmm record`` capture, and on hand-made captures with gaps, own deltas, lifecycle events, odd frames
and two runs. Plus the cache's life: written once, read after, decoded again when the capture or the
format changes."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kmm
from kmm.config import load_config
from kmm.record.capture import gap_frame
from kmm.research import replaycache
from kmm.research.backtest import Backtest, BacktestOptions, _fast_trade
from tests.research.helpers import Cap, FixedQuotes, T

CFG3 = load_config(None, environ={}, cli={})
CFG1 = load_config(None, environ={}, cli={"run.markets": T})
TIMING = {"elapsed_s", "speedup_vs_real_time", "replay_path"}


@pytest.fixture(autouse=True)
def _check_live_cache(monkeypatch):
    # every book message of the fast path checks its kept live orders against a fresh list
    monkeypatch.setattr(Backtest, "check_live_cache", True)


@pytest.fixture(autouse=True)
def _check_levels(monkeypatch):
    # every delta at a level without an order of ours checks that our levels' visible sizes are unchanged
    from kmm.research.fills import FillSimulator
    monkeypatch.setattr(FillSimulator, "check_levels", True)


def _replay(caps: list[Path], cfg, out: Path | None, *, fast: bool, seed: int = 0,
            opt: BacktestOptions | None = None, python_fills: bool = False, **kw) -> tuple[Backtest, dict]:
    # python_fills: the fill simulator's plain-Python methods (its fitting pass too), not kmm._core.fillsim
    was = Backtest.compiled_fills
    Backtest.compiled_fills = not python_fills
    try:
        b = Backtest(caps, cfg, out, seed=seed, options=opt, fast=fast, **kw)
    finally:
        Backtest.compiled_fills = was
    assert b.sim.compiled is not python_fills
    b.sim.keep_outcomes = True
    return b, b.run()


def _same(tmp: Path, caps: list[Path], cfg, *, seed: int = 0, opt: BacktestOptions | None = None,
          records: bool = True, **kw) -> dict:
    """The reference replay (with the fill simulator's plain-Python methods), the Python fast loop and
    the compiled loop (kmm._core.replay; both with the compiled fill simulator, kmm._core.fillsim): the
    same replay to every fill, order, figure, trade outcome, decision latency and tape byte."""
    s_py = _same_as_reference(tmp, caps, cfg, seed=seed, opt=opt, records=records, compiled_loop=False, **kw)
    s_c = _same_as_reference(tmp, caps, cfg, seed=seed, opt=opt, records=records, compiled_loop=True, **kw)
    assert s_py["details"]["replay_path"] == "fast" and s_c["details"]["replay_path"] == "compiled"
    return s_c


def _same_as_reference(tmp: Path, caps: list[Path], cfg, *, seed: int, opt: BacktestOptions | None,
                       records: bool, compiled_loop: bool, **kw) -> dict:
    tag = f"{seed}{'c' if compiled_loop else 'py'}"
    ref_out, fast_out = (tmp / f"ref{tag}", tmp / f"fast{tag}") if records else (None, None)
    ref, s_ref = _replay(caps, cfg, ref_out, fast=False, seed=seed, opt=opt, python_fills=True, **kw)
    fast, s_fast = _replay(caps, cfg, fast_out, fast=True, seed=seed, opt=opt, compiled_loop=compiled_loop, **kw)
    assert s_ref["details"]["replay_path"] == "reference"
    # every fill to the field, every figure of the summary, every trade's outcome, the order manager
    assert fast.fills == ref.fills
    strip = {k: v for k, v in s_ref.items() if k not in ("details", "messages_per_s")}
    assert {k: v for k, v in s_fast.items() if k not in ("details", "messages_per_s")} == strip
    assert {k: v for k, v in s_fast["details"].items() if k not in TIMING} == \
        {k: v for k, v in s_ref["details"].items() if k not in TIMING}
    assert fast.sim.trade_outcomes == ref.sim.trade_outcomes
    assert fast.decision_latency_ns == ref.decision_latency_ns
    assert [(o.client_order_id, o.order_id, o.state, o.price, o.fill_count) for o in fast.om.orders()] == \
        [(o.client_order_id, o.order_id, o.state, o.price, o.fill_count) for o in ref.om.orders()]
    if records:
        assert (fast_out / "tape.csv").read_bytes() == (ref_out / "tape.csv").read_bytes()
    return s_fast


# ---------------------------------------------------------------------------------- real captures
@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A 10 s busy ``kmm run`` against the embedded exchange: its capture holds our own orders'
    deltas and fills (so the pick-off model is fitted and reaction trades are left out)."""
    tmp = tmp_path_factory.mktemp("live")
    run = tmp / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env["HOME"] = str(tmp)
    src = str(Path(kmm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    p = subprocess.run([sys.executable, "-m", "kmm", "run", "--duration", "10", "--out", str(run),
                        "--view", "off", "--set", "sim.flow=busy"],
                       cwd=tmp, env=env, capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stdout + p.stderr
    return run


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 3])
def test_fast_replay_of_a_live_run_makes_the_reference_replays_fills_orders_and_records(tmp_path, live_run, seed):
    s = _same(tmp_path, [live_run], CFG3, seed=seed)
    d = s["details"]
    assert s["fills"] > 20 and s["orders_sent"] > 10 and d["decisions"] > 10
    assert d["reaction_trades_left_out"] > 0 and d["pickoff_model"].startswith("fitted")


@pytest.mark.slow
def test_fast_replay_of_a_recorded_feed_with_the_rate_limiter_makes_the_reference_replay(tmp_path):
    from kmm.research.record import record
    cfg = load_config(None, environ={}, cli={"sim.flow": "busy", "sim.speed": "4", "sim.rate_tier": "off"})
    args = argparse.Namespace(rest_url=None, ws_url=None, api_key_id=None, private_key=None, env=None)
    res = asyncio.run(record(cfg, args, False, tmp_path / "cap", duration_s=3.0, rotate_bytes=0, rotate_s=0))
    assert res["frames"] > 500
    s = _same(tmp_path, [tmp_path / "cap"], CFG3, seed=1, opt=BacktestOptions(rate_tier="basic"))
    assert s["fills"] > 0 and s["details"]["rate_waits"] > 0


# ---------------------------------------------------------------------------------- hand-made captures
def _odd_frames(cap: Cap) -> Cap:
    """Frames off the usual paths: a ticker, a trade in an unusual form (decoded the slow way), a
    frame that is not JSON, a lifecycle event, an unknown market's delta, a fill of the recorded run."""
    cap.raw(11, orjson.dumps({"type": "ticker", "sid": 4, "msg": {"market_ticker": T, "price_dollars": "0.4000"}}))
    cap.raw(12, orjson.dumps({"type": "trade", "sid": 2, "msg": {
        "trade_id": "slow1", "market_ticker": T, "yes_price_dollars": "0.40", "no_price_dollars": "0.60",
        "count_fp": "2", "taker_book_side": "ask", "ts_ms": 1_795_000_000_012}}))
    cap.raw(13, b'{"type":"trade", not json')
    cap.raw(14, orjson.dumps({"type": "orderbook_delta", "sid": 9, "seq": 1, "msg": {
        "market_ticker": "OTHER-1", "price_dollars": "0.40", "delta_fp": "1.00", "side": "yes"}}))
    cap.raw(15, orjson.dumps({"type": "fill", "sid": 5, "msg": {"trade_id": "own1", "client_order_id": "x"}}))
    return cap


def _scenario() -> Cap:
    c = (Cap().snapshot(0, [(4000, 1000), (3900, 500)], [(6000, 1000)])
         .delta(2, "bid", 4000, 2000)
         .delta(3, "bid", 4000, 300, coid="rec-1")           # the recorded run's own order
         .delta(20, "bid", 4000, -1500).trade(20, 4000, 1500, "ask", "tr1"))
    _odd_frames(c)
    c.delta(30, "bid", 4000, -300, coid="rec-1")
    c.lifecycle(40, "deactivated").lifecycle(60, "activated")
    c.raw(70, gap_frame("connection lost", 0))
    c.snapshot(400, [(4000, 800)], [(6000, 500)])
    for i in range(40):                                      # activity past a few housekeeping ticks
        t = 410 + i * 25
        c.delta(t, "bid", 4000, 100 if i % 2 else -100)
        c.trade(t + 1, 4000, 100 + (i % 3) * 100, "ask", f"t{i}")
        c.delta(t + 2, "ask", 6000 - 100 * (i % 2), 50)
    c.seq += 5                                               # a seq gap, then a snapshot
    c.delta(1500, "bid", 4000, 100).snapshot(1600, [(4100, 300)], [(5900, 300)])
    c.trade(1610, 4100, 900, "ask", "after").lifecycle(1700, "settled", "yes")
    return c


@pytest.mark.parametrize("latency", ["0", "1ms", "lognormal:1ms:0.5"])
def test_fast_replay_of_odd_frames_gaps_and_lifecycle_makes_the_reference_replay(tmp_path, latency):
    d = _scenario().write(tmp_path / "cap")
    opt = BacktestOptions(feed_latency=latency, entry_latency=latency, response_latency=latency, rate_tier="off",
                          pickoff="always")
    s = _same(tmp_path, [d], CFG1, opt=opt, strategy_factory=lambda info: FixedQuotes(bid=4000, ask=6100, size=500))
    d = s["details"]
    assert s["fills"] > 2 and d["gaps"] >= 2 and d["malformed"] >= 1


@pytest.mark.parametrize("pickoff", ["always", "rate:40"])
def test_fast_replay_with_stale_quotes_picked_off_makes_the_reference_replay(tmp_path, pickoff):
    """The market moves away under our fixed bid (a snapshot with the others' mid 4.5 cents below it),
    so the pick-off hazard fires at book messages, trades and housekeeping ticks: the compiled step
    (kmm._core.replay.PickoffHazard) makes the simulator's fills and draws on the compiled loop."""
    c = Cap().snapshot(0, [(4000, 1000), (3900, 500)], [(6000, 800)])
    c.delta(1, "bid", 4000, 200, coid="rec-1")
    c.snapshot(100, [(3000, 500), (2900, 500)], [(4100, 800), (4200, 500)])
    for i in range(60):
        t = 110 + i * 40
        c.delta(t, "bid", 3000, 100 if i % 2 else -100)
        if i % 3 == 0:
            c.trade(t + 1, 4100, 100, "bid", f"p{i}")
        c.raw(t + 2, orjson.dumps({"type": "market_position", "sid": 3, "msg": {"market_ticker": T}}))
    d = c.write(tmp_path / "cap")
    opt = BacktestOptions(rate_tier="off", pickoff=pickoff)
    s = _same(tmp_path, [d], CFG1, seed=2, opt=opt, strategy_factory=lambda info: FixedQuotes(bid=4000, size=300))
    assert s["details"]["pickoff_fills"] > 1
    assert s["details"]["stale_order_s"] > 0 or pickoff == "always"      # always: picked off at the first check
    assert s["details"]["own_deltas_removed"] == 1


def test_fast_replay_of_two_runs_in_one_directory_makes_the_reference_replay(tmp_path):
    d = tmp_path / "cap"
    _scenario().write(d)
    (Cap().snapshot(0, [(4000, 100)], [(6000, 1000)]).delta(5, "bid", 4000, -100)
     .trade(5, 4000, 600, "ask", "tr2")).write(d, "capture.1.bin.gz")
    s = _same(tmp_path, [d], CFG1, opt=BacktestOptions(rate_tier="off"),
              strategy_factory=lambda info: FixedQuotes(bid=4000, size=500))
    assert s["fills"] >= 2 and s["details"]["gaps"] >= 3


def test_book_only_from_the_cache_applies_the_same_book_messages(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    ref, s_ref = _replay([d], CFG1, None, fast=False, opt=BacktestOptions(book_only=True))
    fast, s_fast = _replay([d], CFG1, None, fast=True, opt=BacktestOptions(book_only=True))
    assert s_fast["book_messages"] == s_ref["book_messages"] > 40
    assert fast.books[T].levels() == ref.books[T].levels()


# ---------------------------------------------------------------------------------- the cache file
def test_the_cache_is_written_once_read_after_and_decoded_again_when_the_capture_changes(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    f = d / "capture.bin.gz"
    first = replaycache.load(f, _fast_trade)
    cache = replaycache.cache_path(f, "", first.source_hash)
    assert not first.from_cache and cache.exists() and first.decode_s > 0
    again = replaycache.load(f, _fast_trade)
    assert again.from_cache and list(again.rows()) == list(first.rows())
    kinds = set(again.kind)
    assert {replaycache.TICKER, replaycache.TRADE, replaycache.FEED, replaycache.OTHER} <= kinds
    assert again.decode_s == pytest.approx(first.decode_s)   # the first decode's cost is kept
    # another capture under the same name: its content hash differs, so it is decoded again
    other = _scenario().trade(1800, 4000, 100, "ask", "late").write(tmp_path / "other")
    f.write_bytes((other / "capture.bin.gz").read_bytes())
    changed = replaycache.load(f, _fast_trade)
    assert not changed.from_cache and len(changed) == len(first) + 1
    assert replaycache.load(f, _fast_trade).from_cache


def test_a_cache_of_another_format_is_not_used(tmp_path, monkeypatch):
    d = _scenario().write(tmp_path / "cap")
    f = d / "capture.bin.gz"
    replaycache.load(f, _fast_trade)
    monkeypatch.setattr(replaycache, "FORMAT", replaycache.FORMAT + 1)
    assert not replaycache.load(f, _fast_trade).from_cache
    assert replaycache.load(f, _fast_trade).from_cache


def test_a_corrupt_cache_file_is_decoded_again(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    f = d / "capture.bin.gz"
    first = replaycache.load(f, _fast_trade)
    replaycache.cache_path(f, "", first.source_hash).write_bytes(b"not an npz")
    assert not replaycache.load(f, _fast_trade).from_cache
    assert replaycache.load(f, _fast_trade).from_cache


def test_cache_directory_option_keys_files_by_content_and_off_writes_nothing(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    cache_dir = tmp_path / "cache"
    b, s = _replay([d], CFG1, None, fast=True, opt=BacktestOptions(replay_cache=str(cache_dir), rate_tier="off"))
    h = replaycache.content_hash(d / "capture.bin.gz")
    assert [p.name for p in cache_dir.iterdir()] == [f"{h}.v{replaycache.FORMAT}{replaycache.SUFFIX}"]
    assert b.cache_hits == 0 and b.decode_s > 0
    b2, s2 = _replay([d], CFG1, None, fast=True, opt=BacktestOptions(replay_cache=str(cache_dir), rate_tier="off"))
    assert b2.cache_hits == 1 and b2.decode_s == pytest.approx(b.decode_s) and s2["fills"] == s["fills"]
    _replay([d], CFG1, None, fast=True, opt=BacktestOptions(replay_cache="off", rate_tier="off"))
    assert not list(d.glob("*" + replaycache.SUFFIX))


# ---------------------------------------------------------------------------------- the pick-off model kept
def test_the_fitted_pickoff_model_is_kept_in_the_capture_cache_and_the_next_replay_uses_it(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    f = d / "capture.bin.gz"
    opt = BacktestOptions(rate_tier="off")          # pickoff: fitted (the default)

    def quotes(info):
        return FixedQuotes(bid=4000, ask=6100, size=500)
    a, sa = _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)
    assert a.sim.pickoff is not None and a.sim.pickoff.kind == "fitted"
    assert not a.pickoff_cached and a.pickoff_fit_s > 0
    rep = replaycache.load(f, _fast_trade)
    assert rep.from_cache and [k for k in rep.models if k.startswith("pickoff:")]
    b, sb = _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)
    assert b.pickoff_cached and b.pickoff_fit_s == pytest.approx(a.pickoff_fit_s)
    assert b.sim.pickoff == a.sim.pickoff and b.fills == a.fills
    assert {k: v for k, v in sb["details"].items() if k not in TIMING} == \
        {k: v for k, v in sa["details"].items() if k not in TIMING}
    # the reference path fits on every replay; the fast one, reading the kept model, makes its replay
    _same(tmp_path, [d], CFG1, opt=opt, strategy_factory=quotes, records=False)
    # an option the fit reads: fitted again (and kept beside the first)
    c, _ = _replay([d], CFG1, None, fast=True, opt=BacktestOptions(rate_tier="off", pickoff_min_cents=1.0),
                   strategy_factory=quotes)
    assert not c.pickoff_cached
    assert len([k for k in replaycache.load(f, _fast_trade).models if k.startswith("pickoff:")]) == 2
    # rate:X takes only the reaction trades from the fit: the kept fit serves it too
    r, _ = _replay([d], CFG1, None, fast=True, opt=BacktestOptions(rate_tier="off", pickoff="rate:2"),
                   strategy_factory=quotes)
    assert r.pickoff_cached and r.sim.pickoff.kind == "rate"
    assert r.sim.pickoff.reaction_ids == a.sim.pickoff.reaction_ids
    # no cache file: fitted every time
    off = BacktestOptions(rate_tier="off", replay_cache="off")
    assert not _replay([d], CFG1, None, fast=True, opt=off, strategy_factory=quotes)[0].pickoff_cached


def test_a_changed_capture_does_not_meet_the_model_fitted_on_the_old_one(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    opt = BacktestOptions(rate_tier="off")
    a, _ = _replay([d], CFG1, None, fast=True, opt=opt)
    assert not a.pickoff_cached
    assert _replay([d], CFG1, None, fast=True, opt=opt)[0].pickoff_cached
    other = _scenario().trade(1800, 4000, 100, "ask", "late").write(tmp_path / "other")
    (d / "capture.bin.gz").write_bytes((other / "capture.bin.gz").read_bytes())
    assert not _replay([d], CFG1, None, fast=True, opt=opt)[0].pickoff_cached


# ---------------------------------------------------------------------------------- a delta's level
@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["yes", "no"]), cents=st.integers(1, 99), delta=st.integers(-300, 300).filter(bool),
       order=st.permutations(["market_ticker", "price_dollars", "delta_fp", "side", "ts_ms"]),
       spaced=st.booleans())
def test_a_deltas_cached_level_is_the_level_the_router_moves(side, cents, delta, order, spaced):
    """The cache's level of a delta (which decides whether the queue upkeep looks at our levels)
    is the level the compiled router changes, or -1 (unknown: every level of ours is looked at)."""
    import json

    from kmm._core.book import OrderBook
    from kmm._core.grid import Grid
    from kmm._core.wire import DELTA, BookRouter
    from tests.research.helpers import LINEAR, cnt, px
    book = OrderBook(Grid(LINEAR))
    r = BookRouter()
    r.add(T, book)
    levels = [(p, 1000) for p in range(100, 10_000, 100)]
    snap = {"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {
        "market_ticker": T, "yes_dollars_fp": [[px(p), cnt(s)] for p, s in levels],
        "no_dollars_fp": [[px(p), cnt(s)] for p, s in levels]}}
    assert r.feed(orjson.dumps(snap), 1) != DELTA
    fields = {"market_ticker": T, "price_dollars": px(cents * 100), "delta_fp": cnt(delta), "side": side,
              "ts_ms": 1_795_000_000_000}
    msg = {k: fields[k] for k in order}
    obj = {"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": msg}
    frame = json.dumps(obj).encode() if spaced else orjson.dumps(obj)
    before = (book.size_at("yes", cents * 100), book.size_at("no", cents * 100))
    assert r.feed(frame, 2) == DELTA
    after = (book.size_at("yes", cents * 100), book.size_at("no", cents * 100))
    lv = replaycache.delta_level(frame)
    moved = [i for i in (0, 1) if before[i] != after[i]]
    assert len(moved) == 1
    assert lv == -1 or lv == (moved[0] << 16 | cents * 100)
    if not spaced:
        assert lv == moved[0] << 16 | cents * 100       # the usual form is always read


def test_a_cache_file_read_once_is_kept_in_the_process_until_the_file_changes(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    f = d / "capture.bin.gz"
    replaycache.forget()
    first = replaycache.load(f, _fast_trade)                 # decoded, the file written
    read = replaycache.load(f, _fast_trade)                  # the file read back
    kept = replaycache.load(f, _fast_trade)                  # the columns read before, shared
    assert not first.from_cache and read.from_cache and kept.from_cache
    assert kept.recv is read.recv and kept.frames is read.frames and read.recv is not first.recv
    assert list(kept.rows()) == list(first.rows())
    replaycache.cache_path(f, "", first.source_hash).write_bytes(b"not an npz")   # the file changes
    again = replaycache.load(f, _fast_trade)
    assert not again.from_cache and again.recv is not read.recv
    replaycache.forget()


def test_a_book_only_replay_does_not_leave_its_empty_fit_to_the_next_replay(tmp_path):
    d = _scenario().write(tmp_path / "cap")
    _replay([d], CFG1, None, fast=True, opt=BacktestOptions(rate_tier="off", book_only=True))
    b, _ = _replay([d], CFG1, None, fast=True, opt=BacktestOptions(rate_tier="off"))
    assert b.sim.pickoff is not None and b.sim.pickoff.kind == "fitted"
    ref, _ = _replay([d], CFG1, None, fast=False, opt=BacktestOptions(rate_tier="off"))
    assert b.sim.pickoff == ref.sim.pickoff


# ---------------------------------------------------------------------------------- generated captures
@st.composite
def _captures(draw) -> Cap:
    """A one-market feed: a snapshot, then deltas, trades (at and through the levels our fixed quotes
    use), seq gaps with a recovering snapshot, and a connection gap, at random times; and the
    recorded run's own traffic: its orders' deltas (some after a seq gap), its order and fill
    messages (the fills name generated trades, so a pick-off model has reaction trades to fit) and
    its position messages."""
    c = Cap().snapshot(0, [(4000, 1000), (3900, 500)], [(6000, 800), (6100, 500)])
    t = 1.0
    own = draw(st.booleans())
    kinds = ["delta"] * 5 + ["trade"] * 4 + ["seqgap", "gap", "snapshot"]
    if own:
        kinds += ["own"] * 3 + ["report", "position"]
    for i in range(draw(st.integers(5, 60))):
        t += draw(st.sampled_from([0.0, 0.3, 2.0, 7.0, 40.0, 300.0]))
        what = draw(st.sampled_from(kinds))
        if what == "own":
            if draw(st.booleans()):
                c.seq += draw(st.sampled_from([0, 2]))
            side = draw(st.sampled_from(["bid", "ask"]))
            c.delta(t, side, draw(st.sampled_from([4000, 4100] if side == "bid" else [5900, 6000])),
                    draw(st.sampled_from([-200, 200, 500])), coid=f"rec-{draw(st.integers(1, 2))}")
        elif what == "report":
            c.raw(t, orjson.dumps({"type": "fill", "sid": 5, "msg": {
                "trade_id": f"g{draw(st.integers(0, max(0, i - 1)))}", "client_order_id": "rec-1"}}))
            c.raw(t, orjson.dumps({"type": "user_order", "sid": 6, "msg": {"client_order_id": "rec-1",
                                                                          "status": "resting"}}))
        elif what == "position":
            c.raw(t, orjson.dumps({"type": "market_position", "sid": 3, "msg": {
                "market_ticker": T, "position_fp": "-3.00"}}))
        elif what == "delta":
            side = draw(st.sampled_from(["bid", "ask"]))
            price = draw(st.sampled_from([3900, 4000, 4100] if side == "bid" else [5900, 6000, 6100]))
            c.delta(t, side, price, draw(st.sampled_from([-300, -100, 100, 400])))
        elif what == "trade":
            c.trade(t, draw(st.sampled_from([3900, 4000, 4100, 5900, 6000, 6100])),
                    draw(st.sampled_from([100, 300, 1200])), draw(st.sampled_from(["bid", "ask"])), f"g{i}")
        elif what == "seqgap":
            c.seq += 2
            c.delta(t, "bid", 4000, 100)
        elif what == "gap":
            c.raw(t, gap_frame("connection lost", 0))
        else:
            c.snapshot(t, [(4000, draw(st.sampled_from([200, 1000]))), (3900, 500)], [(6000, 800)])
    return c


@settings(max_examples=30, deadline=None)
@given(cap=_captures(), latency=st.sampled_from(["0", "1ms", "lognormal:2ms:0.5"]),
       pickoff=st.sampled_from(["none", "always", "fitted"]),
       queue=st.sampled_from(["power", "pessimistic", "optimistic"]),
       fixed=st.booleans(), seed=st.integers(0, 3))
def test_generated_captures_replay_the_same_on_all_three_paths(tmp_path_factory, cap, latency, pickoff, queue,
                                                               fixed, seed):
    tmp = tmp_path_factory.mktemp("gen")
    d = cap.write(tmp / "cap")
    opt = BacktestOptions(feed_latency=latency, entry_latency=latency, response_latency=latency, rate_tier="off",
                          pickoff=pickoff, queue_model=queue)
    kw = {"strategy_factory": lambda info: FixedQuotes(bid=4000, ask=6000, size=500)} if fixed else {}
    s = _same(tmp, [d], CFG1, seed=seed, opt=opt, **kw)
    d = s["details"]
    _GEN_SEEN.append((s["fills"], d["gaps"], s["orders_sent"], d["own_deltas_removed"],
                      d["reaction_trades_left_out"] + d["pickoff_fills"]))


_GEN_SEEN: list[tuple[int, int, int, int, int]] = []


def test_generated_captures_reach_fills_gaps_and_orders(tmp_path_factory):
    """The generated feeds are not all quiet: some replays fill, some pull on gaps, most quote; some
    track the recorded run's own deltas (the pick-off hazard's own test makes sure it fires:
    test_fast_replay_with_stale_quotes_picked_off_makes_the_reference_replay)."""
    if not _GEN_SEEN:       # run alone: generate them here
        test_generated_captures_replay_the_same_on_all_three_paths(tmp_path_factory=tmp_path_factory)
    assert any(f > 0 for f, *_ in _GEN_SEEN) and any(g > 0 for _, g, *_ in _GEN_SEEN)
    assert sum(o > 0 for _, _, o, *_ in _GEN_SEEN) > len(_GEN_SEEN) // 2
    assert any(own > 0 for *_, own, _ in _GEN_SEEN)


# ---------------------------------------------------------------------------------- the latency model kept
def test_the_fitted_latency_model_is_kept_in_the_capture_cache_and_a_changed_run_record_refits(tmp_path):
    from kmm.research.latency import fit_latency
    d = _scenario().write(tmp_path / "cap")
    run = _scenario().write(tmp_path / "run")          # the recorded run the latencies are fitted from
    opt = BacktestOptions(rate_tier="off", latency_from=str(run), pickoff="none")

    def quotes(info):
        return FixedQuotes(bid=4000, ask=6100, size=500)
    a, sa = _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)
    fitted = fit_latency(run)
    assert not a.latency_cached and a.latency == fitted and fitted.feed.kind == "empirical"
    rep = replaycache.load(d / "capture.bin.gz", _fast_trade)
    assert [k for k in rep.models if k.startswith("latency:")]
    b, sb = _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)
    assert b.latency_cached and b.latency == fitted and b.latency_fit_s == pytest.approx(a.latency_fit_s)
    assert b.fills == a.fills and b.decision_latency_ns == a.decision_latency_ns and sb["fills"] == sa["fills"] > 0
    # the reference path fits every time; the kept model makes its replay
    _same(tmp_path, [d], CFG1, opt=opt, strategy_factory=quotes, records=False)
    # the run's record changes (a tape appears, then the capture): fitted again, never the old model
    (run / "tape.csv").write_text("ts_ns,ticker,event\n")
    c, _ = _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)
    assert not c.latency_cached
    assert _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)[0].latency_cached
    other = _scenario().delta(1800, "bid", 4000, 100).write(tmp_path / "other")
    (run / "capture.bin.gz").write_bytes((other / "capture.bin.gz").read_bytes())
    e, _ = _replay([d], CFG1, None, fast=True, opt=opt, strategy_factory=quotes)
    assert not e.latency_cached and e.latency == fit_latency(run)
    # no cache file: fitted every time
    off = BacktestOptions(rate_tier="off", latency_from=str(run), pickoff="none", replay_cache="off")
    assert not _replay([d], CFG1, None, fast=True, opt=off, strategy_factory=quotes)[0].latency_cached
