"""The backtest's replay loop over decoded capture rows, compiled (issue 10).

:class:`ReplayLoop` walks the columns of :class:`kmm.research.replaycache.Replay` (receive and wall
time, kind, the decoded trade or the delta's ticker, the raw book frame, the delta's level) and does
per record what ``Backtest._replay_fast`` does, in the same order, with the per-record glue in C:
the shift between capture files of different runs, the simulated clock, the book frame to the
compiled ``BookRouter``, and for a delta in a ready market the steps of ``Backtest._on_book_fast``
(queue upkeep when an order of ours rests, the market's live orders kept while the market's
generation in the order manager is unchanged, the compiled pipeline's ``on_book``, the gate's freshness stamp, the mark
only when it moved). It crosses into the Python driver only where the engine must act: a timed event
(request arrival or answer, rate-limit dispatch) or a held taker sweep due, a decision (``_requote``),
a trade in a market where an order of ours rests (``_trade``), a frame of another kind (``_frame``,
``_routed``: snapshots, gaps, lifecycle), the pick-off hazard, housekeeping, progress. Those steps
are the engine's own Python code (no second implementation of quoting); the tests hold this loop to
the very same fills, orders, summary, decision latencies and tape as the Python fast path and the
reference path.

Times are int ns, prices 1e-4 $, as everywhere in kmm.
"""

cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, INT64_MIN
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from kmm._core._types cimport px_t, qty_t
from kmm._core.book cimport OrderBook
from kmm._core.pipeline cimport Pipeline
from kmm._core.fillsim cimport SimOrder
from kmm._core.wire cimport BookRouter, FEED_DELTA, FEED_SNAPSHOT
from kmm._core.wire cimport _Market as _RouterMarket

import gc as _gc
import time as _time
from heapq import heappop as _heappop, heappush as _heappush

# the fill simulator's virtual order (compiled in kmm._core.fillsim; the replay's steps read its fields)
from kmm._core import fillsim as _fillsim
globals()["SimOrder"] = _fillsim.SimOrder

# the replay cache's record kinds (kmm.research.replaycache)
cdef enum:
    K_OTHER = 0
    K_TICKER = 1
    K_FEED = 2
    K_TRADE = 3
    K_OWN = 4       # a book delta of the recorded run's own order, decoded
    K_REPORT = 5    # the recorded run's own order, fill or position message
    K_IGNORE = 6    # a frame the driver reads nothing from (no branch: the clock, events, housekeeping only)

cdef int64_t NS_PER_S = 1_000_000_000


cdef inline int64_t _ms(int64_t ns) noexcept:
    # ns // 1_000_000 as Python floors it (the module is built with C division, which truncates)
    cdef int64_t q = ns // 1_000_000
    if ns % 1_000_000 < 0:
        q -= 1
    return q


@cython.final
cdef class ReplayClock:
    """The engine's ``Clock`` on the replay: monotonic = the capture's receive time (ns), wall = its
    recorded wall time (``mono + wall_offset``, ns)."""

    cdef public int64_t mono
    cdef public int64_t wall_offset

    def __init__(self):
        self.mono = 0
        self.wall_offset = 0

    def monotonic_ns(self):
        return self.mono

    def time_ns(self):
        return self.mono + self.wall_offset


@cython.final
cdef class EventHeap:
    """The replay's timed events (request arrivals and answers, the limiter's timer, the quote window's
    end): ``Backtest._at`` and ``Backtest._run_events`` compiled (plain-Python reference: those methods,
    which a ``Backtest`` with ``compiled_events = False`` runs; tests/research/test_replay_speed.py holds
    the two to the same replay). ``events`` is the driver's list, a heap of ``(t, seq, fn, args)``: the
    same tuples in the same order (``seq`` breaks ties in the order the events were made)."""

    cdef public list events
    cdef public int64_t seq
    cdef ReplayClock clock

    def __init__(self, ReplayClock clock, list events):
        self.clock = clock
        self.events = events
        self.seq = 0

    def at(self, int64_t t, fn, *args):
        """``fn(*args)`` at ``t`` (ns, the replay's monotonic clock)."""
        self.seq += 1
        _heappush(self.events, (t, self.seq, fn, args))

    def run(self, int64_t until):
        """Every event due at or before ``until``, in order; the clock moves to each event's time
        (never back)."""
        self._run(until)

    cdef int _run(self, int64_t until) except -1:
        cdef list ev = self.events
        cdef ReplayClock clock = self.clock
        cdef tuple item
        cdef int64_t t
        while PyList_GET_SIZE(ev) and <int64_t>(<tuple>PyList_GET_ITEM(ev, 0))[0] <= until:
            item = _heappop(ev)
            t = item[0]
            if t > clock.mono:
                clock.mono = t
            item[2](*<tuple>item[3])
        return 0


@cython.final
cdef class _Leave:
    # what the write queue calls when a waiting request's tokens are granted (Backtest._depart's lambda)
    cdef RequestFlow flow
    cdef object pipe, act, args
    cdef int64_t trigger

    def __call__(self):
        self.flow._leave(self.pipe, self.act, self.args, self.trigger)


@cython.final
cdef class _NotSent:
    # what the write queue calls when it drops a waiting request (Backtest._depart's other lambda)
    cdef object not_sent, pipe, act, args

    def __call__(self, exc):
        self.not_sent(self.pipe, self.act, self.args)


cdef inline int _in_flight_add(object pipe, int64_t n) except -1:
    # pipe.in_flight += n (MarketPipeline's property: its compiled core's field)
    core = getattr(pipe, "core", None)
    if isinstance(core, Pipeline):
        (<Pipeline>core).in_flight += n
    else:
        pipe.in_flight += n
    return 0


