"""The quote create's short path against the full one.

- ``RiskGate.place_allowed`` (the gate's allow in one call) says yes exactly when ``check_place`` does,
  over random gate states (limits, positions, open orders, kill switch, pauses, close, stale book,
  back-off);
- ``QuotePlanner.place`` gives what the planner's PLACE step gave before it (reduce-only sizing, then
  ``check_place``, then the event limits, then ``om.create``): a plain-Python copy of that step is the
  reference;
- ``Engine._apply_actions`` writing a quote through ``rest.place_quote_now`` and through the full path
  (``OrderRequest``, ``Session.place_now``, ``rest.create_order_now``) gives the same bytes on the wire,
  the same order records, store rows and stamps, and after the same answers the same outcomes.
"""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace
from typing import Any
from unittest import mock

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.grid import Grid
from kmm.config import load_config
from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.live import Engine, EngineOptions
from kmm.engine.market import SIDE_NAME
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.quoting import AMEND, PLACE, QuotePlanner
from kmm.engine.risk import KillState, RiskGate, RiskLimits
from kmm.kalshi import ConnectorConfig
from kmm.kalshi.rest import KalshiRest
from kmm.kalshi.signing import Signer
from kmm.kalshi.types import Fill

T = "KXTEST-1"
_tid = itertools.count()


class Backoff:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def place_pause_ns(self) -> int:
        return self.ns


def gate_state(draw: Any) -> tuple[RiskGate, ManualClock, Portfolio, OrderManager]:
    clock = ManualClock()
    pf = Portfolio(cash=10_000_000)
    om = OrderManager(clock, session="r")
    limits = RiskLimits(max_order_size=draw(st.sampled_from([500, 3000, 10_000])),
                        max_order_notional=draw(st.sampled_from([20_000, 1_000_000])),
                        max_open_orders_per_market=draw(st.integers(1, 4)),
                        max_open_orders_total=draw(st.integers(1, 6)),
                        max_position=draw(st.sampled_from([500, 1000, 3000])),
                        max_total_position=draw(st.sampled_from([800, 2000, 100_000])),
                        reduce_only_at=draw(st.sampled_from([0.5, 0.9, 1.0])),
                        max_loss=100_000, loss_reduce_only_at=0.8)
    close = draw(st.sampled_from([None, 30, 300, 10_000]))
    gate = RiskGate(limits, clock, pf, om, backoff=Backoff(draw(st.sampled_from([0, 0, 5]))))
    gate.add_market(T, Grid("linear_cent"), close_time_ns=None if close is None else
                    clock.time_ns() + close * NS_PER_S, fractional=draw(st.booleans()))
    gate.add_market("KXOTHER", Grid("linear_cent"))
    gate.on_book_update(T)
    if draw(st.integers(0, 9)) == 0:
        clock.advance(10.0)                        # the book goes stale
    q = draw(st.sampled_from([0, 0, 300, -300, 900, -1000, 2500]))
    if q:
        pf.apply_fill(Fill(f"t{next(_tid)}", "o", None, T, "bid" if q > 0 else "ask", 5000, abs(q), 0, False,
                           None, 0))
    for _ in range(draw(st.integers(0, 4))):
        om.create(draw(st.sampled_from([T, "KXOTHER"])), draw(st.sampled_from(["bid", "ask"])), 4000,
                  draw(st.sampled_from([100, 500])))
    flag = draw(st.integers(0, 12))
    if flag == 0:
        gate.kill_state = KillState.TRIPPED
    elif flag == 1:
        gate.exchange_paused = True
    elif flag == 2:
        gate.markets[T].paused = True
    elif flag == 3:
        gate.last_pnl = -90_000                   # loss near its limit: reduce-only
    return gate, clock, pf, om


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_place_allowed_says_yes_exactly_when_check_place_allows(data):
    gate, _, pf, _ = gate_state(data.draw)
    side = data.draw(st.sampled_from(["bid", "ask", "buy"]))
    price = data.draw(st.sampled_from([50, 100, 4500, 4550, 5000, 9900, 9950]))
    count = data.draw(st.sampled_from([-100, 0, 100, 150, 500, 1000, 5000]))
    want = bool(gate.check_place(T, side, price, count))
    assert gate.place_allowed(T, side, price, count) == want
    q = pf.position(T)
    assert gate.place_allowed(T, side, price, count, q, gate.reduce_only_reason(T, q)) == want
    assert gate.place_allowed("KXNONE", side, price, count) is False


