"""The live limiter's write queue in plain Python, as it was before it was compiled (Nov 28, session 13):
``FairQueue``, the queued request (``_Waiter``), a write bucket with its lanes (``_Writes``) and the
deciding steps (``LimiterCore`` here: poll, _count, _grant, _serve, dispatch, _expire, try_acquire,
pressure and acquire's first step; kmm._core.writeq compiles them). The rest of the limiter is not
copied: ``RateLimiter`` here is the live ``LimiterShell`` (kmm.kalshi.limiter) on this plain core, so
it is a whole limiter that differs from the live one only in what is compiled.
tests/kalshi/test_limiter_writeq.py drives it and the compiled one with the same requests, clocks and
429s and compares every outcome."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection

from kmm._core.bucket import TokenBucket
from kmm.kalshi.limiter import (  # noqa: F401
    _NS, AMEND, CANCEL, FAIR_KEY, LANE_NAMES, PLACE, READ, Key, LimiterShell, LimiterStats, NotSent)


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


class LimiterCore:
    """The limiter's deciding steps in plain Python: what kmm._core.writeq.LimiterCore compiles."""

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

    def _acquire_now(self, lane: int, cost: float, shard: int | None, key: Key) -> bool:
        """``acquire``'s first step: the tokens taken and ``key`` counted when nothing of ``lane`` or a
        more urgent lane waits (on ``shard``'s write bucket for a write) and the bucket allows."""
        if not self._blocked_by_queue(lane, shard) and self.poll(lane, cost, shard) == 0:
            st = self._fair.get(key)
            if st is None:
                self._count(key, 0, False)      # first grant of this key (or a batch's tuple)
            else:
                st[0] += 1
            return True
        return False

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


class RateLimiter(LimiterShell, LimiterCore):
    """The live limiter's shell (kmm.kalshi.limiter.LimiterShell, the same code) on the plain-Python
    core and queues above."""

    _queue_type = FairQueue
    _waiter_type = _Waiter

    def _new_writes(self, rate: float, capacity: float, now_ns: int) -> _Writes:
        return _Writes(rate, capacity, now_ns, self._served, self._fair)
