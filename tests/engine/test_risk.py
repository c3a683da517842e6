"""Risk gate: fat finger, limits, reduce-only, kill switch with hysteresis, stale data, back-off, close."""

from __future__ import annotations

import itertools

import pytest

from kmm._core.grid import Grid
from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import KillState, RiskGate, RiskLimits
from kmm.errors import RiskRejected
from kmm.kalshi.types import Fill

T = "KXTEST-1"
_tid = itertools.count()


def setup(**limits):
    clock = ManualClock()
    pf = Portfolio(cash=10_000_000)
    om = OrderManager(clock, session="r")
    gate = RiskGate(RiskLimits(**limits), clock, pf, om)
    gate.add_market(T, Grid("linear_cent"))
    gate.on_book_update(T)
    return gate, clock, pf, om


def buy(pf: Portfolio, count: int, price: int = 5000, side: str = "bid", fee: int = 0) -> None:
    pf.apply_fill(Fill(f"t{next(_tid)}", "o", None, T, side, price, count, fee, False, None, 0))


def test_ordinary_order_is_allowed():
    gate, *_ = setup()
    d = gate.check_place(T, "bid", 4500, 1000)
    assert d.allowed and d.reason == "ok"


# ---------------------------------------------------------------- fat finger

@pytest.mark.parametrize("side,price,count,reason", [
    ("buy", 4500, 100, "bad_side"),
    ("bid", 4500, 0, "bad_size"),
    ("bid", 4500, 10_100, "max_order_size"),
    ("bid", 4500, 150, "fractional_size"),
    ("bid", 50, 100, "price_range"),
    ("ask", 9950, 100, "price_range"),
    ("bid", 4550, 100, "off_grid"),
])
def test_fat_finger_denials_name_the_problem(side, price, count, reason):
    gate, *_ = setup()
    d = gate.check_place(T, side, price, count)
    assert not d.allowed and d.reason == reason and d.fat_finger
    assert T in d.detail


def test_notional_limit_uses_cost_of_the_side():
    gate, *_ = setup(max_order_notional=50_000)           # $5
    assert gate.check_place(T, "bid", 5000, 1000).allowed  # 10 x 0.50 = $5
    assert gate.check_place(T, "bid", 5100, 1000).reason == "max_order_notional"
    assert gate.check_place(T, "ask", 5100, 1000).allowed  # NO leg costs 10 x 0.49


def test_require_place_raises_risk_rejected_with_where_and_what_to_do():
    gate, *_ = setup()
    with pytest.raises(RiskRejected, match=r"max_order_size: bid 20000 @ 4500 on KXTEST-1.*raise"):
        gate.require_place(T, "bid", 4500, 20_000)


def test_fractional_market_accepts_fractional_size():
    gate, *_ = setup()
    gate.add_market("KXFRAC", Grid("deci_cent"), fractional=True)
    gate.on_book_update("KXFRAC")
    assert gate.check_place("KXFRAC", "bid", 4550, 150).allowed


# ---------------------------------------------------------------- market gates

def test_unknown_market_is_denied():
    gate, *_ = setup()
    assert gate.check_place("KXNOPE", "bid", 4500, 100).reason == "unknown_market"


def test_stale_flag_blocks_places_but_never_cancels():
    gate, *_ = setup()
    gate.set_book_stale(T)
    assert gate.check_place(T, "bid", 4500, 100).reason == "stale_book"
    assert gate.check_cancel(T, "X1").allowed
    assert gate.check_decrease(T, "X1").allowed
    gate.on_book_update(T)
    assert gate.check_place(T, "bid", 4500, 100).allowed


def test_book_silent_longer_than_stale_after_blocks_places():
    gate, clock, *_ = setup(stale_after_s=5.0)
    clock.advance(5.0)
    assert gate.check_place(T, "bid", 4500, 100).allowed
    clock.advance(0.001)
    assert gate.check_place(T, "bid", 4500, 100).reason == "stale_book"


def test_new_market_is_stale_until_first_book():
    gate, *_ = setup()
    gate.add_market("KXB", Grid())
    assert gate.check_place("KXB", "bid", 4500, 100).reason == "stale_book"


def test_exchange_and_market_pause_block_places():
    gate, *_ = setup()
    gate.set_exchange_paused(True)
    assert gate.check_place(T, "bid", 4500, 100).reason == "exchange_paused"
    gate.set_exchange_paused(False)
    gate.set_market_paused(T, True)
    assert gate.check_place(T, "bid", 4500, 100).reason == "market_paused"
    assert not gate.is_quotable(T)


def test_near_close_stops_quoting_and_earlier_allows_only_reductions():
    gate, clock, pf, _ = setup(stop_before_close_s=60, reduce_only_before_close_s=600)
    gate.set_close_time(T, clock.time_ns() + 1000 * NS_PER_S)
    assert gate.check_place(T, "bid", 4500, 100).allowed
    buy(pf, 500)
    clock.advance(401)                                      # 599 s to close: reduce-only
    gate.on_book_update(T)
    assert gate.check_place(T, "bid", 4500, 100).reason == "reduce_only"
    assert gate.check_place(T, "ask", 4500, 500).allowed
    assert gate.check_place(T, "ask", 4500, 600).reason == "reduce_only"   # would flip to NO
    clock.advance(540)                                      # 59 s to close
    gate.on_book_update(T)
    assert gate.check_place(T, "ask", 4500, 100).reason == "near_close"
    assert gate.check_cancel(T).allowed


