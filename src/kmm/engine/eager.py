"""Start a coroutine eagerly: run it synchronously up to its first real suspension.

The live loop decides inside a WebSocket frame callback. With ``loop.create_task`` the request
coroutine would only start on a later loop iteration, after every other ready callback (tens to
hundreds of microseconds). Started eagerly, the connector signs (from the pre-made pool), encodes and
writes the request bytes before the callback returns; only the wait for the answer is left to a task.
Python 3.12 has this built in (``eager_start``); this module does the same on 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any


class _Resume:
    """An awaitable that hands a half-run coroutine to a Task: it first waits on the future the
    coroutine is blocked on, then keeps driving the coroutine (forwarding cancellation)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, None, Any]:
        pending = self.first
        while True:
            try:
                yield pending
            except BaseException as exc:  # cancellation or a thrown error: deliver it to the coroutine
                try:
                    pending = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = self.coro.send(None)
            except StopIteration as stop:
                return stop.value


async def _drive(resume: _Resume) -> Any:
    return await resume


def start_eager(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """Run ``coro`` now until it first suspends; return a future for its result.

    When the coroutine finishes without suspending, the returned future is already done. An exception
    raised before the first suspension is put in the future, never raised here.
    """
    try:
        first = coro.send(None)
    except StopIteration as stop:
        fut: asyncio.Future[Any] = loop.create_future()
        fut.set_result(stop.value)
        return fut
    except BaseException as exc:  # noqa: BLE001 - the caller's done-callback reports it
        fut = loop.create_future()
        fut.set_exception(exc)
        return fut
    return loop.create_task(_drive(_Resume(coro, first)))
