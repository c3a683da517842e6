"""What a quoting strategy sees and returns.

The engine keeps one :class:`MarketInputs` per market and updates it in place on every book message
(no allocation on the hot path); a strategy turns it into a :class:`Target`: the bid and ask it wants
resting, on the market's grid. Units: prices 1e-4 $ YES terms, sizes 1e-2 contracts, time ns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kmm._core.grid import Grid


@dataclass(slots=True)
class MarketInputs:
    ticker: str
    grid: Grid
    best_bid: int = 0            # 0: no bid
    best_ask: int = 0            # 0: no ask
    mid: float | None = None
    microprice: float | None = None
    inventory: int = 0           # signed, 1e-2 contracts
    tau_s: float = 0.0           # model horizon left, seconds
    sigma: float = 0.0           # 1e-4 $ per sqrt(second)
    kappa: float = 0.01          # per 1e-4 $
    ofi_skew: float = 0.0        # 1e-4 $ added to the reservation price
    alpha_skew: float = 0.0      # 1e-4 $ added to the reservation price


@dataclass(slots=True)
class Target:
    bid_price: int = 0
    bid_size: int = 0
    ask_price: int = 0
    ask_size: int = 0
    reservation: float | None = None
    half_spread: float | None = None


class Strategy(Protocol):
    name: str

    def target(self, inp: MarketInputs, out: Target) -> Target:
        """Fill ``out`` (reused by the caller) with the wanted quotes and return it."""
        ...
