"""Plain constants of Kalshi's Trade API v2 (see shared/kalshi-api.md).

This is the only module, with ``kmm._core.fees``, that both the client side (``kmm.kalshi``) and the
embedded exchange (``kmm.sim``) import: keep it to facts of the protocol (names, paths, numbers), never
logic, so that a misreading of the protocol cannot hide by being made twice.
"""

from __future__ import annotations

from typing import Final

API_PREFIX: Final = "/trade-api/v2"
WS_PATH: Final = "/trade-api/ws/v2"

# Environments (kalshi-api.md section 1). "sim" URLs are chosen at run time (ephemeral ports).
ENVIRONMENTS: Final[dict[str, tuple[str, str]]] = {
    "prod": ("https://external-api.kalshi.com/trade-api/v2",
             "wss://external-api-ws.kalshi.com/trade-api/ws/v2"),
    "demo": ("https://external-api.demo.kalshi.co/trade-api/v2",
             "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"),
}
# Every host that reaches production money (the "also supported" hosts included): talking to any of
# them needs the prod opt-in, whatever the environment is called.
PROD_HOSTS: Final = ("external-api.kalshi.com", "external-api-ws.kalshi.com", "api.elections.kalshi.com")

# Auth headers. Signed message = timestamp_ms + METHOD + path (query string removed).
HDR_KEY: Final = "KALSHI-ACCESS-KEY"
HDR_TIMESTAMP: Final = "KALSHI-ACCESS-TIMESTAMP"
HDR_SIGNATURE: Final = "KALSHI-ACCESS-SIGNATURE"

# V2 order endpoints (relative to API_PREFIX).
PATH_ORDERS_V2: Final = "/portfolio/events/orders"
PATH_ORDERS_V2_BATCHED: Final = "/portfolio/events/orders/batched"
PATH_ORDERS_READ: Final = "/portfolio/orders"
PATH_FILLS: Final = "/portfolio/fills"
PATH_POSITIONS: Final = "/portfolio/positions"
PATH_BALANCE: Final = "/portfolio/balance"
PATH_ORDER_GROUPS: Final = "/portfolio/order_groups"
PATH_ACCOUNT_LIMITS: Final = "/account/limits"
PATH_EXCHANGE_STATUS: Final = "/exchange/status"
PATH_MARKETS: Final = "/markets"
PATH_SERIES: Final = "/series"
PATH_EVENTS: Final = "/events"
PATH_TRADES: Final = "/markets/trades"
PATH_ORDERBOOKS: Final = "/markets/orderbooks"
PATH_SETTLEMENTS: Final = "/portfolio/settlements"
PATH_TRANSFER: Final = "/portfolio/intra_exchange_instance_transfer"
PATH_EXCHANGE_SCHEDULE: Final = "/exchange/schedule"
PATH_ENDPOINT_COSTS: Final = "/account/endpoint_costs"
PATH_HISTORICAL_CUTOFF: Final = "/historical/cutoff"
PATH_CANCEL_ALL: Final = "/portfolio/events/orders"   # DELETE, no ticker; 204 with no body (section 4.1)

# Order vocabulary.
SIDE_BID: Final = "bid"  # buy YES
SIDE_ASK: Final = "ask"  # sell YES == buy NO at 1 - p
TIF_GTC: Final = "good_till_canceled"
TIF_IOC: Final = "immediate_or_cancel"
TIF_FOK: Final = "fill_or_kill"
TIME_IN_FORCE: Final = (TIF_GTC, TIF_IOC, TIF_FOK)
STP_TAKER_AT_CROSS: Final = "taker_at_cross"
STP_MAKER: Final = "maker"
SELF_TRADE_PREVENTION: Final = (STP_TAKER_AT_CROSS, STP_MAKER)
ORDER_STATUS: Final = ("resting", "canceled", "executed")

# Market vocabulary.
# Labels only: a market's price_ranges decide its grid (section 2.2), and new names keep coming.
PRICE_LEVEL_STRUCTURES: Final = ("linear_cent", "deci_cent", "tapered_deci_cent",
                                 "center_whole_edge_half_cent", "center_whole_edge_quint_cent",
                                 "center_half_edge_half_cent", "center_half_edge_quint_cent",
                                 "center_half_edge_deci_cent", "center_quint_edge_quint_cent",
                                 "center_quint_edge_deci_cent", "center_centi_edge_centi_cent",
                                 "center_deci_edge_centi_cent")
