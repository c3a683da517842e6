"""Each algorithm's state machine, driven step by step by hand (no randomness)."""

import pytest

from kmm._core.grid import Grid
from kmm.execution import (Action, Amend, Cancel, ExecutionRequest, MarketInfo, Place, build_algo, metrics_for)
from kmm.execution.algo import NS

from tests.execution.book import PlainBook

T0 = 10 * NS


def mk(action=Action.BUY_YES, size=1000, limit=5500, algo="simple", grid="linear_cent", **kw):
    params = kw.pop("params", {})
    req = ExecutionRequest("KX-1", action, size, limit, algo=algo, params=params, execution_id="x", **kw)
    return build_algo(req, MarketInfo("KX-1", Grid(grid), kw.get("fractional", False)))


def book(asks=((5000, 1000), (5200, 2000)), bids=((4800, 1000), (4700, 500))):
    return PlainBook(bids=bids, asks=asks)


# ------------------------------------------------------------------ simple
def test_simple_posts_gtc_at_target_capped_by_slippage_and_cancels_at_timeout():
    a = mk(limit=6000, params={"timeout_s": 30.0})
    out = a.start(T0, book())
    # best ask 0.50, 2 % worse = 0.51 < limit 0.60
    assert out == [Place("x-1", "bid", 5100, 1000, "good_till_canceled", False)]
    assert a.on_order_update(T0 + 1, "x-1", "resting", 600, 400, ack="place") == []
    assert a.on_fill(T0 + 2, "x-1", 400, 5000, 70) == []
    assert a.next_wakeup_ns == T0 + 30 * NS
    assert a.on_timer(T0 + 30 * NS) == [Cancel("x-1")]
    assert not a.done  # cancel not confirmed yet
    a.on_order_update(T0 + 31 * NS, "x-1", "canceled", 0, 400, ack="cancel")
    assert a.done and a.end_reason == "timeout" and a.filled == 400


def test_simple_sends_ioc_at_slippage_cap_when_edge_clears_threshold():
    a = mk(limit=6000, edge=900)
    assert a.start(T0, book()) == [Place("x-1", "bid", 5100, 1000, "immediate_or_cancel", False)]
    a.on_order_update(T0 + 1, "x-1", "canceled", 0, 700, ack="place")
    assert a.finished and a.end_reason == "ioc_done" and a.done


def test_simple_buy_no_slippage_cap_is_two_percent_of_the_no_price_on_the_grid():
    # best YES bid 0.60 = NO 0.40; 2 % worse = NO 0.408 = YES 0.592 (deci-cent grid)
    a = mk(action=Action.BUY_NO, limit=4500, grid="deci_cent")
    assert a.start(T0, book(bids=((6000, 1000),), asks=((6100, 100),))) == [
        Place("x-1", "ask", 5920, 1000, "good_till_canceled", False)]


def test_simple_reposts_after_reject_and_gives_up_after_max_rejects():
    a = mk(params={"max_rejects": 2})
    a.start(T0, book())
    assert [i.child_id for i in a.on_order_update(T0, "x-1", "rejected", 0, 0, ack="place")] == ["x-2"]
    assert a.on_order_update(T0, "x-2", "rejected", 0, 0, ack="place") == []
    assert a.done and a.end_reason == "too_many_rejects"


# ------------------------------------------------------------------ capped
def test_capped_takes_decided_size_with_ioc_then_rests_remainder_at_best_inside_limit():
    a = mk(size=3000, limit=5500, algo="capped", params={"remainder": "rest"})
    b = book(asks=((5000, 1000), (5600, 2000)))
    assert a.start(T0, b) == [Place("x-1", "bid", 5000, 1000, "immediate_or_cancel", False)]
    assert a.decision.exec_size == 1000
    a.on_fill(T0 + 1, "x-1", 1000, 5000, 175)
    b.set_ask(5000, 0)  # level consumed: best ask is now 0.56, beyond the limit 0.55
    a.on_book(T0 + 2, b)
    out = a.on_order_update(T0 + 3, "x-1", "executed", 0, 1000, ack="place")
    assert out == [Place("x-2", "bid", 5500, 2000, "good_till_canceled", False)]


