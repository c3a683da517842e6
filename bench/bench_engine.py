"""The market maker's hot path end to end: WebSocket frame received -> actions decided -> request bytes
written to the socket, while quoting three markets against the simulator's busy flow.

The simulator runs in a separate process (``kmm sim`` on 127.0.0.1, port 0, a key pair made at test
time), so its matching and fan-out never share the engine's event loop; the engine runs in this process
on uvloop. Each variant quotes for ``QUOTE_S`` seconds after it is quoting on every market.

Stages (design section 9):

* ``frame -> actions decided``: ``Engine.decide_ns`` (picows stamps the frame; the engine stamps the
  decision). Budget: p99 <= 10 us.
* ``actions decided -> request bytes written``: stamped by this harness right after the order
  connection's ``transport.write`` returns (a wrapper around ``kmm.kalshi.fasthttp._Conn.start``),
  matched to its decision by the order's client_order_id / order_id. Only the first request of a
  decision counts, as in the engine's own ``send_ns``. Budget: p50 <= 50 us.
* ``frame -> request bytes written``: the two together.
* ``actions decided -> request issued``: ``Engine.send_ns``, for reference: it is stamped when the
  request coroutine starts, before signing, encoding and the write.

Baseline, measured in the same run: the same engine with the signature pool disabled
(``sig_pool_depth=0``: RSA-PSS signing inline on the request path). The ratio is baseline p50 / kmm p50.

Budget misses are printed and marked in ``extra_info`` (``budget_met``), and ``bench/report.py`` marks
them in its table; with ``KMM_BENCH_STRICT=1`` a miss fails the test. What always has to hold: each run
decided, sent orders and got fills (it never times a no-op), the engine stopped flat and verified it,
and the pre-signed path beats inline signing on decided -> bytes written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kmm.config import load_config
from kmm.engine.live import Engine, EngineOptions, RunSummary
from kmm.kalshi import ConnectorConfig
from kmm.kalshi import fasthttp
from kmm.kalshi.loop import run as run_loop

MARKETS = ("KXSIMA-26-A", "KXSIMB-26-B", "KXSIMM-26-M")
QUOTE_S = float(os.environ.get("KMM_BENCH_ENGINE_S", "12"))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
BUDGET_DECIDE_P99_NS = 10_000
BUDGET_WIRE_P50_NS = 50_000
STRICT = os.environ.get("KMM_BENCH_STRICT") == "1"

G_DECIDE = "engine: frame -> actions decided (3 markets, busy)"
G_WIRE = "engine: actions decided -> create bytes written"
G_WIRE_ALL = "engine: actions decided -> first request bytes written (any kind)"
G_TOTAL = "engine: frame -> request bytes written"
G_PRE = "engine: actions decided -> create write() called"
G_WRITE = "engine: create transport.write() call (kernel, loopback to the sim process)"
G_ISSUE = "engine: actions decided -> request issued (coroutine start)"


# ---------------------------------------------------------------------------------------- helpers

def pct(values: list[int] | deque[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def dist(values: list[int] | deque[int]) -> dict[str, int]:
    v = list(values)
    return {"n": len(v), "p50_ns": pct(v, 0.5), "p99_ns": pct(v, 0.99), "p999_ns": pct(v, 0.999),
            "max_ns": max(v)}


def proc_cpu_s(pid: int | str = "self") -> tuple[float, float]:
    """(user + system CPU seconds, seconds alive) of a process, from /proc; (0, 0) where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz, up - int(fields[19]) / hz


# ---------------------------------------------------------------------------------------- CPU placement
# Every bench that runs the simulator in its own process places the processes as kmm run's [run] cpus
# and signer_cpus would (docs/benchmarks.md, "CPU placement"): the engine's loop (and the threads it
# starts) on the first CPU, the simulator and kmm's signer process on the second. Unpinned, the
# scheduler often woke the simulator on the core kmm had just written from, where it waited for kmm's
# loop to yield: bench_wire.py measured kmm's requests read by the exchange ~1 ms after they were
# written, against ~35 us pinned. The simulator stands in for an exchange on another machine; it should
# not share kmm's core. KMM_BENCH_PIN=0 runs everything unpinned; variants named "unpinned" do too.

