"""An execution request in the user's terms, mapped once onto the V2 YES book.

The user says what they want to do with a contract: buy YES, sell YES, buy NO or sell NO, with a
limit in that contract's own price (a NO limit is a NO price). Kalshi's V2 orders know only one
book, the YES book (kalshi-api.md section 4.1): ``bid`` buys YES and ``ask`` sells YES, and the
price is always the YES price. So:

=========  ==========  ======================================================
action     V2 side     limit (user terms q) becomes
=========  ==========  ======================================================
buy-yes    bid         a bid never above YES q
sell-yes   ask         an ask never below YES q
buy-no     ask         an ask never below YES 10000 - q  (buy NO 0.40 = ask >= YES 0.60)
sell-no    bid         a bid never above YES 10000 - q
=========  ==========  ======================================================

Everything past this module works in YES prices; :class:`Action` converts back for display.
Units: prices 1e-4 $, sizes 1e-2 contracts, money 1e-4 $ (design section 2).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from kmm._core.fees import TAKER_RATE_E6
from kmm._core.fixed import format_count, format_price, parse_count, parse_price
from kmm._core.grid import Grid
from kmm.errors import KmmError

__all__ = [
    "Action", "MarketInfo", "ExecutionRequest", "RequestError",
    "parse_action", "parse_price_arg", "parse_size_arg", "parse_edge",
    "edge_from_cents", "edge_from_probability", "lot_size",
]

PRICE_ONE = 10000  # $1 in 1e-4 $
WHOLE_CONTRACT = 100  # one contract in 1e-2 contracts


class RequestError(KmmError, ValueError):
    """An execution request (or an algorithm parameter) is invalid; the message says which field and why."""


class Action(enum.Enum):
    """What the user does, in their terms."""

    BUY_YES = "buy-yes"
    SELL_YES = "sell-yes"
    BUY_NO = "buy-no"
    SELL_NO = "sell-no"

    @property
    def side(self) -> str:
        """The V2 order side on the YES book: ``"bid"`` or ``"ask"``."""
        return "bid" if self in (Action.BUY_YES, Action.SELL_NO) else "ask"

    @property
    def outcome(self) -> str:
        """The contract the user names: ``"yes"`` or ``"no"``."""
        return "yes" if self in (Action.BUY_YES, Action.SELL_YES) else "no"

    @property
    def buys(self) -> bool:
        """True when the user acquires the named contract (pays the price)."""
        return self in (Action.BUY_YES, Action.BUY_NO)

    def to_yes(self, price: int) -> int:
        """A price in the user's terms (NO price for NO actions) as a YES price."""
        return price if self.outcome == "yes" else PRICE_ONE - price

    def from_yes(self, yes_price: float) -> float:
        """A YES price (possibly fractional, e.g. an average) in the user's terms."""
        return yes_price if self.outcome == "yes" else PRICE_ONE - yes_price


def lot_size(fractional: bool) -> int:
    """Smallest size step: 1 (0.01 contract) on fractional markets, else 100 (one contract)."""
    return 1 if fractional else WHOLE_CONTRACT


def parse_action(text: str) -> Action:
    """``"buy-yes"``, ``"buy_yes"``, ``"BUY YES"``... -> :class:`Action`."""
    key = text.strip().lower().replace("_", "-").replace(" ", "-")
    for a in Action:
        if a.value == key:
            return a
    raise RequestError(f"action {text!r} is not one of buy-yes, sell-yes, buy-no, sell-no")


def parse_price_arg(text: str, what: str = "price") -> int:
    """A dollar string in (0, 1) such as ``"0.40"`` -> 4000 (1e-4 $)."""
    try:
        p = parse_price(text.strip())
    except ValueError:
        raise RequestError(f"{what} {text!r} is not a dollar price such as 0.40 (at most 4 decimals)") from None
    if not 0 < p < PRICE_ONE:
        raise RequestError(f"{what} {text!r} must lie strictly between 0 and 1 dollar")
    return p


def parse_size_arg(text: str, fractional: bool = False) -> int:
    """A contract count such as ``"10"`` or ``"2.5"`` -> 1e-2 contracts, checked against the lot."""
    try:
        n = parse_count(text.strip())
    except ValueError:
        raise RequestError(f"size {text!r} is not a contract count such as 10 or 2.50") from None
    _check_size(n, fractional, "size")
    return n


def edge_from_cents(cents: float) -> int:
    """An edge in cents per contract (3.5 = 3.5 cents) -> 1e-4 $ per contract."""
    if not math.isfinite(cents):
        raise RequestError(f"edge {cents!r} cents is not a finite number")
    return round(cents * 100)


def edge_from_probability(prob: float) -> int:
    """An edge in probability points (0.035 = 3.5 points = 3.5 cents) -> 1e-4 $ per contract."""
    if not math.isfinite(prob) or not -1.0 <= prob <= 1.0:
        raise RequestError(f"edge {prob!r} as a probability must be a finite number in [-1, 1]")
    return round(prob * PRICE_ONE)


def parse_edge(text: str) -> int:
    """``"3c"``/``"3.5c"`` (cents) or ``"0.035"`` (probability) -> 1e-4 $ per contract."""
    t = text.strip().lower()
    try:
        if t.endswith("c"):
            return edge_from_cents(float(t[:-1]))
        return edge_from_probability(float(t))
    except ValueError:
        raise RequestError(f"edge {text!r} is neither cents (e.g. 3c) nor a probability (e.g. 0.03)") from None


