# The compiled frame entry (issue 15): a WebSocket text frame's bytes -> the book applied -> the
# market's decision, with no Python frame on the way for an orderbook delta of a market on a compiled
# pipeline in the common state. Python is entered once: to send the decision's actions (the engine's
# _act), for the marks when the top of book moved, or, for anything else (not a delta, a market that is
# not ready, a book being checked, not quoting, ...), through the connector's Python path for the rest
# of the frame (KalshiWs._after_feed), which does what KalshiWs.handle_frame does after the router.
#
# Reads (coalesce on; run.coalesce_reads = deltas, the default, or read): picows hands the frames of
# one socket read over one after the other (the last one flagged). A delta is applied at once (router,
# freshness stamps, signals) and its market joins the read's pending set; each pending market is decided
# ONCE, on its latest book, when the read ends (feed(..., last=True) or end_read()) and, with
# flush_python (deltas), before a frame goes to the Python path, in the order the markets first changed. Every
# check that may stop a decision (ready, checking, quoting, stopping, the gate's held answer, the
# may-decide verdict) is made then, not at apply time. Every pending market is decided before any of
# the read's requests is written (Engine._act_read sends several markets' decisions first requests
# first), and the book decisions' marks follow the requests. Equivalence: tests/engine/test_frame_path.py;
# the order of the sends: tests/engine/test_read_sends.py.
cimport cython
from cpython.dict cimport PyDict_GetItem, PyDict_DelItem, PyDict_Contains
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from kmm._core._types cimport ns_t, qty_t
from kmm._core.wire cimport BookRouter
from kmm._core.pipeline cimport Pipeline
from kmm._core.diff cimport Action, ACT_AMEND, ACT_PLACE
from kmm._core.ordergate cimport OrderLimits
from kmm._core.grid cimport Grid
from kmm._core import wire as _wire

cdef int NOT_BOOK = 0
cdef int SNAPSHOT = 1
cdef int DELTA = 2
if _wire.DELTA != DELTA or _wire.SNAPSHOT != SNAPSHOT or _wire.NOT_BOOK != NOT_BOOK:   # the router's result codes are this module's contract
    raise ImportError(f"kmm._core.entry expects BookRouter.feed's SNAPSHOT == 1 and DELTA == 2, "
                      f"not {_wire.SNAPSHOT} and {_wire.DELTA}")

# kmm.engine.freshness.CHECKING: a book being checked leaves the fast path (its on_data moves the state)
cdef str CHECKING = "checking"
cdef str QUOTING = "quoting"

# FrameEntry.feed's outcome for a delta, after the router (for tests and the counters)
FAST_DECIDED = 1      # actions decided and handed to the engine's _act
FAST_NOTHING = 2      # decided nothing to do, or kept for later (requests in flight, a hold, an open request)
HANDED = 3            # handed to the Python path (KalshiWs._after_feed)
PENDING = 4           # applied; its market is decided when the read ends (coalesce on)

# FrameEntry.ignore: frame types captured but not handed to the Python path (their handlers do nothing)
IGNORE_TICKER = _wire.OTHER_TICKER_FRAME
IGNORE_TRADE = _wire.OTHER_TRADE_FRAME

cdef str S_BID = "bid"
cdef str S_ASK = "ask"

cdef int PER_READ = 16    # reads_by_deltas: reads with 0..15 deltas, and 16 or more


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
    cdef bint pending         # in the read's pending set
    cdef bint pend_book       # ... because of a book delta (the marks follow its decision)
    cdef bint pend_update     # ... because of a fill or an order update (stamped in update_decide_ns)
    cdef int64_t pend_ns      # ... its trigger: the read's receive stamp (or the update's)


