"""From a decision to requests: the one implementation the live maker and the backtest share.

A market's pipeline decides *actions* (place, amend, decrease, cancel). Before any of them becomes a
request, the engine applies the same rules whether it trades live (:mod:`kmm.engine.maker`) or
replays a capture (:mod:`kmm.research.backtest`):

- a place is sized to what reduces the position when the market is reduce-only (a quote that would
  not reduce is not asked for), checked by the risk gate, then cut to what the event limits allow;
- an amend in reduce-only mode is never grown past what reduces the position (less the side's other
  orders); an amend the gate or the event limits refuse takes the order down instead (the next
  decision places what passes);
- the order manager records each request before it is sent (``create``, ``request_cancel``, ...).

:meth:`QuotePlanner.plan` yields one step per request to send, as soon as it is decided, so a caller
that sends each step before asking for the next keeps the order of side effects of one loop. Only
sending differs between the callers: coroutines on the live session, timed events on the replay.

:func:`small_reprices_only` is the write-pressure rule both apply before planning: a decision that only
nudges prices by a few ticks is skipped whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from kmm._core import diff as _diff
from kmm.engine.market import SIDE_NAME
from kmm.engine.risk import Decision

log = logging.getLogger("kmm.engine.quoting")

PLACE, AMEND, DECREASE, CANCEL = _diff.PLACE, _diff.AMEND, _diff.DECREASE, _diff.CANCEL


def small_reprices_only(om: Any, actions: Iterable[Any], skip_px: int) -> bool:
    """True when every action is an amend that only moves a price (no size change) by at most
    ``skip_px``: under write pressure such a decision is skipped whole (never half of it, which could
    leave our bid at or above our ask). The caller decides whether the write bucket is under pressure."""
    for a in actions:
        if a.kind != AMEND:
            return False
        o = om.get(a.order_id)
        if o is None or a.size != o.remaining or abs(a.price - o.price) > skip_px:
            return False
    return True


class QuotePlanner:
    """The gate, reduce-only sizing, event limits and order-manager transitions between a decision
    and its requests. ``event_risk`` is a :class:`kmm.engine.eventwire.EventWiring` (or None)."""

    __slots__ = ("gate", "om", "pf", "event_risk", "last_denial", "last_denial_detail")

    def __init__(self, gate: Any, om: Any, pf: Any, event_risk: Any = None) -> None:
        self.gate = gate
        self.om = om
        self.pf = pf
        self.event_risk = event_risk
        self.last_denial = ""            # why the last refused action was refused (the maker's status)
        self.last_denial_detail = ""

    def reducing_size(self, ticker: str, side: str, size: int) -> int:
        """In reduce-only mode a reducing quote is sized to what reduces the position (never more than
        the position less what already rests on that side), so it passes instead of being refused; a
        quote that would not reduce is not asked for at all (0)."""
        gate = self.gate
        q = self.pf.position(ticker)
        if not gate.reduce_only_reason(ticker, q):
            return size
        sign = 1 if side == "bid" else -1
        if q * sign >= 0:
            return 0                        # not reducing: it cannot pass, so it is not sent
        room = abs(q) - self.om.open_qty(ticker, side)
        return max(0, min(size, room))

    def plan(self, ticker: str, actions: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        """The requests of ``actions``, one step each, in order:

        - ``(PLACE, order, side, price, size)``: ``order`` is the order manager's new order;
        - ``(CANCEL, order_id)``; ``(DECREASE, order_id, reduce_to)``;
        - ``(AMEND, live, side, price, size, amended)``: ``live`` the order before the amend,
          ``amended`` the order manager's record after ``request_amend``.
        """
        gate, om, ev = self.gate, self.om, self.event_risk
        for a in actions:
            kind, side = a.kind, SIDE_NAME[a.side]
            if kind == PLACE:
                size = self.reducing_size(ticker, side, a.size)
                if size <= 0:
                    self.last_denial = "reduce_only"
                    self.last_denial_detail = f"{gate.reduce_only_reason(ticker)}: a {side} would not reduce"
                    continue
                d = gate.check_place(ticker, side, a.price, size)
                if not d:
                    self.last_denial, self.last_denial_detail = d.reason, d.detail
                    log.debug("%s: place %s %d x %d denied: %s", ticker, side, a.price, size, d.detail)
                    continue
                if ev is not None:
                    size, d2 = ev.size_place(ticker, side, a.price, size)   # after the market's gate
                    if not size:
                        self.last_denial, self.last_denial_detail = \
                            (d2.reason, d2.detail) if d2 is not None else ("event", "")
                        continue
                yield (PLACE, om.create(ticker, side, a.price, size), side, a.price, size)
                continue
            live = om.get(a.order_id)
            if live is None or live.order_id is None:
                continue
            oid = live.order_id
            if kind == CANCEL:
                if om.request_cancel(oid) is not None:
                    yield (CANCEL, oid)
            elif kind == DECREASE:
                if om.request_decrease(oid, a.size) is not None:
                    yield (DECREASE, oid, a.size)
            elif kind == AMEND:
                size = a.size
                if gate.reduce_only_reason(ticker):
                    # reduce-only: the order may hold what reduces the position, less the other orders
                    # on its side; never grown past that (which the gate refuses, then cancel/replace churn)
                    q = self.pf.position(ticker)
                    reducing = q * (1 if side == "bid" else -1) < 0
                    room = abs(q) - (om.open_qty(ticker, side) - live.remaining) if reducing else 0
                    size = min(size, room)
                    if size > 0 and size == live.remaining and a.price == live.price:
                        continue                      # already what reduce-only allows
                d = gate.check_amend(ticker, side, a.price, size, live.remaining) if size > 0 else \
                    Decision(False, "reduce_only", f"{ticker}: a {side} would not reduce the position")
                if d and ev is not None:
                    denied = ev.check_amend(ticker, side, a.price, size, live.price, live.remaining)
                    d = d if denied is None else denied
                if not d:
                    # the gate refuses the new price/size (e.g. reduce-only): take the order down
                    # instead; the next decision places what passes (sized to the position)
                    self.last_denial, self.last_denial_detail = d.reason, d.detail
                    if om.request_cancel(oid) is not None:
                        yield (CANCEL, oid)
                    continue
                amended = om.request_amend(oid, a.price, size)
                if amended is not None:
                    yield (AMEND, live, side, a.price, size, amended)