def test_capped_drops_remainder_by_default_and_conservative_mode_never_rests():
    a = mk(size=3000, limit=6000, algo="capped")
    a.start(T0, book(asks=((5000, 1000), (5600, 2000))))
    a.on_order_update(T0 + 1, "x-1", "canceled", 0, 0, ack="place")
    assert a.done and a.end_reason == "decision_next_level_too_far"
    c = mk(size=3000, algo="capped", params={"remainder": "rest", "conservative": True})
    c.start(T0, book(asks=((5000, 1000), (5100, 2000))))  # spread 0.02
    assert c.decision.exec_size == 1000
    c.on_order_update(T0 + 1, "x-1", "executed", 0, 1000, ack="place")
    assert c.finished and c.live_children == []


# ------------------------------------------------------------------ slice
def test_slice_aggressive_reposts_only_what_can_still_fill_when_fill_arrives_after_cancel():
    a = mk(size=1000, algo="slice", params={"child_size": 1000, "patience_s": 5.0, "mode": "aggressive"})
    b = book()
    assert a.start(T0, b) == [Place("x-1", "bid", 5000, 1000, "good_till_canceled", False)]
    a.on_order_update(T0 + 1, "x-1", "resting", 1000, 0, ack="place")
    assert a.on_timer(T0 + 5 * NS) == [Cancel("x-1")]
    b.set_ask(5000, 0)
    a.on_book(T0 + 5 * NS + 1, b)
    # the exchange filled 300 before the cancel; the fill message is still in flight
    out = a.on_order_update(T0 + 6 * NS, "x-1", "canceled", 0, 300, ack="cancel")
    assert out == [Place("x-2", "bid", 5200, 700, "good_till_canceled", False)]  # not 1000
    a.on_fill(T0 + 7 * NS, "x-1", 300, 5000, 0)  # the late fill
    assert a.filled == 300 and a.committed == 1000


def test_slice_patient_leaves_unfilled_child_resting():
    a = mk(size=2000, algo="slice", params={"child_size": 1000, "patience_s": 5.0, "mode": "patient"})
    a.start(T0, book())
    a.on_order_update(T0 + 1, "x-1", "resting", 1000, 0, ack="place")
    assert a.on_timer(T0 + 5 * NS) == []
    a.on_fill(T0 + 6 * NS, "x-1", 1000, 5000, 0)
    out = a.on_order_update(T0 + 6 * NS, "x-1", "executed", 0, 1000)
    assert out == [Place("x-2", "bid", 5000, 1000, "good_till_canceled", False)]


def test_slice_high_edge_and_confidence_shortens_patience():
    a = mk(size=2000, algo="slice", edge=900, confidence=0.9, params={"patience_s": 10.0})
    a.start(T0, book())
    assert a.next_wakeup_ns == T0 + 5 * NS  # aggressive_patience 0.5


# ------------------------------------------------------------------ twap
def test_twap_places_evenly_spaced_slices_of_the_schedule():
    a = mk(size=1000, algo="twap", params={"slices": 4, "duration_s": 8.0, "carry_over": False,
                                             "final_wait_s": 1.0})
    b = book()
    assert a.start(T0, b) == [Place("x-1", "bid", 5000, 200, "good_till_canceled", False)]  # 1000/4 -> 2 contracts
    assert a.next_wakeup_ns == T0 + 2 * NS
    assert a.on_timer(T0 + 2 * NS) == [Place("x-2", "bid", 5000, 300, "good_till_canceled", False)]  # due 500
    assert a.on_timer(T0 + 4 * NS) == [Place("x-3", "bid", 5000, 200, "good_till_canceled", False)]  # due 700
    assert a.on_timer(T0 + 6 * NS) == [Place("x-4", "bid", 5000, 300, "good_till_canceled", False)]  # due 1000
    assert a.next_wakeup_ns == T0 + 7 * NS
    out = a.on_timer(T0 + 7 * NS)
    assert sorted(i.child_id for i in out) == ["x-1", "x-2", "x-3", "x-4"] and all(isinstance(i, Cancel) for i in out)
    assert a.end_reason == "schedule_complete"


