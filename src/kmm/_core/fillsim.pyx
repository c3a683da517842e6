"""The fill simulator's hot path, compiled (issue 10).

:class:`FillCore` does what the plain-Python :class:`kmm.research.fills.FillSimulator` methods of the
same names do (their reference: a simulator made with ``compiled=False`` runs those methods): a
recorded trade against our virtual orders (``on_trade``, with the sweep fills, the queue in front
eaten first and the cancels the queue model splits), the queue upkeep after a recorded book delta
(``on_book_change``, ``expire_all``), and the orders' way in and out (``place``, ``cancel``,
``decrease``, ``amend``, the maker and taker fills). The same steps in the same order on the same
objects: the simulator's dicts of orders, the market's replay book, the ``FillStats``, the order and
trade counters on the simulator, every ``Fill`` and ``OrderAck`` field equal. The book is read and
moved in C when it is the compiled ``OrderBook`` (through its Python methods otherwise), the
:class:`SimOrder` fields are read from its struct, and the queue model's cancel split is the same
float arithmetic in C.

The simulator binds these methods on itself when it is compiled (the default), so every caller (the
backtest's drivers, the compiled replay loop, the simulator's own Python steps such as the pick-off
hazard and the snapshot correction) takes them. tests/research/test_fillsim.py feeds both the same
random streams and compares every fill, ack and order field and the queue state.

Units as everywhere in kmm: prices 1e-4 $ YES, sizes 1e-2 contracts, money 1e-4 $, time ns.
"""

cimport cython
from cpython.object cimport PyObject_GenericSetAttr
from libc.math cimport ceil, log1p, pow, isinf
from libc.stdint cimport int16_t, int64_t

from kmm._core._types cimport px_t, qty_t
from kmm._core.book cimport OrderBook
from kmm._core.fees cimport fee_e4

cdef int64_t ONE = 10_000
cdef enum:
    YES = 0
    NO = 1
    _CROSS_DEPTH = 8        # FillSimulator._crosses looks at this many levels

# queue models (kmm.research.queue.QUEUE_MODELS)
cdef enum:
    Q_PESSIMISTIC = 0
    Q_PROPORTIONAL = 1
    Q_POWER = 2
    Q_LOG = 3
    Q_OPTIMISTIC = 4


@cython.final
cdef class SimOrder:
    """One virtual order of the fill simulator (``kmm.research.fills.SimOrder``, which is this class).
    ``ahead`` is a float: the expected size in front of us.

    A compiled class with the fields the plain-Python one had in its ``__slots__`` (Python code reads
    and writes them as before, each holding the same Python object): the compiled steps that walk a
    market's resting orders on every book message and trade (the fill simulator's, the pick-off
    hazard, the replay's trade and upkeep filters) read them from the object's struct instead of a
    generic attribute lookup each. The fields stay Python objects, but for the pick-off hazard's (a C
    int64 and doubles: every value the simulator gives them is an int or a float already), so every
    value and every result is the one the Python class gave."""

    __slots__ = ("order_id", "coid", "ticker", "side", "price", "initial", "remaining", "filled",
                 "post_only", "carry", "fees", "status", "bside", "bprice", "ahead", "seen",
                 "pend", "credit", "created_ms", "updated_ms", "hz_t", "hz_acc", "hz_need", "hz_rate", "sweep")

    def __init__(self, order_id, coid, ticker, side, price, count, post_only, now_ms):
        self.order_id = order_id
        self.coid = coid
        self.ticker = ticker
        self.side = side
        self.price = price
        self.initial = count
        self.remaining = count
        self.filled = 0
        self.post_only = post_only
        self.carry = 0                       # cent-rounding carry of this order, 1e-4 $
        self.fees = 0
        self.status = "resting"
        self.bside = 0 if side == "bid" else 1           # fills.YES / fills.NO
        self.bprice = price if side == "bid" else 10_000 - price
        self.ahead = 0.0
        self.seen = 0                        # others' size at our level when last looked, 1e-2
        self.pend = []                       # [time ns, size]: level decreases not yet explained
        self.credit = []                     # [time ns, size]: trades seen before their book delta
        self.created_ms = now_ms
        self.updated_ms = now_ms
        self.hz_t = -1                       # pick-off hazard: last check (ns; -1 not yet checked),
        self.hz_acc = 0.0                    # accumulated hazard, the Exp(1) draw it must reach,
        self.hz_need = 0.0                   # and the rate (per ns) since the last check
        self.hz_rate = 0.0
        self.sweep = None                    # (taker side, ms, fill, carry, fees before it)

    def user_order(self, recv_ns=0):
        from kmm.kalshi.types import UserOrder
        return UserOrder(order_id=self.order_id, client_order_id=self.coid, ticker=self.ticker,
                         status=self.status, side=self.side, price=self.price, initial_count=self.initial,
                         fill_count=self.filled, remaining_count=self.remaining,
                         created_ts_ms=self.created_ms, last_updated_ts_ms=self.updated_ms, recv_ns=recv_ns)


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept:
    # a // b as Python floors it (the module is built with C division, which truncates)
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline double _fmax0(double x) noexcept:
    # max(0.0, x) as Python picks it (the first of equals: 0.0 for x == 0.0 or -0.0)
    return x if x > 0.0 else 0.0


