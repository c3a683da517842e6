"""Client-side token buckets mirroring Kalshi's (kalshi-api.md section 5), with priority lanes.

Two independent buckets, read and write, refilled continuously at ``rate`` tokens/s up to ``capacity``
(``burst_s`` seconds of budget). Costs: 10 per request, 2 per cancel, batches billed per item.

Writes go through three lanes, served strictly in order: CANCEL, then AMEND (amend and decrease),
then PLACE. A request takes tokens at once when no request of its lane or a more urgent lane is
waiting; otherwise it queues. A waiting place never delays a cancel: cancels only queue behind
cancels, and places and amends may not spend the last ``cancel_reserve`` tokens.

After a 429 everything except cancels pauses with exponential backoff (the exchange sends no
Retry-After). This is kmm's only 429 back-off: the risk gate reads it (:meth:`RateLimiter.place_pause_ns`)
instead of keeping its own. The pause starts at ``backoff_base_s``, doubles only for a 429 that comes
after the previous pause ended, is capped at ``backoff_max_s`` (small: the bucket refills in well under
a second), and the first success resets it, so quoting comes back as soon as the bucket allows. During
a stop, :meth:`RateLimiter.set_backoff` caps it lower still, so verification reads stay paced but prompt.
Time comes from an injected ``clock_ns`` (monotonic ns), so the core is deterministic: ``poll`` decides
without sleeping; ``acquire`` is the asyncio wrapper around it. The bucket itself is compiled
(:class:`kmm._core.bucket.TokenBucket`: a take or a level read is one C call); tests/reference/bucket.py
keeps the plain-Python bucket it is held to. So are the queues and the deciding steps
(:mod:`kmm._core.writeq`: :class:`RateLimiter` subclasses its ``LimiterCore``, which holds poll, dispatch,
the expiry, ``try_acquire`` and ``pressure``; each lane is its ``FairQueue``). The rest, written once, is
:class:`LimiterShell`; tests/reference/ratelimiter.py puts the same shell on the plain-Python core and
queues, and tests/kalshi/test_limiter_writeq.py holds the two limiters to the same outcomes.

Per-shard write buckets (kalshi-api.md 5, 10): a single REST write with ``exchange_index >= 1`` bills
that shard's own write bucket, which has the full tier budget; shard 0, omitted/-1 (auto-routed) writes
and every batch bill the unscoped bucket. Each write bucket has its own lanes, reserve and 429 pause, so
a 429 on shard 2 pauses shard 2's places only. Callers pass ``shard=`` (``None`` or 0: unscoped); a
shard's bucket is made the first time it is named. Reads are not per shard.

Fair queueing across markets (many markets on one budget): inside each lane, waiting requests are
served by their *fair key*, the market they are for, read from the context variable :data:`FAIR_KEY`
that the caller sets around the request (the maker sets it to the ticker of the decision; requests
without a key share one flow). The market served least so far goes first (ties round-robin), so a
market waiting for its first quote goes before the requotes of markets already quoted, and a busy
market cannot hold the others back. Lanes stay strictly ordered with one exception against starvation:
once a place has waited ``promote_after_s``, the places of its bucket go before the amends (else, with
the write budget spent on amends of quoted markets, an unquoted market would never get its first
quote). A place or amend still queued after ``max_queue_s`` (4 s) is dropped (:class:`NotSent`): its
decision is stale, and the create watchdog must never look up an order that was not sent yet.
:meth:`RateLimiter.fair_stats` gives grants and the longest queue wait per key, the figures that show
no market starves. :meth:`RateLimiter.drop_waiting` fails places and amends still in the queue (never
sent) at once, for the stop, the kill switch and an event's reduce-only pull.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from kmm import protocol
from kmm._core import writeq as _writeq
from kmm._core.bucket import TokenBucket
from kmm._core.writeq import FairQueue, LimiterCore, Writes
from kmm._core.writeq import Waiter as _Waiter
from kmm.errors import KmmError, RateLimited

CANCEL = 0
AMEND = 1
PLACE = 2
READ = 3
LANE_NAMES = ("cancel", "amend", "place", "read")

_NS = 1_000_000_000

#: A fair key: a market's ticker, a tuple of tickers (a batch for several markets: it is served as
#: its least-served market and counts as a grant for each), or None (the shared flow).
Key = str | tuple[str, ...] | None

#: The market a request is for (its fair key), set by the caller around the request; ``None``: one
#: shared flow. Read once when a request has to queue; asyncio tasks inherit it from where they start.
FAIR_KEY: contextvars.ContextVar[Key] = contextvars.ContextVar("kmm_fair_key", default=None)


class NotSent(RateLimited):
    """A place or amend was dropped from the limiter's queue (:meth:`RateLimiter.drop_waiting`): it was
    never sent, so the exchange knows nothing of it. Handled like a 429 refusal (nothing rests)."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, "not_sent", f"dropped from the rate limiter's queue before sending ({reason})")




