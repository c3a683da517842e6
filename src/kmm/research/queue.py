"""Where cancels at our price come from: ahead of our virtual order or behind it.

A recorded feed shows a price level shrinking; it does not say whose order left. Our virtual order's
queue position (``ahead``: the size of others' orders in front of it, 1e-2 contracts) must move by the
part of a cancel that came from in front. Trades are different: they always eat the front of the queue
first, and the fill simulator handles them itself (:mod:`kmm.research.fills`).

The models follow the family hftbacktest popularised (probability that a cancel came from the front
is ``f(ahead) / (f(ahead) + f(behind))``), in kmm's words and integer units:

=============== =====================================================================================
``pessimistic`` no cancel ever moves us forward; only trades do (the queue never gets shorter for free)
``proportional`` f(x) = x: a cancel is as likely to be any contract in the level
``power``       f(x) = x ** n (``queue_power``, default 2): the bigger part of the queue loses more
``log``         f(x) = log(1 + x contracts): flatter than proportional
``optimistic``  every cancel comes from in front of us (the queue shrinks as fast as it can)
=============== =====================================================================================

The update is the expected value, so a replay is deterministic without drawing random numbers. If the
share taken from behind is more than the size behind, the excess comes from in front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

QUEUE_MODELS = ("pessimistic", "proportional", "power", "log", "optimistic")


@dataclass(slots=True, frozen=True)
class QueueModel:
    """``kind`` is one of :data:`QUEUE_MODELS`; ``power`` is the exponent of the ``power`` model."""

    kind: str = "power"
    power: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in QUEUE_MODELS:
            raise ValueError(f"queue model {self.kind!r} is not one of {', '.join(QUEUE_MODELS)}")
        if self.power <= 0:
            raise ValueError(f"queue model power {self.power} must be > 0")

    def front_share(self, ahead: float, behind: float) -> float:
        """Probability (0..1) that one cancelled contract at our level was in front of us."""
        if ahead <= 0:
            return 0.0
        if behind <= 0:
            return 1.0
        kind = self.kind
        if kind == "pessimistic":
            return 0.0
        if kind == "optimistic":
            return 1.0
        if kind == "proportional":
            fa, fb = ahead, behind
        elif kind == "power":
            # ratios only: scale to contracts first so large sizes cannot overflow a float
            fa, fb = (ahead / 100.0) ** self.power, (behind / 100.0) ** self.power
        else:
            fa, fb = math.log1p(ahead / 100.0), math.log1p(behind / 100.0)
        total = fa + fb
        return fa / total if total > 0 else 0.5

    def after_cancel(self, ahead: float, behind: float, cancelled: float) -> float:
        """Our new ``ahead`` after ``cancelled`` (1e-2 contracts) left the level by cancels."""
        if cancelled <= 0 or ahead <= 0:
            return max(0.0, ahead)
        if self.kind == "pessimistic":
            # nothing from the front... unless more left than there was behind us
            return max(0.0, ahead - max(0.0, cancelled - behind))
        share = self.front_share(ahead, behind)
        from_front = share * cancelled
        from_back = cancelled - from_front
        if from_back > behind:
            from_front += from_back - behind
        return max(0.0, ahead - from_front)
