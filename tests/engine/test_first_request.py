"""A decision's first request checked and written by the compiled frame entry (issue 15's request path,
``FrameEntry.first_request``) against the engine's Python path.

- ``OrderLimits`` (kmm._core.ordergate, the gate's checks in C) answers an amend exactly as
  ``RiskGate.amend_size`` and a create exactly as ``RiskGate.place_allowed`` whenever the market is not
  reduce-only and the gate's market checks allow (the decision holds that ALLOW), and never allows
  anything the gate does not: over random gate states (limits, positions, open orders, loss, close).
- On the same frames, an engine whose entry writes the first request and one whose entry hands every
  decision to ``Engine._act`` write the same bytes on the wire, make the same order records, counters
  and stamps, and after the same answers reach the same states; for a first amend and a first create.
- Whatever the entry declines (reduce-only sizing, no pre-made signature) is sent by the Python path
  as before, nothing taken twice; an error after the bytes went out leaves the order recorded.
"""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any
from unittest import mock

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.ordergate import OrderLimits
from kmm.config import load_config
from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.live import Engine, EngineOptions
from kmm.engine.market import MarketInfo
from kmm.engine.risk import RiskGate
from kmm.kalshi import ConnectorConfig
from kmm.kalshi.rest import KalshiRest
from kmm.kalshi.signing import Signer
from kmm.kalshi.types import Fill
from kmm.kalshi.ws import KalshiWs
from tests.engine.test_place_fast import CREATE, FIXED_AUTH, T, gate_state
from tests.kalshi.test_ws_frames import delta as delta_frame, snapshot as snapshot_frame

PRICES = [50, 100, 4500, 4550, 5000, 9900, 9950]
COUNTS = [-100, 0, 100, 150, 500, 1000, 5000]


def _drawn(data: Any) -> tuple[RiskGate, Any, Any, str, int, int, dict[str, Any]]:
    """A random gate state and order (``gate_state``), and the numbers the entry reads for it."""
    gate, _, pf, om = gate_state(data.draw)
    side = data.draw(st.sampled_from(["bid", "ask"]))
    return gate, pf, om, side, data.draw(st.sampled_from(PRICES)), data.draw(st.sampled_from(COUNTS)), \
        _c_args(gate, pf, om, side)


def _c_args(gate: RiskGate, pf: Any, om: Any, side: str) -> dict[str, Any]:
    m = gate.markets[T]
    return dict(q=pf.position(T), open_side=om.open_qty(T, side), total_abs=pf.total_abs_position(),
                last_pnl=gate.last_pnl, fractional=m.fractional, grid=m.grid, close_ns=m.close_time_ns,
                wall_ns=gate.clock.time_ns())


@settings(max_examples=800, deadline=None)
@given(data=st.data())
def test_the_c_amend_check_is_the_gates_amend_size_when_not_reduce_only(data: Any) -> None:
    gate, pf, om, side, price, size, a = _drawn(data)
    mine = [o for o in om.live_orders(T) if o.side == side]
    old = data.draw(st.sampled_from(mine)) if mine and data.draw(st.booleans()) else None
    old_rem = old.remaining if old is not None else data.draw(st.sampled_from([0, 100]))
    old_price = old.price if old is not None else 4000
    c = OrderLimits(gate.limits).check_amend(T, side == "bid", price, size, old_rem, a["q"], a["open_side"],
                                             a["total_abs"], a["last_pnl"], a["fractional"], a["grid"],
                                             a["close_ns"], a["wall_ns"])
    want = gate.amend_size(T, side, price, size, old_rem, old_price)
    # the market checks (kill switch, pauses, close, freshness, back-off) are the decision's held ALLOW:
    # the entry asks OrderLimits only under it
    quotable = bool(gate.is_quotable(T))
    if c >= 0 and quotable:                       # never an allow the gate does not give
        assert c == size and want == size
        assert gate.check_amend(T, side, price, size, old_rem)
    if quotable and not gate.reduce_only_reason(T):
        assert c == (size if want == size else -1)
    if gate.reduce_only_reason(T):
        assert c == -1                            # reduce-only sizing is the gate's


