"""The modules kmm compiles from their own Python source (``kmm._pure.MODULES``: the order manager, the
portfolio, the risk gate, the quote planner): the compiled copies against the same source run by the
interpreter (tests/reference/pure.py loads both in one process). Hypothesis streams drive both with the
same inputs and compare every answer and the state after each step; a ``kmm run`` capture replayed by a
process on the compiled copies (as ``kmm backtest`` runs) and by one on the source makes the same fills,
orders, P&L and latencies. And which copy each kind of process runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm import _pure
from kmm.engine.clock import ManualClock
from kmm.kalshi.types import Fill, OrderAck, UserOrder
from tests.reference import pure
from tests.research.test_replay_fast import live_run  # noqa: F401  (the 10 s busy kmm run fixture)

T, U = "KXPURE-1", "KXPURE-2"
c_orders, i_orders = pure.compiled("kmm.engine.orders"), pure.interpreted("kmm.engine.orders")
c_portfolio, i_portfolio = pure.compiled("kmm.engine.portfolio"), pure.interpreted("kmm.engine.portfolio")

_WHICH = ("import importlib, json, sys\nfrom kmm import _pure\n{pre}\n"
          "print(json.dumps([_pure.is_compiled(importlib.import_module(m)) for m in _pure.MODULES]))")


def _which(pre: str = "", env: dict[str, str] | None = None, tmp=None) -> list[bool]:
    """Which copy each module of MODULES is in a fresh process (True: compiled)."""
    e = {k: v for k, v in os.environ.items() if k != _pure.ENV}
    e.update(env or {}, PYTHONPATH=str(pure.SRC))
    out = subprocess.run([sys.executable, "-c", _WHICH.format(pre=pre)], env=e, cwd=tmp, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_module_has_its_compiled_copy_in_this_build():
    """A build that lost its compiled copies would pass every other test, with slower backtests: say so."""
    for name in _pure.MODULES:
        assert pure.compiled_path(name) is not None, f"{name} has no compiled copy: rebuild"
        assert _pure.is_compiled(pure.compiled(name))


# the classes each compiled copy makes an extension type (its ``.pxd`` beside the source: fields in C,
# methods called through C); the source's stay Python classes
EXTENSION_TYPES = {"kmm.engine.orders": ("OrderManager",), "kmm.engine.risk": ("RiskGate",),
                   "kmm.engine.quoting": ("QuotePlanner",)}
_HEAPTYPE = 1 << 9          # Py_TPFLAGS_HEAPTYPE: a class made by a class statement at run time


def test_the_compiled_copies_make_their_hot_classes_extension_types():
    """The typed declarations are picked up by the build (a lost ``.pxd`` would pass every other test with
    a slower replay), and the source copies are untouched by them."""
    for name, classes in EXTENSION_TYPES.items():
        assert _pure.source_path(pure.SRC, name).with_suffix(".pxd").exists()
        for cls in classes:
            c, i = getattr(pure.compiled(name), cls), getattr(pure.interpreted(name), cls)
            assert not c.__flags__ & _HEAPTYPE, f"{name}.{cls} is not an extension type in the compiled copy"
            assert i.__flags__ & _HEAPTYPE


def test_live_processes_run_the_source_and_replaying_ones_the_compiled_copies(tmp_path):
    n = len(_pure.MODULES)
    assert _which(tmp=tmp_path) == [False] * n                       # kmm run, execute, paper, the tests
    assert _which("assert _pure.use_compiled()", tmp=tmp_path) == [True] * n    # kmm backtest, kmm sweep
    # the environment overrides both
    assert _which("assert not _pure.use_compiled()", {_pure.ENV: "1"}, tmp_path) == [False] * n
    assert _which("", {_pure.ENV: "0"}, tmp_path) == [True] * n
    assert _which("_pure.use_compiled()", {_pure.ENV: "kmm.engine.risk"}, tmp_path) == \
        [m != "kmm.engine.risk" for m in _pure.MODULES]
    # too late once the engine is imported: it says so instead of mixing copies
    assert _which("import kmm.engine.orders\nassert not _pure.use_compiled()", tmp=tmp_path) == [False] * n


def test_the_backtest_command_chooses_the_compiled_copies_before_the_engine_is_imported(tmp_path):
    code = ("import sys, json, importlib\nfrom kmm import _pure\nfrom kmm.cli import main\n"
            "try:\n    main([sys.argv[1], '--help'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps([_pure.is_compiled(importlib.import_module(m)) for m in _pure.MODULES]))")
    env = {k: v for k, v in os.environ.items() if k != _pure.ENV}
    env["PYTHONPATH"] = str(pure.SRC)
    for command, want in (("backtest", True), ("sweep", True), ("run", False), ("execute", False)):
        p = subprocess.run([sys.executable, "-c", code, command], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout.strip().splitlines()[-1]) == [want] * len(_pure.MODULES), command


# ------------------------------------------------------------------------------ the order manager
_idx = st.integers(0, 7)
_px = st.integers(100, 9900)
_cnt = st.integers(1, 1000)
_ops = st.one_of(
    st.tuples(st.just("create"), st.sampled_from([T, U]), st.sampled_from(["bid", "ask"]), _px, _cnt),
    st.tuples(st.just("ack"), _idx, st.integers(0, 1000), st.integers(0, 1000)),
    st.tuples(st.just("reject"), _idx),
    st.tuples(st.just("timeout"), _idx),
    st.tuples(st.just("resolve"), _idx, st.booleans()),
    st.tuples(st.just("cancel"), _idx),
    st.tuples(st.just("cancel_ack"), _idx, st.none() | st.integers(0, 1000)),
    st.tuples(st.just("failed"), _idx, st.booleans()),
    st.tuples(st.just("amend"), _idx, _px, st.integers(0, 1000)),
    st.tuples(st.just("amend_ack"), _idx, st.integers(0, 1000), st.integers(0, 1000)),
    st.tuples(st.just("decrease"), _idx, st.integers(0, 1000)),
    st.tuples(st.just("decrease_ack"), _idx, st.integers(0, 1000)),
    st.tuples(st.just("fill"), _idx, _cnt, st.integers(0, 5), st.integers(0, 300)),
    st.tuples(st.just("user_order"), _idx, st.sampled_from(["resting", "canceled", "executed"]),
              st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.integers(1, 10**9)),
    st.tuples(st.just("gone"), _idx),
    st.tuples(st.just("prune"), st.integers(0, 10**9)),
)


def _om_step(mod, om, clock, created: list, op: tuple):
    """One operation on ``om`` (of module ``mod``); returns what it answered, in plain values."""
    kind, *a = op
    if kind == "create":
        return _order(om.create(*a))
    if kind == "tick":
        clock.advance_ns(a[0])
        return None
    if kind == "prune":
        return om.prune(a[0])
    if not created:
        return None
    coid = created[a[0] % len(created)]
    oid = "O" + coid
    if kind == "ack":
        return _order(om.on_ack(OrderAck(oid, coid, a[1], a[2])))
    if kind == "reject":
        return _order(om.on_create_rejected(coid, "no"))
    if kind == "timeout":
        return _order(om.on_create_timeout(coid))
    if kind == "resolve":
        o = om.get(coid)
        found = None if not a[1] or o is None else UserOrder(oid, coid, o.ticker, "resting", o.side, o.price,
                                                             o.count, 0, o.count)
        return _order(om.resolve_unknown(coid, found))
    if kind == "cancel":
        return _order(om.request_cancel(oid))
    if kind == "cancel_ack":
        return _order(om.on_cancel_ack(oid, a[1]))
    if kind == "failed":
        return _order(om.on_request_failed(oid, "boom", gone=a[1]))
    if kind == "amend":
        return _order(om.request_amend(oid, a[1], a[2]))
    if kind == "amend_ack":
        return _order(om.on_amend_ack(OrderAck(oid, coid, a[1], a[2])))
    if kind == "decrease":
        return _order(om.request_decrease(oid, a[1]))
    if kind == "decrease_ack":
        return _order(om.on_decrease_ack(oid, a[1]))
    if kind == "fill":
        o = om.get(coid)
        side, ticker, price = (o.side, o.ticker, o.price) if o is not None else ("bid", T, 5000)
        return om.on_fill(Fill(f"tr{a[2]}", oid, coid, ticker, side, price, a[1], a[3], False, None, 0))
    if kind == "user_order":
        o = om.get(coid)
        side, ticker, price = (o.side, o.ticker, o.price) if o is not None else ("bid", T, 5000)
        return _order(om.on_user_order(UserOrder(oid, coid, ticker, a[1], side, price, a[2] + a[3], a[2], a[3],
                                                 last_updated_ts_ms=a[4])))
    if kind == "gone":
        return _order(om.resolve_gone(oid))
    raise AssertionError(kind)


def _order(o) -> tuple | None:
    if o is None:
        return None
    return tuple(v.value if hasattr(v, "value") else v for v in dataclasses.astuple(o))


def _om_state(om) -> tuple:
    return ([_order(o) for o in om.orders()],
            [tuple(lo) for t in (T, U) for lo in om.live_orders(t, now_ns=10**12)],
            [om.open_qty(t, s) for t in (T, U) for s in ("bid", "ask")],
            om.counts(), [om.unbooked_in(t) for t in (T, U)], om.orphan_fill_count(),
            [_order(o) for o in om.unknown()], [_order(o) for o in om.in_flight_older_than(0)],
            dataclasses.astuple(om.stats))


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as e:      # the same refusal, with the same words
        return type(e).__name__, str(e)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ops, min_size=1, max_size=60), st.sampled_from(["cancel", "adopt"]))
def test_the_compiled_order_manager_answers_as_its_source(ops, policy):
    sides = []
    for mod in (c_orders, i_orders):
        clock = ManualClock()
        om = mod.OrderManager(clock, session="p1", unknown_order_policy=policy)
        touched: list = []
        om.watchers.append(touched.append)
        created: list[str] = []
        trace = []
        for op in ops:
            got = _outcome(_om_step, mod, om, clock, created, op)
            if op[0] == "create" and got[0] == "ok":
                created.append(got[1][0])
            trace.append((got, _om_state(om)))
        sides.append((trace, touched))
    assert sides[0] == sides[1]


# ------------------------------------------------------------------------------ the portfolio
_fills = st.lists(st.tuples(st.sampled_from([T, U]), st.sampled_from(["bid", "ask"]), st.integers(1, 9999),
                            st.integers(1, 5000), st.integers(0, 400), st.integers(0, 6)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(_fills, st.sampled_from(["cent", "exact"]), st.sampled_from(["conservative", "mid"]),
       st.none() | st.sampled_from(["yes", "no"]))
def test_the_compiled_portfolio_answers_as_its_source(fills, rounding, mark, result):
    sides = []
    for mod in (c_portfolio, i_portfolio):
        try:
            p = mod.Portfolio(cash=1_000_000, cash_rounding=rounding, mark=mark)
        except Exception as e:
            sides.append(("refused", type(e).__name__, str(e)))
            continue
        trace = []
        for n, (t, side, price, count, fee, oid) in enumerate(fills):
            took = p.apply_fill(Fill(f"f{n}", f"o{oid}", None, t, side, price, count, fee, False, None, n))
            p.set_mark(t, max(1, price - 100), min(9999, price + 100))
            trace.append((took, p.positions(), p.total_pnl(), p.total_pnl(net_of_fees=False),
                          p.realized_pnl(), p.unrealized_pnl(), p.fees_paid(), p.fees_charged(),
                          p.position_cost(t), p.average_price(t), p.event_leg(t), p.identity_residual_e6()))
        if result is not None:
            trace.append((p.settle(T, result), p.positions(), p.realized_pnl(), p.total_pnl()))
        sides.append(trace)
    assert sides[0] == sides[1]


# ------------------------------------------------------------------------------ the whole decision path
_REPLAY = """
import json, sys, importlib
from pathlib import Path
from kmm import _pure
if sys.argv[3] == "compiled":
    assert _pure.use_compiled()         # as kmm backtest runs
