# One market's decision pipeline in one compiled object (issue 15): the book's best prices with our
# own resting orders taken out, the online signals (volatility EWMA, OFI skew, microprice, kappa), a
# compiled strategy (Avellaneda-Stoikov or the inside maker) and the differ. Units as everywhere in
# _core: prices 1e-4 $ YES terms, sizes 1e-2 contracts, time ns; floats only in the model math.
cimport cython
from libc.stdint cimport int64_t, uint64_t
from kmm._core._types cimport px_t, qty_t, ns_t
from kmm._core.book cimport OrderBook
from kmm._core.grid cimport Grid
from kmm._core.ofi cimport OFI
from kmm._core.quote cimport QuoteParams, Quotes
from kmm._core.diff cimport Differ

# Pre-check outcomes (the per-market rules of kmm.engine.risk.RiskGate), 0 = allowed.
cdef enum:
    CHK_OK = 0
    CHK_BAD_SIZE = 1
    CHK_MAX_ORDER_SIZE = 2
    CHK_FRACTIONAL = 3
    CHK_PRICE_RANGE = 4
    CHK_OFF_GRID = 5
    CHK_NOTIONAL = 6
    CHK_OPEN_ORDERS = 7
    CHK_REDUCE_ONLY = 8
    CHK_MAX_POSITION = 9

cdef enum:
    STRAT_STOIKOV = 0     # kmm._core.quote on microprice or mid (kmm.strategy.stoikov)
    STRAT_INSIDE = 1      # one tick inside the best prices (kmm.strategy.inside)
    STRAT_EXTERNAL = 2    # the target is set from Python (a Python strategy): set_target()