cdef double _front_share(int kind, double power, double ahead, double behind) except? -1.0:
    # QueueModel.front_share
    cdef double fa, fb, total
    if ahead <= 0:
        return 0.0
    if behind <= 0:
        return 1.0
    if kind == Q_PESSIMISTIC:
        return 0.0
    if kind == Q_OPTIMISTIC:
        return 1.0
    if kind == Q_PROPORTIONAL:
        fa, fb = ahead, behind
    elif kind == Q_POWER:
        fa = pow(ahead / 100.0, power)
        fb = pow(behind / 100.0, power)
        if isinf(fa) or isinf(fb):          # Python's float ** raises where C's pow gives inf
            raise OverflowError("(34, 'Numerical result out of range')")
    else:
        fa = log1p(ahead / 100.0)
        fb = log1p(behind / 100.0)
    total = fa + fb
    return fa / total if total > 0 else 0.5


cdef double _after_cancel(int kind, double power, double ahead, double behind, int64_t cancelled) except? -1.0:
    # QueueModel.after_cancel
    cdef double share, from_front, from_back
    if cancelled <= 0 or ahead <= 0:
        return _fmax0(ahead)
    if kind == Q_PESSIMISTIC:
        return _fmax0(ahead - _fmax0(<double>cancelled - behind))
    share = _front_share(kind, power, ahead, behind)
    from_front = share * <double>cancelled
    from_back = <double>cancelled - from_front
    if from_back > behind:
        from_front += from_back - behind
    return _fmax0(ahead - from_front)


cdef int _kind_code(object kind) except -1:
    if kind == "pessimistic":
        return Q_PESSIMISTIC
    if kind == "proportional":
        return Q_PROPORTIONAL
    if kind == "power":
        return Q_POWER
    if kind == "log":
        return Q_LOG
    if kind == "optimistic":
        return Q_OPTIMISTIC
    raise ValueError(f"queue model {kind!r} is not one of kmm.research.queue.QUEUE_MODELS")


def queue_after_cancel(kind, double power, double ahead, double behind, int64_t cancelled):
    """``QueueModel(kind, power).after_cancel(ahead, behind, cancelled)`` as the compiled steps
    compute it (tests hold the two equal)."""
    return _after_cancel(_kind_code(kind), power, ahead, behind, cancelled)


@cython.final
cdef class _FMarket:
    # one market of the simulator as the compiled steps see it: the simulator's _Market (its dicts
    # and book are read from it, so a book attached or replaced later is the one used)
    cdef object m               # kmm.research.fills._Market
    cdef object book            # the book last seen on m
    cdef OrderBook cbook        # that book when it is the compiled OrderBook, else None

    cdef inline object _book(self):
        b = self.m.book
        if b is not self.book:
            self.book = b
            self.cbook = b if isinstance(b, OrderBook) else None
        return b


cdef qty_t _size_at(_FMarket mk, int bside, int64_t bprice) except? -1:
    # book.size_at("yes"/"no", bprice)
    b = mk._book()
    cdef OrderBook cb = mk.cbook
    cdef int16_t* table
    if cb is None:
        return b.size_at("yes" if bside == YES else "no", bprice)
    if bprice <= 0 or bprice >= 10000:
        return 0
    table = cb._slot if bside == YES else cb._slot_no
    if table[bprice] < 0:
        return 0
    return cb._q[bside * cb._n + table[bprice]]