@cython.final
cdef class RequestFlow:
    """A request's way through the replay, compiled: ``Backtest._send``, ``_depart``, ``_dispatch``,
    ``_leave``, ``_arrive`` and ``_answer`` (their plain-Python reference: those methods, which a
    ``Backtest`` with ``compiled_requests = False`` runs; tests/research/test_replay_speed.py holds
    the two to the same replay). The same steps in the same order on the same objects: the write
    queue's submit and dispatch, the limiter's timer (``dispatch_at``), the latency draws from the
    replay's ``rng`` (a constant latency, which draws nothing, read once), the timed events on the
    driver's :class:`EventHeap`, the exchange's act and its answer, the decision after the last answer."""

    cdef object bt
    cdef ReplayClock clock
    cdef EventHeap heap
    cdef object wq                  # the replay's write queue (None: no rate limit)
    cdef object d_entry, d_feed, d_resp      # the latency model's distributions
    cdef int64_t c_entry, c_feed, c_resp    # their constant, or -1: drawn
    cdef list latencies             # Backtest.decision_latency_ns
    cdef public int64_t dispatch_at     # Backtest._dispatch_at: the limiter's timer (0: none set)
    cdef Decider dec                # the compiled decision step once a compiled replay made one (else bt._requote)

    def __init__(self, bt, EventHeap heap):
        self.bt = bt
        self.clock = bt.clock
        self.heap = heap
        self.wq = bt._writeq
        lat = bt.latency
        self.d_entry, self.d_feed, self.d_resp = lat.entry, lat.feed, lat.response
        self.c_entry = self.d_entry.value_ns if self.d_entry.kind == "const" else -1
        self.c_feed = self.d_feed.value_ns if self.d_feed.kind == "const" else -1
        self.c_resp = self.d_resp.value_ns if self.d_resp.kind == "const" else -1
        self.latencies = bt.decision_latency_ns
        self.dispatch_at = 0

    cdef inline int64_t _draw(self, object d, int64_t c) except? -1:
        if c >= 0:
            return c            # Dist.draw of a constant: its value, no draw from the rng
        return d.draw(self.bt.rng)

    def send(self, pipe, bint first, int64_t trigger, int lane, act, *args):
        """``Backtest._send``."""
        _in_flight_add(pipe, 1)
        self._depart(pipe, lane, act, args, trigger if first else -1)

    def depart(self, pipe, int lane, act, tuple args, int64_t trigger=-1):
        """``Backtest._depart``."""
        self._depart(pipe, lane, act, args, trigger)

    cdef int _depart(self, object pipe, int lane, object act, tuple args, int64_t trigger) except -1:
        cdef _Leave on_grant
        cdef _NotSent on_drop
        if self.wq is not None:
            on_grant = _Leave.__new__(_Leave)
            on_grant.flow = self
            on_grant.pipe = pipe
            on_grant.act = act
            on_grant.args = args
            on_grant.trigger = trigger
            on_drop = _NotSent.__new__(_NotSent)
            on_drop.not_sent = self.bt._not_sent
            on_drop.pipe = pipe
            on_drop.act = act
            on_drop.args = args
            if not self.wq.submit(lane, 2 if lane == 0 else 10, pipe.ticker, on_grant, on_drop):   # 0: CANCEL
                self.bt.rate_waits += 1
                self._dispatch()
                return 0
        self._leave(pipe, act, args, trigger)
        return 0

    def dispatch(self):
        """``Backtest._dispatch``: the limiter's timer."""
        self._dispatch()

    cdef int _dispatch(self) except -1:
        cdef int64_t now = self.clock.mono, t, w
        if self.dispatch_at and self.dispatch_at <= now:
            self.dispatch_at = 0
        wait = self.wq.dispatch()
        if wait is not None:
            w = wait
            t = now + (w if w > 1 else 1)
            if not self.dispatch_at or t < self.dispatch_at:
                self.dispatch_at = t
                self.heap.at(t, self.dispatch)
        return 0

    def leave(self, pipe, act, tuple args, int64_t trigger):
        """``Backtest._leave``."""
        self._leave(pipe, act, args, trigger)

    cdef int _leave(self, object pipe, object act, tuple args, int64_t trigger) except -1:
        cdef int64_t now = self.clock.mono, entry, arrive, answer, r
        if trigger >= 0:
            self.latencies.append(now - trigger)
            if self.bt.recorder is not None:
                self.bt._tape(pipe, "decision", latency_ns=now - trigger)
        entry = self._draw(self.d_entry, self.c_entry)
        arrive = now + entry + self._draw(self.d_feed, self.c_feed)
        r = now + entry + self._draw(self.d_resp, self.c_resp)
        answer = arrive if arrive >= r else r
        self.heap.at(arrive, self.arrive, pipe, answer, act, args)
        return 0

    def arrive(self, pipe, int64_t answer, act, tuple args):
        """``Backtest._arrive``: the request acts at the exchange; its answer comes back at ``answer``."""
        result = act(*args)
        self.heap.at(answer, self.answer, pipe, result)

    def answer(self, pipe, result):
        """``Backtest._answer``."""
        bt = self.bt
        if self.dec is not None:
            self.dec._touch(pipe.ticker)
        else:
            bt._touch(pipe.ticker)
        result()
        _in_flight_add(pipe, -1)
        if pipe.in_flight:
            return
        if not pipe.ready or not bt.quoting:
            bt._pull(pipe, "not quotable")
            return
        if pipe.dirty:
            if self.dec is not None:
                self.dec._requote(pipe, self.clock.mono, None)
            else:
                bt._requote(pipe, self.clock.mono)


