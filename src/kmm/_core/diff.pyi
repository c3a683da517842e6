"""Target quotes vs live orders -> the fewest order actions, with hysteresis.

Units: prices 1e-4 $ (YES terms), sizes 1e-2 contracts, ages ns. Sides follow Kalshi V2 orders:
BID = 0 (buy YES), ASK = 1 (sell YES).

Rules per side (target size 0 = no quote on that side):
- no target: cancel every live order on the side;
- no live order: PLACE the target;
- otherwise keep the best-matching live order (lowest category, then smallest |price - target|,
  then smallest |remaining - target size|, then earliest in ``live``) and CANCEL the others.
  The kept order needs nothing when it is exact, or when it is *near* (|price - target| <=
  price_tol, age_ns < max_age_ns, and strictly on its own side of the other side's target) with
  target - size_tol <= remaining <= target. It gets a DECREASE (same price, queue priority kept on
  Kalshi) when it is exact or near in price but larger than the target; otherwise an AMEND to the
  target price and size (on Kalshi a price change or a size increase loses queue priority).
- A live order is never left larger than its target (targets carry the position limits).
- If both kept orders would stay off target and lock or cross each other, both are amended.
Order of the returned actions: CANCELs (in ``live`` order), DECREASEs, AMENDs, PLACEs; bid before ask,
except that the ask's AMEND goes first when the bid's new price reaches the kept ask's price.
"""

from typing import Any, Sequence, TypeAlias, final

PLACE: int      # 0: new order (order_id None)
AMEND: int      # 1: new price and/or size for order_id
DECREASE: int   # 2: shrink order_id's remaining to size, price unchanged
CANCEL: int     # 3: cancel order_id
BID: int        # 0: buy YES
ASK: int        # 1: sell YES
KIND_NAMES: tuple[str, str, str, str]
SIDE_NAMES: tuple[str, str]

@final
class Action:
    """One action. ``size`` is the desired *remaining* count: for Kalshi's amend (whose ``count`` is
    the new total) send filled + size; for decrease send ``reduce_to = size``. ``price`` is the new
    price for PLACE/AMEND and the order's current price for DECREASE/CANCEL; ``size`` is 0 for CANCEL."""
    @property
    def kind(self) -> int: ...
    @property
    def side(self) -> int: ...
    @property
    def order_id(self) -> Any: ...
    @property
    def price(self) -> int: ...
    @property
    def size(self) -> int: ...
    def __init__(self, kind: int, side: int, order_id: Any, price: int, size: int) -> None: ...
    def astuple(self) -> tuple[int, int, Any, int, int]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

# (order_id, side, price, remaining, age_ns); a stub-only name: the module defines no such alias
_LiveOrder: TypeAlias = tuple[Any, int, int, int, int]

@final
class Differ:
    @property
    def price_tol(self) -> int: ...  # 1e-4 $ (a price distance, not ticks), >= 0
    @property
    def size_tol(self) -> int: ...  # 1e-2 contracts, >= 0: how far below the target a live remaining may be
    @property
    def max_age_ns(self) -> int: ...  # ns; 2**63 - 1 when constructed with None (no age limit)
    def __init__(self, price_tol: int = 0, size_tol: int = 0, max_age_ns: int | None = None) -> None: ...
    def diff(self, target_bid_px: int, target_bid_size: int, target_ask_px: int, target_ask_size: int,
             live: Sequence[_LiveOrder] | Sequence[Sequence[Any]]) -> tuple[Action, ...]:
        """Actions making ``live`` match the targets; the shared empty tuple when nothing changes.
        Orders with remaining 0 are ignored. ValueError on a target outside 1..9999 with size > 0,
        a negative size, bid >= ask, or a malformed live order (named by index)."""