cdef int _apply(_FMarket mk, object bside, object bprice, object delta) except -1:
    # book.apply_level_delta(bside, bprice, delta)
    b = mk._book()
    if mk.cbook is None:
        b.apply_level_delta(bside, bprice, delta)
    else:
        mk.cbook._apply_level(bside, bprice, delta)
    return 0


cdef int64_t _own_at(dict orders, int bside, int64_t bprice) except? -1:
    # FillSimulator._own_at
    cdef int64_t n = 0
    cdef SimOrder o
    for o in orders.values():
        if o.bside == bside and o.bprice == bprice:
            n += <int64_t>o.remaining
    return n


@cython.final
cdef class FillCore:
    """The compiled steps of one :class:`kmm.research.fills.FillSimulator` (``sim``): each public
    method is the simulator's method of the same name, the same steps."""

    cdef object sim
    cdef dict markets           # ticker -> _FMarket
    cdef object fill_type, ack_type, obj_new
    cdef tuple fill_names, ack_names

    def __init__(self, sim):
        from kmm.kalshi.types import Fill, OrderAck
        import dataclasses
        self.sim = sim
        self.markets = {}
        cdef _FMarket mk
        for t, m in sim.markets.items():
            mk = _FMarket()
            mk.m = m
            mk.book = None
            mk.cbook = None
            self.markets[t] = mk
        self.fill_type, self.ack_type = Fill, OrderAck
        self.obj_new = object.__new__
        # kmm.research.fills checks both field lists when it is imported (_new_fill, _new_ack)
        self.fill_names = tuple(f.name for f in dataclasses.fields(Fill))
        self.ack_names = tuple(f.name for f in dataclasses.fields(OrderAck))

    cdef inline _FMarket _market(self, object ticker):
        mk = self.markets.get(ticker)
        if mk is None:
            m = self.sim.markets[ticker]        # KeyError as the simulator's lookup
            mk = _FMarket()
            mk.m = m
            self.markets[ticker] = mk
        return <_FMarket>mk

    # ------------------------------------------------------------------ made objects
    cdef object _new_fill(self, trade_id, order_id, coid, ticker, side, price, count, fee, is_taker, ts_ms,
                          recv_ns):
        # kmm.research.fills._new_fill (post_position and exchange_index None): each slot set as
        # object.__setattr__ sets it, without a Python call per field
        f = self.obj_new(self.fill_type)
        cdef tuple n = self.fill_names
        PyObject_GenericSetAttr(f, n[0], trade_id)
        PyObject_GenericSetAttr(f, n[1], order_id)
        PyObject_GenericSetAttr(f, n[2], coid)
        PyObject_GenericSetAttr(f, n[3], ticker)
        PyObject_GenericSetAttr(f, n[4], side)
        PyObject_GenericSetAttr(f, n[5], price)
        PyObject_GenericSetAttr(f, n[6], count)
        PyObject_GenericSetAttr(f, n[7], fee)
        PyObject_GenericSetAttr(f, n[8], is_taker)
        PyObject_GenericSetAttr(f, n[9], None)
        PyObject_GenericSetAttr(f, n[10], ts_ms)
        PyObject_GenericSetAttr(f, n[11], recv_ns)
        PyObject_GenericSetAttr(f, n[12], None)
        return f

    cdef object _new_ack(self, order_id, coid, fill_count, remaining_count, ts_ms):
        # kmm.research.fills._new_ack
        a = self.obj_new(self.ack_type)
        cdef tuple n = self.ack_names
        PyObject_GenericSetAttr(a, n[0], order_id)
        PyObject_GenericSetAttr(a, n[1], coid)
        PyObject_GenericSetAttr(a, n[2], fill_count)
        PyObject_GenericSetAttr(a, n[3], remaining_count)
        PyObject_GenericSetAttr(a, n[4], None)
        PyObject_GenericSetAttr(a, n[5], None)
        PyObject_GenericSetAttr(a, n[6], ts_ms)
        PyObject_GenericSetAttr(a, n[7], False)
        PyObject_GenericSetAttr(a, n[8], False)
        return a

    # ------------------------------------------------------------------ book helpers
    cdef int _level(self, _FMarket mk, int bside, int64_t bprice, int64_t delta) except -1:
        # FillSimulator._level: move a level by delta, never below zero
        cdef int64_t have
        if delta == 0:
            return 0
        if delta < 0:
            have = _size_at(mk, bside, bprice)
            if have + delta < 0:
                stats = self.sim.stats
                stats.clamped += 1
                delta = -have
                if delta == 0:
                    return 0
        _apply(mk, bside, bprice, delta)
        return 0

    cdef int64_t _others_at(self, _FMarket mk, object side, int64_t price) except? -1:
        cdef int bside = YES if side == "bid" else NO
        cdef int64_t bprice = price if side == "bid" else ONE - price
        cdef int64_t v = _size_at(mk, bside, bprice) - _own_at(mk.m.orders, bside, bprice)
        return v if v > 0 else 0

    def others_at(self, ticker, side, price):
        """``FillSimulator.others_at``."""
        return self._others_at(self._market(ticker), side, price)

    cdef bint _crosses(self, _FMarket mk, object side, int64_t price) except -1:
        # FillSimulator._crosses: the first eight levels of the opposite side, best first
        cdef px_t px[_CROSS_DEPTH]
        cdef qty_t sz[_CROSS_DEPTH]
        cdef Py_ssize_t i, n
        cdef int64_t p
        b = mk._book()
        cdef OrderBook cb = mk.cbook
        cdef dict orders = mk.m.orders
        if side == "bid":
            if cb is None:
                for p, s in b.asks(_CROSS_DEPTH):
                    if p > price:
                        return False
                    if s - _own_at(orders, NO, ONE - p) > 0:
                        return True
                return False
            n = cb._top_levels(NO, _CROSS_DEPTH, px, sz)
            for i in range(n):
                if ONE - px[i] > price:
                    return False
                if sz[i] - _own_at(orders, NO, px[i]) > 0:
                    return True
            return False
        if cb is None:
            for p, s in b.bids(_CROSS_DEPTH):
                if p < price:
                    return False
                if s - _own_at(orders, YES, p) > 0:
                    return True
            return False
        n = cb._top_levels(YES, _CROSS_DEPTH, px, sz)
        for i in range(n):
            if px[i] < price:
                return False
            if sz[i] - _own_at(orders, YES, px[i]) > 0:
                return True
        return False

    # ------------------------------------------------------------------ queue upkeep
    def on_book_change(self, int64_t now, ticker, int level=-1):
        """``FillSimulator.on_book_change``."""
        cdef _FMarket mk = self._market(ticker)
        cdef dict orders = mk.m.orders
        if not orders:
            return
        cdef SimOrder o, q
        cdef int bside
        cdef int64_t bprice, own, vis, seen, d, used, cap
        cdef list credit, c
        cdef bint found
        cdef int64_t window
        if level >= 0:
            bside, bprice = level >> 16, level & 0xFFFF
            found = False
            for o in orders.values():
                if o.bprice == bprice and o.bside == bside:
                    found = True
                    break
            if not found:
                check = self.sim.check_levels
                for o in list(orders.values()):
                    if check:
                        own = 0
                        for q in orders.values():
                            if q.bside == o.bside and q.bprice == o.bprice:
                                own += <int64_t>q.remaining
                        vis = _size_at(mk, o.bside, o.bprice) - own
                        if vis < 0:
                            vis = 0
                        assert vis == o.seen, (ticker, level, o.order_id, vis, o.seen)
                    if o.pend:
                        self._expire(o, now)
                    cap = self._cap(o, <int64_t>o.seen)
                    if o.ahead > cap:
                        o.ahead = <double>cap
                return
        window = self.sim.trade_window_ns
        for o in list(orders.values()):
            # others_at, inline: the visible size at our level less our own orders there
            bside, bprice = o.bside, o.bprice
            own = 0
            for q in orders.values():
                if q.bside == bside and q.bprice == bprice:
                    own += <int64_t>q.remaining
            vis = _size_at(mk, bside, bprice) - own
            if vis < 0:
                vis = 0
            seen = o.seen
            if vis < seen:
                d = seen - vis
                credit = o.credit
                while d and credit:
                    c = credit[0]
                    if now - <int64_t>c[0] > window:
                        credit.pop(0)
                        continue
                    used = c[1]
                    if d < used:
                        used = d
                    c[1] = c[1] - used
                    d -= used
                    if c[1] == 0:
                        credit.pop(0)
                if d:
                    o.pend.append([now, d])
            o.seen = vis
            if o.pend:
                self._expire(o, now)
            # nobody can be in front who is not visible, except what left and is not yet explained
            cap = self._cap(o, vis)
            if o.ahead > cap:
                o.ahead = <double>cap

    cdef inline int64_t _cap(self, SimOrder o, int64_t vis) except? -1:
        # vis + the size of the order's unexplained decreases
        cdef list pend = o.pend
        cdef int64_t cap = vis
        for p in pend:
            cap += <int64_t>(<list>p)[1]
        return cap

    cdef int _expire(self, SimOrder o, int64_t now) except -1:
        # FillSimulator._expire: level decreases no trade explained within the window are cancels
        cdef list pend = o.pend
        if not pend:
            return 0
        cdef int64_t window = self.sim.trade_window_ns
        if now - <int64_t>(<list>pend[0])[0] <= window:
            return 0
        queue = self.sim.queue
        cdef int kind = _kind_code(queue.kind)
        cdef double power = queue.power
        cdef int64_t d, rest, seen
        cdef double behind, before, after, ahead, cap
        stats = self.sim.stats
        while pend and now - <int64_t>(<list>pend[0])[0] > window:
            d = (<list>pend.pop(0))[1]
            rest = 0
            for p in pend:
                rest += <int64_t>(<list>p)[1]
            seen = o.seen
            ahead = o.ahead
            behind = _fmax0(<double>(seen + d + rest) - ahead)
            before = ahead
            after = _after_cancel(kind, power, ahead, behind, d)
            cap = <double>(seen + rest)
            if cap < after:
                after = cap
            o.ahead = after
            stats.queue_cancel_advance += before - after
        return 0

    def _expire_py(self, SimOrder o, int64_t now):
        """``FillSimulator._expire``."""
        self._expire(o, now)

    def expire_all(self, int64_t now):
        """``FillSimulator.expire_all``."""
        cdef SimOrder o
        cdef int64_t window = self.sim.trade_window_ns
        for m in self.sim.markets.values():
            for o in (<dict>m.orders).values():
                if o.pend:
                    self._expire(o, now)
                if o.credit:
                    o.credit = [c for c in o.credit if now - <int64_t>c[0] <= window]

    # ------------------------------------------------------------------ trades
    def on_trade(self, int64_t now, wall_ms, ticker, price_o, count_o, taker_side, trade_id=""):
        """``FillSimulator.on_trade``."""
        sim = self.sim
        mk = self.markets.get(ticker)
        if mk is None and ticker in sim.markets:
            mk = self._market(ticker)
        maker_side = "ask" if taker_side == "bid" else "bid"
        if mk is not None and sim.fit is not None and trade_id:
            sim._fit_trade((<_FMarket>mk).m, ticker, maker_side, price_o, count_o, trade_id)
        po = sim.pickoff
        if mk is not None and po is not None and po.active and trade_id in po.reaction_ids:
            sim.stats.reaction_trades += 1
            if sim.keep_outcomes:
                sim.trade_outcomes[trade_id] = (ticker, "reaction")
            return []
        cdef dict orders = (<_FMarket>mk).m.orders if mk is not None else None
        if mk is None or not orders:
            if trade_id and sim.keep_outcomes:
                sim.trade_outcomes[trade_id] = (ticker, "none")
            return []
        cdef int64_t price = price_o, count = count_o
        cdef bint maker_ask = maker_side == "ask"
        outcome = "none"
        cdef list fills = []
        # our orders on the maker side, best price first for the taker (a stable sort: ties keep
        # their order); one order changes nothing of another's while the loop runs
        cdef list mine = []
        cdef SimOrder o, o2
        for o in orders.values():
            if o.side == maker_side and o.remaining > 0:
                mine.append(o)
        cdef Py_ssize_t i, j, n = len(mine)
        cdef int64_t ki
        if n > 1:
            # insertion sort on (price if asks else -price): stable, as list.sort with that key
            for i in range(1, n):
                o = mine[i]
                ki = o.price if maker_ask else -<int64_t>o.price
                j = i - 1
                while j >= 0:
                    o2 = mine[j]
                    if (<int64_t>o2.price if maker_ask else -<int64_t>o2.price) <= ki:
                        break
                    mine[j + 1] = o2
                    j -= 1
                mine[j + 1] = o
        cdef int64_t op, q, explained, used, front, step, remaining, pv
        cdef double before, ahead
        cdef bint at_level, through
        cdef list pend, p
        stats = sim.stats
        for o in mine:
            if o.pend:
                self._expire(o, now)
            op = o.price
            at_level = op == price
            through = price > op if maker_ask else price < op
            if not at_level and not through:
                continue
            if through:
                remaining = o.remaining
                q = remaining if remaining < count else count
                o.ahead = 0.0
                if q > 0:
                    stats.fills_through += 1
                    fills.append(self._sweep_fill(o, q, now, wall_ms, taker_side))
                    outcome = "filled"
                continue
            # at our price: the trade ate the front of the queue first
            explained = 0
            pend = o.pend
            while pend and explained < count:
                p = pend[0]
                pv = p[1]
                used = count - explained
                if pv < used:
                    used = pv
                p[1] = pv - used
                explained += used
                if pv - used == 0:
                    pend.pop(0)
            if count > explained:
                o.credit.append([now, count - explained])
            before = o.ahead
            ahead = before - <double>count
            o.ahead = ahead
            stats.trade_advance += count if <double>count < before else <int64_t>before
            if ahead < 0:
                # the estimate is fractional; what stood in front is whole contracts (or 0.01 on a
                # fractional market): round the front up, never in our favour
                step = 1 if (<_FMarket>mk).m.d.fractional else 100
                front = -_floordiv(-<int64_t>ceil(before), step) * step
                q = count - front
                if q < 0:
                    q = 0
                remaining = o.remaining
                if remaining < q:
                    q = remaining
                o.ahead = 0.0
                if q > 0:
                    stats.fills_at_level += 1
                    fills.append(self._sweep_fill(o, q, now, wall_ms, taker_side))
                    outcome = "filled"
                elif outcome == "none":
                    outcome = "queue"
            elif outcome == "none":
                outcome = "queue"
        if trade_id and sim.keep_outcomes:
            sim.trade_outcomes[trade_id] = (ticker, outcome)
        return fills

    cdef object _sweep_fill(self, SimOrder o, int64_t q, int64_t now, object wall_ms, object taker_side):
        # FillSimulator._sweep_fill: prints of one taker sweep that reach the same order make one fill
        sw = o.sweep
        if sw is None or (<tuple>sw)[0] != taker_side or (<tuple>sw)[1] != wall_ms:
            carry0, fees0 = o.carry, o.fees
            f = self._maker_fill(o, q, now, wall_ms)
            o.sweep = (taker_side, wall_ms, f, carry0, fees0)
            self.sim._swept.append(o)
            return f
        _, _, f0, carry0, fees0 = sw
        cdef _FMarket mk = self._market(o.ticker)
        total = f0.count + q
        charged, o.carry = _cent_fee(_trade_fee(total, o.price, mk.m.d.maker_rate_e6), carry0)
        o.fees = fees0 + charged
        o.remaining = o.remaining - q
        o.filled = o.filled + q
        o.updated_ms = wall_ms
        self._level(mk, o.bside, o.bprice, -q)
        self.sim.stats.maker_contracts += q
        f = self._new_fill(f0.trade_id, o.order_id, o.coid, o.ticker, o.side, o.price, total, charged, False,
                           wall_ms, f0.recv_ns)
        o.sweep = (taker_side, wall_ms, f, carry0, fees0)
        if o.remaining == 0:
            self._close(o, "executed", wall_ms)
        return f

    def _sweep_fill_py(self, SimOrder o, q, int64_t now, wall_ms, taker_side):
        """``FillSimulator._sweep_fill``."""
        return self._sweep_fill(o, q, now, wall_ms, taker_side)

    def end_sweeps(self):
        """``FillSimulator.end_sweeps``."""
        cdef list swept = self.sim._swept
        cdef SimOrder o
        for o in swept:
            o.sweep = None
        swept.clear()

    cdef object _maker_fill(self, SimOrder o, int64_t q, int64_t now, object wall_ms):
        # FillSimulator._maker_fill
        cdef _FMarket mk = self._market(o.ticker)
        f = self._fill(o, q, o.price, mk.m.d.maker_rate_e6, False, now, wall_ms)
        self._level(mk, o.bside, o.bprice, -q)
        stats = self.sim.stats
        stats.maker_fills += 1
        stats.maker_contracts += q
        if o.remaining == 0:
            self._close(o, "executed", wall_ms)
        return f

    def maker_fill(self, SimOrder o, q, int64_t now, wall_ms):
        """``FillSimulator._maker_fill``."""
        return self._maker_fill(o, q, now, wall_ms)

    cdef object _fill(self, SimOrder o, int64_t q, object price, object rate_e6, bint taker, int64_t now,
                      object wall_ms):
        # FillSimulator._fill
        charged, o.carry = _cent_fee(_trade_fee(q, price, rate_e6), o.carry)
        o.fees = o.fees + charged
        o.remaining = o.remaining - q
        o.filled = o.filled + q
        o.updated_ms = wall_ms
        sim = self.sim
        n = sim._n_trades + 1
        sim._n_trades = n
        return self._new_fill(f"bt-t{n}", o.order_id, o.coid, o.ticker, o.side, price, q, charged, taker,
                              wall_ms, now)

    def fill(self, SimOrder o, q, price, rate_e6, taker, int64_t now, wall_ms):
        """``FillSimulator._fill``."""
        return self._fill(o, q, price, rate_e6, taker, now, wall_ms)

    cdef int _close(self, SimOrder o, object status, object wall_ms) except -1:
        # FillSimulator._close
        o.status = status
        o.updated_ms = wall_ms
        cdef _FMarket mk = self._market(o.ticker)
        (<dict>mk.m.orders).pop(o.order_id, None)
        (<list>o.pend).clear()
        (<list>o.credit).clear()
        return 0

    def close(self, SimOrder o, status, wall_ms):
        """``FillSimulator._close``."""
        self._close(o, status, wall_ms)

    # ------------------------------------------------------------------ order entry
    cdef list _take(self, SimOrder o, int64_t now, object wall_ms):
        # FillSimulator._take: walk the opposite side best first up to the order's price (rare: a
        # replay's own orders are post-only; through the book's Python levels)
        cdef _FMarket mk = self._market(o.ticker)
        cdef list fills = []
        b = mk._book()
        bid = o.side == "bid"
        levels = b.asks() if bid else b.bids()
        cdef int64_t p, size, avail, q, bprice, rem
        cdef int bside
        sim = self.sim
        stats = sim.stats
        taken = mk.m.taken
        for p, size in levels:
            rem = o.remaining
            if rem <= 0:
                break
            if (bid and p > o.price) or (not bid and p < o.price):
                break
            if bid:
                bside, bprice = NO, ONE - p
            else:
                bside, bprice = YES, p
            avail = size - _own_at(mk.m.orders, bside, bprice)
            if avail <= 0:
                continue      # our own resting order: never trade with ourselves
            q = avail if avail < rem else rem
            fills.append(self._fill(o, q, p, mk.m.d.taker_rate_e6, True, now, wall_ms))
            self._level(mk, bside, bprice, -q)
            key = (bside, bprice)
            taken[key] = taken.get(key, 0) + q
            sim.corrected.add(o.ticker)
            stats.taker_fills += 1
            stats.taker_contracts += q
            stats.taken += q
        return fills

    def take(self, SimOrder o, int64_t now, wall_ms):
        """``FillSimulator._take``."""
        return self._take(o, now, wall_ms)

    cdef int _rest(self, SimOrder o) except -1:
        # FillSimulator._rest: the back of the queue, everyone visible in front
        cdef _FMarket mk = self._market(o.ticker)
        seen = self._others_at(mk, o.side, o.price)
        o.seen = seen
        o.ahead = <double>seen
        (<list>o.pend).clear()
        (<list>o.credit).clear()
        mk.m.orders[o.order_id] = o
        _apply(mk, o.bside, o.bprice, o.remaining)
        return 0

    def rest(self, SimOrder o):
        """``FillSimulator._rest``."""
        self._rest(o)

    cdef int _unrest(self, SimOrder o) except -1:
        # FillSimulator._unrest
        o.sweep = None
        cdef _FMarket mk = self._market(o.ticker)
        if (<dict>mk.m.orders).pop(o.order_id, None) is not None and o.remaining:
            self._level(mk, o.bside, o.bprice, -<int64_t>o.remaining)
        return 0

    def unrest(self, SimOrder o):
        """``FillSimulator._unrest``."""
        self._unrest(o)

    def place(self, int64_t now, wall_ms, ticker, side, price, count, coid, *, post_only=True):
        """``FillSimulator.place``."""
        cdef _FMarket mk = self._market(ticker)
        sim = self.sim
        n = sim._n_orders + 1
        sim._n_orders = n
        cdef SimOrder o = SimOrder(f"bt-{n}", coid, ticker, side, price, count, post_only, wall_ms)
        sim.orders[o.order_id] = o
        sim.by_coid[coid] = o
        fills = []
        if self._crosses(mk, side, price):
            if post_only:
                sim.stats.post_only_cancels += 1
                o.remaining = 0
                o.status = "canceled"
                return self._new_ack(o.order_id, coid, 0, 0, wall_ms), o, fills
            fills = self._take(o, now, wall_ms)
        if o.remaining > 0:
            self._rest(o)
        else:
            o.status = "executed"
        return self._new_ack(o.order_id, coid, o.filled, o.remaining, wall_ms), o, fills

    cdef object _cancel(self, int64_t now, object wall_ms, object order_id):
        o = self.sim.orders.get(order_id)
        if o is None or (<SimOrder>o).status != "resting":
            return None
        reduced = (<SimOrder>o).remaining
        self._unrest(o)
        (<SimOrder>o).remaining = 0
        self._close(o, "canceled", wall_ms)
        return reduced

    def cancel(self, int64_t now, wall_ms, order_id):
        """``FillSimulator.cancel``."""
        return self._cancel(now, wall_ms, order_id)

    cdef object _decrease(self, int64_t now, object wall_ms, object order_id, object reduce_to):
        o = self.sim.orders.get(order_id)
        if o is None or (<SimOrder>o).status != "resting":
            return None
        cdef SimOrder so = o
        if reduce_to <= 0:
            self._cancel(now, wall_ms, order_id)
            return so
        by = so.remaining - reduce_to
        if by > 0:
            self._level(self._market(so.ticker), so.bside, so.bprice, -by)
            so.remaining = reduce_to
            so.initial = so.filled + reduce_to
            so.updated_ms = wall_ms
        return so

    def decrease(self, int64_t now, wall_ms, order_id, reduce_to):
        """``FillSimulator.decrease``."""
        return self._decrease(now, wall_ms, order_id, reduce_to)

    def amend(self, int64_t now, wall_ms, order_id, price, remaining):
        """``FillSimulator.amend``."""
        sim = self.sim
        o_ = sim.orders.get(order_id)
        if o_ is None or (<SimOrder>o_).status != "resting":
            return None, "order_not_found", []
        cdef SimOrder o = o_
        if price == o.price and remaining <= o.remaining:
            self._decrease(now, wall_ms, order_id, remaining)
            return o, None, []
        cdef _FMarket mk = self._market(o.ticker)
        if price != o.price and o.post_only and self._crosses(mk, o.side, price):
            return o, "post_only_cross", []      # refused: the order stays as it was, queue and all
        self._unrest(o)
        if price != o.price and o.hz_t >= 0:
            # the pick-off hazard of the old price ends here (FillSimulator.amend)
            if now > o.hz_t:
                o.hz_acc += o.hz_rate * <double>(now - o.hz_t)
                if o.hz_rate > 0:
                    sim.stats.stale_ns += now - o.hz_t
                o.hz_t = now
            o.hz_rate = 0.0
        o.price = price
        o.bprice = price if o.side == "bid" else ONE - price
        o.remaining = remaining
        o.initial = o.filled + remaining
        o.updated_ms = wall_ms
        fills = []
        if not o.post_only and self._crosses(mk, o.side, price):
            fills = self._take(o, now, wall_ms)
        if o.remaining > 0:
            self._rest(o)
        else:
            self._close(o, "executed", wall_ms)
        return o, None, fills


cdef object _trade_fee(object count, object price, object rate_e6):
    # kmm._core.fees.trade_fee: its checks and its C fee
    cdef qty_t c = count
    cdef px_t p = price
    cdef int64_t r = rate_e6
    if c < 0:
        raise ValueError(f"trade_fee: count {count} is negative; give the fill size in 1e-2 contracts")
    if p < 0 or p > 10000:
        raise ValueError(f"trade_fee: price {price} is outside 0..10000 (1e-4 $)")
    if r < 0:
        raise ValueError(f"trade_fee: rate_e6 {rate_e6} is negative")
    return fee_e4(c, p, r)


cdef tuple _cent_fee(object fee_o, object carry_o):
    # kmm._core.fees.cent_fee: (charged, new carry)
    cdef int64_t fee = fee_o, carry = carry_o
    if fee < 0 or carry < 0 or carry >= 100:
        raise ValueError(f"cent_fee: fee {fee} must be >= 0 and carry {carry} in 0..99 (1e-4 $)")
    cdef int64_t charged = ((fee + 99) // 100) * 100
    carry += charged - fee
    cdef int64_t refund = (carry // 100) * 100
    return charged - refund, carry - refund
