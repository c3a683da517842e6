"""A deterministic stand-in for the engine and the exchange, to drive execution algorithms in tests.

It plays the exchange honestly but adversarially: it acks or rejects every intent, fills resting
children at random (never more than their live size, never at a price worse than the child's
price), cancels orders on its own now and then, delays fill messages so they arrive after the
cancel or replacement of their order, and moves the book. After every step it checks the hard
invariants against the exchange's own truth (not the algorithm's view).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kmm._core.fees import TAKER_RATE_E6, trade_fee
from kmm.execution import Amend, Cancel, Decrease, Place
from kmm.execution.algo import Algo

from tests.execution.book import PlainBook


@dataclass
class ExOrder:
    child_id: str
    side: str
    price: int
    total: int
    filled: int = 0
    done: bool = False
    status: str = "resting"
    tif: str = "good_till_canceled"

    @property
    def remaining(self) -> int:
        return 0 if self.done else self.total - self.filled


class InvariantBroken(AssertionError):
    pass


class Exchange:
    """Owns the exchange's truth and the message queues toward the algorithm."""

    def __init__(self, algo: Algo, book: PlainBook, rng: random.Random | None = None, *,
                 reject_p: float = 0.0, now_ns: int = 1_000_000_000):
        self.algo = algo
        self.book = book
        self.rng = rng or random.Random(0)
        self.reject_p = reject_p
        self.now = now_ns
        self.orders: dict[str, ExOrder] = {}
        self.updates: list[tuple] = []   # FIFO of (child_id, status, remaining, filled, ack, price)
        self.fills: list[tuple] = []     # pool of (child_id, count, price, fee), delivered in any order
        self.intents: list = []
        self.lot = algo.lot
        self.grid = algo.grid
        self.sent_after_finish: list = []

    # ------------------------------------------------------------------ truth
    @property
    def exchange_filled(self) -> int:
        return sum(o.filled for o in self.orders.values())

    def check(self) -> None:
        a = self.algo
        if self.exchange_filled > a.target_size:
            raise InvariantBroken(f"exchange filled {self.exchange_filled} > target {a.target_size}")
        if a.committed > a.target_size:
            raise InvariantBroken(f"committed {a.committed} > target {a.target_size}")
        if self.sent_after_finish:
            raise InvariantBroken(f"non-cancel intents after finish: {self.sent_after_finish}")

    # ------------------------------------------------------------------ intents in
    def call(self, method: str, *args, **kw) -> None:
        """Call one algorithm entry point and send what it returns to the exchange."""
        was_finished = self.algo.finished
        intents = getattr(self.algo, method)(*args, **kw)
        for it in intents:
            self.intents.append(it)
            if was_finished and not isinstance(it, Cancel):
                self.sent_after_finish.append(it)
            self._apply(it)
        self.check()

    def _within(self, side: str, price: int) -> bool:
        lim = self.algo.limit
        return price <= lim if side == "bid" else price >= lim

    def _apply(self, it) -> None:
        rej = self.rng.random() < self.reject_p
        if isinstance(it, Place):
            if it.child_id in self.orders:
                raise InvariantBroken(f"child id {it.child_id} reused")
            if not self._within(it.side, it.price) or not self.grid.is_valid(it.price):
                raise InvariantBroken(f"place {it} crosses the limit {self.algo.limit} or is off the grid")
            if it.count <= 0 or it.count % self.lot:
                raise InvariantBroken(f"place {it} has a bad count for lot {self.lot}")
            if rej:
                self.updates.append((it.child_id, "rejected", 0, 0, "place", None))
                return
            o = ExOrder(it.child_id, it.side, it.price, it.count, tif=it.tif)
            self.orders[it.child_id] = o
            self._match(o)
            if self.rng.random() < 0.3:
                self._fill(o, self._rand_qty(o))
            if it.tif == "immediate_or_cancel" and not o.done:
                o.done, o.status = True, "canceled"
            self.updates.append((o.child_id, self._status(o), o.remaining, o.filled, "place", None))
            return
        o = self.orders.get(it.child_id)
        kind = it.kind
        if o is None:
            if kind == "cancel":
                return  # a cancel of a place that was rejected: the engine drops it quietly
            raise InvariantBroken(f"{kind} for unknown or rejected child {it.child_id}")
        if isinstance(it, Amend):
            if not self._within(o.side, it.price) or not self.grid.is_valid(it.price):
                raise InvariantBroken(f"amend {it} crosses the limit {self.algo.limit} or is off the grid")
            if rej or o.done or it.count < o.filled:
                self.updates.append((o.child_id, "rejected", o.remaining, o.filled, "amend", None))
                return
            o.price, o.total = it.price, it.count
            if o.total == o.filled:
                o.done, o.status = True, "executed"
            self._match(o)
            self.updates.append((o.child_id, self._status(o), o.remaining, o.filled, "amend", it.price))
        elif isinstance(it, Decrease):
            if rej or o.done:
                self.updates.append((o.child_id, "rejected", o.remaining, o.filled, "decrease", None))
                return
            o.total = o.filled + min(o.remaining, it.reduce_to)
            if o.total == o.filled:
                o.done, o.status = True, "canceled"
            self.updates.append((o.child_id, self._status(o), o.remaining, o.filled, "decrease", None))
        elif isinstance(it, Cancel):
            if rej and not o.done:
                self.updates.append((o.child_id, "rejected", o.remaining, o.filled, "cancel", None))
                return
            if not o.done:
                o.done, o.status = True, "canceled"
            self.updates.append((o.child_id, self._status(o), 0, o.filled, "cancel", None))

    def _status(self, o: ExOrder) -> str:
        if not o.done:
            return "resting"
        return o.status

    def _rand_qty(self, o: ExOrder) -> int:
        rem = o.remaining
        if rem <= 0:
            return 0
        lots = rem // self.lot
        return self.rng.randint(1, lots) * self.lot if lots else 0

    def _match(self, o: ExOrder) -> None:
        """Take displayed liquidity our order crosses, level by level at the level's price."""
        b = self.book
        while not o.done and o.remaining > 0:
            lv = b.asks(1) if o.side == "bid" else b.bids(1)
            if not lv:
                return
            price, size = lv[0]
            if (o.side == "bid" and price > o.price) or (o.side == "ask" and price < o.price):
                return
            q = min(o.remaining, size // self.lot * self.lot)
            (b.set_ask if o.side == "bid" else b.set_bid)(price, size - q if q else 0)
            if q:
                self._fill(o, q, price)

    def _fill(self, o: ExOrder, q: int, at: int | None = None) -> None:
        if q <= 0 or o.done:
            return
        assert q <= o.remaining
        # a price no worse than the child's: at it, or up to 3 ticks better
        price = o.price if at is None else at
        for _ in range(0 if at is not None else self.rng.randint(0, 3)):
            nxt = self.grid.tick_down(price) if o.side == "bid" else self.grid.tick_up(price)
            if nxt is None:
                break
            price = nxt
        o.filled += q
        if o.filled == o.total:
            o.done, o.status = True, "executed"
        self.fills.append((o.child_id, q, price, trade_fee(q, price, TAKER_RATE_E6)))

    # ------------------------------------------------------------------ steps
    def start(self) -> None:
        self.call("start", self.now, self.book)

    def deliver_update(self) -> bool:
        if not self.updates:
            return False
        cid, status, rem, filled, ack, price = self.updates.pop(0)
        self.call("on_order_update", self.now, cid, status, rem, filled, ack=ack, price=price)
        return True

    def deliver_fill(self, last: bool = False) -> bool:
        if not self.fills:
            return False
        i = len(self.fills) - 1 if last else self.rng.randrange(len(self.fills))
        cid, q, price, fee = self.fills.pop(i)
        self.call("on_fill", self.now, cid, q, price, fee)
        return True

    def exchange_fills_something(self) -> bool:
        live = [o for o in self.orders.values() if not o.done]
        if not live:
            return False
        o = self.rng.choice(live)
        q = self._rand_qty(o)
        self._fill(o, q)
        self.updates.append((o.child_id, self._status(o), o.remaining, o.filled, None, None))
        return True

    def exchange_cancels_something(self) -> bool:
        live = [o for o in self.orders.values() if not o.done]
        if not live:
            return False
        o = self.rng.choice(live)
        o.done, o.status = True, "canceled"
        self.updates.append((o.child_id, "canceled", 0, o.filled, None, None))
        return True

    def move_book(self) -> None:
        rng, b = self.rng, self.book
        side = rng.choice(("bid", "ask"))
        ref = (b.best_bid() if side == "bid" else b.best_ask()) or 5000
        price = self.grid.snap_down(min(9999, max(1, ref + rng.randint(-400, 400))))
        if price is None:
            return
        size = rng.choice((0, 0, 100, 500, 2000, 10000))
        other = b.best_ask() if side == "bid" else b.best_bid()
        if size and other is not None and ((side == "bid" and price >= other) or (side == "ask" and price <= other)):
            return  # keep the book uncrossed
        (b.set_bid if side == "bid" else b.set_ask)(price, size)
        self.call("on_book", self.now, b)

    def advance(self, dt_ns: int | None = None) -> None:
        if dt_ns is None:
            wake = self.algo.next_wakeup_ns
            self.now = max(self.now + 1, wake) if wake is not None else self.now + 1_000_000_000
        else:
            self.now += dt_ns
        wake = self.algo.next_wakeup_ns
        if wake is not None and self.now >= wake:
            self.call("on_timer", self.now)

    def random_step(self) -> None:
        r = self.rng.random()
        if r < 0.25:
            self.deliver_update() or self.advance()
        elif r < 0.40:
            self.deliver_fill() or self.advance()
        elif r < 0.60:
            self.exchange_fills_something() or self.advance()
        elif r < 0.62:
            self.exchange_cancels_something()
        elif r < 0.75:
            self.move_book()
        elif r < 0.90:
            self.advance()
        else:
            self.advance(self.rng.randint(0, 3_000_000_000))

    def drain(self, max_steps: int = 10_000) -> None:
        """Deliver every message and run timers until nothing can change; stop the algorithm first."""
        self.call("cancel", self.now)
        for _ in range(max_steps):
            if self.updates:
                self.deliver_update()
            elif self.fills:
                self.deliver_fill()
            elif self.algo.next_wakeup_ns is not None:
                self.advance()
            else:
                return
        raise InvariantBroken("drain did not settle")
