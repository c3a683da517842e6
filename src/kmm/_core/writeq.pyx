"""The write queue's hot path, compiled: the limiter's per-lane fair queue (:class:`FairQueue`), a queued
request (:class:`Waiter`), a write bucket with its three lanes (:class:`Writes`), the limiter's deciding
steps (:class:`LimiterCore`: poll, _count, _grant, _serve, dispatch, _expire; kmm.kalshi.limiter's
``RateLimiter`` is a Python subclass of it) and the replay's write queue (:class:`ReplayWriteQueue`,
re-exported by kmm.research.writequeue). The same steps, in the same order, on the same Python objects
(the queues are still dicts and deques of the same entries, the grant counts the same lists) as the
plain-Python limiter kept in tests/reference/ratelimiter.py and tests/reference/writequeue.py;
tests/kalshi/test_limiter_writeq.py drives both with the same requests and clocks and compares every
grant, drop, wait, token and queue state.

What is gained: a queue head's "is it still waiting" is a C field read (``Waiter.done``, and for the
replay's :class:`Grant` its ``state``) instead of two attribute lookups and a Python call, and the
limiter's steps call each other as C functions."""

from collections import deque

cdef int CANCEL = 0
cdef int AMEND = 1
cdef int PLACE = 2
cdef int READ = 3

# kmm.kalshi.limiter's NotSent and FAIR_KEY (bound by that module once it has made them: it imports this one)
cdef object _NotSent = None
cdef object _FAIR_KEY = None


def _bind(not_sent, fair_key):
    global _NotSent, _FAIR_KEY
    _NotSent = not_sent
    _FAIR_KEY = fair_key


cdef inline double _pymax(double a, double b):
    """Python's ``max(a, b)`` on two floats (the first when they compare equal, as -0.0 and 0.0 do)."""
    return b if b > a else a


cdef inline double _pymin(double a, double b):
    return b if b < a else a


cdef class Grant:
    """What the replay's queue holds in place of an ``asyncio.Future``: ``done()``, ``set_result`` (the
    tokens are granted: the request leaves) and ``set_exception`` (dropped from the queue, counted in
    its queue's ``dropped``)."""

    cdef public object on_grant
    cdef public object on_drop
    cdef public int state               # 0 waiting, 1 granted, 2 dropped
    cdef public object wq

    def __init__(self, on_grant, on_drop, wq=None):
        self.on_grant = on_grant
        self.on_drop = on_drop
        self.state = 0
        self.wq = wq

    def done(self):
        return self.state != 0

    def set_result(self, _):
        self.state = 1
        self.on_grant()

    def set_exception(self, exc):
        self.state = 2
        if self.wq is not None:
            (<ReplayWriteQueue>self.wq).dropped += 1
        self.on_drop(exc)


cdef inline bint _fut_done(object f) except -1:
    if type(f) is Grant:
        return (<Grant>f).state != 0
    return bool(f.done())


cdef inline bint _gone(Waiter w) except -1:
    """``w.done or w.fut.done()``."""
    if w.done:
        return True
    return _fut_done(w.fut)


cdef class Waiter:
    """A queued request: its cost, what its caller awaits (``fut``), its fair key and when it queued."""

    cdef public double cost
    cdef public object fut
    cdef public object key
    cdef public long long enq_ns
    cdef public bint done

    def __init__(self, cost, fut, key, long long enq_ns):
        self.cost = cost
        self.fut = fut
        self.key = key
        self.enq_ns = enq_ns
        self.done = False