def reference_place(planner: QuotePlanner, ticker: str, a: Any) -> tuple[Any, ...] | None:
    """The planner's PLACE step as it was before ``QuotePlanner.place`` (plain Python, kept here)."""
    gate, om, ev = planner.gate, planner.om, planner.event_risk
    side = SIDE_NAME[a.side]
    size = planner.reducing_size(ticker, side, a.size)
    if size <= 0:
        planner.last_denial = "reduce_only"
        planner.last_denial_detail = f"{gate.reduce_only_reason(ticker)}: a {side} would not reduce"
        return None
    d = gate.check_place(ticker, side, a.price, size)
    if not d:
        planner.last_denial, planner.last_denial_detail = d.reason, d.detail
        return None
    if ev is not None:
        size, d2 = ev.size_place(ticker, side, a.price, size)
        if not size:
            planner.last_denial, planner.last_denial_detail = \
                (d2.reason, d2.detail) if d2 is not None else ("event", "")
            return None
    return (om.create(ticker, side, a.price, size), side, a.price, size)


def _replayer(values: list[Any]) -> Any:
    it = iter(values)
    return lambda strategy: next(it)


class Resizer:
    """Event limits: halve, refuse or pass (the planner's size_place contract)."""

    def __init__(self, mode: int) -> None:
        self.mode = mode

    def size_place(self, ticker: str, side: str, price: int, size: int) -> tuple[int, Any]:
        if self.mode == 0:
            return size, None
        if self.mode == 1:
            return size // 2, None
        return 0, SimpleNamespace(reason="event_worst_loss", detail="the event's worst outcome")


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_planners_place_is_the_former_place_step(data):
    ev_mode = data.draw(st.integers(0, 2))
    acts = data.draw(st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from([100, 4500, 4550, 5000]),
                                        st.sampled_from([100, 500, 1000, 3000])), min_size=1, max_size=4))
    drawn: list[Any] = []

    def record(s: Any) -> Any:
        v = data.draw(s)
        drawn.append(v)
        return v
    results = []
    for fn in (reference_place, QuotePlanner.place):
        if fn is reference_place:
            draw = record
        else:
            draw = _replayer(drawn)           # the same state again
        gate, _, pf, om = gate_state(draw)
        planner = QuotePlanner(gate, om, pf, Resizer(ev_mode))
        out: list[Any] = []
        for side, price, size in acts:
            r = fn(planner, T, SimpleNamespace(kind=PLACE, side=side, price=price, size=size, order_id=None))
            out.append(None if r is None else (r[0].client_order_id, r[0].price, r[0].count, *r[1:]))
            out.append((planner.last_denial, planner.last_denial_detail))
        out.append(sorted(gate.denials.items()))
        out.append([(o.client_order_id, o.ticker, o.side, o.price, o.count) for o in om.orders()])
        results.append(out)
    assert results[0] == results[1]


# ---------------------------------------------------------------- the engine: quote path vs full path

FIXED_AUTH = {"KALSHI-ACCESS-TIMESTAMP": "1700000000000", "KALSHI-ACCESS-SIGNATURE": "c2lnbmF0dXJl"}
CREATE = ("POST", "/trade-api/v2/portfolio/events/orders")


@pytest.fixture(scope="module")
def key() -> tuple[rsa.RSAPrivateKey, bytes]:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k, k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


