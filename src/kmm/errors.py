"""One exception hierarchy for kmm. Messages say what happened, to what, and what the user can do.

:class:`KmmError` is the root of every error kmm raises on purpose, the compiled core's
:class:`BookError`, the connector's ``WireError`` and execution's ``RequestError`` included. The root
is defined in :mod:`kmm._core.errors` (pure Python, importing nothing) so that the core, which imports
nothing from the rest of kmm, can subclass it; it is re-exported here and everything imports it from
here.
"""

from __future__ import annotations

from kmm._core.errors import BookError, KmmError

__all__ = ["KmmError", "ConfigError", "AuthError", "ExchangeError", "RateLimited", "NotFound",
           "DuplicateOrder", "RequestTimeout", "BookError", "RiskRejected"]


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


class RiskRejected(KmmError):
    """The risk gate refused an order before it reached the exchange."""
