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


# --- added by the connector (additive) ------------------------------------------------------------

@dataclass(slots=True, frozen=True)
class OrderRequest:
    """A V2 order to place (POST /portfolio/events/orders). ``side`` "bid" buys YES, "ask" sells YES."""

    ticker: str
    side: str                    # "bid" | "ask"
    price: int                   # YES price, 1e-4 $
    count: int                   # 1e-2 contracts, > 0
    client_order_id: str
    time_in_force: str = "good_till_canceled"
    self_trade_prevention: str = "taker_at_cross"
    post_only: bool = False
    reduce_only: bool = False
    cancel_order_on_pause: bool | None = None
    expiration_time_s: int | None = None  # Unix s, with GTC only
    order_group_id: str | None = None
    subaccount: int | None = None


@dataclass(slots=True, frozen=True)
class CancelAck:
    """V2 cancel response (single or one item of a batch). ``reduced_by`` 1e-2 contracts."""

    order_id: str
    client_order_id: str | None
    reduced_by: int
    ts_ms: int = 0
    already_gone: bool = False   # the exchange answered 404 / not found: the order was already done
    error: str | None = None     # this item was refused for another reason: the order may still rest
    reduced_known: bool = True   # False when the answer did not say how much it removed


@dataclass(slots=True, frozen=True)
class DecreaseAck:
    order_id: str
    client_order_id: str | None
    remaining_count: int         # 1e-2 contracts


@dataclass(slots=True, frozen=True)
class BookSnapshot:
    """A REST order book in YES terms: bids = YES bids, asks = YES asks (NO bids at 1 - p), ascending."""

    ticker: str
    bids: tuple[tuple[int, int], ...]   # (YES price 1e-4 $, size 1e-2), best bid last
    asks: tuple[tuple[int, int], ...]   # (YES price 1e-4 $, size 1e-2), best ask first


@dataclass(slots=True, frozen=True)
class Market:
    """The fields of a market object the engine uses (GET /markets, /markets/{ticker})."""

    ticker: str
    event_ticker: str
    status: str
    price_ranges: tuple[tuple[int, int, int], ...]   # (start, end, step), 1e-4 $
    price_level_structure: str
    yes_bid: int | None
    yes_ask: int | None
    last_price: int | None
    volume: int
    open_interest: int
    close_time: str
    fractional_trading_enabled: bool = False
    result: str = ""


@dataclass(slots=True, frozen=True)
class Balance:
    balance: int                 # 1e-4 $
    portfolio_value: int | None  # 1e-4 $
    updated_ts: int = 0


@dataclass(slots=True, frozen=True)
class ExchangeStatus:
    exchange_active: bool
    trading_active: bool
    estimated_resume_time: str | None = None


@dataclass(slots=True, frozen=True)
class Lifecycle:
    """A ``market_lifecycle_v2`` event (created, activated, deactivated, close_date_updated, determined, settled)."""

    ticker: str
    event_type: str
    result: str | None
    ts_ms: int
    recv_ns: int = 0
