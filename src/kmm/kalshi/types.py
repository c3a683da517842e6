"""Typed records the connector hands to the engine, in kmm's integer units.

Decoded once at the edge from the wire's dollar and ``_fp`` strings (kalshi-api.md section 3.6):
prices 1e-4 $ in YES terms, counts 1e-2 contracts (signed where the wire is signed), money 1e-4 $.
``side`` is the V2 book side on the YES book: ``"bid"`` buys YES, ``"ask"`` sells YES (buys NO).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    exchange_index: int | None = None   # the shard that matched it (required on REST, WS since Aug 20)


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
    exchange_index: int | None = None
    last_update_reason: str | None = None   # e.g. "PostOnlyCrossCancel" (kalshi-api.md 4.1)
    subaccount: int | None = None

    @property
    def post_only_crossed(self) -> bool:
        """A post-only order that would have crossed, cancelled by the exchange (not an error)."""
        return self.last_update_reason == "PostOnlyCrossCancel"


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
    exchange_index: int | None = None
    last_updated_ts: str | None = None   # RFC 3339 (REST)


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
    # The answer described another order than the one sent (kalshi-api.md 4.1, CL May 21): its
    # counts are not this order's. The connector has re-read the order (amend) or left the counts
    # unknown (cancel); take the state from user_orders / GET /portfolio/orders/{id}.
    mismatch: bool = False
    # A post-only create that would have crossed: the exchange cancelled it (0 filled, 0 resting).
    post_only_cross: bool = False


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
    # exchange_index of the market's shard: None = the client fills it from its shard map
    self_trade_prevention: str = "taker_at_cross"
    post_only: bool = False
    reduce_only: bool = False
    cancel_order_on_pause: bool | None = None
    expiration_time_s: int | None = None  # Unix s, with GTC only
    order_group_id: str | None = None
    subaccount: int | None = None
    exchange_index: int | None = None


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
    mismatch: bool = False       # the answer described another order: its counts were not used


@dataclass(slots=True, frozen=True)
class DecreaseAck:
    order_id: str
    client_order_id: str | None
    remaining_count: int         # 1e-2 contracts
    mismatch: bool = False       # the answer described another order: remaining_count re-read by GET


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
    # Always True: every market takes 0.01-contract counts since Apr 17 2026; the wire field is gone
    # and is not read (kept so older callers still find the attribute).
    fractional_trading_enabled: bool = True
    result: str = ""
    exchange_index: int | None = None   # the shard the market trades on (None: not sent; auto-route)
    market_type: str = "binary"
    created_time: str = ""
    updated_time: str = ""
    open_time: str = ""
    settlement_bounds_type: str = ""
    expiration_value: str = ""
    can_close_early: bool | None = None


@dataclass(slots=True, frozen=True)
class Balance:
    balance: int                 # 1e-4 $, over every shard
    portfolio_value: int | None  # 1e-4 $
    updated_ts: int = 0
    breakdown: tuple[tuple[int, int], ...] = ()   # (exchange_index, balance 1e-4 $) per shard

    def shard_balance(self, exchange_index: int) -> int | None:
        """The balance on one shard (1e-4 $), None when the answer had no breakdown."""
        if not self.breakdown:
            return None
        return dict(self.breakdown).get(exchange_index, 0)


# Pause kinds (kalshi-api.md 4.7): a trading pause refuses places and amends and allows cancels; an
# exchange pause refuses cancels too.
PAUSE_NONE = "none"
PAUSE_TRADING = "trading_pause"
PAUSE_EXCHANGE = "exchange_pause"


@dataclass(slots=True, frozen=True)
class ShardStatus:
    exchange_index: int
    exchange_active: bool
    trading_active: bool
    intra_exchange_transfers_active: bool | None = None
    description: str = ""

    @property
    def pause(self) -> str:
        if not self.exchange_active:
            return PAUSE_EXCHANGE
        return PAUSE_NONE if self.trading_active else PAUSE_TRADING


@dataclass(slots=True, frozen=True)
class ExchangeStatus:
    exchange_active: bool        # the top level is shard 0 (kalshi-api.md 4.7)
    trading_active: bool
    estimated_resume_time: str | None = None
    intra_exchange_transfers_active: bool | None = None
    shards: tuple[ShardStatus, ...] = ()

    def shard(self, exchange_index: int = 0) -> ShardStatus:
        """One shard's status; the top-level flags when the answer lists no such shard."""
        for s in self.shards:
            if s.exchange_index == exchange_index:
                return s
        return ShardStatus(exchange_index, self.exchange_active, self.trading_active,
                           self.intra_exchange_transfers_active)

    def pause(self, exchange_index: int = 0) -> str:
        """PAUSE_NONE, PAUSE_TRADING (cancels allowed) or PAUSE_EXCHANGE (no cancels) on a shard."""
        return self.shard(exchange_index).pause

    def can_place(self, exchange_index: int = 0) -> bool:
        return self.pause(exchange_index) == PAUSE_NONE

    def can_cancel(self, exchange_index: int = 0) -> bool:
        return self.pause(exchange_index) != PAUSE_EXCHANGE


@dataclass(slots=True, frozen=True)
class TradingHours:
    """One ``standard_hours`` entry: ``days[weekday]`` = ((open "HH:MM", close "HH:MM"), ...), ET."""

    start_time: str
    end_time: str
    days: Mapping[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True, frozen=True)