def test_twap_carry_over_cancels_unfilled_slice_and_rolls_it_into_the_next():
    a = mk(size=1000, algo="twap", params={"slices": 2, "duration_s": 10.0, "carry_over": True})
    a.start(T0, book())
    a.on_order_update(T0 + 1, "x-1", "resting", 500, 0, ack="place")
    out = a.on_timer(T0 + 5 * NS)
    assert Cancel("x-1") in out and Place("x-2", "bid", 5000, 500, "good_till_canceled", False) in out
    a.on_order_update(T0 + 5 * NS + 1, "x-2", "resting", 500, 0, ack="place")
    out = a.on_order_update(T0 + 6 * NS, "x-1", "canceled", 0, 100, ack="cancel")
    assert out == [Place("x-3", "bid", 5000, 400, "good_till_canceled", False)]  # 1000 - 100 filled - 500 live


# ------------------------------------------------------------------ adaptive
def test_adaptive_improves_one_tick_per_timeout_and_stops_at_limit():
    a = mk(limit=5000, algo="adaptive", params={"step_timeout_s": 30.0, "max_improvements": 5, "final": "cancel"})
    assert a.start(T0, book()) == [Place("x-1", "bid", 4800, 1000, "good_till_canceled", False)]  # joins best bid
    a.on_order_update(T0 + 1, "x-1", "resting", 1000, 0, ack="place")
    assert a.on_timer(T0 + 30 * NS) == [Amend("x-1", 4900, 1000)]
    a.on_order_update(T0 + 30 * NS + 1, "x-1", "resting", 1000, 0, ack="amend", price=4900)
    a.on_fill(T0 + 40 * NS, "x-1", 200, 4900, 0)
    a.on_order_update(T0 + 40 * NS, "x-1", "resting", 800, 200)
    assert a.on_timer(T0 + 60 * NS) == [Amend("x-1", 5000, 1000)]  # total stays 1000 = 200 filled + 800
    a.on_order_update(T0 + 60 * NS + 1, "x-1", "resting", 800, 200, ack="amend", price=5000)
    assert a.on_timer(T0 + 90 * NS) == [Cancel("x-1")]  # at the limit: no further tick, final=cancel
    assert a.end_reason == "at_limit" and metrics_for(a).walks == 2


def test_adaptive_ticks_follow_a_tapered_grid():
    a = mk(limit=1200, algo="adaptive", grid="tapered_deci_cent", price=980,
           params={"step_timeout_s": 1.0, "max_improvements": 5})
    a.start(T0, book(asks=((1500, 100),), bids=()))
    a.on_order_update(T0, "x-1", "resting", 1000, 0, ack="place")
    prices = []
    for k in range(1, 5):
        out = a.on_timer(T0 + k * NS)
        prices.append(out[0].price)
        a.on_order_update(T0 + k * NS + 1, "x-1", "resting", 1000, 0, ack="amend", price=out[0].price)
    assert prices == [990, 1000, 1100, 1200]  # 0.001 steps below 0.10, then cents


def test_adaptive_amend_reject_keeps_the_old_price_and_retries():
    a = mk(limit=5000, algo="adaptive", params={"step_timeout_s": 10.0})
    a.start(T0, book())
    a.on_order_update(T0 + 1, "x-1", "resting", 1000, 0, ack="place")
    assert a.on_timer(T0 + 10 * NS) == [Amend("x-1", 4900, 1000)]
    a.on_order_update(T0 + 10 * NS + 1, "x-1", "rejected", 1000, 0, ack="amend")
    assert a.children["x-1"].price == 4800
    assert a.on_timer(T0 + 20 * NS) == [Amend("x-1", 4900, 1000)]


# ------------------------------------------------------------------ vwslice
def test_vwslice_splits_in_proportion_to_visible_size_within_limit():
    a = mk(size=2000, limit=5200, algo="vwslice")
    out = a.start(T0, book(asks=((5000, 1000), (5100, 3000), (5300, 1000))))
    # within 0.52: 10 and 30 contracts -> 1/4 and 3/4 of 20
    assert out == [Place("x-1", "bid", 5000, 500, "good_till_canceled", False),
                   Place("x-2", "bid", 5100, 1500, "good_till_canceled", False)]
    assert metrics_for(a).splits == 2


# ------------------------------------------------------------------ walker
def walker(**params):
    p = {"walk_interval_seconds": 4.0, "min_cumulative_depth": 10000, "momentum_threshold": 0.10}
    p.update(params)
    return mk(size=1000, limit=5100, algo="walker", params=p)


