"""The backtest driver on small hand-made captures: latency, settlement, gaps, own liquidity,
determinism, records and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmm.config import load_config
from kmm.record.capture import RotatingCaptureWriter, capture_files, gap_frame, read_capture
from kmm.record.store import StoreReader
from kmm.record.summary import read_summary, validate_summary
from kmm.record.tape import read_tape
from kmm.research.backtest import Backtest, BacktestOptions, run_backtest
from tests.research.helpers import WALL0, Cap, FixedQuotes, T

CFG = load_config(None, environ={}, cli={"run.markets": T})


def bt(tmp: Path, cap: Cap, opt: BacktestOptions, *, bid: int = 4000, ask: int = 0, out: bool = True,
       seed: int = 0) -> Backtest:
    d = cap.write(tmp / "cap")
    b = Backtest([d], CFG, (tmp / "out") if out else None, seed=seed, options=opt,
                 strategy_factory=lambda info: FixedQuotes(bid=bid, ask=ask, size=500))
    b.sim.keep_outcomes = True
    return b


def zero(**kw) -> BacktestOptions:
    return BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0", rate_tier="off", **kw)


def busy_level() -> Cap:
    # 10 contracts bid at 0.40; 2 ms later 20 more join the level; at 20 ms a seller takes 15
    return (Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
            .delta(2, "bid", 4000, 2000)
            .delta(20, "bid", 4000, -1500).trade(20, 4000, 1500, "ask", "tr1")
            .delta(40, "bid", 4000, 100))


def test_with_no_latency_our_bid_is_behind_ten_contracts_and_the_trade_fills_it(tmp_path):
    b = bt(tmp_path, busy_level(), zero())
    s = b.run()
    assert s["fills"] == 1 and s["contracts_bought"] == "5.00"
    assert b.sim.trade_outcomes["tr1"] == (T, "filled")


def test_orders_act_on_the_book_as_it_is_when_they_arrive_not_when_decided(tmp_path):
    # decided on the snapshot at t=0, but it reaches the exchange 5 ms later, after the 20 contracts
    # joined: it is behind 30, and the 15-contract trade does not reach it
    b = bt(tmp_path, busy_level(), BacktestOptions(feed_latency="0", entry_latency="5ms",
                                                   response_latency="1ms", rate_tier="off"))
    s = b.run()
    assert s["fills"] == 0
    assert b.sim.trade_outcomes["tr1"] == (T, "queue")


def test_feed_latency_delays_arrival_too(tmp_path):
    b = bt(tmp_path, busy_level(), BacktestOptions(feed_latency="3ms", entry_latency="0",
                                                   response_latency="0", rate_tier="off"))
    assert b.run()["fills"] == 0


def test_settlement_pays_one_dollar_per_net_contract(tmp_path):
    cap = (Cap().snapshot(0, [(4000, 100)], [(6000, 1000)])
           .delta(5, "bid", 4000, -100).trade(5, 4000, 600, "ask", "tr1")   # 1 ahead, 5 reach us
           .lifecycle(50, "determined", "yes").lifecycle(60, "settled", "yes"))
    s = bt(tmp_path, cap, zero()).run()
    assert s["fills"] == 1 and s["contracts_bought"] == "5.00"
    # bought 5 YES at 0.40 (no maker fee on this series); settled yes: 5 x $1 - $2.00 = +$3.0000
    assert s["realized_pnl"] == "3.0000" and s["fees"] == "0.0000" and s["positions"][T] == "0.00"
    assert s["net_pnl"] == "3.0000"


def test_maker_fee_series_charges_the_maker_fee_in_whole_cents(tmp_path):
    cap = (Cap(maker_rate_e6=17_500).snapshot(0, [(4000, 100)], [(6000, 1000)])
           .delta(5, "bid", 4000, -100).trade(5, 4000, 600, "ask", "tr1"))
    s = bt(tmp_path, cap, zero()).run()
    # 0.0175 x 5 x 0.40 x 0.60 = $0.021 -> charged $0.03 (whole cents; the carry stays with the order)
    assert s["fees"] == "0.0300"


def test_the_recorded_runs_own_orders_are_not_in_the_replay_book(tmp_path):
    cap = (Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
           .delta(1, "bid", 4100, 700, coid="live-1")        # the recorded run's own bid at 0.41
           .delta(30, "bid", 3900, 100))
    b = bt(tmp_path, cap, zero(), bid=0)
    b.run()
    assert b.books[T].size_at("yes", 4100) == 0
    assert b.sim.stats.own_deltas_removed == 1
    assert b.pipes[T].inputs.best_bid == 4000               # the strategy never saw it


def test_a_gap_pulls_the_quotes_until_the_next_snapshot(tmp_path):
    cap = (Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
           .raw(10, gap_frame("connection lost", WALL0))
           .trade(20, 4000, 3000, "ask", "tr-during-gap")
           .snapshot(50, [(4000, 1000)], [(6000, 1000)])
           .delta(60, "bid", 3900, 100))
    cap.seq = 0
    b = bt(tmp_path, cap, zero())
    s = b.run()
    d = s["details"]
    assert d["gaps"] == 1
    assert s["orders_sent"] == 2            # placed on the first snapshot, again after the gap
    assert d["cancels_sent"] >= 2           # pulled at the gap, and at the end of the replay
    assert s["fills"] == 0                  # the trade while stale found no order of ours


def test_same_seed_same_result_and_records(tmp_path):
    def once(sub: str, seed: int) -> tuple[dict, str]:
        cap = busy_level()
        for i in range(40):
            cap.delta(50 + i, "bid", 4000, 100).trade(50 + i, 4000, 100, "ask", f"t{i}").delta(50 + i, "bid", 4000, -100)
        d = cap.write(tmp_path / sub / "cap")
        opt = BacktestOptions(feed_latency="lognormal:1ms:0.8", entry_latency="lognormal:2ms:0.8",
                              response_latency="1ms", rate_tier="off")
        out = tmp_path / sub / "out"
        s = Backtest([d], CFG, out, seed=seed, options=opt,
                     strategy_factory=lambda info: FixedQuotes(bid=4000, size=500)).run()
        s.pop("messages_per_s")
        for k in ("elapsed_s", "speedup_vs_real_time", "files"):
            s["details"].pop(k)
        s.pop("venue")
        return s, (out / "tape.csv").read_text()
    a, tape_a = once("a", 7)
    b, tape_b = once("b", 7)
    assert a == b and tape_a == tape_b


def test_summary_json_has_the_contracts_fields_and_types(tmp_path):
    s = run_backtest([busy_level().write(tmp_path / "cap")], CFG, tmp_path / "out", seed=1,
                     options=zero())
    on_disk = read_summary(tmp_path / "out")
    assert on_disk == json.loads(json.dumps(s))
    validate_summary(on_disk)
    for k in ("schema", "start_ns", "end_ns", "fills", "book_messages", "orders_sent"):
        assert type(on_disk[k]) is int, k
    for k in ("mode", "venue", "contracts_bought", "contracts_sold", "fees", "realized_pnl",
              "unrealized_pnl", "net_pnl"):
        assert type(on_disk[k]) is str, k
    assert on_disk["mode"] == "backtest" and on_disk["markets"] == [T] and on_disk["schema"] == 1
    assert type(on_disk["messages_per_s"]) is float and on_disk["messages_per_s"] > 0
    assert on_disk["start_ns"] == WALL0 and on_disk["book_messages"] == 4
    # the same records as kmm run
    for name in ("ops.log", "tape.csv", "kmm.sqlite"):
        assert (tmp_path / "out" / name).exists(), name
    assert any(r.event == "decision" for r in read_tape(tmp_path / "out" / "tape.csv"))
    orders = StoreReader(tmp_path / "out" / "kmm.sqlite").orders()
    assert orders and {o.status for o in orders} <= {"executed", "canceled"}    # nothing left resting
    from kmm.record.summary import parse_contracts
    assert on_disk["fills"] == 1
    assert sum(o.fill_count for o in orders) == parse_contracts(on_disk["contracts_bought"]) + \
        parse_contracts(on_disk["contracts_sold"]) > 0


def test_summary_validation_refuses_wrong_types():
    from kmm.record.summary import build_summary
    good = build_summary(mode="live", venue="sim", markets=["A"], start_ns=1, end_ns=2, fills=[], realized=-1826,
                         unrealized=0, fees=0, positions={"A": -300}, book_messages=0, orders_sent=0)
    assert good["realized_pnl"] == "-0.1826" and good["positions"] == {"A": "-3.00"}
    validate_summary(good)
    for k, bad in (("fills", "3"), ("fees", "0.18"), ("net_pnl", "1.0000"), ("mode", "dry")):
        with pytest.raises(ValueError, match=k):
            validate_summary({**good, k: bad})


def test_a_backtest_refuses_an_output_directory_of_a_live_run(tmp_path):
    from kmm.errors import KmmError
    out = tmp_path / "out"
    out.mkdir()
    (out / "tape.csv").write_text("x")
    with pytest.raises(KmmError, match="new --out"):
        run_backtest([busy_level().write(tmp_path / "cap")], CFG, out, options=zero())


# ------------------------------------------------------------------------------ capture files
def test_rotation_splits_a_long_recording_into_readable_files_in_order(tmp_path):
    w = RotatingCaptureWriter(tmp_path / "capture.bin.gz", rotate_bytes=300)
    frames = [(i * 1000, b'{"type":"ticker","n":%d,"pad":"%s"}' % (i, b"x" * 40)) for i in range(40)]
    for t, f in frames:
        w.write(t, f, WALL0 + t)
    w.close()
    files = capture_files(tmp_path)
    assert len(files) > 3 and files[0].name == "capture.bin.gz" and files[1].name == "capture.part0001.bin.gz"
    got = [(r.recv_ns, r.frame) for f in files for r in read_capture(f)]
    assert got == frames


def test_capture_files_orders_runs_then_parts(tmp_path):
    for n in ("capture.1.bin.gz", "capture.part0002.bin.gz", "capture.bin.gz", "capture.part0001.bin.gz",
              "capture.1.part0001.bin.gz", "other.bin.gz"):
        (tmp_path / n).write_bytes(b"")
    assert [f.name for f in capture_files(tmp_path)] == [
        "capture.bin.gz", "capture.part0001.bin.gz", "capture.part0002.bin.gz", "capture.1.bin.gz",
        "capture.1.part0001.bin.gz"]


def test_loss_limit_trips_the_kill_switch_pulls_the_quotes_and_no_fill_follows(tmp_path):
    from kmm.engine.risk import KillState
    cfg = load_config(None, environ={}, cli={"run.markets": T, "risk.max_loss": "0.5", "risk.resume_recovery": "0.1"})
    cap = (Cap().snapshot(0, [(4000, 100)], [(6000, 1000)])
           .delta(5, "bid", 4000, -100).trade(5, 4000, 600, "ask", "tr1")      # we buy 5 at 0.40
           .delta(10, "bid", 2000, 1000)                                      # the others' best bid: 0.20
           .delta(300, "bid", 1900, 100).delta(600, "bid", 1800, 100)         # time passes (housekeeping)
           .trade(700, 4000, 1000, "ask", "tr2"))                             # would fill a bid at 0.40
    d = cap.write(tmp_path / "cap")
    b = Backtest([d], cfg, None, options=zero(), strategy_factory=lambda info: FixedQuotes(bid=4000, size=500))
    s = b.run()
    assert s["fills"] == 1 and s["positions"][T] == "5.00"
    assert b.gate.kill_state is KillState.PAUSED
    assert s["unrealized_pnl"] == "-1.0000"          # 5 x (0.20 - 0.40), marked at the others' best bid
    assert not b.sim.resting() and s["details"]["cancels_sent"] >= 1


def test_fast_loader_reads_what_the_reader_reads_and_stops_at_a_cut_tail(tmp_path):
    from kmm.research.events import load_frames
    cap = busy_level()
    for i in range(200):
        cap.delta(100 + i, "bid", 3900, 100)
    path = cap.write(tmp_path / "cap") / "capture.bin.gz"
    whole = [(r.recv_ns, r.wall_ns, r.frame) for r in read_capture(path)]
    assert load_frames(path) == whole
    cut = tmp_path / "cut.bin.gz"
    cut.write_bytes(path.read_bytes()[:-700])
    got = load_frames(cut)
    assert got == whole[:len(got)] and 0 < len(got) < len(whole)


def test_two_runs_in_one_directory_replay_in_order_with_a_gap_between(tmp_path):
    d = tmp_path / "cap"
    busy_level().write(d)                                 # run 1: capture.bin.gz, times 0..40 ms
    second = (Cap().snapshot(0, [(4000, 100)], [(6000, 1000)])      # run 2: its own monotonic base
              .delta(5, "bid", 4000, -100).trade(5, 4000, 600, "ask", "tr2"))
    second.write(d, "capture.1.bin.gz")
    seen: list[float] = []
    b = Backtest([d], CFG, None, options=zero(), progress=seen.append,
                 strategy_factory=lambda info: FixedQuotes(bid=4000, size=500))
    s = b.run()
    assert [f.name for f in b.files] == ["capture.bin.gz", "capture.1.bin.gz"]
    assert s["details"]["gaps"] == 1                     # the second run's file starts after a gap
    assert s["fills"] == 2                               # one fill in each run
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


class _BidThenLower:
    """Bids 0.40 on its first decision and 0.37 on every later one (so the second decision amends)."""

    name = "bid-then-lower"

    def __init__(self) -> None:
        self.calls = 0

    def target(self, inp, out):
        self.calls += 1
        out.bid_price, out.bid_size = (4000 if self.calls == 1 else 3700), 500
        out.ask_price, out.ask_size = 0, 0
        return out


def test_an_amend_is_a_new_total_so_fills_on_its_way_never_push_past_max_position(tmp_path):
    # max_position 5: we bid 5 at 0.40; the next decision amends to 0.37 (new total 5 = 0 filled + 5);
    # while the amend travels (5 ms), a seller takes 3 of ours at 0.40. Kalshi applies the new total, so
    # 2 remain at 0.37; a big seller at 0.37 right after it lands fills those 2. Position 5, never 8.
    cap = (Cap().snapshot(0, [(3700, 1000)], [(6000, 1000)])
           .delta(10, "bid", 3700, 100)                              # a book change: the strategy re-decides
           .trade(12, 4000, 300, "ask", "tr1")                        # takes 3 of ours at 0.40
           .delta(15.5, "bid", 3700, -1100).trade(15.5, 3700, 5000, "ask", "tr2"))   # sweeps 0.37
    cfg = load_config(None, environ={}, cli={"run.markets": T, "strategy.max_position": "5",
                                             "risk.reduce_only_at": "1"})
    b = Backtest([cap.write(tmp_path / "cap")], cfg, tmp_path / "out", seed=0,
                 options=BacktestOptions(feed_latency="0", entry_latency="5ms", response_latency="1ms",
                                         rate_tier="off"),
                 strategy_factory=lambda info: _BidThenLower())
    s = b.run()
    assert s["contracts_bought"] == "5.00", s
    assert max(abs(r.inventory) for r in read_tape(tmp_path / "out" / "tape.csv")) == 500


def test_requests_waiting_for_write_tokens_leave_in_the_live_limiters_order(tmp_path):
    """As the live connector's RateLimiter: with the bucket empty, requests queue per lane and leave
    cancel first, then amends, then places, each lane first come first served; a request that comes
    while others wait queues behind them even if the bucket could pay for it."""
    from kmm.kalshi import limiter as lim
    b = bt(tmp_path, busy_level(), BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0",
                                                   rate_tier="basic"), bid=0)
    b.clock.mono = 1_000_000_000
    b.limiter.write.refill(b.clock.mono)
    b.limiter.write.tokens = 0.0
    left: list[str] = []
    pipe = b.pipes[T]
    pipe.in_flight = 10
    def act(name):
        return lambda: (left.append(name), (lambda: None))[1]
    for name, lane in (("place1", lim.PLACE), ("amend1", lim.AMEND), ("place2", lim.PLACE),
                       ("cancel1", lim.CANCEL), ("amend2", lim.AMEND)):
        b._depart(pipe, lane, act(name), ())
    assert left == [] and b.rate_waits == 5
    b._run_events(b.clock.mono + 2_000_000_000)
    assert left == ["cancel1", "amend1", "amend2", "place1", "place2"]
    # 2 + 4 x 10 tokens at 100/s above the 20-token cancel reserve: the last leaves about 0.6 s later
    assert 0.55e9 < b.clock.mono - 1_000_000_000 < 0.65e9


def test_one_taker_sweeping_several_levels_fills_our_order_once_for_the_sum(tmp_path):
    """A seller sweeps the bids at 0.40 and 0.39 (two prints, a book delta between them, the same
    exchange millisecond). Our bid at 0.41 (5 contracts) stood in front of both: that taker meets it
    once, one fill of 5 (3 + 2) with the maker fee computed on 5. A later seller is a fill of its own."""
    from kmm._core.fees import cent_fee, trade_fee
    cap = (Cap(maker_rate_e6=17_500).snapshot(0, [(4000, 1000), (3900, 1000)], [(6000, 1000)])
           .trade(20, 4000, 300, "ask", "s1").delta(20.2, "bid", 4000, -300)
           .trade(20.4, 3900, 400, "ask", "s2").delta(20.5, "bid", 3900, -400)
           .delta(40, "bid", 3900, 100)
           .trade(60, 4000, 200, "ask", "s3").delta(60.2, "bid", 4000, -200)
           .delta(80, "bid", 3900, 100))
    b = bt(tmp_path, cap, zero(), bid=4100)
    s = b.run()
    assert [(f.price, f.count) for f in b.fills] == [(4100, 500), (4100, 200)]
    assert s["fills"] == 2 and s["contracts_bought"] == "7.00"
    assert b.fills[0].fee == cent_fee(trade_fee(500, 4100, 17_500), 0)[0]
    assert b.fills[1].order_id != b.fills[0].order_id           # the re-placed order: its own fee carry
    assert b.fills[1].fee == cent_fee(trade_fee(200, 4100, 17_500), 0)[0]
    assert b.pf.fees_paid() == b.fills[0].fee + b.fills[1].fee


class _BidUntilLongThenAsk:
    """Bids 8 at 0.41 while flat; once long, asks 8 at 0.59 and bids nothing."""

    name = "bid-until-long"

    def target(self, inp, out):
        if inp.inventory > 0:
            out.bid_price, out.bid_size, out.ask_price, out.ask_size = 0, 0, 5900, 800
        else:
            out.bid_price, out.bid_size, out.ask_price, out.ask_size = 4100, 800, 0, 0
        return out


def test_the_replay_sizes_a_reduce_only_quote_to_the_position_as_the_live_maker_does(tmp_path):
    """The replay sends what the live maker's planner (kmm.engine.quoting) makes of a decision. Long 6
    with max_position 10 and reduce_only_at 0.5 the market is reduce-only: the strategy's ask of 8
    would be refused by the gate (it would leave us short), so the planner sizes it to the 6 that
    reduce. A buyer of 10 then takes exactly those 6: flat, never short."""
    cap = (Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
           .delta(10, "bid", 4000, 100)
           .trade(20, 4100, 600, "ask", "sell6")                     # takes 6 of our 8 at 0.41
           .delta(30, "ask", 6000, 100)
           .trade(40, 5900, 1000, "bid", "buy10"))                   # a buyer of 10 at 0.59
    cfg = load_config(None, environ={}, cli={"run.markets": T, "strategy.max_position": "10",
                                             "risk.reduce_only_at": "0.5"})
    b = Backtest([cap.write(tmp_path / "cap")], cfg, None, seed=0,
                 options=BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0",
                                         rate_tier="off"),
                 strategy_factory=lambda info: _BidUntilLongThenAsk())
    s = b.run()
    assert [(f.side, f.price, f.count) for f in b.fills] == [("bid", 4100, 600), ("ask", 5900, 600)]
    asks = [o for o in b.om.orders() if o.side == "ask"]
    assert [o.count for o in asks] == [600]
    assert s["positions"][T] == "0.00" and not b.gate.denials.get("reduce_only")


def test_a_quoting_window_keeps_the_replay_out_of_the_recorded_runs_start_up_and_stop(tmp_path):
    # sellers print at 0.40 every 100 ms from 1 to 901 ms; our bid at 0.41 stands in front of them.
    # Quoting only from 250 ms to 650 ms (the recorded run's own window, as compare_run sets it), the
    # bid is placed at the first book message after 250 ms and pulled at 650 ms: only the prints at
    # 301, 401, 501 and 601 ms fill it
    cap = Cap().snapshot(0, [(4000, 100_000)], [(6000, 1000)])
    for k in range(10):
        cap.delta(100 * k + 1, "bid", 4000, -100).trade(100 * k + 1, 4000, 100, "ask", f"t{k}")
        cap.delta(100 * k + 50, "ask", 6000, 100)
    cap.delta(990, "ask", 6000, 100)
    everywhere = bt(tmp_path / "a", cap, zero(), bid=4100, ask=0).run()
    assert everywhere["fills"] == 10
    b = bt(tmp_path / "b", cap, zero(quote_from_ns=WALL0 + 250 * 10**6, quote_until_ns=WALL0 + 650 * 10**6),
           bid=4100, ask=0)
    s = b.run()
    assert s["fills"] == 4
    assert sorted(f.ts_ms for f in b.fills) == [(WALL0 + ms * 10**6) // 10**6 for ms in (301, 401, 501, 601)]
    assert not b.sim.resting()
    assert BacktestOptions.from_pairs({"quote_from_ns": "5"}).quote_from_ns == 5


def test_compare_takes_the_quoting_window_from_the_recorded_runs_orders(tmp_path):
    from kmm.record.store import Store
    from kmm.research.compare import live_window
    assert live_window(tmp_path) == (0, 0)
    st = Store(tmp_path / "kmm.sqlite")
    st.record_order(status="pending", client_order_id="c1", ticker=T, side="bid", price=4000, count=100,
                    strategy="x", reason="quote", ts_ns=WALL0 + 5)
    st.record_order(status="canceled", client_order_id="c1", ts_ns=WALL0 + 9)
    st.close()
    assert live_window(tmp_path) == (WALL0 + 5, WALL0 + 9)
