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

The queue is compiled (:class:`kmm._core.writeq.ReplayWriteQueue`, with the limiter's fair queue and
deciding steps): its ``dispatch`` asks a lane's bucket before looking for the lane's head (every request
of a lane costs the same in a replay, so the head's cost is known before the head is found; a lane that
queued two costs makes it the limiter's own dispatch). tests/reference/writequeue.py keeps the
plain-Python queue it is held to.
"""

from __future__ import annotations

from kmm._core.writeq import Grant as _Grant
from kmm._core.writeq import ReplayWriteQueue

__all__ = ["ReplayWriteQueue", "_Grant"]
