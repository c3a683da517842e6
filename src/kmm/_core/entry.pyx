# The compiled frame entry (issue 15): a WebSocket text frame's bytes -> the book applied -> the
# market's decision, with no Python frame on the way for an orderbook delta of a market on a compiled
# pipeline in the common state. Python is entered once: to send the decision's actions (the engine's
# _act), for the marks when the top of book moved, or, for anything else (not a delta, a market that is
# not ready, its orders changed, the gate's held answer lapsed, a book being checked, not quoting, ...),
# through the connector's Python path for the rest of the frame (KalshiWs._after_feed), which does what
# KalshiWs.handle_frame does after the router. Equivalence with that path: tests/engine/test_frame_path.py.
cimport cython
from cpython.dict cimport PyDict_GetItem, PyDict_DelItem, PyDict_Contains
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from kmm._core._types cimport ns_t, qty_t
from kmm._core.wire cimport BookRouter
from kmm._core.pipeline cimport Pipeline
from kmm._core import wire as _wire

cdef int DELTA = 2
if _wire.DELTA != DELTA:       # the router's result codes are part of this module's contract
    raise ImportError(f"kmm._core.entry expects BookRouter.feed's DELTA == 2, not {_wire.DELTA}")

# kmm.engine.freshness.CHECKING: a book being checked leaves the fast path (its on_data moves the state)
cdef str CHECKING = "checking"
cdef str QUOTING = "quoting"

# FrameEntry.feed's outcome for a delta, after the router (for tests and the counters)
FAST_DECIDED = 1      # actions decided and handed to the engine's _act
FAST_NOTHING = 2      # decided nothing to do, or kept for later (requests in flight, a hold, an open request)
HANDED = 3            # handed to the Python path (KalshiWs._after_feed)