COUNT_STEP: Final = 1   # 0.01 contracts (1e-2 units): every market since Apr 17 2026
# Exchange shards (section 10): exchange_index >= 0 names a shard; -1 or omitted auto-routes by ticker.
EXCHANGE_INDEX_AUTO: Final = -1
TRANSFER_INSTANCE: Final = "event_contract"
LAST_UPDATE_POST_ONLY_CROSS: Final = "PostOnlyCrossCancel"
# Error codes that say a pause refused the request (section 4.5/4.7) [U: lower-case REST spellings of
# FIX TRADING_PAUSED / EXCHANGE_PAUSED; both spellings accepted]. Kept here so the assumption lives once.
PAUSE_TRADING_CODES: Final = frozenset({"trading_paused", "TRADING_PAUSED", "trading_is_paused"})
PAUSE_EXCHANGE_CODES: Final = frozenset({"exchange_paused", "EXCHANGE_PAUSED", "exchange_is_paused",
                                         "exchange_closed"})
MARKET_STATUS: Final = ("initialized", "active", "inactive", "closed", "determined", "disputed",
                        "amended", "finalized")
FEE_TYPES: Final = ("quadratic", "quadratic_with_maker_fees", "flat")

# WebSocket.
WS_CHANNELS_PRIVATE: Final = ("orderbook_delta", "fill", "user_orders", "market_positions",
                              "order_group_updates", "communications")
WS_CHANNELS_PUBLIC: Final = ("ticker", "trade", "market_lifecycle_v2", "multivariate_market_lifecycle")
WS_PING_INTERVAL_S: Final = 10.0
WS_PING_PAYLOAD: Final = b"heartbeat"
WS_ERRORS: Final[dict[int, str]] = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    6: "Already subscribed",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    16: "Market not found",
    17: "Internal error",
    18: "Command timeout",
    19: "Shard parameter error",            # 19-22: shard_factor/shard_key params (shard_factor <= 100)
    20: "Shard parameter error",
    21: "Shard parameter error",
    22: "Shard parameter error",
    23: "Match IDs required",
    24: "Index IDs required",
    25: "Subscription buffer overflow",     # live since CL May 12: subscribe to less or read faster
    26: "Per-subscription market limit exceeded",
    27: "Too many requests",                # subscription command rate
    28: "Underlying tickers required",
}
WS_ERRORS_NEED_RESUBSCRIBE: Final = (10, 17, 25)

# Rate limits, 2026 token model (kalshi-api.md section 5): (read, write) tokens per second.
RATE_TIERS: Final[dict[str, tuple[int, int]]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
    "expert": (600, 600),
    "prestige": (10000, 8000),
}
COST_DEFAULT: Final = 10
COST_CANCEL: Final = 2
# [U] "a max-size batch cancel" per its page, lowered Sep 3: KalshiRest uses /account/endpoint_costs when read
COST_CANCEL_ALL: Final = 10
BURST_SECONDS: Final = 2.0  # the write bucket holds 2 s of budget ([U]: basic may hold 1 s)

# Order-group contracts limit window.
ORDER_GROUP_WINDOW_S: Final = 15.0
ORDER_GROUP_LIMIT_RANGE: Final = (1, 1_000_000)

# Batched cancel: items per request. [U] the V2 limit "scales with the write budget" (kalshi-api.md 4.1);
# V1 documented 20, and the sim enforces 20.
BATCH_CANCEL_MAX: Final = 20
BATCH_CREATE_MAX: Final = 20     # [U] orders per batched create (V1 documented 20; the sim enforces it)
# One dollar in kmm's price unit (1e-4 $): a YES price p is a NO price PRICE_ONE - p.
PRICE_ONE: Final = 10_000
# Cancel-all (DELETE /portfolio/events/orders) may also cancel orders placed within this long after it.
CANCEL_ALL_TAIL_S: Final = 60.0
