"""Adverse selection: reaction trades of the recorded run's stale quotes are left out of the replay and
a pick-off hazard fitted from them hits our stale virtual orders instead (kmm.research.adverse)."""

from __future__ import annotations

import orjson
import pytest

from kmm._core.fees import cent_fee, trade_fee
from kmm.research.adverse import ALL, BUCKETS, PickoffModel, bucket_of
from kmm.research.backtest import Backtest, BacktestOptions
from kmm.research.fills import FillSimulator
from tests.research.helpers import WALL0, Cap, FixedQuotes, T
from tests.research.test_backtest import CFG
from tests.research.test_queue_and_fills import T as TQ
from tests.research.test_queue_and_fills import make

MS = 1_000_000


def picky(sim: FillSimulator, model: PickoffModel) -> FillSimulator:
    sim.pickoff = model
    return sim


# ------------------------------------------------------------------------------ the model
def test_staleness_buckets_start_at_the_threshold_and_the_last_is_open_ended():
    assert bucket_of(0.0, 0.5) == -1 and bucket_of(0.49, 0.5) == -1
    assert bucket_of(0.5, 0.5) == 0 and bucket_of(1.0, 0.5) == 1 and bucket_of(1.5, 0.5) == 2
    assert bucket_of(40.0, 0.5) == BUCKETS - 1


def test_model_parsing_and_refusals():
    assert PickoffModel.parse("none", 0.5).active is False
    assert PickoffModel.parse("rate:3", 1.0).rate("ANY", 0) == 3.0
    assert PickoffModel.parse("always", 0.5).kind == "always"
    for bad in ("sometimes", "rate:x", "rate:-1", "rate"):
        with pytest.raises(ValueError, match="pickoff"):
            PickoffModel.parse(bad, 0.5)


def test_a_stale_bid_is_picked_off_at_our_price_with_the_maker_fee_a_fresh_one_never():
    # others: bid 0.40, ask 0.60 -> mid 0.50. Our bid at 0.52 stands 2 ticks beyond the mid (stale);
    # our ask at 0.58 is on the right side of the mid.
    sim = picky(make(maker=17_500), PickoffModel("rate", 0.5, {ALL: (1000.0,) * BUCKETS}, {ALL: (300,)}))
    sim.place(0, 0, TQ, "bid", 5200, 500, "c1")
    sim.place(0, 0, TQ, "ask", 5800, 500, "c2")
    assert sim.others_mid(TQ) == 5000
    assert sim.staleness("bid", 5200, 5000) == 2.0 and sim.staleness("ask", 5800, 5000) == -8.0
    assert sim.after_event(0, 0, TQ) == []                       # the first check starts the clock
    fills = []
    for k in range(1, 200):                                      # 1 ms apart: 1000/s must fire soon
        fills += sim.after_event(k * MS, 0, TQ)
        if fills:
            break
    assert len(fills) == 1
    f = fills[0]
    assert (f.side, f.price, f.count, f.is_taker) == ("bid", 5200, 300, False)
    assert f.fee == cent_fee(trade_fee(300, 5200, 17_500), 0)[0]
    assert sim.orders[f.order_id].remaining == 200
    assert sim.stats.pickoff_fills == 1 and sim.stats.pickoff_contracts == 300
    # the fresh ask: a huge rate, a second of checks, never touched
    for k in range(200, 1200):
        for g in sim.after_event(k * MS, 0, TQ):
            assert g.side == "bid"


def test_always_is_the_pessimistic_extreme_a_stale_order_goes_whole_at_the_first_check():
    sim = picky(make(), PickoffModel("always", 0.5))
    sim.place(0, 0, TQ, "bid", 5100, 700, "c1")
    fills = sim.after_event(0, 0, TQ)
    assert [(f.price, f.count) for f in fills] == [(5100, 700)]
    assert not sim.resting()


def test_the_pick_off_draws_are_the_seeds():
    def run(seed: int) -> list[int]:
        import random
        sim = picky(make(), PickoffModel("rate", 0.5, {ALL: (50.0,) * BUCKETS}, {ALL: (100, 200, 300)}))
        sim.rng = random.Random(seed)
        sim.place(0, 0, TQ, "bid", 5300, 100_000, "c1")
        out = []
        for k in range(2000):
            out += [f.count * 10**6 + k for f in sim.after_event(k * MS, 0, TQ)]
        return out
    a, b = run(1), run(1)
    assert a == b and len(a) > 20                  # 50/s over 2 s: ~100 pick-offs, same for one seed
    assert run(2) != a