def placement(on: bool = True) -> tuple[frozenset[int], frozenset[int]] | None:
    """(the engine's CPUs, the simulator's and the signer's CPUs), or None: unpinned."""
    if not on or os.environ.get("KMM_BENCH_PIN", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return frozenset(cpus[:1]), frozenset(cpus[1:2])


@contextlib.contextmanager
def pinned(on: bool = True) -> Iterator[tuple[frozenset[int], frozenset[int]] | None]:
    """For the block, the calling thread (the engine's loop, and the threads and processes it starts)
    on the engine's CPU, as ``[run] cpus`` pins ``kmm run``'s."""
    p = placement(on)
    if p is None:
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, p[0])
    try:
        yield p
    finally:
        os.sched_setaffinity(0, before)


def key_pair() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


class SimProcess:
    """``kmm sim`` in its own process on 127.0.0.1; ``stop()`` ends it (SIGTERM, then SIGKILL). With
    ``pin`` it runs on the second CPU of :func:`placement`."""

    def __init__(self, workdir: Path, key_id: str, pub_pem: bytes, *, seed: int = 3, pin: bool = True) -> None:
        self.workdir = workdir
        pub = workdir / "sim_pub.pem"
        pub.write_bytes(pub_pem)
        self.ready = workdir / "sim_ready.json"
        self.log = open(workdir / "sim.log", "wb")
        cmd = [sys.executable, "-m", "kmm", "sim", "--host", "127.0.0.1", "--port", "0",
               "--ready-file", str(self.ready), "--flow", "busy", "--rate-tier", "off", "--seed", str(seed),
               "--markets", ",".join(MARKETS), "--api-key-id", key_id, "--public-key", str(pub),
               "--state-dir", str(workdir / "sim-state")]
        p = placement(pin)
        pre = (lambda: os.sched_setaffinity(0, p[1])) if p is not None else None
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=pre)
        self.rest_url = self.ws_url = ""

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"kmm sim exited with {self.proc.returncode}: "
                                     f"{(self.workdir / 'sim.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"kmm sim did not write {self.ready} within {timeout_s} s")
            time.sleep(0.05)
        urls = json.loads(self.ready.read_text())
        self.rest_url, self.ws_url = urls["rest_url"], urls["ws_url"]
        assert "127.0.0.1" in self.rest_url and "127.0.0.1" in self.ws_url

    def cpu_s(self) -> tuple[float, float]:
        """(CPU seconds the simulator used, seconds it has been alive), from /proc (0, 0 elsewhere)."""
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.cpu_at_stop = self.cpu_s()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


