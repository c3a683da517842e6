"""What a typed request step would cost in situ: a compact C step, run cold at every decision of a live run.

bench/probe_stages.py finds decided -> ``write()`` entered at ~80-95 us p50 under ``kmm run``'s
configuration, 12-14 Python steps of 3-13 us each, where the same steps take ~1 us each in a warm loop.
Two ways to cut it were tried in the sixteenth session: compiling the request step as it is (Cython over
the same Python objects: the connector, the signature pool, the limiter, the connection) changed nothing
(docs/benchmarks.md). This probe measures the other way: the step over compact C data
(``bench/c_request_step.pyx``: the gate's checks, a write token, a pre-made signature, the request's
bytes; nothing sent), called at every decision just before the engine's own path runs, so it runs as cold
as that path does. It prints the step's time inside C and with its Python call, per decision, next to
the engine's decided -> first request written in the same run.

Run: ``PYTHONPATH=src:. python -m bench.probe_c_request [variant]`` (builds the .pyx with pyximport into a
temporary folder; needs Cython and a C compiler, as kmm's own build does)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _build() -> Any:
    import pyximport
    build = tempfile.mkdtemp(prefix="kmm-probe-c-request-")
    pyximport.install(build_dir=build, language_level=3, inplace=False)
    sys.path.insert(0, str(Path(__file__).parent))
    import c_request_step
    return c_request_step


def _pct(v: list[int], q: float) -> float | None:
    v = sorted(v)
    return round(v[min(len(v) - 1, int(len(v) * q))] / 1e3, 2) if v else None


def main() -> None:
    from bench import bench_kmm_run as bk
    from kmm.engine import maker

    step_mod = _build()
    step_mod.setup(b"POST /trade-api/v2/portfolio/events/orders/0f6c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b/amend "
                   b"HTTP/1.1\r\nHost: 127.0.0.1:40000\r\nContent-Type: application/json\r\n"
                   b"Accept: application/json\r\nKALSHI-ACCESS-KEY: bench-key\r\n", b"KXSIMA-26-A")
    step = step_mod.step
    inside: list[int] = []
    called: list[int] = []
    clock = time.monotonic_ns
    orig = maker.Engine._apply

    def _apply(self: Any, pipe: Any, actions: Any, trigger_ns: int) -> int:
        a = actions[0] if actions else None
        if a is not None:
            t0 = clock()
            ns, data = step(hash(pipe.ticker) & 7, int(a.side), int(a.price), max(1, int(a.size)), 0)
            called.append(clock() - t0)
            inside.append(ns)
            assert data is not None and data.endswith(b"}")
        return orig(self, pipe, actions, trigger_ns)
    maker.Engine._apply = _apply  # type: ignore[method-assign]
    engines: list[Any] = []
    variant = sys.argv[1] if len(sys.argv) > 1 else "kmm"
    try:
        with tempfile.TemporaryDirectory() as d:
            bk.run_variant(Path(d), bk.VARIANTS[variant], hook=engines.append)
    finally:
        maker.Engine._apply = orig  # type: ignore[method-assign]
    send = list(engines[0].send_ns)
    send, inside, called = send[len(send) // 10:], inside[len(inside) // 10:], called[len(called) // 10:]
    print(f"[{variant}] decisions with actions: {len(inside)} (past the first tenth)")
    for name, v in (("compact C step, inside C", inside), ("compact C step, with its Python call", called),
                    ("engine: decided -> first request written", send)):
        print(f"  {name:42s} p50 {_pct(v, .5):8.2f}  p90 {_pct(v, .9):8.2f}  p99 {_pct(v, .99):8.2f} us")


if __name__ == "__main__":
    main()
