"""The replay-speed changes of Nov 28 (session 9) change no replay: a ``kmm run`` capture replayed with
each changed step put back as it was (the limiter's dispatch composed of the former serve, head, poll
and expire; the write queue's former submit, grant and dispatch; the fill simulator's fills built by the
dataclass's own ``__init__``; housekeeping moving every market's kept live orders on) makes the same
fills (every field), fees, P&L to the cent, orders, decisions and decision latencies as the replay
with them, on the compiled loop, the Python fast loop and the reference path.

Session 10 (Nov 28) adds to the former steps: the simulator's and the replay's acks built by the frozen
dataclass's own ``__init__`` (``_new_ack``), the timed events on ``Backtest._at`` and ``_run_events`` in
Python instead of the compiled ``EventHeap``, a trade that reaches our orders through ``Backtest._trade``
instead of the compiled loop's copy of its steps, a request's way (send, depart, dispatch, leave,
arrive, answer) in ``Backtest``'s methods instead of the compiled ``RequestFlow``, the recorded run's own
deltas through the simulator's ``apply_recorded_delta`` instead of the compiled loop's copy; and holds its other
steps here: the content hash kept per file status, the collector's freeze around the compiled loop, the
decoded capture's integer columns packed into C arrays (the compiled loop's replay against the Python
fast loop's and the reference path's, which read the lists, in the old-steps test). The compiled
pick-off step's skipped writes are held to the simulator's own step by tests/core/test_pickoff_hazard.py."""

from __future__ import annotations

import enum
import gc
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.config import load_config
from kmm.engine.orders import IN_FLIGHT, TERMINAL, OrderState
from kmm.engine.risk import KillState
from kmm.kalshi import limiter as _lim
from kmm.kalshi.limiter import RateLimiter
from kmm.kalshi.types import Fill, OrderAck
from kmm.research import backtest as _bt
from kmm.research import fills as _fills
from kmm.research import replaycache
from kmm.research import writequeue as _wq
from kmm._core.replay import EventHeap, ReplayClock
from kmm.research.backtest import Backtest
from tests.reference import limiter as ref_limiter
from tests.reference import ratelimiter as ref_rl
from tests.reference import writequeue as ref_wq
from tests.research.test_replay_fast import live_run  # noqa: F401  (the 10 s busy kmm run fixture)

CFG = load_config(None, environ={}, cli={})
TIMING = {"elapsed_s", "speedup_vs_real_time", "replay_path"}


class _OldGrant:
    """writequeue._Grant as it was: ``done`` a Python method."""

    __slots__ = ("on_grant", "on_drop", "state")

    def __init__(self, on_grant, on_drop) -> None:
        self.on_grant = on_grant
        self.on_drop = on_drop
        self.state = 0

    def done(self) -> bool:
        return self.state != 0

    def set_result(self, _: Any) -> None:
        self.state = 1
        self.on_grant()

    def set_exception(self, exc: BaseException) -> None:
        self.state = 2
        self.on_drop(exc)


def _old_submit(self, lane, cost, key, on_grant, on_drop) -> bool:
    """ReplayWriteQueue.submit as it was: the limiter's own private steps."""
    lim = self.lim
    if not lim._blocked_by_queue(lane) and lim.poll(lane, cost) == 0:
        lim._count(key, 0, False)
        return True
    self.queued += 1

    def drop(exc: BaseException) -> None:
        self.dropped += 1
        on_drop(exc)
    lim._queue(lane, None).append(ref_rl._Waiter(cost, ref_wq._Grant(on_grant, drop), key, lim._clock()))
    return False


