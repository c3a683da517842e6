"""Order manager: transitions, out-of-order delivery, dedupe, timeouts, reconciliation, queries."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm.engine.clock import ManualClock
from kmm.engine.orders import (CLIENT_ORDER_ID_ALPHABET, CLIENT_ORDER_ID_MAX_LEN, TERMINAL,
                               TRANSITIONS, OrderManager, OrderState)
from kmm.kalshi.types import Fill, OrderAck, UserOrder

S = OrderState
T = "KXTEST-1"
_tid = itertools.count()


def mgr(policy: str = "cancel") -> tuple[OrderManager, ManualClock]:
    clock = ManualClock()
    return OrderManager(clock, session="s1", unknown_order_policy=policy), clock


def ack(coid: str, oid: str, filled: int = 0, remaining: int = 1000) -> OrderAck:
    return OrderAck(oid, coid, filled, remaining)


def fill(oid: str, count: int, coid: str | None = None, trade_id: str | None = None,
         fee: int = 0) -> Fill:
    return Fill(trade_id or f"t{next(_tid)}", oid, coid, T, "bid", 4000, count, fee, False, None, 0)


def uo(oid: str, coid: str | None, status: str, filled: int, remaining: int, *, price: int = 4000,
       initial: int = 1000, ts: int = 0, ticker: str = T, side: str = "bid") -> UserOrder:
    return UserOrder(oid, coid, ticker, status, side, price, initial, filled, remaining,
                     last_updated_ts_ms=ts)


def placed(m: OrderManager, oid: str = "X1", count: int = 1000, price: int = 4000, side: str = "bid"):
    o = m.create(T, side, price, count)
    m.on_ack(ack(o.client_order_id, oid, 0, count))
    return o


# ---------------------------------------------------------------- ids

def test_client_order_ids_are_unique_prefixed_and_within_the_assumed_alphabet():
    m, _ = mgr()
    ids = [m.new_client_order_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(i.startswith("s1-") and CLIENT_ORDER_ID_ALPHABET.match(i)
               and len(i) <= CLIENT_ORDER_ID_MAX_LEN for i in ids)


def test_default_session_prefix_is_valid_and_differs_between_sessions():
    c = ManualClock()
    a, b = OrderManager(c), OrderManager(c)
    assert a.session != b.session
    assert CLIENT_ORDER_ID_ALPHABET.match(a.new_client_order_id())


def test_bad_session_prefix_is_refused():
    with pytest.raises(ValueError, match="session"):
        OrderManager(ManualClock(), session="has space")


def test_create_refuses_reused_client_order_id():
    m, _ = mgr()
    m.create(T, "bid", 4000, 100, client_order_id="abc")
    with pytest.raises(ValueError, match="already used"):
        m.create(T, "bid", 4000, 100, client_order_id="abc")


# ---------------------------------------------------------------- normal life

def test_ack_moves_pending_to_resting():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    assert o.state is S.PENDING
    m.on_ack(ack(o.client_order_id, "X1"))
    assert o.state is S.RESTING and o.order_id == "X1" and m.by_order_id("X1") is o


def test_fills_move_resting_to_partially_filled_then_filled():
    m, _ = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 400))
    assert o.state is S.PARTIALLY_FILLED and o.remaining == 600
    m.on_fill(fill("X1", 600))
    assert o.state is S.FILLED and o.remaining == 0


def test_ack_with_immediate_full_fill_closes_filled():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_ack(ack(o.client_order_id, "X1", 1000, 0))
    assert o.state is S.FILLED


def test_ack_with_partial_fill_and_nothing_left_means_rest_canceled():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_ack(ack(o.client_order_id, "X1", 300, 0))   # IOC: 3 filled, 7 canceled
    assert o.state is S.CANCELED and o.fill_count == 300


def test_reject_closes_pending_create():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_create_rejected(o.client_order_id, "post_only_cross")
    assert o.state is S.REJECTED and o.reason == "post_only_cross"


def test_cancel_request_then_ack_closes_canceled():
    m, _ = mgr()
    o = placed(m)
    assert m.request_cancel("X1") is o and o.state is S.PENDING_CANCEL
    m.on_cancel_ack("X1", reduced_by=1000)
    assert o.state is S.CANCELED and o.remaining == 0


def test_failed_cancel_restores_previous_state():
    m, _ = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 100))
    m.request_cancel("X1")
    m.on_request_failed("X1", "500 internal")
    assert o.state is S.PARTIALLY_FILLED


def test_cancel_of_gone_order_closes_it():
    m, _ = mgr()
    o = placed(m)
    m.request_cancel("X1")
    m.on_request_failed("X1", "404", gone=True)
    assert o.state is S.CANCELED


def test_amend_request_and_ack_take_new_price_and_size():
    m, _ = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 200))
    m.request_amend("X1", 4100, 500)
    assert o.state is S.PENDING_AMEND and o.pending_count == 700   # V2 count = filled + remaining
    m.on_amend_ack(OrderAck("X1", o.client_order_id, 200, 500))
    assert (o.state, o.price, o.remaining, o.count) == (S.PARTIALLY_FILLED, 4100, 500, 700)


def test_decrease_request_and_ack_shrink_remaining():
    m, _ = mgr()
    o = placed(m)
    m.request_decrease("X1", 300)
    assert o.state is S.PENDING_DECREASE
    m.on_decrease_ack("X1", 300)
    assert (o.state, o.remaining, o.count) == (S.RESTING, 300, 300)


def test_decrease_to_zero_closes_canceled():
    m, _ = mgr()
    o = placed(m)
    m.request_decrease("X1", 0)
    m.on_decrease_ack("X1", 0)
    assert o.state is S.CANCELED


def test_cancel_may_overtake_an_amend_in_flight():
    m, _ = mgr()
    o = placed(m)
    m.request_amend("X1", 4100, 1000)
    assert m.request_cancel("X1") is o
    m.on_cancel_ack("X1")
    assert o.state is S.CANCELED


# ---------------------------------------------------------------- illegal and out of order

def test_illegal_request_on_closed_order_is_counted_not_raised():
    m, _ = mgr()
    placed(m)
    m.on_cancel_ack("X1")
    assert m.request_cancel("X1") is None
    assert m.request_amend("X1", 4100, 100) is None
    assert m.stats.illegal == 2


def test_request_cancel_on_pending_create_is_illegal():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_ack(ack(o.client_order_id, "X1"))
    m2, _ = mgr()
    p = m2.create(T, "bid", 4000, 1000)
    assert m2.request_cancel("nope") is None   # unknown order id
    assert p.state is S.PENDING and m2.stats.illegal == 1


def test_fill_before_ack_is_matched_by_client_order_id_and_counted_once():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_fill(fill("X1", 300, coid=o.client_order_id))
    assert o.order_id == "X1" and o.state is S.PARTIALLY_FILLED and o.remaining == 700
    m.on_ack(ack(o.client_order_id, "X1", 300, 700))      # the ack includes the same 300
    assert o.fill_count == 300 and o.remaining == 700 and o.state is S.PARTIALLY_FILLED


def test_fill_before_ack_that_ack_does_not_include_reduces_remaining():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_fill(fill("X1", 300, coid=o.client_order_id))
    m.on_ack(ack(o.client_order_id, "X1", 0, 1000))       # ack from before the fill
    assert o.fill_count == 300 and o.remaining == 700


def test_fill_after_cancel_is_still_counted():
    m, _ = mgr()
    o = placed(m)
    m.request_cancel("X1")
    m.on_cancel_ack("X1", reduced_by=600)
    assert m.on_fill(fill("X1", 400))
    assert o.state is S.CANCELED and o.fill_count == 400
    assert m.stats.late_fills == 1


def test_a_cancel_that_took_off_less_than_rested_keeps_the_unbooked_fill_as_risk_until_it_is_booked():
    # the cancel's answer can overtake the fill message (the order path answers by callback): the
    # part the exchange filled must stay visible to the event gate until its fill is booked
    m, _ = mgr()
    o = placed(m)
    m.request_cancel("X1")
    m.on_cancel_ack("X1", reduced_by=600)
    assert o.state is S.CANCELED and o.remaining == 0
    assert m.unbooked_in(T) == [("bid", o.price, 400)]
    assert m.on_fill(fill("X1", 400))
    assert m.unbooked_in(T) == [] and o.fill_count == 400
    # a cancel of everything that rested adds nothing
    m2, _ = mgr()
    m2.create(T, "bid", 4000, 1000, client_order_id="c2")
    m2.on_ack(ack("c2", "X2"))
    m2.request_cancel("X2")
    m2.on_cancel_ack("X2", reduced_by=1000)
    assert m2.unbooked_in(T) == []


@pytest.mark.parametrize("write", ["amend", "decrease", "cancel"])
def test_an_order_gone_on_a_404_stays_risk_until_the_exchange_says_whether_it_filled(write):
    # the order executed at the exchange; a write on it answered "not found" before its user_order and
    # fill messages arrived. Closing it with nothing left let the event gate admit a new order on the
    # sim (worst case -$3.90 against a $3 limit once the fill was booked): until the exchange says what
    # happened, the 10 contracts that rested may have filled
    m, _ = mgr()
    o = placed(m, price=4200)
    if write == "amend":
        m.request_amend("X1", 4100, 1000)
    elif write == "decrease":
        m.request_decrease("X1", 500)
    else:
        m.request_cancel("X1")
    m.on_request_failed("X1", "order_not_found", gone=True)
    assert not o.is_live and o.remaining == 0
    assert m.unbooked_in(T) == [("bid", 4200, 1000)]
    # its user_order: executed, all 10 filled; the fill messages are still on their way
    m.on_user_order(uo("X1", o.client_order_id, "executed", 1000, 0, price=4200))
    assert m.unbooked_in(T) == [("bid", 4200, 1000)]
    m.on_fill(fill("X1", 600))
    assert m.unbooked_in(T) == [("bid", 4200, 400)]
    m.on_fill(fill("X1", 400))
    assert m.unbooked_in(T) == [] and o.fill_count == 1000


def test_an_order_gone_on_a_404_that_was_cancelled_stops_counting_when_the_exchange_says_so():
    m, _ = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 300))
    m.request_amend("X1", 3900, 1000)
    m.on_request_failed("X1", "order_not_found", gone=True)
    assert m.unbooked_in(T) == [("bid", 4000, 700)]
    m.on_user_order(uo("X1", o.client_order_id, "canceled", 300, 0))
    assert m.unbooked_in(T) == [] and o.state is S.CANCELED
    # a read that finds no such order settles it too; a 404 from a read passes may_have_filled=False
    m2, clock = mgr()
    o2 = placed(m2)
    m2.request_cancel("X1")
    m2.on_request_failed("X1", "order_not_found", gone=True)
    assert m2.unbooked_in(T) == [("bid", 4000, 1000)]
    # no user_order for it within the read-back age: the session reads it back (watch_requests)
    assert m2.unsure_older_than(2_000_000_000) == []
    clock.advance(3.0)
    assert m2.unsure_older_than(2_000_000_000) == [o2]
    assert m2.prune(1_000_000_000) == 0 and m2.get(o2.client_order_id) is o2   # still settling: kept
    assert m2.resolve_gone("X1") is o2 and m2.unbooked_in(T) == [] and m2.unsure_older_than(0) == []
    m3, _ = mgr()
    placed(m3)
    m3.on_request_failed("X1", "gone at the exchange", gone=True, may_have_filled=False)
    assert m3.unbooked_in(T) == []


def test_duplicate_fill_is_ignored():
    m, _ = mgr()
    o = placed(m)
    f = fill("X1", 300, trade_id="dup")
    assert m.on_fill(f)
    assert not m.on_fill(f)
    assert o.fill_count == 300 and m.stats.duplicate_fills == 1


def test_user_order_after_fill_does_not_undo_the_fill():
    m, _ = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 1000))
    assert o.state is S.FILLED
    m.on_user_order(uo("X1", o.client_order_id, "resting", 0, 1000))
    assert o.state is S.FILLED and o.fill_count == 1000
    assert m.stats.stale_updates == 1


def test_stale_user_order_with_smaller_fill_count_keeps_seen_fills():
    m, _ = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 500))
    m.on_user_order(uo("X1", o.client_order_id, "resting", 200, 800))
    assert o.fill_count == 500 and o.remaining == 500


def test_older_user_order_by_timestamp_is_ignored():
    m, _ = mgr()
    o = placed(m)
    m.on_user_order(uo("X1", o.client_order_id, "resting", 0, 1000, price=4100, ts=200))
    m.on_user_order(uo("X1", o.client_order_id, "resting", 0, 1000, price=4000, ts=100))
    assert o.price == 4100 and m.stats.stale_updates == 1


def test_user_order_before_ack_acks_the_order():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_user_order(uo("X1", o.client_order_id, "resting", 0, 1000))
    assert o.state is S.RESTING and o.order_id == "X1"
    m.on_ack(ack(o.client_order_id, "X1"))
    assert o.state is S.RESTING


def test_user_order_canceled_closes_working_order():
    m, _ = mgr()
    o = placed(m)
    m.on_user_order(uo("X1", o.client_order_id, "canceled", 0, 0))
    assert o.state is S.CANCELED


def test_user_order_executed_during_pending_cancel_closes_filled():
    m, _ = mgr()
    o = placed(m)
    m.request_cancel("X1")
    m.on_user_order(uo("X1", o.client_order_id, "executed", 1000, 0))
    assert o.state is S.FILLED


def test_fill_for_unknown_order_is_held_and_applied_when_order_appears():
    m, _ = mgr("adopt")
    assert m.on_fill(fill("F1", 200))
    assert m.orphan_fill_count() == 1
    o = m.on_user_order(uo("F1", "someone", "resting", 200, 800))
    assert o is not None and o.foreign and o.adopted
    assert o.filled == 200 and o.fill_count == 200 and o.remaining == 800
    assert m.orphan_fill_count() == 0


def test_late_ack_after_close_only_links_ids():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_fill(fill("X1", 1000, coid=o.client_order_id))
    m.on_ack(ack(o.client_order_id, "X1", 0, 1000))
    assert o.state is S.FILLED and o.remaining == 0


# ---------------------------------------------------------------- timeouts

def test_timeout_then_lookup_found_resting_resolves_to_resting():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_create_timeout(o.client_order_id)
    assert o.state is S.TIMEOUT_UNKNOWN and m.unknown() == [o]
    m.resolve_unknown(o.client_order_id, uo("X1", o.client_order_id, "resting", 0, 1000))
    assert o.state is S.RESTING and o.order_id == "X1" and m.unknown() == []


def test_timeout_then_lookup_not_found_closes_rejected():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_create_timeout(o.client_order_id)
    m.resolve_unknown(o.client_order_id, None)
    assert o.state is S.REJECTED


def test_fill_resolves_timeout_unknown():
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    m.on_create_timeout(o.client_order_id)
    m.on_fill(fill("X1", 100, coid=o.client_order_id))
    assert o.state is S.PARTIALLY_FILLED


def test_in_flight_older_than_lists_unanswered_requests():
    m, clock = mgr()
    placed(m, "X1")
    m.request_cancel("X1")
    fresh = m.create(T, "ask", 6000, 100)
    clock.advance(2.0)
    m.create(T, "ask", 6100, 100)
    old = m.in_flight_older_than(1_000_000_000)
    assert {o.client_order_id for o in old} == {m.by_order_id("X1").client_order_id,
                                                fresh.client_order_id}


# ---------------------------------------------------------------- queries

def test_live_orders_gives_diff_shape_and_excludes_cancels_in_flight():
    m, clock = mgr()
    a = placed(m, "X1", 1000, 4000, "bid")
    placed(m, "X2", 500, 6000, "ask")
    placed(m, "X3", 500, 3900, "bid")
    pending = m.create(T, "bid", 3800, 200)
    m.request_cancel("X3")
    clock.advance(1.5)
    bids = m.live_orders(T, "bid")
    assert {(o.order_id, o.price, o.remaining) for o in bids} == {("X1", 4000, 1000), (None, 3800, 200)}
    by_id = {o.client_order_id: o for o in bids}
    assert by_id[a.client_order_id].age_ns == 1_500_000_000
    assert by_id[a.client_order_id].actionable and not by_id[pending.client_order_id].actionable
    assert len(m.live_orders(T)) == 3
    assert m.open_count(T) == 4 and m.open_count() == 4
    assert m.open_qty(T, "bid") == 1000 + 500 + 200


def test_live_orders_shows_amend_target_while_in_flight():
    m, _ = mgr()
    placed(m)
    m.request_amend("X1", 4200, 400)
    (lo,) = m.live_orders(T, "bid")
    assert (lo.price, lo.remaining, lo.actionable) == (4200, 400, False)
    assert m.open_qty(T, "bid") == 1000     # the larger of old and new while in flight


def test_counts_by_state():
    m, _ = mgr()
    placed(m, "X1")
    placed(m, "X2")
    m.on_cancel_ack("X2")
    m.create(T, "bid", 4000, 100)
    c = m.counts()
    assert (c["resting"], c["canceled"], c["pending"]) == (1, 1, 1)


def test_prune_forgets_old_closed_orders_but_keeps_dedupe():
    m, clock = mgr()
    o = placed(m)
    m.on_fill(fill("X1", 1000, trade_id="tt"))
    clock.advance(10)
    assert m.prune(5_000_000_000) == 1
    assert m.get(o.client_order_id) is None
    assert not m.on_fill(fill("X1", 1000, trade_id="tt"))


# ---------------------------------------------------------------- reconcile

def test_reconcile_clean_when_exchange_agrees():
    m, _ = mgr()
    o = placed(m)
    rep = m.reconcile([uo("X1", o.client_order_id, "resting", 0, 1000)])
    assert rep.clean and str(rep) == "orders agree with exchange"


def test_reconcile_unknown_order_marked_for_cancel_by_default():
    m, _ = mgr()
    rep = m.reconcile([uo("Z9", "other-session-1", "resting", 0, 500, price=3000)])
    assert not rep.clean
    (o,) = rep.to_cancel
    assert o.order_id == "Z9" and o.foreign and not o.adopted
    assert m.live_orders(T) == []              # not a quote of ours
    assert m.foreign_to_cancel() == [o]
    assert m.request_cancel("Z9") is o         # cancellable through the normal path


def test_reconcile_unknown_order_adopted_under_adopt_policy():
    m, _ = mgr("adopt")
    rep = m.reconcile([uo("Z9", "old-1", "resting", 100, 400)])
    (o,) = rep.adopted
    assert o.state is S.PARTIALLY_FILLED and o.remaining == 400
    assert [lo.order_id for lo in m.live_orders(T)] == ["Z9"]


def test_reconcile_closes_order_exchange_does_not_have():
    m, _ = mgr()
    o = placed(m)
    rep = m.reconcile([])
    assert rep.closed == [o] and o.state is S.CANCELED and not rep.clean
    assert "absent" in o.reason


def test_reconcile_confirms_pending_cancel_quietly():
    m, _ = mgr()
    o = placed(m)
    m.request_cancel("X1")
    rep = m.reconcile([])
    assert o.state is S.CANCELED and rep.clean


def test_reconcile_takes_exchange_price_and_size():
    m, _ = mgr()
    o = placed(m)
    rep = m.reconcile([uo("X1", o.client_order_id, "resting", 0, 600, price=4100)])
    (corr, what) = rep.corrected[0]
    assert corr is o and "price" in what and "remaining" in what
    assert (o.price, o.remaining) == (4100, 600)


def test_reconcile_books_missed_fills_once():
    m, _ = mgr()
    o = placed(m)
    f = fill("X1", 1000, trade_id="missed")
    rep = m.reconcile([], [f])
    assert rep.new_fills == [f] and o.state is S.FILLED
    rep2 = m.reconcile([], [f])
    assert rep2.new_fills == []


def test_reconcile_reopens_order_we_closed_but_exchange_rests():
    m, _ = mgr()
    o = placed(m)
    m.on_cancel_ack("X1")
    rep = m.reconcile([uo("X1", o.client_order_id, "resting", 0, 1000)])
    assert rep.reopened == [o] and o.state is S.RESTING


def test_reconcile_skips_creates_sent_after_snapshot_and_other_markets():
    m, clock = mgr()
    placed(m, "X1")
    other = m.create("KXOTHER", "bid", 4000, 100)
    m.on_ack(ack(other.client_order_id, "X2", 0, 100))
    as_of = clock.monotonic_ns()
    clock.advance(1)
    late = m.create(T, "bid", 4000, 100)
    m.on_ack(ack(late.client_order_id, "X3", 0, 100))
    rep = m.reconcile([], as_of_ns=as_of, tickers=[T])
    assert [o.order_id for o in rep.closed] == ["X1"]
    assert other.state is S.RESTING and late.state is S.RESTING


def test_reconcile_resolves_timeout_unknown_present_and_lists_absent():
    m, _ = mgr()
    a = m.create(T, "bid", 4000, 1000)
    b = m.create(T, "bid", 3900, 1000)
    m.on_create_timeout(a.client_order_id)
    m.on_create_timeout(b.client_order_id)
    rep = m.reconcile([uo("X1", a.client_order_id, "resting", 0, 1000)])
    assert rep.resolved == [a] and a.state is S.RESTING
    assert rep.unresolved == [b] and b.state is S.TIMEOUT_UNKNOWN


# ---------------------------------------------------------------- transition table and properties

def test_terminal_states_have_no_exits():
    assert all(not TRANSITIONS[s] for s in TERMINAL)


events_st = st.lists(st.one_of(
    st.tuples(st.just("fill"), st.integers(1, 400)),
    st.tuples(st.just("dupfill"), st.integers(0, 5)),
    st.tuples(st.just("ack"), st.integers(0, 1000)),
    st.tuples(st.just("uo"), st.sampled_from(["resting", "canceled", "executed"]), st.integers(0, 1000)),
    st.tuples(st.just("cancel")), st.tuples(st.just("cancel_ack")), st.tuples(st.just("fail")),
    st.tuples(st.just("amend"), st.integers(1, 1000)), st.tuples(st.just("timeout")),
), max_size=30)


@given(events_st)
def test_random_event_orders_never_raise_never_lose_fills_and_keep_legal_states(events):
    m, _ = mgr()
    o = m.create(T, "bid", 4000, 1000)
    sent: list[Fill] = []
    for ev in events:
        before = o.state
        kind = ev[0]
        if kind == "fill":
            f = fill("X1", ev[1], coid=o.client_order_id)
            sent.append(f)
            m.on_fill(f)
        elif kind == "dupfill" and sent:
            m.on_fill(sent[ev[1] % len(sent)])
        elif kind == "ack":
            m.on_ack(ack(o.client_order_id, "X1", min(ev[1], 1000), 1000 - min(ev[1], 1000)))
        elif kind == "uo":
            filled = min(ev[2], 1000)
            rem = 0 if ev[1] != "resting" else 1000 - filled
            m.on_user_order(uo("X1", o.client_order_id, ev[1], filled, rem))
        elif kind == "cancel":
            m.request_cancel("X1")
        elif kind == "cancel_ack":
            m.on_cancel_ack("X1")
        elif kind == "fail":
            m.on_request_failed("X1", "boom")
        elif kind == "amend":
            m.request_amend("X1", 4100, ev[1])
        elif kind == "timeout":
            m.on_create_timeout(o.client_order_id)
        assert o.state is before or o.state in TRANSITIONS[before]
        if before in TERMINAL:
            assert o.state is before
        assert o.remaining >= 0
        assert o.filled == sum(f.count for f in sent)     # every distinct fill counted once
        assert o.fill_count >= o.filled
        if o.state in TERMINAL:
            assert o.remaining == 0
        assert (m.open_count() == 1) == (o.state not in TERMINAL)   # the live index follows the state


def test_reconcile_does_not_ask_twice_to_cancel_a_foreign_order_being_canceled():
    m, _ = mgr()
    snap = [uo("Z9", "old-1", "resting", 0, 500)]
    assert len(m.reconcile(snap).to_cancel) == 1
    assert len(m.reconcile(snap).to_cancel) == 1          # still there, not yet being canceled
    m.request_cancel("Z9")
    rep = m.reconcile(snap)
    assert rep.to_cancel == [] and m.foreign_to_cancel() == []


def test_a_fill_past_the_old_size_of_an_amend_to_a_larger_total_is_not_an_overfill():
    # amended from 10 to 15 contracts; 12 fill at the exchange before the amend's answer arrives
    m, _ = mgr()
    o = placed(m)
    m.request_amend("X1", 4100, 1500)
    assert o.pending_count == 1500
    m.on_fill(fill("X1", 1200))
    assert m.stats.overfills == 0 and o.filled == 1200
    m.on_amend_ack(OrderAck("X1", o.client_order_id, 1200, 300))
    assert (o.state, o.price, o.remaining, o.count) == (S.PARTIALLY_FILLED, 4100, 300, 1500)
    m.on_fill(fill("X1", 400))                   # past the new total: that is an overfill
    assert m.stats.overfills == 1


def test_an_order_filled_whole_while_an_amend_to_more_travels_stays_open_until_the_amend_answers():
    m, _ = mgr()
    o = placed(m)
    m.request_amend("X1", 4100, 1500)
    m.on_fill(fill("X1", 1000))                  # the old size is all filled; the amend may add 5 more
    assert o.state is S.PENDING_AMEND and m.open_qty(T, "bid") == 500
    m.on_request_failed("X1", "post_only_cross")  # refused: nothing more rests
    assert o.state is S.FILLED and m.open_qty(T, "bid") == 0


@pytest.mark.parametrize("side, old, new", [("bid", 4000, 3500), ("ask", 4000, 4500), ("bid", 3500, 4000)])
def test_a_fill_reported_by_count_after_an_amend_is_risk_at_the_worst_price_the_order_held(side, old, new):
    # the amend's answer says 4 contracts filled; their fill message (at the price they filled at, which
    # may be the old one) comes later. Until then the event gate must count them at the worst price the
    # order has held: for a bid moved down from 40c the 4 contracts may have cost 40c, not 35c
    m, _ = mgr()
    o = placed(m, price=old, side=side)
    assert m.request_amend("X1", new, 1000) is o
    m.on_amend_ack(OrderAck("X1", o.client_order_id, 400, 600))
    assert o.price == new and o.remaining == 600
    worst = max(old, new) if side == "bid" else min(old, new)
    assert m.unbooked_in(T) == [(side, worst, 400)]
    assert m.on_fill(fill("X1", 400))
    assert m.unbooked_in(T) == []
    # the exchange's word on the price keeps the bound too
    m.on_user_order(uo("X1", o.client_order_id, "resting", 600, 400, price=new + (100 if side == "bid" else -100),
                       side=side))
    assert o.price_bound == (max(worst, o.price) if side == "bid" else min(worst, o.price))
