"""Injected time for the engine: every deadline, age and back-off reads a :class:`Clock`.

Two readings, both int ns (design section 2): ``monotonic_ns()`` for ages, timeouts and back-off
(never jumps), ``time_ns()`` for wall-clock stamps and exchange times such as a market's close_time.
:class:`SystemClock` reads the OS; :class:`ManualClock` only moves when a test moves it.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


@runtime_checkable
class Clock(Protocol):
    """What the engine needs from time."""

    def monotonic_ns(self) -> int:
        """Monotonic time in ns: for ages, deadlines and back-off."""
        ...

    def time_ns(self) -> int:
        """Wall-clock Unix time in ns: for stamps and exchange times (close_time, ts_ms)."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic_ns` and :func:`time.time_ns`."""

    __slots__ = ()

    # the functions themselves, not methods around them: ``clock.monotonic_ns()`` and a callable handed
    # on (``clock_ns=clock.monotonic_ns``, the limiter's clock) run no Python frame (issue 15: a frame
    # per read cost 2-5 us in situ on the order path)
    monotonic_ns = staticmethod(time.monotonic_ns)
    time_ns = staticmethod(time.time_ns)


class ManualClock:
    """A clock that stands still until told to move; both readings move together.

    ``ManualClock(monotonic_ns=0, time_ns=1_767_225_600 * NS_PER_S)`` starts at the given readings.
    """

    __slots__ = ("_mono", "_wall")

    def __init__(self, monotonic_ns: int = 0, time_ns: int = 1_767_225_600 * NS_PER_S) -> None:
        self._mono = monotonic_ns
        self._wall = time_ns

    def monotonic_ns(self) -> int:
        return self._mono

    def time_ns(self) -> int:
        return self._wall

    def advance_ns(self, ns: int) -> None:
        """Move both readings forward by ``ns`` (>= 0; a monotonic clock never goes back)."""
        if ns < 0:
            raise ValueError(f"ManualClock.advance_ns({ns}): time only moves forward")
        self._mono += ns
        self._wall += ns

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``."""
        self.advance_ns(round(seconds * NS_PER_S))

    def set_time_ns(self, time_ns: int) -> None:
        """Set the wall clock alone (wall time may jump; monotonic time does not)."""
        self._wall = time_ns
