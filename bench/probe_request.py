"""Where decided -> written goes, in situ: runs bench_kmm_run's ``kmm`` variant (kmm run's configuration)
with each stage of the request side wrapped by a timer. The wrappers add ~0.3 us a call; read the
figures as shares, not as absolute costs. Run: ``PYTHONPATH=src:. python -m bench.probe_request``."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import bench_kmm_run as bk
from bench.bench_engine import dist

T: dict[str, list[int]] = {}


def _wrap(obj: Any, name: str, label: str, cpu: bool = False) -> None:
    """Time every call of ``obj.name`` (wall clock; with ``cpu`` also the thread's CPU time, apart:
    the difference is time the thread was not running: other threads holding the GIL, preemption)."""
    orig = getattr(obj, name)
    acc = T.setdefault(label, [])
    acc_cpu = T.setdefault(label + " [thread CPU]", []) if cpu else None
    clock, tclock = time.perf_counter_ns, time.thread_time_ns

    def w(*a: Any, **k: Any) -> Any:
        t, c = clock(), tclock()
        try:
            return orig(*a, **k)
        finally:
            acc.append(clock() - t)
            if acc_cpu is not None:
                acc_cpu.append(tclock() - c)
    setattr(obj, name, w)


def main() -> None:
    from kmm.engine import maker
    orig_init = maker.Engine.__init__

    def init(self: Any, *a: Any, **k: Any) -> None:
        orig_init(self, *a, **k)
        _wrap(self, "_apply", "_apply (whole decision)", cpu=True)
        _wrap(self, "_send_place", "  _send_place")
        _wrap(self, "_send_amend", "  _send_amend")
        _wrap(self, "_send_cancel", "  _send_cancel")
        _wrap(self, "_record_pending", "    _record_pending")
        _wrap(self, "_stamp_now", "    _stamp_now")
        _wrap(self.gate, "check_place", "  gate.check_place")
        _wrap(self.gate, "check_amend", "  gate.check_amend")
        _wrap(self.gate, "reduce_only_reason", "  gate.reduce_only_reason")
        _wrap(self.event_risk, "size_place", "  event.size_place", cpu=True)
        _wrap(self.event_risk, "check_amend", "  event.check_amend")
        _wrap(self.om, "create", "  om.create")
        _wrap(self.om, "request_amend", "  om.request_amend")
        _wrap(self.om, "request_cancel", "  om.request_cancel")
        # the amend in one step and the records after the write (seventeenth session; older trees lack them)
        for obj, name, label in ((self, "_amend_now", "  _amend_now"), (self.gate, "amend_size", "  gate.amend_size"),
                                 (self.om, "record_create", "  om.record_create")):
            if hasattr(obj, name):
                _wrap(obj, name, label)
        _wrap(self.session, "place_now", "    session.place_now", cpu=True)
        _wrap(self.session, "amend_now", "    session.amend_now")
        _wrap(self.session, "cancel_now", "    session.cancel_now")
        # decisions kept for later (dirty) while a request of the market is in flight: how long from
        # the first frame that could not decide to the decision made after the answer
        first_dirty: dict[str, int] = {}
        waits = T.setdefault("dirty wait: first deferred frame -> decision", [])
        counts = T.setdefault("_counts", [0, 0])
        orig_may, orig_act = self._may_decide, self._act

        def may(pipe: Any, live: Any, now_ns: int, act: bool = True) -> bool:
            ok = orig_may(pipe, live, now_ns, act)
            if not ok and pipe.dirty and pipe.ticker not in first_dirty:
                first_dirty[pipe.ticker] = time.monotonic_ns()
            return ok

        def act_(pipe: Any, actions: Any, live: Any, trigger_ns: int, *rest: Any, **kw: Any) -> None:
            t0 = first_dirty.pop(pipe.ticker, None)
            if actions:
                counts[0 if t0 is None else 1] += 1
                if t0 is not None:
                    waits.append(time.monotonic_ns() - t0)
            orig_act(pipe, actions, live, trigger_ns, *rest, **kw)
        self._may_decide, self._act = may, act_
        orig_open = self.session.open

        async def open_() -> Any:
            rest = await orig_open()
            _wrap(rest, "send_now", "      rest.send_now")
            if rest.fast is not None:
                _wrap(rest.fast, "send_raw", "        fast.send_raw")
            if rest.pool is not None:
                _wrap(rest.pool, "take", "        pool.take")
            _wrap(rest.limiter, "try_acquire", "        limiter.try_acquire")
            return rest
        self.session.open = open_
    maker.Engine.__init__ = init  # type: ignore[method-assign]
    # garbage collections on the loop's thread: how many, how long (a collection inside a decision
    # is CPU time of that decision)
    import gc
    gc_ns = T.setdefault("gc collection (any generation)", [])
    gc_t = [0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_t[0] = time.perf_counter_ns()
        elif gc_t[0]:
            gc_ns.append(time.perf_counter_ns() - gc_t[0])
    gc.callbacks.append(on_gc)
    with tempfile.TemporaryDirectory() as tmp:
        s, m = bk.run_variant(Path(tmp), bk.VARIANTS[sys.argv[1] if len(sys.argv) > 1 else "kmm"])
    for name, d in (("decided -> issued", dist(m["issue"])), ("decided -> create written", dist(m["wire_create"]))):
        print(f"{name:30s} n={d['n']:5d} p50 {d['p50_ns'] / 1e3:8.1f} us p99 {d['p99_ns'] / 1e3:8.1f} us")
    c = T.pop("_counts")
    print(f"decisions with actions: {c[0]} decided on their frame, {c[1]} after a deferral (dirty)")
    for k, v in T.items():
        if v:
            v = sorted(v[len(v) // 10:]) or sorted(v)
            print(f"{k:34s} n={len(v):5d} p50 {v[len(v) // 2] / 1e3:7.1f} us  p90 {v[int(len(v) * .9)] / 1e3:7.1f} us"
                  f"  mean {sum(v) / len(v) / 1e3:7.1f} us")


if __name__ == "__main__":
    main()
