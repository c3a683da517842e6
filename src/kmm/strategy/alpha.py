"""The external alpha slot: a user's signal skews the reservation price.

Subclass :class:`AlphaSource` (or pass any object with ``get_external_skew``) and hand it to the engine.
The skew is in price units (1e-4 $) and is added to the reservation price: +50 leans the quotes half a
cent up (more willing to buy, less to sell).
"""

from __future__ import annotations

from typing import Protocol


class ExternalSkew(Protocol):
    def get_external_skew(self, ticker: str) -> float: ...


class AlphaSource:
    """The default: no opinion (0.0 for every market)."""

    def get_external_skew(self, ticker: str) -> float:
        return 0.0


class StaticAlpha(AlphaSource):
    """A fixed skew per market, e.g. from a config file or a research notebook."""

    def __init__(self, skews: dict[str, float]) -> None:
        self.skews = dict(skews)

    def get_external_skew(self, ticker: str) -> float:
        return float(self.skews.get(ticker, 0.0))