class ExchangeSchedule:
    standard_hours: tuple[TradingHours, ...]
    maintenance_windows: tuple[tuple[str, str], ...]    # (start_datetime, end_datetime), RFC 3339


@dataclass(slots=True, frozen=True)
class BucketLimit:
    refill_rate: float           # tokens per second
    bucket_capacity: float       # tokens (the burst)


@dataclass(slots=True, frozen=True)
class Grant:
    exchange_instance: str       # "event_contract" | "margined"
    level: str
    source: str                  # "volume" | "manual"
    expires_ts: int | None = None   # Unix s; None = permanent


@dataclass(slots=True, frozen=True)
class AccountLimits:
    """``GET /account/limits`` (kalshi-api.md section 5): size the token buckets from this.

    ``read``/``write`` are the unscoped buckets; each shard >= 1 has its own write bucket of the same
    size (single REST writes with ``exchange_index >= 1`` bill it; batches bill the unscoped one)."""

    usage_tier: str
    read: BucketLimit
    write: BucketLimit
    grants: tuple[Grant, ...] = ()

    def burst_s(self, bucket: str = "write") -> float:
        """Seconds of budget the bucket holds (1 s on Basic writes, 2 s above)."""
        b = self.write if bucket == "write" else self.read
        return b.bucket_capacity / b.refill_rate if b.refill_rate > 0 else 0.0


@dataclass(slots=True, frozen=True)
class EndpointCosts:
    """``GET /account/endpoint_costs``: the routes whose token cost differs from ``default_cost``."""

    default_cost: int
    costs: Mapping[tuple[str, str], int] = field(default_factory=dict)   # (METHOD, path) -> tokens

    def cost_of(self, method: str, path: str) -> int:
        """Tokens one call costs; ``path`` as listed (e.g. "/portfolio/events/orders")."""
        return self.costs.get((method.upper(), path), self.default_cost)


@dataclass(slots=True, frozen=True)
class Lifecycle:
    """A ``market_lifecycle_v2`` event (kalshi-api.md 3.7). Unknown event types are passed on as read.

    Fields by ``event_type``: created (exchange_index, open_ts, close_ts, price_level_structure,
    price_ranges, metadata), close_date_updated (close_ts), activated/deactivated (is_deactivated),
    determined (result, settlement_value), price_level_structure_updated (price_level_structure,
    price_ranges), metadata_updated (metadata: the fields that changed)."""

    ticker: str
    event_type: str
    result: str | None
    ts_ms: int
    recv_ns: int = 0
    close_ts: int | None = None            # Unix s
    open_ts: int | None = None             # Unix s
    price_level_structure: str | None = None
    price_ranges: tuple[tuple[int, int, int], ...] | None = None   # (start, end, step), 1e-4 $
    exchange_index: int | None = None
    is_deactivated: bool | None = None
    settlement_value: int | None = None    # 1e-4 $
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class OrderGroupUpdate:
    """An ``order_group_updates`` message: created | triggered | reset | deleted | limit_updated."""

    order_group_id: str
    event_type: str
    contracts_limit: int | None      # 1e-2 contracts (created, limit_updated)
    ts_ms: int
    sid: int = 0
    seq: int = 0
    recv_ns: int = 0


@dataclass(slots=True, frozen=True)
class Series:
    ticker: str
    title: str
    category: str
    categories: tuple[str, ...]
    frequency: str
    contract_url: str
    contract_terms_url: str
    fee_type: str
    fee_multiplier: float
    tags: tuple[str, ...] | None = None
    settlement_sources: tuple[tuple[str, str], ...] | None = None   # (name, url)
    exchange_index: int | None = None


@dataclass(slots=True, frozen=True)
class Event:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    collateral_return_type: str          # "MECNET" | "DIRECNET" | ""
    mutually_exclusive: bool             # at most one market resolves yes
    markets: tuple[Market, ...] = ()
    exchange_index: int | None = None


@dataclass(slots=True, frozen=True)
class Settlement:
    ticker: str
    event_ticker: str
    exchange_index: int
    market_result: str                   # "yes" | "no" | "scalar"
    yes_count: int                       # 1e-2 contracts
    yes_total_cost: int                  # 1e-4 $
    no_count: int
    no_total_cost: int
    revenue: int                         # 1e-4 $ (the wire's int cents x 100)
    fee_cost: int                        # 1e-4 $
    settled_time: str
    value: int | None = None             # 1e-4 $ per YES contract


@dataclass(slots=True, frozen=True)
class HistoricalCutoff:
    """Records older than these (RFC 3339) are only on /historical/* (kalshi-api.md 4.3)."""

    market_settled_ts: str
    trades_created_ts: str
    orders_updated_ts: str
    market_positions_last_updated_ts: str | None = None


@dataclass(slots=True, frozen=True)
class EventPosition:
    """``event_positions[]`` of GET /portfolio/positions."""

    event_ticker: str
    total_cost: int                      # 1e-4 $
    total_cost_shares: int               # 1e-2 contracts (total_cost_shares_fp)
    event_exposure: int                  # 1e-4 $
    realized_pnl: int                    # 1e-4 $
    fees_paid: int                       # 1e-4 $