@cython.final
cdef class Decider:
    """The driver's decision and fill glue, compiled: ``Backtest._requote``, ``_apply`` (with the
    requests started on the compiled :class:`RequestFlow`), ``_on_fill``, ``_after_pnl_change`` and
    ``_deliver_held`` (their plain-Python reference: those methods, which the Python fast loop and the
    reference path run, and a compiled replay with ``Backtest.compiled_decisions = False``). The same
    steps in the same order on the same engine objects (the risk gate, the order manager, the quote
    planner, the portfolio, the pipeline's ``decide``): only the driver's own glue between them is in
    C. ``Backtest`` takes its methods in place of its own for a compiled replay."""

    cdef object bt
    cdef ReplayClock clock
    cdef RequestFlow flow           # None: the driver's _send
    cdef object gate, om, pf, planner, event_risk, limiter, sim
    cdef dict pipes, mgen, held
    cdef set reads_trades       # the markets whose pipeline reads trades (its kappa estimate)
    cdef set inline_decide      # the markets whose MarketPipeline.decide is only its compiled core's
    cdef list fills
    cdef readonly object x_place, x_cancel, x_decrease, x_amend     # the acts the decisions send
    cdef object tripped, armed, small_reprices
    cdef object k_place, k_cancel, k_decrease
    cdef int lane_place, lane_cancel, lane_amend
    cdef double reprice_pressure
    cdef object btmod           # kmm.research.backtest (its _new_ack, read when used)

    def __init__(self, bt):
        from kmm._core import diff as _diff
        from kmm.engine.quoting import small_reprices_only
        from kmm.engine.risk import KillState
        from kmm.kalshi import limiter as _lim
        self.bt = bt
        self.clock = bt.clock
        f = bt._flow
        self.flow = f if isinstance(f, RequestFlow) else None
        self.gate = bt.gate
        self.om = bt.om
        self.pf = bt.pf
        self.planner = bt.planner
        self.event_risk = bt.event_risk
        self.limiter = bt.limiter
        self.sim = bt.sim
        self.pipes = bt.pipes
        self.reads_trades = {t for t, p in bt.pipes.items() if p.params.kappa_estimate}
        from kmm.engine.market import MarketPipeline
        self.inline_decide = {t for t, p in bt.pipes.items()
                              if type(p).decide is MarketPipeline.decide and p.compiled and isinstance(p.core, Pipeline)}
        self.mgen = bt._mgen
        self.held = bt._held
        self.fills = bt.fills
        self.x_place, self.x_cancel = bt._x_place, bt._x_cancel
        self.x_decrease, self.x_amend = bt._x_decrease, bt._x_amend
        self.tripped, self.armed = KillState.TRIPPED, KillState.ARMED
        self.small_reprices = small_reprices_only
        self.k_place, self.k_cancel, self.k_decrease = _diff.PLACE, _diff.CANCEL, _diff.DECREASE
        self.lane_place, self.lane_cancel, self.lane_amend = _lim.PLACE, _lim.CANCEL, _lim.AMEND
        self.reprice_pressure = bt.reprice_pressure
        import kmm.research.backtest as btmod
        self.btmod = btmod
        if bt.compiled_decisions and bt._original("_x_place", "_x_cancel", "_x_decrease", "_x_amend",
                                                  "_place_records", "_not_sent"):
            # the requests' acts and answers too (Backtest takes them in place of its own, so that its
            # _not_sent knows a place)
            self.x_place, self.x_cancel = self.act_place, self.act_cancel
            self.x_decrease, self.x_amend = self.act_decrease, self.act_amend
        if self.flow is not None:
            self.flow.dec = self

    cdef inline int _touch(self, object ticker) except -1:
        # Backtest._touch: the market's kept live orders are stale (the generation stays on the driver,
        # which its Python steps move on too)
        bt = self.bt
        g = bt._gen + 1
        bt._gen = g
        self.mgen[ticker] = g
        return 0

    def requote(self, pipe, int64_t trigger, live=None):
        """``Backtest._requote``."""
        self._requote(pipe, trigger, live)

    cdef int _requote(self, object pipe, int64_t trigger, object live) except -1:
        bt = self.bt
        if not bt.quoting:
            return 0
        core = pipe.core                # in_flight and hold_until_ns live there
        cdef Pipeline pc = core if isinstance(core, Pipeline) else None
        cdef int64_t hold
        if (pc.in_flight if pc is not None else core.in_flight):
            pipe.dirty = True
            return 0
        if bt._window and bt._outside_window(pipe):
            return 0
        cdef int64_t now = self.clock.mono
        hold = pc.hold_until_ns if pc is not None else core.hold_until_ns
        if hold and now < hold:
            pipe.dirty = True
            return 0
        t = pipe.ticker
        d = self.gate.is_quotable(t)
        if live is None:
            live = self.om.live_orders(t)
        if not d:
            pipe.state = d.reason
            if live:
                bt._pull(pipe, d.reason)
            if self.gate.kill_state is self.tripped:
                bt._kill_sweep()
            return 0
        for o in live:
            if not o.actionable:
                pipe.dirty = True
                return 0
        pipe.dirty = False
        inv = self.event_risk.quote_inventory(t)
        if pc is not None and t in self.inline_decide:
            # MarketPipeline.decide of a compiled pipeline, inline: the core's decide with the alpha skew
            alpha = 0.0 if pipe._alpha_zero else pipe.alpha.get_external_skew(t)
            actions = pc.decide(inv, live, alpha)
        else:
            actions = pipe.decide(inv, live)
        pipe.state = "quoting"
        if actions:
            # Backtest._small_reprices_only
            if self.limiter is not None and self.limiter.pressure() > self.reprice_pressure \
                    and self.small_reprices(self.om, actions, pipe.skip_reprice_px):
                bt.skipped_reprices += 1
                return 0
            bt.decisions += 1
            pipe.trigger_ns = trigger
            pipe.decided_ns = now
            self._apply(pipe, actions, trigger)
        return 0

    def apply(self, pipe, actions, int64_t trigger):
        """``Backtest._apply``."""
        self._apply(pipe, actions, trigger)

    cdef int _send(self, object pipe, bint first, int64_t trigger, int lane, object act, tuple args) except -1:
        # Backtest._send on the compiled request flow (or the driver's own)
        if self.flow is not None:
            _in_flight_add(pipe, 1)
            self.flow._depart(pipe, lane, act, args, trigger if first else -1)
        else:
            self.bt._send(pipe, first, trigger, lane, act, *args)
        return 0

    cdef int _apply(self, object pipe, object actions, int64_t trigger) except -1:
        bt = self.bt
        t = pipe.ticker
        self._touch(t)
        cdef bint first = True
        cdef tuple step
        for step in self.planner.plan(t, actions):
            kind = step[0]
            if kind == self.k_place:
                o, side, price, size = step[1], step[2], step[3], step[4]
                rec = bt.recorder
                if rec is not None:
                    rec.store.record_order(status="pending", client_order_id=o.client_order_id, ticker=t,
                                           side=side, price=price, count=size, strategy=bt.cfg.run.strategy,
                                           reason="quote", ts_ns=self.clock.mono + self.clock.wall_offset)
                bt.orders_sent += 1
                self._send(pipe, first, trigger, self.lane_place, self.x_place,
                           (o.client_order_id, t, side, price, size))
            elif kind == self.k_cancel:
                bt.cancels_sent += 1
                self._send(pipe, first, trigger, self.lane_cancel, self.x_cancel, (step[1],))
            elif kind == self.k_decrease:
                bt.decreases_sent += 1
                self._send(pipe, first, trigger, self.lane_amend, self.x_decrease, (step[1], step[2]))
            else:   # AMEND: the new total (filled + remaining) as known when sent
                bt.amends_sent += 1
                self._send(pipe, first, trigger, self.lane_amend, self.x_amend,
                           (step[1].order_id, step[3], int(step[5].pending_count)))
            first = False
        return 0

    def on_fill(self, f):
        """``Backtest._on_fill``."""
        self._on_fill(f)

    cdef int _on_fill(self, object f) except -1:
        t = f.ticker
        self._touch(t)
        self.om.on_fill(f)
        if not self.pf.apply_fill(f):
            return 0
        self.fills.append(f)
        pipe = self.pipes.get(t)
        if pipe is not None:
            pipe.fills += 1
            if t in self.reads_trades:      # MarketPipeline.on_trade does nothing in the others
                pipe.on_trade(f.price)
        bt = self.bt
        if bt.recorder is not None:
            bt._fill_records(f, pipe)
        self._after_pnl_change()
        if pipe is not None and pipe.ready:
            self._requote(pipe, self.clock.mono, None)
        return 0

    def after_pnl_change(self):
        """``Backtest._after_pnl_change``."""
        self._after_pnl_change()

    cdef int _after_pnl_change(self) except -1:
        gate = self.gate
        was = gate.kill_state
        if gate.update_pnl() is self.tripped:
            for p in self.pipes.values():
                p.state = "killed"
                p.dirty = True
            self.bt._kill_sweep()
        elif was is not self.armed and gate.kill_state is self.armed:
            for p in self.pipes.values():
                if p.ready:
                    self._requote(p, self.clock.mono, None)
        return 0

    # ---- what each request does at the exchange (Backtest._x_place, ...): the simulator's step now,
    # and what its answer does here (a callable the request flow calls when the answer comes back)
    def act_place(self, coid, t, side, price, count):
        """``Backtest._x_place``."""
        ack, so, fills = self.sim.place(self.clock.mono, _ms(self.clock.mono + self.clock.wall_offset), t, side,
                                        price, count, coid, post_only=True)
        cdef _PlaceAnswer a = _PlaceAnswer.__new__(_PlaceAnswer)
        a.dec, a.ack, a.so, a.fills, a.coid, a.t = self, ack, so, fills, coid, t
        return a

    def act_cancel(self, oid):
        """``Backtest._x_cancel``."""
        reduced = self.sim.cancel(self.clock.mono, _ms(self.clock.mono + self.clock.wall_offset), oid)
        cdef _CancelAnswer a = _CancelAnswer.__new__(_CancelAnswer)
        a.dec, a.oid, a.reduced = self, oid, reduced
        return a

    def act_decrease(self, oid, reduce_to):
        """``Backtest._x_decrease``."""
        so = self.sim.decrease(self.clock.mono, _ms(self.clock.mono + self.clock.wall_offset), oid, reduce_to)
        cdef _DecreaseAnswer a = _DecreaseAnswer.__new__(_DecreaseAnswer)
        a.dec, a.oid, a.so = self, oid, so
        return a

    def act_amend(self, oid, price, count):
        """``Backtest._x_amend``: ``count`` is the amend's new total, as the live connector sends it."""
        so0 = self.sim.orders.get(oid)
        remaining = count - (so0.filled if so0 is not None else 0)
        cdef _AmendAnswer a = _AmendAnswer.__new__(_AmendAnswer)
        a.dec, a.oid = self, oid
        if remaining <= 0:      # filled past the new total on the way: Kalshi refuses it (invalid_count)
            a.so, a.refused, a.fills = so0, "invalid_count", []
        else:
            a.so, a.refused, a.fills = self.sim.amend(self.clock.mono, _ms(self.clock.mono + self.clock.wall_offset),
                                                      oid, price, remaining)
        return a

    def housekeeping(self, int64_t now):
        """``Backtest._housekeeping``."""
        self._housekeeping(now)

    cdef int _housekeeping(self, int64_t now) except -1:
        bt = self.bt
        bt._next_house = now + <int64_t>(<double>bt.opt.housekeeping_s * 1e9)
        sim = self.sim
        sim.expire_all(now)
        po = sim.pickoff
        cdef int64_t wall_ms
        if po is not None and po.active:     # the pick-off hazard runs between sparse book messages too
            if self.held:
                self._deliver_held()
            wall_ms = _ms(self.clock.mono + self.clock.wall_offset)
            markets = sim.markets
            for t, p in self.pipes.items():
                if p.ready and markets[t].orders:
                    for f in bt._after_event(now, wall_ms, t):
                        self._on_fill(f)
        self._after_pnl_change()
        if self.gate.kill_state is self.tripped:
            bt._kill_sweep()
        for p in self.pipes.values():
            hold = p.hold_until_ns
            if hold and p.dirty and p.ready and now >= hold:
                p.hold_until_ns = 0
                self._requote(p, now, None)
        if bt.recorder is not None:
            bt._house_records(now)
        return 0

    def deliver_held(self):
        """``Backtest._deliver_held``."""
        self._deliver_held()

    cdef int _deliver_held(self) except -1:
        held = list(self.held.values())
        self.held.clear()
        self.sim.end_sweeps()
        for f in held:
            self._on_fill(f)
        return 0