class AllowAll(QuotePlanner):
    """The gate and the event limits are tested above: here every place is allowed as asked."""

    def place_checked(self, ticker: str, a: Any) -> tuple[str, int, int] | None:
        return SIDE_NAME[a.side], a.price, a.size


def offline_engine(key: Any, tmp_path: Any, full: bool) -> tuple[Engine, list[tuple[bytes, Any]], Any]:
    k, pem = key
    conn = ConnectorConfig(env="sim").with_server("http://127.0.0.1:9/trade-api/v2",
                                                  "ws://127.0.0.1:9/trade-api/ws/v2",
                                                  api_key_id="kid", private_key_pem=pem)
    cfg = load_config(None, environ={}, cli={"run.markets": T, "run.out_dir": str(tmp_path)})
    recorder = mock.MagicMock()
    engine = Engine(cfg, conn, recorder=recorder, venue="offline", clock=ManualClock(),
                    options=EngineOptions(view="off"))
    rest = KalshiRest(conn, signer=Signer("kid", k))
    rest._session = object()
    sent: list[tuple[bytes, Any]] = []
    stamp = itertools.count(1_000)

    class Conn:
        """An idle connection that keeps what is written on it (the compiled writes use it)."""
        closed = False
        last_write_ns = 0

        def start(self, data: bytes, timeout_s: float, done: Any) -> None:
            sent.append((data, done))
            self.last_write_ns = next(stamp)
            rest.fast._idle.append(self)
    rest.fast._idle.append(Conn())

    def send_raw(data: bytes, done: Any, timeout_s: float | None = None) -> int:
        sent.append((data, done))
        return next(stamp)
    rest.fast.send_raw = send_raw                            # type: ignore[method-assign]
    for _ in range(4):
        rest.pool._slots[CREATE].append((time.monotonic_ns(), FIXED_AUTH))
    rest.pool.take = lambda method, path: FIXED_AUTH        # type: ignore[method-assign]
    rest.limiter.set_budget(1e9, 1e9)
    rest.shards[T] = 1
    if full:
        rest.place_quote_now = lambda *a, **kw: 0            # type: ignore[method-assign]
    engine.session.rest = rest
    engine.session.om.session = "fixed"                      # the same client order ids in both runs
    engine.planner = AllowAll(engine.gate, engine.om, engine.pf, None)
    engine.quoting = True
    engine.gate.freshness = None                             # the book's freshness, as the gate keeps it
    engine.gate.add_market(T, Grid("linear_cent"))
    engine.gate.on_book_update(T)
    return engine, sent, recorder


def pipe_stub() -> Any:
    inputs = SimpleNamespace(mid=5000.0, sigma=0.01, ofi_skew=0.0, microprice=None, imbalance=None)
    return SimpleNamespace(ticker=T, in_flight=0, applying=False, tape_trigger_ns=0, decided_ns=0, trigger_ns=0,
                           dirty=False, ready=True, hold_s=0.0, hold=lambda now: None, inputs=inputs,
                           target=mock.MagicMock(half_spread=100, reservation=5000))


def order_rows(recorder: Any) -> list[Any]:
    return [c for c in recorder.mock_calls if "record_order" in c[0]]


def tape_rows(recorder: Any) -> list[Any]:
    return [c.args[0][:3] + c.args[0][12:13] for c in recorder.mock_calls if "write_raw" in c[0]]