def test_walker_splits_60_40_over_first_two_levels_within_limit():
    a = walker()
    out = a.start(T0, book(asks=((5000, 6000), (5100, 4000), (5200, 9000))))
    assert out == [Place("x-1", "bid", 5000, 600, "good_till_canceled", False),
                   Place("x-2", "bid", 5100, 400, "good_till_canceled", False)]


def test_walker_falls_back_to_one_unwalked_order_when_depth_is_thin():
    a = walker()
    out = a.start(T0, book(asks=((5000, 3000), (5100, 4000))))  # 70 contracts < 100
    assert out == [Place("x-1", "bid", 5100, 1000, "good_till_canceled", False)]
    assert a.splits[0].walking is False and a.next_wakeup_ns == a.deadline_ns


def test_walker_walks_one_tick_by_amend_when_depth_dries_up_and_never_past_limit():
    a = walker(momentum_threshold=5.0, ema_alpha=0.3, depth_dry_up_threshold=0.5)
    b = book(asks=((4900, 6000), (5000, 4000)))
    a.start(T0, b)
    for cid in ("x-1", "x-2"):
        a.on_order_update(T0 + 1, cid, "resting", a.children[cid].count, 0, ack="place")
    b.set_ask(4900, 0)
    b.set_ask(5000, 0)
    b.set_ask(5300, 1000)
    a.on_book(T0 + 2, b)  # ema = 0.7 * 10000 = 7000 -> 30 % gone
    assert a.dry_up() == pytest.approx(0.3)
    a.on_book(T0 + 3, b)  # ema = 4900 -> 51 % gone: dry-up forecast
    out = a.on_timer(T0 + 4 * NS)
    assert out == [Amend("x-1", 5000, 600), Amend("x-2", 5100, 400)]
    a.on_order_update(T0 + 4 * NS + 1, "x-1", "resting", 600, 0, ack="amend", price=5000)
    a.on_order_update(T0 + 4 * NS + 1, "x-2", "resting", 400, 0, ack="amend", price=5100)
    # dry-up re-evaluates faster (4 s / 1.5); x-2 sits at the limit and does not move
    assert a.next_wakeup_ns == T0 + 4 * NS + int(4 * NS / 1.5)
    assert a.on_timer(a.next_wakeup_ns) == [Amend("x-1", 5100, 600)]
    assert metrics_for(a).walks == 3


def test_walker_walks_on_momentum_of_competing_bids():
    a = walker(momentum_threshold=0.10, depth_dry_up_threshold=1.0)
    b = book(asks=((4900, 6000), (5000, 4000)), bids=((4800, 1000),))
    a.start(T0, b)
    for cid in ("x-1", "x-2"):
        a.on_order_update(T0 + 1, cid, "resting", a.children[cid].count, 0, ack="place")
    b.set_ask(4900, 0)
    b.set_ask(5000, 0)
    b.set_ask(5300, 5000)  # depth within limit gone, but EMA needs time; competing bids grow
    b.set_bid(4800, 2000)  # own-side depth 1000 -> 2000: momentum +100 %
    a.on_book(T0 + 2, b)
    assert a.momentum(T0 + 4 * NS) == pytest.approx(1.0)
    assert a.on_timer(T0 + 4 * NS) == [Amend("x-1", 5000, 600), Amend("x-2", 5100, 400)]


def test_walker_replace_mode_cancels_then_places_only_what_the_split_can_still_fill():
    a = walker(walk_via="replace", momentum_threshold=0.0)
    b = book(asks=((4900, 6000), (5000, 4000)))
    a.start(T0, b)
    a.on_order_update(T0 + 1, "x-1", "resting", 600, 0, ack="place")
    a.on_order_update(T0 + 1, "x-2", "executed", 0, 400, ack="place")
    b.set_ask(4900, 0)
    a.on_book(T0 + 2, b)
    assert a.on_timer(T0 + 4 * NS) == [Cancel("x-1")]
    # the cancel answer says 200 had filled; that fill message comes later
    out = a.on_order_update(T0 + 5 * NS, "x-1", "canceled", 0, 200, ack="cancel")
    assert out == [Place("x-3", "bid", 5000, 400, "good_till_canceled", False)]
    a.on_fill(T0 + 6 * NS, "x-1", 200, 4900, 0)
    assert a.committed == 1000 and a.filled == 200