@cython.final
cdef class _PlaceAnswer:
    # Backtest._x_place's answer
    cdef Decider dec
    cdef object ack, so, fills, coid, t

    def __call__(self):
        cdef Decider dec = self.dec
        bt = dec.bt
        ack = self.ack
        dec.om.on_ack(ack)
        for f in self.fills:
            dec._on_fill(f)
        if bt.recorder is not None:
            bt._place_records(self.coid, ack, self.so)
        t = self.t
        if ack.remaining_count and (not bt.quoting or not dec.pipes[t].ready or not dec.gate.is_quotable(t)):
            if dec.om.request_cancel(ack.order_id) is not None:
                bt.cancels_sent += 1
                dec._send(dec.pipes[t], False, dec.clock.mono, dec.lane_cancel, dec.x_cancel, (ack.order_id,))


@cython.final
cdef class _CancelAnswer:
    # Backtest._x_cancel's answer
    cdef Decider dec
    cdef object oid, reduced

    def __call__(self):
        cdef Decider dec = self.dec
        dec.om.on_cancel_ack(self.oid, self.reduced)
        dec.pf.forget_order(self.oid)
        rec = dec.bt.recorder
        if rec is not None:
            rec.store.record_order(status="canceled", order_id=self.oid,
                                   ts_ns=dec.clock.mono + dec.clock.wall_offset)


@cython.final
cdef class _DecreaseAnswer:
    # Backtest._x_decrease's answer
    cdef Decider dec
    cdef object oid, so

    def __call__(self):
        if self.so is None:     # as before: the replay sends no user_order that would settle an unsure order
            self.dec.om.on_request_failed(self.oid, "order_not_found", gone=True, may_have_filled=False)
        else:
            self.dec.om.on_decrease_ack(self.oid, self.so.remaining)


@cython.final
cdef class _AmendAnswer:
    # Backtest._x_amend's answer
    cdef Decider dec
    cdef object oid, so, refused, fills

    def __call__(self):
        cdef Decider dec = self.dec
        for f in self.fills:
            dec._on_fill(f)
        so, refused = self.so, self.refused
        if refused is not None or so is None:
            dec.om.on_request_failed(self.oid, refused or "order_not_found", gone=refused == "order_not_found",
                                     may_have_filled=False)
        else:
            dec.om.on_amend_ack(dec.btmod._new_ack(so.order_id, so.coid, so.filled, so.remaining, so.updated_ms))


@cython.final
cdef class _Market:
    # one market as the loop sees it (Backtest._fast_markets' tuple, typed)
    cdef str ticker
    cdef object pipe           # kmm.engine.market.MarketPipeline
    cdef dict orders           # the fill simulator's resting orders of the market (lives as long as the replay)
    cdef Pipeline core         # the compiled pipeline when its on_book is only that call, else None
    cdef Pipeline state        # the pipeline's compiled core, always (where MarketPipeline.in_flight lives)
    cdef object gm             # the risk gate's state of the market
    cdef bint reads_trades     # the pipeline's kappa estimate reads trades
    cdef bint has_mark         # the portfolio's mark was set by this loop: (mark_bid, mark_ask), 0 = None
    cdef dict live_own         # the fill simulator's recorded-run sizes per level of the market (_Market.live_own)
    cdef int64_t mark_bid, mark_ask


@cython.final
cdef class _HzMarket:
    # one market as the pick-off hazard sees it
    cdef dict orders           # the fill simulator's resting orders of the market
    cdef OrderBook book        # its replay book
    cdef object rates          # the pick-off model's rates for the market (PickoffModel.rate's table)


cdef enum:
    _LOOK_DEEPER = 8           # FillSimulator._others_mid looks this many levels past an all-ours best level