@pytest.mark.parametrize("answers", [
    [(201, {"order_id": "o1", "client_order_id": "fixed-1", "fill_count": "0.00", "remaining_count": "5.00"}),
     (201, {"order_id": "o2", "client_order_id": "fixed-2", "fill_count": "5.00", "remaining_count": "0.00",
            "average_fill_price": "0.5100"})],
    [(400, {"error": {"code": "post_only_cross", "message": "would cross"}}),
     (409, {"error": {"code": "market_closed", "message": "closed"}})],
    [(429, {"error": "too many"}), (201, {"order_id": "o9", "client_order_id": "fixed-2", "fill_count": "0.00",
                                          "remaining_count": "0.00"})],
])
def test_the_quote_path_and_the_full_path_write_and_record_the_same(key, tmp_path, answers):
    runs = []
    for full in (False, True):
        engine, sent, recorder = offline_engine(key, tmp_path / str(full), full)
        pipe = pipe_stub()
        actions = (SimpleNamespace(kind=PLACE, side=0, price=4900, size=500, order_id=None),
                   SimpleNamespace(kind=PLACE, side=1, price=5100, size=500, order_id=None))
        pipe.trigger_ns = pipe.decided_ns = 10
        recorded_at: list[int] = []          # requests written when the order manager records each create
        record_create = engine.om.record_create
        engine.om.record_create = lambda *a, _a=recorded_at, _s=sent, _f=record_create: (_a.append(len(_s)), _f(*a))[1]
        n = engine._apply(pipe, actions, 10)          # the ManualClock reads the same in both runs
        assert n == 2 and len(sent) == 2
        # the quote path records each create right after its write, the full path before it
        assert recorded_at == ([0, 1] if full else [1, 2])
        # the path taken: the quote path's one completion object, or the full path's closures
        assert all((type(d).__name__ == "_QuoteAnswer") != full for _, d in sent)
        assert engine.session.orders_sent == 2 and engine.session.inflight_now == 2 and pipe.in_flight == 2
        records = [(o.client_order_id, o.ticker, o.side, o.price, o.count, o.state) for o in engine.om.orders()]
        rows_before = order_rows(recorder)
        stamps = (list(engine._latency_ns), list(engine.send_ns), pipe.tape_trigger_ns, tape_rows(recorder))
        for (_, done), (status, body) in zip(sent, answers):
            done(status, orjson.dumps(body), None)
        after = [(o.client_order_id, o.order_id, o.state, o.remaining, o.reason) for o in engine.om.orders()]
        runs.append(([d for d, _ in sent], records, rows_before, stamps, after, order_rows(recorder),
                     engine.session.inflight_now, pipe.in_flight, pipe.hold_s,
                     engine.rest.limiter.place_pause_ns() > 0))
    quick, full = runs
    assert quick == full
    assert quick[6] == 0 and quick[7] == 0                   # every answer settled its request
    assert len(quick[5]) == 4 and quick[5][2:] != quick[5][:2]   # each answer's row after the pending ones
    assert all(b'"exchange_index":1' in d and b'"post_only":true' in d for d in quick[0])
    assert len(quick[2]) == 2 and all(c.kwargs["status"] == "pending" for c in quick[2])
    assert quick[3][0] == [1_000 - 10] and len(quick[3][3]) == 1 and quick[3][3][0][2] == "decision"


