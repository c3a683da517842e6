"""Every error code the simulator answers with, in one table.

The REST ``code`` strings of Kalshi's business rejects are [U] (kalshi-api.md 4.5): Kalshi's FIX Text names
them MARKET_INACTIVE, POST_ONLY_CROSS, ...; the REST codes are probably their lower-case forms. If a real
capture shows otherwise, change them here and nowhere else.
"""

from __future__ import annotations

# code -> (HTTP status, message)
REJECTS: dict[str, tuple[int, str]] = {
    # request shape
    "invalid_parameters": (400, "invalid parameters"),
    "missing_parameters": (400, "missing required parameters"),
    "invalid_order": (400, "invalid order"),
    "invalid_price": (400, "invalid price"),
    "invalid_count": (400, "invalid count"),
    "invalid_json": (400, "request body is not valid JSON"),
    # auth
    "missing_auth": (401, "authentication headers are missing"),
    "unknown_api_key": (401, "unknown api key"),
    "invalid_signature": (401, "invalid signature"),
    "timestamp_out_of_window": (401, "request timestamp is outside the accepted window"),
    # lookup
    "not_found": (404, "not found"),
    "market_not_found": (404, "market not found"),
    "order_not_found": (404, "order not found"),
    "order_group_not_found": (404, "order group not found"),
    # conflicts
    "order_already_exists": (409, "an order with this client_order_id already exists"),
    "transfer_already_exists": (409, "a transfer with this client_transfer_id already exists"),
    "order_id_and_client_order_id_mismatch": (400, "order_id and client_order_id name different orders"),
    # deprecated
    "deprecated_v1_order_endpoint": (410, "V1 order endpoints are retired; use /portfolio/events/orders"),
    # business rejects (FIX Text names, lower-cased) [U]
    "market_inactive": (400, "market is not open for trading"),
    "market_already_closed": (400, "market is already closed"),
    "insufficient_balance": (400, "insufficient balance"),
    "post_only_cross": (400, "post-only order would cross the book"),
    "exceeded_order_group_risk_limit": (409, "order group has reached its contracts limit; reset it"),
    "exchange_paused": (409, "the exchange is paused"),
    "trading_paused": (409, "trading is paused on this market"),
    "fok_insufficient_volume": (409, "fill-or-kill order cannot be filled completely"),
    "self_cross_attempt": (409, "order would trade against your own resting order"),
    "reduce_only_would_increase": (400, "reduce-only order would increase the position"),
    "order_not_resting": (400, "order is not resting"),
    # server side
    "internal_error": (500, "internal server error"),
}


class Reject(Exception):
    """A refusal of a request; the REST layer turns it into ``{"error": {code, message, details}}``."""

    def __init__(self, code: str, details: str = "") -> None:
        status, message = REJECTS[code]
        super().__init__(f"{code}: {details or message}")
        self.code = code
        self.status = status
        self.message = message
        self.details = details

    def flat(self) -> dict[str, str]:
        """``{code, message, details}``: the SDK's ErrorResponse (and a failed batch item's ``error``)."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def body(self) -> dict[str, dict[str, str]]:
        """The REST error body. [U] which of wrapped ``{"error": {...}}`` and flat Kalshi serves live
        (kalshi-api.md 4.5); the simulator wraps. ``service`` was removed on Aug 6 2026."""
        return {"error": self.flat()}
