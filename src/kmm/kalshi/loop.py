"""Event-loop helpers for the command-line entry points: uvloop when available, asyncio otherwise.

The library itself never installs a policy; it runs on whatever loop it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("kmm.kalshi.loop")

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def install() -> bool:
    """Make new event loops uvloop loops (for entry points). Returns True if uvloop is in use."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using the default asyncio loop")
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(coro: Coroutine[Any, Any, T], *, use_uvloop: bool = True, debug: bool = False) -> T:
    """Run ``coro`` to completion on a fresh loop: uvloop when available and wanted."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; using the default asyncio loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop, debug=debug) as runner:
                return runner.run(coro)
    return asyncio.run(coro, debug=debug)
