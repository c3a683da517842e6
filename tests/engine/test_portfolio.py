"""Portfolio: netting, cost basis, realized/unrealized P&L, fees with cent carry, settlement, checks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm._core.fees import fee_rate_e6, trade_fee
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill, MarketPosition

T = "KXTEST-1"
_ids = itertools.count()


def fill(side: str, price: int, count: int, fee: int = 0, order_id: str = "o1", *,
         ticker: str = T, trade_id: str | None = None, post: int | None = None) -> Fill:
    return Fill(trade_id or f"t{next(_ids)}", order_id, None, ticker, side, price, count, fee,
                False, post, 0)


# ---------------------------------------------------------------- worked examples (module doc)

def test_buy_yes_opens_long_at_cost_and_takes_cash():
    p = Portfolio(cash=1_000_000)
    assert p.apply_fill(fill("bid", 4000, 1000))
    assert p.position(T) == 1000
    assert p.position_cost(T) == 40_000           # 10 x $0.40
    assert p.average_price(T) == 4000
    assert p.cash == 960_000
    assert p.realized_pnl(T) == 0


def test_sell_yes_to_close_realizes_pnl_at_average_cost():
    p = Portfolio(cash=1_000_000)
    p.apply_fill(fill("bid", 4000, 1000))
    p.apply_fill(fill("ask", 5500, 400))
    assert p.position(T) == 600
    assert p.position_cost(T) == 24_000
    assert p.realized_pnl(T) == 6_000             # 4 x (0.55 - 0.40)
    assert p.cash == 982_000


def test_ask_through_zero_closes_yes_then_opens_no_at_one_minus_price():
    p = Portfolio(cash=1_000_000)
    p.apply_fill(fill("bid", 4000, 1000))
    p.apply_fill(fill("ask", 5500, 400))
    p.apply_fill(fill("ask", 5000, 1000))        # sells the 6 YES, buys 4 NO at 0.50
    assert p.position(T) == -400
    assert p.realized_pnl(T) == 12_000            # +0.60 + (6 x 0.50 - 2.40)
    assert p.position_cost(T) == 20_000           # 4 x (1 - 0.50)
    assert p.cash == 992_000
    p.apply_fill(fill("bid", 3000, 400))          # buy YES while short: sells NO at 0.70
    assert p.position(T) == 0
    assert p.position_cost(T) == 0
    assert p.realized_pnl(T) == 20_000            # + 4 x 0.70 - 2.00
    assert p.cash == 1_020_000                    # flat: cash moved by exactly the realized P&L


def test_buying_no_from_flat_costs_one_minus_yes_price():
    p = Portfolio(cash=100_000)
    p.apply_fill(fill("ask", 3000, 1000))         # buy 10 NO at 0.70
    assert p.position(T) == -1000
    assert p.position_cost(T) == 70_000
    assert p.average_price(T) == 3000             # YES terms
    assert p.cash == 30_000


def test_buying_no_while_long_yes_reduces_yes_position():
    p = Portfolio()
    p.apply_fill(fill("bid", 6000, 500))
    p.apply_fill(fill("ask", 6500, 200))          # buy 2 NO at 0.35 == sell 2 YES at 0.65
    assert p.position(T) == 300
    assert p.realized_pnl(T) == 1_000


def test_average_cost_blends_two_buys():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000))
    p.apply_fill(fill("bid", 5000, 1000))
    assert p.average_price(T) == 4500
    p.apply_fill(fill("ask", 5000, 1000))
    assert p.realized_pnl(T) == 5_000             # 10 x (0.50 - 0.45)
    assert p.position_cost(T) == 45_000


def test_fees_on_one_order_are_charged_in_cents_with_carry_and_paid_exactly():
    rate = fee_rate_e6("quadratic", True)
    fee = trade_fee(1000, 5000, rate)
    assert fee == 1750                            # $0.175 for 10 at $0.50
    p = Portfolio(cash=1_000_000)
    p.apply_fill(fill("bid", 5000, 1000, fee, "A"))
    assert p.fees_paid(T) == 1750
    assert p.cash == 1_000_000 - 50_000 - 1800    # rounded up to $0.18
    p.apply_fill(fill("bid", 5000, 1000, fee, "A"))
    assert p.fees_paid(T) == 3500
    assert p.fees_charged() == 3500               # the carried half cent came back
    assert p.cash == 1_000_000 - 100_000 - 3500


def test_fees_on_separate_orders_each_round_up():
    p = Portfolio(cash=1_000_000)
    p.apply_fill(fill("bid", 5000, 1000, 1750, "A"))
    p.apply_fill(fill("bid", 5000, 1000, 1750, "B"))
    assert p.fees_paid(T) == 3500
    assert p.fees_charged() == 3600


def test_exact_cash_rounding_charges_exact_fee():
    p = Portfolio(cash=1_000_000, cash_rounding="exact")
    p.apply_fill(fill("bid", 5000, 1000, 1750, "A"))
    assert p.cash == 1_000_000 - 50_000 - 1750


def test_settle_yes_pays_one_dollar_per_long_contract():
    p = Portfolio(cash=100_000)
    p.apply_fill(fill("bid", 4000, 1000))
    paid = p.settle(T, "yes")
    assert paid == 100_000
    assert p.position(T) == 0 and p.position_cost(T) == 0
    assert p.realized_pnl(T) == 60_000
    assert p.cash == 160_000


def test_settle_yes_pays_nothing_to_no_holders():
    p = Portfolio(cash=100_000)
    p.apply_fill(fill("ask", 3000, 1000))         # 10 NO at 0.70
    assert p.settle(T, "yes") == 0
    assert p.realized_pnl(T) == -70_000
    assert p.cash == 30_000


def test_settle_no_pays_no_holders():
    p = Portfolio(cash=100_000)
    p.apply_fill(fill("ask", 3000, 1000))
    assert p.settle(T, "no") == 100_000
    assert p.realized_pnl(T) == 30_000
    assert p.cash == 130_000


def test_settle_scalar_fractional_payout_rounds_down_to_cent_and_books_settlement_fee():
    p = Portfolio(cash=0)
    p.apply_fill(fill("bid", 3000, 55))           # 0.55 contracts at 0.30: cost 0.165
    paid = p.settle(T, 3333)                      # exact payout 0.55 x 0.3333 = 0.183315
    assert paid == 1800
    assert p.fees_paid(T) == 33                   # 0.003315 rounded to 1e-4 $
    assert p.identity_residual_e6() == 0


def test_settle_rejects_unknown_result():
    with pytest.raises(ValueError, match="result"):
        Portfolio().settle(T, "maybe")


def test_duplicate_trade_id_is_booked_once():
    p = Portfolio()
    f = fill("bid", 4000, 1000, 100)
    assert p.apply_fill(f)
    assert not p.apply_fill(f)
    assert p.position(T) == 1000
    assert p.fees_paid(T) == 100
    assert p.duplicate_fills == 1


def test_malformed_fill_is_refused_and_counted():
    p = Portfolio()
    assert not p.apply_fill(fill("yes", 4000, 1000))
    assert not p.apply_fill(fill("bid", 4000, 0))
    assert p.rejected_fills == 2
    assert p.position(T) == 0


def test_post_position_disagreement_is_counted():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000, post=1000))
    assert p.position_mismatches == 0
    p.apply_fill(fill("bid", 4000, 1000, post=2500))
    assert p.position_mismatches == 1


# ---------------------------------------------------------------- marks

def test_unrealized_conservative_marks_long_at_bid_and_short_at_ask():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000))
    p.set_mark(T, 4500, 4700)
    assert p.unrealized_pnl(T) == 5_000
    q = Portfolio()
    q.apply_fill(fill("ask", 3000, 1000))         # NO cost 7.00
    q.set_mark(T, 3100, 3200)
    assert q.unrealized_pnl(T) == 68_000 - 70_000


def test_unrealized_mid_mark_uses_mid():
    p = Portfolio(mark="mid")
    p.apply_fill(fill("bid", 4000, 1000))
    p.set_mark(T, 4500, 4700)
    assert p.unrealized_pnl(T) == 6_000


def test_unrealized_falls_back_to_last_mark_then_cost_when_book_empty():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000))
    assert p.unrealized_pnl(T) == 0               # never marked: at cost
    p.set_mark(T, 4200, None)
    assert p.unrealized_pnl(T) == 2_000
    p.set_mark(T, None, None)
    assert p.unrealized_pnl(T) == 2_000           # last price used
    p.set_mark(T, None, 4600)
    assert p.unrealized_pnl(T) == 6_000           # only the ask: used as the mid


def test_total_pnl_is_realized_plus_unrealized_minus_fees():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000, 200))
    p.apply_fill(fill("ask", 4500, 500, 100))
    p.set_mark(T, 4400, 4600)
    assert p.total_pnl() == 2_500 + 2_000 - 300
    assert p.total_pnl(net_of_fees=False) == 4_500


# ---------------------------------------------------------------- checks against the exchange

def test_check_against_reports_agreement():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000, 70))
    p.apply_fill(fill("ask", 5500, 400, 70))
    chk = p.check_against(MarketPosition(T, 600, 24_000, 6_000, 140, volume=1400))
    assert chk.ok, str(chk)
    assert "agrees" in str(chk)


def test_check_against_names_each_mismatched_field():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000, 70))
    chk = p.check_against(MarketPosition(T, 900, 36_000, 0, 70))
    assert not chk.ok
    assert {m.field for m in chk.mismatches} == {"position", "position_cost"}
    assert "disagrees" in str(chk)


def test_check_against_with_realized_including_fees():
    p = Portfolio()
    p.apply_fill(fill("bid", 4000, 1000, 70))
    p.apply_fill(fill("ask", 5000, 1000, 70))
    assert p.check_against(MarketPosition(T, 0, 0, 9_860, 140), realized_includes_fees=True).ok
    assert not p.check_against(MarketPosition(T, 0, 0, 9_860, 140)).ok


def test_load_position_then_trade_agrees_with_exchange():
    p = Portfolio()
    p.load_position(MarketPosition(T, -500, 30_000, 1_000, 50, volume=500))
    p.set_cash(200_000)
    p.apply_fill(fill("bid", 3000, 500))          # closes 5 NO: sells them at 0.70
    assert p.position(T) == 0
    assert p.realized_pnl(T) == 1_000 + 35_000 - 30_000
    assert p.cash == 235_000
    assert p.identity_residual_e6() == 0


def test_check_balance_reports_cent_difference():
    p = Portfolio(cash=500_000)
    p.apply_fill(fill("bid", 5000, 1000, 1750, "A"))
    assert p.check_balance(448_200).ok
    chk = p.check_balance(448_300)
    assert not chk.ok and chk.diff == -100
    assert p.check_balance(448_300, tolerance=100).ok


def test_bad_mark_mode_is_refused():
    with pytest.raises(ValueError, match="mark"):
        Portfolio(mark="last")


# ---------------------------------------------------------------- properties

fills_st = st.lists(
    st.tuples(st.sampled_from(["bid", "ask"]), st.integers(1, 9999), st.integers(1, 3000),
              st.integers(0, 400), st.sampled_from(["A", "B", "C"])),
    min_size=1, max_size=40)


@given(fills_st, st.sampled_from(["cent", "exact"]))
def test_random_fills_keep_position_identity_and_exact_fees(seq, rounding):
    p = Portfolio(cash=10_000_000, cash_rounding=rounding)
    signed = 0
    for side, price, count, fee, oid in seq:
        p.apply_fill(fill(side, price, count, fee, oid))
        signed += count if side == "bid" else -count
        assert p.position(T) == signed
        assert p.identity_residual_e6() == 0
        assert p._markets[T].cost_e6 >= 0
        if signed == 0:
            assert p._markets[T].cost_e6 == 0
    assert p.fees_paid(T) == sum(f[3] for f in seq)
    carries = sum(p._carry.values()) if rounding == "cent" else 0
    assert p.fees_charged() - carries == p.fees_paid(T)


@given(fills_st, st.sampled_from(["yes", "no"]))
def test_random_fills_then_settlement_realize_the_yes_leg_cash_flows(seq, result):
    """Independent reference: in YES terms every bid pays count x p, every ask receives count x p,
    and settlement pays the signed position x value. After settlement the realized P&L equals it."""
    p = Portfolio(cash=0, cash_rounding="exact")
    flow_e6 = 0
    q = 0
    for side, price, count, _fee, oid in seq:
        p.apply_fill(fill(side, price, count, 0, oid))
        flow_e6 += -count * price if side == "bid" else count * price
        q += count if side == "bid" else -count
    value = 10_000 if result == "yes" else 0
    p.settle(T, result)
    flow_e6 += q * value
    assert p._markets[T].realized_e6 == flow_e6
    assert p._cash_e6 == flow_e6


@given(fills_st)
def test_random_fills_value_identity_at_mark(seq):
    """cash + position value at a mark == initial + realized + unrealized - fees charged."""
    p = Portfolio(cash=10_000_000, mark="mid")
    for side, price, count, fee, oid in seq:
        p.apply_fill(fill(side, price, count, fee, oid))
    p.set_mark(T, 5000, 5000)
    m = p._markets[T]
    value_e6 = m.position * 5000 if m.position > 0 else -m.position * 5000
    lhs = p._cash_e6 + value_e6
    rhs = 10_000_000 * 100 + m.realized_e6 + p._unrealized_e6(m) - m.fees_charged_e6
    assert lhs == rhs


def test_check_against_accepts_sub_cent_cost_rounding_but_not_a_cent_or_any_fee_difference():
    pf = Portfolio()
    pf.apply_fill(fill("bid", 4000, 300, fee=50))
    pf.apply_fill(fill("ask", 4500, 100, order_id="o2"))
    cost, realized, fees = pf.position_cost(T), pf.realized_pnl(T), pf.fees_paid(T)
    assert pf.check_against(MarketPosition(T, 200, cost + 1, realized - 1, fees)).ok
    assert pf.check_against(MarketPosition(T, 200, cost + 99, realized, fees)).ok
    assert not pf.check_against(MarketPosition(T, 200, cost + 100, realized, fees)).ok
    assert not pf.check_against(MarketPosition(T, 200, cost, realized - 100, fees)).ok
    assert not pf.check_against(MarketPosition(T, 200, cost, realized, fees + 1)).ok
    assert not pf.check_against(MarketPosition(T, 201, cost, realized, fees)).ok