@settings(max_examples=800, deadline=None)
@given(data=st.data())
def test_the_c_place_check_is_the_gates_place_allowed_when_not_reduce_only(data: Any) -> None:
    gate, pf, om, side, price, size, a = _drawn(data)
    c = OrderLimits(gate.limits).check_place(T, side == "bid", price, size, om.open_count(T), om.open_count(),
                                             a["q"], a["open_side"], a["total_abs"], a["last_pnl"],
                                             a["fractional"], a["grid"], a["close_ns"], a["wall_ns"])
    want = gate.place_allowed(T, side, price, size)
    quotable = bool(gate.is_quotable(T))          # the decision's held ALLOW (see above)
    if c >= 0 and quotable:
        assert c == size and want and gate.check_place(T, side, price, size)
    if quotable and not gate.reduce_only_reason(T):
        assert (c == size) == want
    if gate.reduce_only_reason(T):
        assert c == -1


# ------------------------------------------------------------------ the entry against the Python path
WS_CFG = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2", ws_url="ws://127.0.0.1:1/trade-api/ws/v2")


@pytest.fixture(scope="module")
def key() -> tuple[rsa.RSAPrivateKey, bytes]:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k, k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


class Wired:
    """An engine behind its connector (frames in, bytes out), its orders sent by a real ``KalshiRest``
    whose idle connection keeps what is written on it."""

    def __init__(self, key: Any, tmp_path: Any, first_in_c: bool, shard: int | None = None, **cli: str) -> None:
        k, pem = key
        conn = ConnectorConfig(env="sim").with_server("http://127.0.0.1:9/trade-api/v2",
                                                      "ws://127.0.0.1:9/trade-api/ws/v2",
                                                      api_key_id="kid", private_key_pem=pem)
        cfg = load_config(None, environ={}, cli={"run.markets": T, "run.strategy": "inside",
                                                "strategy.quote_size": "5", "strategy.max_position": "30",
                                                "run.coalesce_reads": "read", "run.out_dir": str(tmp_path), **cli})
        self.clock = clock = ManualClock(monotonic_ns=100 * NS_PER_S, time_ns=1_800_000_000 * NS_PER_S)
        self.recorder = mock.MagicMock()
        e = self.e = Engine(cfg, conn, recorder=self.recorder, venue="offline", clock=clock,
                            options=EngineOptions(view="off", first_in_c=first_in_c))
        e.om.session = "kq"                                     # the same client order ids in both runs
        grid = Grid("linear_cent")
        e.gate.add_market(T, grid, close_time_ns=None, fractional=False)
        e.freshness.add(T)
        e.freshness.on_ready(T)
        e._add_pipeline(MarketInfo(T, grid, None))
        assert e.pipes[T].compiled
        rest = self.rest = KalshiRest(conn, signer=Signer("kid", k))
        rest._session = object()
        self.sent: list[tuple[bytes, Any]] = []
        stamp = itertools.count(200 * NS_PER_S)
        sent = self.sent

        class Conn:
            closed = False
            last_write_ns = 0
            fail = False

            def start(self, data: bytes, timeout_s: float, done: Any) -> None:
                sent.append((data, done))
                self.last_write_ns = next(stamp)
                rest.fast._idle.append(self)
                if Conn.fail:
                    raise RuntimeError("after the write")
        self.Conn = Conn
        rest.fast._idle.append(Conn())
        for _ in range(8):
            rest.pool._slots[CREATE].append((time.monotonic_ns(), FIXED_AUTH))
        if shard is not None:
            rest.shards[T] = shard                              # the market's exchange shard (its own bucket)
        rest.limiter.set_budget(1e9, 1e9)
        for wb in rest.limiter._all_writes():                   # full: no write pressure
            wb.bucket.tokens = wb.bucket.capacity
        assert rest._qw is not None
        e.gate.backoff = rest.limiter                           # the one owner of the back-off
        e.session.rest = rest
        e.quoting = True
        ws = self.ws = KalshiWs(WS_CFG, e, router=e.router, book_factory=OrderBook)
        ws.add_markets({T: "linear_cent"})
        e.session.ws = ws
        assert ws.entry is not None

    def sign_amend(self, order_id: str) -> None:
        self.rest.pool._slots[("POST", CREATE[1] + f"/{order_id}/amend")].append((time.monotonic_ns(), FIXED_AUTH))

    def feed(self, data: bytes) -> None:
        self.clock.advance(0.001)
        self.ws._feed(data, self.clock.monotonic_ns(), True)

    def answer(self, i: int, status: int, body: dict[str, Any]) -> None:
        self.sent[i][1](status, orjson.dumps(body), None)

    def answer_create(self, i: int, remaining: str, **extra: str) -> None:
        """Answer the create written ``i``-th: order id ``o<i>``, ``remaining`` contracts resting."""
        body = orjson.loads(self.sent[i][0].split(b"\r\n\r\n", 1)[1])
        self.answer(i, 201, {"order_id": f"o{i}", "client_order_id": body["client_order_id"], "fill_count": "0.00",
                             "remaining_count": remaining, **extra})

    def state(self) -> tuple[Any, ...]:
        e, p = self.e, self.e.pipes[T]
        return ([d for d, _ in self.sent],
                [(o.client_order_id, o.order_id, o.side, o.price, o.count, o.remaining, o.state, o.pending_price,
                  o.pending_count) for o in e.om.orders()],
                (e.session.orders_sent, e.session.amends_sent, e.session.inflight_now, p.in_flight, p.state,
                 p.trigger_ns, p.decided_ns, p.tape_trigger_ns),
                (list(e.decide_ns), list(e._latency_ns), list(e.send_ns)),
                [c for c in self.recorder.mock_calls if "record_order" in c[0]],
                dict(e.blocked), self.rest.requests,
                # the write budget: grants per lane, per market (the fair key) and per shard bucket
                self.rest.limiter.granted(), {k: v[0] for k, v in self.rest.limiter._fair.items()},
                sorted(self.rest.limiter._shard_writes))


