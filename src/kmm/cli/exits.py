"""Exit codes of every ``kmm`` command, in one place (docs/operations.md lists them).

- 0 ``OK``: the command did what was asked (a run stopped with nothing resting; an execution filled).
- 1 ``ERROR``: it started and failed (network, exchange, a failed or partial execution).
- 2 ``USAGE``: refused before anything started: bad arguments, configuration, credentials or key.
- 3 ``ORDERS_LEFT``: it stopped but could not verify that no order of ours rests at the exchange.
- 4 ``NOT_RUNNING``: ``kmm status/stop/kill-switch/resume`` found no running kmm to talk to.
"""

from __future__ import annotations

OK = 0
ERROR = 1
USAGE = 2
ORDERS_LEFT = 3
NOT_RUNNING = 4
