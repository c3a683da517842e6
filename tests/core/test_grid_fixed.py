import pytest

from kmm._core.fixed import format_count, format_price, parse_count, parse_price, parse_signed_count
from kmm._core.grid import Grid


@pytest.mark.parametrize("text,value", [("0.4275", 4275), ("1", 10000), ("0.5", 5000), ("1.0000", 10000),
                                        ("0.0001", 1)])
def test_parse_price_reads_dollar_strings_into_ten_thousandths(text, value):
    assert parse_price(text) == value


@pytest.mark.parametrize("bad", ["", ".", "-0.10", "0.42751", "abc", "1.2.3", "+", " 0.1"])
def test_parse_price_rejects_malformed_strings_naming_the_value(bad):
    with pytest.raises(ValueError, match="price"):
        parse_price(bad)


def test_counts_round_trip_through_two_decimal_strings():
    assert parse_count("10.00") == 1000
    assert parse_signed_count("-5.00") == -500
    assert format_count(1000) == "10.00" and format_count(5) == "0.05" and format_count(-500) == "-5.00"
    assert format_price(4275) == "0.4275" and format_price(0) == "0.0000"
    for v in range(0, 10001, 7):
        assert parse_price(format_price(v)) == v


def test_grid_linear_cent_has_99_prices_and_snaps_bids_down_asks_up():
    g = Grid()
    assert len(g.prices()) == 99 and g.min_price == 100 and g.max_price == 9900
    assert g.snap_down(4275) == 4200 and g.snap_up(4275) == 4300
    assert g.is_valid(4200) and not g.is_valid(4210) and not g.is_valid(0) and not g.is_valid(10000)


def test_grid_tapered_deci_cent_uses_tenth_cent_steps_only_in_the_tails():
    g = Grid("tapered_deci_cent")
    assert g.is_valid(950) and g.is_valid(9950) and not g.is_valid(5050)
    assert g.tick_size(500) == 10 and g.tick_size(5000) == 100 and g.tick_size(9950) == 10
    assert g.snap_up(5010) == 5100 and g.snap_down(955) == 950


def test_grid_accepts_market_dicts_and_rejects_bad_ranges_with_clear_messages():
    g = Grid([{"start": "0.0000", "end": "1.0000", "step": "0.0010"}])
    assert g.step_min == 10 and len(g.prices()) == 999
    with pytest.raises(ValueError, match="step"):
        Grid([("0.0000", "1.0000", "0.0000")])
    with pytest.raises(ValueError, match="lacks"):
        Grid([{"start": "0.0000", "end": "1.0000"}])
    with pytest.raises(ValueError, match="price_level_structure"):
        Grid("quarter_cent")
