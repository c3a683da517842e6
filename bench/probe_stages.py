"""Where decided -> create written goes, stage by stage, in situ (issue 15's request side).

Runs bench_kmm_run's variant (default ``kmm``: kmm run's configuration) and logs a stamp (monotonic ns)
at each boundary of every request of a decision (``Engine._apply``):

  decided (``pipe.decided_ns``) -> _apply entered (the frame's marks run in between) -> planner entered
  (``QuotePlanner.place`` / ``other``) -> [a create: ``RiskGate.place_allowed`` entered -> returned ->
  ``event_risk.size_place`` returned -> ``OrderManager.create`` returned] -> planner returned -> the
  send entered (``rest.place_quote_now`` / ``amend_quote_now`` / ``Engine._send_*``) -> the
  connection's ``transport.write`` entered -> returned.

The frame entry's own first request (``EngineOptions.first_in_c``, the nineteenth session) is turned
off: its steps run in C, where these wrappers cannot stamp them. Each written create is reported by its
place in the decision (``first``: no request of the decision was
written before it; ``later``: after one or more), with every stage's p50/p90 and decided -> written.
Works on older trees (a missing method is simply not stamped), so two trees can be compared in one
session. The wrappers add ~0.3 us per stamp (a Python call and a list append); the figures are for
finding where the time goes, bench_kmm_run's WireStamps is the figure itself.
Run: ``PYTHONPATH=src:. python -m bench.probe_stages [variant]``."""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# the stages of a create, in order; a row has the ones its path passed
CREATE_STAGES = ("decided", "apply", "prev_write_out", "plan_in", "gate_in", "gate_out", "sums_in", "sums_out",
                 "verdicts_out", "event_out", "create_out", "plan_out", "send_in", "limit_in", "limit_out",
                 "take_in", "take_out", "raw_in", "write_in", "write_out")
# an amend: the planner's other() (the gate's amend check, the event limits, the order manager's
# request_amend), Engine._send_amend, KalshiRest.amend_quote_now, then the same stages as a create
# (since the seventeenth session a working order's amend takes Engine._amend_now: the gate's amend_size,
# the event limits' amend_fits, KalshiRest.amend_quote_now, and the order record after the write, which
# is not a stage of the request; likewise a create's record after its write)
AMEND_STAGES = ("decided", "apply", "prev_write_out", "plan_in", "amend_allowed_in", "amend_allowed_out",
                "amend_size_in", "amend_size_out",
                "ev_amend_out", "request_amend_out", "plan_out", "send_amend_in", "send_in", "limit_in",
                "limit_out", "take_in", "take_out", "raw_in", "write_in", "write_out")


