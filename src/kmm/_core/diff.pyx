"""Turn target quotes into the fewest order actions against the live orders, with hysteresis.

Per side, with a target (price, size) or none (size 0):
- no target: cancel every live order on the side;
- no live order: place the target;
- otherwise keep the best-matching live order and cancel the rest (duplicates). The kept order is
  left alone when it is exact, or when it is *near* (price within ``price_tol``, younger than
  ``max_age_ns``, not at or through the other side's target price) and its remaining is at most
  ``size_tol`` below the target; it is decreased (keeps queue priority on Kalshi) when it is exact or
  near in price but larger than the target; otherwise it is amended to the target price and size
  (on Kalshi an amend that changes the price or raises the size loses queue priority).
A live order is never left larger than its target, so position limits built into the targets hold.
Actions come out as: cancels (live order), decreases, amends, places; bid side before ask side, except
that the ask's amend goes first when the bid's new price reaches the ask's current price.
Nothing changed -> the shared empty tuple, no allocation.
"""

cimport cython
from cpython.mem cimport PyMem_Realloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport INT64_MAX

from kmm._core._types cimport px_t, qty_t, ns_t

PLACE = ACT_PLACE
AMEND = ACT_AMEND
DECREASE = ACT_DECREASE
CANCEL = ACT_CANCEL
BID = SIDE_BID
ASK = SIDE_ASK
KIND_NAMES = ("place", "amend", "decrease", "cancel")
SIDE_NAMES = ("bid", "ask")

# Category of a live order against its side's target (lower is better to keep).
cdef enum:
    CAT_KEEP = 0
    CAT_DECREASE = 1
    CAT_AMEND = 2


@cython.final
@cython.freelist(8)
cdef class Action:
    """One order action. ``size`` is the desired *remaining* count: for a Kalshi amend, whose ``count``
    is the new total, send filled + size; for a decrease send ``reduce_to = size``."""

    def __init__(self, int kind, int side, object order_id, px_t price, qty_t size):
        if not 0 <= kind <= 3 or not 0 <= side <= 1:
            raise ValueError(f"Action: kind {kind} must be 0..3 and side {side} 0 (bid) or 1 (ask)")
        self.kind = kind
        self.side = side
        self.order_id = order_id
        self.price = price
        self.size = size

    def astuple(self):
        """``(kind, side, order_id, price, size)``."""
        return (self.kind, self.side, self.order_id, self.price, self.size)

    def __eq__(self, other):
        if not isinstance(other, Action):
            return NotImplemented
        return self.astuple() == (<Action>other).astuple()

    def __hash__(self):
        return hash(self.astuple())

    def __repr__(self):
        return (f"Action({KIND_NAMES[self.kind]}, {SIDE_NAMES[self.side]}, order_id={self.order_id!r}, "
                f"price={self.price}, size={self.size})")


cdef inline Action _action(int kind, int side, object order_id, px_t price, qty_t size):
    cdef Action a = Action.__new__(Action)
    a.kind = kind
    a.side = side
    a.order_id = order_id
    a.price = price
    a.size = size
    return a


cdef inline px_t _abs(px_t x) noexcept nogil:
    return -x if x < 0 else x