def _quoted(w: Wired, yes: str = "0.4000", no: str = "0.5500") -> None:
    """The snapshot's decision (the Python path) creates the bid and the ask; both rest."""
    w.feed(snapshot_frame(1, 1, T, yes=((yes, "10.00"),), no=((no, "12.00"),)))
    assert len(w.sent) == 2
    for i in range(2):
        w.answer_create(i, "5.00")
        w.sign_amend(f"o{i}")


def _both(run: Any, key: Any, tmp_path: Any, written: int) -> tuple[Wired, list[Any]]:
    """``run`` with the entry's first request and with it off: the same states at every step; the
    entry wrote ``written`` first requests, the other none."""
    c, in_c = run(key, tmp_path / "c", True)
    p, in_py = run(key, tmp_path / "py", False)
    assert in_c == in_py
    assert (c.ws.entry.first_written, p.ws.entry.first_written) == (written, 0)
    assert p.rest._qw is not None and not p.ws.entry.first_on
    return c, in_c


def _run_amend_first(key: Any, tmp_path: Any, first_in_c: bool, shard: int | None = None) -> tuple[Wired, list[Any]]:
    w = Wired(key, tmp_path, first_in_c, shard)
    _quoted(w)
    states = [w.state()]
    w.feed(delta_frame(1, 2, T, price="0.4200", d="10.00"))    # a bid above ours: the maker moves up
    states.append(w.state())
    w.answer(2, 200, {"order_id": "o0", "client_order_id": "kq-1", "fill_count": "0.00", "remaining_count": "5.00"})
    states.append(w.state())
    return w, states


def test_a_first_amend_written_by_the_entry_is_the_python_paths_amend(key: Any, tmp_path: Any) -> None:
    c, in_c = _both(_run_amend_first, key, tmp_path, 1)
    assert c.rest._qw.amends == 1                                  # through the compiled bytes
    assert b"exchange_index" not in in_c[1][0][2]
    data = in_c[1][0][2]
    assert b"/o0/amend" in data and b'"price":"0.4300"' in data and b'"count":"5.00"' in data
    # the amend was pending while out, and settled by its answer
    assert [o[6].value for o in in_c[1][1]] == ["pending_amend", "resting"]
    assert [o[6].value for o in in_c[2][1]] == ["resting", "resting"] and in_c[2][1][0][3] == 4300
    assert in_c[2][2][2:4] == (0, 0)                                # nothing in flight after the answer
    assert in_c[1][3][2][-1] == 200 * NS_PER_S + 2 - in_c[1][2][6]  # decided -> written, from the write stamp


def test_a_first_amend_on_a_shard_takes_that_shards_budget(key: Any, tmp_path: Any) -> None:
    c, in_c = _both(functools.partial(_run_amend_first, shard=2), key, tmp_path, 1)
    assert b'"exchange_index":2' in in_c[1][0][2]
    lim = c.rest.limiter
    w2 = lim._shard_writes[2]                                      # the shard's own write bucket was taken
    assert c.rest._limiter_shards and w2.bucket.tokens < w2.bucket.capacity