@cython.final
cdef class PickoffHazard:
    """``FillSimulator.after_event`` of a replay with an active pick-off model and no fitting pass,
    compiled: the same steps on the same objects in the same order (each resting order's hazard
    clock, accumulated hazard and rate on the ``SimOrder``, the same draws from the simulator's
    ``rng``, the same statistics, fills made by ``FillSimulator._maker_fill``), with the others' mid
    read from the compiled book in C and an order that is not stale, was not stale and has no draw
    due costing a few attribute reads. ``after_event(now, wall_ms, ticker)`` is a drop-in for the
    simulator's method (plain-Python reference: the method itself; tests/core/test_pickoff_hazard.py).
    A market whose book is not the compiled ``OrderBook`` takes the simulator's own method."""

    cdef object sim
    cdef object po
    cdef object stats
    cdef dict by_ticker
    cdef dict markets          # ticker -> _HzMarket
    cdef bint always
    cdef double min_cents
    cdef Py_ssize_t top_bucket

    def __init__(self, sim, dict rates, int buckets):
        """``rates``: ticker -> ``po.rates.get(ticker) or po.rates.get(ALL)`` (what ``after_event``
        looks up on every call; the model does not change during a replay); ``buckets``:
        ``kmm.research.adverse.BUCKETS``."""
        po = sim.pickoff
        if po is None or not po.active or sim.fit is not None:
            raise ValueError("PickoffHazard: the simulator needs an active pick-off model and no fitting pass")
        self.sim = sim
        self.po = po
        self.stats = sim.stats
        self.by_ticker = sim.pickoff_by_ticker
        self.always = po.kind == "always"
        self.min_cents = po.min_cents
        self.top_bucket = buckets - 1
        self.markets = {}
        cdef _HzMarket hm
        for t, m in sim.markets.items():
            if isinstance(m.book, OrderBook):
                hm = _HzMarket()
                hm.orders = m.orders
                hm.book = m.book
                hm.rates = rates.get(t)
                self.markets[t] = hm

    cdef bint _others_mid(self, _HzMarket hm, double* mid) except -1:
        """``FillSimulator._others_mid`` with orders resting: False when a side has none of others'."""
        cdef OrderBook book = hm.book
        cdef px_t bid = book._best_px(0)          # -1: empty (None in the simulator)
        cdef px_t nob = book._best_px(1)
        cdef px_t ask = 10000 - nob if nob >= 0 else -1
        cdef px_t nask = 10000 - ask if ask >= 0 else -1
        cdef SimOrder o
        cdef int64_t own_bid = 0, own_ask = 0
        cdef int64_t bp
        for o in hm.orders.values():
            bp = o.bprice
            if o.bside == 0:
                if bp == bid:
                    own_bid += <int64_t>o.remaining
            elif bp == nask:
                own_ask += <int64_t>o.remaining
        if bid >= 0 and book._best_sz(0) <= own_bid:
            bid = self._deeper(hm, 0)
        if ask >= 0 and book._best_sz(1) <= own_ask:
            nob = self._deeper(hm, 1)
            ask = 10000 - nob if nob >= 0 else -1
        if bid < 0 or ask < 0:
            return False
        mid[0] = <double>(bid + ask) / 2
        return True

    cdef px_t _deeper(self, _HzMarket hm, int side) except -2:
        """The best level of ``side`` (its own terms) among the first eight where others rest, -1 none."""
        cdef px_t px[_LOOK_DEEPER]
        cdef qty_t sz[_LOOK_DEEPER]
        cdef Py_ssize_t i, n = hm.book._top_levels(side, _LOOK_DEEPER, px, sz)
        cdef int64_t own
        cdef SimOrder o
        for i in range(n):
            own = 0             # FillSimulator._own_at
            for o in hm.orders.values():
                if o.bside == side and o.bprice == px[i]:
                    own += <int64_t>o.remaining
            if sz[i] - own > 0:
                return px[i]
        return -1

    cpdef list after_event(self, int64_t now, int64_t wall_ms, str ticker):
        cdef _HzMarket hm = self.markets.get(ticker)
        if hm is None:
            return self.sim.after_event(now, wall_ms, ticker)
        cdef dict orders = hm.orders
        cdef list fills = []
        if not orders:
            return fills
        cdef double mid = 0.0, d, rate, acc, new_rate
        cdef bint has_mid = self._others_mid(hm, &mid)
        cdef bint always = self.always, fire
        cdef double min_cents = self.min_cents
        cdef int64_t hz_t, stale = 0, remaining, size, q, price
        cdef Py_ssize_t b
        cdef SimOrder o
        rates = hm.rates
        rng = self.sim.rng
        for o in list(orders.values()):
            hz_t = o.hz_t
            rate = o.hz_rate
            if hz_t < 0:
                o.hz_t = now
                o.hz_need = rng.expovariate(1.0)
            elif now > hz_t:
                # a zero rate adds 0.0 (the accumulated hazard, never negative, stays the same float):
                # the write is skipped, as the rate's below when it does not change (session 10)
                if rate != 0.0:
                    o.hz_acc = <double>o.hz_acc + rate * <double>(now - hz_t)
                if rate > 0 or always:
                    stale += now - hz_t
                o.hz_t = now
            # bucket_of(staleness(...)), as the simulator inlines it: the same arithmetic
            if not has_mid:
                b = -1
            else:
                price = o.price
                if o.side == "bid":
                    d = (<double>price - mid) / 100
                else:
                    d = (mid - <double>price) / 100
                if d < min_cents:
                    b = -1
                else:
                    b = <Py_ssize_t>((d - min_cents) * 2 + 1e-9)
                    if b > self.top_bucket:
                        b = self.top_bucket
            if always:
                fire = b >= 0
                size = o.remaining
            else:
                # only an interval that was stale (a rate) fires; the draw's excess carries over
                # (research/fills.py, FillSimulator.after_event)
                acc = o.hz_acc
                fire = acc >= <double>o.hz_need and <double>o.hz_rate > 0
                if fire:
                    pool = self.po.size_pool(ticker)
                    size = pool[rng.randrange(len(pool))]
                else:
                    size = 0
            if fire:
                remaining = o.remaining
                if remaining > 0:
                    o.hz_acc = 0.0 if always else <double>o.hz_acc - <double>o.hz_need
                    o.hz_need = rng.expovariate(1.0)
                    q = remaining if remaining < size else size
                    stats = self.stats
                    stats.pickoff_fills += 1
                    self.by_ticker[ticker] = self.by_ticker.get(ticker, 0) + 1
                    stats.pickoff_contracts += q
                    fills.append(self.sim._maker_fill(o, q, now, wall_ms))
                    if o.remaining <= 0:
                        continue
                    rate = o.hz_rate
            if b >= 0 and rates:
                new_rate = rates[b] / 1e9
            else:
                new_rate = 0.0
            if new_rate != rate:
                o.hz_rate = new_rate
        if stale:
            self.stats.stale_ns += stale
        return fills


cpdef bint trade_reaches(dict orders, bint maker_ask, int64_t price) except -1:
    """Whether a public trade at YES ``price`` does anything to the resting orders ``orders`` (the fill
    simulator's ``order_id -> SimOrder``) of its market, ``maker_ask``: the taker bought (the trade
    met asks). As ``FillSimulator.on_trade`` reads them: an order on the maker side with size left
    is touched when it has level decreases pending (they expire first), stands at the price (the
    queue moves) or is passed by it (filled). False: the simulator would return no fill and change
    no order (plain-Python reference: tests/reference/replay.py)."""
    cdef int64_t p
    cdef SimOrder o
    side = "ask" if maker_ask else "bid"
    for o in orders.values():
        if o.side != side or o.remaining <= 0:
            continue
        if o.pend:
            return True
        p = o.price
        if p == price or (maker_ask and price > p) or (not maker_ask and price < p):
            return True
    return False


cpdef bint upkeep_moves(dict orders, int level) except -1:
    """Whether ``FillSimulator.on_book_change`` after a delta at ``level`` (``side << 16 | price``,
    -1 unknown) can change any of ``orders``: the level is unknown or one of ours, or some order has
    level decreases pending (they may expire) or more estimated in front than is visible (the front
    is capped). False: the upkeep would change nothing (plain-Python reference:
    tests/reference/replay.py)."""
    if level < 0:
        return True
    cdef int bside = level >> 16
    cdef int bprice = level & 0xFFFF
    cdef SimOrder o
    for o in orders.values():
        if o.bprice == bprice and o.bside == bside:
            return True
    for o in orders.values():
        if o.pend or o.ahead > o.seen:
            return True
    return False