def _old_steps(monkeypatch) -> None:
    # the limiter and the replay's write queue in plain Python (tests/reference/ratelimiter.py and
    # writequeue.py: as they were before kmm._core.writeq), with their former steps put back
    monkeypatch.setattr(_bt, "RateLimiter", ref_rl.RateLimiter)
    monkeypatch.setattr(_bt, "ReplayWriteQueue", ref_wq.ReplayWriteQueue)
    monkeypatch.setattr(ref_rl.RateLimiter, "dispatch", ref_limiter.dispatch)
    monkeypatch.setattr(ref_rl.RateLimiter, "poll", ref_limiter.poll)
    monkeypatch.setattr(ref_rl.FairQueue, "head", ref_limiter.head)
    monkeypatch.setattr(ref_wq, "_Grant", _OldGrant)
    monkeypatch.setattr(ref_wq.ReplayWriteQueue, "submit", _old_submit)
    monkeypatch.setattr(ref_wq.ReplayWriteQueue, "dispatch", lambda self: self.lim.dispatch())    # as it was
    monkeypatch.setattr(_fills, "_new_fill", lambda *a: Fill(*a))
    old_ack = lambda oid, coid, filled, remaining, ts: OrderAck(oid, coid, filled, remaining, ts_ms=ts)  # noqa: E731
    monkeypatch.setattr(_fills, "_new_ack", old_ack)
    monkeypatch.setattr(_bt, "_new_ack", old_ack)
    monkeypatch.setattr(Backtest, "compiled_events", False)     # Backtest._at and _run_events in Python
    monkeypatch.setattr(Backtest, "compiled_trades", False)     # a trade reaching our orders: Backtest._trade
    monkeypatch.setattr(Backtest, "compiled_requests", False)   # a request's way: Backtest's own methods
    monkeypatch.setattr(Backtest, "compiled_own", False)        # own deltas: the simulator's apply_recorded_delta
    monkeypatch.setattr(Backtest, "compiled_decisions", False)  # decisions and fills: Backtest's own methods
    monkeypatch.setattr(Backtest, "compiled_fills", False)      # the fill simulator's plain-Python methods
    new_house = Backtest._housekeeping

    def housekeeping(self, now: int) -> None:       # every market's kept live orders moved on, as before
        self._gen += 1
        for t in self._mgen:
            self._mgen[t] = self._gen
        new_house(self, now)
    monkeypatch.setattr(Backtest, "_housekeeping", housekeeping)


def _replay(cap, *, seed: int, **kw) -> tuple[Backtest, dict]:
    b = Backtest([cap], CFG, None, seed=seed, **kw)
    assert b.sim.compiled == Backtest.compiled_fills
    b.sim.keep_outcomes = True
    b.check_live_cache = True       # every book message: the kept live orders against a fresh list
    return b, b.run()


def _same(a: tuple[Backtest, dict], b: tuple[Backtest, dict]) -> None:
    (ba, sa), (bb, sb) = a, b
    assert ba.fills == bb.fills                             # every fill, every field (price, size, fee)
    assert {k: v for k, v in sa.items() if k not in ("details", "messages_per_s")} == \
        {k: v for k, v in sb.items() if k not in ("details", "messages_per_s")}
    assert {k: v for k, v in sa["details"].items() if k not in TIMING} == \
        {k: v for k, v in sb["details"].items() if k not in TIMING}
    assert ba.sim.trade_outcomes == bb.sim.trade_outcomes
    assert ba.decision_latency_ns == bb.decision_latency_ns
    assert [(o.client_order_id, o.order_id, o.state, o.price, o.fill_count) for o in ba.om.orders()] == \
        [(o.client_order_id, o.order_id, o.state, o.price, o.fill_count) for o in bb.om.orders()]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 3])
def test_a_kmm_run_capture_replays_the_same_with_the_former_steps(live_run, monkeypatch, seed):  # noqa: F811
    new = {path: _replay(live_run, seed=seed, **kw) for path, kw in
           (("compiled", {}), ("python", {"compiled_loop": False}), ("reference", {"fast": False}))}
    with monkeypatch.context() as m:
        _old_steps(m)
        old = {path: _replay(live_run, seed=seed, **kw) for path, kw in
               (("compiled", {}), ("python", {"compiled_loop": False}), ("reference", {"fast": False}))}
    for path in new:
        _same(new[path], old[path])
    _same(new["compiled"], new["reference"])
    s = new["compiled"][1]
    d = s["details"]
    # a replay that exercises what changed: fills (the simulator's), requests that waited for write
    # tokens (the limiter's queue and dispatch), housekeeping ticks
    assert s["fills"] > 20 and s["orders_sent"] > 10 and d["rate_waits"] > 10
    assert s["fees"] == old["compiled"][1]["fees"] and s["net_pnl"] == old["compiled"][1]["net_pnl"]


_text = st.text(max_size=8)
_int = st.integers(-(1 << 62), 1 << 62)


@settings(max_examples=200, deadline=None)
@given(st.tuples(_text, _text, st.none() | _text, _text, st.sampled_from(["bid", "ask"]), _int, _int, _int,
                 st.booleans(), st.none() | _int, _int, _int, st.none() | st.integers(0, 9)))
def test_the_simulators_fill_constructor_makes_the_dataclasss_fill(args):
    got, want = _fills._new_fill(*args), Fill(*args)
    assert type(got) is Fill and got == want and hash(got) == hash(want) and repr(got) == repr(want)
    with pytest.raises(AttributeError):     # still frozen
        got.price = 1                       # type: ignore[misc]