# ---------------------------------------------------------------- 429 back-off

def _gate_with_limiter(base_s=0.5, max_s=2.0):
    from kmm.kalshi.limiter import PLACE, RateLimiter
    gate, clock, *_ = setup()
    lim = RateLimiter(100, 100, backoff_base_s=base_s, backoff_max_s=max_s, clock_ns=clock.monotonic_ns)
    gate.backoff = lim
    return gate, clock, lim, PLACE


def test_rate_limit_back_off_is_the_limiters_and_the_gate_reads_it():
    """One back-off: the limiter's. It doubles per pause up to its cap and resets after a success;
    the gate holds places (not cancels) exactly while the limiter pauses them."""
    gate, clock, lim, PLACE = _gate_with_limiter()
    assert not hasattr(gate, "on_rate_limited")            # no second back-off in the gate
    assert lim.on_rate_limited(PLACE) == 0.5 * NS_PER_S
    assert gate.check_place(T, "bid", 4500, 100).reason == "rate_limited"
    assert gate.backoff_level == 1
    assert gate.check_cancel(T).allowed
    clock.advance(0.2)
    assert lim.on_rate_limited(PLACE) == pytest.approx(0.3 * NS_PER_S)   # same burst: not doubled
    clock.advance(0.3)
    assert lim.on_rate_limited(PLACE) == 1.0 * NS_PER_S
    clock.advance(1.0)
    assert lim.on_rate_limited(PLACE) == 2.0 * NS_PER_S
    clock.advance(2.0)
    assert lim.on_rate_limited(PLACE) == 2.0 * NS_PER_S                  # capped
    clock.advance(1.9)
    gate.on_book_update(T)
    assert not gate.check_place(T, "bid", 4500, 100)
    clock.advance(0.1)
    assert gate.check_place(T, "bid", 4500, 100).allowed                # recovers the moment it ends
    assert gate.backoff_level == 0
    lim.on_success(PLACE)
    assert lim.on_rate_limited(PLACE) == 0.5 * NS_PER_S


def test_amend_is_held_by_backoff():
    gate, clock, lim, PLACE = _gate_with_limiter()
    lim.on_rate_limited(PLACE)
    assert gate.check_amend(T, "bid", 4500, 100, 100).reason == "rate_limited"


def test_reduce_only_reason_says_why_and_the_gate_passes_a_quote_sized_to_the_position():
    gate, clock, pf, _ = setup(max_position=1000, reduce_only_at=0.5)
    buy(pf, 600)                                                        # 6 contracts, limit 10
    assert gate.reduce_only_reason(T) == "position near its limit"
    assert gate.check_place(T, "ask", 4500, 1000).reason == "reduce_only"   # 10 > position: refused
    assert gate.check_place(T, "ask", 4500, 600).allowed                    # sized to it: passes


# ---------------------------------------------------------------- open orders and positions

def test_open_order_limits_per_market_and_total():
    gate, clock, pf, om = setup(max_open_orders_per_market=2, max_open_orders_total=3)
    gate.add_market("KXB", Grid())
    gate.on_book_update("KXB")
    om.create(T, "bid", 4000, 100)
    om.create(T, "ask", 6000, 100)
    assert gate.check_place(T, "bid", 3900, 100).reason == "max_open_orders"
    om.create("KXB", "bid", 4000, 100)
    assert gate.check_place("KXB", "bid", 3900, 100).reason == "max_open_orders_total"


def test_position_limit_counts_resting_orders_on_the_same_side():
    gate, clock, pf, om = setup(max_position=2000, reduce_only_at=1.0)
    buy(pf, 1000)
    om.create(T, "bid", 4000, 500)
    assert gate.check_place(T, "bid", 4000, 500).allowed            # worst case 2000
    assert gate.check_place(T, "bid", 4000, 600).reason == "max_position"
    assert gate.check_place(T, "ask", 4000, 3000).allowed           # NO side: worst -2000


def test_per_market_position_limit_overrides_default():
    gate, *_ = setup(max_position=10_000, per_market_max_position={T: 500}, reduce_only_at=1.0)
    assert gate.check_place(T, "bid", 4000, 500).allowed
    assert gate.check_place(T, "bid", 4000, 600).reason == "max_position"


def test_total_position_limit_across_markets():
    gate, clock, pf, om = setup(max_total_position=1500, reduce_only_at=1.0)
    buy(pf, 1000)
    gate.add_market("KXB", Grid())
    gate.on_book_update("KXB")
    assert gate.check_place("KXB", "bid", 4000, 500).allowed
    assert gate.check_place("KXB", "bid", 4000, 600).reason == "max_total_position"