cdef inline int64_t _clock(int which) noexcept:
    cdef timespec ts
    clock_gettime(which, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


@cython.final
cdef class _Slot:
    cdef str ticker
    cdef Pipeline core
    cdef object pipe          # kmm.engine.market.MarketPipeline (ready, dirty, state, alpha, ...)
    cdef object fresh         # kmm.engine.freshness.MarketFreshness (state, last_data_ns)


@cython.final
cdef class FrameEntry:
    """One per WebSocket client whose handler quotes on compiled pipelines (``Engine.frame_entry``).

    ``feed(data, recv_ns)`` replaces ``KalshiWs.handle_frame`` for every complete text frame: it counts
    the frame, feeds the router in C and, for a delta of a registered market in the common state, does
    what ``Engine.on_book`` -> ``Engine._frame`` does: the freshness stamp (book data keeps a book fresh),
    the may-decide verdict held in the pipeline (the risk gate's held ALLOW checked against the sum of
    the gate's, the freshness's and the limiter's change counters, read as plain attributes), signals,
    strategy and diff; then the actions go to the engine's ``_act`` with the decided stamp taken here,
    right after the pipeline returned them. The raw capture gets the frame after that, as on the
    Python path. Every other frame, and a delta in any state this object does not handle, goes to
    ``after_feed(data, recv_ns, status)``: the Python path from the router's answer on.

    The clock: the system clock (``sys_clock``) is read with ``clock_gettime`` (CLOCK_MONOTONIC and
    CLOCK_REALTIME, what ``time.monotonic_ns`` / ``time.time_ns`` read on Linux); any other clock
    object (a test's manual clock) through its methods.
    """

    cdef BookRouter router
    cdef object stats
    cdef object after_feed
    cdef object raw
    cdef object log
    cdef object engine
    cdef object session
    cdef object clock
    cdef bint sys_clock
    # the engine's containers that are never rebound, held here (no attribute walk per frame)
    cdef object gate                    # session.gate (its freshness and backoff are read per frame)
    cdef dict weights                   # engine.event_risk._weight: ticker -> event inventory weight
    cdef dict positions                 # session.pf._markets: ticker -> the portfolio's market record
    cdef dict blocked                   # engine.blocked
    cdef object capture                 # a kmm.record.capture.CaptureWriter the raw hook writes to, or None
    cdef object capture_put             # ... its queue's put (a C call: no Python frame per frame)
    cdef dict slots
    cdef readonly uint64_t decided      # deltas whose actions were decided here and sent to _act
    cdef readonly uint64_t nothing      # deltas decided here with nothing to send (or kept for later)
    cdef readonly uint64_t handed       # deltas handed to the Python path
    cdef readonly uint64_t synced       # deltas whose market's orders were re-read first (own_sync)
    cdef readonly int last              # FAST_DECIDED / FAST_NOTHING / HANDED for the last delta; 0 other
    cdef uint64_t _why[6]               # handed deltas by reason (handed_by)

    def __init__(self, BookRouter router not None, stats, after_feed, raw, log, engine, session, clock,
                 bint sys_clock, capture=None):
        self.router = router
        self.capture = capture
        self.capture_put = None if capture is None else capture._queue.put
        self.stats = stats
        self.after_feed = after_feed
        self.raw = raw
        self.log = log
        self.engine = engine
        self.session = session
        self.clock = clock
        self.sys_clock = sys_clock
        self.slots = {}
        self.gate = session.gate
        self.weights = engine.event_risk._weight
        self.positions = session.pf._markets
        self.blocked = engine.blocked

    def add(self, str ticker not None, Pipeline core not None, pipe, fresh):
        """Decide ``ticker``'s deltas here: its compiled pipeline, the engine's MarketPipeline around
        it and its freshness record (None: the market's deltas take the Python path)."""
        cdef _Slot s
        if fresh is None:
            self.slots.pop(ticker, None)
            return
        s = _Slot.__new__(_Slot)
        s.ticker, s.core, s.pipe, s.fresh = ticker, core, pipe, fresh
        self.slots[ticker] = s

    def remove(self, ticker):
        self.slots.pop(ticker, None)

    @property
    def handed_by(self):
        """Deltas handed to the Python path, by why: not a market decided here, no book yet, its state (not ready, book being checked, not quoting), no change counter, the gate to ask (no
        ALLOW held for the current change counters, or the held one reached its close gate)."""
        return {"market": self._why[0], "no_book": self._why[1], "state": self._why[2],
                "no_counter": self._why[3], "gate": self._why[4], "close_gate": self._why[5]}

    @property
    def markets(self):
        return list(self.slots)

    def inventory(self, ticker):
        """The inventory the strategy skews on, as the fast path reads it (= EventWiring.quote_inventory)."""
        return self._inventory(ticker)

    cdef object _inventory(self, object ticker):
        # EventWiring.quote_inventory without its Python frames when the market's event weight is 0
        # (the default): the portfolio's position, read from its per-market record
        cdef PyObject* w = PyDict_GetItem(self.weights, ticker)
        cdef PyObject* m
        if w == NULL or not <object>w:
            m = PyDict_GetItem(self.positions, ticker)
            return 0 if m == NULL else (<object>m).position
        return self.engine.event_risk.quote_inventory(ticker)

    cdef inline int64_t _mono(self) except? -1:
        if self.sys_clock:
            return _clock(CLOCK_MONOTONIC)
        return self.clock.monotonic_ns()

    cdef inline int64_t _wall(self) except? -1:
        if self.sys_clock:
            return _clock(CLOCK_REALTIME)
        return self.clock.time_ns()

    def feed(self, bytes data not None, int64_t recv_ns):
        """One complete text frame received at ``recv_ns`` (monotonic ns). Returns the router's result
        code, like ``KalshiWs.handle_frame``; never raises (a failing callback is counted in
        ``stats.callback_errors`` and logged)."""
        cdef object stats = self.stats
        cdef int status, r
        stats.frames += 1
        stats.last_recv_ns = recv_ns
        try:
            status = self.router._feed(data, recv_ns)
        except Exception as exc:       # the router should not raise: the Python path counts and logs it
            self.last = 0
            return self.after_feed(data, recv_ns, -1, exc)
        if status != DELTA:
            self.last = 0
            return self.after_feed(data, recv_ns, status)
        try:
            r = self._delta(self.router.last_ticker, recv_ns)
        except Exception:
            stats.callback_errors += 1
            self.log.exception("on_book raised")
            r = FAST_NOTHING
        self.last = r
        if r == HANDED:
            self.handed += 1
            return self.after_feed(data, recv_ns, status)
        # the raw capture after the frame's decision and its requests, in arrival order, with its stamp
        if self.raw is not None:
            try:
                if self.capture_put is not None and not self.capture._closed:
                    # Engine.on_raw_frame -> CaptureWriter.write, for bytes: the same tuple enqueued
                    self.capture_put((recv_ns, data, None))
                else:
                    self.raw(recv_ns, data)
            except Exception:
                stats.callback_errors += 1
                self.log.exception("on_raw_frame failed")
        return status

    cdef int _delta(self, object ticker, int64_t recv_ns) except -1:
        """Engine.on_book + Engine._frame for a delta (the router applied it). Nothing changes before
        every check that sends the frame to the Python path has passed (HANDED)."""
        cdef PyObject* p = PyDict_GetItem(self.slots, ticker) if ticker is not None else NULL
        cdef _Slot slot
        cdef Pipeline core
        cdef int64_t now, wall, epoch, decided
        cdef int v
        if p == NULL:
            self._why[0] += 1
            return HANDED
        slot = <_Slot>p
        core = slot.core
        if core.book is None:
            self._why[1] += 1
            return HANDED
        pipe = slot.pipe
        fresh = slot.fresh
        engine = self.engine
        if not pipe.ready or fresh.state == CHECKING or not engine.quoting or engine.stopping:
            self._why[2] += 1
            return HANDED
        gate = self.gate
        fr, lim = gate.freshness, gate.backoff
        pauses = 0 if lim is None else getattr(lim, "pauses", None)
        if fr is None or pauses is None:
            self._why[3] += 1
            return HANDED                      # no change counter to hold the gate's answer against
        epoch = gate.epoch + fr.epoch + pauses
        now = self._mono()
        if core.own_dirty:
            # its orders changed since they were last read (and the loop has not re-read them yet):
            # read them as Engine._frame does (the held table does not depend on when it is read), once
            self.synced += 1
            core.own_sync(self.session.om.live_orders(ticker, now_ns=now), now)
        wall = self._wall()
        v = core.verdict_q(now, wall, epoch)
        if v >= 4:
            self._why[4 if core._q_epoch != epoch else 5] += 1
            return HANDED                      # the gate is to be asked (its held answer lapsed)
        # the fast path from here on
        self.stats.book_frames += 1
        fresh.last_data_ns = now               # book data, never pings, keeps a book fresh
        pipe.last_book_ns = now
        if v != 0:                             # requests in flight, a hold, a request open on an order
            pipe.dirty = True
            core._signals_own(now, wall)
            if core.top_moved():
                engine._marks(ticker, core)
            self.nothing += 1
            return FAST_NOTHING
        pipe.dirty = False
        alpha = 0.0 if pipe._alpha_zero else pipe.alpha.get_external_skew(ticker)
        actions = core._frame_own(now, wall, <qty_t>self._inventory(ticker), alpha)
        if actions:
            decided = self._mono()
            self.decided += 1
            engine._act(pipe, actions, core._nown, recv_ns or now, engine.decide_ns, marks=True,
                        decided_ns=decided)
            return FAST_DECIDED
        # Engine._act with no actions: quoting, the marks, and a market with orders is not blocked
        pipe.state = QUOTING
        if core.top_moved():
            engine._marks(ticker, core)
        if core._nown and PyDict_Contains(self.blocked, ticker):
            PyDict_DelItem(self.blocked, ticker)
        self.nothing += 1
        return FAST_NOTHING