def test_order_and_kill_states_hash_by_identity_and_still_compare_and_look_up_as_members():
    for cls in (OrderState, KillState):
        for m in cls:
            assert hash(m) == object.__hash__(m) and cls(m.value) is m and {m: 1}[cls[m.name]] == 1
            assert m == cls(m.value) and m != m.value
        assert issubclass(cls, enum.Enum)
    assert OrderState.FILLED in TERMINAL and OrderState.RESTING not in TERMINAL
    assert OrderState.PENDING_AMEND in IN_FLIGHT


def _queues(r: RateLimiter) -> tuple:
    qs = [r._read_waiters, *r._w0.waiters]
    return (tuple((q._n, tuple(q._round), tuple((k, len(d)) for k, d in q._by_key.items()), len(q._fifo))
                  for q in qs), r.promotions, r.expired, tuple(r._granted),
            tuple(sorted((str(k), tuple(v)) for k, v in r._fair.items())),
            r.write.tokens, r.write._last_ns)         # tokens unrounded: the same float steps


_wq_op = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from([_lim.CANCEL, _lim.AMEND, _lim.PLACE]), st.sampled_from("ABC")),
    st.tuples(st.just("submit"), st.sampled_from([_lim.CANCEL, _lim.AMEND, _lim.PLACE]), st.sampled_from("ABC")),
    st.tuples(st.just("odd"), st.sampled_from([_lim.AMEND, _lim.PLACE]), st.sampled_from("ABC")),
    st.tuples(st.just("tick"), st.integers(0, 900_000_000)),
    st.tuples(st.just("dispatch"),),
    st.tuples(st.just("dispatch"),),
)


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(_wq_op, min_size=5, max_size=90), tokens=st.sampled_from([0.0, 12.0, 200.0]),
       max_queue_s=st.sampled_from([0.0, 1.5, 4.0]))
def test_the_replay_queues_dispatch_is_the_limiters(ops, tokens, max_queue_s):
    """ReplayWriteQueue.dispatch (the bucket asked before the head is looked for) against the limiter's own
    dispatch on a twin queue fed the same requests: the same grants and drops in the same order, the same
    waits, and every queue, count and token the same after every step; a lane that queues a second cost
    (``odd``) makes it the limiter's own dispatch."""
    clocks = ([1_000_000_000], [1_000_000_000])
    lims = tuple(RateLimiter.for_tier("basic", clock_ns=lambda c=c: c[0], promote_after_s=1.0,
                                      max_queue_s=max_queue_s) for c in clocks)
    qs = tuple(_wq.ReplayWriteQueue(r) for r in lims)
    for r in lims:
        r.write.tokens = tokens
    logs: tuple[list, list] = ([], [])
    cost = {_lim.CANCEL: 2, _lim.AMEND: 10, _lim.PLACE: 10}
    n = 0
    for o in ops:
        if o[0] in ("submit", "odd"):
            c = cost[o[1]] if o[0] == "submit" else 7
            got = [q.submit(o[1], c, o[2], lambda i=n, lg=lg: lg.append(("grant", i)),
                            lambda exc, i=n, lg=lg: lg.append(("drop", i, type(exc).__name__)))
                   for q, lg in zip(qs, logs)]
            assert got[0] == got[1]
            n += 1
        elif o[0] == "tick":
            for c in clocks:
                c[0] += o[1]
        else:
            assert qs[0].dispatch() == lims[1].dispatch(), o
        assert logs[0] == logs[1], o
        assert _queues(lims[0]) == _queues(lims[1]), o


@settings(max_examples=200, deadline=None)
@given(st.tuples(_text, st.none() | _text, _int, _int, _int))
def test_the_simulators_ack_constructor_makes_the_dataclasss_ack(args):
    oid, coid, filled, remaining, ts = args
    got, want = _fills._new_ack(*args), OrderAck(oid, coid, filled, remaining, ts_ms=ts)
    assert type(got) is OrderAck and got == want and hash(got) == hash(want) and repr(got) == repr(want)
    assert got.average_fill_price is None and got.mismatch is False and got.post_only_cross is False
    with pytest.raises(AttributeError):     # still frozen
        got.fill_count = 1                  # type: ignore[misc]