@cython.final
cdef class ReplayLoop:
    """One replay's loop (``Backtest(fast=True)``): ``run(files, sizes)`` replays every capture file
    and returns ``(last_recv, start_wall, end_wall)``; ``on_book`` is the driver's book step
    (``Backtest._on_book_fn``) for the frames the Python driver routes itself (snapshots, corrected
    markets)."""

    cdef object bt
    cdef ReplayClock clock
    cdef BookRouter router
    cdef object router_py       # the router when it is not the compiled BookRouter (a baseline core)
    cdef list ev
    cdef EventHeap heap         # the driver's compiled event heap when its _run_events is that heap's run
    cdef dict held
    cdef object sim
    cdef object om
    cdef object pf
    cdef dict live_cache
    cdef dict mgen              # ticker -> the generation of the market's orders (Backtest._touch)
    cdef dict marks
    cdef dict markets           # ticker -> _Market
    cdef set corrected
    cdef bint pick_on
    cdef PickoffHazard hazard   # the compiled pick-off step (None: the simulator's after_event)
    cdef object reaction_ids
    cdef bint quoting_trades
    cdef bint book_only
    cdef bint fit_pass
    cdef bint check_live_cache
    cdef bint check_levels      # tests: the simulator checks our levels on every upkeep call (never skipped)
    cdef bint compiled_trades   # Backtest.compiled_trades: a trade that reaches our orders takes _trade_reaching
    cdef int64_t sweep_ns       # kmm.research.backtest.SWEEP_NS
    cdef bint own_inline        # Backtest.compiled_own and the simulator's own apply_recorded_delta: done here
    cdef object sim_stats       # the simulator's FillStats
    cdef bint keep_outcomes
    cdef dict trade_outcomes
    # bound methods of the driver
    cdef object deliver_held, run_events, trade, routed, slow_delta, frame_fn, housekeeping
    cdef object requote, on_fill, after_event, on_book_change, progress
    cdef Decider dec            # the driver's compiled decision and fill steps (None: its methods above)
    cdef bint dec_house         # and its housekeeping (the driver's _housekeeping is that step)
    # loop state
    cdef int64_t shift, last, next_house
    cdef int64_t start_wall, end_wall    # valid once has_wall (no Python int made per record)
    cdef bint has_wall
    cdef public int64_t frames
    cdef public int64_t book_messages   # counted here (the driver's own steps count theirs on it)

    def __init__(self, bt):
        self.bt = bt
        self.clock = bt.clock
        r = bt.router
        self.router = r if isinstance(r, BookRouter) else None
        self.router_py = r
        self.ev = bt.events
        h = getattr(bt, "_heap", None)
        self.heap = h if isinstance(h, EventHeap) and bt._run_events == h.run else None
        self.held = bt._held
        self.sim = bt.sim
        self.om = bt.om
        self.pf = bt.pf
        self.live_cache = bt._live_cache
        self.mgen = bt._mgen
        self.marks = bt._marks
        self.corrected = bt.sim.corrected
        self.book_only = bt.opt.book_only
        self.fit_pass = bt.fit_pass
        self.check_live_cache = bt.check_live_cache
        self.check_levels = bt.sim.check_levels
        self.compiled_trades = bt.compiled_trades and bt._own("_trade")
        from kmm.research.backtest import SWEEP_NS     # the driver's (loaded: it made this loop)
        self.sweep_ns = SWEEP_NS
        from kmm.research.fills import FillSimulator
        meth = getattr(bt.sim, "apply_recorded_delta", None)
        self.own_inline = bool(bt.compiled_own) and \
            getattr(meth, "__func__", None) is FillSimulator.apply_recorded_delta
        self.sim_stats = bt.sim.stats
        self.keep_outcomes = bt.sim.keep_outcomes
        self.trade_outcomes = bt.sim.trade_outcomes
        self.deliver_held = bt._deliver_held
        self.run_events = bt._run_events
        self.trade = bt._trade
        self.routed = bt._routed
        self.slow_delta = bt._slow_delta
        self.frame_fn = bt._frame
        self.housekeeping = bt._housekeeping
        self.requote = bt._requote
        self.on_fill = bt._on_fill
        self.after_event = bt.sim.after_event
        self.on_book_change = bt.sim.on_book_change
        self.progress = bt.progress
        d = getattr(bt, "_decider", None)
        self.dec = d if isinstance(d, Decider) and bt._requote == d.requote else None
        self.dec_house = self.dec is not None and bt._housekeeping == d.housekeeping
        self.markets = {}
        cdef _Market m
        for t, (pipe, orders, core, gm, reads) in bt._fast_markets.items():
            m = _Market()
            m.ticker = t
            m.pipe = pipe
            m.orders = orders
            m.core = core if isinstance(core, Pipeline) else None
            m.state = pipe.core if isinstance(getattr(pipe, "core", None), Pipeline) else None
            m.gm = gm
            m.reads_trades = bool(reads)
            m.has_mark = False
            m.live_own = bt.sim.markets[t].live_own
            kept = bt._marks.get(t)
            if kept is not None:
                m.has_mark = True
                m.mark_bid = kept[0] or 0
                m.mark_ask = kept[1] or 0
            self.markets[t] = m
        pick = bt.sim.pickoff
        self.pick_on = bool(bt._pickoff_on)
        self.hazard = bt._hazard
        self.reaction_ids = pick.reaction_ids if self.pick_on and pick is not None else frozenset()
        self.quoting_trades = not bt.fit_pass
        self.shift = 0
        self.last = 0
        self.next_house = bt._next_house
        self.start_wall = 0
        self.end_wall = 0
        self.has_wall = False
        self.frames = bt.frames
        self.book_messages = 0

    # ------------------------------------------------------------------ the driver's steps
    cdef inline int _held_out(self) except -1:
        if self.dec is not None:
            return self.dec._deliver_held()
        self.deliver_held()
        return 0

    cdef inline int _fill_in(self, object f) except -1:
        if self.dec is not None:
            return self.dec._on_fill(f)
        self.on_fill(f)
        return 0

    cdef inline int _decide(self, object pipe, int64_t recv, object live) except -1:
        # live: the market's live orders listed at this clock with no change to them since (the
        # reference path's _on_book hands its list on the same way), or None: listed afresh
        if self.dec is not None:
            return self.dec._requote(pipe, recv, live)
        self.requote(pipe, recv)
        return 0

    # ------------------------------------------------------------------ the book step
    def on_book(self, ticker, int64_t recv, int level=-1):
        """``Backtest._on_book_fast``: the same steps in the same order."""
        self._on_book(ticker, recv, level)

    cdef int _on_book(self, object ticker, int64_t recv, int level) except -1:
        cdef _Market mk = self.markets.get(ticker)
        if mk is None:
            return 0
        pipe = mk.pipe
        if not pipe.ready:
            return 0
        cdef ReplayClock clock = self.clock
        if self.fit_pass:
            self.after_event(recv, _ms(clock.mono + clock.wall_offset), ticker)
            return 0
        cdef dict orders = mk.orders
        if orders and (self.check_levels or upkeep_moves(orders, level)):
            self.on_book_change(recv, ticker, level)
        bt = self.bt
        gen = self.mgen[ticker]
        cached = self.live_cache.get(ticker)
        cdef bint fresh_list = False
        if cached is not None and (<tuple>cached)[0] == gen:
            live = (<tuple>cached)[1]
            if self.check_live_cache:
                fresh = self.om.live_orders(ticker)
                assert [o[:4] + o[5:] for o in live] == [o[:4] + o[5:] for o in fresh], (ticker, live, fresh)
        else:
            live = self.om.live_orders(ticker)
            self.live_cache[ticker] = (gen, live)
            fresh_list = True
        cdef int64_t wall = clock.mono + clock.wall_offset
        if mk.core is not None:         # MarketPipeline.on_book of a compiled pipeline, inline
            pipe.last_book_ns = recv
            if mk.core.book is not None:
                mk.core._signals(recv, wall, live)      # Pipeline.on_book's step, a C call
            else:
                mk.core.on_book(recv, wall, live)       # (which says there is no book yet)
        else:
            pipe.on_book(recv, wall, live)
        gm = mk.gm
        gm.book_stale = False           # RiskGate.on_book_update, inline: the book is fresh
        gm.last_book_ns = clock.mono
        cdef int64_t bb, ba
        if mk.core is not None:
            bb, ba = mk.core.best_bid, mk.core.best_ask
        else:
            inp = pipe.inputs
            bb, ba = inp.best_bid or 0, inp.best_ask or 0
        # only set_mark writes the marks: the same pair again is a no-op
        if not mk.has_mark or bb != mk.mark_bid or ba != mk.mark_ask:
            mk.has_mark = True
            mk.mark_bid, mk.mark_ask = bb, ba
            self.marks[ticker] = (bb or None, ba or None)
            self.pf.set_mark(ticker, bb or None, ba or None)
        if orders and self.pick_on:
            if self.hazard is not None:
                picked = self.hazard.after_event(recv, _ms(wall), ticker)
            else:
                picked = self.after_event(recv, _ms(wall), ticker)
            if picked:
                self._held_out()
                for f in picked:
                    self._fill_in(f)
                return 0
        # _requote's first answer, without the call (MarketPipeline.in_flight read from its core in C)
        if (mk.state.in_flight if mk.state is not None else pipe.in_flight) and bt.quoting:
            pipe.dirty = True
            return 0
        # listed just now and unchanged since (nothing between changes the order manager or the clock;
        # a pick-off fill returned above): the decision reads the same list; a kept one has older ages
        self._decide(pipe, recv, live if fresh_list else None)
        return 0

    # ------------------------------------------------------------------ one record
    cdef int _row(self, int64_t recv0, int64_t wall, int kind, object x, object frame, int lv,
                  bint first, Py_ssize_t fi) except -1:
        cdef int64_t recv = recv0 + self.shift
        cdef int st
        cdef _Market mk
        if first:
            if recv < self.last:                # another run's capture: its own monotonic base
                self.shift += self.last - recv + NS_PER_S
                recv = recv0 + self.shift
                if fi:
                    self.bt._gap(recv, "next capture file of another run")
            if not self.has_wall:
                self.has_wall = True
                self.start_wall = wall
        self.end_wall = wall
        self.last = recv
        self.frames += 1
        if self.book_only:
            if frame:                           # tickers and trades are not book frames
                st = self._feed(frame, recv)
                if st == FEED_DELTA or st == FEED_SNAPSHOT:
                    self.book_messages += 1
            return 0
        cdef list ev = self.ev
        cdef bint due = PyList_GET_SIZE(ev) > 0 and <int64_t>(<tuple>PyList_GET_ITEM(ev, 0))[0] <= recv
        if self.held and (recv > <int64_t>self.bt._held_until or due):
            self._held_out()
            due = PyList_GET_SIZE(ev) > 0 and <int64_t>(<tuple>PyList_GET_ITEM(ev, 0))[0] <= recv
        if due:
            if self.heap is not None:
                self.heap._run(recv)
            else:
                self.run_events(recv)
        cdef ReplayClock clock = self.clock
        clock.mono = recv
        clock.wall_offset = wall - recv
        if kind == K_FEED:
            if x is not None and self.corrected and x in self.corrected:
                self.slow_delta(frame, recv, own=False)
            else:
                st = self._feed(frame, recv)
                if st == FEED_DELTA:            # the common case of _route, inline
                    self.book_messages += 1
                    t = self.router.last_ticker if self.router is not None else self.router_py.last_ticker
                    self._on_book(t or "", recv, lv)
                else:
                    self.routed(st, frame, recv, self.on_book)
        elif kind == K_TRADE:
            self._trade(<tuple>x, recv)
        elif kind == K_OWN:
            self._own(<tuple>x, recv)
        elif kind == K_OTHER:
            self.frame_fn(frame, recv)
        elif kind == K_REPORT:
            # the recorded run's own order, fill or position message (not a book delta): its outcome,
            # not the replay's; Backtest._frame reads nothing from it outside a fitting pass
            if self.fit_pass:
                self.frame_fn(frame, recv)
        if recv >= self.next_house:
            if self.dec_house:
                self.dec._housekeeping(recv)
            else:
                self.housekeeping(recv)
            self.next_house = self.bt._next_house   # only housekeeping moves it
        return 0

    cdef int _own(self, tuple x, int64_t recv) except -1:
        """A book delta of the recorded run's own order (``Backtest._own_delta``: the sid's sequence
        moved on as the router would, a gap on a skipped seq, the simulator tracks the order's size),
        with the router's sequence and staleness read in C."""
        t = x[0]
        cdef _Market mk = self.markets.get(t)
        if mk is None:
            return 0
        cdef BookRouter r = self.router
        if r is None:
            self.bt._own_delta(x, recv)
            return 0
        cdef int64_t sid = x[4], seq = x[5]
        cdef int64_t* base
        cdef _RouterMarket rm = r._markets[t]
        if sid and seq:
            base = r._seq_find(sid)
            # BookRouter.last_seq_of, is_stale and note_seq
            if base != NULL and seq != INT64_MIN and seq - 1 > base[0] and not rm.stale:    # seq > prev + 1
                base[0] = seq
                self.bt._gap(recv, f"seq gap on sid {sid}", sid=sid)
                return 0
            if base != NULL and seq > base[0]:
                base[0] = seq
        cdef dict live_own
        if self.own_inline:
            # FillSimulator.apply_recorded_delta(t, side, price, delta, own=True): the recorded run's
            # resting size per level, tracked (never in the replay book), the same steps
            stats = self.sim_stats
            stats.own_deltas_removed += 1
            key = (x[1], x[2])
            live_own = mk.live_own
            left = live_own.get(key, 0) + x[3]
            if left > 0:
                live_own[key] = left
            else:
                live_own.pop(key, None)
        else:
            self.sim.apply_recorded_delta(t, x[1], x[2], x[3], True)
        if self.fit_pass and not rm.stale:
            self.after_event(recv, _ms(self.clock.mono + self.clock.wall_offset), t)
        return 0

    cdef int _trade(self, tuple x, int64_t recv) except -1:
        """A recorded public trade (``Backtest._trade``). When no order of ours can be touched by it
        (none rests in the market, or :func:`trade_reaches` says none is reached and none has pending
        decreases to expire), the simulator would record the outcome ``none`` and return no fill: of
        ``_trade``'s steps only the end of a held sweep, that outcome, the pipeline's trade signal and
        the pick-off step remain, done here. Otherwise ``_trade``'s steps run (:meth:`_trade_reaching`)."""
        cdef _Market mk = self.markets.get(x[1]) if self.quoting_trades else None
        if mk is None:
            self.trade(x, recv)
            return 0
        if self.pick_on and x[0] in self.reaction_ids:
            return self._trade_reaching(mk, x, recv)
        cdef dict orders = mk.orders
        cdef int64_t price = x[2]
        if orders and trade_reaches(orders, x[4] == "bid", price):
            return self._trade_reaching(mk, x, recv)
        cdef ReplayClock clock = self.clock
        wall_ms = x[5] or _ms(clock.mono + clock.wall_offset)
        if self.held:
            if (x[1], x[4], wall_ms) != self.bt._held_key:
                self._held_out()
        if self.keep_outcomes and x[0]:
            self.trade_outcomes[x[0]] = (x[1], "none")
        if mk.reads_trades:
            mk.pipe.on_trade(price)
        if orders and self.pick_on and mk.pipe.ready:
            # _trade's pick-off step (with no order resting the hazard has nothing to act on: skipped,
            # as Backtest._replay_fast does)
            if self.hazard is not None:
                picked = self.hazard.after_event(recv, wall_ms, x[1])
            else:
                picked = self.after_event(recv, wall_ms, x[1])
            if picked:
                self._held_out()
                for f in picked:
                    self._fill_in(f)
        return 0

    cdef int _trade_reaching(self, _Market mk, tuple x, int64_t recv) except -1:
        """``Backtest._trade`` of a quoting replay (no fitting pass) in a market of the replay: the same
        steps in the same order on the same objects (the held sweep's key and end on the driver), with
        the pick-off model's ``active`` read once per replay (``pick_on``, as the book step reads it).
        ``Backtest.compiled_trades = False``: the driver's own method (tests/research/test_replay_speed.py
        holds the two to the same replay)."""
        if not self.compiled_trades:
            self.trade(x, recv)
            return 0
        trade_id, ticker, price, count, taker_side, ts_ms = x
        cdef ReplayClock clock = self.clock
        wall_ms = ts_ms or _ms(clock.mono + clock.wall_offset)
        key = (ticker, taker_side, wall_ms)
        bt = self.bt
        cdef dict held = self.held
        if held and key != bt._held_key:
            self._held_out()
        fills = self.sim.on_trade(recv, wall_ms, ticker, price, count, taker_side, trade_id)
        if fills:
            # the other prints of this taker's sweep may follow (Backtest._trade): delivered when it is over
            if not held:
                bt._held_until = recv + self.sweep_ns
                bt._held_key = key
            for f in fills:
                held[f.trade_id] = f
        pipe = mk.pipe
        if mk.reads_trades:         # MarketPipeline.on_trade does nothing in the others (as the other trade path)
            pipe.on_trade(price)
        if self.pick_on and pipe.ready:
            if self.hazard is not None:
                picked = self.hazard.after_event(recv, wall_ms, ticker)
            else:
                picked = self.after_event(recv, wall_ms, ticker)
            if picked:
                self._held_out()
                for f in picked:
                    self._fill_in(f)
        return 0

    cdef inline int _feed(self, object frame, int64_t recv) except? -1:
        if self.router is not None:
            return self.router.feed(frame, recv)
        return self.router_py.feed(frame, recv)

    # ------------------------------------------------------------------ the files
    def run(self, files, sizes):
        """Replay every capture file (``Backtest._rows`` of each); returns ``(last_recv, start_wall,
        end_wall)``. ``frames`` is written back to the driver and ``book_messages`` added to its own count."""
        cdef Py_ssize_t fi, i, n
        cdef int64_t total = sum(sizes) or 1
        cdef int64_t done_bytes = 0
        cdef double every = self.bt.opt.progress_every_s
        cdef double next_report = _time.perf_counter() + every
        cdef double now
        cdef list xs_c, frames_c
        cdef const int64_t[::1] recv_c, wall_c
        cdef const int8_t[::1] kind_c
        cdef const int32_t[::1] lv_c
        cdef bint first
        bt = self.bt
        self.book_messages = 0
        # Every object alive before the loop (the decoded capture's columns, the engine, the books) is
        # moved out of the cyclic collector's reach for the loop (gc.freeze): its collections then walk
        # only what the replay makes (measured ~1.1 -> ~0.25 ms of gc per replay of a 60 s run).
        # Collection still runs as usual, so a replay of any length frees its own cyclic garbage; the
        # objects frozen here go back (unfreeze) after it. Not when something else froze objects (the
        # live maker's gc_freeze): those stay as they were.
        cdef bint froze = _gc.isenabled() and _gc.get_freeze_count() == 0
        if froze:
            _gc.freeze()
        try:
            for fi in range(len(files)):
                path = files[fi]
                rows = bt._rows(path, sizes[fi])
                got = bt._frames_cache.get(("rows", path))
                if got is not None:
                    bt.decode_s += got.decode_s
                    bt.cache_hits += got.from_cache
                    # the integer columns as C arrays (Replay.packed: made once per decoded capture)
                    recv_c, wall_c, kind_c, lv_c = got.packed()
                    xs_c, frames_c = got.xs, got.frames
                    n = PyList_GET_SIZE(xs_c)
                    if not (recv_c.shape[0] == wall_c.shape[0] == kind_c.shape[0] == lv_c.shape[0] == n
                            == PyList_GET_SIZE(frames_c)):
                        raise ValueError("ReplayLoop: the decoded capture's columns differ in length")
                    for i in range(n):
                        self._row(recv_c[i], wall_c[i], kind_c[i], <object>PyList_GET_ITEM(xs_c, i),
                                  <object>PyList_GET_ITEM(frames_c, i), lv_c[i], i == 0, fi)
                        if (self.frames & 4095) == 0:
                            now = _time.perf_counter()
                            if now >= next_report:
                                next_report = now + every
                                if self.progress is not None:
                                    self.progress(min(0.99, (done_bytes + sizes[fi] * 0.5) / total))
                else:       # streamed (too big to hold): rows classified on the fly
                    first = True
                    for recv0, wall, kind, x, frame, lv in rows:
                        self._row(recv0, wall, kind, x, frame, lv, first, fi)
                        first = False
                        if (self.frames & 4095) == 0:
                            now = _time.perf_counter()
                            if now >= next_report:
                                next_report = now + every
                                if self.progress is not None:
                                    self.progress(min(0.99, (done_bytes + sizes[fi] * 0.5) / total))
                done_bytes += sizes[fi]
        finally:
            if froze:
                _gc.unfreeze()
            bt.frames = self.frames
            bt.book_messages += self.book_messages
            self.book_messages = 0
        if not self.has_wall:
            return self.last, None, None
        return self.last, self.start_wall, self.end_wall