class WireStamps:
    """Stamps the first request of each decision when its bytes have been written to the socket.

    The engine's request methods are wrapped (synchronously: the wrapper only notes the decision and
    returns the engine's own coroutine, so nothing is added to the awaited path); the order
    connection's ``send`` is wrapped to stamp the write and match it to the noted decision by the
    client_order_id / order_id that appears in the request bytes.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: dict[bytes, tuple[int, int, str]] = {}  # request key -> (decided_ns, trigger_ns, kind)
        self.wire_ns: list[int] = []                          # decided -> bytes written
        self.wire_by_kind: dict[str, list[int]] = {"place": [], "amend": [], "cancel": [], "decrease": []}
        self.pre_create_ns: list[int] = []                    # decided -> create's write() entered
        self.write_create_ns: list[int] = []                  # the create's write() itself
        self.total_ns: list[int] = []                         # frame -> bytes written
        self.unmatched = 0
        self._orig_send = fasthttp._Conn.start
        self._wrap("_send_place", lambda a: a[2].client_order_id)
        self._wrap("_send_amend", lambda a: a[1].order_id)
        self._wrap("_send_cancel", lambda a: a[1])
        self._wrap("_send_decrease", lambda a: a[1])
        self._wrap_quote_now()
        self._last_write: tuple[bytes, int, int] | None = None     # the last write no pending key matched
        self._wrap_first()

    def _wrap_first(self) -> None:
        """A decision's first create or amend the compiled frame entry wrote itself
        (``FrameEntry.first_request``) enters no Python before its write: it is matched after it, when
        the entry hands it to ``Engine._act_first`` / ``_act_placed`` with its decided stamp, against the
        last write no pending key matched (the connection's ``start`` ran just before)."""
        engine = self.engine
        for name, kind in (("_act_first", "amend"), ("_act_placed", "place")):
            orig = getattr(engine, name, None)
            if orig is None:
                continue

            def w(pipe: Any, actions: Any, live: Any, trigger_ns: int, stamps: Any, marks: bool, decided_ns: int,
                  written_ns: int, *more: Any, _orig: Any = orig, _kind: str = kind) -> Any:
                last, self._last_write = self._last_write, None
                key = str(more[1] if _kind == "place" else more[0].order_id).encode()
                if last is not None and key in last[0] and pipe.tape_trigger_ns != trigger_ns:
                    self._matched(last[0], last[1], last[2], decided_ns, trigger_ns, _kind)
                return _orig(pipe, actions, live, trigger_ns, stamps, marks, decided_ns, written_ns, *more)
            setattr(engine, name, w)

    def _matched(self, data: bytes, t_in: int, t: int, decided: int, trigger: int, kind: str) -> None:
        self.wire_ns.append(t - decided)
        self.wire_by_kind[kind].append(t - decided)
        if kind == "place":
            self.pre_create_ns.append(t_in - decided)
            self.write_create_ns.append(t - t_in)
        self.total_ns.append(t - trigger)

    def _wrap_quote_now(self) -> None:
        """A quote create or amend the engine writes in one call (``rest.place_quote_now`` /
        ``amend_quote_now``: the maker's own path, which never enters ``_send_place`` / ``_send_amend``)
        is noted as the call is entered, for the decision its market's pipeline last stamped (as the
        ``_send_*`` wrappers note the full paths), and forgotten when the call wrote nothing (the full
        path then notes it). Wrapped on the class (the connector is made when the engine starts) and
        restored by :meth:`uninstall`."""
        from kmm.kalshi import rest as rest_mod
        cls = rest_mod.KalshiRest
        engine, pending = self.engine, self.pending
        self._rest_orig = {n: cls.__dict__[n] for n in ("place_quote_now", "amend_quote_now") if n in cls.__dict__}

        def noted(orig: Any, kind: str, create: bool) -> Any:
            def w(rest: Any, *a: Any, **k: Any) -> Any:
                key = None
                pipe = engine.pipes.get(a[0] if create else a[1])       # the ticker
                if pipe is not None and engine._batch is None:
                    trigger = pipe.trigger_ns
                    if trigger and pipe.tape_trigger_ns != trigger and pipe.decided_ns:
                        if len(pending) > 10_000:
                            self.unmatched += len(pending)
                            pending.clear()
                        key = str(a[4] if create else a[0]).encode()   # the client_order_id, the order id
                        pending[key] = (pipe.decided_ns, trigger, kind)
                out = orig(rest, *a, **k)
                if not out and key is not None:
                    pending.pop(key, None)
                return out
            return w
        if "place_quote_now" in self._rest_orig:
            cls.place_quote_now = noted(self._rest_orig["place_quote_now"], "place", True)
        if "amend_quote_now" in self._rest_orig:
            cls.amend_quote_now = noted(self._rest_orig["amend_quote_now"], "amend", False)

    def _wrap(self, name: str, key_of: Any) -> None:
        orig = getattr(self.engine, name)
        pending = self.pending

        def wrapper(*args: Any) -> Any:
            pipe = args[0]
            trigger = args[-1] if len(args) >= 3 and isinstance(args[-1], int) else 0
            if (trigger and pipe.tape_trigger_ns != trigger
                    and pipe.trigger_ns == trigger and pipe.decided_ns):
                if len(pending) > 10_000:       # writes that never happened (refused before the write)
                    self.unmatched += len(pending)
                    pending.clear()
                pending[str(key_of(args)).encode()] = (pipe.decided_ns, trigger, name.rsplit("_", 1)[-1])
            return orig(*args)

        setattr(self.engine, name, wrapper)

    def install(self) -> None:
        orig, pending = self._orig_send, self.pending
        clock = time.monotonic_ns

        def send(conn: Any, data: bytes, timeout_s: float, done: Any) -> Any:
            t_in = clock()
            fut = orig(conn, data, timeout_s, done)
            t = conn.last_write_ns
            if pending:
                for k in pending:
                    if k in data:
                        decided, trigger, kind = pending.pop(k)
                        self._matched(data, t_in, t, decided, trigger, kind)
                        return fut
            self._last_write = (data, t_in, t)
            return fut

        fasthttp._Conn.start = send  # type: ignore[method-assign]

    def uninstall(self) -> None:
        fasthttp._Conn.start = self._orig_send  # type: ignore[method-assign]
        from kmm.kalshi import rest as rest_mod
        for n, f in self._rest_orig.items():
            setattr(rest_mod.KalshiRest, n, f)

    def reset(self) -> None:
        self.pending.clear()
        self.wire_ns.clear()
        self.total_ns.clear()
        for v in (*self.wire_by_kind.values(), self.pre_create_ns, self.write_create_ns):
            v.clear()


def swap_planner_class(engine: Engine, cls: type) -> None:
    """Give the engine's planner the subclass ``cls`` (a wrapper of its methods). The source's planner
    (slots) takes a new class in place; the compiled copy's is an extension type whose class cannot be
    swapped (KMM_INTERPRETED=0), so the engine gets a new planner of ``cls`` with the same parts."""
    planner = engine.planner
    try:
        planner.__class__ = cls
    except TypeError:
        engine.planner = cls(planner.gate, planner.om, planner.pf, planner.event_risk)


# ---------------------------------------------------------------------------------------- the run

def make_engine(sim: SimProcess, key_id: str, priv_pem: bytes, **conn_kw: Any) -> Engine:
    # the simulator runs with --rate-tier off: the client's own pacing is opened to match, so the
    # measured path is the code path, not a wait for write tokens (basic tier: 10 writes/s)
    conn = ConnectorConfig(env="sim", read_rate=1e6, write_rate=1e6, **conn_kw).with_server(
        sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=priv_pem)
    cfg = load_config(None, environ={}, cli={
        "run.markets": ",".join(MARKETS), "strategy.quote_size": "5", "strategy.max_position": "30",
        "risk.max_order_size": "30"})
    return Engine(cfg, conn, recorder=None, venue="kmm sim (subprocess)",
                  options=EngineOptions(view="off", order_group_limit=0))


async def drive(engine: Engine, stamps: WireStamps, quote_s: float) -> tuple[RunSummary, dict[str, Any]]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (engine.quoting and all(p.ready for p in engine.pipes.values()) and engine.orders_sent > 0):
        if task.done():
            task.result()
            raise AssertionError("engine.run returned before quoting")
        if time.monotonic() > deadline:
            stop.set()
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
            raise AssertionError(f"the engine was not quoting all markets within {START_TIMEOUT_S} s")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)                               # warm-up: connections open, code paths hot
    for d in (engine.decide_ns, engine.send_ns, engine._latency_ns, engine.budget_wait_ns,  # noqa: SLF001
              getattr(engine, "update_decide_ns", [])):
        d.clear()
    stamps.reset()
    pool0 = engine.rest.pool if engine.rest is not None else None
    st0 = dict(vars(pool0.stats)) if pool0 is not None and hasattr(pool0.stats, "__dict__") else (
        {k: getattr(pool0.stats, k) for k in ("hits", "misses", "unpooled", "unpooled_reads", "miss_kinds")}
        if pool0 is not None else {})
    st0 = {k: (dict(v) if isinstance(v, dict) else v) for k, v in st0.items()}
    counts0 = (engine.orders_sent, engine.amends_sent, engine.cancels_sent, engine.fills,
               sum(p.decisions for p in engine.pipes.values()))
    t0 = time.monotonic()
    await asyncio.sleep(quote_s)
    measured = {
        "decide": list(engine.decide_ns), "issue": list(engine.send_ns),
        "update_decide": list(getattr(engine, "update_decide_ns", ())),
        "wire": list(stamps.wire_ns), "wire_create": list(stamps.wire_by_kind["place"]),
        "wire_amend": list(stamps.wire_by_kind["amend"]), "pre_create": list(stamps.pre_create_ns),
        "write_create": list(stamps.write_create_ns), "total": list(stamps.total_ns),
        "seconds": time.monotonic() - t0,
        "orders": engine.orders_sent - counts0[0], "amends": engine.amends_sent - counts0[1],
        "cancels": engine.cancels_sent - counts0[2], "fills": engine.fills - counts0[3],
        "decisions": sum(p.decisions for p in engine.pipes.values()) - counts0[4],
        "frames": getattr(engine.router, "deltas", None),
    }
    pool = engine.rest.pool if engine.rest is not None else None
    st = pool.stats if pool is not None else None
    measured["pool"] = ({"hits": st.hits, "misses": st.misses, "expired": st.expired, "unpooled": st.unpooled,
                         "made": st.made, "miss_kinds": dict(getattr(st, "miss_kinds", {}))}
                        if st is not None else None)
    # the same counters over the measured (steady-state) window only, after the warm-up
    measured["pool_steady"] = ({k: st.__getattribute__(k) - st0.get(k, 0)
                                for k in ("hits", "misses", "unpooled", "unpooled_reads")}
                               if st is not None else None)
    measured["budget_waits"] = len(engine.budget_wait_ns)
    if st is not None:
        kinds = dict(getattr(st, "miss_kinds", {}))
        measured["pool_steady"]["miss_kinds"] = {k: n - st0.get("miss_kinds", {}).get(k, 0) for k, n in kinds.items()
                                                 if n - st0.get("miss_kinds", {}).get(k, 0)}
    stop.set()
    summary = await asyncio.wait_for(task, STOP_TIMEOUT_S)
    return summary, measured