cdef class FairQueue:
    """Waiting requests of one lane, served by key (FIFO within a key): the key that has been served
    least so far first (``served(key)``, e.g. its grants), ties in round-robin order; without
    ``served``, plain round-robin. ``head()`` is the next to serve; ``pop()`` takes it and moves its key
    to the back of the round. ``oldest_waiter()`` is the longest-waiting entry (O(1) amortized).

    ``counts``: the limiter's per-key grant counts, when ``served(key)`` is that count for a single key
    (a market or None): head() reads it without the call; a batch's tuple key still asks ``served``."""

    cdef public dict _by_key
    cdef public object _round
    cdef public object _fifo
    cdef public Py_ssize_t _n
    cdef public object _served
    cdef public object _next
    cdef public object _counts

    def __init__(self, served=None, counts=None):
        self._by_key = {}
        self._round = deque()
        self._fifo = deque()
        self._n = 0
        self._served = served
        self._next = None
        self._counts = counts

    def __len__(self):
        return self._n

    def __bool__(self):
        return self._n > 0

    cpdef append(self, Waiter w):
        q = self._by_key.get(w.key)
        if q is None:
            q = self._by_key[w.key] = deque()
            self._round.append(w.key)
        q.append(w)
        self._fifo.append(w)
        self._n += 1

    cpdef object _live(self, key):
        cdef Waiter x
        q = self._by_key[key]
        while q and _gone(<Waiter>q[0]):
            x = <Waiter>q.popleft()
            if not x.done:
                x.done = True
                self._n -= 1
        if q:
            return q
        del self._by_key[key]
        self._round.remove(key)
        return None

    cpdef object head(self):
        cdef object served = self._served
        cdef object counts = self._counts
        cdef dict by_key = self._by_key
        cdef bint have = False
        cdef object best_n = None
        cdef object best_key = None
        cdef object n
        for key in list(self._round):
            q = by_key[key]
            if not q or _gone(<Waiter>q[0]):       # else _live would return q unchanged
                q = self._live(key)
                if q is None:
                    continue
            if served is None:
                self._next = key
                return q[0]
            if counts is not None and not isinstance(key, tuple):
                st = (<dict>counts).get(key)         # served(key), without the call
                n = st[0] if st is not None else 0
            else:
                n = served(key)
            if not have or n < best_n:
                have = True
                best_n = n
                best_key = key
                if n == 0:
                    break
        if not have:
            return None
        self._next = best_key
        return by_key[best_key][0]

    cpdef Waiter pop(self):
        """Take the head (call right after :meth:`head` returned it)."""
        cdef Waiter w
        key = self._next
        q = self._by_key[key]
        w = <Waiter>q.popleft()
        w.done = True
        self._n -= 1
        self._round.remove(key)
        if q:
            self._round.append(key)         # its next request waits for the others' turn
        else:
            del self._by_key[key]
        return w

    cpdef bint remove(self, Waiter w):
        """Forget ``w`` (its caller gave up); False when it was already served."""
        if w.done:
            return False
        w.done = True
        self._n -= 1
        return True

    cpdef object oldest_waiter(self):
        """The longest-waiting entry (still waiting, its caller not gone)."""
        cdef Waiter x
        f = self._fifo
        while f:
            x = <Waiter>f[0]
            if not _gone(x):
                return x
            if not x.done:
                self.remove(x)
            f.popleft()
        return None

    cpdef pop_waiter(self, Waiter w):
        """Take ``w`` out of turn (the oldest: it is the first waiting entry of its key)."""
        q = self._by_key[w.key]
        while q and (<Waiter>q[0]).done:
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

    def take_all(self, keys=None):
        """Remove and return every waiting entry (of ``keys`` only, when given: a batch whose markets
        include one of them too)."""
        cdef Waiter w
        out = []
        for x in self._fifo:
            w = <Waiter>x
            if w.done:
                continue
            k = w.key
            if keys is not None:
                if isinstance(k, tuple):
                    if not any(y in keys for y in k):
                        continue
                elif k not in keys:
                    continue
            out.append(w)
        for x in out:
            (<Waiter>x).done = True
        self._n -= len(out)
        return out


cdef class Writes:
    """One write bucket with its lanes (cancel, amend, place) and its 429 pause."""

    cdef public object bucket
    cdef public long long paused_until_ns    # places and amends wait until then after a 429 of this bucket
    cdef public long long backoff_ns
    cdef public tuple waiters
    cdef FairQueue cq, aq, pq

    def __init__(self, bucket, served=None, counts=None):
        self.bucket = bucket
        self.paused_until_ns = 0
        self.backoff_ns = 0
        self.cq = FairQueue()
        self.aq = FairQueue(served, counts)
        self.pq = FairQueue(served, counts)
        self.waiters = (self.cq, self.aq, self.pq)


cdef inline object _min_wait(object next_wait, object wait):
    if wait is not None and (next_wait is None or wait < next_wait):
        return wait
    return next_wait


