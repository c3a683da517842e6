"""Avellaneda-Stoikov quotes on a Kalshi market's grid.

Units: prices 1e-4 $ (YES terms), sizes 1e-2 contracts. Model floats: sigma in 1e-4 $ per sqrt(second),
tau in seconds to the close, kappa per 1e-4 $ (order arrival ~ exp(-kappa * distance)), gamma per
(1e-4 $ x contract); inside the model the inventory is in contracts (1e-2 contract int / 100).
"""

from typing import final

from kmm._core.grid import Grid

QUOTE_FLAGS: dict[str, int]
BID_LIMIT: int       # no bid: inventory at/over the long limit
ASK_LIMIT: int       # no ask: inventory at/under minus the short limit
BID_NO_PRICE: int    # no bid: no grid price satisfies spread, edge and post-only
ASK_NO_PRICE: int    # no ask: likewise
BID_POST_ONLY: int   # bid lowered to stay below the best ask
ASK_POST_ONLY: int   # ask raised to stay above the best bid

def reservation_price(mid: float, inventory: float, gamma: float, sigma: float, tau: float) -> float:
    """mid - inventory * gamma * sigma**2 * tau (unit-agnostic). ValueError if tau < 0."""

def optimal_spread(gamma: float, sigma: float, tau: float, kappa: float) -> float:
    """gamma * sigma**2 * tau + (2 / gamma) * ln(1 + gamma / kappa); 2 / kappa at gamma == 0.
    ValueError unless gamma >= 0, kappa > 0, tau >= 0."""

@final
class QuoteParams:
    @property
    def grid(self) -> Grid: ...
    @property
    def gamma(self) -> float: ...  # risk aversion, per (1e-4 $ x contract), >= 0
    @property
    def kappa(self) -> float: ...  # order-arrival decay, per 1e-4 $, > 0
    @property
    def quote_size(self) -> int: ...  # 1e-2 contracts per side, >= size_step
    @property
    def long_limit(self) -> int: ...  # max long YES position, 1e-2 contracts, >= 0
    @property
    def short_limit(self) -> int: ...  # max short YES position (magnitude), 1e-2 contracts, >= 0
    @property
    def maker_fee_rate_e6(self) -> int: ...  # maker fee rate x multiplier, millionths
                                             # (fees.fee_rate_e6(..., taker=False))
    @property
    def min_spread(self) -> int: ...  # minimum ask - bid, 1e-4 $, 1..10000
    @property
    def min_edge(self) -> float: ...  # min distance from the reservation price after the maker fee, 1e-4 $, >= 0
    @property
    def size_step(self) -> int: ...  # sizes are multiples of this, 1e-2 contracts (100: whole contracts)
    def __init__(self, grid: Grid, gamma: float, kappa: float, quote_size: int, long_limit: int,
                 short_limit: int, maker_fee_rate_e6: int = 0, min_spread: int = 1,
                 min_edge: float = 0.0, size_step: int = 100) -> None: ...
    def replace(self, **changes: object) -> QuoteParams: ...

@final
class Quotes:
    @property
    def bid_price(self) -> int: ...  # 1e-4 $ on the grid; 0 = no bid
    @property
    def bid_size(self) -> int: ...  # 1e-2 contracts; 0 = no bid
    @property
    def ask_price(self) -> int: ...  # 1e-4 $ on the grid; 0 = no ask
    @property
    def ask_size(self) -> int: ...  # 1e-2 contracts; 0 = no ask
    @property
    def reservation(self) -> float: ...  # reservation price incl. skews, 1e-4 $
    @property
    def half_spread(self) -> float: ...  # half spread used, 1e-4 $
    @property
    def flags(self) -> int: ...  # BID_LIMIT | ASK_LIMIT | ... bits
    @property
    def has_bid(self) -> bool: ...
    @property
    def has_ask(self) -> bool: ...
    @property
    def bid(self) -> tuple[int, int] | None: ...
    @property
    def ask(self) -> tuple[int, int] | None: ...

def compute(params: QuoteParams, mid: float, inventory: int, tau: float, sigma: float,
            ofi_skew: float = 0.0, alpha_skew: float = 0.0, best_bid: int = 0,
            best_ask: int = 0) -> Quotes:
    """Target quotes for one book update.

    r = mid - (inventory / 100) * gamma * sigma**2 * tau + (ofi_skew + alpha_skew);
    half = max(optimal_spread(gamma, sigma, tau, kappa), min_spread) / 2.
    @property
    def Bid(self) -> highest grid price b <= r - half with b + fee(b) <= r - min_edge, then (post-only) below: ...
    best_ask; size min(quote_size, long_limit - inventory) rounded down to size_step. Ask: mirror.
    A side is absent (price 0, size 0, flag set) when its size is 0 or no price qualifies.
    @property
    def Guarantees(self) -> on the grid, bid < ask, ask - bid >= min_spread, bid < best_ask, ask > best_bid,: ...
    inventory + bid_size <= long_limit, inventory - ask_size >= -short_limit.
    best_bid 0 = no bid in the book; best_ask 0 or 10000 = no ask in the book.
    """