@cython.final
cdef class FrameEntry:
    """One per WebSocket client whose handler quotes on compiled pipelines (``Engine.frame_entry``).

    ``feed(data, recv_ns, last)`` replaces ``KalshiWs.handle_frame`` for every complete text frame: it
    counts the frame, feeds the router in C and, for a delta of a registered market in the common
    state, does what ``Engine.on_book`` -> ``Engine._frame`` does: the freshness stamp (book data keeps
    a book fresh), the signals, then the decision: the may-decide verdict held in the pipeline (the
    risk gate's held ALLOW checked against the sum of the gate's, the freshness's and the limiter's
    change counters, read as plain attributes; the gate asked when it lapsed), strategy and diff; the
    actions go to the engine's ``_act`` with the decided stamp taken here, right after the pipeline
    returned them. Every other frame, and a delta in any state this object does not handle, goes to
    ``after_feed(data, recv_ns, status)``: the Python path from the router's answer on.

    With ``coalesce`` (``run.coalesce_reads``) the decision waits for the end of the socket read
    (``last``: the frame picows flags ``last_in_buffer``; or :meth:`end_read`): the deltas of a read are
    applied one by one as they come (books never lag), and each market that changed is decided once,
    on its latest book, in the order the markets first changed, with every check made then; the
    decisions are sent once all are made (``Engine._act_read``: each market's first request before
    any market's second), the marks after them. Its trigger stamp is the read's receive stamp, which every frame of the read carries. A fill or an
    order update in the read that wants a re-quote joins the same set (:meth:`defer`). Without
    ``coalesce`` every delta is decided as it is applied (the former behaviour, a baseline).
    ``last`` defaults to true: a caller that knows nothing of reads gets a decision per frame. With
    ``flush_python`` (``run.coalesce_reads = "deltas"``) the pending markets are also decided before a
    frame goes to the Python path (a fill, an order update, a trade, a snapshot, a delta it decides):
    only runs of consecutive deltas are coalesced, and no decision waits for a Python frame's work.

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
    cdef object rooms                   # engine.event_risk.rooms: the event gate's room per side
    cdef readonly dict hot              # its markets that ask the gate (open_rooms): None, rooms asked always
    cdef int64_t open_bid, open_ask, open_step   # ... the open rooms of every other market
    cdef dict positions                 # session.pf._markets: ticker -> the portfolio's market record
    cdef dict blocked                   # engine.blocked
    cdef object capture                 # a kmm.record.capture.CaptureWriter the raw hook writes to, or None
    cdef object capture_put             # ... its queue's put (a C call: no Python frame per frame)
    cdef dict slots
    cdef readonly bint coalesce         # decide once per market per read (else per delta)
    cdef readonly bint flush_python     # ... and before a frame is handed to the Python path ("deltas")
    cdef list _pending                  # _Slot: markets to decide when the read ends, first change first
    cdef list _acts                     # while a flush decides: the decisions with actions, to send after it
    cdef list _marks_todo               # ... and the book decisions' marks, made after those sends
    cdef readonly bint open             # a read is under way (a frame was fed, its last not yet)
    cdef readonly uint64_t decided      # decisions made here with actions sent to _act
    cdef readonly uint64_t nothing      # decisions made here with nothing to send (or kept for later)
    cdef readonly uint64_t handed       # deltas handed to the Python path
    cdef readonly uint64_t synced       # decisions whose market's orders were re-read first (own_sync)
    cdef readonly uint64_t asked        # decisions that asked the risk gate (its held answer lapsed)
    cdef readonly uint64_t reads        # socket reads ended (coalesce on)
    cdef readonly uint64_t read_deltas  # deltas in those reads (fast or handed)
    cdef readonly uint64_t coalesced    # deltas / re-quotes for a market already pending: decisions saved
    cdef readonly uint64_t deferred     # fill / order update re-quotes moved to the end of the read
    cdef readonly uint64_t dropped      # pending decisions not made (stale, stopped, disconnected, ...)
    cdef readonly int last              # FAST_DECIDED / FAST_NOTHING / HANDED / PENDING for the last delta; 0 other
    cdef public int ignore              # frame types nobody reads (IGNORE_TICKER | IGNORE_TRADE): captured only
    cdef readonly uint64_t ignored      # frames of those types captured and not handed to the Python path
    cdef uint64_t _why[6]               # handed deltas by reason (handed_by)
    cdef uint64_t _per_read[17]         # reads by their number of deltas (reads_by_deltas)
    cdef uint64_t _n_read               # deltas in the read under way
    # a decision's first action, a create or an amend of a working order, checked and written here
    # (first_request())
    cdef object fa_qw                   # the connector's kmm._core.quotewire.QuoteWire; None: off
    cdef object fa_rest, fa_planner, fa_om, fa_pf, fa_ev, fa_evgate
    cdef object fa_resting, fa_partial  # kmm.engine.orders.OrderState.RESTING / PARTIALLY_FILLED
    cdef dict fa_by_coid                # the order manager's orders by client order id
    cdef OrderLimits fa_lim
    cdef double fa_reprice
    cdef readonly uint64_t first_written    # decisions whose first request was written here
    cdef readonly uint64_t first_declined   # ... a create or an amend first, left to the engine's Python path

    def __init__(self, BookRouter router not None, stats, after_feed, raw, log, engine, session, clock,
                 bint sys_clock, capture=None, bint coalesce=False, bint flush_python=False):
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
        self.coalesce = coalesce
        self.flush_python = coalesce and flush_python
        self._pending = []
        self._acts = None
        self._marks_todo = None
        self.slots = {}
        self.gate = session.gate
        self.weights = engine.event_risk._weight
        self.rooms = engine.event_risk.rooms
        self.positions = session.pf._markets
        self.blocked = engine.blocked

    def first_request(self, qw, rest=None, planner=None, double reprice_pressure=0.0, resting=None,
                      partial=None):
        """Check and write a decision's first action here when it is a quote's create or an amend of a
        working order (a quote moved with the market), before the engine's Python runs: the steps of
        ``Engine._apply_actions`` for a create (``QuotePlanner.place_checked``, the client order id,
        ``QuoteWire.place``) and of ``Engine._amend_now`` for an amend, with their inputs read in C.
        In order: for an amend, the order (a working order of ours, no request open); the risk gate's
        check for a market that is not reduce-only (:class:`kmm._core.ordergate.OrderLimits`, held to
        ``RiskGate.place_allowed`` / ``amend_size``); the event limits in their one-call form
        (``EventRiskGate.fits_whole``); then the write, its budget taken only while the limiter's write
        pressure is at most ``reprice_pressure`` (``Engine._small_reprices_only`` decides above it:
        ``LimiterCore.try_acquire_calm``, one call) and counted for the market (the fair key).
        Written: the engine's ``_act_first`` records it and sends the decision's other actions. Anything
        else (a denial, reduce-only, no signature, budget or idle connection, a batch under way, a
        planner or connector other than the ones given here) leaves the whole decision to
        ``Engine._act``, nothing taken. ``qw`` None: off."""
        if qw is None:
            self.fa_qw = None
            return
        gate = planner.gate
        if gate is not self.gate or gate.positions is not planner.pf or planner.pf._markets is not self.positions:
            raise ValueError("FrameEntry.first_request: the planner's risk gate and portfolio are not the session's")
        self.fa_rest, self.fa_planner = rest, planner
        self.fa_om = planner.om
        self.fa_pf = planner.pf
        self.fa_by_coid = self.fa_om._by_coid
        self.fa_ev = planner.event_risk
        self.fa_evgate = None if self.fa_ev is None else self.fa_ev.gate
        self.fa_resting, self.fa_partial = resting, partial
        self.fa_lim = OrderLimits(gate.limits)
        self.fa_reprice = reprice_pressure
        self.fa_qw = qw

    @property
    def first_on(self):
        """A decision's first create or amend is checked and written here (:meth:`first_request`)."""
        return self.fa_qw is not None

    cdef int _declined(self) except -1:
        self.first_declined += 1
        return 0

    cdef int _first(self, _Slot slot, object actions, object live_n, int64_t trigger_ns, object stamps,
                    bint book, int64_t decided) except -1:
        """The decision's first action written here when it is a create or an amend
        :meth:`first_request` allows: 1 (written, and the engine's ``_act_first`` sent the rest), else 0
        (nothing taken or sent: the caller hands the decision to ``Engine._act``)."""
        cdef object qw = self.fa_qw
        cdef Action a
        cdef PyObject* p
        cdef int64_t q, price, size, old_rem = 0, written, ok
        cdef bint bid
        if qw is None:
            return 0
        first = actions[0]
        if type(first) is not Action:
            return 0
        a = <Action>first
        if a.kind != ACT_AMEND and a.kind != ACT_PLACE:
            return 0
        engine = self.engine
        planner = self.fa_planner
        gate = self.gate
        rest = self.fa_rest
        session = self.session
        if engine._batch is not None or session.rest is not rest or rest._qw is not qw \
                or planner.gate is not gate or planner.event_risk is not self.fa_ev \
                or gate.limits is not self.fa_lim.limits:
            return self._declined()
        live = None
        if a.kind == ACT_AMEND:
            p = PyDict_GetItem(self.fa_by_coid, a.order_id)
            if p == NULL:
                return self._declined()
            live = <object>p
            state = live.state
            if live.order_id is None or (state is not self.fa_resting and state is not self.fa_partial):
                return self._declined()
        ticker = slot.ticker
        m = gate.markets.get(ticker)
        if m is None:
            return self._declined()
        grid = m.grid
        if not isinstance(grid, Grid):
            return self._declined()
        bid = a.side == 0
        side = S_BID if bid else S_ASK
        price = a.price
        size = a.size
        p = PyDict_GetItem(self.positions, ticker)
        q = 0 if p == NULL else (<object>p).position
        close = m.close_time_ns
        om = self.fa_om
        if live is None:
            by_ticker = om._live_by_ticker.get(ticker)
            ok = self.fa_lim.place(ticker, bid, price, size, 0 if by_ticker is None else len(by_ticker),
                                   len(om._live), q, om.open_qty(ticker, side), self.fa_pf._abs_total,
                                   gate.last_pnl, m.fractional, <Grid>grid, close is not None,
                                   0 if close is None else close, self._wall())
        else:
            old_rem = live.remaining
            ok = self.fa_lim.amend(ticker, bid, price, size, old_rem, q, om.open_qty(ticker, side),
                                   self.fa_pf._abs_total, gate.last_pnl, m.fractional, <Grid>grid,
                                   close is not None, 0 if close is None else close, self._wall())
        if ok != size:
            return self._declined()
        evg = self.fa_evgate
        if evg is not None:
            if live is None:
                fits = evg.fits_whole(ticker, side, price, size)
            else:
                old_price = live.price
                fits = evg.fits_whole(ticker, side, price, size,
                                      (old_price, old_rem) if old_price is not None and old_rem > 0 else None)
            if not fits and evg.event_of(ticker) is not None:
                return self._declined()
        pipe = slot.pipe
        if live is None:
            return self._first_place(slot, pipe, actions, live_n, trigger_ns, stamps, book, decided, side, price, size)
        oid = live.order_id
        pipe.applying = True
        try:
            written = qw.amend(oid, ticker, side, price, live.fill_count + size, live.client_order_id,
                               engine._amend_done, (pipe, live), session.spawn, self.fa_reprice, ticker)
        except BaseException:
            # the bytes may have gone out: recorded as sent, as Engine._amend_now records it; the
            # frame's marks, as Engine._act makes them whatever its requests raised
            engine._amend_recorded(pipe, oid, price, size)
            self._mark(slot, book)
            raise
        finally:
            pipe.applying = False
        if written <= 0:
            # nothing taken (write pressure above the bound, no signature, budget or connection)
            return self._declined()
        self.first_written += 1
        engine._act_first(pipe, actions, live_n, trigger_ns, stamps, book, decided, written, live, price, size)
        return 1

    cdef int _first_place(self, _Slot slot, object pipe, object actions, object live_n, int64_t trigger_ns,
                          object stamps, bint book, int64_t decided, str side, int64_t price,
                          int64_t size) except -1:
        """:meth:`_first`'s create, checked: written as ``Engine._apply_actions`` writes a quote (its
        order recorded right after the write, by ``_act_placed``; whatever happened, once the bytes
        may have gone out)."""
        cdef int64_t written
        engine = self.engine
        session = self.session
        ticker = slot.ticker
        coid = self.fa_om.new_client_order_id()
        ctx = [pipe, None]
        pipe.in_flight += 1
        pipe.applying = True
        try:
            written = self.fa_qw.place(ticker, side, price, size, coid, session.group_id, engine._quote_done, ctx,
                                       session.spawn, self.fa_reprice, ticker)
        except BaseException:
            ctx[1] = self.fa_om.record_create(ticker, side, price, size, coid)
            self._mark(slot, book)
            raise
        finally:
            pipe.applying = False
        if written <= 0:
            pipe.in_flight -= 1
            return self._declined()           # nothing taken: the id is left unused
        self.first_written += 1
        engine._act_placed(pipe, actions, live_n, trigger_ns, stamps, book, decided, written, ctx, coid, side,
                           price, size)
        return 1

    def add(self, str ticker not None, Pipeline core not None, pipe, fresh):
        """Decide ``ticker``'s deltas here: its compiled pipeline, the engine's MarketPipeline around
        it and its freshness record (None: the market's deltas take the Python path)."""
        cdef _Slot s
        if fresh is None:
            self.remove(ticker)
            return
        self.discard(ticker)
        s = _Slot.__new__(_Slot)
        s.ticker, s.core, s.pipe, s.fresh = ticker, core, pipe, fresh
        self.slots[ticker] = s

    def remove(self, ticker):
        self.discard(ticker)
        self.slots.pop(ticker, None)

    @property
    def handed_by(self):
        """Deltas handed to the Python path, by why: not a market decided here, no book yet, its state (not ready, book being checked, not quoting), no change counter, the gate to ask (no
        ALLOW held for the current change counters, or the held one reached its close gate; coalesce
        off only: with it on, the gate is asked at decide time, counted in ``asked``)."""
        return {"market": self._why[0], "no_book": self._why[1], "state": self._why[2],
                "no_counter": self._why[3], "gate": self._why[4], "close_gate": self._why[5]}

    @property
    def reads_by_deltas(self):
        """Ended reads by how many deltas they carried: {0: n, 1: n, ..., 15: n, 16: reads with 16 or more}."""
        return {i: self._per_read[i] for i in range(PER_READ + 1) if self._per_read[i]}

    @property
    def pending(self):
        """The markets waiting for the end of the read, in the order they first changed."""
        return [(<_Slot>s).ticker for s in self._pending]

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

    def open_rooms(self, dict hot, tuple open_step):
        """``EventWiring.rooms`` answers ``open_step`` for every market not in ``hot`` (its markets whose
        event refused or cut a place lately) and asks the gate only for those: read here, the common
        case needs no Python frame. The engine calls this only when ``rooms`` is EventWiring's own."""
        self.hot = hot
        self.open_bid, self.open_ask, self.open_step = open_step

    cdef int _set_rooms(self, Pipeline core, object ticker, bint slot_fractional) except -1:
        # EventWiring.rooms -> Pipeline.set_rooms: the places the event gate refuses are not decided
        cdef tuple r
        cdef PyObject* left
        if self.hot is not None:
            left = PyDict_GetItem(self.hot, ticker)
            if left == NULL or not <object>left:
                core.bid_room = self.open_bid
                core.ask_room = self.open_ask
                core.block_step = self.open_step
                return 0
        r = self.rooms(ticker, slot_fractional)
        core.bid_room = r[0]
        core.ask_room = r[1]
        core.block_step = r[2]
        return 0

    cdef inline int64_t _mono(self) except? -1:
        if self.sys_clock:
            return _clock(CLOCK_MONOTONIC)
        return self.clock.monotonic_ns()

    cdef inline int64_t _wall(self) except? -1:
        if self.sys_clock:
            return _clock(CLOCK_REALTIME)
        return self.clock.time_ns()

    def feed(self, bytes data not None, int64_t recv_ns, bint last=True):
        """One complete text frame received at ``recv_ns`` (monotonic ns); ``last``: the last frame of
        its socket read (the pending decisions are made after it). Returns the router's result code,
        like ``KalshiWs.handle_frame``; never raises (a failing callback is counted in
        ``stats.callback_errors`` and logged)."""
        cdef object stats = self.stats
        cdef int status, r
        cdef object out
        stats.frames += 1
        stats.last_recv_ns = recv_ns
        self.open = True
        try:
            status = self.router._feed(data, recv_ns)
        except Exception as exc:       # the router should not raise: the Python path counts and logs it
            self.last = 0
            if self.flush_python:
                self._flush()
            out = self.after_feed(data, recv_ns, -1, exc)
            if last:
                self._end_read()
            return out
        if status != DELTA:
            self.last = 0
            if status == NOT_BOOK and self.ignore & self.router.last_other:
                # a ticker or trade frame whose handlers do nothing (Engine.frame_entry says which):
                # valid JSON (the router scanned it), captured in arrival order, never decoded. The
                # decisions are made where they were when it took the Python path (with flush_python,
                # before it): keeping them to the read's end measured later decisions (docs/benchmarks.md)
                self.ignored += 1
                if self.flush_python:
                    self._flush()
                if last:
                    self._end_read()
                self._capture_raw(data, recv_ns)
                return status
            if status == SNAPSHOT and self.coalesce:
                # the Python path decides the market now, on its fresh book: nothing left to decide
                self._discard(self.router.last_ticker)
            if self.flush_python:
                self._flush()
            out = self.after_feed(data, recv_ns, status)
            if last:
                self._end_read()
            return out
        self._n_read += 1
        ticker = self.router.last_ticker
        try:
            r = self._delta(ticker, recv_ns)
        except Exception:
            stats.callback_errors += 1
            self.log.exception("on_book raised")
            r = FAST_NOTHING
        self.last = r
        if r == HANDED:
            self.handed += 1
            if self.coalesce:
                self._discard(ticker)       # the Python path decides it now, on its latest book
                if self.flush_python:
                    self._flush()
            out = self.after_feed(data, recv_ns, status)
            if last:
                self._end_read()
            return out
        if last:
            self._end_read()
        # the raw capture after the read's decisions and their requests, in arrival order, with its stamp
        self._capture_raw(data, recv_ns)
        return status

    cdef int _capture_raw(self, bytes data, int64_t recv_ns) except -1:
        if self.raw is not None:
            try:
                if self.capture_put is not None and not self.capture._closed:
                    # Engine.on_raw_frame -> CaptureWriter.write, for bytes: the same tuple enqueued
                    self.capture_put((recv_ns, data, None))
                else:
                    self.raw(recv_ns, data)
            except Exception:
                self.stats.callback_errors += 1
                self.log.exception("on_raw_frame failed")
        return 0

    def end_read(self):
        """The socket read ended on a frame that was not fed (a ping, a fragment), or a new read began
        while one was open: decide what is pending. Never raises."""
        self._end_read()

    cdef int _end_read(self) except -1:
        cdef uint64_t n = self._n_read
        self.open = False
        self._n_read = 0
        self.reads += 1
        self.read_deltas += n
        self._per_read[n if n < PER_READ else PER_READ] += 1
        return self._flush()

    cdef int _flush(self) except -1:
        """Decide every pending market now, in the order they first changed (the end of the read; with
        ``flush_python``, also before a frame goes to the Python path), then send: every market is
        decided before any request of the read is written (a market decided third no longer waits for
        the first two markets' requests), and the engine writes each market's first request before any
        market's second (``Engine._act_read``). The marks of the read's book decisions come after."""
        cdef list todo, acts, marks, outer_acts, outer_marks
        cdef _Slot slot
        cdef tuple a
        if not self._pending:
            return 0
        todo = self._pending
        self._pending = []               # (at the end of a read, a decision's callbacks that defer() find
                                         # no read: they act now)
        outer_acts, outer_marks = self._acts, self._marks_todo
        acts = []
        marks = []
        self._acts, self._marks_todo = acts, marks
        try:
            for slot in todo:
                if not slot.pending:
                    continue
                slot.pending = False
                try:
                    self._decide(slot, slot.pend_ns, slot.pend_book, slot.pend_update)
                except Exception:
                    self.stats.callback_errors += 1
                    self.log.exception("deciding %s at the end of the read raised", slot.ticker)
        finally:
            self._acts, self._marks_todo = outer_acts, outer_marks
        engine = self.engine
        if acts:
            try:
                if len(acts) == 1:
                    a = <tuple>acts[0]
                    if not self._first_of(a):
                        engine._act(a[0], a[1], a[2], a[3], a[4], marks=a[5], decided_ns=a[6])
                else:
                    engine._act_read(acts)
            except Exception:
                self.stats.callback_errors += 1
                self.log.exception("sending the decisions of the read raised")
        for slot in marks:
            try:
                if slot.core.top_moved():
                    engine._marks(slot.ticker, slot.core)
            except Exception:
                self.stats.callback_errors += 1
                self.log.exception("marking %s at the end of the read raised", slot.ticker)
        return 0

    cdef int _first_of(self, tuple a) except -1:
        # _first for a decision a flush kept: (pipe, actions, live, trigger_ns, stamps, marks, decided_ns)
        cdef PyObject* p
        if self.fa_qw is None:
            return 0
        p = PyDict_GetItem(self.slots, a[0].ticker)
        if p == NULL or (<_Slot>p).pipe is not a[0]:
            return 0
        return self._first(<_Slot>p, a[1], a[2], a[3], a[4], a[5], a[6])

    cdef inline int _mark(self, _Slot slot, bint book) except -1:
        # a book decision's marks (the top of book moved): after the read's requests while a flush
        # decides, else now
        if not book:
            return 0
        if self._marks_todo is not None:
            self._marks_todo.append(slot)
        elif slot.core.top_moved():
            self.engine._marks(slot.ticker, slot.core)
        return 0

    def defer(self, ticker, int64_t trigger_ns):
        """A fill or an order update of ``ticker`` wants a re-quote while a read is under way: it joins
        the read's pending set (one decision per market per read, made when the read ends). False when
        it must be made now by the caller (coalesce off, no read under way, not a market decided here)."""
        cdef PyObject* p
        cdef _Slot slot
        if not self.coalesce or not self.open:
            return False
        p = PyDict_GetItem(self.slots, ticker)
        if p == NULL:
            return False
        slot = <_Slot>p
        self.deferred += 1
        slot.pend_update = True
        if slot.pending:
            self.coalesced += 1
        else:
            slot.pending = True
            slot.pend_book = False
            slot.pend_ns = trigger_ns
            self._pending.append(slot)
        return True

    def discard(self, ticker):
        """``ticker``'s pending decision is not to be made (its book went stale, the Python path
        decided it): counted in ``dropped``."""
        self._discard(ticker)

    cdef int _discard(self, object ticker) except -1:
        cdef PyObject* p
        if ticker is None:
            return 0
        p = PyDict_GetItem(self.slots, ticker)
        if p != NULL and (<_Slot>p).pending:
            (<_Slot>p).pending = False
            self.dropped += 1
        return 0

    def drop(self):
        """Forget every pending decision and the read under way (the connection is gone: every book
        is stale and the engine pulls the quotes)."""
        cdef _Slot slot
        for slot in self._pending:
            if slot.pending:
                slot.pending = False
                self.dropped += 1
        self._pending = []
        self.open = False
        self._n_read = 0

    cdef int _delta(self, object ticker, int64_t recv_ns) except -1:
        """Engine.on_book for a delta the router applied: HANDED when the market is not one this object
        handles in its state (nothing changed then); else the freshness stamp, the signals and the
        decision (now, or at the end of the read)."""
        cdef PyObject* p = PyDict_GetItem(self.slots, ticker) if ticker is not None else NULL
        cdef _Slot slot
        cdef Pipeline core
        cdef int64_t now, wall
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
        if gate.freshness is None or (gate.backoff is not None and getattr(gate.backoff, "pauses", None) is None):
            self._why[3] += 1
            return HANDED                      # no change counter to hold the gate's answer against
        if not self.coalesce:
            return self._decide_now(slot, recv_ns)
        # apply: the freshness stamp and the signals now, the decision when the read ends
        now = self._mono()
        if core.own_dirty:
            self.synced += 1
            core.own_sync(self.session.om.live_orders(ticker, now_ns=now), now)
        wall = self._wall()
        self.stats.book_frames += 1
        fresh.last_data_ns = now               # book data, never pings, keeps a book fresh
        pipe.last_book_ns = now
        core._signals_own(now, wall)
        if slot.pending:
            self.coalesced += 1
            slot.pend_book = True
        else:
            slot.pending = True
            slot.pend_book = True
            slot.pend_update = False
            slot.pend_ns = recv_ns or now
            self._pending.append(slot)
        return PENDING

    cdef int _decide(self, _Slot slot, int64_t trigger_ns, bint book, bint update) except -1:
        """A pending market decided when its read ended, on its latest book (its signals are current:
        each delta fed them). Every check is made here: what came between the apply and now (a stop, a
        kill, a stale book, a gate change, an order update) wins. ``book``: a book delta is among its
        triggers (the marks follow the decision); ``update``: a fill or an order update is (its
        bookkeeping came first: the stamp goes to ``update_decide_ns``, as ``Engine._requote`` stamps
        it; else to ``decide_ns``)."""
        cdef Pipeline core = slot.core
        cdef int64_t now, wall, epoch
        cdef int v
        ticker = slot.ticker
        pipe = slot.pipe
        fresh = slot.fresh
        engine = self.engine
        if PyDict_GetItem(self.slots, ticker) != <PyObject*>slot or core.book is None or not pipe.ready:
            self.dropped += 1                  # removed, rebuilt or stale since: no decision
            return 0
        if (book and fresh.state == CHECKING) or not engine.quoting or engine.stopping:
            self.dropped += 1                  # being checked, stopped since: the marks only (the book was applied)
            self._mark(slot, book)
            return 0
        gate = self.gate
        fr, lim = gate.freshness, gate.backoff
        pauses = 0 if lim is None else getattr(lim, "pauses", None)
        epoch = -1 if fr is None or pauses is None else gate.epoch + fr.epoch + pauses
        now = self._mono()
        if core.own_dirty:
            self.synced += 1
            core.own_sync(self.session.om.live_orders(ticker, now_ns=now), now)
        wall = self._wall()
        v = core.verdict_q(now, wall, epoch)
        if v >= 4:                             # the gate's held answer lapsed: ask it (Engine._frame's steps)
            self.asked += 1
            d = gate.is_quotable(ticker)
            if not d:
                core.forget_quotable()
                engine._not_quotable(pipe, d, core._nown)
                self._mark(slot, book)
                self.nothing += 1
                return FAST_NOTHING
            core.hold_quotable(epoch, gate.quotable_until_wall_ns(ticker))
            v -= 4
        if v != 0:                             # requests in flight, a hold, a request open on an order
            pipe.dirty = True
            self._mark(slot, book)
            self.nothing += 1
            return FAST_NOTHING
        pipe.dirty = False
        alpha = 0.0 if pipe._alpha_zero else pipe.alpha.get_external_skew(ticker)
        # Pipeline.frame_own less its signals (fed by each delta as it was applied)
        core.inventory = <qty_t>self._inventory(ticker)
        self._set_rooms(core, ticker, pipe.info.fractional)
        core.alpha_skew = alpha
        core._target()
        core.decisions += 1
        actions = core._diff_own(core.bid_price if core.bid_size else 0, core.bid_size,
                                 core.ask_price if core.ask_size else 0, core.ask_size, now)
        return self._acted(slot, actions, trigger_ns or now, book, update)

    cdef int _acted(self, _Slot slot, object actions, int64_t trigger_ns, bint book, bint update) except -1:
        cdef Pipeline core = slot.core
        cdef int64_t decided
        engine = self.engine
        pipe = slot.pipe
        if actions:
            decided = self._mono()
            self.decided += 1
            stamps = engine.update_decide_ns if update else engine.decide_ns
            if self._acts is not None:         # a flush: sent once every pending market is decided
                self._acts.append((pipe, actions, core._nown, trigger_ns, stamps, book, decided))
                return FAST_DECIDED
            if not self._first(slot, actions, core._nown, trigger_ns, stamps, book, decided):
                engine._act(pipe, actions, core._nown, trigger_ns, stamps, marks=book, decided_ns=decided)
            return FAST_DECIDED
        # Engine._act with no actions: quoting, the marks, and a market with orders is not blocked
        pipe.state = QUOTING
        self._mark(slot, book)
        if core._nown and PyDict_Contains(self.blocked, slot.ticker):
            PyDict_DelItem(self.blocked, slot.ticker)
        elif not core._nown and core.last_dropped:
            engine._event_room(pipe)          # the event gate has no room for its places: not quoting
        self.nothing += 1
        return FAST_NOTHING

    cdef int _decide_now(self, _Slot slot, int64_t recv_ns) except -1:
        """A delta decided as it is applied (coalesce off): the gate is not asked here (HANDED when its
        held answer lapsed: the Python path asks it)."""
        cdef Pipeline core = slot.core
        cdef int64_t now, wall, epoch
        cdef int v
        ticker = slot.ticker
        pipe = slot.pipe
        fresh = slot.fresh
        engine = self.engine
        gate = self.gate
        lim = gate.backoff
        epoch = gate.epoch + gate.freshness.epoch + (0 if lim is None else lim.pauses)
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
        self._set_rooms(core, ticker, pipe.info.fractional)
        actions = core._frame_own(now, wall, <qty_t>self._inventory(ticker), alpha)
        return self._acted(slot, actions, recv_ns or now, True, False)
