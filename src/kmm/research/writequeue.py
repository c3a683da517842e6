"""The live connector's write queue, driven synchronously on a replay's clock.

A live request that cannot pay for its write tokens at once waits in :class:`kmm.kalshi.limiter.RateLimiter`'s
queues: three lanes served strictly in order (cancel, amend, place), inside a lane the market served least
so far first (``FAIR_KEY``: the maker sets it to the decision's ticker), a place that has waited
``promote_after_s`` before the amends, and a place or amend still queued after ``max_queue_s`` dropped
(``NotSent``: never sent). The limiter's ``acquire`` is an asyncio coroutine; a replay has no event loop,
so :class:`ReplayWriteQueue` runs the same limiter object (its buckets, queues and ``dispatch``) with a
stand-in for the future a live request awaits: a grant calls the replay back instead of waking a task.

Why the replay needs the live queue and not a plainer one: a busy run on the sim's basic tier spends
its whole write budget (about 600 writes a minute for three markets), so who gets the next tokens
decides how long each market's quotes stand. Served first come first served (the replay's queue until
Nov 28), the market that asks most often (the deci-cent one: every reprice is a request) took a larger
share of the budget than live gave it, quoted longer at the best, and filled up to a third more than
live (docs/research.md, "The per-market fill bound").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmm.kalshi import limiter as _lim
from kmm.kalshi.limiter import Key, RateLimiter


class _Grant:
    """What the limiter's queue holds in place of an ``asyncio.Future``: ``done``, ``set_result`` (the
    tokens are granted: the request leaves) and ``set_exception`` (dropped from the queue)."""

    __slots__ = ("on_grant", "on_drop", "state")

    def __init__(self, on_grant: Callable[[], None], on_drop: Callable[[BaseException], None]) -> None:
        self.on_grant = on_grant
        self.on_drop = on_drop
        self.state = 0                  # 0 waiting, 1 granted, 2 dropped

    def done(self) -> bool:
        return self.state != 0

    def set_result(self, _: Any) -> None:
        self.state = 1
        self.on_grant()

    def set_exception(self, exc: BaseException) -> None:
        self.state = 2
        self.on_drop(exc)


class ReplayWriteQueue:
    """``submit`` is ``RateLimiter.acquire`` without the event loop: the request takes its tokens at once
    when nothing of its lane or a more urgent one waits and the bucket allows (True; the caller sends it
    now), else it queues (False) and ``on_grant`` is called when :meth:`dispatch` grants it, or
    ``on_drop`` when the limiter drops it. :meth:`dispatch` returns ns until the next attempt (None: the
    queues are empty): the caller calls it again then, as the limiter's timer does live."""

    __slots__ = ("lim", "queued", "dropped")

    def __init__(self, limiter: RateLimiter) -> None:
        self.lim = limiter
        self.queued = 0                 # requests that had to wait
        self.dropped = 0                # of those, dropped after max_queue_s (never sent)

    def submit(self, lane: int, cost: float, key: Key, on_grant: Callable[[], None],
               on_drop: Callable[[BaseException], None]) -> bool:
        lim = self.lim
        # RateLimiter.acquire's first step (its fair-share count included), the same private calls
        if not lim._blocked_by_queue(lane) and lim.poll(lane, cost) == 0:
            lim._count(key, 0, False)
            return True
        self.queued += 1

        def drop(exc: BaseException) -> None:
            self.dropped += 1
            on_drop(exc)
        lim._queue(lane, None).append(_lim._Waiter(cost, _Grant(on_grant, drop), key,  # type: ignore[arg-type]
                                                  lim._clock()))
        return False

    def dispatch(self) -> int | None:
        return self.lim.dispatch()

    def waiting(self) -> int:
        return sum(self.lim.queue_depths()[n] for n in ("cancel", "amend", "place"))
