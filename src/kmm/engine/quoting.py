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
from kmm.engine.risk import ALLOW, Decision, RiskGate

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

    def place(self, ticker: str, a: Any) -> tuple[Any, str, int, int] | None:
        """One PLACE action planned: ``(order, side, price, size)`` with the order manager's new order
        (the order is recorded before it is sent), or None with :attr:`last_denial` set: the checks of
        :meth:`place_checked`, then ``OrderManager.create``."""
        checked = self.place_checked(ticker, a)
        if checked is None:
            return None
        side, price, size = checked
        return self.om.create(ticker, side, price, size), side, price, size

    def place_checked(self, ticker: str, a: Any) -> tuple[str, int, int] | None:
        """A PLACE action's checks: ``(side, price, size)`` it may be sent as (no order recorded yet),
        or None with :attr:`last_denial` set. Reduce-only sizing (:meth:`reducing_size`), the gate
        (:meth:`RiskGate.place_allowed`, then ``check_place`` for the counted denial when it says no),
        then the event limits."""
        gate = self.gate
        side = SIDE_NAME[a.side]
        size = a.size
        pf = self.pf
        q = pf.position(ticker)
        # RiskGate's own rule without its wrapper's call (a gate of another kind: its public method)
        ro = gate._reduce_only if type(gate) is RiskGate else gate.reduce_only_reason
        why = ro(ticker, q)
        if why:                             # reducing_size: sized to what reduces, or not asked for
            sign = 1 if side == "bid" else -1
            size = 0 if q * sign >= 0 else max(0, min(size, abs(q) - self.om.open_qty(ticker, side)))
            if size <= 0:
                self.last_denial = "reduce_only"
                self.last_denial_detail = f"{gate.reduce_only_reason(ticker)}: a {side} would not reduce"
                return None
        price = a.price
        if type(gate) is RiskGate:          # the live gate: the common case without the getattr probes
            allowed = gate.place_allowed(ticker, side, price, size, q, why) if gate.positions is pf \
                else gate.place_allowed(ticker, side, price, size)
        else:
            fast = getattr(gate, "place_allowed", None)
            allowed = fast is not None and (fast(ticker, side, price, size, q, why)
                                            if getattr(gate, "positions", None) is pf
                                            else fast(ticker, side, price, size))
        if not allowed:
            d = gate.check_place(ticker, side, price, size)
            if not d:
                self.last_denial, self.last_denial_detail = d.reason, d.detail
                log.debug("%s: place %s %d x %d denied: %s", ticker, side, price, size, d.detail)
                return None
        ev = self.event_risk
        if ev is not None:
            size, d2 = ev.size_place(ticker, side, price, size)   # after the market's gate
            if not size:
                self.last_denial, self.last_denial_detail = \
                    (d2.reason, d2.detail) if d2 is not None else ("event", "")
                return None
        return side, price, size

    def other(self, ticker: str, a: Any) -> tuple[Any, ...] | None:
        """One CANCEL, DECREASE or AMEND action planned: its step (see :meth:`plan`; an amend the gate
        or the event limits refuse becomes a CANCEL), or None when nothing is to be sent."""
        gate, om, ev = self.gate, self.om, self.event_risk
        kind, side = a.kind, SIDE_NAME[a.side]
        live = om.get(a.order_id)
        if live is None or live.order_id is None:
            return None
        oid = live.order_id
        if kind == CANCEL:
            return (CANCEL, oid) if om.request_cancel(oid) is not None else None
        if kind == DECREASE:
            return (DECREASE, oid, a.size) if om.request_decrease(oid, a.size) is not None else None
        if kind == AMEND:
            size = a.size
            d = None
            if type(gate) is RiskGate:
                # sizing and checks in one call; -1: the steps below, which say why
                fast = gate.amend_size(ticker, side, a.price, size, live.remaining, live.price)
                if fast == 0:
                    return None
                if fast > 0:
                    size, d = fast, ALLOW
            if d is None:
                verdict = self._amend_decision(ticker, side, a.price, size, live)
                if verdict is None:
                    return None
                d, size = verdict
            if d and ev is not None:
                denied = ev.check_amend(ticker, side, a.price, size, live.price, live.remaining)
                d = d if denied is None else denied
            if not d:
                # the gate refuses the new price/size (e.g. reduce-only): take the order down
                # instead; the next decision places what passes (sized to the position)
                self.last_denial, self.last_denial_detail = d.reason, d.detail
                return (CANCEL, oid) if om.request_cancel(oid) is not None else None
            amended = om.request_amend(oid, a.price, size)
            return (AMEND, live, side, a.price, size, amended) if amended is not None else None
        return None

    def _amend_decision(self, ticker: str, side: str, price: int, size: int, live: Any) -> tuple[Any, int] | None:
        """The gate's Decision on an amend of ``live`` to ``price``/``size`` and the size it is for, or
        None when reduce-only leaves the order as it is: the steps that say why (:meth:`other` takes
        them when :meth:`RiskGate.amend_size` does not allow the amend, or for another gate)."""
        gate = self.gate
        if gate.reduce_only_reason(ticker):
            # reduce-only: the order may hold what reduces the position, less the other orders
            # on its side; never grown past that (which the gate refuses, then cancel/replace churn)
            q = self.pf.position(ticker)
            reducing = q * (1 if side == "bid" else -1) < 0
            room = abs(q) - (self.om.open_qty(ticker, side) - live.remaining) if reducing else 0
            size = min(size, room)
            if size > 0 and size == live.remaining and price == live.price:
                return None                   # already what reduce-only allows
        if size <= 0:
            return Decision(False, "reduce_only", f"{ticker}: a {side} would not reduce the position"), size
        return gate.check_amend(ticker, side, price, size, live.remaining), size

    def plan(self, ticker: str, actions: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        """The requests of ``actions``, one step each, in order:

        - ``(PLACE, order, side, price, size)``: ``order`` is the order manager's new order;
        - ``(CANCEL, order_id)``; ``(DECREASE, order_id, reduce_to)``;
        - ``(AMEND, live, side, price, size, amended)``: ``live`` the order before the amend,
          ``amended`` the order manager's record after ``request_amend``.
        """
        for a in actions:
            if a.kind == PLACE:
                placed = self.place(ticker, a)
                if placed is not None:
                    yield (PLACE, *placed)
                continue
            step = self.other(ticker, a)
            if step is not None:
                yield step