@pytest.mark.parametrize("answer", [
    (200, {"order_id": "o1", "client_order_id": "fixed-1", "fill_count": "0.00", "remaining_count": "5.00"}),
    (404, {"error": {"code": "not_found", "message": "gone"}}),
])
def test_an_amend_through_the_quote_path_and_the_full_path_is_the_same(key, tmp_path, answer):
    runs = []
    for full in (False, True):
        engine, sent, recorder = offline_engine(key, tmp_path / str(full), full)
        rest = engine.session.rest
        if full:
            rest.amend_quote_now = lambda *a, **kw: 0        # type: ignore[method-assign]
        pipe = pipe_stub()
        pipe.trigger_ns = pipe.decided_ns = 10
        engine._apply(pipe, (SimpleNamespace(kind=PLACE, side=0, price=4900, size=500, order_id=None),), 10)
        sent[0][1](201, orjson.dumps({"order_id": "o1", "client_order_id": "fixed-1", "fill_count": "0.00",
                                      "remaining_count": "5.00"}), None)
        rest.pool._slots[("POST", CREATE[1] + "/o1/amend")].append((time.monotonic_ns(), FIXED_AUTH))
        pipe.trigger_ns = pipe.decided_ns = 20
        recorded_at: list[int] = []          # requests written when the order manager records the amend
        request_amend = engine.om.request_amend
        engine.om.request_amend = lambda *a, _a=recorded_at, _s=sent, _f=request_amend: (_a.append(len(_s)), _f(*a))[1]
        n = engine._apply(pipe, (SimpleNamespace(kind=AMEND, side=0, price=4800, size=500, order_id="fixed-1"),), 20)
        assert n == 1 and len(sent) == 2
        # the quote path (Engine._amend_now) records the amend after its write, the full path before
        assert recorded_at == ([1] if full else [2])
        assert (type(sent[1][1]).__name__ == "_AmendAnswer") != full
        assert engine.session.amends_sent == 1 and engine.session.inflight_now == 1 and pipe.in_flight == 1
        during = [(o.order_id, o.state, o.price, o.pending_price, o.pending_count) for o in engine.om.orders()]
        stamps = (list(engine._latency_ns), list(engine.send_ns), pipe.tape_trigger_ns)
        sent[1][1](answer[0], orjson.dumps(answer[1]), None)
        after = [(o.order_id, o.state, o.price, o.remaining, o.reason) for o in engine.om.orders()]
        runs.append((sent[1][0], during, stamps, after, engine.session.inflight_now, pipe.in_flight,
                     rest._order_ticker.get("o1")))
    assert runs[0] == runs[1]
    assert runs[0][4] == 0 and runs[0][5] == 0 and runs[0][2][0][-1] == 1_001 - 20
    assert b"/o1/amend" in runs[0][0] and b'"price":"0.4800"' in runs[0][0]


def test_an_error_after_the_bytes_went_out_leaves_the_order_recorded(key, tmp_path):
    """The quote path records a create or an amend after its write: a failure inside the connector
    after the bytes were written still leaves the order manager holding the order (pending its create
    or its amend, as the planner's path did by recording first), so its answer or the request
    watchdog's read-back finds it."""
    engine, sent, _ = offline_engine(key, tmp_path, False)
    rest = engine.session.rest
    pipe = pipe_stub()
    [conn] = rest.fast._idle
    start = type(conn).start
    failing = [True]

    def write_then_fail(self: Any, data: bytes, timeout_s: float, done: Any) -> None:
        start(self, data, timeout_s, done)
        if failing[0]:
            raise RuntimeError("after the write")
    type(conn).start = write_then_fail                       # the compiled write's connection
    pipe.trigger_ns = pipe.decided_ns = 10
    with pytest.raises(RuntimeError):
        engine._apply(pipe, (SimpleNamespace(kind=PLACE, side=0, price=4900, size=500, order_id=None),), 10)
    assert len(sent) == 1 and rest._qw.places == 1
    [o] = engine.om.orders()
    assert (o.client_order_id, o.state.value, o.price, o.count) == ("fixed-1", "pending", 4900, 500)
    assert b'"client_order_id":"fixed-1"' in sent[0][0]
    failing[0] = False
    sent[0][1](201, orjson.dumps({"order_id": "o1", "client_order_id": "fixed-1", "fill_count": "0.00",
                                  "remaining_count": "5.00"}), None)
    assert o.state.value == "resting"
    rest.pool._slots[("POST", CREATE[1] + "/o1/amend")].append((time.monotonic_ns(), FIXED_AUTH))
    failing[0] = True
    pipe.trigger_ns = pipe.decided_ns = 20
    with pytest.raises(RuntimeError):
        engine._apply(pipe, (SimpleNamespace(kind=AMEND, side=0, price=4800, size=500, order_id="fixed-1"),), 20)
    assert len(sent) == 2 and b"/o1/amend" in sent[1][0] and rest._qw.amends == 1
    assert (o.state.value, o.pending_price, o.pending_count) == ("pending_amend", 4800, 500)
