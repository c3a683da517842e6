"""Wire parsing and the price grids, independent of the client's parser."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm.sim.wire import WireError, fmt_count, fmt_money, fmt_price, grid_prices, on_grid, parse_count, parse_price


def test_parse_price_reads_four_decimals_as_ten_thousandths():
    assert parse_price("0.4275") == 4275
    assert parse_price("0.56") == 5600
    assert parse_price(".5") == 5000


@pytest.mark.parametrize("bad", ["0.42751", "1.0000", "0", "-0.5", "abc", "", "0.", 56, None, True])
def test_parse_price_rejects_malformed_or_out_of_range_values(bad):
    with pytest.raises(WireError) as e:
        parse_price(bad)
    assert e.value.field == "price"


def test_parse_count_accepts_zero_to_two_decimals_and_whole_ints():
    assert parse_count("10") == 1000
    assert parse_count("10.5") == 1050
    assert parse_count("0.01") == 1
    assert parse_count(3) == 300


@pytest.mark.parametrize("bad", ["1.001", "-1", "1e3", "1,0", [], 1.5])
def test_parse_count_rejects_more_than_two_decimals_and_non_numbers(bad):
    with pytest.raises(WireError):
        parse_count(bad)


@given(st.integers(1, 9999))
def test_fmt_price_round_trips_through_parse_price(p):
    assert parse_price(fmt_price(p)) == p


@given(st.integers(-10**9, 10**9))
def test_fmt_count_and_money_keep_sign_and_fixed_decimals(v):
    assert fmt_count(v).split(".")[1].__len__() == 2
    assert fmt_money(v).split(".")[1].__len__() == 4
    assert fmt_count(v).startswith("-") == (v < 0)


def test_grids_have_documented_sizes_and_steps():
    assert len(grid_prices("linear_cent")) == 99
    assert len(grid_prices("deci_cent")) == 999
    taper = grid_prices("tapered_deci_cent")
    assert 10 in taper and 990 in taper and 1000 in taper and 1100 in taper and 9010 in taper
    assert 1010 not in taper and 8990 not in taper
    assert len(taper) == 100 + 79 + 100  # 0.001..0.100, 0.11..0.89, 0.900..0.999


@pytest.mark.parametrize("structure,price,ok", [
    ("linear_cent", 4500, True), ("linear_cent", 4510, False), ("linear_cent", 9950, False),
    ("deci_cent", 4510, True), ("deci_cent", 4515, False), ("deci_cent", 9990, True),
    ("tapered_deci_cent", 550, True), ("tapered_deci_cent", 5050, False), ("tapered_deci_cent", 5000, True),
    ("tapered_deci_cent", 9550, True),
])
def test_on_grid_follows_the_market_structure(structure, price, ok):
    assert on_grid(structure, price) is ok
