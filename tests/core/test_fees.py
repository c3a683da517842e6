import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm._core import fees
from tests.reference import fees as ref


def test_trade_fee_matches_kalshi_worked_example_ten_contracts_at_fifty_cents_taker():
    # 0.07 x 10 x 0.50 x 0.50 = $0.1750 before the cent rounding
    assert fees.trade_fee(1000, 5000, fees.TAKER_RATE_E6) == 1750


def test_trade_fee_rounds_up_to_the_ten_thousandth_of_a_dollar():
    # 0.07 x 1 x 0.01 x 0.99 = 0.000693 -> $0.0007
    assert fees.trade_fee(100, 100, fees.TAKER_RATE_E6) == 7
    # maker 0.0175 x 1 x 0.5 x 0.5 = 0.004375 -> $0.0044
    assert fees.trade_fee(100, 5000, fees.MAKER_RATE_E6) == 44


def test_fee_rate_depends_on_fee_type_and_role():
    assert fees.fee_rate_e6("quadratic", taker=True) == 70_000
    assert fees.fee_rate_e6("quadratic", taker=False) == 0
    assert fees.fee_rate_e6("quadratic_with_maker_fees", taker=False) == 17_500
    assert fees.fee_rate_e6("quadratic_with_maker_fees", taker=True, multiplier="0.5") == 35_000


def test_fee_rate_refuses_unknown_fee_type_with_a_clear_message():
    with pytest.raises(ValueError, match="flat"):
        fees.fee_rate_e6("flat", taker=True)
    with pytest.raises(ValueError, match="fee_multiplier"):
        fees.fee_rate_e6("quadratic", taker=True, multiplier="abc")


def test_trade_fee_rejects_out_of_range_input():
    with pytest.raises(ValueError, match="price"):
        fees.trade_fee(100, 10001, 70_000)
    with pytest.raises(ValueError, match="count"):
        fees.trade_fee(-1, 5000, 70_000)


def test_trade_fee_is_zero_at_the_price_bounds():
    assert fees.trade_fee(100_000, 0, 70_000) == 0
    assert fees.trade_fee(100_000, 10000, 70_000) == 0


@given(count=st.integers(0, 10**11), price=st.integers(0, 10000), rate=st.integers(0, 200_000))
def test_trade_fee_equals_exact_fraction_reference(count, price, rate):
    assert fees.trade_fee(count, price, rate) == ref.trade_fee(count, price, rate)


def test_cent_fee_charges_whole_cents_and_refunds_the_carry():
    charged, carry = fees.cent_fee(1750, 0)
    assert (charged, carry) == (1800, 50)
    charged2, carry2 = fees.cent_fee(1750, carry)
    assert (charged2, carry2) == (1700, 0)


@given(st.lists(st.integers(0, 10**7), max_size=40))
def test_cent_fee_total_charged_minus_carry_equals_exact_fees(fills):
    carry = 0
    total = 0
    for f in fills:
        expected = ref.cent_fee(f, carry)
        charged, carry = fees.cent_fee(f, carry)
        assert (charged, carry) == expected
        assert charged % 100 == 0 and 0 <= carry < 100
        total += charged
    assert total - carry == sum(fills)
