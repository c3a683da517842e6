"""The algorithm interface and the bookkeeping every algorithm shares.

An algorithm is a small state machine. The engine (or a test harness) drives it with

- ``start(now_ns, book)``: read the book, emit the first intents;
- ``on_book(now_ns, book)``: the book changed;
- ``on_fill(now_ns, child_id, count, price, fee)``: one of our fills (may arrive late, after the
  child was cancelled or replaced);
- ``on_order_update(now_ns, child_id, status, remaining, filled, *, ack=None, price=None)``: a
  child's state at the exchange, either the answer to an intent (``ack`` = the intent's kind) or
  an unsolicited change (``ack=None``); ``status="rejected"`` means the intent named by ``ack`` was
  refused and the order is as it was before it;
- ``on_timer(now_ns)``: called once ``now_ns >= next_wakeup_ns``;
- ``cancel(now_ns)``: the user or the engine stops the execution.

Each call returns the intents to send. The engine never has to guess: an algorithm never assumes an
intent succeeded until the update with that ``ack`` arrives.

**The size invariant.** For every child the algorithm keeps ``cap``, an upper bound on how much
that child can ever fill: its total size while it may still trade (the larger of the confirmed size
and any pending amend), and once it is terminal the exchange's final fill count (``filled`` of the
terminal update), raised by any fill actually seen. New orders and size-raising amends are only
emitted while ``sum(cap) + new <= target``. Since fills per child never exceed its cap, the total
ever filled never exceeds the target, whatever the order in which fills, updates, cancels and
replacements arrive. That is why ``filled`` (the exchange's cumulative fill count of the order,
``fill_count`` in ``user_order``) is part of every update: a cancel confirmation with
``remaining=0`` alone cannot tell a fill still in flight from size that was never traded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from kmm.errors import KmmError
from kmm.execution.decision import DEFAULT_POLICY, Aggression, LiquidityPolicy, aggression
from kmm.execution.intents import (ACK_KINDS, ORDER_STATUSES, Amend, BookView, Cancel, Decrease, Event,
                                   Intent, Place)
from kmm.execution.request import ExecutionRequest, MarketInfo, RequestError

__all__ = ["Algo", "Child", "InvariantViolation", "AlgoParams", "NS"]

log = logging.getLogger(__name__)

NS = 1_000_000_000
CANCEL_RETRY_NS = NS  # a refused cancel is retried after this long
TIF_GTC = "good_till_canceled"
TIF_IOC = "immediate_or_cancel"


class InvariantViolation(KmmError):
    """An algorithm was about to break a hard rule (cross the limit, exceed the target, price off the
    grid). This is a bug in the algorithm; the intent is not emitted."""


@dataclass(slots=True)
class AlgoParams:
    """Parameters every algorithm has. ``timeout_s``: end the execution (cancelling every child)
    this long after start; None = run until filled or cancelled. ``max_rejects``: give up after
    this many refused intents of kind place."""

    timeout_s: float | None = 300.0
    max_rejects: int = 5

    def __post_init__(self) -> None:
        _check_params(self)

    def check(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise RequestError(f"timeout_s {self.timeout_s!r} must be > 0 seconds, or None for no timeout")
        if self.max_rejects < 1:
            raise RequestError(f"max_rejects {self.max_rejects} must be >= 1")


def _check_params(p: Any) -> None:
    for cls in type(p).__mro__:
        check = cls.__dict__.get("check")
        if check is not None:
            check(p)


@dataclass(slots=True)
class Child:
    """One child order as the algorithm knows it. Sizes 1e-2 contracts, prices YES 1e-4 $."""

    child_id: str
    side: str
    price: int
    count: int                 # total size asked for (place count, or the last amended total)
    tif: str
    tag: str = ""
    placed_ns: int = 0
    state: str = "pending"     # pending (no answer yet) -> live -> done (terminal or refused)
    status: str = ""           # last status reported by the exchange
    remaining: int = 0         # last reported remaining
    exch_filled: int = 0       # exchange's cumulative fill count, from updates
    seen_filled: int = 0       # sum of fills delivered to on_fill
    fill_notional: int = 0     # sum count * price of those fills
    fees: int = 0
    confirmed_cap: int = 0     # filled + remaining per the last update (or the placed count)
    cap: int = 0               # upper bound of total fills ever
    pending: dict[str, Intent] = field(default_factory=dict)
    want_cancel: bool = False
    cancel_retry_ns: int = 0
    walks: int = 0

    @property
    def live(self) -> bool:
        return self.state != "done"

    @property
    def open_size(self) -> int:
        """Size that may still fill: cap minus fills seen."""
        return max(0, self.cap - self.seen_filled)

    def recompute_cap(self) -> None:
        cap = self.confirmed_cap
        amend = self.pending.get("amend")
        if amend is not None and self.state != "done":
            cap = max(cap, amend.count)  # type: ignore[union-attr]
        self.cap = max(cap, self.seen_filled, self.exch_filled)


class Algo:
    """Base class: child bookkeeping, the size and limit invariants, cancel sweeps and history.

    Subclasses implement the hooks ``_on_start``, ``_on_book``, ``_on_timer``, ``_on_fill``,
    ``_on_child_done``, ``_on_ack`` and ``_timer_ns``, and emit intents through ``_place``,
    ``_amend``, ``_decrease`` and ``_cancel``.
    """

    name = "base"
    params_type: type[AlgoParams] = AlgoParams

    def __init__(self, request: ExecutionRequest, market: MarketInfo, params: AlgoParams | None = None, *,
                 policy: LiquidityPolicy = DEFAULT_POLICY, execution_id: str | None = None) -> None:
        request.check_market(market)
        self.request = request
        self.market = market
        self.grid = market.grid
        self.params = params if params is not None else self.params_type()
        if not isinstance(self.params, self.params_type):
            raise RequestError(f"{self.name} takes {self.params_type.__name__}, got {type(self.params).__name__}")
        self.policy = policy
        self.execution_id = execution_id or request.execution_id or "exec"
        self.side = request.side
        self.limit = request.limit
        self.target_size = request.size
        self.lot = request.lot
        self.aggression: Aggression = aggression(request.edge, request.confidence, policy)
        self.patience = policy.patience_multiplier(self.aggression)
        self.children: dict[str, Child] = {}
        self.history: list[Event] = []
        self.started = False
        self.finished = False
        self.end_reason = ""
        self.start_ns = 0
        self.deadline_ns: int | None = None
        self.arrival_price: int | None = None
        self.next_wakeup_ns: int | None = None
        self.rejects = 0
        self.book: BookView | None = None
        self._seq = 0
        self._out: list[Intent] = []

    # ----------------------------------------------------------------- derived state
    @property
    def filled(self) -> int:
        """Total of the fills seen, 1e-2 contracts."""
        return sum(c.seen_filled for c in self.children.values())

    @property
    def committed(self) -> int:
        """Upper bound of the total that can ever fill: sum of every child's cap."""
        return sum(c.cap for c in self.children.values())

    @property
    def headroom(self) -> int:
        return self.target_size - self.committed

    @property
    def live_children(self) -> list[Child]:
        return [c for c in self.children.values() if c.live]

    @property
    def unsettled(self) -> int:
        """Fills the exchange reported (``filled`` of updates) that have not arrived through on_fill."""
        return sum(max(0, c.exch_filled - c.seen_filled) for c in self.children.values())

    @property
    def done(self) -> bool:
        """The execution has ended and no child can still trade (late fills may still be delivered)."""
        return self.finished and not self.live_children

    # ----------------------------------------------------------------- driver API
    def start(self, now_ns: int, book: BookView) -> list[Intent]:
        if self.started:
            raise InvariantViolation(f"{self.execution_id}: start() called twice")
        self.started = True
        self.start_ns = now_ns
        self.book = book
        if self.params.timeout_s is not None:
            self.deadline_ns = now_ns + int(self.params.timeout_s * NS)
        self.arrival_price = self._take_best(book)
        self._record(now_ns, "start", price=self.arrival_price, size=self.target_size,
                     text=f"{self.name} {self.request.describe()} aggression={self.aggression.value}")
        self._on_start(now_ns, book)
        return self._flush(now_ns)

    def on_book(self, now_ns: int, book: BookView) -> list[Intent]:
        self.book = book
        if self.started and not self.finished:
            self._on_book(now_ns, book)
        return self._flush(now_ns)

    def on_fill(self, now_ns: int, child_id: str, count: int, price: int, fee: int = 0) -> list[Intent]:
        child = self.children.get(child_id)
        if child is None:
            log.warning("%s: fill for unknown child %s (%s @ %s) ignored", self.execution_id, child_id, count, price)
            self._record(now_ns, "note", child_id, text="fill for unknown child ignored")
            return self._flush(now_ns)
        if count <= 0:
            raise ValueError(f"{self.execution_id}: fill count {count} for {child_id} must be > 0")
        if not self._within_limit(price):
            log.error("%s: fill for %s at %s is beyond the limit %s", self.execution_id, child_id, price, self.limit)
        child.seen_filled += count
        child.fill_notional += count * price
        child.fees += fee
        child.recompute_cap()
        self._record(now_ns, "fill", child_id, price=price, size=count, fee=fee)
        if self.filled > self.target_size:
            log.error("%s: filled %s exceeds target %s", self.execution_id, self.filled, self.target_size)
        if not self.finished:
            self._on_fill(now_ns, child, count, price)
            if self.filled >= self.target_size:
                self._finish(now_ns, "filled")
        return self._flush(now_ns)

    def on_order_update(self, now_ns: int, child_id: str, status: str, remaining: int, filled: int, *,
                        ack: str | None = None, price: int | None = None) -> list[Intent]:
        if status not in ORDER_STATUSES:
            raise ValueError(f"status {status!r} must be one of {', '.join(ORDER_STATUSES)}")
        if ack is not None and ack not in ACK_KINDS:
            raise ValueError(f"ack {ack!r} must be one of {', '.join(ACK_KINDS)} or None")
        child = self.children.get(child_id)
        if child is None:
            log.warning("%s: update for unknown child %s ignored", self.execution_id, child_id)
            return self._flush(now_ns)
        intent = child.pending.pop(ack, None) if ack is not None else None
        self._record(now_ns, "update", child_id, price=price, size=remaining, filled=filled, status=status,
                     text=ack or "")
        if status == "rejected":
            self._on_reject(now_ns, child, ack)
            return self._flush(now_ns)
        child.exch_filled = max(child.exch_filled, filled)
        if child.state != "done":
            child.status = status
            child.remaining = remaining
            if isinstance(intent, Amend):
                child.price = price if price is not None else intent.price
                child.count = intent.count
            elif price is not None:
                child.price = price
            if status in ("executed", "canceled"):
                child.state = "done"
                child.remaining = 0
                child.confirmed_cap = child.exch_filled
            else:
                child.state = "live"
                child.confirmed_cap = child.exch_filled + remaining
        child.recompute_cap()
        if ack is not None and not self.finished:
            self._on_ack(now_ns, child, ack)
        if child.state == "done":
            child.pending.clear()
            child.recompute_cap()
            if not self.finished:
                self._on_child_done(now_ns, child)
        return self._flush(now_ns)

    def on_timer(self, now_ns: int) -> list[Intent]:
        if self.started and not self.finished:
            if self.deadline_ns is not None and now_ns >= self.deadline_ns:
                self._finish(now_ns, "timeout")
            else:
                self._on_timer(now_ns)
        return self._flush(now_ns)

    def cancel(self, now_ns: int, reason: str = "cancelled") -> list[Intent]:
        """Stop: every live child gets a Cancel (now, and again after a refused cancel)."""
        if not self.finished:
            self._finish(now_ns, reason)
        return self._flush(now_ns)

    # ----------------------------------------------------------------- hooks (override)
    def _on_start(self, now_ns: int, book: BookView) -> None:
        raise NotImplementedError

    def _on_book(self, now_ns: int, book: BookView) -> None:
        pass

    def _on_timer(self, now_ns: int) -> None:
        pass

    def _on_fill(self, now_ns: int, child: Child, count: int, price: int) -> None:
        pass

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        pass

    def _on_ack(self, now_ns: int, child: Child, kind: str) -> None:
        pass

    def _timer_ns(self) -> int | None:
        """The algorithm's own next wake-up (absolute monotonic ns), or None."""
        return None

    # ----------------------------------------------------------------- helpers for subclasses
    def _take_levels(self, book: BookView, n: int = 10) -> Sequence[tuple[int, int]]:
        """The levels we take from, best first: YES asks for a bid, YES bids for an ask."""
        return book.asks(n) if self.side == "bid" else book.bids(n)

    def _own_levels(self, book: BookView, n: int = 10) -> Sequence[tuple[int, int]]:
        """The levels we compete with (same side), best first."""
        return book.bids(n) if self.side == "bid" else book.asks(n)

    def _take_best(self, book: BookView) -> int | None:
        return book.best_ask() if self.side == "bid" else book.best_bid()

    def _own_best(self, book: BookView) -> int | None:
        return book.best_bid() if self.side == "bid" else book.best_ask()

    def _within_limit(self, price: int, limit: int | None = None) -> bool:
        lim = self.limit if limit is None else limit
        return price <= lim if self.side == "bid" else price >= lim

    def _clamp(self, price: int) -> int:
        """``price`` pulled back inside the limit and onto the grid, rounded away from the market."""
        price = min(price, self.limit) if self.side == "bid" else max(price, self.limit)
        snapped = self.grid.snap_down(price) if self.side == "bid" else self.grid.snap_up(price)
        return self.limit if snapped is None else snapped

    def _toward_market(self, price: int) -> int | None:
        """One grid tick toward the other side (up for a bid), or None past the limit or the grid."""
        nxt = self.grid.tick_up(price) if self.side == "bid" else self.grid.tick_down(price)
        if nxt is None or not self._within_limit(nxt):
            return None
        return nxt

    def _floor_lot(self, n: int) -> int:
        return (n // self.lot) * self.lot if n > 0 else 0

    def _check_price(self, price: int) -> None:
        if not self._within_limit(price):
            raise InvariantViolation(f"{self.execution_id}: price {price} crosses the limit {self.limit} ({self.side})")
        if not self.grid.is_valid(price):
            raise InvariantViolation(f"{self.execution_id}: price {price} is not on the market's grid")

    def _place(self, now_ns: int, price: int, count: int, *, tif: str = TIF_GTC, post_only: bool = False,
               tag: str = "") -> Child | None:
        """Emit a Place for at most ``count`` (cut to the headroom, whole lots); None if nothing fits."""
        if self.finished:
            return None
        count = self._floor_lot(min(count, self.headroom))
        if count <= 0:
            return None
        self._check_price(price)
        self._seq += 1
        cid = f"{self.execution_id}-{self._seq}"
        intent = Place(cid, self.side, price, count, tif, post_only)
        child = Child(cid, self.side, price, count, tif, tag, now_ns, remaining=count, confirmed_cap=count, cap=count)
        child.pending["place"] = intent
        self.children[cid] = child
        self._emit(now_ns, intent)
        return child

    def _amend(self, now_ns: int, child: Child, price: int, count: int | None = None) -> bool:
        """Emit an Amend to ``price`` (and new total ``count``, default: unchanged). False if not allowed now."""
        if self.finished or not child.live or child.state == "pending" or child.want_cancel or child.pending:
            return False
        self._check_price(price)
        total = child.confirmed_cap if count is None else count
        if total < child.exch_filled or total < child.seen_filled:
            return False
        if self.committed - child.cap + max(total, child.cap) > self.target_size:
            total = self.target_size - (self.committed - child.cap)
            if total <= max(child.exch_filled, child.seen_filled):
                return False
        intent = Amend(child.child_id, price, total)
        child.pending["amend"] = intent
        child.recompute_cap()
        if self.committed > self.target_size:
            raise InvariantViolation(f"{self.execution_id}: amend would commit {self.committed} > {self.target_size}")
        self._emit(now_ns, intent)
        return True

    def _decrease(self, now_ns: int, child: Child, reduce_to: int) -> bool:
        if not child.live or child.state == "pending" or "decrease" in child.pending or reduce_to < 0:
            return False
        intent = Decrease(child.child_id, reduce_to)
        child.pending["decrease"] = intent
        self._emit(now_ns, intent)
        return True

    def _cancel(self, now_ns: int, child: Child) -> None:
        """Ask for ``child`` to be cancelled (sent now, retried after a refusal)."""
        if child.live:
            child.want_cancel = True

    def _finish(self, now_ns: int, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.end_reason = reason
        self._record(now_ns, "end", text=reason)

    def _note(self, now_ns: int, text: str) -> None:
        self._record(now_ns, "note", text=text)

    def _record(self, now_ns: int, kind: str, child_id: str = "", **kw: Any) -> None:
        self.history.append(Event(now_ns, kind, child_id, **kw))

    def _emit(self, now_ns: int, intent: Intent) -> None:
        self._out.append(intent)
        self._record(now_ns, "intent", intent.child_id, intent=intent)

    def _on_reject(self, now_ns: int, child: Child, ack: str | None) -> None:
        if ack == "place" or (ack is None and child.state == "pending"):
            self.rejects += 1
            child.state = "done"
            child.status = "rejected"
            child.pending.clear()
            child.confirmed_cap = child.exch_filled
            child.recompute_cap()
            if self.rejects >= self.params.max_rejects and not self.finished:
                self._finish(now_ns, "too_many_rejects")
            if not self.finished:
                self._on_child_done(now_ns, child)
        elif ack == "cancel":
            child.cancel_retry_ns = now_ns + CANCEL_RETRY_NS
        child.recompute_cap()

    def _flush(self, now_ns: int) -> list[Intent]:
        for child in self.children.values():
            if child.live and (self.finished or child.want_cancel) and "cancel" not in child.pending \
                    and now_ns >= child.cancel_retry_ns:
                child.want_cancel = True
                intent = Cancel(child.child_id)
                child.pending["cancel"] = intent
                self._emit(now_ns, intent)
        if self.committed > self.target_size:
            raise InvariantViolation(f"{self.execution_id}: committed {self.committed} > target {self.target_size}")
        wake: list[int] = []
        if self.started and not self.finished:
            t = self._timer_ns()
            if t is not None:
                wake.append(t)
            if self.deadline_ns is not None:
                wake.append(self.deadline_ns)
        wake.extend(c.cancel_retry_ns for c in self.children.values()
                    if c.live and c.want_cancel and "cancel" not in c.pending)
        self.next_wakeup_ns = min(wake) if wake else None
        out, self._out = self._out, []
        return out

    def child_for(self, tag: str) -> list[Child]:
        return [c for c in self.children.values() if c.tag == tag]

    def describe_state(self) -> Mapping[str, Any]:
        return {"filled": self.filled, "committed": self.committed, "live": len(self.live_children),
                "finished": self.finished, "end_reason": self.end_reason}