def run_variant(tmp: Path, *, seed: int, profile: bool = False, **conn_kw: Any) -> tuple[RunSummary, dict[str, Any]]:
    priv, pub = key_pair()
    key_id = f"bench-{os.getpid()}-{seed}"
    sim = SimProcess(tmp, key_id, pub, seed=seed)
    try:
        sim.wait_ready()
        with pinned() as p:
            if p is not None:
                conn_kw = {**conn_kw, "signer_cpus": p[1]}
            return _run_engine(sim, key_id, priv, profile, conn_kw)
    finally:
        sim.stop()


def _run_engine(sim: SimProcess, key_id: str, priv: bytes, profile: bool,
                conn_kw: dict[str, Any]) -> tuple[RunSummary, dict[str, Any]]:
    engine = make_engine(sim, key_id, priv, **conn_kw)
    stamps = WireStamps(engine)
    stamps.install()
    try:
        if not profile:
            return run_loop(drive(engine, stamps, QUOTE_S))
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
        try:
            out = run_loop(drive(engine, stamps, QUOTE_S))
        finally:
            prof.disable()
        out[1]["profile"] = prof
        return out
    finally:
        stamps.uninstall()


# ---------------------------------------------------------------------------------------- benchmarks

_RESULTS: dict[str, dict[str, Any]] = {}