cdef class LimiterCore:
    """The limiter's deciding steps and the state they read (kmm.kalshi.limiter.RateLimiter subclasses
    this; its docstrings say what the steps are for)."""

    cdef public object _clock
    cdef public Writes _w0
    cdef public dict _shard_writes
    cdef public FairQueue _read_waiters
    cdef public double cancel_reserve
    cdef public long long promote_after_ns
    cdef public long long max_queue_ns
    cdef public long long expired
    cdef public long long promotions
    cdef public list _granted
    cdef public dict _fair

    # -- poll ------------------------------------------------------------------------------------
    cdef object _poll_c(self, int lane, double cost, object shard):
        cdef long long now = self._clock()
        cdef Writes w
        cdef double floor
        if lane == READ:
            paused = (<object>self).read_paused_until_ns
            if now < paused:
                return paused - now
            bucket = (<object>self).read
            floor = 0.0
        else:
            w = self._w0 if shard is None or shard < 1 else (<object>self)._writes(shard)
            if lane != CANCEL and now < w.paused_until_ns:
                return w.paused_until_ns - now
            bucket = w.bucket
            floor = 0.0 if lane == CANCEL else self.cancel_reserve
        wait = bucket.take(now, cost, floor)            # refill, wait_ns and the tokens taken, in C
        if wait == 0:
            self._granted[lane] += 1
        return wait

    def poll(self, int lane, double cost, shard=None):
        """Take ``cost`` tokens for ``lane`` (on ``shard``'s write bucket) now if allowed (returns 0),
        else ns to wait. Ignores queues."""
        return self._poll_c(lane, cost, shard)

    # -- the order path: a write taken at once, the pressure a decision reads ----------------------
    def try_acquire(self, int lane, double cost, shard=None):
        """Non-blocking: True if the tokens were taken (nothing more urgent waiting).

        A write is ``_blocked_by_queue``, :meth:`poll` and :meth:`_count` in one call (the order path's
        every request comes here; tests/kalshi/test_limiter_fast.py holds the two to the same grants,
        tokens and counts); a read takes those steps one after the other."""
        if lane == READ:
            if self._read_waiters._n > 0:
                return False
            if self._poll_c(lane, cost, shard) == 0:
                self._count_c(_FAIR_KEY.get(), 0, False)
                return True
            return False
        return self._try_write(lane, cost, shard, 2.0, None)

    def try_acquire_calm(self, int lane, double cost, shard=None, double max_pressure=2.0, key=None):
        """:meth:`try_acquire` for a write, refused (nothing taken) when :meth:`pressure` with no
        shard (the most used write bucket) is above ``max_pressure``: the order path's two questions
        in one call (the compiled frame entry's first request: the maker skips
        small reprices under write pressure, kmm.engine.maker.Engine._small_reprices_only, before it
        writes). ``key``: the fair key counted for the grant (None: :data:`FAIR_KEY`'s value).
        tests/kalshi/test_limiter_fast.py holds it to the two calls."""
        if lane == READ:
            raise ValueError("try_acquire_calm: a write lane (CANCEL, AMEND or PLACE), not READ")
        return self._try_write(lane, cost, shard, max_pressure, key)

    cdef bint _try_write(self, int lane, double cost, object shard, double max_pressure, object key) except -1:
        cdef Writes w
        cdef int i
        cdef long long now
        if max_pressure < 1.0 and self._pressure_at(None, self._clock()) > max_pressure:
            return False
        w = self._w0 if shard is None or shard < 1 else (<object>self)._writes(shard)
        for i in range(lane + 1):
            if (<FairQueue>w.waiters[i])._n:
                return False
        now = self._clock()
        if lane != CANCEL and now < w.paused_until_ns:
            return False
        if w.bucket.take(now, cost, 0.0 if lane == CANCEL else self.cancel_reserve):
            return False
        self._granted[lane] += 1
        self._count_c(_FAIR_KEY.get() if key is None else key, 0, False)
        return True

    def _acquire_now(self, int lane, double cost, shard, key):
        """``acquire``'s first step: the tokens taken and ``key`` counted when nothing of ``lane`` or a
        more urgent lane waits (on ``shard``'s write bucket for a write) and the bucket allows."""
        cdef Writes w
        cdef int i
        if lane == READ:
            if self._read_waiters._n > 0:
                return False
        else:
            w = self._w0 if shard is None or shard < 1 else (<object>self)._writes(shard)
            for i in range(lane + 1):
                if (<FairQueue>w.waiters[i])._n:
                    return False
        if self._poll_c(lane, cost, shard) == 0:
            self._count_c(key, 0, False)
            return True
        return False

    def pressure(self, shard=None):
        """Fraction of a write bucket in use, 0.0 (full) .. 1.0 (empty or paused): ``shard``'s, or with
        no shard the most used of all write buckets."""
        return self._pressure_at(shard, self._clock())

    cdef double _pressure_at(self, object shard, long long now) except -1.0:
        cdef double worst = 0.0
        cdef Writes w
        if shard is None and not self._shard_writes:    # the unscoped bucket only: no list to build
            w = self._w0
            if now < w.paused_until_ns:
                return 1.0
            return _pymax(0.0, _pymin(1.0, _pymax(worst, w.bucket.level(now))))
        for wo in ([(<object>self)._writes(shard)] if shard is not None else (<object>self)._all_writes()):
            w = <Writes>wo
            if now < w.paused_until_ns:
                return 1.0
            worst = _pymax(worst, w.bucket.level(now))
        return _pymax(0.0, _pymin(1.0, worst))

    # -- per-key counts --------------------------------------------------------------------------
    cdef int _count_c(self, object key, object waited_ns, bint queued) except -1:
        cdef list st
        if isinstance(key, tuple):          # a batch: a grant for each of its markets
            for k in key:
                self._count_c(k, waited_ns, queued)
            return 0
        x = self._fair.get(key)
        if x is None:
            st = [0, 0, 0, 0]
            self._fair[key] = st
        else:
            st = <list>x
        st[0] += 1
        if queued:
            st[1] += 1
            st[3] += waited_ns
            if waited_ns > st[2]:
                st[2] = waited_ns
        return 0

    def _count(self, key, waited_ns, bint queued):
        self._count_c(key, waited_ns, queued)

    cdef int _grant_c(self, FairQueue q, Waiter w, long long now) except -1:
        q.pop()
        self._count_c(w.key, now - w.enq_ns, True)
        f = w.fut
        if type(f) is Grant:
            (<Grant>f).state = 1
            (<Grant>f).on_grant()
        else:
            f.set_result(None)
        return 0

    def _grant(self, q, w, now):
        q.pop()
        self._count_c(w.key, now - w.enq_ns, True)
        w.fut.set_result(None)

    # -- serving a lane --------------------------------------------------------------------------
    cdef object _serve_c(self, int lane, object shard, FairQueue q):
        cdef Waiter w
        cdef Writes wr
        cdef long long now
        if lane == READ:
            while True:
                x = q.head()
                if x is None:
                    return None
                w = <Waiter>x
                if _fut_done(w.fut):          # cancelled by its caller
                    q.pop()
                    continue
                wait = self._poll_c(lane, w.cost, shard)
                if wait:
                    return wait
                self._grant_c(q, w, self._clock())
        wr = self._w0 if shard is None or shard < 1 else (<object>self)._writes(shard)
        clock = self._clock
        while True:
            x = q.head()
            if x is None:
                return None
            w = <Waiter>x
            if _fut_done(w.fut):              # cancelled by its caller
                q.pop()
                continue
            now = clock()
            if lane != CANCEL and now < wr.paused_until_ns:
                return wr.paused_until_ns - now
            wait = wr.bucket.take(now, w.cost, 0.0 if lane == CANCEL else self.cancel_reserve)
            if wait:
                return wait
            self._granted[lane] += 1
            self._grant_c(q, w, clock())

    def _serve(self, int lane, shard, FairQueue q):
        """Grant ``q``'s heads while the bucket allows; ns until the next try, or None when empty."""
        return self._serve_c(lane, shard, q)

    cdef object _oldest(self, FairQueue place_q):
        """``place_q.oldest_waiter()``, without the call when its first entry still waits."""
        f = place_q._fifo
        if not f:
            return None
        x = f[0]
        if not _gone(<Waiter>x):
            return x
        return place_q.oldest_waiter()

    cdef object _dispatch_c(self):
        cdef object next_wait = None
        cdef dict shards = self._shard_writes
        cdef Writes w
        cdef FairQueue cancel_q, amend_q, place_q
        cdef long long before
        cdef Waiter x
        if self.max_queue_ns:
            before = self._clock() - self.max_queue_ns
            if shards:
                self._expire_c(before)
            else:   # _expire's own first look: called only when the oldest amend or place is due
                for q in (self._w0.aq, self._w0.pq):
                    f = (<FairQueue>q)._fifo
                    if f:
                        x = <Waiter>f[0]
                        if _gone(x) or x.enq_ns < before:
                            self._expire_c(before)
                            break
        for shard, wo in ([(None, self._w0), *shards.items()] if shards else ((None, self._w0),)):
            w = <Writes>wo
            cancel_q, amend_q, place_q = w.cq, w.aq, w.pq
            if cancel_q._round:
                wait = self._serve_c(CANCEL, shard, cancel_q)
                if wait is not None:    # strict priority: the other lanes of this bucket wait their turn
                    next_wait = _min_wait(next_wait, wait)
                    continue
            # once a place has waited promote_after_s the places go first (least-served market first)
            # and the amends wait until they are through
            oldest = self._oldest(place_q)
            if amend_q._n and oldest is not None and \
                    self._clock() - (<Waiter>oldest).enq_ns >= self.promote_after_ns:
                self.promotions += 1
                wait = self._serve_c(PLACE, shard, place_q)
                if wait is not None:
                    next_wait = _min_wait(next_wait, wait)
                    continue
            if amend_q._round:
                wait = self._serve_c(AMEND, shard, amend_q)
                if wait is not None:
                    next_wait = _min_wait(next_wait, wait)
                    continue
            if place_q._round:
                next_wait = _min_wait(next_wait, self._serve_c(PLACE, shard, place_q))
        if self._read_waiters._round:
            next_wait = _min_wait(next_wait, self._serve_c(READ, None, self._read_waiters))
        return next_wait

    def dispatch(self):
        """Grant queued requests in lane order (least-served key first inside a lane; a place that
        waited ``promote_after_s`` before the amends). Returns ns until the next attempt, or None if
        idle. A lane with no key in its round is not served and a lane with nothing in its FIFO is not
        asked for its oldest waiter (serving them would grant nothing and change nothing)."""
        return self._dispatch_c()

    cdef int _expire_c(self, long long before_ns) except -1:
        cdef FairQueue q
        cdef Writes w
        cdef Waiter first, x
        for wo in ((self._w0, *self._shard_writes.values()) if self._shard_writes else (self._w0,)):
            w = <Writes>wo
            for q in (w.aq, w.pq):
                fifo = q._fifo
                if not fifo:            # oldest_waiter() would find nothing and change nothing
                    continue
                first = <Waiter>fifo[0]
                if not _gone(first) and first.enq_ns >= before_ns:
                    continue            # the oldest waits, not long enough
                while True:
                    o = q.oldest_waiter()
                    if o is None:
                        break
                    x = <Waiter>o
                    if x.enq_ns >= before_ns:
                        break
                    q.pop_waiter(x)
                    self.expired += 1
                    x.fut.set_exception(_NotSent(f"waited {(self._clock() - x.enq_ns) / 1_000_000_000:.1f} s "
                                                 "in the rate limiter's queue: the decision is stale"))
        return 0

    def _expire(self, long long before_ns):
        """Places and amends queued since before ``before_ns`` (``max_queue_s``) fail with NotSent."""
        self._expire_c(before_ns)