_writeq._bind(NotSent, FAIR_KEY)


def _Writes(rate: float, capacity: float, now_ns: int, served: Callable[[Key], int] | None = None,
            counts: dict[Key, list[int]] | None = None) -> Writes:
    """One write bucket with its lanes (cancel, amend, place) and its 429 pause; the bucket is made here
    (this module's ``TokenBucket``) so a test can put the plain-Python bucket in its place."""
    return Writes(TokenBucket(rate, capacity, now_ns), served, counts)


@dataclass(slots=True)
class LimiterStats:
    granted: tuple[int, int, int, int] = (0, 0, 0, 0)
    queued: int = 0
    rate_limited: int = 0


class LimiterShell:
    """Read and write buckets, priority lanes for writes, and 429 backoff: every part of the limiter
    that is not compiled. It is written once and used on top of two cores: :class:`RateLimiter` puts it
    on the compiled :class:`kmm._core.writeq.LimiterCore`; tests/reference/ratelimiter.py puts it on the
    plain-Python core that the compiled one is held to. The core supplies the deciding steps (poll,
    _count, _grant, _serve, dispatch, _expire, try_acquire, pressure, ``_acquire_now``: acquire's first
    step), and the queue parts the shell makes: ``_queue_type`` (a lane's FairQueue), ``_waiter_type``
    (a queued request) and :meth:`_new_writes` (a write bucket with its lanes)."""

    _queue_type: Callable[[], FairQueue] = FairQueue
    _waiter_type: Callable[..., _Waiter] = _Waiter

    if TYPE_CHECKING:   # the core's steps the shell calls (LimiterCore, or the reference's Python core)
        def _acquire_now(self, lane: int, cost: float, shard: int | None, key: Key) -> bool: ...
        def dispatch(self) -> int | None: ...

    def _new_writes(self, rate: float, capacity: float, now_ns: int) -> Writes:
        """A write bucket with its lanes, its queues reading this limiter's grant counts."""
        return _Writes(rate, capacity, now_ns, self._served, self._fair)

    def __init__(self, read_rate: float = protocol.RATE_TIERS["basic"][0],
                 write_rate: float = protocol.RATE_TIERS["basic"][1], *,
                 burst_s: float = protocol.BURST_SECONDS, cancel_reserve: float = 20.0,
                 backoff_base_s: float = 0.25, backoff_max_s: float = 8.0,
                 promote_after_s: float = 1.0, max_queue_s: float = 4.0,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock_ns
        now = clock_ns()
        self.burst_s = burst_s
        self.read = TokenBucket(read_rate, read_rate * burst_s, now)
        # per fair key: [grants, queued grants, longest queue wait ns, total queue wait ns]
        self._fair: dict[Key, list[int]] = {}   # str keys only (a batch counts for each market)
        # the unscoped write bucket (its queues read _fair's grant counts: _served for a single key)
        self._w0 = self._new_writes(write_rate, write_rate * burst_s, now)
        self._shard_writes: dict[int, Writes] = {}                 # shard >= 1 -> its own write bucket
        self.cancel_reserve = min(cancel_reserve, self._w0.bucket.capacity / 2)
        self.backoff_base_ns = int(backoff_base_s * _NS)
        self.backoff_max_ns = int(backoff_max_s * _NS)
        self._read_backoff_ns = 0
        self.read_paused_until_ns = 0   # reads wait until then after a read 429 (the buckets are independent)
        self._read_waiters = self._queue_type()
        self.promote_after_ns = int(promote_after_s * _NS)
        self.max_queue_ns = int(max_queue_s * _NS) if max_queue_s > 0 else 0
        self.expired = 0
        self._granted = [0, 0, 0, 0]
        self.promotions = 0
        self.rate_limited = 0
        self.pauses = 0    # write 429s (and pauses set by hand): a counter a cached "places allowed" is checked against
        self._timer: asyncio.TimerHandle | None = None

    # the unscoped write bucket, under the names callers used before shards existed
    @property
    def write(self) -> TokenBucket:
        return self._w0.bucket

    @property
    def paused_until_ns(self) -> int:
        return self._w0.paused_until_ns

    @paused_until_ns.setter
    def paused_until_ns(self, v: int) -> None:
        self._w0.paused_until_ns = v
        self.pauses += 1

    def _writes(self, shard: int | None) -> Writes:
        """The write bucket a write on ``shard`` bills (None, 0 or -1: the unscoped one)."""
        if shard is None or shard < 1:
            return self._w0
        w = self._shard_writes.get(shard)
        if w is None:   # every shard has the full tier budget (kalshi-api.md 5)
            w = self._shard_writes[shard] = self._new_writes(self._w0.bucket.rate, self._w0.bucket.capacity,
                                                             self._clock())
        return w

    def shard_bucket(self, shard: int | None) -> TokenBucket:
        """The write bucket ``shard`` bills (made on first use)."""
        return self._writes(shard).bucket

    def _all_writes(self) -> list[Writes]:
        return [self._w0, *self._shard_writes.values()]

    @classmethod
    def for_tier(cls, tier: str = "basic", **kw: object) -> Self:
        read, write = protocol.RATE_TIERS[tier]
        return cls(read, write, **kw)  # type: ignore[arg-type]

    def set_budget(self, read_rate: float, write_rate: float, *, read_capacity: float | None = None,
                   write_capacity: float | None = None) -> None:
        """Adopt the budget the exchange reports (GET /account/limits)."""
        now = self._clock()
        self.read.set_rate(read_rate, read_capacity or read_rate * self.burst_s, now)
        for w in self._all_writes():   # each shard's bucket has the full tier budget
            w.bucket.set_rate(write_rate, write_capacity or write_rate * self.burst_s, now)
        self.cancel_reserve = min(self.cancel_reserve, self.write.capacity / 2)

    # -- the deterministic core (poll, dispatch: the core class) --------------------------------
    def on_rate_limited(self, lane: int = PLACE, shard: int | None = None) -> int:
        """A 429 arrived for a request of ``lane``: pause that bucket's non-cancel traffic (reads for a
        read, places and amends for a write; Kalshi's two buckets are independent) and assume its tokens
        are gone. The pause doubles only for a 429 that comes after the previous pause ended, so a burst
        of answers to requests sent together counts once. A write 429 on ``shard`` >= 1 pauses that
        shard's bucket only. Returns the pause in ns."""
        self.rate_limited += 1
        now = self._clock()
        if lane == READ:
            if now >= self.read_paused_until_ns:
                self._read_backoff_ns = self.backoff_base_ns if self._read_backoff_ns == 0 else min(
                    self._read_backoff_ns * 2, self.backoff_max_ns)
                self.read_paused_until_ns = now + self._read_backoff_ns
            self.read.refill(now)
            self.read.tokens = min(self.read.tokens, 0.0)
            return self.read_paused_until_ns - now
        w = self._writes(shard)
        self.pauses += 1          # places may be paused from now (RiskGate.is_quotable's ALLOW may end)
        if now >= w.paused_until_ns:
            w.backoff_ns = self.backoff_base_ns if w.backoff_ns == 0 else min(
                w.backoff_ns * 2, self.backoff_max_ns)
            w.paused_until_ns = now + w.backoff_ns
        w.bucket.refill(now)
        w.bucket.tokens = min(w.bucket.tokens, 0.0)
        return w.paused_until_ns - now

    def on_success(self, lane: int = PLACE, shard: int | None = None) -> None:
        """A request went through: the next 429 of its bucket starts the backoff from its base again."""
        now = self._clock()
        if lane == READ:
            if self._read_backoff_ns and now >= self.read_paused_until_ns:
                self._read_backoff_ns = 0
        else:
            w = self._writes(shard)
            if w.backoff_ns and now >= w.paused_until_ns:
                w.backoff_ns = 0

    @property
    def paused(self) -> bool:
        return self._clock() < self.paused_until_ns

    def place_pause_ns(self, shard: int | None = None) -> int:
        """How long places and amends still wait after a 429 (0: not paused). The gate reads this.
        With no ``shard``: the longest pause of any write bucket (a caller that does not say which
        bucket it bills is held back by any paused one)."""
        now = self._clock()
        if shard is not None:
            return max(0, self._writes(shard).paused_until_ns - now)
        return max(0, max(w.paused_until_ns for w in self._all_writes()) - now)

    def set_backoff(self, base_s: float | None = None, max_s: float | None = None) -> None:
        """Change the 429 back-off (the config's ``[risk] backoff_*``, or a lower cap during the stop).
        A running pause longer than the new cap is shortened to it."""
        if base_s is not None:
            self.backoff_base_ns = int(base_s * _NS)
        if max_s is not None:
            self.backoff_max_ns = max(self.backoff_base_ns, int(max_s * _NS))
            now = self._clock()
            for w in self._all_writes():
                w.paused_until_ns = min(w.paused_until_ns, now + self.backoff_max_ns)
                w.backoff_ns = min(w.backoff_ns, self.backoff_max_ns)
            self.read_paused_until_ns = min(self.read_paused_until_ns, now + self.backoff_max_ns)
            self._read_backoff_ns = min(self._read_backoff_ns, self.backoff_max_ns)
        if self._timer is not None:
            self._schedule(0)

    # -- pressure, for the engine to skip low-value reprices (``pressure``: the core class) ----------
    def read_pressure(self) -> float:
        now = self._clock()
        self.read.refill(now)
        return max(0.0, min(1.0, 1.0 - self.read.tokens / self.read.capacity))

    def queue_depths(self) -> dict[str, int]:
        depths = [0, 0, 0, len(self._read_waiters)]
        for w in self._all_writes():
            for i in range(3):
                depths[i] += len(w.waiters[i])
        return dict(zip(LANE_NAMES, depths))

    def granted(self) -> dict[str, int]:
        return dict(zip(LANE_NAMES, self._granted))

    # -- asyncio wrapper ----------------------------------------------------------------------
    def _queue(self, lane: int, shard: int | None) -> FairQueue:
        return self._read_waiters if lane == READ else self._writes(shard).waiters[lane]

    def _blocked_by_queue(self, lane: int, shard: int | None = None) -> bool:
        # the queues' counts read directly (a FairQueue's __bool__ is a Python call: this is the hot path)
        if lane == READ:
            return self._read_waiters._n > 0
        waiters = self._writes(shard).waiters
        for i in range(lane + 1):
            if waiters[i]._n:
                return True
        return False

    def _served(self, key: Key) -> int:
        """Grants so far of ``key`` (a market; a batch: its least-served market): the fair queue serves
        the least-served first, so a market waiting for its first quote goes before the requotes of
        markets already quoted."""
        fair = getattr(self, "_fair", None)
        if fair is None:
            return 0
        if isinstance(key, tuple):
            return min((fair[k][0] if k in fair else 0) for k in key) if key else 0
        st = fair.get(key)
        return st[0] if st is not None else 0

    async def acquire(self, lane: int, cost: float, shard: int | None = None) -> None:
        """Wait for ``cost`` tokens in ``lane``'s turn (on ``shard``'s write bucket for a write), the
        least-served market first among those waiting (:data:`FAIR_KEY`). O(1) when the budget allows at
        once. Raises :class:`NotSent` when :meth:`drop_waiting` drops it from the queue."""
        key = FAIR_KEY.get()
        if self._acquire_now(lane, cost, shard, key):  # _blocked_by_queue, poll and _count (in C, compiled)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        w = self._waiter_type(cost, fut, key, self._clock())
        q = self._queue(lane, shard)
        q.append(w)
        self._schedule(0)
        try:
            await fut
        except asyncio.CancelledError:
            q.remove(w)   # False when already granted: its tokens are spent, nothing to give back
            raise

    def drop_waiting(self, reason: str, keys: Collection[str] | None = None) -> int:
        """Fail every place and amend still waiting in a write queue (of the markets ``keys`` only, when
        given) with :class:`NotSent`: they were never sent. Cancels and reads are kept. Returns how many."""
        n = 0
        for w in self._all_writes():
            for lane in (AMEND, PLACE):
                for x in w.waiters[lane].take_all(keys):
                    if not x.fut.done():
                        x.fut.set_exception(NotSent(reason))
                        n += 1
        return n

    def fair_stats(self) -> dict[Key, dict[str, float]]:
        """Per fair key (market): grants, grants that had to queue, longest and mean queue wait (s)."""
        return {k: {"grants": v[0], "queued": v[1], "max_wait_s": v[2] / _NS,
                    "mean_wait_s": (v[3] / v[1] / _NS) if v[1] else 0.0} for k, v in self._fair.items()}

    def batch_room(self, cost_each: float = protocol.COST_DEFAULT, shard: int | None = None) -> int:
        """How many items of ``cost_each`` one batch may hold so that it fits the write bucket with the
        cancel reserve kept (Kalshi refuses a batch larger than the bucket, kalshi-api.md 5). >= 1."""
        cap = self._writes(shard).bucket.capacity - self.cancel_reserve
        return max(1, int(cap // cost_each))

    def _schedule(self, delay_ns: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay_ns / _NS, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        wait = self.dispatch()
        if wait is not None:
            self._schedule(wait)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for q in [self._read_waiters, *(q for w in self._all_writes() for q in w.waiters)]:
            for x in q.take_all():
                if not x.fut.done():
                    # an error, not a cancellation: the waiting request must fail visibly (a cancel
                    # that silently vanished would look like the caller's own task being cancelled)
                    x.fut.set_exception(KmmError("the rate limiter was closed while this request waited"))


class RateLimiter(LimiterShell, LimiterCore):
    """Read and write buckets, priority lanes for writes, and 429 backoff (:class:`LimiterShell`). The
    deciding steps (poll, _count, _grant, _serve, dispatch, _expire), the order path's ``try_acquire``,
    ``acquire``'s first step and ``pressure`` are :class:`kmm._core.writeq.LimiterCore`'s, compiled."""


def limits_from_account(body: object) -> tuple[float, float] | None:
    """(read, write) tokens/s from a GET /account/limits body, or None if it is not understood.

    [U] The body's layout is not pinned down in kalshi-api.md; accepted here: a ``usage_tier`` /
    ``tier`` name from RATE_TIERS, and/or numeric ``read_limit``/``write_limit`` (or nested
    ``{"read": {"rate"|"tokens_per_second"|"limit": n}, "write": {...}}``). Explicit numbers win.
    """
    if not isinstance(body, dict):
        return None
    read: float | None = None
    write: float | None = None
    tier = body.get("usage_tier") or body.get("tier") or body.get("api_tier")
    if isinstance(tier, str) and tier.lower() in protocol.RATE_TIERS:
        read, write = map(float, protocol.RATE_TIERS[tier.lower()])

    def num(v: object) -> float | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
        if isinstance(v, str):
            try:
                f = float(v)
            except ValueError:
                return None
            return f if f > 0 else None
        if isinstance(v, dict):
            for k in ("rate", "tokens_per_second", "refill_rate", "limit", "budget"):
                if k in v:
                    return num(v[k])
        return None

    for rk, wk in (("read_limit", "write_limit"), ("read", "write"), ("read_budget", "write_budget")):
        r, w = num(body.get(rk)), num(body.get(wk))
        if r is not None:
            read = r
        if w is not None:
            write = w
    if read is None or write is None:
        return None
    return read, write