def test_the_compiled_loop_freezes_the_collector_only_for_the_loop_and_leaves_a_freeze_of_others(live_run):  # noqa: F811
    """gc.freeze around the compiled loop: undone after it (the frozen count back to 0, the collector
    still on), and a process that froze objects itself (the live maker's gc_freeze) keeps its freeze."""
    seen: list[int] = []
    orig = Backtest._housekeeping

    def house(self, now: int) -> None:      # inside the loop: what the collector holds frozen
        seen.append(gc.get_freeze_count())
        orig(self, now)
    gc.unfreeze()           # a test before may have left a freeze (the live maker's gc_freeze)
    try:
        Backtest._housekeeping = house      # type: ignore[method-assign]
        a = _replay(live_run, seed=1)
        assert seen and min(seen) > 1000 and gc.get_freeze_count() == 0 and gc.isenabled()
        seen.clear()
        gc.freeze()
        kept = gc.get_freeze_count()
        b = _replay(live_run, seed=1)
        assert seen and set(seen) == {kept} and gc.get_freeze_count() == kept
    finally:
        Backtest._housekeeping = orig       # type: ignore[method-assign]
        gc.unfreeze()
    _same(a, b)


def test_the_content_hash_is_kept_per_file_status_and_a_fresh_or_changed_file_is_hashed_again(tmp_path, monkeypatch):
    f = tmp_path / "capture.bin.gz"
    f.write_bytes(b"a" * 5000)
    replaycache.forget()
    h1 = replaycache.content_hash(f)
    # written just now: not kept (a same-size write within the file system's clock tick would leave
    # the same status), so the same-size rewrite is hashed again
    f.write_bytes(b"b" * 5000)
    h2 = replaycache.content_hash(f)
    assert h1 != h2 and not replaycache._HASHES
    # a settled file (changed longer ago than HASH_SETTLED_NS; here the window is moved, as the file's
    # ctime cannot be set back): kept, and the next call does not read it
    monkeypatch.setattr(replaycache, "HASH_SETTLED_NS", -time.time_ns())
    assert replaycache.content_hash(f) == h2 and len(replaycache._HASHES) == 1

    def no_read(*a, **k):
        raise AssertionError("the kept hash was not used")
    monkeypatch.setattr(replaycache, "open", no_read, raising=False)
    assert replaycache.content_hash(f) == h2
    monkeypatch.undo()
    # any change of the file moves its ctime (and here its size): hashed again
    f.write_bytes(b"c" * 5001)
    assert replaycache.content_hash(f) not in (h1, h2)
    replaycache.forget()
    assert not replaycache._HASHES


class _PyEvents:
    """The driver's own ``_at`` / ``_run_events`` (the compiled heap's plain-Python reference)."""

    _at = Backtest._at
    _run_events = Backtest._run_events

    def __init__(self, clock) -> None:
        self.clock = clock
        self.events: list = []
        self._seq = 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 40)), min_size=1, max_size=40),
       st.lists(st.integers(0, 60), min_size=1, max_size=6))
def test_the_compiled_event_heap_runs_the_events_as_the_drivers_methods(plan, untils):
    """The same events (ties included, events that make events, the clock moved to each, never back)
    run in the same order at the same clock readings."""
    runs = []
    for compiled in (True, False):
        clock = ReplayClock()
        clock.mono = 5
        log: list = []
        if compiled:
            heap = EventHeap(clock, [])
            at, run, events = heap.at, heap.run, heap.events
        else:
            py = _PyEvents(clock)
            at, run, events = py._at, py._run_events, py.events

        def ev(i: int, more: int, dt: int, at=at, log=log, clock=clock) -> None:
            log.append((i, clock.mono))
            for k in range(more):       # an event that makes events (an arrival makes its answer)
                at(clock.mono + dt + k, ev, i * 10 + k, 0, 0)
        for i, (t, more, dt) in enumerate(plan):
            at(t, ev, i, more, dt)
        for u in untils:
            run(u)
            log.append(("until", u, clock.mono, len(events)))
        runs.append((log, sorted(e[:2] for e in events)))
    assert runs[0] == runs[1]


def test_the_packed_columns_are_the_decoded_columns_and_are_made_once_per_capture(live_run):  # noqa: F811
    """Replay.packed (what the compiled loop reads as C integers): the same values as the columns, made
    once and shared by every copy the process hands out of the same decoded capture."""
    from kmm.research.backtest import _fast_trade
    f = live_run / "capture.bin.gz"
    rep = replaycache.load(f, _fast_trade)
    recv, wall, kind, lv = rep.packed()
    assert list(recv) == rep.recv and list(wall) == rep.wall and list(kind) == rep.kind and list(lv) == rep.lv
    assert len(recv) == len(rep) > 1000 and min(kind) >= 0 and min(lv) >= -1
    read = replaycache.load(f, _fast_trade)     # from the cache file (or the kept copy), then kept
    kept = replaycache.load(f, _fast_trade)     # the kept copy: the same columns, the same arrays
    assert kept.recv is read.recv and kept is not read and kept.packed()[0] is read.packed()[0]
