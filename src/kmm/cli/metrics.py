"""Prometheus metrics of a running ``kmm run`` on 127.0.0.1 (``--metrics-port PORT``).

Everything is read from the engine when Prometheus scrapes (a custom collector), so nothing is added to
the hot path. Latency histograms are built from the newest :data:`WINDOW` samples of the engine's
rolling windows (frame received -> first request, frame -> decision, decision -> request): their counts
can drop when old samples leave the window, so read them as a window, not as counters. The samples are
copied on the engine's loop; copying its whole 200,000-sample windows held the loop ~1.4 ms each, five
of them at every scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np

#: samples of each latency window a scrape reads (the newest)
WINDOW = 20_000

BUCKETS_S = (0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1)


_BOUNDS_NS = np.array([int(b * 1e9) for b in BUCKETS_S], dtype=np.int64)


def _hist(samples_ns: Iterable[int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative bucket counts (``le`` as Prometheus writes it) and the sum in seconds. In numpy: the
    scrape thread holds the GIL while it counts, and a Python loop over the 200,000 samples of one
    window took ~50 ms of it (~5 ms here), ms the event loop waited for (tests/cli/test_metrics_hist.py
    holds it to the plain loop)."""
    arr = np.fromiter(samples_ns, dtype=np.int64)
    counts = np.bincount(np.searchsorted(_BOUNDS_NS, arr, side="left"), minlength=len(BUCKETS_S) + 1)
    les = (*(str(b) for b in BUCKETS_S), "+Inf")
    return [(le, float(c)) for le, c in zip(les, np.cumsum(counts), strict=True)], int(arr.sum()) / 1e9


class EngineCollector:
    """Reads the engine at scrape time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        d = self._read()
        info = GaugeMetricFamily("kmm_run_info", "This kmm run (always 1)", labels=["venue", "pid"])
        info.add_metric([d["venue"], str(d["pid"])], 1.0)
        yield info
        yield GaugeMetricFamily("kmm_elapsed_seconds", "Seconds since the run started", value=d["elapsed_s"])
        fills = CounterMetricFamily("kmm_fills", "Fills of this session, by side", labels=["side"])
        for side, n in d["fills"]:
            fills.add_metric([side], n)
        yield fills
        orders = CounterMetricFamily("kmm_orders", "Order requests sent, by kind", labels=["kind"])
        for kind, n in d["orders"]:
            orders.add_metric([kind], n)
        yield orders
        rej = CounterMetricFamily("kmm_risk_denials", "Orders the risk gate refused, by reason", labels=["reason"])
        for reason, n in d["denials"]:
            rej.add_metric([reason], n)
        yield rej
        ex = GaugeMetricFamily("kmm_exchange_rejects_recent", "Creates the exchange refused, still in the "
                               "order book of the last 5 minutes, by reason", labels=["reason"])
        for reason, n in d["rejects"]:
            ex.add_metric([reason], n)
        yield ex
        open_ = GaugeMetricFamily("kmm_open_orders", "Our orders working now", labels=["ticker"])
        for t, n in d["open"]:
            open_.add_metric([t], n)
        yield open_
        yield GaugeMetricFamily("kmm_write_pressure", "Share of the write token bucket in use (0..1)",
                                value=d["pressure"])
        pnl = GaugeMetricFamily("kmm_pnl_dollars", "Session P&L in dollars", labels=["kind"])
        for kind, v in d["pnl"]:
            pnl.add_metric([kind], v)
        yield pnl
        pos = GaugeMetricFamily("kmm_position_contracts", "Signed position (YES contracts)", labels=["ticker"])
        for t, v in d["positions"]:
            pos.add_metric([t], v)
        yield pos
        kill = GaugeMetricFamily("kmm_kill_switch", "Kill switch state (1 for the current one)", labels=["state"])
        for st in ("armed", "tripped", "paused"):
            kill.add_metric([st], 1.0 if d["kill"] == st else 0.0)
        yield kill
        for name, doc, samples in d["latency"]:
            buckets, total = _hist(samples)
            yield HistogramMetricFamily(name, doc + f" (the newest {WINDOW} samples)", buckets=buckets, sum_value=total)

    def _read(self) -> dict[str, Any]:
        """The numbers, read on the engine's event loop (the scrape runs in another thread)."""
        import asyncio
        loop = getattr(self.engine, "_loop", None)
        if loop is None or loop.is_closed() or not loop.is_running():
            return read_engine(self.engine)

        async def read() -> dict[str, Any]:
            return read_engine(self.engine)
        return asyncio.run_coroutine_threadsafe(read(), loop).result(timeout=5.0)