def main() -> None:
    from bench import bench_kmm_run as bk
    from kmm.engine import maker, orders, quoting, risk
    from kmm.kalshi import fasthttp, rest as rest_mod

    clock, tclock = time.monotonic_ns, time.thread_time_ns
    log: list[tuple[str, int]] | None = None          # the decision being applied: (stage, ns)
    decisions: list[tuple[int, int, list[tuple[str, int]], int]] = []   # decided, cpu at apply, log, cpu out

    def mark(name: str) -> None:
        if log is not None:
            log.append((name, clock()))

    def wrap(cls: Any, name: str, before: str | None, after: str | None, only_if: Any = None,
             record: bool = False) -> None:
        orig = getattr(cls, name, None)
        if orig is None:
            return

        def w(*a: Any, **k: Any) -> Any:
            if record and log is not None and log[-1][0] == "write_out":    # the record after the write
                return orig(*a, **k)
            if before:
                mark(before)
            out = orig(*a, **k)
            if after and (only_if is None or only_if(out)):
                mark(after)
            return out
        setattr(cls, name, w)

    orig_apply = maker.Engine._apply

    def _apply(self: Any, pipe: Any, actions: Any, trigger_ns: int) -> int:
        nonlocal log
        if log is not None or pipe.trigger_ns != trigger_ns or not pipe.decided_ns:
            return orig_apply(self, pipe, actions, trigger_ns)     # a pull, or nested
        c0 = tclock()                   # a syscall (not in the vDSO): before the first stamp
        log = [("apply", clock())]
        try:
            return orig_apply(self, pipe, actions, trigger_ns)
        finally:
            decisions.append((pipe.decided_ns, c0, log, tclock()))
            log = None
    maker.Engine._apply = _apply  # type: ignore[method-assign]

    if hasattr(quoting.QuotePlanner, "place_checked"):           # the record after the write
        wrap(quoting.QuotePlanner, "place_checked", "plan_in:place", "plan_out")
    else:
        wrap(quoting.QuotePlanner, "place", "plan_in:place", "plan_out")
    wrap(maker.Engine, "_amend_now", "plan_in:amend", None)
    wrap(risk.RiskGate, "amend_size", "amend_size_in", "amend_size_out")
    ev_wire = __import__("kmm.engine.eventwire", fromlist=["EventWiring"]).EventWiring
    wrap(ev_wire, "amend_fits", None, "ev_amend_out")
    wrap(quoting.QuotePlanner, "other", "plan_in:other", "plan_out")
    wrap(risk.RiskGate, "place_allowed", "gate_in", "gate_out")
    ev_mod = __import__("kmm.engine.eventwire", fromlist=["EventWiring"])
    wrap(ev_mod.EventWiring, "size_place", None, "event_out")
    wrap(orders.OrderManager, "create", None, "create_out", record=True)
    es_mod = __import__("kmm.engine.eventsums", fromlist=["EventSums"])
    wrap(es_mod.EventSums, "refresh", "sums_in", "sums_out")
    wrap(es_mod.EventSums, "verdicts", None, "verdicts_out")
    for n in ("place_quote_now", "amend_quote_now", "create_order_now", "amend_order_now", "cancel_orders_now"):
        wrap(rest_mod.KalshiRest, n, "send_in", None)
    for n in ("_send_place", "_send_cancel", "_send_decrease"):
        wrap(maker.Engine, n, "send_in", None)
    wrap(maker.Engine, "_send_amend", "send_amend_in", None)
    wrap(risk.RiskGate, "amend_allowed", "amend_allowed_in", "amend_allowed_out")
    wrap(ev_mod.EventWiring, "check_amend", None, "ev_amend_out")
    wrap(orders.OrderManager, "request_amend", None, "request_amend_out", record=True)

    from kmm.kalshi import limiter as lim_mod, signing
    wrap(lim_mod.RateLimiter, "try_acquire", "limit_in", "limit_out")
    wrap(signing.SignaturePool, "take", "take_in", "take_out")
    wrap(fasthttp.FastHttp, "send_raw", "raw_in", None)
    orig_start = fasthttp._Conn.start

    def start(self: Any, data: bytes, timeout_s: float, done: Any) -> Any:
        mark("write_in")
        out = orig_start(self, data, timeout_s, done)
        if log is not None:
            log.append(("write_out", self.last_write_ns))
        return out
    fasthttp._Conn.start = start  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory() as tmp:
        v = bk.VARIANTS[sys.argv[1] if len(sys.argv) > 1 else "kmm"]
        # the stages are the engine's Python path: the frame entry's own first request (nineteenth
        # session, FrameEntry.first_request) runs them in C, unstamped, so it is off here
        v = dict(v, opts={**v.get("opts", {}), "first_in_c": False})
        s, m = bk.run_variant(Path(tmp), v)
    decisions = decisions[len(decisions) // 10:]          # past the warm-up

    # split each decision's log into requests (a request opens at plan_in); keep written creates
    rows: dict[str, list[dict[str, int]]] = {"first": [], "later": []}
    amends: dict[str, list[dict[str, int]]] = {"first": [], "later": []}
    kinds: Counter[str] = Counter()
    cpu: list[int] = []
    n_req: Counter[int] = Counter()
    for decided, c0, lg, c1 in decisions:
        reqs: list[list[tuple[str, int]]] = []
        for name, t in lg:
            if name.startswith("plan_in"):
                reqs.append([(name, t)])
            elif reqs:
                reqs[-1].append((name, t))
        written = 0
        seq = []
        last_out = 0
        for r in reqs:
            st = dict(r)
            kind = "create" if "plan_in:place" in st else \
                "amend" if "send_amend_in" in st or "plan_in:amend" in st else "other"
            if "write_out" not in st:
                continue
            seq.append(kind)
            if kind == "create":
                st = {("plan_in" if k.startswith("plan_in") else k): v for k, v in st.items()}
                st["decided"], st["apply"] = decided, lg[0][1]
                if last_out:
                    st["prev_write_out"] = last_out       # the decision's previous request written
                rows["first" if written == 0 else "later"].append(st)
            elif kind == "amend":
                st = {("plan_in" if k.startswith("plan_in") else k): v for k, v in st.items()}
                st["decided"], st["apply"] = decided, lg[0][1]
                if last_out:
                    st["prev_write_out"] = last_out
                amends["first" if written == 0 else "later"].append(st)
            last_out = st["write_out"]
            written += 1
        n_req[written] += 1
        if seq:
            kinds["+".join(seq)] += 1
        cpu.append(c1 - c0)

    def pct(v: list[int]) -> str:
        v = sorted(v)
        if not v:
            return "-"
        return (f"p50 {v[len(v) // 2] / 1e3:7.1f}  p90 {v[int(len(v) * .9)] / 1e3:7.1f}  "
                f"p99 {v[min(len(v) - 1, int(len(v) * .99))] / 1e3:7.1f} us")
    for what, stages, which, rs in ([("creates", CREATE_STAGES, w, r) for w, r in rows.items()]
                                    + [("amends", AMEND_STAGES, w, r) for w, r in amends.items()]):
        print(f"\n== {what} written {which} in their decision: n={len(rs)}")
        pairs: dict[tuple[str, str], list[int]] = {}
        for r in rs:
            have = [st for st in stages if st in r]
            for a, b in zip(have, have[1:]):
                pairs.setdefault((a, b), []).append(r[b] - r[a])
        for (a, b), w in pairs.items():
            print(f"  {a:>10s} -> {b:<10s} n={len(w):4d} {pct(w)}")
        print(f"  {'decided -> written':24s} n={len(rs):4d} {pct([r['write_out'] - r['decided'] for r in rs])}")
        print(f"  {'decided -> write() in':24s} n={len(rs):4d} {pct([r['write_in'] - r['decided'] for r in rs])}")
    print("\nrequests written per decision:", sorted(n_req.items()))
    print("decisions by their written requests:", kinds.most_common(8))
    print("loop thread CPU per decision (_apply):", pct(cpu))
    print("pool (steady):", m.get("pool_steady"))


if __name__ == "__main__":
    main()
