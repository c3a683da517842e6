"""Exit codes of every kmm command, in one place."""

from __future__ import annotations

from typing import Any

OK = 0              # done; after a run: nothing of ours rests (verified over REST in every market)
ERROR = 1           # stopped on an error (the message says what and what to do)
CONFIG = 2          # the configuration or the command line is invalid
ORDERS_LEFT = 3     # a run stopped but could not verify that nothing of ours rests: check the exchange


def for_run(summary: Any, *, leave_orders_on_exit: bool = False) -> int:
    """The exit code of ``kmm run`` for its summary."""
    if not summary.verified_flat_orders and not leave_orders_on_exit:
        return ORDERS_LEFT
    return OK
