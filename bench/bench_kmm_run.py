"""Book frame -> actions decided under ``kmm run``'s own configuration: recorder on (ops.log at INFO,
tape.csv, kmm.sqlite, the raw frame capture), CPython's default 5 ms switch interval (what ``kmm run``
runs with since the eighth session), 3 markets, the simulator's busy flow in its own process.

Variants, all in this run against the same seeded simulator:

* ``kmm``: the compiled per-market pipeline (``MarketPipeline`` on ``kmm._core.pipeline``), deciding
  each market once per run of deltas (``run.coalesce_reads = "deltas"``, the default: when the socket
  read ends, or before a frame that takes the Python path);
* ``kmm-read``: the same deciding once per socket read, after its Python frames too
  (``run.coalesce_reads = "read"``);
* ``kmm-per-frame``: the same deciding every delta as it comes (``run.coalesce_reads = "off"``): the
  former behaviour, the baseline of the coalescing;
* ``python``: the same with ``MarketPipeline(compiled=False)``: the Python path, the baseline;
* ``kmm-0.5ms``: the compiled pipeline with the 0.5 ms switch interval ``kmm run`` set until the eighth
  session, when alternating runs no longer showed it helping (docs/records.md): kept as the A/B row;
* ``quiet``: the compiled pipeline with no recorder (bench_engine.py's configuration), for reference;
* ``sign-thread``: kmm run's configuration with the signature pool's former worker thread instead of
  the signer process (``SignaturePool(mode="thread")``): the signing baseline (inline fallbacks);
* ``unpinned``: kmm run's configuration with no CPU placement;
* ``kmm-rec-apart``: kmm run's configuration with the recorder's writer threads on the signer's CPU
  (``--set run.records_cpus=1`` beside ``run.cpus=0``), not the loop's.

Every other variant places the processes as ``kmm run --set run.cpus=0 --set run.signer_cpus=1``
would, with the simulator beside the signer (bench_engine.py, "CPU placement"): the simulator stands in
for an exchange on another machine and must not take kmm's core.

Stages: ``Engine.decide_ns`` (picows's receive stamp -> actions decided), the engine's own
``send_ns`` (decided -> request issued) and, from bench_engine's WireStamps, decided -> create bytes
written. The signature pool's inline fallbacks are reported. Each run must decide, send and fill, and
stop flat (verified over REST).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.bench_engine import MARKETS, SimProcess, WireStamps, dist, drive, key_pair, pinned
from kmm.config import load_config
from kmm.engine import maker as live_mod   # the maker builds the pipelines (kmm.engine.live is a compatibility name)
from kmm.engine.live import Engine, EngineOptions
from kmm.engine.market import MarketPipeline
from kmm.kalshi import ConnectorConfig
from kmm.kalshi.loop import run as run_loop

# Book-frame decisions are about a third of all decisions (fills and answers make the rest): 20 s of busy
# flow gives ~100-200 of them, enough for a p99 that is not the max of a few dozen (12 s gave 50-120).
QUOTE_S = float(os.environ.get("KMM_BENCH_KMM_RUN_S", "20"))

G_DECIDE = "kmm run config: frame -> actions decided (3 markets, busy, recorder on)"
G_WIRE = "kmm run config: actions decided -> create bytes written"
G_ISSUE = "kmm run config: actions decided -> request issued"
G_QUEUE = "kmm run config: frame received -> Engine.on_book entered (wait)"
G_CODE = "kmm run config: Engine.on_book entered -> actions decided (code path)"

VARIANTS: dict[str, dict[str, Any]] = {
    "kmm": dict(role="kmm", compiled=True, recorder=True, switch=0.005,
                label="compiled pipeline, recorder on (kmm run)"),
    "kmm-read": dict(role="kmm", compiled=True, recorder=True, switch=0.005,
                     cli={"run.coalesce_reads": "read"},
                     label="compiled pipeline, one decision per market per read (coalesce_reads = read)"),
    "kmm-per-frame": dict(role="kmm", compiled=True, recorder=True, switch=0.005,
                          cli={"run.coalesce_reads": "off"},
                          label="compiled pipeline, a decision per delta (coalesce_reads off)"),
    "kmm-spin": dict(role="kmm", compiled=True, recorder=True, switch=0.005, cli={"run.busy_poll": "true"},
                     label="compiled pipeline, recorder on, loop kept polling (run.busy_poll)"),
    "kmm-rec-apart": dict(role="kmm", compiled=True, recorder=True, switch=0.005, records_apart=True,
                          label="compiled pipeline, recorder on, its writer threads on the signer's CPU "
                                "(run.records_cpus)"),
    "kmm-py-listener": dict(role="kmm", compiled=True, recorder=True, switch=0.005,
                            conn={"compiled_listener": False},
                            label="compiled pipeline, recorder on, frames through the Python listener "
                                  "(before session 11)"),
    "kmm-read-all": dict(role="kmm", compiled=True, recorder=True, switch=0.005, opts={"skip_unread": False},
                         label="compiled pipeline, recorder on, ticker and trade frames decoded (before session 9)"),
    "python": dict(role="baseline", compiled=False, recorder=True, switch=0.005,
                   label="Python path, recorder on"),
    "kmm-0.5ms": dict(role="kmm", compiled=True, recorder=True, switch=0.0005,
                      label="compiled pipeline, recorder on, 0.5 ms switch interval (kmm run until session 8)"),
    "quiet": dict(role="kmm", compiled=True, recorder=False, switch=0.005,
                  label="compiled pipeline, no recorder, 5 ms (quiet)"),
    # the worker thread signs on the loop's process and takes the GIL from it: fewer frames find their
    # market free to decide (40-44 book-frame decisions in 20 s in two runs, under the 50 asked): 1.5x time
    "sign-thread": dict(role="kmm", compiled=True, recorder=True, switch=0.005, sign_mode="thread",
                        quote_s_factor=1.5, label="kmm run config, signatures from the former worker thread"),
    "unpinned": dict(role="kmm", compiled=True, recorder=True, switch=0.005, pin=False,
                     label="kmm run config, no CPU placement (the simulator may share kmm's core)"),
}
_RESULTS: dict[str, dict[str, Any]] = {}


def _split_decide(engine: Engine) -> dict[str, list[int]]:
    """Split frame -> decided into the wait before ``Engine.on_book`` runs for the frame (earlier frames
    of the same read, their requests, other callbacks, the GIL) and ``on_book`` -> decided (the
    decision's own code path). Wraps the instance's ``on_book``, which the connector calls by name. A
    delta decided in the compiled frame entry (``kmm._core.entry``) never enters ``on_book``: its entry
    stamp is the pipeline's ``last_book_ns``, read where ``on_book`` reads the clock (after the router).

    Every decision is also classified by what made it: a book frame inside ``on_book`` (``book``) or
    anything else (``other``, with the caller of ``_requote``: ``on_fill``, ``on_user_order``,
    ``_done`` after a request's answer, the housekeeping tick), each with its trigger -> decided
    time. The engine's ``decide_ns`` held all of them until this split showed the mix (issue 15): a
    requote after a fill is stamped from the fill's receive time and includes its bookkeeping; one
    after an answer from the answer's processing; now ``decide_ns`` holds book frames only and
    ``update_decide_ns`` fills and order updates. Works against older engines too (A/B)."""
    import time
    out: dict[str, list[int]] = {"queue": [], "code": [], "book": [], "other": [], "other_kind": [],
                                 "entry_queue": [], "entry_code": []}
    orig = engine.on_book
    orig_act = engine._act  # noqa: SLF001
    clock = time.monotonic_ns
    inside = [False]

    def on_book(ticker: str, recv_ns: int) -> None:
        t = clock()
        inside[0] = True
        try:
            orig(ticker, recv_ns)
        finally:
            inside[0] = False
        pipe = engine.pipes.get(ticker)
        if pipe is not None and recv_ns and pipe.trigger_ns == recv_ns and pipe.decided_ns >= t:
            out["queue"].append(t - recv_ns)
            out["code"].append(pipe.decided_ns - t)

    def entry_decided(pipe: Any, trigger_ns: int, stamps: Any) -> None:
        if stamps is engine.update_decide_ns:
            # a fill's or an order update's re-quote the compiled entry made at the end of a read
            out["other"].append(pipe.decided_ns - trigger_ns)
            out["other_kind"].append("end_of_read")
        else:
            # decided in the compiled frame entry (kmm._core.entry), which never enters on_book: its
            # entry stamp is the pipeline's last_book_ns (taken where on_book would read the clock)
            out["book"].append(pipe.decided_ns - trigger_ns)
            out["queue"].append(pipe.last_book_ns - trigger_ns)
            out["code"].append(pipe.decided_ns - pipe.last_book_ns)
            out["entry_queue"].append(pipe.last_book_ns - trigger_ns)
            out["entry_code"].append(pipe.decided_ns - pipe.last_book_ns)

    orig_first = getattr(engine, "_act_first", None)

    def act_first(pipe: Any, actions: Any, live: Any, trigger_ns: int, stamps: Any, *rest: Any) -> None:
        # a decision whose first amend the compiled entry wrote (FrameEntry.first_amend)
        orig_first(pipe, actions, live, trigger_ns, stamps, *rest)
        entry_decided(pipe, trigger_ns, stamps)

    def act(pipe: Any, actions: Any, live: Any, trigger_ns: int, *rest: Any, **kw: Any) -> None:
        d0 = pipe.decided_ns
        orig_act(pipe, actions, live, trigger_ns, *rest, **kw)
        stamps = rest[0] if rest else kw.get("stamps")
        if pipe.decided_ns != d0 and kw.get("decided_ns"):
            entry_decided(pipe, trigger_ns, stamps)
        elif pipe.decided_ns != d0:
            out["book" if inside[0] else "other"].append(pipe.decided_ns - trigger_ns)
            if not inside[0]:
                import sys as _sys
                f = _sys._getframe(1)          # _requote
                out["other_kind"].append(f.f_back.f_code.co_name if f.f_back is not None else "?")

    engine.on_book = on_book  # type: ignore[method-assign]
    engine._act = act  # type: ignore[method-assign]  # noqa: SLF001
    if orig_first is not None:
        engine._act_first = act_first  # type: ignore[method-assign]  # noqa: SLF001
    return out


def _env_set() -> dict[str, str]:
    """``KMM_BENCH_SET="section.key=value,..."``: config overrides for every variant of a run (e.g. the
    former ``risk.order_group_limit=1000,risk.max_loss=50``, to compare with a run made before)."""
    raw = os.environ.get("KMM_BENCH_SET", "")
    return dict(kv.split("=", 1) for kv in raw.split(",") if kv)


def run_variant(tmp: Path, v: dict[str, Any], seed: int = 3, sim_cls: Any = SimProcess,
                hook: Any = None) -> tuple[Any, dict[str, Any]]:
    """One variant against its own simulator process. ``hook(engine)``, when given, runs once the engine
    is built and stamped, before it starts (bench_wire.py attributes requests to frames there)."""
    from kmm.record import Recorder
    priv, pub = key_pair()
    key_id = f"bench-run-{seed}-{''.join(c for c in v['label'] if c.isalnum())[:16]}"
    pin = v.get("pin", True)
    sim = sim_cls(tmp, key_id, pub, seed=seed, pin=pin)
    place = contextlib.ExitStack()
    old_switch = sys.getswitchinterval()
    orig_pipe = live_mod.MarketPipeline
    from kmm.kalshi import rest as rest_mod
    orig_pool = rest_mod.SignaturePool
    if v.get("sign_mode"):
        rest_mod.SignaturePool = functools.partial(orig_pool, mode=v["sign_mode"])  # type: ignore[misc]
    recorder = None
    try:
        sim.wait_ready()
        p = place.enter_context(pinned(pin))     # the loop's thread, before the recorder starts its threads
        conn = ConnectorConfig(env="sim", read_rate=1e6, write_rate=1e6,
                               signer_cpus=p[1] if p is not None else frozenset()).with_server(
            sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=priv)
        cfg = load_config(None, environ={}, cli={
            "run.markets": ",".join(MARKETS), "strategy.quote_size": "5", "strategy.max_position": "30",
            "risk.max_order_size": "30",
            # the busy flow matches > 1,000 contracts in 15 s and would trip the session order group's
            # breaker (and then the kill switch) part-way through the run, after which frames ask the
            # tripped gate instead of deciding: the group stays, with a limit the run does not reach
            "risk.order_group_limit": "100000", "risk.max_loss": "100000", **v.get("cli", {}), **_env_set()})
        conn = dataclasses.replace(conn, signer_nice=cfg.run.signer_nice,   # as kmm run sets it (app.py)
                                   **v.get("conn", {}))
        if v["recorder"]:
            recorder = Recorder.open(tmp / "out", log_level=cfg.run.log_level, console=False,
                                     capture=cfg.records.raw_capture, logging_enabled=cfg.records.ops_log,
                                     cpus=p[1] if p is not None and v.get("records_apart") else frozenset())
        live_mod.MarketPipeline = functools.partial(MarketPipeline, compiled=v["compiled"])  # type: ignore[misc]
        engine = Engine(cfg, conn, recorder=recorder, venue="kmm sim (subprocess)",
                        options=EngineOptions(view="off", order_group_limit=cfg.risk.order_group_limit,
                                              **v.get("opts", {})))
        assert all(p.compiled == v["compiled"] for p in engine.pipes.values()) or not engine.pipes
        stamps = WireStamps(engine)
        stamps.install()
        split = _split_decide(engine)
        if hook is not None:
            hook(engine)
        sys.setswitchinterval(v["switch"])
        try:
            summary, m = run_loop(drive(engine, stamps, QUOTE_S * v.get("quote_s_factor", 1.0)))
        finally:
            sys.setswitchinterval(old_switch)
            stamps.uninstall()
        m["compiled"] = [p.compiled for p in engine.pipes.values()]
        entry = getattr(engine, "entry", None)       # the compiled frame entry's deltas, by path
        m["entry"] = None if entry is None else {"decided": entry.decided, "nothing": entry.nothing,
                                                 "handed": entry.handed, "handed_by": entry.handed_by,
                                                 "synced": entry.synced,
                                                 "asked": getattr(entry, "asked", None),
                                                 "reads": getattr(entry, "reads", None),
                                                 "reads_by_deltas": getattr(entry, "reads_by_deltas", None),
                                                 "coalesced": getattr(entry, "coalesced", None),
                                                 "deferred": getattr(entry, "deferred", None),
                                                 "dropped": getattr(entry, "dropped", None),
                                                 "first amends written (declined)": (
                                                     getattr(entry, "first_written", None),
                                                     getattr(entry, "first_declined", None)),
                                                 "epochs (gate, freshness, limiter pauses)": (
                                                     engine.gate.epoch, engine.freshness.epoch,
                                                     getattr(engine.gate.backoff, "pauses", None))}
        ne = len(split["entry_queue"])
        m["entry_queue"], m["entry_code"] = split["entry_queue"][ne // 10:], split["entry_code"][ne // 10:]
        n = len(split["queue"])
        m["queue"], m["code"] = split["queue"][n // 10:], split["code"][n // 10:]   # past the warm-up
        nb, no = len(split["book"]), len(split["other"])
        m["book"], m["other"] = split["book"][nb // 10:], split["other"][no // 10:]
        from collections import Counter
        m["other_kind"] = dict(Counter(split["other_kind"][no // 10:]))
        if recorder is not None:
            recorder.close()
            m["tape_rows"] = sum(1 for _ in open(tmp / "out" / "tape.csv")) - 1
            recorder = None
        return summary, m
    finally:
        live_mod.MarketPipeline = orig_pipe  # type: ignore[misc]
        rest_mod.SignaturePool = orig_pool  # type: ignore[misc]
        if recorder is not None:
            recorder.close()
        place.close()
        sim.stop()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kmm_run_config_frame_to_decided(benchmark, variant, tmp_path):
    v = VARIANTS[variant]
    res: dict[str, Any] = {}

    def run() -> None:
        res["s"], res["m"] = run_variant(tmp_path, v)

    benchmark.pedantic(run, rounds=1, iterations=1)
    s, m = res["s"], res["m"]
    assert m["compiled"] == [v["compiled"]] * len(MARKETS)
    # decide_ns holds book-frame decisions only (~1 in 3 of the stamped decisions in busy flow;
    # fills and order updates are stamped apart since issue 15): at least 50 of them, and the two
    # together the 100 the bench asked of the mixed figure before
    assert m["decisions"] > 100 and len(m["decide"]) > 50, m
    assert len(m["decide"]) + len(m.get("update_decide", ())) > 100, m
    assert m["orders"] + m["amends"] > 20 and len(m["wire_create"]) > 5
    assert s.fills > 0 and s.verified_flat_orders and s.resting_after_stop == 0
    if v["recorder"]:
        assert m["tape_rows"] > 20, "the recorder was on: the tape must have rows"
    decide, create, issue = dist(m["decide"]), dist(m["wire_create"]), dist(m["issue"])
    queue, code = dist(m["queue"]), dist(m["code"])
    pool = m["pool"] or {}
    steady = m["pool_steady"] or {}
    # writes signed inline on the loop after the warm-up (reads are signed inline by design: not pooled,
    # off the order path; reported apart)
    fallbacks = steady.get("misses", 0) + steady.get("unpooled", 0) - steady.get("unpooled_reads", 0)
    stages = {G_DECIDE: {k: decide[k] for k in ("p50_ns", "p99_ns", "p999_ns", "n")},
              G_WIRE: {k: create[k] for k in ("p50_ns", "p99_ns", "p999_ns", "n")},
              G_ISSUE: {k: issue[k] for k in ("p50_ns", "p99_ns", "p999_ns", "n")},
              G_QUEUE: {k: queue[k] for k in ("p50_ns", "p99_ns", "p999_ns", "n")},
              G_CODE: {k: code[k] for k in ("p50_ns", "p99_ns", "p999_ns", "n")}}
    if v["role"] == "kmm":
        stages[G_DECIDE].update(budget_ns=10_000, budget_on="p50", budget_met=decide["p50_ns"] <= 10_000)
        stages[G_WIRE].update(budget_ns=25_000, budget_on="p50", budget_met=create["p50_ns"] <= 25_000)
    for st in stages.values():
        st["label"] = v["label"] if v["role"] == "kmm" else None
    benchmark.group = G_DECIDE
    benchmark.extra_info.update(role=v["role"], ops=1, label=v["label"], stages=stages,
                                decisions=m["decisions"], orders=m["orders"], amends=m["amends"],
                                fills=m["fills"], signature_pool=pool, signature_pool_steady=steady,
                                sign_fallbacks=fallbacks, budget_waits=m.get("budget_waits"),
                                seconds=round(m["seconds"], 2))
    rps = (m["orders"] + m["amends"]) / m["seconds"] if m["seconds"] else 0.0
    _RESULTS[variant] = {"decide": decide, "create": create, "fallbacks": fallbacks, "code": code, "rps": rps}
    benchmark.extra_info.update(requests_per_s=round(rps, 1), entry=m.get("entry"))
    us = lambda ns: f"{ns / 1e3:.1f} us"  # noqa: E731
    print(f"\n  decisions not made by a book frame, by caller: {m['other_kind']}")
    print(f"\n[{v['label']}] {m['seconds']:.1f} s: {m['decisions']} decisions, {m['orders']} creates, "
          f"{m['amends']} amends, {m['fills']} fills; signature pool over the run {pool}; in steady state {steady} "
          f"(writes signed inline: {fallbacks}; decisions that waited for the write budget: {m.get('budget_waits')}); "
          f"creates + amends per s: {rps:.1f}")
    book, other = dist(m["book"]), (dist(m["other"]) if m["other"] else None)
    eq = dist(m["entry_queue"]) if m.get("entry_queue") else None
    ec = dist(m["entry_code"]) if m.get("entry_code") else None
    if m.get("entry") is not None:
        print(f"  compiled frame entry, deltas: {m['entry']}")
    for name, d in (("frame -> decided", decide), ("  book frame, inline", book),
                    ("  other triggers", other), ("  wait before on_book", queue), ("  on_book -> decided", code),
                    ("  entry: wait", eq), ("  entry: code path", ec),
                    ("decided -> issued", issue), ("decided -> create written", create)):
        if d is None:
            continue
        print(f"  {name:26s} n={d['n']:6d} p50 {us(d['p50_ns']):>9s}  p99 {us(d['p99_ns']):>9s}  "
              f"p99.9 {us(d['p999_ns']):>9s}")
    if "kmm" in _RESULTS and "kmm-per-frame" in _RESULTS and variant == "kmm-per-frame":
        k, b = _RESULTS["kmm"], _RESULTS["kmm-per-frame"]
        print(f"  per delta / once per run of deltas, frame -> decided: p50 {b['decide']['p50_ns'] / k['decide']['p50_ns']:.2f}x, "
              f"p99 {b['decide']['p99_ns'] / k['decide']['p99_ns']:.2f}x; requests/s {b['rps']:.0f} vs {k['rps']:.0f}")
    if "kmm" in _RESULTS and "python" in _RESULTS and variant == "python":
        k, b = _RESULTS["kmm"]["decide"], _RESULTS["python"]["decide"]
        print(f"  Python path / compiled, frame -> decided: p50 {b['p50_ns'] / k['p50_ns']:.2f}x, "
              f"p99 {b['p99_ns'] / k['p99_ns']:.2f}x")
        k, b = _RESULTS["kmm"]["code"], _RESULTS["python"]["code"]
        print(f"  Python path / compiled, on_book -> decided: p50 {b['p50_ns'] / k['p50_ns']:.2f}x, "
              f"p99 {b['p99_ns'] / k['p99_ns']:.2f}x")
