"""Plain-Python reference for kmm._core.quote, written from the spec in docs/core-quote.md.

Uses only the Grid's Python API (snap_down/snap_up/tick_down/tick_up) and walks the grid one price at a
time; the compiled code jumps close to the answer with a closed-form root first. Float expressions are
written in the same order as the spec so both sides make the same decisions at the edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BID_LIMIT, ASK_LIMIT, BID_NO_PRICE, ASK_NO_PRICE, BID_POST_ONLY, ASK_POST_ONLY = 1, 2, 4, 8, 16, 32


def reservation_price(mid: float, inventory: float, gamma: float, sigma: float, tau: float) -> float:
    return mid - inventory * gamma * sigma * sigma * tau


def optimal_spread(gamma: float, sigma: float, tau: float, kappa: float) -> float:
    x = gamma / kappa
    if x < 1e-8:  # series of (2 / gamma) ln(1 + x): the gamma -> 0 limit without inf * 0
        return gamma * sigma * sigma * tau + (2.0 / kappa) * (1.0 - 0.5 * x)
    return gamma * sigma * sigma * tau + (2.0 / gamma) * math.log1p(x)


def fee(price: int, rate_e6: int) -> float:
    """Maker fee of one contract at ``price`` before rounding, 1e-4 $."""
    if price <= 0 or price >= 10000 or rate_e6 <= 0:
        return 0.0
    return rate_e6 * price * (10000 - price) / 1e10


@dataclass(slots=True)
class RefParams:
    grid: object
    gamma: float
    kappa: float
    quote_size: int
    long_limit: int
    short_limit: int
    maker_fee_rate_e6: int = 0
    min_spread: int = 1
    min_edge: float = 0.0
    size_step: int = 100


@dataclass(slots=True)
class RefQuotes:
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    reservation: float
    half_spread: float
    flags: int


def _size(room: int, p: RefParams) -> int:
    size = min(room, p.quote_size)
    if size <= 0:
        return 0
    return size - size % p.size_step


def model_bid(p: RefParams, r: float, half: float) -> int | None:
    """Highest grid price b <= r - half with b + fee(b) <= r - min_edge."""
    x = r - half
    if x < 1.0:
        return None
    b = p.grid.snap_down(min(math.floor(x), 10000))
    lim = r - p.min_edge
    while b is not None and b + fee(b, p.maker_fee_rate_e6) > lim:
        b = p.grid.tick_down(b)
    return b


def model_ask(p: RefParams, r: float, half: float) -> int | None:
    """Lowest grid price a >= r + half with a - fee(a) >= r + min_edge."""
    x = r + half
    if x > 10000.0:
        return None
    a = p.grid.snap_up(max(math.ceil(x), 0))
    lim = r + p.min_edge
    while a is not None and a - fee(a, p.maker_fee_rate_e6) < lim:
        a = p.grid.tick_up(a)
    return a


def compute(p: RefParams, mid: float, inventory: int, tau: float, sigma: float, ofi_skew: float = 0.0,
            alpha_skew: float = 0.0, best_bid: int = 0, best_ask: int = 0) -> RefQuotes:
    r = reservation_price(mid, inventory / 100.0, p.gamma, sigma, tau) + (ofi_skew + alpha_skew)
    half = max(0.5 * optimal_spread(p.gamma, sigma, tau, p.kappa), 0.5 * p.min_spread)
    out = RefQuotes(0, 0, 0, 0, r, half, 0)

    size = _size(p.long_limit - inventory, p)
    if size <= 0:
        out.flags |= BID_LIMIT
    else:
        bid = model_bid(p, r, half)
        if bid is not None and 0 < best_ask < 10000 and bid >= best_ask:
            bid = p.grid.snap_down(best_ask - 1)
            out.flags |= BID_POST_ONLY
        if bid is None:
            out.flags |= BID_NO_PRICE
        else:
            out.bid_price, out.bid_size = bid, size

    size = _size(inventory + p.short_limit, p)
    if size <= 0:
        out.flags |= ASK_LIMIT
    else:
        ask = model_ask(p, r, half)
        if ask is not None and best_bid > 0 and ask <= best_bid:
            ask = p.grid.snap_up(best_bid + 1)
            out.flags |= ASK_POST_ONLY
        if ask is None:
            out.flags |= ASK_NO_PRICE
        else:
            out.ask_price, out.ask_size = ask, size
    return out