def test_walker_caps_walks_per_split():
    a = walker(max_walks_per_order=1, momentum_threshold=0.0)
    b = book(asks=((4800, 6000), (4900, 4000)))
    a.start(T0, b)
    for cid in ("x-1", "x-2"):
        a.on_order_update(T0 + 1, cid, "resting", a.children[cid].count, 0, ack="place")
    b.set_ask(4800, 0)
    b.set_ask(4900, 0)
    b.set_ask(5100, 1000)
    a.on_book(T0 + 2, b)
    out = a.on_timer(T0 + 4 * NS)
    assert out == [Amend("x-1", 4900, 600), Amend("x-2", 5000, 400)]
    for i in out:
        a.on_order_update(T0 + 5 * NS, i.child_id, "resting", i.count, 0, ack="amend", price=i.price)
    assert a.on_timer(T0 + 20 * NS) == []


# ------------------------------------------------------------------ shared behaviour
@pytest.mark.parametrize("algo", ["simple", "capped", "slice", "twap", "adaptive", "vwslice", "walker"])
def test_user_cancel_emits_cancel_for_every_live_child_and_retries_refused_cancels(algo):
    a = mk(size=2000, limit=5200, algo=algo, params={"remainder": "rest"} if algo == "capped" else {})
    b = book(asks=((5000, 6000), (5100, 4000), (5200, 9000)))
    out = a.start(T0, b)
    if algo == "capped":  # take first, then the rest order
        a.on_order_update(T0 + 1, "x-1", "canceled", 0, 0, ack="place")
    places = [c for c in a.children.values() if c.live]
    assert places
    for c in places:
        a.on_order_update(T0 + 1, c.child_id, "resting", c.count, 0, ack="place")
    out = a.cancel(T0 + 2)
    assert sorted(i.child_id for i in out) == sorted(c.child_id for c in places)
    assert all(isinstance(i, Cancel) for i in out)
    first = places[0].child_id
    assert a.on_order_update(T0 + 3, first, "rejected", places[0].count, 0, ack="cancel") == []
    assert a.next_wakeup_ns == T0 + 3 + NS
    assert a.on_timer(T0 + 3 + NS) == [Cancel(first)]
    for c in places:
        a.on_order_update(T0 + 5 * NS, c.child_id, "canceled", 0, 0, ack="cancel")
    assert a.done and a.end_reason == "cancelled"
    assert a.on_book(T0 + 6 * NS, b) == [] and a.on_timer(T0 + 7 * NS) == []


@pytest.mark.parametrize("algo", ["simple", "slice", "twap", "adaptive", "vwslice", "walker"])
def test_edge_below_minimum_sends_nothing(algo):
    a = mk(algo=algo, edge=50)
    assert a.start(T0, book()) == []
    assert a.done and a.end_reason == "edge_below_minimum"


def test_fill_after_terminal_update_is_still_counted():
    a = mk(limit=6000)
    a.start(T0, book())
    a.on_order_update(T0 + 1, "x-1", "resting", 1000, 0, ack="place")
    a.cancel(T0 + 2)
    a.on_order_update(T0 + 3, "x-1", "canceled", 0, 400, ack="cancel")
    assert a.done and a.unsettled == 400
    a.on_fill(T0 + 4, "x-1", 400, 5000, 70)
    assert a.filled == 400 and a.unsettled == 0 and metrics_for(a).filled_size == 400


def test_decrease_and_amend_answers_move_the_committed_size_only_when_acknowledged():
    a = mk(size=1000, limit=6000, algo="adaptive", params={"step_timeout_s": 10.0})
    a.start(T0, book())
    a.on_order_update(T0 + 1, "x-1", "resting", 1000, 0, ack="place")
    assert a._decrease(T0 + 2, a.children["x-1"], 400)
    assert a.committed == 1000  # not yet acknowledged
    a.on_order_update(T0 + 3, "x-1", "resting", 400, 0, ack="decrease")
    assert a.committed == 400 and a.headroom == 600
    # an amend raising the total is cut to the target and counts as soon as it is sent
    assert a._amend(T0 + 4, a.children["x-1"], 4900, 5000)
    assert a.committed == 1000
    a.on_order_update(T0 + 5, "x-1", "rejected", 400, 0, ack="amend")
    assert a.committed == 400