def test_checked_tens_of_ms_apart_the_pick_offs_per_second_are_the_fitted_rate():
    # a stale bid at 7 per second (the fitted rates of a busy sim run), checked every 44 ms (the
    # median interval between a market's recorded messages at a pick-off on a loaded run) for 200 s:
    # ~1,400 pick-offs. Before the hazard past each draw was carried over, it was reset, and one fire
    # at most per check made 1 - exp(-7 * 0.044) per check: ~1,210, 14 % under the fitted rate.
    import random
    sim = picky(make(), PickoffModel("rate", 0.5, {ALL: (7.0,) * BUCKETS}, {ALL: (1,)}))
    sim.rng = random.Random(3)
    sim.place(0, 0, TQ, "bid", 5300, 10**7, "c1")
    n = 0
    for k in range(200_000 // 44 + 1):
        got = sim.after_event(k * 44 * MS, 0, TQ)
        assert len(got) <= 1                                     # one fire per order per check
        n += len(got)
    assert abs(n - 1400) < 80, n                                 # sd of a Poisson(1400) is 37


def test_a_carried_hazard_never_fires_on_a_fresh_quote():
    # the bid is stale for one interval at a rate that overshoots the draw many times, then the others'
    # best moves above it (fresh: on the right side of the mid): checks go on, nothing more fires
    import random
    sim = picky(make(), PickoffModel("rate", 0.5, {ALL: (1e6,) * BUCKETS}, {ALL: (1,)}))
    sim.rng = random.Random(0)
    oid = sim.place(0, 0, TQ, "bid", 5300, 10**6, "c1")[1].order_id
    sim.after_event(0, 0, TQ)
    assert len(sim.after_event(MS, 0, TQ)) == 1                  # ~1,000 draws' worth accrued
    assert sim.orders[oid].hz_acc > 100                          # carried over
    o, refusal, _ = sim.amend(MS + MS // 2, 0, oid, 4500, 10**6 - 1)   # below the others' mid: fresh
    assert refusal is None and o.hz_rate == 0.0
    assert sum(len(sim.after_event(k * MS, 0, TQ)) for k in range(2, 100)) == 0
    # stale again: the carried hazard fires at once
    o, refusal, _ = sim.amend(100 * MS, 0, oid, 5300, 10**6 - 1)
    sim.after_event(101 * MS, 0, TQ)
    assert len(sim.after_event(102 * MS, 0, TQ)) == 1


# ------------------------------------------------------------------------------ fitted from the recording
def fill_frame(trade_id: str, coid: str, yes_price: int, count: int) -> bytes:
    return orjson.dumps({"type": "fill", "sid": 9, "msg": {
        "trade_id": trade_id, "order_id": "o-" + coid, "client_order_id": coid, "market_ticker": T,
        "side": "yes", "yes_price_dollars": f"0.{yes_price // 100:02d}00", "count_fp": f"{count / 100:.2f}",
        "is_taker": False, "ts": (WALL0 + 0) // 10**9}})


def stale_recording() -> Cap:
    """Others quote 0.40 / 0.60 (mid 0.50). The recorded run's bid rests at 0.52 (2 ticks stale) from
    100 ms to 1100 ms; a seller hits it at 600 ms (its fill frame says so: a reaction trade). Another
    trade at 0.40 with others' bid is no reaction."""
    cap = Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
    cap.delta(100, "bid", 5200, 300, coid="live-1")
    cap.trade(600, 5200, 300, "ask", "react-1")
    cap.raw(600.5, fill_frame("react-1", "live-1", 5200, 300))
    cap.delta(601, "bid", 5200, -300, coid="live-1")
    cap.delta(601.5, "bid", 5200, 300, coid="live-1")           # it re-posts the same price
    cap.trade(800, 4000, 200, "ask", "other-1")
    cap.delta(800.5, "bid", 4000, -200)
    cap.delta(1100, "bid", 5200, -300, coid="live-1")
    cap.delta(1500, "bid", 4000, 100)
    return cap


def test_fitting_pass_finds_the_reaction_trade_and_the_rate_per_stale_second(tmp_path):
    d = stale_recording().write(tmp_path / "cap")
    fitter = Backtest([d], CFG, None, options=BacktestOptions(rate_tier="off"), fit_pass=True)
    fitter.run()
    fit = fitter.sim.fit
    assert fit is not None and fit.fill_ids == {"react-1"}
    model = fit.model("fitted", "test")
    assert model.reaction_ids == frozenset({"react-1"})
    assert model.sizes[T] == (300,)
    # 2 cents stale = bucket 3; 1.0 s of exposure (100 ms -> 1100 ms), one reaction: 1 per second
    assert fit.exposure_ns[T][bucket_of(2.0, 0.5)] == pytest.approx(1_000 * MS, rel=0.01)
    assert model.rates[T][bucket_of(2.0, 0.5)] == pytest.approx(1.0, rel=0.01)
    assert model.rate(T, bucket_of(2.0, 0.5)) == model.rates[T][bucket_of(2.0, 0.5)]
    assert model.live_stale_s == pytest.approx(1.0, rel=0.01)


def replay(tmp_path, pickoff: str) -> Backtest:
    d = stale_recording().write(tmp_path / f"cap-{pickoff}")
    opt = BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0", rate_tier="off",
                          pickoff=pickoff)
    b = Backtest([d], CFG, None, options=opt, strategy_factory=lambda info: FixedQuotes(bid=5200, size=500))
    b.sim.keep_outcomes = True
    b.run()
    return b


def test_with_the_model_the_reaction_trade_is_left_out_and_without_it_it_fills_us(tmp_path):
    kept = replay(tmp_path, "none")
    assert kept.sim.trade_outcomes["react-1"] == (T, "filled")      # the optimistic extreme keeps it
    assert kept.sim.stats.reaction_trades == 0 and kept.sim.stats.pickoff_fills == 0
    fitted = replay(tmp_path, "fitted")
    assert fitted.sim.trade_outcomes["react-1"] == (T, "reaction")
    assert fitted.sim.stats.reaction_trades == 1
    assert "fitted on 1 reaction trades" in fitted.sim.pickoff.describe()
    # our replay bid at 0.52 is stale from the start: the fitted hazard (1/s) may pick it off, in
    # 300-contract bites (the reaction trade's size); every pick-off is at our price
    for f in fitted.fills:
        assert f.price == 5200 and f.count <= 300


def test_always_takes_our_whole_stale_bid_and_none_only_what_the_recorded_trade_took(tmp_path):
    always = replay(tmp_path, "always")
    assert always.sim.trade_outcomes["react-1"] == (T, "reaction")     # left out here too
    assert [(f.price, f.count) for f in always.fills][:1] == [(5200, 500)]   # the whole order, not 300
    assert always.sim.stats.pickoff_fills >= 1
    none = replay(tmp_path, "none")
    assert [(f.price, f.count, f.ts_ms) for f in none.fills][:1] == [(5200, 300, (WALL0 + 600 * MS) // MS)]
