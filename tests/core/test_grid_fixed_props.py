"""Property tests of kmm._core.grid and kmm._core.fixed against the simple references in
tests/reference/book.py (next to the example tests in test_grid_fixed.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kmm._core.fixed import format_count, format_price, parse_count, parse_money, parse_price, parse_signed_count
from kmm._core.grid import Grid
from kmm._core.grid import STRUCTURES as GRID_STRUCTURES
from tests.reference.book import STRUCTURES as REF_STRUCTURES
from tests.reference.book import RefGrid, parse_fixed

STRUCTURES = sorted(REF_STRUCTURES)  # the twelve of kalshi-api.md section 2.2
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


def test_the_twelve_structures_are_known_by_name():
    assert len(STRUCTURES) == 12 and sorted(GRID_STRUCTURES) == STRUCTURES


@given(st.sampled_from(STRUCTURES), st.integers(0, 10000))
def test_grid_from_wire_ranges_matches_the_name_and_the_reference(structure, price):
    """Prices snap to price_ranges: the same ranges under a name kmm never heard of give the same grid."""
    wire = [{"start": a, "end": b, "step": c} for a, b, c in REF_STRUCTURES[structure]]
    g, r = Grid(wire), RefGrid(structure)
    assert g.prices() == Grid(structure).prices() == r.prices
    assert g.snap_down(price) == r.snap_down(price) and g.snap_up(price) == r.snap_up(price)


@given(st.sampled_from(STRUCTURES), st.integers(0, 40), st.integers(-10, 10010), st.integers(0, 200))
def test_ticks_px_matches_reference(structure, n, price, floor):
    assert Grid(structure).ticks_px(n, price, floor) == RefGrid(structure).ticks_px(n, price, floor)


def test_centi_cent_grids_have_10001_slots_and_tick_money_per_band():
    g = Grid("center_deci_edge_centi_cent")
    assert g.n_slots == 10001 and g.min_price == 1 and g.max_price == 9999
    assert g.ticks_px(1, 50) == 1 and g.ticks_px(1, 5000) == 10 and g.ticks_px(1, 9950) == 1
    assert g.ticks_px(1, 5000, min_px=100) == 100   # a floor in money keeps a tick sensible
    assert Grid("center_centi_edge_centi_cent").n_slots == 10001
    # interleaved $0.002 edge and $0.005 centre: the slot unit is their common $0.001
    h = Grid("center_half_edge_quint_cent")
    assert h.step_min == 10 and h.is_valid(1050) and not h.is_valid(1020) and h.is_valid(980) and h.is_valid(9020)


@given(st.sampled_from(STRUCTURES), st.integers(0, 20), st.integers(1, 9999))
def test_tick_money_is_the_band_step_with_a_tenth_of_a_cent_floor(structure, n, price):
    g, r = Grid(structure), RefGrid(structure)
    assert g.tick_money(n, price) == max(r.ticks_px(n, price), 10 * n)


def test_one_tick_means_sensible_money_on_every_grid():
    ticks = {s: Grid(s).tick_money(1) for s in STRUCTURES}
    assert ticks["linear_cent"] == 100 and ticks["deci_cent"] == 10
    assert ticks["center_centi_edge_centi_cent"] == 10 and ticks["center_deci_edge_centi_cent"] == 10
    assert ticks["center_half_edge_quint_cent"] == 50   # the centre band's $0.005
    assert all(10 <= t <= 100 for t in ticks.values())
    assert Grid("tapered_deci_cent").tick_money(2, 500) == 20 and Grid("tapered_deci_cent").tick_money(2) == 200
