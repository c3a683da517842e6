"""One market's whole decision in one compiled call: book -> ex-own best prices -> signals -> strategy ->
target -> actions.

:class:`Pipeline` reproduces, decision for decision, what ``kmm.engine.market.MarketPipeline`` decides
with ``kmm.strategy.stoikov``, ``kmm.strategy.inside``, ``kmm.strategy.signals`` and the differ (the
plain-Python reference is tests/reference/pipeline.py; property tests compare every decision). The
floats are computed in the same order as the Python path, and the two integer divisions that Python
does exactly (microprice, time to the close) take the exact Python route when their operands pass 2**53.

``frame(now_ns, wall_ns, inventory, live, alpha_skew)`` is the one crossing per book frame: it reads
our live orders (``kmm.engine.orders.LiveOrder`` tuples) straight from their tuples, takes them out of
the book, updates the signals, quotes and diffs; it returns a tuple of ``kmm._core.diff.Action`` (the
shared empty tuple when nothing changes). ``on_book`` + ``decide`` are the same in two steps.
"""

cimport cython
from cpython.mem cimport PyMem_Realloc, PyMem_Free
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.object cimport PyObject
from libc.math cimport exp, log, sqrt, pow, isfinite
from libc.stdint cimport int64_t, INT64_MAX

from kmm._core._types cimport px_t, qty_t, ns_t
from kmm._core.book cimport OrderBook, SIDE_YES, SIDE_NO
from kmm._core.grid cimport Grid
from kmm._core.ofi cimport OFI
from kmm._core.quote cimport QuoteParams, Quotes, fill_quotes
from kmm._core.diff cimport Differ, Action, act_t, ACT_PLACE, ACT_AMEND, ACT_CANCEL

CHECK_NAMES = ("ok", "bad_size", "max_order_size", "fractional_size", "price_range", "off_grid",
               "max_order_notional", "max_open_orders", "reduce_only", "max_position")
STOIKOV = STRAT_STOIKOV
INSIDE = STRAT_INSIDE
EXTERNAL = STRAT_EXTERNAL

cdef double NS_PER_S_F = 1e9
cdef int64_t EXACT_INT = 9007199254740992    # 2**53: ints below it convert to double exactly
cdef Py_ssize_t MAX_OWN_SCAN = 64            # own price levels looked past per side (then Python does it)
cdef int64_t ROOM_OPEN_C = 4611686018427387904   # 2**62: Pipeline.bid_room / ask_room, no bound known
ROOM_OPEN = ROOM_OPEN_C

cdef str S_BID = "bid"
cdef str S_ASK = "ask"


cdef inline int _side_code(object s) except -1:
    if s is S_BID:
        return 0
    if s is S_ASK:
        return 1
    if s == S_BID:
        return 0
    if s == S_ASK:
        return 1
    raise KeyError(s)


@cython.final
cdef int _live_fields(object o, Py_ssize_t i, Py_ssize_t need, str who, bint age_checked, int* side,
                      long long* price, long long* rem, long long* age) except -1:
    """Read live[i], a LiveOrder (order_id, side, price, remaining, age_ns, client_order_id, actionable),
    into side/price/remaining/age, checked: at least ``need`` fields, a price on 1..9999, remaining
    >= 0 (and age >= 0 with ``age_checked``). ``who`` starts the messages ("" or "own_sync: ")."""
    if not isinstance(o, tuple) or PyTuple_GET_SIZE(o) < need:
        raise TypeError(f"{who}live[{i}] = {o!r} is not a LiveOrder")
    side[0] = _side_code(<object>PyTuple_GET_ITEM(o, 1))
    price[0] = <object>PyTuple_GET_ITEM(o, 2)
    rem[0] = <object>PyTuple_GET_ITEM(o, 3)
    age[0] = <object>PyTuple_GET_ITEM(o, 4)
    if price[0] < 1 or price[0] > 9999:
        raise ValueError(f"{who}live[{i}]: price {price[0]} is outside 1..9999 (1e-4 $)")
    if age_checked:
        if rem[0] < 0 or age[0] < 0:
            raise ValueError(f"{who}live[{i}]: remaining {rem[0]} (1e-2 contracts) and age_ns {age[0]} "
                             "must be >= 0")
    elif rem[0] < 0:
        raise ValueError(f"{who}live[{i}]: remaining {rem[0]} must be >= 0 (1e-2 contracts)")
    return 0


