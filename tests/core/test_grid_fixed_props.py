"""Property tests of kmm._core.grid and kmm._core.fixed against the simple references in
tests/reference/book.py (next to the example tests in test_grid_fixed.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kmm._core.fixed import format_count, format_price, parse_count, parse_money, parse_price, parse_signed_count
from kmm._core.grid import Grid
from tests.reference.book import RefGrid, parse_fixed

STRUCTURES = ["linear_cent", "deci_cent", "tapered_deci_cent"]
decimal_texts = st.one_of(
    st.text(alphabet="0123456789.-+", max_size=8),
    st.builds(lambda s, w, f: s + w + f, st.sampled_from(["", "-", "+"]), st.text("0123456789", max_size=18),
              st.sampled_from(["", "."]).flatmap(lambda d: st.just(d) if not d else
                                                  st.text("0123456789", max_size=5).map(lambda x: "." + x))),
    st.text(max_size=6),
)


def compiled(fn, text):
    try:
        return fn(text)
    except ValueError:
        return None


@given(decimal_texts)
def test_parse_functions_match_reference_parser(text):
    assert compiled(parse_price, text) == parse_fixed(text, 4, False)
    assert compiled(parse_count, text) == parse_fixed(text, 2, False)
    assert compiled(parse_signed_count, text) == parse_fixed(text, 2, True)
    assert compiled(parse_money, text) == parse_fixed(text, 4, True)


@given(st.integers(-(10**15), 10**15))
def test_format_then_parse_round_trips(v):
    assert parse_money(format_price(v)) == v and parse_signed_count(format_count(v)) == v


@given(st.sampled_from(STRUCTURES), st.integers(-50, 10050))
def test_grid_matches_reference_validity_and_snapping(structure, price):
    g, r = Grid(structure), RefGrid(structure)
    assert g.is_valid(price) == (price in r.valid)
    assert g.snap_down(price) == r.snap_down(price)
    assert g.snap_up(price) == r.snap_up(price)
    assert g.tick_up(price) == r.snap_up(price + 1) and g.tick_down(price) == r.snap_down(price - 1)


@given(st.sampled_from(STRUCTURES))
def test_grid_prices_match_reference(structure):
    assert Grid(structure).prices() == RefGrid(structure).prices
