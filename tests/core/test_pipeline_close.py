"""A moved close time (lifecycle ``close_date_updated``): the compiled pipeline's tau after
``set_close_time`` equals the tau of the Python path built with that close, and of a compiled pipeline
built with it from the start, for any horizon, close and clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.ofi import OFI
from kmm.config import StrategyParams
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.strategy.alpha import AlphaSource
from kmm.strategy.inside import InsideStrategy

WALL0 = 1_800_000_000 * 10**9
closes = st.one_of(st.none(), st.integers(WALL0 - 10**12, WALL0 + 10**14))


def pipe(close: int | None, horizon_s: float, compiled: bool) -> MarketPipeline:
    grid = Grid("linear_cent")
    params = StrategyParams(horizon_s=horizon_s)
    strat = InsideStrategy(grid, quote_size=params.quote_size, max_position=params.max_position)
    return MarketPipeline(MarketInfo("T", grid, close), OrderBook("linear_cent"), strat, params, AlphaSource(),
                          OFI(window_ns=10 * 10**9, half_life_ns=5 * 10**9), compiled=compiled)


@settings(max_examples=200, deadline=None)
@given(first=closes, moved=closes, horizon=st.sampled_from([0.0, 60.0, 3600.0]),
       wall=st.integers(WALL0 - 10**12, WALL0 + 10**13))
def test_tau_after_a_moved_close_is_the_tau_of_a_pipeline_built_with_it(first, moved, horizon, wall):
    live = pipe(first, horizon, compiled=True)
    live.refresh_tau(wall)
    live.info.close_time_ns = moved
    live.core.set_close_time(moved)
    live.refresh_tau(wall)
    fresh = pipe(moved, horizon, compiled=True)
    fresh.refresh_tau(wall)
    python = pipe(moved, horizon, compiled=False)
    python.refresh_tau(wall)
    assert live.core.close_time_ns == moved
    assert live.core.tau_s == fresh.core.tau_s == python._inputs.tau_s
