"""The inside-the-spread maker: improve the best bid and the best ask by one tick each.

Rules (seed 003, on kmm's grid): when the spread is at least two ticks, bid at best bid + 1 tick and ask
at best ask - 1 tick; when it is narrower, stand aside. With exactly two ticks the two improved prices
would meet, so only one side improves: the side that reduces inventory (the bid when flat), and the
other side is left out rather than locking our own quotes. No bid at or over the long limit, no ask at
or over the short limit, and sizes are cut so one fill cannot pass a limit.
"""

from __future__ import annotations

from kmm._core.grid import Grid
from kmm.strategy.base import MarketInputs, Target


def inside_quotes(grid: Grid, best_bid: int | None, best_ask: int | None, inventory: int,
                  size: int, long_limit: int, short_limit: int) -> tuple[int, int, int, int]:
    """Return ``(bid_price, bid_size, ask_price, ask_size)``; a size of 0 means no quote on that side.

    Prices are 1e-4 $ YES prices on ``grid``; sizes and inventory are 1e-2 contracts (inventory signed,
    > 0 long YES); ``long_limit`` and ``short_limit`` are positive magnitudes.
    """
    if best_bid is None or best_ask is None or best_ask <= best_bid:
        return 0, 0, 0, 0
    bid = grid.tick_up(best_bid)
    ask = grid.tick_down(best_ask)
    if bid is None or ask is None or bid > ask:
        return 0, 0, 0, 0  # spread narrower than two ticks: stand aside
    bid_size = max(0, min(size, long_limit - inventory))
    ask_size = max(0, min(size, short_limit + inventory))
    if bid == ask:
        if inventory > 0:
            bid_size = 0
        else:
            ask_size = 0
    return (bid if bid_size else 0), bid_size, (ask if ask_size else 0), ask_size


class InsideStrategy:
    """:func:`inside_quotes` behind the engine's strategy interface."""

    name = "inside"

    def __init__(self, grid: Grid, *, quote_size: int, max_position: int) -> None:
        self.grid = grid
        self.quote_size = quote_size
        self.max_position = max_position

    def target(self, inp: MarketInputs, out: Target) -> Target:
        out.bid_price, out.bid_size, out.ask_price, out.ask_size = inside_quotes(
            self.grid, inp.best_bid or None, inp.best_ask or None, inp.inventory, self.quote_size,
            self.max_position, self.max_position)
        out.reservation = inp.mid
        out.half_spread = (out.ask_price - out.bid_price) / 2 if out.bid_size and out.ask_size else None
        return out