from kmm.config import load_config
from kmm.research.backtest import Backtest
b = Backtest([Path(sys.argv[1])], load_config(None, environ={}, cli={}), None, seed=int(sys.argv[2]))
s = b.run()
print(json.dumps({"compiled": [_pure.is_compiled(importlib.import_module(m)) for m in _pure.MODULES],
                  "summary": {k: v for k, v in s.items() if k not in ("details", "messages_per_s")},
                  "details": {k: v for k, v in s["details"].items()
                              if k not in ("elapsed_s", "speedup_vs_real_time", "replay_path")},
                  "fills": [repr(f) for f in b.fills],
                  "orders": [(o.client_order_id, o.order_id, o.state.value, o.price, o.fill_count, o.fees)
                             for o in b.om.orders()],
                  "latency": list(b.decision_latency_ns)}, default=str))
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 4])
def test_a_kmm_run_capture_replays_the_same_compiled_and_interpreted(live_run, tmp_path, seed):  # noqa: F811
    out = {}
    for name in ("compiled", "interpreted"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KMM_")}
        env["PYTHONPATH"] = str(pure.SRC)
        p = subprocess.run([sys.executable, "-c", _REPLAY, str(live_run), str(seed), name], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        out[name] = json.loads(p.stdout.strip().splitlines()[-1])
    c, i = out["compiled"], out["interpreted"]
    assert i["compiled"] == [False] * len(_pure.MODULES)
    assert c["compiled"] == [True] * len(_pure.MODULES)
    assert c["summary"]["fills"] > 20 and c["summary"]["orders_sent"] > 10
    for k in ("summary", "details", "fills", "orders", "latency"):
        assert c[k] == i[k], k


def test_kmm_interpreted_takes_names_and_warns_of_unknown_ones(monkeypatch):
    monkeypatch.setenv(_pure.ENV, "kmm.engine.risk, kmm.engine.nope")
    with pytest.warns(UserWarning, match="kmm.engine.nope ignored"):
        assert _pure.interpreted() == {"kmm.engine.risk"}
    monkeypatch.setenv(_pure.ENV, "0")
    assert _pure.interpreted() == frozenset()
    for source in ("", "1"):            # unset: the source until a replaying process asks
        monkeypatch.setenv(_pure.ENV, source)
        assert _pure.interpreted() == frozenset(_pure.MODULES)
