"""kmm's Kalshi connector: signing, REST, WebSocket, rate limits, wire decode/encode.

It knows the wire and nothing about strategies. See docs/connector.md.
"""

from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.limiter import AMEND, CANCEL, PLACE, READ, RateLimiter
from kmm.kalshi.decode import WireError
from kmm.kalshi.rest import (ExchangePaused, KalshiRest, OrderNotPlaced, ShardBalanceError, TradingPaused,
                             new_client_order_id, transfer_command)
from kmm.kalshi.signing import SignaturePool, Signer
from kmm.kalshi.ws import FeedHandler, KalshiWs, WsError

__all__ = [
    "AMEND", "CANCEL", "PLACE", "READ",
    "ConnectorConfig", "ExchangePaused", "FeedHandler", "KalshiRest", "KalshiWs", "OrderNotPlaced", "RateLimiter",
    "ShardBalanceError", "SignaturePool", "Signer", "TradingPaused", "WireError", "WsError",
    "new_client_order_id", "transfer_command",
]