def _check_size(n: int, fractional: bool, what: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise RequestError(f"{what} {n!r} must be a positive integer in 1e-2 contracts (1000 = 10 contracts)")
    lot = lot_size(fractional)
    if n % lot:
        raise RequestError(
            f"{what} {format_count(n)} contracts is not a whole number of contracts; this market is "
            "not fractional, so use multiples of 1.00")


@dataclass(slots=True, frozen=True)
class MarketInfo:
    """What execution needs to know about a market: its grid, lot and taker fee rate."""

    ticker: str
    grid: Grid = field(default_factory=Grid)
    fractional: bool = False
    taker_fee_rate_e6: int = TAKER_RATE_E6  # from kmm._core.fees.fee_rate_e6(fee_type, True, multiplier)

    @property
    def lot(self) -> int:
        return lot_size(self.fractional)


@dataclass(slots=True, frozen=True)
class ExecutionRequest:
    """Execute ``size`` of ``action`` on ``ticker`` never crossing ``limit_price``.

    ``limit_price``, ``price`` and ``edge`` are in the user's terms (NO prices for NO actions);
    use :attr:`limit` / :attr:`target` for the YES-book values. ``price`` is the price the simple
    and adaptive algorithms post at (default: the limit). ``edge`` is the user's fair value minus
    the market, per contract in 1e-4 $ (see :func:`parse_edge`); ``confidence`` is in [0, 1].
    ``params`` are the algorithm's parameters (checked by :func:`kmm.execution.algos.build_algo`).
    """

    ticker: str
    action: Action
    size: int
    limit_price: int
    algo: str = "simple"
    params: Mapping[str, Any] = field(default_factory=dict)
    price: int | None = None
    edge: int | None = None
    confidence: float | None = None
    fractional: bool = False
    execution_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.ticker, str) or not self.ticker.strip():
            raise RequestError("ticker is empty; give the market ticker, e.g. KXHIGHNY-26JAN01-B40")
        if not isinstance(self.action, Action):
            raise RequestError(f"action {self.action!r} must be an Action (see parse_action)")
        _check_size(self.size, self.fractional, "size")
        for name in ("limit_price", "price"):
            v = getattr(self, name)
            if v is None and name == "price":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < PRICE_ONE:
                raise RequestError(f"{name} {v!r} must be an integer price in 1..9999 (1e-4 $, "
                                   f"{self.action.outcome.upper()} terms)")
        if self.price is not None:
            worse = self.price > self.limit_price if self.action.buys else self.price < self.limit_price
            if worse:
                raise RequestError(
                    f"price {format_price(self.price)} is beyond the limit {format_price(self.limit_price)} for "
                    f"{self.action.value}; the target price must not cross the limit")
        if self.edge is not None and (not isinstance(self.edge, int) or isinstance(self.edge, bool)
                                      or abs(self.edge) > PRICE_ONE):
            raise RequestError(f"edge {self.edge!r} must be an integer in -10000..10000 (1e-4 $ per contract)")
        if self.confidence is not None:
            c = self.confidence
            if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0.0 <= float(c) <= 1.0:
                raise RequestError(f"confidence {c!r} must be a number in [0, 1]")
        if not isinstance(self.algo, str) or not self.algo:
            raise RequestError("algo is empty; choose simple, capped, slice, twap, adaptive, vwslice or walker")

    @property
    def side(self) -> str:
        """V2 side on the YES book."""
        return self.action.side

    @property
    def limit(self) -> int:
        """The limit as a YES price: bids never above it, asks never below it."""
        return self.action.to_yes(self.limit_price)

    @property
    def target(self) -> int:
        """The posting price as a YES price (the limit when no price was given)."""
        return self.action.to_yes(self.price if self.price is not None else self.limit_price)

    @property
    def lot(self) -> int:
        return lot_size(self.fractional)

    def check_market(self, market: MarketInfo) -> None:
        """Raise :class:`RequestError` when the request does not fit ``market``."""
        if market.ticker != self.ticker:
            raise RequestError(f"request is for {self.ticker} but the market given is {market.ticker}")
        if self.fractional and not market.fractional:
            raise RequestError(f"{self.ticker} does not allow fractional contracts; use whole contracts")
        if not market.fractional:
            _check_size(self.size, False, "size")
        for name, yes in (("limit_price", self.limit), ("price", self.target)):
            if not market.grid.is_valid(yes):
                lo, hi = market.grid.snap_down(yes), market.grid.snap_up(yes)
                # to_yes is its own inverse on integer prices: it also maps YES back to user terms
                near = " / ".join(sorted(format_price(self.action.to_yes(p)) for p in (lo, hi) if p is not None))
                raise RequestError(
                    f"{name} {format_price(self.action.to_yes(yes))} ({self.action.outcome.upper()}) is not "
                    f"on {self.ticker}'s price grid; nearest valid: {near}")

    def describe(self) -> str:
        return (f"{self.action.value} {format_count(self.size)} {self.ticker} limit "
                f"{format_price(self.limit_price)} ({self.side} YES {'<=' if self.side == 'bid' else '>='} "
                f"{format_price(self.limit)}) via {self.algo}")