@cython.final
cdef class Pipeline:
    cdef readonly str ticker
    cdef readonly Grid grid
    cdef readonly OrderBook book         # None until the router has a book for the market
    cdef readonly int strategy_kind      # STRAT_*
    cdef readonly QuoteParams qparams    # Stoikov only; rebuilt when kappa moves > 1 %
    cdef readonly bint use_microprice
    cdef readonly qty_t quote_size       # inside maker only
    cdef readonly qty_t max_position     # inside maker only
    cdef readonly Differ differ
    cdef readonly OFI ofi                # None: no OFI
    cdef readonly double ofi_weight
    cdef readonly double horizon_s
    cdef readonly object close_time_ns   # wall clock ns or None
    cdef bint _has_close
    cdef ns_t _close_ns
    cdef Quotes _q                       # scratch for the Stoikov quote
    # volatility EWMA (kmm.strategy.signals.VolatilityEWMA)
    cdef readonly double vol_halflife_s
    cdef readonly double vol_prior
    cdef readonly int64_t vol_min_samples
    cdef readonly ns_t vol_sample_ns
    cdef readonly int64_t vol_samples
    cdef double _var
    cdef bint _vol_has_last
    cdef double _vol_last_mid
    cdef ns_t _vol_last_ns
    cdef double _strat_kappa             # the kappa qparams was built with
    # the strategy inputs (kmm.strategy.base.MarketInputs)
    cdef readonly px_t best_bid          # ex-own, 0 when none
    cdef readonly px_t best_ask          # ex-own, 0 when none
    cdef readonly qty_t best_bid_size
    cdef readonly qty_t best_ask_size
    cdef readonly bint has_mid
    cdef double _mid
    cdef double _micro
    cdef readonly qty_t inventory
    cdef readonly double tau_s
    cdef readonly double sigma
    cdef public double kappa             # per 1e-4 $
    cdef readonly double ofi_skew
    cdef readonly double alpha_skew
    # the target (kmm.strategy.base.Target)
    cdef readonly px_t bid_price
    cdef readonly qty_t bid_size
    cdef readonly px_t ask_price
    cdef readonly qty_t ask_size
    cdef bint _has_res
    cdef double _res
    cdef bint _has_half
    cdef double _half
    cdef readonly uint64_t decisions
    cdef readonly uint64_t frames
    # pre-checks (set_limits): the per-market half of the risk gate
    cdef readonly bint has_limits
    cdef qty_t _lim_order_size
    cdef bint _lim_fractional
    cdef px_t _lim_price_min
    cdef px_t _lim_price_max
    cdef int64_t _lim_notional
    cdef qty_t _lim_position
    cdef double _lim_reduce_at
    cdef int64_t _lim_open_orders
    cdef uint64_t _denied[10]
    # own orders read from the live list (scratch, grown never shrunk)
    cdef Py_ssize_t _ocap
    cdef px_t* _opx
    cdef qty_t* _oqty

    # our own live orders held here (own_set / own_remove from the order manager's transitions), in
    # the order they were first set, so frame_own() needs no list of LiveOrder from Python
    cdef Py_ssize_t _nown
    cdef Py_ssize_t _own_cap
    cdef list _own_coid
    cdef dict _own_index
    cdef int* _own_side
    cdef px_t* _own_px
    cdef qty_t* _own_rem
    cdef ns_t* _own_created
    cdef char* _own_acked
    cdef char* _own_act                  # actionable: resting/partial with an order id, no request open
    # the may-decide state mirrored here (issue 15): set by the engine / the order manager's watcher
    cdef public bint own_dirty           # the order manager changed this market's orders since own_sync
    cdef public int64_t in_flight        # requests sent and not answered
    cdef public ns_t hold_until_ns       # no deciding before this (monotonic ns) after a refused create
    cdef int64_t _q_epoch                # the risk gate's ALLOW held for this epoch (-1: none held)
    cdef ns_t _q_until_wall              # ... and until this wall clock ns (the close gate)
    cdef bint _marked                    # the top of book (ex-own) last handed to the marks
    # the event gate's rooms (kmm.engine.events.EventRiskGate.place_rooms, 1e-6 $), set by the engine
    # before each decision: a place whose least size (block_step, 1e-2 contracts) at its price would
    # lower the event's P&L past its side's room is refused by the gate whatever its size; the diff
    # drops it (2**62: no bound)
    cdef public int64_t bid_room
    cdef public int64_t ask_room
    cdef public int64_t block_step
    cdef public int64_t last_dropped        # places the last decision dropped for the rooms
    cdef readonly uint64_t places_blocked   # places dropped for side_block so far
    cdef px_t _marked_bid
    cdef px_t _marked_ask

    cdef int _reserve_table(self, Py_ssize_t n) except -1
    cpdef int verdict(self, ns_t now_ns)
    cpdef int verdict_q(self, ns_t now_ns, ns_t wall_ns, int64_t epoch)
    cpdef bint top_moved(self)
    cdef int _signals_own(self, ns_t now_ns, ns_t wall_ns) except -1
    cdef object _frame_own(self, ns_t now_ns, ns_t wall_ns, qty_t inventory, double alpha_skew)
    cdef object _diff_own(self, px_t bid_px, qty_t bid_size, px_t ask_px, qty_t ask_size, ns_t now_ns)
    cdef int _reserve_own(self, Py_ssize_t n) except -1
    cdef int _signals(self, ns_t now_ns, ns_t wall_ns, object live) except -1
    cdef int _signals_slow(self, ns_t now_ns, ns_t wall_ns, object live) except -1
    cdef int _set_best(self, px_t bb, qty_t bbs, px_t ba, qty_t bas) except -1
    cdef int _after_best(self, ns_t now_ns, ns_t wall_ns) except -1
    cdef int _best_ex_own(self, int side, Py_ssize_t n_own, px_t* out_px, qty_t* out_sz) noexcept
    cdef int _vol_update(self, ns_t now_ns) noexcept
    cdef int _refresh_tau(self, ns_t wall_ns) except -1
    cdef int _target(self) except -1
    cdef Py_ssize_t _read_live(self, object live) except -1
    cdef object _diff(self, px_t bid_px, qty_t bid_size, px_t ask_px, qty_t ask_size, object live)
    cdef qty_t _live_remaining(self, object live, object coid)
    cdef px_t _live_price(self, object live, object coid)
    cdef int _check(self, int side, px_t price, qty_t count, qty_t position, qty_t resting,
                    int64_t open_orders, bint place) noexcept
    cdef Py_ssize_t _keep(self, Py_ssize_t m) noexcept
    cdef bint _refused(self, int side, px_t price, qty_t size) noexcept
