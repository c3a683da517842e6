"""Which turns of the event loop a piece of work gave up: a callback queued now, and again at each turn it
gets, records how far the work had come (``progress()``) each time it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def record_turns(progress: Callable[[], int], most: int = 10) -> list[int]:
    """Start recording (call it inside a running loop, before the work): the list fills as turns come."""
    turns: list[int] = []
    loop = asyncio.get_running_loop()

    def queued() -> None:
        turns.append(progress())
        if len(turns) < most:
            loop.call_soon(queued)
    loop.call_soon(queued)
    return turns
