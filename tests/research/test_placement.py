"""kmm.research.placement: the time-weighted placement of the replay's and the live run's quotes
against the others' best, and where the live order stood at each replay fill from a recorded trade,
on hand-made captures with zero latency (every figure known exactly)."""

from __future__ import annotations

import pytest

from kmm.config import load_config
from kmm.research.backtest import Backtest, BacktestOptions
from kmm.research.placement import BUCKETS, PlacementReplay, bucket, render_placement
from tests.research.helpers import Cap, FixedQuotes, T

CFG = load_config(None, environ={}, cli={"run.markets": T})


def zero() -> BacktestOptions:
    return BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0", rate_tier="off",
                           pickoff="none")


def replay(tmp_path, cap: Cap, *, bid: int, live_fill_ids: set[str] | None = None, cls=PlacementReplay, **kw):
    d = cap.write(tmp_path / "cap")
    extra = {} if cls is Backtest else {"live_fill_ids": live_fill_ids or set()}
    b = cls([d], CFG, None, options=zero(), strategy_factory=lambda info: FixedQuotes(bid=bid, size=500),
            **extra, **kw)
    return b, b.run()


def test_buckets():
    assert [bucket(x) for x in (-1, 0, 0.4, 1, 2.2, 3, 7)] == ["front", "0", "0", "1", "2", "3+", "3+"]


def test_contract_seconds_and_uptime_are_weighted_by_time_for_the_replay_and_the_live_orders(tmp_path):
    # others bid 0.40 from t=0; the live run's own bid of 7 contracts at 0.38 (2 ticks behind) from
    # 100 ms to 600 ms; our fixed bid of 5 at 0.41 (alone in front) from the first decision on; the
    # others' best moves to 0.42 at 400 ms (our bid then 1 tick behind, the live one 4)
    cap = (Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
           .delta(100, "bid", 3800, 700, coid="live-1")
           .delta(400, "bid", 4200, 300)
           .delta(600, "bid", 3800, -700, coid="live-1")
           .delta(1000, "ask", 6000, 100))
    b, s = replay(tmp_path, cap, bid=4100)
    p = b.placement()[T]
    live, rep = p["contract_s"]["live"], p["contract_s"]["replay"]
    assert live["2"] == pytest.approx(7 * 0.3) and live["3+"] == pytest.approx(7 * 0.2)
    assert sum(live.values()) == pytest.approx(7 * 0.5)
    assert rep["front"] == pytest.approx(5 * 0.4) and rep["1"] == pytest.approx(5 * 0.6)
    assert sum(rep.values()) == pytest.approx(5 * 1.0)
    assert p["uptime_s"]["live"] == {"bid": pytest.approx(0.5), "ask": 0.0}
    assert p["uptime_s"]["replay"] == {"bid": pytest.approx(1.0), "ask": 0.0}
    assert set(live) == set(BUCKETS)
    assert T in render_placement({"markets": b.placement()})


def test_each_replay_fill_from_a_recorded_trade_says_where_the_live_order_stood(tmp_path):
    # our bid of 5 at 0.41 in front; sellers print at 0.40 four times: with no live bid, with the live
    # bid behind at 0.38, with the live bid at 0.40 (at the level, not filled) and one that filled the
    # live run's bid (its trade id is among the live fills)
    cap = (Cap().snapshot(0, [(4000, 5000)], [(6000, 1000)])
           .delta(50, "bid", 4000, -100).trade(50, 4000, 100, "ask", "t-none")
           .delta(100, "bid", 3800, 700, coid="live-1")
           .delta(150, "bid", 4000, -100).trade(150, 4000, 100, "ask", "t-behind")
           .delta(200, "bid", 3800, -700, coid="live-1")
           .delta(210, "bid", 4000, 700, coid="live-2")
           .delta(250, "bid", 4000, -100).trade(250, 4000, 100, "ask", "t-level")
           .trade(300, 4000, 100, "ask", "t-live").delta(300, "bid", 4000, -100, coid="live-2"))
    b, s = replay(tmp_path, cap, bid=4100, live_fill_ids={"t-live"})
    assert s["fills"] == 4
    assert b.placement()[T]["replay_trade_fills"] == {"live_filled": 1, "live_through": 0, "live_at_level": 1,
                                                      "live_behind": 1, "live_none": 1}


def test_measuring_changes_nothing_in_the_replay(tmp_path):
    cap = (Cap().snapshot(0, [(4000, 1000)], [(6000, 1000)])
           .delta(2, "bid", 4000, 2000)
           .delta(20, "bid", 4000, -1500).trade(20, 4000, 1500, "ask", "tr1")
           .delta(30, "bid", 4100, 500, coid="live-1")
           .delta(40, "bid", 4000, 100).trade(60, 4000, 2000, "ask", "tr2"))
    _, plain = replay(tmp_path / "a", cap, bid=4000, cls=Backtest, fast=False)
    _, measured = replay(tmp_path / "b", cap, bid=4000)
    for k in ("fills", "contracts_bought", "contracts_sold", "fees", "net_pnl", "orders_sent"):
        assert plain[k] == measured[k], k
