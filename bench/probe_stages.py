"""Where decided -> create written goes, stage by stage, in situ (issue 15's request side).

Runs bench_kmm_run's variant (default ``kmm``: kmm run's configuration) with a stamp (monotonic ns and
the loop thread's CPU time) at each boundary of a decision whose FIRST request is a create (the
decisions the ``decided -> create bytes written`` figure counts):

  decided (``pipe.decided_ns``) -> _apply entered (the marks of the frame run in between) -> planner
  returns the PLACE (gates, event limit, om.create) -> [_send_place entered (OrderRequest), only on
  the former path] -> rest.place_quote_now entered (rest.send_now on the former path: Session.place_now,
  body) -> transport.write entered (limiter, signature take, head/body bytes, connection) ->
  transport.write returned. Works on the former path too (A/B on an older tree).

Wall minus thread CPU over the span is time the loop's thread was not running (another thread held
the GIL, or the OS ran something else). Also counts, per decision, the requests and the order
connections idle when it started. Only a few attribute reads and list appends per stage are added.
Run: ``PYTHONPATH=src:. python -m bench.probe_stages [variant]``."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("decided", "apply", "plan_place", "send_place", "send_now", "write_in", "write_out")


def main() -> None:
    from bench import bench_kmm_run as bk
    from kmm.engine import maker, quoting
    from kmm.kalshi import fasthttp, rest as rest_mod

    clock, tclock = time.monotonic_ns, time.thread_time_ns
    cur: dict[str, Any] = {}            # the decision being applied: stage -> (wall, cpu)
    rows: list[dict[str, Any]] = []
    reqs_per_decision: list[int] = []
    idle_at_start: list[int] = []

    def mark(name: str) -> None:
        if cur and name not in cur:
            cur[name] = (clock(), tclock())

    orig_apply = maker.Engine._apply

    def _apply(self: Any, pipe: Any, actions: Any, trigger_ns: int) -> int:
        cur.clear()
        if pipe.trigger_ns == trigger_ns and pipe.decided_ns:
            cur["decided"] = (pipe.decided_ns, cur_cpu[0])
            cur["apply"] = (clock(), tclock())
            cur["_reqs"] = 0
            fast = getattr(self.rest, "fast", None)
            if fast is not None:
                idle_at_start.append(sum(1 for c in fast._idle if not c.closed))
        try:
            return orig_apply(self, pipe, actions, trigger_ns)
        finally:
            if "write_out" in cur and cur.get("_first") == "place":
                rows.append(dict(cur))
            if "_reqs" in cur:
                reqs_per_decision.append(cur["_reqs"])
            cur.clear()
    maker.Engine._apply = _apply  # type: ignore[method-assign]

    cur_cpu = [0]
    orig_act = maker.Engine._act

    def _act(self: Any, pipe: Any, actions: Any, live: Any, trigger_ns: int, *a: Any, **k: Any) -> None:
        cur_cpu[0] = tclock()     # ~ the decided stamp (taken a few us later inside _act)
        orig_act(self, pipe, actions, live, trigger_ns, *a, **k)
    maker.Engine._act = _act  # type: ignore[method-assign]

    orig_place = getattr(quoting.QuotePlanner, "place", None)
    if orig_place is not None:       # the quote path (rest.place_quote_now): the planner's one PLACE
        def place(self: Any, ticker: str, a: Any) -> Any:
            out = orig_place(self, ticker, a)
            if out is not None:
                mark("plan_place")
            return out
        quoting.QuotePlanner.place = place  # type: ignore[method-assign]

    orig_qn = getattr(rest_mod.KalshiRest, "place_quote_now", None)
    if orig_qn is not None:
        def place_quote_now(self: Any, *a: Any, **k: Any) -> int:
            if cur and "_first" not in cur:
                cur["_first"] = "place"
            if cur.get("_first") == "place":
                mark("send_now")
            return orig_qn(self, *a, **k)
        rest_mod.KalshiRest.place_quote_now = place_quote_now  # type: ignore[method-assign]

    orig_plan = quoting.QuotePlanner.plan

    def plan(self: Any, ticker: str, actions: Any) -> Any:
        for step in orig_plan(self, ticker, actions):
            if step[0] == quoting.PLACE:
                mark("plan_place")
            yield step
    quoting.QuotePlanner.plan = plan  # type: ignore[method-assign]

    orig_sp = maker.Engine._send_place

    def _send_place(self: Any, *a: Any) -> None:
        mark("send_place")
        orig_sp(self, *a)
    maker.Engine._send_place = _send_place  # type: ignore[method-assign]

    orig_sn = rest_mod.KalshiRest.send_now

    def send_now(self: Any, method: str, path: str, *a: Any, **k: Any) -> int:
        if cur and "_first" not in cur:
            cur["_first"] = "place" if path.endswith("/orders") else "other"
        if cur.get("_first") == "place":
            mark("send_now")
        return orig_sn(self, method, path, *a, **k)
    rest_mod.KalshiRest.send_now = send_now  # type: ignore[method-assign]

    def start(self: Any, data: bytes, timeout_s: float, done: Any) -> None:
        assert self.transport is not None and self.done is None
        self.done = done
        self._reset_response()
        if cur:
            cur["_reqs"] = cur.get("_reqs", 0) + 1
        first = cur.get("_first") == "place" and "write_in" not in cur
        if first:
            cur["write_in"] = (clock(), tclock())
        self.transport.write(data)
        self.last_write_ns = clock()
        if first:
            cur["write_out"] = (self.last_write_ns, tclock())
        self.timeout_s = timeout_s
        self._pool._arm(self, timeout_s)
    fasthttp._Conn.start = start  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory() as tmp:
        s, m = bk.run_variant(Path(tmp), bk.VARIANTS[sys.argv[1] if len(sys.argv) > 1 else "kmm"])
    rows = rows[len(rows) // 10:]
    print(f"decisions whose first request is a create: {len(rows)}")

    def pct(v: list[int]) -> str:
        v = sorted(v)
        if not v:
            return "-"
        return (f"p50 {v[len(v) // 2] / 1e3:7.1f}  p90 {v[int(len(v) * .9)] / 1e3:7.1f}  "
                f"mean {sum(v) / len(v) / 1e3:7.1f} us")
    pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for r in rows:                   # consecutive stages the row has (the quote path has no send_place)
        have = [st for st in STAGES if st in r]
        for a, b in zip(have, have[1:]):
            w, c = pairs.setdefault((a, b), ([], []))
            w.append(r[b][0] - r[a][0])
            c.append(r[b][1] - r[a][1])
    for (a, b), (w, c) in pairs.items():
        print(f"{a:>10s} -> {b:<10s} n={len(w):4d} wall {pct(w)}\n{'':31s} cpu  {pct(c)}")
    w = [r["write_out"][0] - r["decided"][0] for r in rows]
    c = [r["write_out"][1] - r["decided"][1] for r in rows]
    print(f"{'decided -> written':24s} wall {pct(w)}\n{'':24s} cpu  {pct(c)}")
    from collections import Counter
    print("requests written per decision:", sorted(Counter(reqs_per_decision).items()))
    print("idle order connections when a decision starts:", sorted(Counter(idle_at_start).items()))
    print("pool (steady):", m.get("pool_steady"))


if __name__ == "__main__":
    main()