def _run_place_first(key: Any, tmp_path: Any, first_in_c: bool) -> tuple[Wired, list[Any]]:
    w = Wired(key, tmp_path, first_in_c)
    w.feed(snapshot_frame(1, 1, T, yes=(("0.4000", "10.00"),), no=(("0.5500", "12.00"),)))
    i = 0
    while i < len(w.sent):                     # every create crosses, is cancelled, and is made again once
        w.answer_create(i, "0.00", status="canceled")
        i += 1
    w.clock.advance(5.0)                                      # past any hold after the refusal
    states = [w.state()]
    n = len(w.sent)
    w.feed(delta_frame(1, 2, T, price="0.4200", d="10.00"))
    states.append(w.state())
    for i in range(n, len(w.sent)):
        w.answer_create(i, "5.00")
    states.append(w.state())
    return w, states


def test_a_first_create_written_by_the_entry_is_the_python_paths_create(key: Any, tmp_path: Any) -> None:
    c, in_c = _both(_run_place_first, key, tmp_path, 1)
    before = len(in_c[0][0])
    assert len(in_c[1][0]) == before + 2                      # the decision created a bid and an ask
    first = orjson.loads(in_c[1][0][before].split(b"\r\n\r\n", 1)[1])
    assert first["post_only"] is True and first["price"] == "0.4300" and first["side"] == "bid"
    assert [o[6].value for o in in_c[1][1]][-2:] == ["pending", "pending"]
    assert [o[6].value for o in in_c[2][1]][-2:] == ["resting", "resting"]
    assert in_c[1][2][2:4] == (2, 2) and in_c[2][2][2:4] == (0, 0)
    rows = [r.kwargs["status"] for r in in_c[2][4]]
    assert rows.count("pending") == before + 2                # each create's pending row


def _run_reduce_only(key: Any, tmp_path: Any, first_in_c: bool) -> tuple[Wired, list[Any]]:
    """A long position near its limit: no bid, the ask sized by the gate; the ask then moves down."""
    w = Wired(key, tmp_path, first_in_c, **{"strategy.max_position": "8", "risk.reduce_only_at": "0.5"})
    w.e.pf.apply_fill(Fill("t1", "ox", None, T, "bid", 4000, 600, 0, False, None, 0))
    w.feed(snapshot_frame(1, 1, T, yes=(("0.4000", "10.00"),), no=(("0.5500", "12.00"),)))
    assert len(w.sent) == 1                                   # the ask only
    w.answer(0, 201, {"order_id": "o0", "client_order_id": "kq-1", "fill_count": "0.00", "remaining_count": "5.00"})
    w.sign_amend("o0")
    states = [w.state()]
    w.feed(delta_frame(1, 2, T, price="0.5700", d="10.00", side="no"))   # a YES ask at 0.43: ours goes below
    states.append(w.state())
    return w, states


def test_what_the_entry_declines_the_python_path_sends_as_before(key: Any, tmp_path: Any) -> None:
    c, in_c = _both(_run_reduce_only, key, tmp_path, 0)
    assert c.ws.entry.first_declined >= 1
    assert len(in_c[1][0]) == 2 and b"/o0/amend" in in_c[1][0][1]    # the Python path sent the amend
    # and a first amend with no pre-made signature for its order: declined, nothing taken, the Python path
    # (which finds no signature either) leaves it to the request coroutine
    w = Wired(key, tmp_path / "nosig", True)
    _quoted(w)
    w.rest.pool._slots[("POST", CREATE[1] + "/o0/amend")].clear()
    requests = w.rest.requests
    sent: list[Any] = []
    w.e._send = lambda pipe, coro, trigger_ns: (sent.append(coro), coro.close())   # type: ignore[method-assign]
    w.feed(delta_frame(1, 2, T, price="0.4200", d="10.00"))
    assert w.ws.entry.first_written == 0 and w.ws.entry.first_declined == 1
    assert len(sent) == 1 and w.rest.requests == requests and len(w.sent) == 2