cdef class Pipeline:
    """Signals, strategy and diff of one market. Build it with :func:`stoikov`, :func:`inside` or
    :func:`external` (a Python strategy sets the target with :meth:`set_target`)."""

    def __cinit__(self):
        self._ocap = 0
        self._opx = NULL
        self._oqty = NULL
        self._nown = 0
        self._own_cap = 0
        self._own_coid = []
        self._own_index = {}
        self._own_side = NULL
        self._own_px = NULL
        self._own_rem = NULL
        self._own_created = NULL
        self._own_acked = NULL
        self._own_act = NULL
        self.own_dirty = True
        self.in_flight = 0
        self.hold_until_ns = 0
        self._q_epoch = -1
        self._q_until_wall = 0
        self._marked = False

    def __dealloc__(self):
        PyMem_Free(self._opx)
        PyMem_Free(self._oqty)
        PyMem_Free(self._own_side)
        PyMem_Free(self._own_px)
        PyMem_Free(self._own_rem)
        PyMem_Free(self._own_created)
        PyMem_Free(self._own_acked)
        PyMem_Free(self._own_act)

    # ------------------------------------------------------------------ own orders held here
    cdef int _reserve_table(self, Py_ssize_t n) except -1:
        cdef void* p
        if n <= self._own_cap:
            return 0
        n = max(n, 2 * self._own_cap, 8)
        p = PyMem_Realloc(self._own_side, n * sizeof(int))
        if p == NULL:
            raise MemoryError()
        self._own_side = <int*>p
        p = PyMem_Realloc(self._own_px, n * sizeof(px_t))
        if p == NULL:
            raise MemoryError()
        self._own_px = <px_t*>p
        p = PyMem_Realloc(self._own_rem, n * sizeof(qty_t))
        if p == NULL:
            raise MemoryError()
        self._own_rem = <qty_t*>p
        p = PyMem_Realloc(self._own_created, n * sizeof(ns_t))
        if p == NULL:
            raise MemoryError()
        self._own_created = <ns_t*>p
        p = PyMem_Realloc(self._own_acked, n * sizeof(char))
        if p == NULL:
            raise MemoryError()
        self._own_acked = <char*>p
        p = PyMem_Realloc(self._own_act, n * sizeof(char))
        if p == NULL:
            raise MemoryError()
        self._own_act = <char*>p
        self._own_cap = n
        return 0

    def own_set(self, client_order_id, int side, px_t price, qty_t remaining, ns_t created_ns, bint acked,
                bint actionable=True):
        """Add or update one of our live orders as the diff should see it (what
        ``OrderManager.live_orders`` would list: an amend in flight shows its new price and size;
        ``acked``: the exchange has given it an order id; ``actionable``: no request on it is open).
        A new order goes last."""
        cdef Py_ssize_t i
        if side != 0 and side != 1:
            raise ValueError(f"own_set: side {side} must be 0 (bid) or 1 (ask)")
        if price < 1 or price > 9999:
            raise ValueError(f"own_set: price {price} is outside 1..9999 (1e-4 $)")
        if remaining < 0:
            raise ValueError(f"own_set: remaining {remaining} must be >= 0 (1e-2 contracts)")
        slot = self._own_index.get(client_order_id)
        if slot is None:
            self._reserve_table(self._nown + 1)
            i = self._nown
            self._nown += 1
            self._own_coid.append(client_order_id)
            self._own_index[client_order_id] = i
        else:
            i = slot
        self._own_side[i] = side
        self._own_px[i] = price
        self._own_rem[i] = remaining
        self._own_created[i] = created_ns
        self._own_acked[i] = acked
        self._own_act[i] = actionable

    def own_remove(self, client_order_id):
        """The order is no longer live for the diff (closed, or being cancelled). No-op if unknown."""
        cdef Py_ssize_t i, j
        slot = self._own_index.pop(client_order_id, None)
        if slot is None:
            return
        i = slot
        for j in range(i, self._nown - 1):
            self._own_side[j] = self._own_side[j + 1]
            self._own_px[j] = self._own_px[j + 1]
            self._own_rem[j] = self._own_rem[j + 1]
            self._own_created[j] = self._own_created[j + 1]
            self._own_acked[j] = self._own_acked[j + 1]
            self._own_act[j] = self._own_act[j + 1]
        del self._own_coid[i]
        self._nown -= 1
        for j in range(i, self._nown):
            self._own_index[self._own_coid[j]] = j

    def own_clear(self):
        """Forget every own order (e.g. before a reconcile rebuilds them)."""
        self._nown = 0
        self._own_coid = []
        self._own_index = {}

    def own_sync(self, live, ns_t now_ns):
        """Replace the held orders by ``live`` (``OrderManager.live_orders(ticker, now_ns=now_ns)``:
        LiveOrder tuples whose ages count to ``now_ns``, in that order) and clear :attr:`own_dirty`. The engine calls it on the first frame after the
        order manager touched this market, so a frame with no order change reads no Python list."""
        cdef Py_ssize_t n = len(live), i
        cdef object o, coid
        cdef int side
        cdef long long price, rem, age
        self._reserve_table(n)
        self._own_coid = []
        self._own_index = {}
        self._nown = 0
        for i in range(n):
            o = live[i]
            _live_fields(o, i, 7, "own_sync: ", False, &side, &price, &rem, &age)
            coid = <object>PyTuple_GET_ITEM(o, 5)
            self._own_coid.append(coid)
            self._own_index[coid] = i
            self._own_side[i] = side
            self._own_px[i] = price
            self._own_rem[i] = rem
            self._own_created[i] = now_ns - age
            self._own_acked[i] = <object>PyTuple_GET_ITEM(o, 0) is not None
            self._own_act[i] = bool(<object>PyTuple_GET_ITEM(o, 6))
            self._nown = i + 1
        self.own_dirty = False

    @property
    def own_count(self):
        return self._nown

    cpdef int verdict(self, ns_t now_ns):
        """The may-decide state held here, asked in C on every book frame: 0 may decide (as far as
        this object knows: the risk gate's quotability is asked apart), 1 requests in flight, 2 held
        after a refused create, 3 an own order with a request open (not actionable)."""
        cdef Py_ssize_t i
        if self.in_flight:
            return 1
        if self.hold_until_ns and now_ns < self.hold_until_ns:
            return 2
        for i in range(self._nown):
            if not self._own_act[i]:
                return 3
        return 0

    cpdef int verdict_q(self, ns_t now_ns, ns_t wall_ns, int64_t epoch):
        """:meth:`verdict` with the risk gate's quotability held here: 1 or 2 as there; otherwise, when
        an ALLOW of the gate is held for ``epoch`` (the engine's sum of the gate's, the freshness's and
        the limiter's change counters) and ``wall_ns`` is before its close gate, 0 or 3 as there; else
        4 (ask the gate) or 7 (ask the gate; an order is not actionable)."""
        cdef int v = self.verdict(now_ns)
        if v == 1 or v == 2:
            return v
        if epoch >= 0 and epoch == self._q_epoch and wall_ns < self._q_until_wall:
            return v
        return v + 4

    def hold_quotable(self, int64_t epoch, ns_t until_wall_ns):
        """The risk gate allowed quoting at ``epoch``: :meth:`verdict_q` keeps that answer while the epoch
        stands and the wall clock is before ``until_wall_ns``. A negative epoch holds nothing."""
        self._q_epoch = epoch
        self._q_until_wall = until_wall_ns

    def forget_quotable(self):
        self._q_epoch = -1

    def signals_own(self, ns_t now_ns, ns_t wall_ns):
        """:meth:`on_book` on the orders held here (a frame that decides nothing still feeds the signals)."""
        if self.book is None:
            raise ValueError(f"Pipeline({self.ticker}): no book yet")
        self._signals_own(now_ns, wall_ns)

    cpdef bint top_moved(self):
        """True (once) when the top of book ex-own moved since the last True: the portfolio marks run
        only then. :meth:`mark_reset` makes the next call True whatever the top."""
        if self._marked and self.best_bid == self._marked_bid and self.best_ask == self._marked_ask:
            return False
        self._marked = True
        self._marked_bid = self.best_bid
        self._marked_ask = self.best_ask
        return True

    def mark_reset(self):
        self._marked = False

    cdef int _signals_own(self, ns_t now_ns, ns_t wall_ns) except -1:
        cdef OrderBook book = self.book
        cdef Py_ssize_t i, nb = 0, na = 0, n = self._nown
        cdef px_t bb, ba
        cdef qty_t bbs, bas
        cdef int r
        self._reserve_own(n + 1)
        for i in range(n):
            if self._own_acked[i] and self._own_rem[i] > 0 and self._own_side[i] == 0:
                self._opx[nb] = self._own_px[i]
                self._oqty[nb] = self._own_rem[i]
                nb += 1
        if nb:
            r = self._best_ex_own(SIDE_YES, nb, &bb, &bbs)
            if r < 0:
                return self._signals_slow(now_ns, wall_ns, self.own_orders(now_ns))
        else:
            bb = book._best_px(SIDE_YES)
            bb = 0 if bb < 0 else bb
            bbs = book._best_sz(SIDE_YES)
        for i in range(n):
            if self._own_acked[i] and self._own_rem[i] > 0 and self._own_side[i] == 1:
                self._opx[na] = self._own_px[i]
                self._oqty[na] = self._own_rem[i]
                na += 1
        if na:
            r = self._best_ex_own(SIDE_NO, na, &ba, &bas)
            if r < 0:
                return self._signals_slow(now_ns, wall_ns, self.own_orders(now_ns))
        else:
            ba = book._best_px(SIDE_NO)
            ba = 0 if ba < 0 else 10000 - ba
            bas = book._best_sz(SIDE_NO)
        self._set_best(bb, bbs, ba, bas)
        self._after_best(now_ns, wall_ns)
        return 0

    def own_orders(self, ns_t now_ns):
        """The held orders as LiveOrder-shaped tuples ``(order_id or None, side, price, remaining,
        age_ns, client_order_id, actionable)``, in order (order_id is a placeholder: True when acked)."""
        return [(True if self._own_acked[i] else None, "bid" if self._own_side[i] == 0 else "ask",
                 self._own_px[i], self._own_rem[i], now_ns - self._own_created[i], self._own_coid[i],
                 bool(self._own_act[i]))
                for i in range(self._nown)]

    cdef object _diff_own(self, px_t bid_px, qty_t bid_size, px_t ask_px, qty_t ask_size, ns_t now_ns):
        cdef Differ df = self.differ
        cdef Py_ssize_t n = self._nown, m, j, i, k
        cdef act_t* a
        cdef Action act
        cdef tuple out
        cdef ns_t age
        if bid_size > 0 and ask_size > 0 and bid_px >= ask_px:
            raise ValueError(f"diff: target bid {bid_px} must be below target ask {ask_px}")
        if (bid_size > 0 and not 1 <= bid_px <= 9999) or (ask_size > 0 and not 1 <= ask_px <= 9999):
            raise ValueError(f"diff: target prices {bid_px} / {ask_px} must be in 1..9999 (1e-4 $)")
        df._reserve(n)
        for i in range(n):
            age = now_ns - self._own_created[i]
            if age < 0:
                raise ValueError(f"own order {self._own_coid[i]!r}: created after now_ns")
            df._side[i] = self._own_side[i]
            df._px[i] = self._own_px[i]
            df._rem[i] = self._own_rem[i]
            df._age[i] = age
        m = df._decide(bid_px, bid_size, ask_px, ask_size, n)
        if m == 0:
            self.last_dropped = 0
            return ()
        k = self._keep(m)
        if k == 0:
            return ()
        out = PyTuple_New(k)
        i = 0
        for j in range(m):
            a = &df._acts[j]
            if a.kind == ACT_PLACE and self._refused(a.side, a.price, a.size):
                continue
            act = Action.__new__(Action)
            act.kind = a.kind
            act.side = a.side
            act.order_id = None if a.live_index < 0 else self._own_coid[a.live_index]
            act.price = a.price
            act.size = a.size
            Py_INCREF(act)
            PyTuple_SET_ITEM(out, i, act)
            i += 1
        return out

    def frame_own(self, ns_t now_ns, ns_t wall_ns, qty_t inventory, double alpha_skew=0.0):
        """:meth:`frame` on the orders held with :meth:`own_set`: no Python list per frame."""
        return self._frame_own(now_ns, wall_ns, inventory, alpha_skew)

    cdef object _frame_own(self, ns_t now_ns, ns_t wall_ns, qty_t inventory, double alpha_skew):
        if self.book is None:
            raise ValueError(f"Pipeline({self.ticker}): no book yet")
        self._signals_own(now_ns, wall_ns)
        self.inventory = inventory
        self.alpha_skew = alpha_skew
        self._target()
        self.decisions += 1
        return self._diff_own(self.bid_price if self.bid_size else 0, self.bid_size,
                              self.ask_price if self.ask_size else 0, self.ask_size, now_ns)

    def __init__(self, str ticker not None, Grid grid not None, Differ differ not None, *,
                 int strategy_kind=STRAT_EXTERNAL, QuoteParams qparams=None, bint use_microprice=True,
                 qty_t quote_size=0, qty_t max_position=0, OFI ofi=None, double ofi_weight=0.0,
                 double horizon_s=0.0, close_time_ns=None, double kappa=0.01,
                 double vol_halflife_s=60.0, double vol_prior=5.0, int64_t vol_min_samples=5,
                 double vol_sample_s=1.0, OrderBook book=None):
        if strategy_kind == STRAT_STOIKOV and qparams is None:
            raise ValueError(f"Pipeline({ticker}): the Stoikov strategy needs its QuoteParams")
        if not 0 <= strategy_kind <= 2:
            raise ValueError(f"Pipeline({ticker}): strategy_kind {strategy_kind} must be 0 (stoikov), "
                             "1 (inside) or 2 (external)")
        if vol_halflife_s <= 0 or vol_prior < 0 or vol_sample_s <= 0:
            raise ValueError(f"VolatilityEWMA: halflife_s {vol_halflife_s} and sample_s {vol_sample_s} must "
                             f"be > 0 and prior {vol_prior} >= 0")
        self.ticker = ticker
        self.grid = grid
        self.differ = differ
        self.strategy_kind = strategy_kind
        self.qparams = qparams
        self._strat_kappa = qparams.kappa if qparams is not None else 0.0
        self.use_microprice = use_microprice
        self.quote_size = quote_size
        self.max_position = max_position
        self.ofi = ofi
        self.ofi_weight = ofi_weight
        self.horizon_s = horizon_s
        self.close_time_ns = close_time_ns
        self._has_close = close_time_ns is not None
        self._close_ns = close_time_ns if close_time_ns is not None else 0
        self.kappa = kappa
        self.vol_halflife_s = vol_halflife_s
        self.vol_prior = vol_prior
        self.vol_min_samples = vol_min_samples
        self.vol_sample_ns = <ns_t>int(vol_sample_s * 1e9)
        self._var = vol_prior * vol_prior
        self._vol_has_last = False
        self.vol_samples = 0
        self.sigma = 0.0          # like MarketInputs.sigma: 0.0 until the first book update
        self.book = book
        self._q = Quotes.__new__(Quotes)
        self._reserve_own(8)
        self.bid_room = self.ask_room = ROOM_OPEN_C
        self.block_step = 100

    cdef int _reserve_own(self, Py_ssize_t n) except -1:
        cdef void* p
        if n <= self._ocap:
            return 0
        n = max(n, 2 * self._ocap)
        p = PyMem_Realloc(self._opx, n * sizeof(px_t))
        if p == NULL:
            raise MemoryError()
        self._opx = <px_t*>p
        p = PyMem_Realloc(self._oqty, n * sizeof(qty_t))
        if p == NULL:
            raise MemoryError()
        self._oqty = <qty_t*>p
        self._ocap = n
        return 0

    def set_book(self, OrderBook book):
        """The router's book for this market (None: not subscribed yet)."""
        self.book = book

    # ------------------------------------------------------------------ MarketInputs-compatible view
    @property
    def mid(self):
        """(best bid + best ask) / 2 ex-own (float, 1e-4 $), None when a side is empty."""
        return self._mid if self.has_mid else None

    @property
    def microprice(self):
        """Size-weighted mid ex-own (float, 1e-4 $), None when a side is empty."""
        return self._micro if self.has_mid else None

    @property
    def reservation(self):
        """The target's reservation price (float, 1e-4 $) or None."""
        return self._res if self._has_res else None

    @property
    def half_spread(self):
        """The target's half spread (float, 1e-4 $) or None."""
        return self._half if self._has_half else None

    # ------------------------------------------------------------------ signals
    cdef int _best_ex_own(self, int side, Py_ssize_t n_own, px_t* out_px, qty_t* out_sz) noexcept:
        # Best level of `side` (0 YES bids, 1 NO bids = YES asks) once our own sizes, collected in
        # _opx/_oqty[0:n_own] by YES price, are taken out; the price in YES terms. Looks at the first
        # n_distinct + 1 levels like the Python path (at most n_distinct levels can be ours alone).
        # Returns 0 when nothing is left, 1 when found, -1 when the scan needs more room than the stack.
        cdef px_t lpx[65]
        cdef qty_t lsz[65]
        cdef Py_ssize_t n_distinct = 0, i, j, k
        cdef bint seen
        cdef px_t p
        cdef qty_t rest
        for i in range(n_own):
            seen = False
            for j in range(i):
                if self._opx[j] == self._opx[i]:
                    seen = True
                    break
            if not seen:
                n_distinct += 1
        if n_distinct + 1 > MAX_OWN_SCAN:
            return -1
        k = self.book._top_levels(side, n_distinct + 1, lpx, lsz)
        for i in range(k):
            p = lpx[i] if side == SIDE_YES else 10000 - lpx[i]
            rest = lsz[i]
            for j in range(n_own):
                if self._opx[j] == p:
                    rest -= self._oqty[j]
            if rest > 0:
                out_px[0] = p
                out_sz[0] = rest
                return 1
        out_px[0] = 0
        out_sz[0] = 0
        return 0

    cdef int _vol_update(self, ns_t now_ns) noexcept:
        cdef double dt, rate, w, d
        cdef ns_t elapsed
        if not self.has_mid:
            return 0
        if not self._vol_has_last:
            self._vol_has_last = True
            self._vol_last_mid = self._mid
            self._vol_last_ns = now_ns
            return 0
        elapsed = now_ns - self._vol_last_ns
        if elapsed < self.vol_sample_ns:
            return 0
        dt = <double>elapsed / 1e9
        d = self._mid - self._vol_last_mid
        rate = pow(d, 2.0) / dt
        w = 1.0 - exp(-log(2.0) * dt / self.vol_halflife_s)
        self._var += w * (rate - self._var)
        self.vol_samples += 1
        self._vol_last_mid = self._mid
        self._vol_last_ns = now_ns
        return 0

    cdef int _refresh_tau(self, ns_t wall_ns) except -1:
        cdef double left
        cdef int64_t d
        if self._has_close:
            d = self._close_ns - wall_ns
            if -EXACT_INT < d < EXACT_INT:
                left = <double>d / 1e9      # exact operands: the same rounding as Python's int / int
            else:
                left = (self.close_time_ns - wall_ns) / 1_000_000_000
            if left < 0.0:
                left = 0.0
        if self.horizon_s > 0:
            self.tau_s = self.horizon_s if not self._has_close else (
                self.horizon_s if self.horizon_s <= left else left)
        else:
            self.tau_s = left if self._has_close else 3600.0
        return 0

    cdef int _signals(self, ns_t now_ns, ns_t wall_ns, object live) except -1:
        cdef OrderBook book = self.book
        cdef Py_ssize_t n, i, nb = 0, na = 0
        cdef object o
        cdef px_t bb, ba, p
        cdef qty_t bbs, bas, rem
        cdef int side, r
        cdef px_t* opx
        cdef qty_t* oq
        # our acknowledged, non-empty orders: bids first in the scratch, asks from the end
        n = len(live)
        self._reserve_own(n + 1)
        opx = self._opx
        oq = self._oqty
        for i in range(n):
            o = live[i]
            if not isinstance(o, tuple) or PyTuple_GET_SIZE(o) < 6:
                raise TypeError(f"live[{i}] = {o!r} is not a LiveOrder")
            if <object>PyTuple_GET_ITEM(o, 0) is None:
                continue
            rem = <object>PyTuple_GET_ITEM(o, 3)
            if rem <= 0:
                continue
            side = 0 if <object>PyTuple_GET_ITEM(o, 1) == S_BID else 1
            p = <object>PyTuple_GET_ITEM(o, 2)
            if side == 0:
                opx[nb] = p
                oq[nb] = rem
                nb += 1
            else:
                na += 1
                opx[n - na] = p
                oq[n - na] = rem
        if nb:
            r = self._best_ex_own(SIDE_YES, nb, &bb, &bbs)
            if r < 0:
                return self._signals_slow(now_ns, wall_ns, live)
        else:
            bb = book._best_px(SIDE_YES)
            bb = 0 if bb < 0 else bb
            bbs = book._best_sz(SIDE_YES)
        if na:
            # move the asks to the front of the scratch for _best_ex_own
            for i in range(na):
                opx[i] = opx[n - na + i]
                oq[i] = oq[n - na + i]
            r = self._best_ex_own(SIDE_NO, na, &ba, &bas)
            if r < 0:
                return self._signals_slow(now_ns, wall_ns, live)
        else:
            ba = book._best_px(SIDE_NO)
            ba = 0 if ba < 0 else 10000 - ba
            bas = book._best_sz(SIDE_NO)
        self._set_best(bb, bbs, ba, bas)
        self._after_best(now_ns, wall_ns)
        return 0

    cdef int _set_best(self, px_t bb, qty_t bbs, px_t ba, qty_t bas) except -1:
        cdef int64_t num, den
        self.best_bid = bb
        self.best_ask = ba
        self.best_bid_size = bbs
        self.best_ask_size = bas
        if bb and ba:
            self.has_mid = True
            self._mid = <double>(bb + ba) / 2.0
            den = bbs + bas
            if den > 0:
                num = bb * bas + ba * bbs
                if num < EXACT_INT and den < EXACT_INT:
                    self._micro = <double>num / <double>den
                else:
                    self._micro = (<object>bb * bas + <object>ba * bbs) / (<object>bbs + bas)
            else:
                self._micro = self._mid
        else:
            self.has_mid = False
        return 0

    cdef int _after_best(self, ns_t now_ns, ns_t wall_ns) except -1:
        cdef OFI ofi
        cdef double normalized
        self._vol_update(now_ns)
        if self.vol_samples < self.vol_min_samples:
            self.sigma = self.vol_prior
        else:
            self.sigma = sqrt(self._var if self._var > 0.0 else 0.0)
        ofi = self.ofi
        if ofi is not None:
            ofi.update(self.book, now_ns)
            if self.ofi_weight:
                normalized = 0.0 if ofi._sum_d[0] == 0 else (
                    ofi._sum_e[0] * 2.0 * ofi._count / ofi._sum_d[0])
                self.ofi_skew = self.ofi_weight * 10000.0 * normalized
        self._refresh_tau(wall_ns)
        self.frames += 1
        return 0

    cdef int _signals_slow(self, ns_t now_ns, ns_t wall_ns, object live) except -1:
        # More than 63 distinct own prices on a side: the Python path's dictionaries.
        own = ({}, {})
        for o in live:
            if o[0] is not None and o[3] > 0:
                d = own[_side_code(o[1])]
                d[o[2]] = d.get(o[2], 0) + o[3]
        if own[0]:
            bb, bbs = _py_best_ex_own(self.book.bids(len(own[0]) + 1), own[0])
        else:
            bb, bbs = self.book.best_bid() or 0, self.book.best_bid_size()
        if own[1]:
            ba, bas = _py_best_ex_own(self.book.asks(len(own[1]) + 1), own[1])
        else:
            ba, bas = self.book.best_ask() or 0, self.book.best_ask_size()
        self._set_best(bb, bbs, ba, bas)
        self._after_best(now_ns, wall_ns)
        return 0

    def on_book(self, ns_t now_ns, ns_t wall_ns, live=()):
        """Read the book (our acknowledged orders in ``live`` taken out) and update the signals."""
        if self.book is None:
            raise ValueError(f"Pipeline({self.ticker}): no book yet")
        self._signals(now_ns, wall_ns, live)

    def refresh_tau(self, ns_t wall_ns):
        """Recompute the model horizon left (tau_s) at ``wall_ns``."""
        self._refresh_tau(wall_ns)

    def set_close_time(self, close_time_ns):
        """The market's close moved (lifecycle ``close_date_updated``): tau counts to the new close
        from the next refresh (wall clock ns, or None for no close)."""
        self.close_time_ns = close_time_ns
        self._has_close = close_time_ns is not None
        self._close_ns = close_time_ns if close_time_ns is not None else 0

    def set_kappa(self, double kappa):
        """The estimated order-arrival decay (per 1e-4 $) the next decision uses."""
        self.kappa = kappa

    # ------------------------------------------------------------------ strategy
    cdef int _target(self) except -1:
        cdef double ref
        cdef QuoteParams qp
        cdef Quotes q
        cdef px_t bid, ask
        cdef qty_t bsz, asz
        cdef double skew
        if self.strategy_kind == STRAT_STOIKOV:
            if not self.has_mid:
                self.bid_price = self.bid_size = self.ask_price = self.ask_size = 0
                self._has_res = self._has_half = False
                return 0
            ref = self._micro if self.use_microprice else self._mid
            if self.kappa > 0 and abs(self.kappa - self._strat_kappa) > 0.01 * self._strat_kappa:
                self.qparams = self.qparams.replace(kappa=self.kappa)
                self._strat_kappa = self.kappa
            if not isfinite(ref):
                raise ValueError(f"compute: mid = {ref!r} must be a finite price (1e-4 $)")
            if not (isfinite(self.tau_s) and self.tau_s >= 0.0):
                raise ValueError(f"compute: tau = {self.tau_s!r} must be finite and >= 0 (seconds to the close)")
            if not (isfinite(self.sigma) and self.sigma >= 0.0):
                raise ValueError(f"compute: sigma = {self.sigma!r} must be finite and >= 0 (1e-4 $ per sqrt(s))")
            if not (isfinite(self.ofi_skew) and isfinite(self.alpha_skew)):
                raise ValueError(f"compute: ofi_skew = {self.ofi_skew!r} and alpha_skew = {self.alpha_skew!r} "
                                 "must be finite (1e-4 $)")
            q = self._q
            fill_quotes(self.qparams, q, ref, self.inventory, self.tau_s, self.sigma,
                        self.ofi_skew + self.alpha_skew, self.best_bid, self.best_ask)
            self.bid_price = q.bid_price
            self.bid_size = q.bid_size
            self.ask_price = q.ask_price
            self.ask_size = q.ask_size
            self._has_res = self._has_half = True
            self._res = q.reservation
            self._half = q.half_spread
            return 0
        if self.strategy_kind == STRAT_INSIDE:
            bid = ask = 0
            bsz = asz = 0
            if self.best_bid != 0 and self.best_ask != 0 and self.best_ask > self.best_bid:
                bid = self.grid.ceil_px(self.best_bid + 1)
                ask = self.grid.floor_px(self.best_ask - 1)
                if bid < 0 or ask < 0 or bid > ask:
                    bid = ask = 0
                else:
                    bsz = self.max_position - self.inventory
                    if self.quote_size < bsz:
                        bsz = self.quote_size
                    if bsz < 0:
                        bsz = 0
                    asz = self.max_position + self.inventory
                    if self.quote_size < asz:
                        asz = self.quote_size
                    if asz < 0:
                        asz = 0
                    if bid == ask:
                        if self.inventory > 0:
                            bsz = 0
                        else:
                            asz = 0
            self.bid_price = bid if bsz else 0
            self.bid_size = bsz
            self.ask_price = ask if asz else 0
            self.ask_size = asz
            self._has_res = self.has_mid
            self._res = self._mid
            self._has_half = bsz != 0 and asz != 0
            self._half = <double>(self.ask_price - self.bid_price) / 2
            return 0
        return 0   # external: the target was set by set_target()

    def set_target(self, px_t bid_price, qty_t bid_size, px_t ask_price, qty_t ask_size,
                   reservation=None, half_spread=None):
        """The target of a Python strategy (STRAT_EXTERNAL) for the next :meth:`diff_target`."""
        self.bid_price = bid_price
        self.bid_size = bid_size
        self.ask_price = ask_price
        self.ask_size = ask_size
        self._has_res = reservation is not None
        self._res = reservation if reservation is not None else 0.0
        self._has_half = half_spread is not None
        self._half = half_spread if half_spread is not None else 0.0

    # ------------------------------------------------------------------ diff
    cdef Py_ssize_t _read_live(self, object live) except -1:
        # LiveOrder(order_id, side, price, remaining, age_ns, client_order_id, actionable) -> the
        # differ's scratch, validated like Differ.diff does.
        cdef Differ df = self.differ
        cdef Py_ssize_t n = len(live), i
        cdef int side
        cdef long long price, rem, age
        df._reserve(n)
        for i in range(n):
            _live_fields(live[i], i, 6, "", True, &side, &price, &rem, &age)
            df._side[i] = side
            df._px[i] = price
            df._rem[i] = rem
            df._age[i] = age
        return n

    cdef object _diff(self, px_t bid_px, qty_t bid_size, px_t ask_px, qty_t ask_size, object live):
        cdef Differ df = self.differ
        cdef Py_ssize_t n, m, j, i, k
        cdef act_t* a
        cdef Action act
        cdef tuple out
        if bid_size < 0 or ask_size < 0:
            raise ValueError(f"diff: target sizes {bid_size}, {ask_size} must be >= 0 "
                             "(1e-2 contracts; 0 = no quote)")
        if bid_size > 0 and not 1 <= bid_px <= 9999:
            raise ValueError(f"diff: target bid price {bid_px} is outside 1..9999 (1e-4 $)")
        if ask_size > 0 and not 1 <= ask_px <= 9999:
            raise ValueError(f"diff: target ask price {ask_px} is outside 1..9999 (1e-4 $)")
        if bid_size > 0 and ask_size > 0 and bid_px >= ask_px:
            raise ValueError(f"diff: target bid {bid_px} must be below target ask {ask_px}")
        n = self._read_live(live)
        m = df._decide(bid_px, bid_size, ask_px, ask_size, n)
        if m == 0:
            self.last_dropped = 0
            return ()
        k = self._keep(m)
        if k == 0:
            return ()
        out = PyTuple_New(k)
        i = 0
        for j in range(m):
            a = &df._acts[j]
            if a.kind == ACT_PLACE and self._refused(a.side, a.price, a.size):
                continue
            act = Action.__new__(Action)
            act.kind = a.kind
            act.side = a.side
            act.order_id = None if a.live_index < 0 else <object>PyTuple_GET_ITEM(live[a.live_index], 5)
            act.price = a.price
            act.size = a.size
            Py_INCREF(act)
            PyTuple_SET_ITEM(out, i, act)
            i += 1
        return out

    cdef bint _refused(self, int side, px_t price, qty_t size) noexcept:
        # a place the event gate refuses whatever its size: its least size (block_step, or 1 for a size
        # that is no whole number of contracts: the order path's search step) already lowers the
        # event's P&L past the side's room (kmm.engine.events.EventRiskGate.place_rooms)
        cdef int64_t step = self.block_step if size % 100 == 0 else 1
        if side == 0:
            return step * <int64_t>price > self.bid_room
        return step * <int64_t>(10000 - price) > self.ask_room

    cdef Py_ssize_t _keep(self, Py_ssize_t m) noexcept:
        # the differ's actions kept: all but the places the event gate refuses whatever their size
        # (bid_room / ask_room, set by the engine before each decision); those are counted
        cdef Py_ssize_t j, k = m
        cdef act_t* a
        self.last_dropped = 0
        if self.bid_room >= ROOM_OPEN_C and self.ask_room >= ROOM_OPEN_C:
            return m
        for j in range(m):
            a = &self.differ._acts[j]
            if a.kind == ACT_PLACE and self._refused(a.side, a.price, a.size):
                k -= 1
        self.places_blocked += m - k
        self.last_dropped = m - k
        return k

    def set_rooms(self, int64_t bid_room, int64_t ask_room, int64_t block_step=100):
        """The event gate's rooms for this decision (``EventRiskGate.place_rooms``, 1e-6 $) and the least
        size the order path tries (``block_step``: 100, or 1 on a fractional market in market-level
        reduce-only, where the market gate may cut a place to part of a contract): a bid place at
        ``p`` is dropped when ``step * p > bid_room``, an ask when ``step * (1$ - p) > ask_room``, with
        ``step`` = ``block_step`` for a size in whole contracts, else 1. ``ROOM_OPEN`` (2**62) on both:
        nothing dropped."""
        self.bid_room = bid_room
        self.ask_room = ask_room
        self.block_step = block_step

    def refused(self, int side, px_t price, qty_t size):
        """True when a place of ``size`` at ``price`` on ``side`` (0 bid, 1 ask) is dropped under the rooms held."""
        return self._refused(side, price, size)

    def decide(self, qty_t inventory, live, double alpha_skew=0.0):
        """The actions that move ``live`` (LiveOrder tuples) to the strategy's target."""
        self.inventory = inventory
        self.alpha_skew = alpha_skew
        self._target()
        self.decisions += 1
        return self._diff(self.bid_price if self.bid_size else 0, self.bid_size,
                          self.ask_price if self.ask_size else 0, self.ask_size, live)

    def diff_target(self, live):
        """The actions that move ``live`` to the target set by :meth:`set_target` (a Python strategy)."""
        self.decisions += 1
        return self._diff(self.bid_price if self.bid_size else 0, self.bid_size,
                          self.ask_price if self.ask_size else 0, self.ask_size, live)

    def pull(self, live):
        """Actions that cancel every live order in ``live``."""
        return self._diff(0, 0, 0, 0, live)

    def frame(self, ns_t now_ns, ns_t wall_ns, qty_t inventory, live, double alpha_skew=0.0):
        """One book frame, one call: :meth:`on_book` then :meth:`decide`."""
        if self.book is None:
            raise ValueError(f"Pipeline({self.ticker}): no book yet")
        self._signals(now_ns, wall_ns, live)
        self.inventory = inventory
        self.alpha_skew = alpha_skew
        self._target()
        self.decisions += 1
        return self._diff(self.bid_price if self.bid_size else 0, self.bid_size,
                          self.ask_price if self.ask_size else 0, self.ask_size, live)

    # ------------------------------------------------------------------ pre-checks
    def set_limits(self, *, qty_t max_order_size, bint fractional, px_t price_min, px_t price_max,
                   int64_t max_order_notional, qty_t max_position, double reduce_only_at,
                   int64_t max_open_orders):
        """The per-market limits of the risk gate (kmm.engine.risk.RiskLimits, in its units)."""
        self._lim_order_size = max_order_size
        self._lim_fractional = fractional
        self._lim_price_min = price_min
        self._lim_price_max = price_max
        self._lim_notional = max_order_notional
        self._lim_position = max_position
        self._lim_reduce_at = reduce_only_at
        self._lim_open_orders = max_open_orders
        self.has_limits = True

    cdef int _check(self, int side, px_t price, qty_t count, qty_t position, qty_t resting,
                    int64_t open_orders, bint place) noexcept:
        # RiskGate._fat_finger, the per-market open-order count (places) and _position_gate without
        # the account-wide parts (total position, loss and close-time reduce-only: Python's).
        cdef int64_t notional, sign, worst, aq, aw
        if count <= 0:
            return CHK_BAD_SIZE
        if count > self._lim_order_size:
            return CHK_MAX_ORDER_SIZE
        if not self._lim_fractional and count % 100:
            return CHK_FRACTIONAL
        if not self._lim_price_min <= price <= self._lim_price_max:
            return CHK_PRICE_RANGE
        if not self.grid.valid(price):
            return CHK_OFF_GRID
        notional = count * (price if side == 0 else 10000 - price)
        notional = notional // 100 if notional >= 0 else -((-notional + 99) // 100)
        if notional > self._lim_notional:
            return CHK_NOTIONAL
        if place and open_orders >= self._lim_open_orders:
            return CHK_OPEN_ORDERS
        sign = 1 if side == 0 else -1
        worst = position + sign * (resting + count)
        aq = -position if position < 0 else position
        aw = -worst if worst < 0 else worst
        if <double>aq >= self._lim_reduce_at * <double>self._lim_position:
            if position * sign >= 0 or resting + count > aq:
                return CHK_REDUCE_ONLY
            return CHK_OK
        if aw > self._lim_position and aw > aq:
            return CHK_MAX_POSITION
        return CHK_OK

    def check(self, int side, px_t price, qty_t count, qty_t position, qty_t resting,
              int64_t open_orders=0, bint place=True):
        """The pre-check of one new (``place``) or amended order: 0 when allowed, else an index into
        ``CHECK_NAMES``. ``resting``: the side's open size, less the amended order's own remaining."""
        if not self.has_limits:
            raise ValueError(f"Pipeline({self.ticker}): set_limits() first")
        return self._check(side, price, count, position, resting, open_orders, place)

    def frame_checked(self, ns_t now_ns, ns_t wall_ns, qty_t inventory, live, double alpha_skew,
                      qty_t open_bid, qty_t open_ask, int64_t open_orders):
        """:meth:`frame`, then the pre-checks with the open size per side and the market's open order
        count from before the decision: a refused place is dropped, a refused amend becomes a cancel
        (what the engine does when its gate refuses them). Everything an order adds within a decision
        only grows those figures, so whatever is refused here the gate would refuse too; it stays the
        authority for the account-wide rules. Refusals are counted in ``denied``."""
        cdef tuple acts = self.frame(now_ns, wall_ns, inventory, live, alpha_skew)
        cdef Action a, c
        cdef int r
        cdef list out
        cdef Py_ssize_t j, n = len(acts)
        if n == 0 or not self.has_limits:
            return acts
        out = None
        for j in range(n):
            a = <Action>acts[j]
            r = CHK_OK
            if a.kind == ACT_PLACE:
                r = self._check(a.side, a.price, a.size, inventory, open_bid if a.side == 0 else open_ask,
                                open_orders, True)
            elif a.kind == ACT_AMEND:
                r = self._check(a.side, a.price, a.size, inventory,
                                (open_bid if a.side == 0 else open_ask) - self._live_remaining(live, a.order_id),
                                open_orders, False)
            if r == CHK_OK:
                if out is not None:
                    out.append(a)
                continue
            self._denied[r] += 1
            if out is None:
                out = list(acts[:j])
            if a.kind == ACT_AMEND:
                c = Action.__new__(Action)
                c.kind = ACT_CANCEL
                c.side = a.side
                c.order_id = a.order_id
                c.price = self._live_price(live, a.order_id)
                c.size = 0
                out.append(c)
        return acts if out is None else tuple(out)

    cdef qty_t _live_remaining(self, object live, object coid):
        for o in live:
            if o[5] == coid:
                return o[3]
        return 0

    cdef px_t _live_price(self, object live, object coid):
        for o in live:
            if o[5] == coid:
                return o[2]
        return 0

    @property
    def denied(self):
        """Pre-check refusals so far by reason name (only the reasons that happened)."""
        return {CHECK_NAMES[i]: self._denied[i] for i in range(1, 10) if self._denied[i]}

    @property
    def vol_sigma(self):
        """The volatility estimate now (prior until enough samples), 1e-4 $ per sqrt(s)."""
        if self.vol_samples < self.vol_min_samples:
            return self.vol_prior
        return sqrt(self._var if self._var > 0.0 else 0.0)

    def __repr__(self):
        return (f"Pipeline({self.ticker!r}, strategy={('stoikov', 'inside', 'external')[self.strategy_kind]}, "
                f"best={self.best_bid}/{self.best_ask}, sigma={self.sigma:.3f}, decisions={self.decisions})")


def _py_best_ex_own(levels, own):
    for price, size in levels:
        rest = size - own.get(price, 0)
        if rest > 0:
            return price, rest
    return 0, 0
