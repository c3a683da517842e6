"""A process that replays a capture on the engine modules' compiled copies, as ``kmm backtest`` runs it
(bench_backtest.py's ``CompiledReplayer``). This module imports nothing from kmm at its top: the choice
(``kmm._pure.use_compiled``) must come before anything imports the engine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


def serve(conn: Any, capture: str) -> None:
    """Answer each true request on ``conn`` with the summary of one whole replay of ``capture`` (the
    configuration and seed of bench_backtest's ``_quoting_b``); a false request ends it."""
    from kmm import _pure
    compiled = _pure.use_compiled()
    import importlib

    from kmm.config import load_config
    from kmm.research.backtest import Backtest
    conn.send((compiled, [_pure.is_compiled(importlib.import_module(m)) for m in _pure.MODULES]))
    cfg = load_config(None, environ={}, cli={})
    logging.disable(logging.WARNING)
    while conn.recv():
        s = Backtest([Path(capture)], cfg, None, seed=1, fast=True, compiled_loop=True).run()
        conn.send(s)
