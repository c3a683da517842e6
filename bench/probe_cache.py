"""One event check, warm and with the caches polluted between calls: the Python predicate as it was at
commit 77ea823 (read from git) against the compiled one (``kmm._core.eventgate.Verdicts``). Shows how
much of a check's cost in a live run is memory rather than interpretation (docs/benchmarks.md, request
side). Run from the repository: ``PYTHONPATH=src python bench/probe_cache.py``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kmm._core.eventgate import Verdicts
from kmm.engine.clock import ManualClock
from kmm.engine.eventwire import LiveResting
from kmm.engine.events import EventLimits, EventRiskGate, EventSpec
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill

MARKETS = ("KXEV-26-A", "KXEV-26-B", "KXEV-26-C")


def python_predicate() -> Any:
    src = subprocess.run(["git", "show", "77ea823:src/kmm/engine/events.py"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent).stdout
    path = Path(tempfile.mkdtemp()) / "events_py.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("events_py", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["events_py"] = mod
    spec.loader.exec_module(mod)
    return mod._Verdicts


def main() -> None:
    pf, om = Portfolio(cash=1_000_0000), OrderManager(ManualClock())
    gate = EventRiskGate(EventLimits(), pf, LiveResting(om))
    book = gate.add_event(EventSpec("KXEV-26", True, MARKETS), maker_fee_rate_e6=17_500)
    for t in MARKETS:
        om.create(t, "bid", 4000, 500)
        om.create(t, "ask", 4600, 500)
    pf.apply_fill(Fill("t1", "o", None, MARKETS[0], "bid", 4000, 300, 5, False, None, 0))
    prop = gate._proposal(book, MARKETS[0], "bid", 4100, True)
    kinds = (("python", python_predicate()), ("compiled", Verdicts))
    junk = [{"a": i, "b": str(i)} for i in range(60_000)]     # ~8 MB of Python objects

    def pollute() -> int:
        return sum(d["a"] for d in junk)

    for polluted, n in ((False, 5000), (True, 400)):
        for _ in range(2):
            for name, cls in kinds:
                total = 0
                for _ in range(n):
                    if polluted:
                        pollute()
                    t = time.perf_counter_ns()
                    cls(gate, book, prop).passes(500)
                    total += time.perf_counter_ns() - t
                print(f"{name:9s} {'caches polluted' if polluted else 'warm':15s} {total / n / 1e3:6.2f} us per check")


if __name__ == "__main__":
    main()
