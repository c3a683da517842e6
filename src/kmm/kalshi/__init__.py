"""kmm's Kalshi connector: signing, REST, WebSocket, rate limits, wire decode/encode.

It knows the wire and nothing about strategies. See docs/connector.md.
"""

from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.limiter import AMEND, CANCEL, PLACE, READ, RateLimiter
from kmm.kalshi.rest import KalshiRest, OrderNotPlaced, new_client_order_id
from kmm.kalshi.signing import SignaturePool, Signer
from kmm.kalshi.ws import FeedHandler, KalshiWs, WsError

__all__ = [
    "AMEND", "CANCEL", "PLACE", "READ",
    "ConnectorConfig", "FeedHandler", "KalshiRest", "KalshiWs", "OrderNotPlaced", "RateLimiter",
    "SignaturePool", "Signer", "WsError", "new_client_order_id",
]
