"""The replay's write queue (kmm.research.writequeue) in plain Python, as it was before it was compiled
(Nov 28, session 13; kmm._core.writeq now), on the plain-Python limiter of tests/reference/ratelimiter.py.
tests/kalshi/test_limiter_writeq.py holds the compiled queue to this one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.reference import ratelimiter as _lim
from tests.reference.ratelimiter import Key, RateLimiter


class _Grant:
    """What the limiter's queue holds in place of an ``asyncio.Future``: ``done``, ``set_result`` (the
    tokens are granted: the request leaves) and ``set_exception`` (dropped from the queue)."""

    __slots__ = ("on_grant", "on_drop", "state", "done")

    def __init__(self, on_grant: Callable[[], None], on_drop: Callable[[BaseException], None]) -> None:
        self.on_grant = on_grant
        self.on_drop = on_drop
        self.state = 0                  # 0 waiting, 1 granted, 2 dropped
        # ``done()`` (state != 0) as a C callable: the limiter asks it of a queue's head at every look
        # (thousands of times a replay), a Python method call each
        self.done = _NO

    def set_result(self, _: Any) -> None:
        self.state = 1
        self.done = _YES
        self.on_grant()

    def set_exception(self, exc: BaseException) -> None:
        self.state = 2
        self.done = _YES
        self.on_drop(exc)


_NO = False.__bool__        # () -> False
_YES = True.__bool__        # () -> True


class ReplayWriteQueue:
    """``submit`` is ``RateLimiter.acquire`` without the event loop: the request takes its tokens at once
    when nothing of its lane or a more urgent one waits and the bucket allows (True; the caller sends it
    now), else it queues (False) and ``on_grant`` is called when :meth:`dispatch` grants it, or
    ``on_drop`` when the limiter drops it. :meth:`dispatch` returns ns until the next attempt (None: the
    queues are empty): the caller calls it again then, as the limiter's timer does live."""

    __slots__ = ("lim", "queued", "dropped", "_cost", "_general")

    def __init__(self, limiter: RateLimiter) -> None:
        self.lim = limiter
        self.queued = 0                 # requests that had to wait
        self.dropped = 0                # of those, dropped after max_queue_s (never sent)
        self._cost: list[float | None] = [None, None, None]     # the cost of every request queued in a lane
        self._general = False           # a lane queued two costs: dispatch is the limiter's own

    def submit(self, lane: int, cost: float, key: Key, on_grant: Callable[[], None],
               on_drop: Callable[[BaseException], None]) -> bool:
        lim = self.lim
        if lane == _lim.READ:
            raise ValueError("ReplayWriteQueue queues writes (cancel, amend, place), not reads")
        # RateLimiter.acquire's first step (its fair-share count included), the same private calls; a
        # write of the unscoped bucket: _blocked_by_queue(lane) and _queue(lane, None) read its lanes here
        waiters = lim._w0.waiters
        blocked = False
        for i in range(lane + 1):
            if waiters[i]._n:
                blocked = True
                break
        if not blocked and lim.poll(lane, cost) == 0:
            lim._count(key, 0, False)
            return True
        self.queued += 1
        c = self._cost[lane]
        if c is None:
            self._cost[lane] = cost
        elif c != cost:
            self._general = True

        def drop(exc: BaseException) -> None:
            self.dropped += 1
            on_drop(exc)
        waiters[lane].append(_lim._Waiter(cost, _Grant(on_grant, drop), key,  # type: ignore[arg-type]
                                          lim._clock()))
        return False

    def dispatch(self) -> int | None:
        """``RateLimiter.dispatch`` (the same grants, drops, waits, tokens and queue states), asking a
        lane's bucket before looking for the lane's head. The limiter looks for the head first (the fair
        queue's least-served market) and then asks the bucket for that head's cost; here every request
        of a lane costs the same (a cancel 2, an amend or place 10; checked at :meth:`submit`, else the
        limiter's own dispatch runs) and none leaves a queue but by a grant or a drop (the replay never
        gives up a waiting request), so the head's cost is known before the head is found, and the head
        is looked for only when the bucket pays. A replay dispatches a couple of thousand times, most of
        them to learn how long the head still waits."""
        lim = self.lim
        if self._general or lim._shard_writes or lim._read_waiters._round:
            return lim.dispatch()
        cancel_q, amend_q, place_q = lim._w0.waiters
        if lim.max_queue_ns:            # RateLimiter.dispatch's first step
            before = lim._clock() - lim.max_queue_ns
            for q in (amend_q, place_q):
                f = q._fifo
                if f and ((x := f[0]).done or x.fut.done() or x.enq_ns < before):
                    lim._expire(before)
                    break
        cost = self._cost
        if cancel_q._round:
            wait = self._serve(_lim.CANCEL, cancel_q, cost[_lim.CANCEL])
            if wait is not None:
                return wait
        fifo = place_q._fifo
        if not fifo:
            oldest = None
        elif not (x := fifo[0]).done and not x.fut.done():
            oldest = x
        else:
            oldest = place_q.oldest_waiter()
        if amend_q._n and oldest is not None and lim._clock() - oldest.enq_ns >= lim.promote_after_ns:
            lim.promotions += 1
            wait = self._serve(_lim.PLACE, place_q, cost[_lim.PLACE])
            if wait is not None:
                return wait
        if amend_q._round:
            wait = self._serve(_lim.AMEND, amend_q, cost[_lim.AMEND])
            if wait is not None:
                return wait
        if place_q._round:
            return self._serve(_lim.PLACE, place_q, cost[_lim.PLACE])
        return None

    def _serve(self, lane: int, q: _lim.FairQueue, cost: float | None) -> int | None:
        """``RateLimiter._serve`` for a lane whose requests all cost ``cost``: the bucket asked first
        (``poll`` takes the tokens when it pays, as the limiter's does right after finding the head),
        the head found only to be granted. A key in the round always has a waiting request here."""
        lim = self.lim
        while q._round:
            wait = lim.poll(lane, cost)          # type: ignore[arg-type]
            if wait:
                return wait
            w = q.head()
            assert w is not None and not w.fut.done()
            lim._grant(q, w, lim._clock())
        return None

    def waiting(self) -> int:
        return sum(self.lim.queue_depths()[n] for n in ("cancel", "amend", "place"))
