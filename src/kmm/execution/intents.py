"""What an algorithm asks the engine to do, what it reads, and what it remembers.

Intents are requests, not facts: the engine passes each through its risk gate and rate limiter,
sends it, and reports the outcome back through ``Algo.on_order_update`` (see docs/execution.md,
"Plugging in a driver"). Child ids are unique per execution and never reused, so a retried or
duplicated intent can be recognised (they map one-to-one onto ``client_order_id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

__all__ = ["Place", "Amend", "Decrease", "Cancel", "Intent", "BookView", "Event", "ORDER_STATUSES",
           "ACK_KINDS"]

# Order states the engine reports (kalshi-api.md 3.6 ``user_order`` plus "rejected" for a refused intent).
ORDER_STATUSES = ("resting", "executed", "canceled", "rejected")
ACK_KINDS = ("place", "amend", "decrease", "cancel")


@dataclass(slots=True, frozen=True)
class Place:
    """Create a child order: ``count`` (1e-2 contracts) on V2 ``side`` at YES ``price`` (1e-4 $)."""

    child_id: str
    side: str
    price: int
    count: int
    tif: str = "good_till_canceled"
    post_only: bool = False

    kind = "place"


@dataclass(slots=True, frozen=True)
class Amend:
    """Change a child's price and total size. ``count`` is the new **total** (filled + remaining), as
    in the V2 amend body. Used for price walks: one API call (on Kalshi a price amend loses queue
    priority, exactly as a cancel/replace would)."""

    child_id: str
    price: int
    count: int

    kind = "amend"


@dataclass(slots=True, frozen=True)
class Decrease:
    """Shrink a child's remaining size to ``reduce_to`` (1e-2 contracts); keeps queue priority."""

    child_id: str
    reduce_to: int

    kind = "decrease"


@dataclass(slots=True, frozen=True)
class Cancel:
    """Cancel a child. A cancel of an order that is already gone must be reported as ``canceled``
    (or ``executed``) by the engine, never as a reject."""

    child_id: str

    kind = "cancel"


Intent = Place | Amend | Decrease | Cancel


class BookView(Protocol):
    """The read side of an order book that algorithms use (kmm's compiled OrderBook satisfies it).
    ``asks``/``bids`` return up to ``n`` (YES price, size) levels, best first."""

    def asks(self, n: int) -> Sequence[tuple[int, int]]: ...

    def bids(self, n: int) -> Sequence[tuple[int, int]]: ...

    def best_bid(self) -> int | None: ...

    def best_ask(self) -> int | None: ...

    def mid(self) -> float | None: ...


@dataclass(slots=True, frozen=True)
class Event:
    """One entry of an algorithm's history; metrics are computed from these alone.

    ``kind`` is one of: ``start`` (price = arrival best take-side price, size = target),
    ``intent`` (``intent`` set), ``fill`` (size, price, fee), ``update`` (status, size = remaining,
    filled), ``walk`` (price = new price), ``split`` (size, price of one planned split),
    ``note`` (text), ``end`` (text = reason).
    """

    ts_ns: int
    kind: str
    child_id: str = ""
    price: int | None = None
    size: int = 0
    fee: int = 0
    filled: int = 0
    status: str = ""
    text: str = ""
    intent: Intent | None = None