def newest(samples: Any, n: int | None = None) -> list[int]:
    """The newest ``n`` (default :data:`WINDOW`) samples of a window, oldest first, read from its new
    end (the time is the samples read, not the window's length)."""
    n = WINDOW if n is None else n
    if len(samples) <= n:
        return list(samples)
    out = list(islice(reversed(samples), n))
    out.reverse()
    return out


def read_engine(e: Any) -> dict[str, Any]:
    import os
    pf = e.pf
    started = getattr(e, "_started_ns", 0)
    return {
        "venue": str(e.venue), "pid": os.getpid(),
        "elapsed_s": (e.clock.monotonic_ns() - started) / 1e9 if started else 0.0,
        "fills": sorted(e.fills_by_side.items()),
        "orders": [("create", e.orders_sent), ("amend", e.amends_sent), ("cancel", e.cancels_sent),
                   ("decrease", e.decreases_sent)],
        "denials": [(str(k), n) for k, n in sorted(e.gate.denials.items())],
        "rejects": sorted(_exchange_rejects(e).items()),
        "open": [(t, len(e.om.live_orders(t))) for t in e.pipes],
        "pressure": e.rest.limiter.pressure() if e.rest is not None else 0.0,
        "pnl": [("realized", pf.realized_pnl() / 1e4), ("unrealized", pf.unrealized_pnl() / 1e4),
                ("fees", pf.fees_paid() / 1e4),
                ("net", (pf.realized_pnl() + pf.unrealized_pnl() - pf.fees_paid()) / 1e4)],
        "positions": [(t, pf.position(t) / 100) for t in e.tickers],
        "kill": e.gate.kill_state.value,
        "latency": [("kmm_frame_to_request_seconds",
                     "Frame received -> first request written (write-budget waits excluded)", newest(e._latency_ns)),
                    ("kmm_frame_to_decision_seconds", "Book frame received -> actions decided", newest(e.decide_ns)),
                    ("kmm_update_to_decision_seconds", "Fill or order update received -> actions decided",
                     newest(getattr(e, "update_decide_ns", ()))),
                    ("kmm_decision_to_request_seconds",
                     "Actions decided -> first request written (write-budget waits excluded)", newest(e.send_ns)),
                    ("kmm_write_budget_wait_seconds",
                     "A decision's first request waiting for the write budget or a connection (only those that waited)",
                     newest(getattr(e, "budget_wait_ns", ())))],
    }


def _exchange_rejects(engine: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in engine.om.orders():
        if getattr(o.state, "name", "") == "REJECTED":
            key = str(o.reason or "unknown")[:40]
            out[key] = out.get(key, 0) + 1
    return out


class MetricsServer:
    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self._server, self._thread, self.port = server, thread, port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(engine: Any, port: int) -> MetricsServer:
    """Serve /metrics on 127.0.0.1:port (0: any free port) from a daemon thread."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    reg = CollectorRegistry(auto_describe=False)
    reg.register(EngineCollector(engine))
    httpd = make_server("127.0.0.1", port, make_wsgi_app(reg), server_class=Server, handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, name="kmm-metrics", daemon=True)
    thread.start()
    return MetricsServer(httpd, thread, httpd.server_address[1])
