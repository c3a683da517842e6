"""The live limiter's write queue in plain Python, as it was before it was compiled (Nov 28, session 13):
``FairQueue``, the queued request (``_Waiter``), a write bucket with its lanes (``_Writes``) and
``RateLimiter``'s poll, _count, _grant, _serve, dispatch and _expire (kmm._core.writeq now). The rest of
the limiter is kept here too, unchanged, so this is a whole limiter: tests/kalshi/test_limiter_writeq.py
drives it and the compiled one with the same requests, clocks and 429s and compares every outcome.
Only the module's constants, errors and helpers come from kmm.kalshi.limiter."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from kmm import protocol
from kmm._core.bucket import TokenBucket
from kmm.errors import KmmError
from kmm.kalshi.limiter import FAIR_KEY, Key, NotSent  # noqa: F401

CANCEL = 0
AMEND = 1
PLACE = 2
READ = 3
LANE_NAMES = ("cancel", "amend", "place", "read")

_NS = 1_000_000_000


class _Waiter:
    __slots__ = ("cost", "fut", "key", "enq_ns", "done")

    def __init__(self, cost: float, fut: asyncio.Future[None], key: Key, enq_ns: int) -> None:
        self.cost, self.fut, self.key, self.enq_ns, self.done = cost, fut, key, enq_ns, False


class FairQueue:
    """Waiting requests of one lane, served by key (FIFO within a key): the key that has been served
    least so far first (``served(key)``, e.g. its grants), ties in round-robin order; without
    ``served``, plain round-robin. ``head()`` is the next to serve; ``pop()`` takes it and moves its key
    to the back of the round. ``oldest_waiter()`` is the longest-waiting entry (O(1) amortized)."""

    __slots__ = ("_by_key", "_round", "_fifo", "_n", "_served", "_next", "_counts")

    def __init__(self, served: Callable[[Key], int] | None = None,
                 counts: dict[Key, list[int]] | None = None) -> None:
        self._by_key: dict[Key, deque[_Waiter]] = {}
        self._round: deque[Key] = deque()
        self._fifo: deque[_Waiter] = deque()
        self._n = 0
        self._served = served
        self._next: Key = None
        # the limiter's per-key grant counts (``RateLimiter._fair``), when ``served(key)`` is that count
        # for a single key (a market or None): head() reads it without the call; a batch's tuple key
        # still asks ``served``
        self._counts = counts

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def append(self, w: _Waiter) -> None:
        q = self._by_key.get(w.key)
        if q is None:
            q = self._by_key[w.key] = deque()
            self._round.append(w.key)
        q.append(w)
        self._fifo.append(w)
        self._n += 1

    def _live(self, key: Key) -> deque[_Waiter] | None:
        q = self._by_key[key]
        while q and (q[0].done or q[0].fut.done()):
            x = q.popleft()
            if not x.done:
                x.done = True
                self._n -= 1
        if q:
            return q
        del self._by_key[key]
        self._round.remove(key)
        return None

    def head(self) -> _Waiter | None:
        served = self._served
        counts = self._counts
        by_key = self._by_key
        best: tuple[int, Key] | None = None
        for key in list(self._round):
            q: deque[_Waiter] | None = by_key[key]
            if not q or q[0].done or q[0].fut.done():       # else _live would return q unchanged
                q = self._live(key)
                if q is None:
                    continue
            if served is None:
                self._next = key
                return q[0]
            if counts is not None and not isinstance(key, tuple):
                st = counts.get(key)                        # served(key), without the call
                n = st[0] if st is not None else 0
            else:
                n = served(key)
            if best is None or n < best[0]:
                best = (n, key)
                if n == 0:
                    break
        if best is None:
            return None
        self._next = best[1]
        return self._by_key[best[1]][0]

    def pop(self) -> _Waiter:
        """Take the head (call right after :meth:`head` returned it)."""
        key = self._next
        q = self._by_key[key]
        w = q.popleft()
        w.done = True
        self._n -= 1
        self._round.remove(key)
        if q:
            self._round.append(key)         # its next request waits for the others' turn
        else:
            del self._by_key[key]
        return w

    def remove(self, w: _Waiter) -> bool:
        """Forget ``w`` (its caller gave up); False when it was already served."""
        if w.done:
            return False
        w.done = True
        self._n -= 1
        return True

    def oldest_waiter(self) -> _Waiter | None:
        """The longest-waiting entry (still waiting, its caller not gone)."""
        f = self._fifo
        while f and (f[0].done or f[0].fut.done()):
            if not f[0].done:
                self.remove(f[0])
            f.popleft()
        return f[0] if f else None

    def pop_waiter(self, w: _Waiter) -> None:
        """Take ``w`` out of turn (the oldest: it is the first waiting entry of its key)."""
        q = self._by_key[w.key]
        while q and q[0].done:
            q.popleft()
        if q and q[0] is w:
            q.popleft()
        else:
            q.remove(w)
        w.done = True
        self._n -= 1
        if not q:
            del self._by_key[w.key]
            self._round.remove(w.key)

    def take_all(self, keys: Collection[str] | None = None) -> list[_Waiter]:
        """Remove and return every waiting entry (of ``keys`` only, when given: a batch whose markets
        include one of them too)."""
        def hit(k: Key) -> bool:
            if keys is None:
                return True
            if isinstance(k, tuple):
                return any(x in keys for x in k)
            return k in keys
        out = [w for w in self._fifo if not w.done and hit(w.key)]
        for w in out:
            w.done = True
        self._n -= len(out)
        return out


class _Writes:
    """One write bucket with its lanes (cancel, amend, place) and its 429 pause."""

    __slots__ = ("bucket", "paused_until_ns", "backoff_ns", "waiters")

    def __init__(self, rate: float, capacity: float, now_ns: int,
                 served: Callable[[Key], int] | None = None, counts: dict[Key, list[int]] | None = None) -> None:
        self.bucket = TokenBucket(rate, capacity, now_ns)
        self.paused_until_ns = 0      # places and amends wait until then after a 429 of this bucket
        self.backoff_ns = 0
        self.waiters: tuple[FairQueue, FairQueue, FairQueue] = (FairQueue(), FairQueue(served, counts),
                                                                FairQueue(served, counts))


@dataclass(slots=True)
class LimiterStats:
    granted: tuple[int, int, int, int] = (0, 0, 0, 0)
    queued: int = 0
    rate_limited: int = 0


class RateLimiter:
    """Read and write buckets, priority lanes for writes, and 429 backoff."""

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
        self._w0 = _Writes(write_rate, write_rate * burst_s, now, self._served, self._fair)
        self._shard_writes: dict[int, _Writes] = {}                 # shard >= 1 -> its own write bucket
        self.cancel_reserve = min(cancel_reserve, self._w0.bucket.capacity / 2)
        self.backoff_base_ns = int(backoff_base_s * _NS)
        self.backoff_max_ns = int(backoff_max_s * _NS)
        self._read_backoff_ns = 0
        self.read_paused_until_ns = 0   # reads wait until then after a read 429 (the buckets are independent)
        self._read_waiters = FairQueue()
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

    def _writes(self, shard: int | None) -> _Writes:
        """The write bucket a write on ``shard`` bills (None, 0 or -1: the unscoped one)."""
        if shard is None or shard < 1:
            return self._w0
        w = self._shard_writes.get(shard)
        if w is None:   # every shard has the full tier budget (kalshi-api.md 5)
            w = self._shard_writes[shard] = _Writes(self._w0.bucket.rate, self._w0.bucket.capacity, self._clock(),
                                                        self._served, self._fair)
        return w

    def shard_bucket(self, shard: int | None) -> TokenBucket:
        """The write bucket ``shard`` bills (made on first use)."""
        return self._writes(shard).bucket

    def _all_writes(self) -> list[_Writes]:
        return [self._w0, *self._shard_writes.values()]

    @classmethod
    def for_tier(cls, tier: str = "basic", **kw: object) -> RateLimiter:
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

    # -- the deterministic core ----------------------------------------------------------------
    def poll(self, lane: int, cost: float, shard: int | None = None) -> int:
        """Take ``cost`` tokens for ``lane`` (on ``shard``'s write bucket) now if allowed (returns 0),
        else ns to wait. Ignores queues."""
        now = self._clock()
        if lane == READ:
            if now < self.read_paused_until_ns:
                return self.read_paused_until_ns - now
            bucket = self.read
            floor = 0.0
        else:
            w = self._w0 if shard is None or shard < 1 else self._writes(shard)
            if lane != CANCEL and now < w.paused_until_ns:
                return w.paused_until_ns - now
            bucket = w.bucket
            floor = 0.0 if lane == CANCEL else self.cancel_reserve
        wait = bucket.take(now, cost, floor)            # refill, wait_ns and the tokens taken, in C
        if wait == 0:
            self._granted[lane] += 1
        return wait

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

    # -- pressure, for the engine to skip low-value reprices ---------------------------------------
    def pressure(self, shard: int | None = None) -> float:
        """Fraction of a write bucket in use, 0.0 (full) .. 1.0 (empty or paused): ``shard``'s, or with
        no shard the most used of all write buckets."""
        now = self._clock()
        worst = 0.0
        if shard is None and not self._shard_writes:    # the unscoped bucket only: no list to build
            w = self._w0
            if now < w.paused_until_ns:
                return 1.0
            return max(0.0, min(1.0, max(worst, w.bucket.level(now))))
        for w in ([self._writes(shard)] if shard is not None else self._all_writes()):
            if now < w.paused_until_ns:
                return 1.0
            worst = max(worst, w.bucket.level(now))
        return max(0.0, min(1.0, worst))

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

    def try_acquire(self, lane: int, cost: float, shard: int | None = None) -> bool:
        """Non-blocking: True if the tokens were taken (nothing more urgent waiting).

        A write is :meth:`_blocked_by_queue`, :meth:`poll` and :meth:`_count` in one call (the order
        path's every request comes here; tests/kalshi/test_limiter_fast.py holds the two to the same
        grants, tokens and counts); a read takes those methods."""
        if lane == READ:
            if self._blocked_by_queue(lane, shard):
                return False
            if self.poll(lane, cost, shard) == 0:
                self._count(FAIR_KEY.get(), 0, False)
                return True
            return False
        w = self._w0 if shard is None or shard < 1 else self._writes(shard)
        waiters = w.waiters
        for i in range(lane + 1):
            if waiters[i]._n:
                return False
        now = self._clock()
        if lane != CANCEL and now < w.paused_until_ns:
            return False
        if w.bucket.take(now, cost, 0.0 if lane == CANCEL else self.cancel_reserve):
            return False
        self._granted[lane] += 1
        key = FAIR_KEY.get()                           # _count for one market
        if isinstance(key, tuple):
            self._count(key, 0, False)
        else:
            st = self._fair.get(key)
            if st is None:
                st = self._fair[key] = [0, 0, 0, 0]
            st[0] += 1
        return True

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

    def _count(self, key: Key, waited_ns: int, queued: bool) -> None:
        if isinstance(key, tuple):          # a batch: a grant for each of its markets
            for k in key:
                self._count(k, waited_ns, queued)
            return
        st = self._fair.get(key)
        if st is None:
            st = self._fair[key] = [0, 0, 0, 0]
        st[0] += 1
        if queued:
            st[1] += 1
            st[3] += waited_ns
            if waited_ns > st[2]:
                st[2] = waited_ns

    async def acquire(self, lane: int, cost: float, shard: int | None = None) -> None:
        """Wait for ``cost`` tokens in ``lane``'s turn (on ``shard``'s write bucket for a write), the
        least-served market first among those waiting (:data:`FAIR_KEY`). O(1) when the budget allows at
        once. Raises :class:`NotSent` when :meth:`drop_waiting` drops it from the queue."""
        key = FAIR_KEY.get()
        if not self._blocked_by_queue(lane, shard) and self.poll(lane, cost, shard) == 0:
            st = self._fair.get(key)
            if st is None:
                self._count(key, 0, False)      # first grant of this key (or a batch's tuple)
            else:
                st[0] += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        w = _Waiter(cost, fut, key, self._clock())
        q = self._queue(lane, shard)
        q.append(w)
        self._schedule(0)
        try:
            await fut
        except asyncio.CancelledError:
            q.remove(w)   # False when already granted: its tokens are spent, nothing to give back
            raise

    def _grant(self, q: FairQueue, w: _Waiter, now: int) -> None:
        q.pop()
        self._count(w.key, now - w.enq_ns, True)
        w.fut.set_result(None)

    def _serve(self, lane: int, shard: int | None, q: FairQueue) -> int | None:
        """Grant ``q``'s heads while the bucket allows; ns until the next try, or None when empty."""
        if lane == READ:
            while True:
                w = q.head()
                if w is None:
                    return None
                if w.fut.done():          # cancelled by its caller
                    q.pop()
                    continue
                wait = self.poll(lane, w.cost, shard)
                if wait:
                    return wait
                self._grant(q, w, self._clock())
        # a write lane: poll(lane, w.cost, shard) written out (the same steps and arithmetic; a replay
        # serves a lane a couple of thousand times, mostly to learn how long the head still waits)
        wr = self._w0 if shard is None or shard < 1 else self._writes(shard)
        clock = self._clock
        while True:
            w = q.head()
            if w is None:
                return None
            if w.fut.done():          # cancelled by its caller
                q.pop()
                continue
            now = clock()
            if lane != CANCEL and now < wr.paused_until_ns:
                return wr.paused_until_ns - now
            wait = wr.bucket.take(now, w.cost, 0.0 if lane == CANCEL else self.cancel_reserve)
            if wait:
                return wait
            self._granted[lane] += 1
            self._grant(q, w, clock())

    def dispatch(self) -> int | None:
        """Grant queued requests in lane order (round-robin over keys inside a lane; a place that waited
        ``promote_after_s`` before the amends). Returns ns until the next attempt, or None if idle.

        A lane with no key in its round (``FairQueue._round`` empty, so ``head()`` would find nothing and
        change nothing) is not served, and a lane with nothing in its FIFO is not asked for its oldest
        waiter: the same grants, waits and queue states as serving every lane, at a fraction of the
        calls (a replay dispatches after every request that queues; tests/kalshi/test_limiter_fast.py
        holds this to the plain version, tests/reference/limiter.py)."""
        next_wait: int | None = None
        shards = self._shard_writes
        if self.max_queue_ns:
            before = self._clock() - self.max_queue_ns
            if shards:
                self._expire(before)
            else:   # _expire's own first look, inline: called only when the oldest amend or place is due
                for q in self._w0.waiters[AMEND:]:
                    f = q._fifo
                    if f and ((x := f[0]).done or x.fut.done() or x.enq_ns < before):
                        self._expire(before)
                        break
        for shard, w in ([(None, self._w0), *shards.items()] if shards else ((None, self._w0),)):
            cancel_q, amend_q, place_q = w.waiters
            if cancel_q._round:
                wait = self._serve(CANCEL, shard, cancel_q)
                if wait is not None:    # strict priority: the other lanes of this bucket wait their turn
                    if next_wait is None or wait < next_wait:
                        next_wait = wait
                    continue
            # once a place has waited promote_after_s the places go first (least-served market
            # first) and the amends wait until they are through: amends of quoted markets, cheaper to
            # fit in the bucket than a batch, would otherwise hold an unquoted market back forever
            fifo = place_q._fifo
            if not fifo:
                oldest = None
            elif not (x := fifo[0]).done and not x.fut.done():
                oldest = x              # what oldest_waiter() returns, changing nothing, without the call
            else:
                oldest = place_q.oldest_waiter()
            if amend_q._n and oldest is not None and self._clock() - oldest.enq_ns >= self.promote_after_ns:
                self.promotions += 1
                wait = self._serve(PLACE, shard, place_q)
                if wait is not None:
                    if next_wait is None or wait < next_wait:
                        next_wait = wait
                    continue
            if amend_q._round:
                wait = self._serve(AMEND, shard, amend_q)
                if wait is not None:
                    if next_wait is None or wait < next_wait:
                        next_wait = wait
                    continue
            if place_q._round:
                wait = self._serve(PLACE, shard, place_q)
                if wait is not None and (next_wait is None or wait < next_wait):
                    next_wait = wait
        if self._read_waiters._round:
            wait = self._serve(READ, None, self._read_waiters)
            if wait is not None and (next_wait is None or wait < next_wait):
                next_wait = wait
        return next_wait

    def _expire(self, before_ns: int) -> None:
        """Places and amends queued since before ``before_ns`` (``max_queue_s``) fail with NotSent: the
        decision is stale by then, and the order manager would start looking up a create that has not
        even been sent (its in-flight watchdog counts from the decision)."""
        for w in ((self._w0, *self._shard_writes.values()) if self._shard_writes else (self._w0,)):
            for lane in (AMEND, PLACE):
                q = w.waiters[lane]
                fifo = q._fifo
                if not fifo:            # oldest_waiter() would find nothing and change nothing
                    continue
                first = fifo[0]
                if not first.done and not first.fut.done() and first.enq_ns >= before_ns:
                    continue            # the oldest waits, not long enough: oldest_waiter() would change nothing
                while (x := q.oldest_waiter()) is not None and x.enq_ns < before_ns:
                    q.pop_waiter(x)
                    self.expired += 1
                    x.fut.set_exception(NotSent(f"waited {(self._clock() - x.enq_ns) / _NS:.1f} s in the "
                                                "rate limiter's queue: the decision is stale"))

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