def test_reduce_only_near_position_limit_allows_only_reductions():
    gate, clock, pf, om = setup(max_position=1000, reduce_only_at=0.9)
    buy(pf, 900)
    assert gate.check_place(T, "bid", 4000, 100).reason == "reduce_only"
    assert gate.check_place(T, "ask", 4000, 900).allowed
    om.create(T, "ask", 4100, 600)                                   # already reducing 6
    assert gate.check_place(T, "ask", 4000, 400).reason == "reduce_only"
    assert gate.check_place(T, "ask", 4000, 300).allowed


def test_amend_replaces_old_remaining_in_position_check():
    gate, clock, pf, om = setup(max_position=1000, reduce_only_at=1.0)
    o = om.create(T, "bid", 4000, 800)
    assert gate.check_amend(T, "bid", 4100, 1000, o.remaining).allowed
    assert gate.check_amend(T, "bid", 4100, 1100, o.remaining).reason == "max_position"


# ---------------------------------------------------------------- kill switch

def test_loss_limit_trips_then_pauses_and_rearms_only_after_recovery_and_cooldown():
    gate, clock, pf, _ = setup(max_loss=50_000, resume_recovery=10_000, cooldown_s=60,
                               auto_resume=True, loss_reduce_only_at=1.0)
    buy(pf, 10_000, 5000)                      # 100 YES at 0.50
    pf.set_mark(T, 4400, 4500)                 # -0.06 x 100 = -$6
    assert gate.update_pnl() is KillState.TRIPPED
    assert gate.check_place(T, "ask", 4500, 100).reason == "kill_switch"
    assert gate.check_cancel(T).allowed
    gate.on_cancel_sweep_done()
    assert gate.kill_state is KillState.PAUSED
    pf.set_mark(T, 4550, 4600)                 # -$4.50: inside the limit but not by $1 more
    clock.advance(120)
    assert gate.update_pnl() is KillState.PAUSED
    pf.set_mark(T, 4600, 4700)                 # -$4.00: recovered by $1
    assert gate.update_pnl() is KillState.ARMED


def test_cooldown_must_elapse_before_rearming():
    gate, clock, pf, _ = setup(max_loss=50_000, resume_recovery=10_000, cooldown_s=60,
                               auto_resume=True)
    buy(pf, 10_000, 5000)
    pf.set_mark(T, 4400, 4500)
    gate.update_pnl()
    gate.on_cancel_sweep_done()
    pf.set_mark(T, 5000, 5010)                 # fully recovered
    clock.advance(59)
    assert gate.update_pnl() is KillState.PAUSED
    clock.advance(1)
    assert gate.update_pnl() is KillState.ARMED


def test_without_auto_resume_only_operator_rearms():
    gate, clock, pf, _ = setup(max_loss=50_000, auto_resume=False)
    buy(pf, 10_000, 5000)
    pf.set_mark(T, 4400, 4500)
    gate.update_pnl()
    gate.on_cancel_sweep_done()
    pf.set_mark(T, 5000, 5010)
    clock.advance(10_000)
    assert gate.update_pnl() is KillState.PAUSED
    gate.operator_resume()
    assert gate.kill_state is KillState.ARMED


def test_tripped_state_does_not_auto_resume_before_cancel_sweep():
    gate, clock, pf, _ = setup(max_loss=50_000, auto_resume=True, cooldown_s=0)
    buy(pf, 10_000, 5000)
    pf.set_mark(T, 4400, 4500)
    gate.update_pnl()
    pf.set_mark(T, 5000, 5010)
    assert gate.update_pnl() is KillState.TRIPPED


def test_loss_near_limit_switches_to_reduce_only():
    gate, clock, pf, _ = setup(max_loss=50_000, loss_reduce_only_at=0.8)
    buy(pf, 10_000, 5000)
    pf.set_mark(T, 4550, 4600)                 # -$4.50 = 90% of the limit
    assert gate.update_pnl() is KillState.ARMED
    assert gate.check_place(T, "bid", 4500, 100).reason == "reduce_only"
    assert gate.check_place(T, "ask", 4600, 100).allowed


def test_operator_trip_blocks_places():
    gate, *_ = setup()
    gate.trip("operator")
    assert gate.check_place(T, "bid", 4500, 100).reason == "kill_switch"
    assert gate.denials["kill_switch"] == 1


def test_loss_limit_counts_only_this_sessions_pnl_after_the_baseline():
    gate, clock, pf, om = setup(max_loss=1000)
    buy(pf, 1000, 5000)
    pf.set_mark(T, 3000, 3100)          # the account lost $2 before this session started
    gate.set_pnl_baseline()
    assert gate.update_pnl() is KillState.ARMED and gate.last_pnl == 0
    pf.set_mark(T, 2999, 3100)          # this session: -$0.001 (10 contracts x $0.0001)
    assert gate.update_pnl() is KillState.ARMED and gate.last_pnl == -10
    pf.set_mark(T, 2800, 2900)          # this session: -$0.20, past max_loss = $0.10
    assert gate.update_pnl() is KillState.TRIPPED