cdef class ReplayWriteQueue:
    """``submit`` is ``RateLimiter.acquire`` without the event loop: the request takes its tokens at once
    when nothing of its lane or a more urgent one waits and the bucket allows (True; the caller sends it
    now), else it queues (False) and ``on_grant`` is called when :meth:`dispatch` grants it, or
    ``on_drop`` when the limiter drops it. :meth:`dispatch` returns ns until the next attempt (None: the
    queues are empty): the caller calls it again then, as the limiter's timer does live."""

    cdef public object lim
    cdef LimiterCore _lc
    cdef public long long queued        # requests that had to wait
    cdef public long long dropped       # of those, dropped after max_queue_s (never sent)
    cdef public list _cost              # the cost of every request queued in a lane
    cdef public bint _general           # a lane queued two costs: dispatch is the limiter's own

    def __init__(self, limiter):
        self.lim = limiter
        self._lc = <LimiterCore?>limiter
        self.queued = 0
        self.dropped = 0
        self._cost = [None, None, None]
        self._general = False

    def submit(self, int lane, cost, key, on_grant, on_drop):
        cdef LimiterCore lim = self._lc
        cdef Writes w0
        cdef int i
        if lane == READ:
            raise ValueError("ReplayWriteQueue queues writes (cancel, amend, place), not reads")
        if lane < 0 or lane > PLACE:
            raise IndexError(lane)
        # RateLimiter.acquire's first step (its fair-share count included), on the unscoped bucket
        w0 = lim._w0
        blocked = False
        for i in range(lane + 1):
            if (<FairQueue>w0.waiters[i])._n:
                blocked = True
                break
        if not blocked and lim._poll_c(lane, cost, None) == 0:
            lim._count_c(key, 0, False)
            return True
        self.queued += 1
        c = self._cost[lane]
        if c is None:
            self._cost[lane] = cost
        elif c != cost:
            self._general = True
        (<FairQueue>w0.waiters[lane]).append(Waiter(cost, Grant(on_grant, on_drop, self), key, lim._clock()))
        return False

    def dispatch(self):
        """``RateLimiter.dispatch`` (the same grants, drops, waits, tokens and queue states), asking a
        lane's bucket before looking for the lane's head: every request of a lane costs the same here (a
        cancel 2, an amend or place 10; checked at :meth:`submit`, else the limiter's own dispatch runs)
        and none leaves a queue but by a grant or a drop, so the head's cost is known before the head
        is found, and the head is looked for only when the bucket pays."""
        cdef LimiterCore lim = self._lc
        cdef FairQueue cancel_q, amend_q, place_q
        cdef long long before
        cdef Waiter x
        if self._general or lim._shard_writes or lim._read_waiters._round:
            return lim.dispatch()
        cancel_q, amend_q, place_q = lim._w0.cq, lim._w0.aq, lim._w0.pq
        if lim.max_queue_ns:            # RateLimiter.dispatch's first step
            before = lim._clock() - lim.max_queue_ns
            for q in (amend_q, place_q):
                f = (<FairQueue>q)._fifo
                if f:
                    x = <Waiter>f[0]
                    if _gone(x) or x.enq_ns < before:
                        lim._expire_c(before)
                        break
        cost = self._cost
        if cancel_q._round:
            wait = self._serve_c(CANCEL, cancel_q, cost[CANCEL])
            if wait is not None:
                return wait
        oldest = lim._oldest(place_q)
        if amend_q._n and oldest is not None and \
                lim._clock() - (<Waiter>oldest).enq_ns >= lim.promote_after_ns:
            lim.promotions += 1
            wait = self._serve_c(PLACE, place_q, cost[PLACE])
            if wait is not None:
                return wait
        if amend_q._round:
            wait = self._serve_c(AMEND, amend_q, cost[AMEND])
            if wait is not None:
                return wait
        if place_q._round:
            return self._serve_c(PLACE, place_q, cost[PLACE])
        return None

    cdef object _serve_c(self, int lane, FairQueue q, object cost):
        """``RateLimiter._serve`` for a lane whose requests all cost ``cost``: the bucket asked first,
        the head found only to be granted. A key in the round always has a waiting request here."""
        cdef LimiterCore lim = self._lc
        while q._round:
            wait = lim._poll_c(lane, cost, None)
            if wait:
                return wait
            w = q.head()
            assert w is not None and not _fut_done((<Waiter>w).fut)
            lim._grant_c(q, <Waiter>w, lim._clock())
        return None

    def _serve(self, int lane, FairQueue q, cost):
        return self._serve_c(lane, q, cost)

    def waiting(self):
        d = self.lim.queue_depths()
        return d["cancel"] + d["amend"] + d["place"]
