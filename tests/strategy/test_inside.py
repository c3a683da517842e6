from hypothesis import given
from hypothesis import strategies as st

from kmm._core.grid import Grid
from kmm.strategy.inside import inside_quotes

LIN = Grid()


def test_inside_improves_both_sides_by_one_tick_when_spread_is_wide():
    assert inside_quotes(LIN, 5600, 6000, 0, 500, 5000, 5000) == (5700, 500, 5900, 500)


def test_inside_stands_aside_when_spread_is_one_tick():
    assert inside_quotes(LIN, 5600, 5700, 0, 500, 5000, 5000) == (0, 0, 0, 0)


def test_inside_with_two_tick_spread_improves_only_the_inventory_reducing_side():
    assert inside_quotes(LIN, 5600, 5800, 0, 500, 5000, 5000) == (5700, 500, 0, 0)
    assert inside_quotes(LIN, 5600, 5800, 300, 500, 5000, 5000) == (0, 0, 5700, 500)


def test_inside_drops_the_bid_at_the_long_limit_and_cuts_size_near_it():
    assert inside_quotes(LIN, 5000, 6000, 5000, 500, 5000, 5000) == (0, 0, 5900, 500)
    assert inside_quotes(LIN, 5000, 6000, 4800, 500, 5000, 5000) == (5100, 200, 5900, 500)


def test_inside_uses_the_tick_in_force_on_a_tapered_grid():
    g = Grid("tapered_deci_cent")
    assert inside_quotes(g, 500, 800, 0, 100, 1000, 1000) == (510, 100, 790, 100)


@given(bb=st.integers(1, 98), width=st.integers(1, 20), inv=st.integers(-6000, 6000))
def test_inside_quotes_never_cross_the_book_or_each_other_and_respect_limits(bb, width, inv):
    best_bid, best_ask = bb * 100, min(99, bb + width) * 100
    bp, bs, ap, as_ = inside_quotes(LIN, best_bid, best_ask, inv, 500, 5000, 5000)
    if bs:
        assert LIN.is_valid(bp) and best_bid < bp < best_ask and inv + bs <= 5000
    if as_:
        assert LIN.is_valid(ap) and best_bid < ap < best_ask and inv - as_ >= -5000
    if bs and as_:
        assert bp < ap
