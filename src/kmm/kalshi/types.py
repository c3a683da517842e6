"""Typed records the connector hands to the engine, in kmm's integer units.

Decoded once at the edge from the wire's dollar and ``_fp`` strings (kalshi-api.md section 3.6):
prices 1e-4 $ in YES terms, counts 1e-2 contracts (signed where the wire is signed), money 1e-4 $.
``side`` is the V2 book side on the YES book: ``"bid"`` buys YES, ``"ask"`` sells YES (buys NO).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Fill:
    """One of our fills (WS ``fill`` or REST ``/portfolio/fills``). Deduplicate by ``trade_id``."""

    trade_id: str
    order_id: str
    client_order_id: str | None
    ticker: str
    side: str                    # "bid" | "ask" (book_side)
    price: int                   # YES price, 1e-4 $
    count: int                   # 1e-2 contracts, > 0
    fee: int                     # total fee for this fill, 1e-4 $ (fee_cost)
    is_taker: bool
    post_position: int | None    # signed net position after the fill, 1e-2 contracts (WS only)
    ts_ms: int                   # exchange time
    recv_ns: int = 0             # our receive time, monotonic ns (0 for REST backfill)


@dataclass(slots=True, frozen=True)
class UserOrder:
    """An order state update (WS ``user_order``, REST order reads)."""

    order_id: str
    client_order_id: str | None
    ticker: str
    status: str                  # "resting" | "canceled" | "executed"
    side: str                    # "bid" | "ask"
    price: int                   # YES price, 1e-4 $
    initial_count: int           # 1e-2 contracts
    fill_count: int
    remaining_count: int
    taker_fees: int = 0          # 1e-4 $
    maker_fees: int = 0
    order_group_id: str | None = None
    created_ts_ms: int = 0
    last_updated_ts_ms: int = 0
    recv_ns: int = 0


@dataclass(slots=True, frozen=True)
class MarketPosition:
    """Our position in one market (WS ``market_position``, REST ``/portfolio/positions``)."""

    ticker: str
    position: int                # signed, 1e-2 contracts: > 0 YES, < 0 NO
    position_cost: int           # 1e-4 $
    realized_pnl: int            # 1e-4 $
    fees_paid: int               # 1e-4 $
    volume: int = 0              # 1e-2 contracts
    recv_ns: int = 0


@dataclass(slots=True, frozen=True)
class OrderAck:
    """The flat V2 create/amend response."""

    order_id: str
    client_order_id: str | None
    fill_count: int              # 1e-2 contracts
    remaining_count: int
    average_fill_price: int | None = None   # 1e-4 $
    average_fee_paid: int | None = None     # 1e-4 $
    ts_ms: int = 0


@dataclass(slots=True, frozen=True)
class Trade:
    """A public trade (WS ``trade``, REST ``/markets/trades``)."""

    trade_id: str
    ticker: str
    price: int                   # YES price, 1e-4 $
    count: int                   # 1e-2 contracts
    taker_side: str              # "bid" | "ask": the taker's book side
    ts_ms: int
    recv_ns: int = 0


@dataclass(slots=True, frozen=True)
class Ticker:
    """A ``ticker`` channel update: top of book and last trade."""

    ticker: str
    price: int | None            # last trade, 1e-4 $
    yes_bid: int | None
    yes_ask: int | None
    volume: int
    open_interest: int
    ts_ms: int
    recv_ns: int = 0
