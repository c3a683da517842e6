"""Avellaneda-Stoikov market making with inventory skew, on Kalshi's grid.

The reservation price is the mid (or microprice) moved against the inventory, plus the OFI and external
alpha skews; the spread is the model's optimal spread, widened to the minimum spread and to the minimum
edge after the maker fee. All of it is computed in ``kmm._core.quote.compute``, which also quantizes to
the grid (bid down, ask up), keeps post-only quotes off the opposite best, and drops the side that would
pass a position limit.

Parameter units (``[strategy]`` in kmm.toml): ``gamma`` is per (dollar x contract) and ``kappa`` per
dollar; internally both are converted to per 1e-4 $ (divided by 10,000), sigma is in 1e-4 $ per
sqrt(second) and tau in seconds.
"""

from __future__ import annotations

from kmm._core import quote
from kmm._core.grid import Grid
from kmm.strategy.base import MarketInputs, Target

PRICE_PER_DOLLAR = 10_000.0


class StoikovStrategy:
    name = "stoikov"

    def __init__(self, grid: Grid, *, gamma: float, kappa: float, quote_size: int, max_position: int,
                 maker_fee_rate_e6: int = 0, min_spread: int = 1, min_edge: int = 0,
                 fractional: bool = False, use_microprice: bool = True) -> None:
        self.gamma = gamma / PRICE_PER_DOLLAR
        self.params = quote.QuoteParams(
            grid, self.gamma, kappa / PRICE_PER_DOLLAR, quote_size, max_position, max_position,
            maker_fee_rate_e6=maker_fee_rate_e6, min_spread=min_spread, min_edge=float(min_edge),
            size_step=1 if fractional else 100)
        self.use_microprice = use_microprice
        self._kappa = self.params.kappa

    def _refresh_kappa(self, kappa: float) -> None:
        # QuoteParams is immutable; rebuild it only when kappa moved by more than 1 %
        if abs(kappa - self._kappa) > 0.01 * self._kappa:
            self.params = self.params.replace(kappa=kappa)
            self._kappa = kappa

    def target(self, inp: MarketInputs, out: Target) -> Target:
        ref = inp.microprice if (self.use_microprice and inp.microprice is not None) else inp.mid
        if ref is None:
            out.bid_size = out.ask_size = 0
            out.bid_price = out.ask_price = 0
            out.reservation = out.half_spread = None
            return out
        if inp.kappa > 0:
            self._refresh_kappa(inp.kappa)
        q = quote.compute(self.params, ref, inp.inventory, inp.tau_s, inp.sigma, inp.ofi_skew,
                          inp.alpha_skew, inp.best_bid, inp.best_ask)
        out.bid_price, out.bid_size = q.bid_price, q.bid_size
        out.ask_price, out.ask_size = q.ask_price, q.ask_size
        out.reservation, out.half_spread = q.reservation, q.half_spread
        return out
