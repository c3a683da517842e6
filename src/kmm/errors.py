"""One exception hierarchy for kmm. Messages say what happened, to what, and what the user can do."""

from __future__ import annotations


class KmmError(Exception):
    """Base of every error kmm raises on purpose."""


class ConfigError(KmmError):
    """The configuration (file, flags or environment) is invalid or incomplete."""


class AuthError(KmmError):
    """The exchange refused our credentials or signature (HTTP 401/403), or the key cannot be used."""


class ExchangeError(KmmError):
    """The exchange answered with an error body: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 *, method: str = "", path: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method or path else ""
        extra = f" ({details})" if details else ""
        super().__init__(f"{where}HTTP {status} {code}: {message}{extra}")


class RateLimited(ExchangeError):
    """HTTP 429: the exchange's token bucket is empty. Back off; cancels keep flowing."""


class NotFound(ExchangeError):
    """HTTP 404: the object does not exist (a cancel of a gone order counts as done)."""


class DuplicateOrder(ExchangeError):
    """HTTP 409: an order with this client_order_id already exists."""


class RequestTimeout(KmmError):
    """A request got no answer in time; its outcome at the exchange is unknown."""


class BookError(KmmError, ValueError):
    """Book input was rejected (bad price, off the grid, unparseable, or a desync)."""


class RiskRejected(KmmError):
    """The risk gate refused an order before it reached the exchange."""