def _run_under_pressure(key: Any, tmp_path: Any, first_in_c: bool) -> tuple[Wired, list[Any]]:
    """The write bucket 70 % used (above the maker's reprice_pressure, 0.5): a reprice of at most
    reprice_min_ticks (3) is skipped whole by the maker, a larger move is sent."""
    w = Wired(key, tmp_path, first_in_c)
    _quoted(w, yes="0.3000", no="0.6000")                       # ours: 0.31 / 0.39
    for wb in w.rest.limiter._all_writes():
        wb.bucket.tokens = wb.bucket.capacity * 0.3
    states = [w.state()]
    w.feed(delta_frame(1, 2, T, price="0.3300", d="10.00"))     # the bid wants 0.34: three ticks
    states.append((w.state(), w.e.skipped_reprices))
    w.feed(delta_frame(1, 3, T, price="0.3600", d="10.00"))     # 0.37: six ticks, sent
    states.append((w.state(), w.e.skipped_reprices))
    return w, states


def test_under_write_pressure_the_entry_leaves_the_decision_to_the_maker(key: Any, tmp_path: Any) -> None:
    c, in_c = _both(_run_under_pressure, key, tmp_path, 0)
    assert c.ws.entry.first_declined == 2
    assert in_c[1][1] == 1 and len(in_c[1][0][0]) == 2          # the small reprice skipped, nothing sent
    assert len(in_c[2][0][0]) == 3 and b"/o0/amend" in in_c[2][0][0][2] and b'"price":"0.3700"' in in_c[2][0][0][2]


@pytest.mark.parametrize("first", ["amend", "create"])
def test_an_error_after_the_entrys_write_leaves_the_order_recorded(key: Any, tmp_path: Any, first: str) -> None:
    w = Wired(key, tmp_path, True)
    if first == "amend":
        _quoted(w)
    else:
        w.feed(snapshot_frame(1, 1, T, yes=(("0.4000", "10.00"),), no=(("0.5500", "12.00"),)))
        i = 0
        while i < len(w.sent):
            w.answer_create(i, "0.00", status="canceled")
            i += 1
        w.clock.advance(5.0)
    n = len(w.sent)
    w.Conn.fail = True
    errors = w.ws.stats.callback_errors
    w.feed(delta_frame(1, 2, T, price="0.4200", d="10.00"))
    assert len(w.sent) == n + 1 and w.ws.stats.callback_errors == errors + 1
    if first == "amend":
        o = w.e.om.get("kq-1")
        assert (o.state.value, o.pending_price, o.pending_count) == ("pending_amend", 4300, 500)
        assert w.e.pipes[T].in_flight == 1
    else:
        o = w.e.om.orders()[-1]
        body = orjson.loads(w.sent[-1][0].split(b"\r\n\r\n", 1)[1])
        assert (o.client_order_id, o.state.value, o.price) == (body["client_order_id"], "pending", 4300)
        assert w.e.pipes[T].in_flight == 1
    # its answer finds it
    w.Conn.fail = False
    w.answer(n, 200 if first == "amend" else 201,
             {"order_id": "o0" if first == "amend" else "o9", "client_order_id": o.client_order_id,
              "fill_count": "0.00", "remaining_count": "5.00"})
    assert o.state.value == "resting" and o.price == 4300 and w.e.pipes[T].in_flight == 0


def test_the_entry_writes_only_behind_the_steps_it_was_built_from(key: Any, tmp_path: Any) -> None:
    assert Wired(key, tmp_path / "on", True).ws.entry.first_on
    assert not Wired(key, tmp_path / "off", False).ws.entry.first_on

    class Mine(Engine):
        def _amend_now(self, *a: Any) -> int:
            return -1
    orig = Engine.__init__
    w = Wired.__new__(Wired)
    try:
        Engine.__init__ = orig                                 # type: ignore[misc]
        import tests.engine.test_first_request as me
        saved = me.Engine
        me.Engine = Mine                                       # type: ignore[misc]
        w = Wired(key, tmp_path / "sub", True)
    finally:
        me.Engine = saved                                      # type: ignore[misc]
    assert type(w.e) is Mine and not w.ws.entry.first_on


def test_the_engine_refreshes_the_event_sums_once_an_order_callback_is_done(key: Any, tmp_path: Any) -> None:
    """Engine._sync_owned (soon after the order manager changed) also brings the event limits' kept
    sums up to date, so the next decision's event check applies nothing (EventRiskGate.refresh)."""
    w = Wired(key, tmp_path, True)
    calls: list[int] = []
    w.e.event_risk.gate.refresh = lambda: calls.append(1)     # type: ignore[method-assign]
    w.e._sync_owned()
    assert calls == [1]
