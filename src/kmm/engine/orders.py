"""The order manager: one state machine per order, fed by every source the exchange talks through.

States (:class:`OrderState`)::

    pending ──ack──> resting ──fill──> partially_filled ──fill──> filled
       │  └─timeout─> timeout_unknown ──(lookup by client_order_id)──> resting | ... | rejected
       └──reject──> rejected
    resting | partially_filled ──request──> pending_cancel | pending_amend | pending_decrease
    pending_*  ──ack──> canceled | resting | partially_filled;  ──failure──> the state before
    any live state ──(exchange says executed / canceled)──> filled / canceled

``filled``, ``canceled`` and ``rejected`` are terminal. An illegal transition (for example a
``resting`` update for an order we already closed) is logged, counted in ``stats.illegal`` and
ignored: the manager never raises on exchange input.

Sources: REST acks (:class:`OrderAck`), WS ``user_order`` (:class:`UserOrder`), WS and REST fills
(:class:`Fill`, deduplicated by ``trade_id``) and REST reconciliation snapshots (:meth:`reconcile`).
Fills are always counted: before the ack (matched by client_order_id), after a cancel, or for an
order we do not know yet (kept as an orphan and applied when the order shows up).

Fill counts: ``filled`` is the sum of the Fill messages we have seen; ``exchange_filled`` the
largest fill count the exchange has reported (ack, user_order). The order's fill count is the larger
of the two, so a report that arrives before or after its fills neither loses nor double counts them.

client_order_id: ``<session>-<counter in base 36>``. [U] Kalshi documents no character set or length
for client_order_id; kmm assumes ASCII letters, digits, ``-`` and ``_``, at most
:data:`CLIENT_ORDER_ID_MAX_LEN` characters (UUID-style ids of 36 characters are known to work). The
assumption lives in :data:`CLIENT_ORDER_ID_ALPHABET` and :data:`CLIENT_ORDER_ID_MAX_LEN`.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from kmm.engine.clock import Clock
from kmm.engine.dedupe import forget_before
from kmm.kalshi.types import Fill, OrderAck, UserOrder

log = logging.getLogger(__name__)

CLIENT_ORDER_ID_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")  # [U] see module doc
CLIENT_ORDER_ID_MAX_LEN = 64                                # [U] see module doc
UNKNOWN_ORDER_POLICIES = ("cancel", "adopt")


class OrderState(enum.Enum):
    PENDING = "pending"                    # create sent, no answer yet
    TIMEOUT_UNKNOWN = "timeout_unknown"    # create timed out: look it up by client_order_id
    RESTING = "resting"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    PENDING_AMEND = "pending_amend"
    PENDING_DECREASE = "pending_decrease"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    # Enum's own __hash__ is a Python call (hash of the name) paid on every ``state in TERMINAL``; members
    # compare by identity, so the identity hash is as good, and a C slot
    __hash__ = object.__hash__


S = OrderState
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED})
_EMPTY: dict[str, Order] = {}      # live_index of a market with no orders
IN_FLIGHT = frozenset({S.PENDING_CANCEL, S.PENDING_AMEND, S.PENDING_DECREASE})
_CLOSE = frozenset({S.FILLED, S.CANCELED})
_WORKING = frozenset({S.RESTING, S.PARTIALLY_FILLED})
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.PENDING: frozenset({S.RESTING, S.PARTIALLY_FILLED, S.TIMEOUT_UNKNOWN, S.REJECTED}) | _CLOSE,
    S.TIMEOUT_UNKNOWN: frozenset({S.RESTING, S.PARTIALLY_FILLED, S.REJECTED}) | _CLOSE,
    S.RESTING: frozenset({S.PARTIALLY_FILLED}) | IN_FLIGHT | _CLOSE,
    S.PARTIALLY_FILLED: IN_FLIGHT | _CLOSE,
    # a pending request ends in its answer, or back in a working state when it fails; a cancel may
    # overtake an amend or a decrease still in flight.
    S.PENDING_CANCEL: _WORKING | _CLOSE,
    S.PENDING_AMEND: _WORKING | _CLOSE | {S.PENDING_CANCEL},
    S.PENDING_DECREASE: _WORKING | _CLOSE | {S.PENDING_CANCEL},
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
}


@dataclass(slots=True)
class Order:
    """One of our orders. Prices 1e-4 $ YES terms, counts 1e-2 contracts, times monotonic ns."""

    client_order_id: str
    ticker: str
    side: str                      # "bid" | "ask"
    price: int
    count: int                     # total size: initial, or the new total after an amend
    order_id: str | None = None
    state: OrderState = S.PENDING
    remaining: int = 0
    filled: int = 0                # sum of Fill messages seen
    exchange_filled: int = 0       # largest fill count the exchange reported
    fees: int = 0                  # sum of the fills' fees, 1e-4 $
    created_ns: int = 0
    updated_ns: int = 0
    exchange_ts_ms: int = 0        # last_updated_ts_ms of the newest user_order applied
    prev_state: OrderState | None = None   # restored when a cancel/amend/decrease fails
    pending_price: int | None = None       # amend in flight: new price
    pending_count: int | None = None       # amend: new total; decrease: new remaining
    foreign: bool = False          # found at the exchange, not created by this manager
    adopted: bool = False          # a foreign order we manage as our own
    reason: str = ""               # why it was rejected or closed
    worst_price: int | None = None  # the worst price held before the current one (bid: highest, ask: lowest)
    unsure: int = 0                # closed on a 404 with this much resting: cancelled or filled, not known yet

    @property
    def fill_count(self) -> int:
        return max(self.filled, self.exchange_filled)

    @property
    def is_live(self) -> bool:
        return self.state not in TERMINAL

    def reprice(self, price: int) -> None:
        """Take a new price (an amend, or the exchange's word), keeping the worst price held so far:
        a fill reported by count before its fill message may have happened at any of them."""
        if price != self.price:
            self.worst_price = self.price_bound
            self.price = price

    @property
    def price_bound(self) -> int:
        """The worst price this order has held: highest for a bid, lowest for an ask."""
        w = self.worst_price
        if w is None:
            return self.price
        return max(w, self.price) if self.side == "bid" else min(w, self.price)


class LiveOrder(NamedTuple):
    """What the diff needs about one live order. ``order_id`` is None until the create is acked;
    ``actionable`` is False while a request on the order (or its create) is in flight."""

    order_id: str | None
    side: str
    price: int
    remaining: int
    age_ns: int
    client_order_id: str
    actionable: bool


@dataclass(slots=True)
class OrderStats:
    illegal: int = 0               # transitions refused
    duplicate_fills: int = 0
    orphan_fills: int = 0          # fills for orders not known when they arrived
    late_fills: int = 0            # fills on orders already canceled or rejected
    overfills: int = 0             # fills past the order's size
    stale_updates: int = 0         # user_orders older than what we have
    unknown_acks: int = 0


@dataclass(slots=True)
class ReconcileReport:
    """What :meth:`OrderManager.reconcile` found. Anything but ``clean`` should be logged critical
    and followed by a rebuild of the quotes."""

    adopted: list[Order] = field(default_factory=list)      # unknown at exchange, now managed
    to_cancel: list[Order] = field(default_factory=list)    # unknown at exchange: cancel them
    closed: list[Order] = field(default_factory=list)       # we had them live, exchange does not
    corrected: list[tuple[Order, str]] = field(default_factory=list)  # price/size/state taken
    resolved: list[Order] = field(default_factory=list)     # pending/unknown creates confirmed
    reopened: list[Order] = field(default_factory=list)     # we had them closed, exchange has them
    new_fills: list[Fill] = field(default_factory=list)     # fills we had missed
    unresolved: list[Order] = field(default_factory=list)   # timeout_unknown still unknown

    @property
    def clean(self) -> bool:
        return not (self.adopted or self.to_cancel or self.corrected or self.reopened
                    or self.new_fills or any(not o.reason.startswith("cancel") for o in self.closed))

    def __str__(self) -> str:
        if self.clean:
            return "orders agree with exchange"
        parts = []
        for name in ("adopted", "to_cancel", "closed", "corrected", "resolved", "reopened",
                     "new_fills", "unresolved"):
            items = getattr(self, name)
            if items:
                parts.append(f"{name}={len(items)}")
        details = [f"{o.client_order_id}/{o.order_id}: {what}" for o, what in self.corrected]
        return "orders disagree with exchange: " + ", ".join(parts) + (
            " [" + "; ".join(details) + "]" if details else "")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


# the first 36**2 ids' digits made once: a create takes its id from here instead of formatting it
_B36 = [_base36(i) for i in range(1296)]


class OrderManager:
    """Tracks every order of this session. All methods are synchronous and never block.

    ``session`` prefixes client_order_ids (default: base-36 ms timestamp plus 4 random hex digits).
    ``unknown_order_policy``: ``"cancel"`` marks orders found at the exchange that we did not create
    for cancellation; ``"adopt"`` manages them as our own.
    """

    def __init__(self, clock: Clock, *, session: str | None = None,
                 unknown_order_policy: str = "cancel") -> None:
        if unknown_order_policy not in UNKNOWN_ORDER_POLICIES:
            raise ValueError(f"OrderManager: unknown_order_policy {unknown_order_policy!r} must be one "
                             f"of {', '.join(UNKNOWN_ORDER_POLICIES)}")
        if session is None:
            session = "k" + _base36(clock.time_ns() // 1_000_000) + secrets.token_hex(2)
        if not CLIENT_ORDER_ID_ALPHABET.match(session) or len(session) > CLIENT_ORDER_ID_MAX_LEN - 8:
            raise ValueError(f"OrderManager: session prefix {session!r} must be 1..{CLIENT_ORDER_ID_MAX_LEN - 8}"
                             " characters of A-Z a-z 0-9 - _")
        self.clock = clock
        self.session = session              # also sets the ids' prefix (the property below)
        self.unknown_order_policy = unknown_order_policy
        self.stats = OrderStats()
        self._counter = 0
        self._by_coid: dict[str, Order] = {}
        self._by_oid: dict[str, Order] = {}
        self._live: dict[str, Order] = {}       # non-terminal orders by client_order_id
        self._live_by_ticker: dict[str, dict[str, Order]] = {}   # the same, per market (hot-path queries)
        # trade ids counted -> their exchange ms, forgotten once no resync can offer them again
        self._seen_trades: OrderedDict[str, int] = OrderedDict()
        self._orphans: dict[str, list[Fill]] = {}
        # orders whose exchange-reported fills are ahead of the fill messages booked (a user_order
        # came first): the event gate counts that part as still able to fill, even once terminal
        self._unbooked: dict[str, Order] = {}
        # orders closed because a write on them answered 404 (not resting any more) while we still had
        # ``remaining`` resting: cancelled, or filled with the fill messages on their way. Until the
        # exchange's user_order (or a read) says which, that remaining is counted as able to fill
        self._unsure: dict[str, Order] = {}
        # called with a ticker after anything that changes what may fill there (None: any market);
        # the event gate keeps per-market sums and recomputes only the markets named (eventsums.py)
        self.watchers: list[Callable[[str | None], None]] = []

    def _touch(self, ticker: str | None) -> None:
        for w in self.watchers:
            w(ticker)

    # ------------------------------------------------------------------ ids and creation
    @property
    def session(self) -> str:
        """The prefix of this session's client_order_ids."""
        return self._session

    @session.setter
    def session(self, value: str) -> None:
        self._session = value
        self._coid_prefix = value + "-"

    def create(self, ticker: str, side: str, price: int, count: int,
               client_order_id: str | None = None) -> Order:
        """Register a create about to be sent; returns the order in ``pending``."""
        if side != "bid" and side != "ask":
            raise ValueError(f"create: side {side!r} must be 'bid' or 'ask'")
        if count <= 0:
            raise ValueError(f"create: count {count} must be > 0 (1e-2 contracts)")
        if not client_order_id:             # an id made here is checked there
            return self._register(ticker, side, price, count, self.new_client_order_id())
        if not CLIENT_ORDER_ID_ALPHABET.match(client_order_id) or len(client_order_id) > CLIENT_ORDER_ID_MAX_LEN:
            raise ValueError(f"create: client_order_id {client_order_id!r} must be 1..{CLIENT_ORDER_ID_MAX_LEN}"
                             " characters of A-Z a-z 0-9 - _")
        return self._register(ticker, side, price, count, client_order_id)

    def new_client_order_id(self) -> str:
        """A new id of this session (the checked prefix, "-" and base-36 digits: only its length can
        fail), counted now: :meth:`create` makes its own with it, and a create written before its record
        is made (the maker's quotes, kmm.engine.maker.Engine._apply_actions) takes one, then
        :meth:`record_create`."""
        n = self._counter = self._counter + 1
        coid = self._coid_prefix + (_B36[n] if n < 1296 else _base36(n))
        if len(coid) > CLIENT_ORDER_ID_MAX_LEN:
            raise ValueError(f"create: client_order_id {coid!r} must be 1..{CLIENT_ORDER_ID_MAX_LEN} characters")
        return coid

    def record_create(self, ticker: str, side: str, price: int, count: int, client_order_id: str) -> Order:
        """:meth:`create` for an id from :meth:`new_client_order_id` (its alphabet and length are
        checked there): registers the order in ``pending``."""
        if side != "bid" and side != "ask":
            raise ValueError(f"create: side {side!r} must be 'bid' or 'ask'")
        if count <= 0:
            raise ValueError(f"create: count {count} must be > 0 (1e-2 contracts)")
        return self._register(ticker, side, price, count, client_order_id)

    def _register(self, ticker: str, side: str, price: int, count: int, coid: str) -> Order:
        by_coid = self._by_coid
        if coid in by_coid:
            raise ValueError(f"create: client_order_id {coid!r} is already used in this session")
        now = self.clock.monotonic_ns()
        o = Order(coid, ticker, side, price, count, remaining=count, created_ns=now, updated_ns=now)
        by_coid[coid] = o
        self._live[coid] = o                # _add_live, inline: tells the watchers once
        live = self._live_by_ticker.get(ticker)
        if live is None:
            live = self._live_by_ticker[ticker] = {}
        live[coid] = o
        for w in self.watchers:
            w(ticker)
        return o

    def _add_live(self, o: Order) -> None:
        self._live[o.client_order_id] = o
        self._live_by_ticker.setdefault(o.ticker, {})[o.client_order_id] = o
        self._touch(o.ticker)

    def _drop_live(self, o: Order) -> None:
        self._live.pop(o.client_order_id, None)
        m = self._live_by_ticker.get(o.ticker)
        if m is not None:
            m.pop(o.client_order_id, None)
        self._touch(o.ticker)

    # ------------------------------------------------------------------ transitions
    def _move(self, o: Order, new: OrderState, cause: str) -> bool:
        if new is o.state:
            return True
        if new not in TRANSITIONS[o.state]:
            self.stats.illegal += 1
            log.warning("order %s (%s) %s: illegal transition %s -> %s on %s; ignored",
                        o.client_order_id, o.order_id, o.ticker, o.state.value, new.value, cause)
            return False
        o.state = new
        o.updated_ns = self.clock.monotonic_ns()
        self._touch(o.ticker)
        if new in TERMINAL:
            o.pending_price = o.pending_count = o.prev_state = None
            self._drop_live(o)
        return True

    def _link(self, o: Order, order_id: str | None) -> None:
        if order_id and o.order_id is None:
            o.order_id = order_id
            self._by_oid[order_id] = o
            self._touch(o.ticker)          # acked: its size now comes out of the book ex-own
            for f in self._orphans.pop(order_id, ()):
                self._book_fill(o, f)

    def _find(self, order_id: str | None, client_order_id: str | None) -> Order | None:
        o = self._by_oid.get(order_id) if order_id else None
        if o is None and client_order_id:
            o = self._by_coid.get(client_order_id)
        return o

    def _apply_counts(self, o: Order, fill_e: int, remaining_e: int) -> None:
        """Take the exchange's (fill count, remaining), less fills we saw past that report."""
        o.exchange_filled = max(o.exchange_filled, fill_e)
        if o.exchange_filled > o.filled:
            self._unbooked[o.client_order_id] = o
        o.remaining = max(0, remaining_e - max(0, o.fill_count - fill_e))
        self._touch(o.ticker)

    def _working_state(self, o: Order) -> OrderState:
        """Where an order with the current counts belongs when nothing is in flight."""
        if o.remaining == 0:
            return S.FILLED if o.fill_count >= o.count else S.CANCELED
        return S.PARTIALLY_FILLED if o.fill_count > 0 else S.RESTING

    def _settle(self, o: Order, cause: str) -> None:
        """After counts changed: close a live order with nothing left; leave in-flight states."""
        if o.state in TERMINAL:
            return
        if o.remaining == 0:
            if o.state is S.PENDING_AMEND and o.pending_count is not None and o.pending_count > o.fill_count:
                return    # an amend to a larger total is in flight: its answer says what is left
            self._move(o, self._working_state(o), cause)
        elif o.state in (S.PENDING, S.TIMEOUT_UNKNOWN, S.RESTING):
            self._move(o, self._working_state(o), cause)

    # ------------------------------------------------------------------ creates
    def on_ack(self, ack: OrderAck) -> Order | None:
        """The REST answer to a create (201)."""
        o = self._find(ack.order_id, ack.client_order_id)
        if o is None:
            self.stats.unknown_acks += 1
            log.warning("ack for unknown order %s (client_order_id %s); ignored",
                        ack.order_id, ack.client_order_id)
            return None
        self._link(o, ack.order_id)
        if o.state in TERMINAL:
            return o          # a late ack: the order closed already (fills or user_order came first)
        self._apply_counts(o, ack.fill_count, ack.remaining_count)
        self._settle(o, "ack")
        return o

    def on_create_rejected(self, client_order_id: str, reason: str) -> Order | None:
        """The exchange refused the create (4xx other than a timeout)."""
        o = self._by_coid.get(client_order_id)
        if o is None:
            log.warning("reject for unknown client_order_id %s: %s", client_order_id, reason)
            return None
        if self._move(o, S.REJECTED, f"reject: {reason}"):
            o.reason = reason
            o.remaining = 0
        self._touch(o.ticker)
        return o

    def on_create_timeout(self, client_order_id: str) -> Order | None:
        """The create got no answer: its outcome is unknown until looked up by client_order_id."""
        o = self._by_coid.get(client_order_id)
        if o is None:
            return None
        if o.state is S.PENDING:
            self._move(o, S.TIMEOUT_UNKNOWN, "timeout")
        return o

    def resolve_unknown(self, client_order_id: str, found: UserOrder | None) -> Order | None:
        """The lookup of a timed-out create: ``found`` is the exchange's order, or None when the
        exchange has no order with this client_order_id (the create never arrived)."""
        o = self._by_coid.get(client_order_id)
        if o is None:
            return None
        if found is not None:
            self.on_user_order(found)
        elif o.state in (S.TIMEOUT_UNKNOWN, S.PENDING):
            if o.fill_count > 0:
                log.error("order %s: lookup found nothing but %d was filled; keeping it as filled",
                          client_order_id, o.fill_count)
                o.remaining = 0
                self._move(o, self._working_state(o), "lookup: not found after fills")
            elif self._move(o, S.REJECTED, "lookup: not found"):
                o.reason = "not found at exchange after timeout"
                o.remaining = 0
        self._touch(o.ticker)
        return o

    # ------------------------------------------------------------------ cancel / amend / decrease
    def _request(self, order_id: str, new: OrderState) -> Order | None:
        o = self._by_oid.get(order_id)
        if o is None:
            log.warning("request %s for unknown order %s; ignored", new.value, order_id)
            self.stats.illegal += 1
            return None
        prev = o.state
        if not self._move(o, new, f"request {new.value}"):
            return None
        if prev not in IN_FLIGHT:
            o.prev_state = prev
        return o

    def request_cancel(self, order_id: str) -> Order | None:
        """Mark a cancel as sent. Returns None when the order is unknown or cannot be canceled."""
        return self._request(order_id, S.PENDING_CANCEL)

    def request_amend(self, order_id: str, price: int, remaining: int) -> Order | None:
        """Mark an amend as sent: new ``price`` and ``remaining``. ``order.pending_count`` is then the
        new total (filled + remaining), the ``count`` the V2 amend body takes."""
        o = self._request(order_id, S.PENDING_AMEND)
        if o is not None:
            o.pending_price = price
            o.pending_count = o.fill_count + remaining
            self._touch(o.ticker)
        return o

    def request_decrease(self, order_id: str, reduce_to: int) -> Order | None:
        """Mark a decrease as sent: ``reduce_to`` is the new remaining."""
        o = self._request(order_id, S.PENDING_DECREASE)
        if o is not None:
            o.pending_count = reduce_to
            self._touch(o.ticker)
        return o

    def _restore(self, o: Order, cause: str) -> None:
        back = o.prev_state if o.prev_state in _WORKING else self._working_state(o)
        o.pending_price = o.pending_count = o.prev_state = None
        self._move(o, back, cause)
        self._settle(o, cause)
        self._touch(o.ticker)

    def on_cancel_ack(self, order_id: str, reduced_by: int | None = None) -> Order | None:
        """The cancel succeeded (also use for a 404: the order is gone)."""
        o = self._by_oid.get(order_id)
        if o is None:
            self.stats.unknown_acks += 1
            return None
        if o.state not in TERMINAL:
            if reduced_by is not None and 0 <= reduced_by < o.remaining:
                # the exchange took off less than we had resting: the rest filled there, and its fill
                # messages may still be on their way. Counted as reported-but-unbooked fills (the
                # event gate keeps that risk until they are booked) rather than vanishing with the order
                self._apply_counts(o, o.fill_count + (o.remaining - reduced_by), 0)
            o.remaining = 0
            self._move(o, S.FILLED if o.fill_count >= o.count else S.CANCELED, "cancel ack")
            o.reason = o.reason or "canceled by us"
            self._touch(o.ticker)
        return o

    def on_request_failed(self, order_id: str, reason: str, *, gone: bool = False,
                          may_have_filled: bool = True) -> Order | None:
        """A cancel, amend or decrease failed. ``gone`` (404): the order no longer rests, so it is
        closed; otherwise it goes back to the state it had before the request.

        A write answered 404 does not say whether what rested was cancelled or filled (an order that
        just executed answers an amend with 404 before its fill messages arrive): with
        ``may_have_filled`` (the default) that remaining stays in :meth:`unbooked_in` until the
        exchange's ``user_order`` for the order, its fills or :meth:`resolve_gone` settle it. A read
        that finds no such order passes ``may_have_filled=False``."""
        o = self._by_oid.get(order_id)
        if o is None:
            return None
        if o.state in TERMINAL:
            return o
        if gone:
            if may_have_filled and o.remaining > 0:
                o.unsure = o.remaining
                self._unsure[o.client_order_id] = o
            o.remaining = 0
            o.reason = f"gone: {reason}"
            self._move(o, S.FILLED if o.fill_count >= o.count else S.CANCELED, "request failed: gone")
        elif o.state in IN_FLIGHT:
            log.warning("order %s %s request failed: %s", o.client_order_id, o.state.value, reason)
            self._restore(o, f"request failed: {reason}")
        self._touch(o.ticker)
        return o

    def on_amend_ack(self, ack: OrderAck) -> Order | None:
        """The amend succeeded: the new price and size are live (the ack's counts win)."""
        o = self._find(ack.order_id, ack.client_order_id)
        if o is None:
            self.stats.unknown_acks += 1
            return None
        if o.state is not S.PENDING_AMEND:
            if o.state not in TERMINAL:
                self._apply_counts(o, ack.fill_count, ack.remaining_count)
                self._settle(o, "amend ack (no amend pending)")
            return o
        if o.pending_price is not None:
            o.reprice(o.pending_price)
        self._apply_counts(o, ack.fill_count, ack.remaining_count)
        o.count = o.fill_count + o.remaining
        o.pending_price = o.pending_count = o.prev_state = None
        self._move(o, self._working_state(o), "amend ack")
        self._touch(o.ticker)
        return o

    def on_decrease_ack(self, order_id: str, remaining_count: int) -> Order | None:
        """The decrease succeeded: ``remaining_count`` is what rests now."""
        o = self._by_oid.get(order_id)
        if o is None:
            self.stats.unknown_acks += 1
            return None
        if o.state in TERMINAL:
            return o
        o.remaining = min(o.remaining, remaining_count)
        o.count = o.fill_count + o.remaining
        if o.remaining == 0:
            o.reason = "decreased to zero"
            self._move(o, S.CANCELED, "decrease ack to zero")
        elif o.state is S.PENDING_DECREASE:
            o.pending_count = o.prev_state = None
            self._move(o, self._working_state(o), "decrease ack")
        else:
            self._settle(o, "decrease ack")
        self._touch(o.ticker)
        return o

    # ------------------------------------------------------------------ exchange updates
    def on_user_order(self, uo: UserOrder) -> Order | None:
        """A ``user_order`` update (or an order read over REST)."""
        o = self._find(uo.order_id, uo.client_order_id)
        if o is None:
            return self._foreign(uo)
        self._link(o, uo.order_id)
        if uo.last_updated_ts_ms and o.exchange_ts_ms and uo.last_updated_ts_ms < o.exchange_ts_ms:
            self.stats.stale_updates += 1
            return o
        o.exchange_ts_ms = max(o.exchange_ts_ms, uo.last_updated_ts_ms)
        if o.state in TERMINAL:
            if uo.status == "resting":
                self.stats.stale_updates += 1
                log.info("order %s: resting update after it closed (%s); ignored",
                         o.client_order_id, o.state.value)
            else:
                # the exchange's final word: its fill count (fills not booked yet stay risk) replaces
                # what a 404 left unsure
                o.exchange_filled = max(o.exchange_filled, uo.fill_count)
                if o.exchange_filled > o.filled:
                    self._unbooked[o.client_order_id] = o
                self._clear_unsure(o)
                self._touch(o.ticker)
            return o
        self._apply_counts(o, uo.fill_count, uo.remaining_count)
        if uo.status == "executed":
            o.remaining = 0
            self._move(o, S.FILLED, "user_order executed")
        elif uo.status == "canceled":
            o.remaining = 0
            self._move(o, S.FILLED if o.fill_count >= o.count else S.CANCELED, "user_order canceled")
        elif uo.status == "resting":
            if o.state not in IN_FLIGHT:
                o.reprice(uo.price)
                o.count = o.fill_count + o.remaining
                self._touch(o.ticker)      # the price the diff sees may have moved
            self._settle(o, "user_order resting")
        else:
            log.warning("order %s: user_order status %r not understood; counts taken, state kept",
                        o.client_order_id, uo.status)
        return o

    def _foreign(self, uo: UserOrder) -> Order | None:
        """An order at the exchange that this session did not create."""
        if uo.status != "resting":
            return None
        coid = uo.client_order_id or f"foreign-{uo.order_id}"
        if coid in self._by_coid:
            coid = f"foreign-{uo.order_id}"
        now = self.clock.monotonic_ns()
        o = Order(coid, uo.ticker, uo.side, uo.price, uo.initial_count, order_id=uo.order_id,
                  state=S.PENDING, remaining=uo.remaining_count, exchange_filled=uo.fill_count,
                  created_ns=now, updated_ns=now, exchange_ts_ms=uo.last_updated_ts_ms,
                  foreign=True, adopted=self.unknown_order_policy == "adopt")
        o.count = o.fill_count + o.remaining
        self._by_coid[coid] = o
        self._by_oid[uo.order_id] = o
        self._add_live(o)
        self._move(o, self._working_state(o), "found at exchange")
        for f in self._orphans.pop(uo.order_id, ()):
            self._book_fill(o, f)
        log.warning("order %s (%s) on %s found at the exchange but not created by this session: %s",
                    uo.order_id, uo.client_order_id, uo.ticker,
                    "adopted" if o.adopted else "marked for cancel")
        return o

    def on_fill(self, fill: Fill) -> bool:
        """Count a fill against its order. Returns False only for a duplicate ``trade_id``; a fill
        for an order not known yet is kept and applied when the order shows up."""
        if fill.trade_id in self._seen_trades:
            self.stats.duplicate_fills += 1
            return False
        self._seen_trades[fill.trade_id] = fill.ts_ms
        o = self._find(fill.order_id, fill.client_order_id)
        if o is None:
            self.stats.orphan_fills += 1
            self._orphans.setdefault(fill.order_id, []).append(fill)
            log.warning("fill %s for unknown order %s (%s); held until the order is known",
                        fill.trade_id, fill.order_id, fill.client_order_id)
            return True
        self._link(o, fill.order_id)
        self._book_fill(o, fill)
        return True

    def _book_fill(self, o: Order, fill: Fill) -> None:
        before = o.fill_count
        o.filled += fill.count
        o.fees += fill.fee
        if o.filled >= o.exchange_filled:
            self._unbooked.pop(o.client_order_id, None)
        if o.unsure:                               # what a 404 left unsure did fill: now booked
            o.unsure = max(0, o.unsure - fill.count)
            if not o.unsure:
                self._unsure.pop(o.client_order_id, None)
        o.remaining = max(0, o.remaining - (o.fill_count - before))
        self._touch(o.ticker)
        size = o.count
        if o.state is S.PENDING_AMEND and o.pending_count is not None:
            size = max(size, o.pending_count)     # an amend to a larger total may fill before its answer
        if o.filled > size:
            self.stats.overfills += 1
            log.error("order %s: filled %d past its size %d", o.client_order_id, o.filled, o.count)
        if o.state in TERMINAL:
            if o.state is not S.FILLED:
                self.stats.late_fills += 1
                log.info("order %s: fill %s (%d) after it was %s; counted", o.client_order_id,
                         fill.trade_id, fill.count, o.state.value)
            return
        self._settle(o, "fill")

    # ------------------------------------------------------------------ reconciliation
    def reconcile(self, exchange_open_orders: Iterable[UserOrder],
                  exchange_fills: Iterable[Fill] = (), *, as_of_ns: int | None = None,
                  tickers: Iterable[str] | None = None) -> ReconcileReport:
        """Bring our view in line with a REST snapshot: the resting orders (``GET /portfolio/orders
        ?status=resting``) and the fills since the last trade we knew.

        The exchange wins every disagreement. ``as_of_ns`` (monotonic) is when the snapshot was
        requested: creates sent after it are not expected in it. ``tickers`` limits the check to the
        markets the snapshot covered (default: all).
        """
        rep = ReconcileReport()
        scope = set(tickers) if tickers is not None else None
        for f in exchange_fills:
            if self.on_fill(f):
                rep.new_fills.append(f)
        present: set[int] = set()
        for uo in exchange_open_orders:
            o = self._find(uo.order_id, uo.client_order_id)
            if o is None:
                o = self._foreign(uo)
                if o is not None:
                    (rep.adopted if o.adopted else rep.to_cancel).append(o)
                    present.add(id(o))
                continue
            present.add(id(o))
            self._link(o, uo.order_id)
            if o.foreign and not o.adopted and o.is_live and o.state is not S.PENDING_CANCEL:
                rep.to_cancel.append(o)
            was = o.state
            if was in TERMINAL:
                # the exchange has it resting: our close was wrong (e.g. a cancel that never happened)
                o.state = S.PENDING
                self._add_live(o)
                o.reason = ""
                o.exchange_filled = max(o.exchange_filled, uo.fill_count)
                o.remaining = uo.remaining_count
                o.reprice(uo.price)
                o.count = o.fill_count + o.remaining
                self._move(o, self._working_state(o), "reconcile: resting at exchange")
                rep.reopened.append(o)
                log.critical("order %s (%s) was %s here but rests at the exchange", o.client_order_id,
                             o.order_id, was.value)
                continue
            if was in (S.PENDING, S.TIMEOUT_UNKNOWN):
                self._apply_counts(o, uo.fill_count, uo.remaining_count)
                o.reprice(uo.price)
                self._settle(o, "reconcile")
                rep.resolved.append(o)
                continue
            if as_of_ns is not None and o.updated_ns > as_of_ns:
                present.add(id(o))
                continue      # changed after the snapshot was asked for: the snapshot is older than we are
            diffs = []
            want_price = o.pending_price if o.state is S.PENDING_AMEND else o.price
            if uo.price != o.price and uo.price != want_price:
                diffs.append(f"price {o.price} -> {uo.price}")
            before_remaining = o.remaining
            self._apply_counts(o, uo.fill_count, uo.remaining_count)
            if o.remaining != before_remaining and o.state not in IN_FLIGHT:
                diffs.append(f"remaining {before_remaining} -> {o.remaining}")
            if o.state not in IN_FLIGHT:
                o.reprice(uo.price)
                o.count = o.fill_count + o.remaining
            if diffs:
                rep.corrected.append((o, ", ".join(diffs)))
            self._settle(o, "reconcile")
        for o in list(self._live.values()):
            if o.state in TERMINAL or id(o) in present:
                continue
            if scope is not None and o.ticker not in scope:
                continue
            if as_of_ns is not None and (o.created_ns > as_of_ns or o.updated_ns > as_of_ns):
                continue      # created or changed after the snapshot was asked for: it may not show yet
            if o.state is S.PENDING:
                continue      # still in flight; its ack or timeout will settle it
            if o.state is S.TIMEOUT_UNKNOWN:
                rep.unresolved.append(o)
                continue
            reason = ("cancel confirmed by reconcile" if o.state is S.PENDING_CANCEL
                      else "absent at exchange on reconcile")
            o.remaining = 0
            self._move(o, S.FILLED if o.fill_count >= o.count else S.CANCELED, reason)
            o.reason = reason
            rep.closed.append(o)
        self._touch(None)
        return rep

    # ------------------------------------------------------------------ queries
    def get(self, client_order_id: str) -> Order | None:
        return self._by_coid.get(client_order_id)

    def by_order_id(self, order_id: str) -> Order | None:
        return self._by_oid.get(order_id)

    def orders(self) -> list[Order]:
        return list(self._by_coid.values())

    def live_in(self, ticker: str) -> list[Order]:
        """Every non-terminal order of ``ticker`` (what may still fill), foreign ones included."""
        return list(self._live_by_ticker.get(ticker, {}).values())

    def live_index(self, ticker: str) -> Iterable[Order]:
        """:meth:`live_in` without the copy: a view to read at once, never to hold across changes."""
        return self._live_by_ticker.get(ticker, _EMPTY).values()

    def unbooked_in(self, ticker: str) -> list[tuple[str, int, int]]:
        """``(side, price, size)`` the exchange reported filled in ``ticker`` whose fill messages are
        not booked yet (live or terminal orders): not in the portfolio, no longer in ``remaining``; and
        what orders closed on a 404 still had resting (:meth:`on_request_failed`), until the exchange
        says whether it filled. The price is the worst the order has held: an order amended since may
        have filled at its old price."""
        out = [(o.side, o.price_bound, o.exchange_filled - o.filled) for o in self._unbooked.values()
               if o.ticker == ticker and o.exchange_filled > o.filled]
        if self._unsure:
            out.extend((o.side, o.price_bound, o.unsure) for o in self._unsure.values()
                       if o.ticker == ticker and o.unsure > 0)
        return out

    def resolve_gone(self, order_id: str) -> Order | None:
        """The exchange does not know the order (a read answered 404): nothing of it can fill."""
        o = self._by_oid.get(order_id)
        if o is not None and o.unsure:
            self._clear_unsure(o)
            self._touch(o.ticker)
        return o

    def _clear_unsure(self, o: Order) -> None:
        if o.unsure:
            o.unsure = 0
            self._unsure.pop(o.client_order_id, None)

    def live_orders(self, ticker: str, side: str | None = None, *, now_ns: int | None = None) -> list[LiveOrder]:
        """Our orders working in ``ticker`` (and ``side``), for the diff: everything not closed and
        not being canceled; an amend in flight shows its new price and size. Ages count to ``now_ns``
        (default: the clock now). It reads only this market's index and compares states by identity.

        Every change of what this lists (an order's state, price, remaining, order id) calls the
        :attr:`watchers` with its ticker: the engine's compiled pipelines hold a copy of this list and
        re-read it only after a watcher said it changed."""
        live = self._live_by_ticker.get(ticker)
        if not live:
            return []
        now = self.clock.monotonic_ns() if now_ns is None else now_ns
        out = []
        pending_cancel, pending_amend, pending_decrease = S.PENDING_CANCEL, S.PENDING_AMEND, S.PENDING_DECREASE
        resting, partial = S.RESTING, S.PARTIALLY_FILLED
        new = tuple.__new__         # LiveOrder(...) without the named tuple's Python-level __new__
        for o in live.values():     # never holds a terminal order
            st = o.state
            if st is pending_cancel or (side is not None and o.side != side) or (o.foreign and not o.adopted):
                continue
            price, remaining = o.price, o.remaining
            if st is pending_amend and o.pending_price is not None and o.pending_count is not None:
                price, remaining = o.pending_price, max(0, o.pending_count - max(o.filled, o.exchange_filled))
            elif st is pending_decrease and o.pending_count is not None:
                remaining = min(remaining, o.pending_count)
            out.append(new(LiveOrder, (o.order_id, o.side, price, remaining, now - o.created_ns,
                                       o.client_order_id,
                                       (st is resting or st is partial) and o.order_id is not None)))
        return out

    def open_count(self, ticker: str | None = None) -> int:
        """Orders that are, or may be, on the exchange (every non-terminal state)."""
        if ticker is None:
            return len(self._live)
        return len(self._live_by_ticker.get(ticker, ()))

    def open_qty(self, ticker: str, side: str) -> int:
        """Size that could still fill on ``side`` of ``ticker`` (1e-2 contracts): the larger of the
        current and the requested size while an amend is in flight."""
        total = 0
        for o in self._live_by_ticker.get(ticker, {}).values():
            if o.side == side:
                rem = o.remaining
                if o.state is S.PENDING_AMEND and o.pending_count is not None:
                    rem = max(rem, o.pending_count - o.fill_count)
                total += rem
        return total

    def counts(self) -> dict[str, int]:
        """Number of orders per state."""
        out = {s.value: 0 for s in OrderState}
        for o in self._by_coid.values():
            out[o.state.value] += 1
        return out

    def unknown(self) -> list[Order]:
        """Creates whose outcome is unknown: look each up by client_order_id and call
        :meth:`resolve_unknown`."""
        return [o for o in self._live.values() if o.state is S.TIMEOUT_UNKNOWN]

    def in_flight_older_than(self, age_ns: int) -> list[Order]:
        """Orders waiting on an answer (create or request) for longer than ``age_ns``."""
        now = self.clock.monotonic_ns()
        return [o for o in self._live.values()
                if (o.state is S.PENDING or o.state in IN_FLIGHT) and now - o.updated_ns > age_ns]

    def unsure_older_than(self, age_ns: int) -> list[Order]:
        """Orders closed on a 404 (:meth:`on_request_failed`) whose fill the exchange has not settled
        for longer than ``age_ns``: their user_order did not come, so they are read back."""
        if not self._unsure:
            return []
        now = self.clock.monotonic_ns()
        return [o for o in self._unsure.values() if now - o.updated_ns > age_ns]

    def foreign_to_cancel(self) -> list[Order]:
        """Orders found at the exchange, not ours, still live, under the ``cancel`` policy."""
        return [o for o in self._live.values() if o.foreign and not o.adopted
                and o.state is not S.PENDING_CANCEL]

    def orphan_fill_count(self) -> int:
        return sum(len(v) for v in self._orphans.values())

    def forget_trades_before(self, before_ms: int) -> int:
        """Forget the trade ids of fills older than ``before_ms`` (exchange ms) that no resync can
        offer again (kmm.engine.dedupe); returns how many."""
        return forget_before(self._seen_trades, before_ms)

    def prune(self, older_than_ns: int) -> int:
        """Forget closed orders last updated more than ``older_than_ns`` ago; returns how many.
        trade_ids are kept (until :meth:`forget_trades_before`), so a replayed fill is still recognised
        as a duplicate. Orders still
        settling (fills reported but not booked, or closed on a 404 and not settled) are kept: their
        fills, user_order or read-back must still find them."""
        now = self.clock.monotonic_ns()
        settling = self._unbooked.keys() | self._unsure.keys()
        gone = [o for o in self._by_coid.values()
                if o.state in TERMINAL and now - o.updated_ns > older_than_ns
                and o.client_order_id not in settling]
        for o in gone:
            del self._by_coid[o.client_order_id]
            if o.order_id is not None:
                self._by_oid.pop(o.order_id, None)
        return len(gone)