VARIANTS = {
    "kmm": dict(role="kmm", conn_kw={}, label="pre-signed pool + fasthttp"),
    "inline": dict(role="baseline", conn_kw={"sig_pool_depth": 0}, label="inline RSA signing + fasthttp"),
}


def _stage(d: dict[str, int], budget: int | None = None, on: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {k: d[k] for k in ("p50_ns", "p99_ns", "p999_ns", "n")}
    if budget is not None:
        out["budget_ns"], out["budget_on"] = budget, on
        out["budget_met"] = d[f"{on}_ns"] <= budget
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_frame_to_request_latency(benchmark, variant, tmp_path):
    v = VARIANTS[variant]
    result: dict[str, Any] = {}

    def run() -> None:
        result["summary"], result["m"] = run_variant(tmp_path, seed=3, **v["conn_kw"])

    benchmark.pedantic(run, rounds=1, iterations=1)
    s: RunSummary = result["summary"]
    m: dict[str, Any] = result["m"]

    # the run did real work, and stopped safely
    # decide_ns holds book-frame decisions only (~1 in 3 of the stamped decisions in 12 s of busy flow;
    # fills and order updates are stamped apart since issue 15): at least 50 of them, and the two
    # together the 100 the bench asked of the mixed figure before
    assert m["decisions"] > 100 and len(m["decide"]) > 50, m
    assert len(m["decide"]) + len(m.get("update_decide", ())) > 100, m
    assert m["orders"] + m["amends"] > 20 and len(m["wire_create"]) > 20, {k: m[k] for k in ("orders", "amends")}
    assert s.fills > 0, "no fills: the run never traded"
    assert s.verified_flat_orders and s.resting_after_stop == 0

    decide, wire, total, issue = dist(m["decide"]), dist(m["wire"]), dist(m["total"]), dist(m["issue"])
    create, amend = dist(m["wire_create"]), dist(m["wire_amend"]) if m["wire_amend"] else None
    pre, write = dist(m["pre_create"]), dist(m["write_create"])
    budgeted = v["role"] == "kmm"
    stages = {
        G_DECIDE: _stage(decide, BUDGET_DECIDE_P99_NS if budgeted else None, "p99"),
        G_WIRE: _stage(create, BUDGET_WIRE_P50_NS if budgeted else None, "p50"),
        G_PRE: _stage(pre),
        G_WRITE: _stage(write),
        G_WIRE_ALL: _stage(wire),
        G_TOTAL: _stage(total),
        G_ISSUE: _stage(issue),
    }
    benchmark.group = G_WIRE
    benchmark.extra_info.update(role=v["role"], ops=1, variant=v["label"], stages=stages, **stages[G_WIRE],
                                seconds=round(m["seconds"], 2), decisions=m["decisions"], orders=m["orders"],
                                amends=m["amends"], cancels=m["cancels"], fills=m["fills"], frames=m["frames"],
                                signature_pool=m["pool"], decisions_per_s=round(m["decisions"] / m["seconds"]))
    _RESULTS[variant] = stages

    us = lambda ns: f"{ns / 1e3:.1f} us"  # noqa: E731
    print(f"\nengine [{v['label']}] {m['seconds']:.1f} s: {m['decisions']} decisions, {m['orders']} creates, "
          f"{m['amends']} amends, {m['cancels']} cancels, {m['fills']} fills")
    print(f"  signature pool: {m['pool']}")
    for name, d in (("frame -> decided", decide), ("decided -> issued", issue), ("decided -> written", wire),
                    ("  of which creates", create), ("    create: to write()", pre),
                    ("    create: write()", write), ("  of which amends", amend), ("frame -> written", total)):
        if d is None:
            continue
        print(f"  {name:20s} n={d['n']:6d} p50 {us(d['p50_ns']):>9s}  p99 {us(d['p99_ns']):>9s}  "
              f"p99.9 {us(d['p999_ns']):>9s}  max {us(d['max_ns']):>9s}")
    misses = [f"{g}: {st['budget_on']} {us(st[st['budget_on'] + '_ns'])} > budget {us(st['budget_ns'])}"
              for g, st in stages.items() if st.get("budget_met") is False]
    for miss in misses:
        print(f"  BUDGET MISS {miss}")
    if STRICT:
        assert not misses, misses

    if "kmm" in _RESULTS and "inline" in _RESULTS:
        k, b = _RESULTS["kmm"][G_WIRE]["p50_ns"], _RESULTS["inline"][G_WIRE]["p50_ns"]
        print(f"  inline signing / pre-signed, decided -> written p50: {b / k:.1f}x")
        assert b > 2 * k, "the pre-made signature should take RSA signing off the request path"


if __name__ == "__main__":
    # Profile one variant's whole loop: python bench/bench_engine.py [N top functions] [kmm|inline]
    import pstats
    import tempfile
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    which = VARIANTS[sys.argv[2] if len(sys.argv) > 2 else "kmm"]
    with tempfile.TemporaryDirectory() as d:
        summary, m = run_variant(Path(d), seed=3, profile=True, **which["conn_kw"])
    print(f"{m['decisions']} decisions, {m['orders']} creates, {m['amends']} amends, {m['fills']} fills in "
          f"{m['seconds']:.1f} s; frame -> decided p50 {pct(m['decide'], 0.5)} ns, p99 {pct(m['decide'], 0.99)} ns "
          "(under cProfile: inflated)")
    st = pstats.Stats(m["profile"])
    st.sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_callees("on_book")