@cython.final
cdef class Differ:
    """Diff target quotes against live orders. ``price_tol`` in 1e-4 $ (>= 0; a price unit, not ticks,
    so one setting means the same money on every grid), ``size_tol`` in 1e-2 contracts (>= 0),
    ``max_age_ns`` in ns (> 0, or None for no age limit)."""

    def __cinit__(self):
        self._cap = 0
        self._side = NULL
        self._px = NULL
        self._rem = NULL
        self._age = NULL
        self._acts = NULL

    def __init__(self, px_t price_tol=0, qty_t size_tol=0, max_age_ns=None):
        if price_tol < 0 or price_tol >= 10000:
            raise ValueError(f"Differ: price_tol {price_tol} must be in 0..9999 (1e-4 $)")
        if size_tol < 0:
            raise ValueError(f"Differ: size_tol {size_tol} must be >= 0 (1e-2 contracts)")
        if max_age_ns is None:
            self.max_age_ns = INT64_MAX
        else:
            if int(max_age_ns) <= 0:
                raise ValueError(f"Differ: max_age_ns {max_age_ns} must be > 0 (ns), or None for no limit")
            self.max_age_ns = max_age_ns
        self.price_tol = price_tol
        self.size_tol = size_tol
        self._reserve(8)

    def __dealloc__(self):
        PyMem_Free(self._side)
        PyMem_Free(self._px)
        PyMem_Free(self._rem)
        PyMem_Free(self._age)
        PyMem_Free(self._acts)

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef void* p
        if n <= self._cap:
            return 0
        n = max(n, 2 * self._cap)
        p = PyMem_Realloc(self._side, n * sizeof(int))
        if p == NULL:
            raise MemoryError()
        self._side = <int*>p
        p = PyMem_Realloc(self._px, n * sizeof(px_t))
        if p == NULL:
            raise MemoryError()
        self._px = <px_t*>p
        p = PyMem_Realloc(self._rem, n * sizeof(qty_t))
        if p == NULL:
            raise MemoryError()
        self._rem = <qty_t*>p
        p = PyMem_Realloc(self._age, n * sizeof(ns_t))
        if p == NULL:
            raise MemoryError()
        self._age = <ns_t*>p
        p = PyMem_Realloc(self._acts, (n + 2) * sizeof(act_t))
        if p == NULL:
            raise MemoryError()
        self._acts = <act_t*>p
        self._cap = n
        return 0

    cdef Py_ssize_t _read_live(self, object live) except -1:
        cdef Py_ssize_t n = len(live), i
        cdef object item
        cdef long long side, price, rem, age
        self._reserve(n)
        for i in range(n):
            item = live[i]
            if type(item) is tuple and PyTuple_GET_SIZE(item) == 5:
                side = <object>PyTuple_GET_ITEM(item, 1)
                price = <object>PyTuple_GET_ITEM(item, 2)
                rem = <object>PyTuple_GET_ITEM(item, 3)
                age = <object>PyTuple_GET_ITEM(item, 4)
            else:
                if len(item) != 5:
                    raise ValueError(f"live[{i}] = {item!r} is not (order_id, side, price, remaining, age_ns)")
                side, price, rem, age = item[1], item[2], item[3], item[4]
            if side != 0 and side != 1:
                raise ValueError(f"live[{i}]: side {side} must be 0 (bid, buy YES) or 1 (ask, sell YES)")
            if price < 1 or price > 9999:
                raise ValueError(f"live[{i}]: price {price} is outside 1..9999 (1e-4 $)")
            if rem < 0 or age < 0:
                raise ValueError(f"live[{i}]: remaining {rem} (1e-2 contracts) and age_ns {age} must be >= 0")
            self._side[i] = <int>side
            self._px[i] = price
            self._rem[i] = rem
            self._age[i] = age
        return n

    cdef int _category(self, Py_ssize_t i, px_t tp, qty_t ts, px_t other_tp, int side) noexcept nogil:
        cdef px_t p = self._px[i]
        cdef qty_t rem = self._rem[i]
        cdef bint near
        if p == tp and rem == ts:
            return CAT_KEEP
        near = (_abs(p - tp) <= self.price_tol and self._age[i] < self.max_age_ns
                and (other_tp == 0 or (p < other_tp if side == SIDE_BID else p > other_tp)))
        if near and ts - self.size_tol <= rem <= ts:
            return CAT_KEEP
        if (near or p == tp) and rem > ts:
            return CAT_DECREASE
        return CAT_AMEND

    cdef Py_ssize_t _decide(self, px_t bid_px, qty_t bid_size, px_t ask_px, qty_t ask_size,
                            Py_ssize_t n) noexcept nogil:
        # Fill self._acts; returns the number of actions.
        cdef Py_ssize_t keep[2]
        cdef int cat[2]
        cdef px_t tp[2]
        cdef qty_t ts[2]
        cdef Py_ssize_t i, m = 0
        cdef int s, c, first, k
        cdef px_t d, best_d
        cdef qty_t e, best_e
        cdef act_t* a
        tp[0] = bid_px if bid_size > 0 else 0
        tp[1] = ask_px if ask_size > 0 else 0
        ts[0] = bid_size
        ts[1] = ask_size
        keep[0] = keep[1] = -1
        cat[0] = cat[1] = CAT_AMEND
        best_d = best_e = 0
        # Choose the order to keep on each side: lowest (category, |price gap|, |size gap|, index).
        for s in range(2):
            if ts[s] <= 0:
                continue
            for i in range(n):
                if self._side[i] != s or self._rem[i] <= 0:
                    continue
                c = self._category(i, tp[s], ts[s], tp[1 - s], s)
                d = _abs(self._px[i] - tp[s])
                e = self._rem[i] - ts[s]
                if e < 0:
                    e = -e
                if (keep[s] < 0 or c < cat[s] or (c == cat[s] and (d < best_d or (d == best_d and e < best_e)))):
                    keep[s] = i
                    cat[s] = c
                    best_d = d
                    best_e = e
        # Kept off-target orders must not lock or cross each other: move both to their targets.
        if (keep[0] >= 0 and keep[1] >= 0 and cat[0] != CAT_AMEND and cat[1] != CAT_AMEND
                and self._px[keep[0]] >= self._px[keep[1]]):
            cat[0] = cat[1] = CAT_AMEND
        # Cancels, in live order.
        for i in range(n):
            if self._rem[i] > 0 and i != keep[0] and i != keep[1]:
                a = &self._acts[m]
                m += 1
                a.kind = ACT_CANCEL
                a.side = self._side[i]
                a.live_index = i
                a.price = self._px[i]
                a.size = 0
        # Decreases, then amends, then places; bid first unless the bid's amend reaches the live ask.
        first = 0
        if (keep[0] >= 0 and keep[1] >= 0 and cat[0] == CAT_AMEND
                and tp[0] >= self._px[keep[1]]):
            first = 1
        for k in range(2):
            s = first ^ k
            if keep[s] >= 0 and cat[s] == CAT_DECREASE:
                a = &self._acts[m]
                m += 1
                a.kind = ACT_DECREASE
                a.side = s
                a.live_index = keep[s]
                a.price = self._px[keep[s]]
                a.size = ts[s]
        for k in range(2):
            s = first ^ k
            if keep[s] >= 0 and cat[s] == CAT_AMEND:
                a = &self._acts[m]
                m += 1
                a.kind = ACT_AMEND
                a.side = s
                a.live_index = keep[s]
                a.price = tp[s]
                a.size = ts[s]
        for s in range(2):
            if ts[s] > 0 and keep[s] < 0:
                a = &self._acts[m]
                m += 1
                a.kind = ACT_PLACE
                a.side = s
                a.live_index = -1
                a.price = tp[s]
                a.size = ts[s]
        return m

    def diff(self, px_t target_bid_px, qty_t target_bid_size, px_t target_ask_px,
             qty_t target_ask_size, live):
        """Actions that make ``live`` match the targets.

        Targets: price (1e-4 $) and size (1e-2 contracts) per side; size 0 = no quote on that side
        (its price is then ignored). ``live``: a sequence of ``(order_id, side, price, remaining,
        age_ns)``, side 0 = bid (buy YES), 1 = ask (sell YES); orders with remaining 0 are ignored.
        Returns a tuple of :class:`Action` (the shared empty tuple when nothing needs doing).
        """
        if target_bid_size < 0 or target_ask_size < 0:
            raise ValueError(f"diff: target sizes {target_bid_size}, {target_ask_size} must be >= 0 "
                             "(1e-2 contracts; 0 = no quote)")
        if target_bid_size > 0 and not 1 <= target_bid_px <= 9999:
            raise ValueError(f"diff: target bid price {target_bid_px} is outside 1..9999 (1e-4 $)")
        if target_ask_size > 0 and not 1 <= target_ask_px <= 9999:
            raise ValueError(f"diff: target ask price {target_ask_px} is outside 1..9999 (1e-4 $)")
        if target_bid_size > 0 and target_ask_size > 0 and target_bid_px >= target_ask_px:
            raise ValueError(f"diff: target bid {target_bid_px} must be below target ask {target_ask_px}")
        cdef Py_ssize_t n = self._read_live(live)
        cdef Py_ssize_t m = self._decide(target_bid_px, target_bid_size, target_ask_px,
                                         target_ask_size, n)
        if m == 0:
            return ()
        cdef tuple out = PyTuple_New(m)
        cdef Py_ssize_t j
        cdef act_t* a
        cdef Action act
        for j in range(m):
            a = &self._acts[j]
            act = _action(a.kind, a.side, None if a.live_index < 0 else live[a.live_index][0],
                          a.price, a.size)
            Py_INCREF(act)
            PyTuple_SET_ITEM(out, j, act)
        return out

    def __repr__(self):
        age = None if self.max_age_ns == INT64_MAX else self.max_age_ns
        return f"Differ(price_tol={self.price_tol}, size_tol={self.size_tol}, max_age_ns={age})"
