"""Fill dedupe that forgets: the trade ids the portfolio, the order manager and the maker metrics have
counted, kept as long as a fill can still be offered again and no longer.

A fill reaches kmm from the WebSocket once and, again, from the periodic and after-reconnect resync
(``Session.session_fills``), which asks the exchange for fills from ``min_ts`` = the last good
reconcile less 5 s (``Session.backfill_from_ms``, which only moves forward). So a fill whose exchange
time is well before that watermark can never be offered again: its trade id may be forgotten.
:data:`KEEP_MS` more is kept as a margin (a WebSocket that re-delivered a recent fill after a reconnect
would still be recognised). Ids whose fill carried no time (``ts_ms == 0``) are kept for the run.
Before this, a run kept every trade id it ever saw, in three sets: ~100 bytes a fill each, growing for
as long as the run lasted.

The ids live in an ``OrderedDict`` (trade id -> exchange ms) in arrival order: membership is a dict
lookup, and :func:`forget_before` drops from the oldest end; an id that arrived late with an old time
waits behind newer ones (kept a little longer, never forgotten early)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["KEEP_MS", "forget_before", "watermark_ms"]

#: kept past the resync's watermark (ms)
KEEP_MS = 600_000


def watermark_ms(backfill_from_ms: int) -> int:
    """The exchange time before which no fill can be offered again, for a session whose resync reads
    fills from ``backfill_from_ms`` (its ``min_ts`` is that in whole seconds, less one), less
    :data:`KEEP_MS`."""
    return (backfill_from_ms // 1000 - 1) * 1000 - KEEP_MS


def forget_before(seen: OrderedDict[str, int], before_ms: int) -> int:
    """Drop the ids of fills older than ``before_ms`` (exchange ms) from the oldest end of ``seen``,
    stopping at the first newer one; ids without a time (0) go to the newest end and are kept.
    Returns how many were dropped."""
    dropped = moved = 0
    n = len(seen)
    while seen and dropped + moved < n:
        tid, ts = next(iter(seen.items()))
        if ts == 0:
            seen.move_to_end(tid)
            moved += 1
            continue
        if ts >= before_ms:
            break
        seen.popitem(last=False)
        dropped += 1
    return dropped
