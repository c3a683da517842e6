"""Order-flow imbalance (Cont, Kukanov & Stoikov 2014, "The price impact of order book events").

For consecutive book states n-1, n with best bid (Pb, qb) and best YES ask (Pa, qa)::

    e_n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1 - 1{Pa_n <= Pa_n-1} qa_n + 1{Pa_n >= Pa_n-1} qa_n-1

in size units (1e-2 contracts). Each :meth:`OFI.update` is one event. kmm keeps

- ``window_sum``: the sum of e over the events with ts in (now - window_ns, now] (exact integers);
- ``ewma``: the exponentially decayed sum S_n = S_n-1 * 2^(-(t_n - t_n-1) / half_life_ns) + e_n;
- ``normalized``: window_sum / average depth, average depth = mean over the window's events of
  (qb + qa) / 2 (0.0 when that mean is 0);
- the multi-level variant: the same e computed on the i-th best bid and i-th best ask for
  i = 1..levels (level 1 is the plain OFI); ``multi_level`` holds the per-level window sums,
  ``multi_normalized`` each divided by its own average depth, and ``multi_combined`` is the equal-weight
  mean of ``multi_normalized``.

Empty sides: a missing bid level is (price 0, size 0), a missing ask level is (price 10000, size 0), so
the formula stays total: a bid appearing adds its size, the last bid vanishing subtracts it.
The first update after construction or reset() only records the state (e = 0) and counts as an event.
The window lives in a ring of ``capacity`` events; when it is full the oldest event leaves the window
early and ``overflowed`` counts it.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport exp2
from libc.stdint cimport int64_t
from libc.string cimport memset

from kmm._core._types cimport px_t, qty_t, ns_t
from kmm._core.book cimport OrderBook, SIDE_YES, SIDE_NO


@cython.final
cdef class OFI:
    """Order-flow imbalance of one book. ``OFI(window_ns=1e9, half_life_ns=1e9, levels=5,
    capacity=4096)``; call ``update(book, now_ns)`` after every book change."""

    def __cinit__(self, ns_t window_ns=1_000_000_000, ns_t half_life_ns=1_000_000_000,
                  Py_ssize_t levels=5, Py_ssize_t capacity=4096):
        self._pb = self._cb = self._pa = self._ca = NULL
        self._qb = self._cqb = self._qa = self._cqa = NULL
        self._last_e = self._ts = self._e = self._d = self._sum_e = self._sum_d = NULL
        if window_ns <= 0 or half_life_ns <= 0:
            raise ValueError(f"window_ns ({window_ns}) and half_life_ns ({half_life_ns}) must be > 0")
        if not 1 <= levels <= 64:
            raise ValueError(f"levels ({levels}) must be in 1..64")
        if capacity < 1:
            raise ValueError(f"capacity ({capacity}) must be >= 1")
        self.window_ns = window_ns
        self.half_life_ns = half_life_ns
        self.levels = levels
        self.capacity = capacity
        cdef size_t lv = levels * sizeof(int64_t)
        self._pb = <px_t*>PyMem_Malloc(lv)
        self._qb = <qty_t*>PyMem_Malloc(lv)
        self._pa = <px_t*>PyMem_Malloc(lv)
        self._qa = <qty_t*>PyMem_Malloc(lv)
        self._cb = <px_t*>PyMem_Malloc(lv)
        self._cqb = <qty_t*>PyMem_Malloc(lv)
        self._ca = <px_t*>PyMem_Malloc(lv)
        self._cqa = <qty_t*>PyMem_Malloc(lv)
        self._last_e = <int64_t*>PyMem_Malloc(lv)
        self._sum_e = <int64_t*>PyMem_Malloc(lv)
        self._sum_d = <int64_t*>PyMem_Malloc(lv)
        self._ts = <ns_t*>PyMem_Malloc(capacity * sizeof(ns_t))
        self._e = <int64_t*>PyMem_Malloc(capacity * lv)
        self._d = <int64_t*>PyMem_Malloc(capacity * lv)
        if (self._pb == NULL or self._qb == NULL or self._pa == NULL or self._qa == NULL
                or self._cb == NULL or self._cqb == NULL or self._ca == NULL or self._cqa == NULL
                or self._last_e == NULL or self._sum_e == NULL or self._sum_d == NULL
                or self._ts == NULL or self._e == NULL or self._d == NULL):
            raise MemoryError()
        self.reset()

    def __dealloc__(self):
        PyMem_Free(self._pb)
        PyMem_Free(self._qb)
        PyMem_Free(self._pa)
        PyMem_Free(self._qa)
        PyMem_Free(self._cb)
        PyMem_Free(self._cqb)
        PyMem_Free(self._ca)
        PyMem_Free(self._cqa)
        PyMem_Free(self._last_e)
        PyMem_Free(self._sum_e)
        PyMem_Free(self._sum_d)
        PyMem_Free(self._ts)
        PyMem_Free(self._e)
        PyMem_Free(self._d)

    def reset(self):
        """Forget the previous state, the window and the decayed sum."""
        cdef size_t lv = self.levels * sizeof(int64_t)
        self._has_prev = False
        self._head = 0
        self._count = 0
        self.events = 0
        self.overflowed = 0
        self.last_ns = 0
        self.ewma = 0.0
        memset(self._last_e, 0, lv)
        memset(self._sum_e, 0, lv)
        memset(self._sum_d, 0, lv)

    cdef void _pop(self) noexcept nogil:
        cdef Py_ssize_t i, base = self._head * self.levels
        for i in range(self.levels):
            self._sum_e[i] -= self._e[base + i]
            self._sum_d[i] -= self._d[base + i]
        self._head += 1
        if self._head == self.capacity:
            self._head = 0
        self._count -= 1

    cdef void _expire(self, ns_t now_ns) noexcept nogil:
        cdef ns_t cutoff = now_ns - self.window_ns
        while self._count > 0 and self._ts[self._head] <= cutoff:
            self._pop()

    cpdef double update(self, OrderBook book, ns_t now_ns) except? -1.0:
        """Record one event at ``now_ns`` from ``book``'s current state; returns this event's
        level-1 e (1e-2 contracts). ``now_ns`` must not go backwards (ValueError)."""
        cdef Py_ssize_t L = self.levels, nb, na, i, slot
        cdef int64_t e
        cdef px_t* t
        cdef qty_t* u
        if book is None:
            raise TypeError("update() needs an OrderBook")
        if self.events and now_ns < self.last_ns:
            raise ValueError(f"now_ns {now_ns} is before the previous update's {self.last_ns}")
        nb = book._top_levels(SIDE_YES, L, self._cb, self._cqb)
        na = book._top_levels(SIDE_NO, L, self._ca, self._cqa)
        for i in range(L):
            if i >= nb:
                self._cb[i] = 0
                self._cqb[i] = 0
            if i < na:
                self._ca[i] = 10000 - self._ca[i]
            else:
                self._ca[i] = 10000
                self._cqa[i] = 0
        for i in range(L):
            e = 0
            if self._has_prev:
                if self._cb[i] >= self._pb[i]:
                    e += self._cqb[i]
                if self._cb[i] <= self._pb[i]:
                    e -= self._qb[i]
                if self._ca[i] <= self._pa[i]:
                    e -= self._cqa[i]
                if self._ca[i] >= self._pa[i]:
                    e += self._qa[i]
            self._last_e[i] = e
        # current state becomes the previous one
        t = self._pb; self._pb = self._cb; self._cb = t
        u = self._qb; self._qb = self._cqb; self._cqb = u
        t = self._pa; self._pa = self._ca; self._ca = t
        u = self._qa; self._qa = self._cqa; self._cqa = u
        # window
        self._expire(now_ns)
        if self._count == self.capacity:
            self._pop()
            self.overflowed += 1
        slot = self._head + self._count
        if slot >= self.capacity:
            slot -= self.capacity
        self._ts[slot] = now_ns
        for i in range(L):
            self._e[slot * L + i] = self._last_e[i]
            self._d[slot * L + i] = self._qb[i] + self._qa[i]
            self._sum_e[i] += self._last_e[i]
            self._sum_d[i] += self._qb[i] + self._qa[i]
        self._count += 1
        # decayed sum
        if self.events:
            self.ewma = self.ewma * exp2(-<double>(now_ns - self.last_ns) / <double>self.half_life_ns)
        self.ewma += <double>self._last_e[0]
        self._has_prev = True
        self.last_ns = now_ns
        self.events += 1
        return <double>self._last_e[0]

    def expire(self, ns_t now_ns):
        """Drop the window's events older than ``now_ns - window_ns`` without recording an event
        (e.g. on a timer while the book is quiet)."""
        self._expire(now_ns)

    def ewma_at(self, ns_t now_ns):
        """The decayed sum as of ``now_ns`` (>= the last update), with no new event."""
        if now_ns < self.last_ns:
            raise ValueError(f"now_ns {now_ns} is before the last update's {self.last_ns}")
        return self.ewma * exp2(-<double>(now_ns - self.last_ns) / <double>self.half_life_ns)

    @property
    def last(self):
        """The last event's level-1 e (1e-2 contracts), as float."""
        return <double>self._last_e[0]

    @property
    def last_levels(self):
        """The last event's e per level (ints, 1e-2 contracts)."""
        return tuple([self._last_e[i] for i in range(self.levels)])

    @property
    def count(self):
        """Events currently in the window."""
        return self._count

    @property
    def window_sum(self):
        """Sum of level-1 e over the window (int, 1e-2 contracts)."""
        return self._sum_e[0]

    @property
    def avg_depth(self):
        """Mean over the window of (best bid size + best ask size) / 2 (float, 1e-2 contracts)."""
        return 0.0 if self._count == 0 else self._sum_d[0] / (2.0 * self._count)

    @property
    def normalized(self):
        """window_sum / avg_depth (dimensionless); 0.0 when avg_depth is 0."""
        return 0.0 if self._sum_d[0] == 0 else self._sum_e[0] * 2.0 * self._count / self._sum_d[0]

    @property
    def multi_level(self):
        """Per-level window sums of e, level 1 first (ints, 1e-2 contracts)."""
        return tuple([self._sum_e[i] for i in range(self.levels)])

    @property
    def multi_normalized(self):
        """Per-level window sums each divided by that level's average depth (0.0 where it is 0)."""
        return tuple([0.0 if self._sum_d[i] == 0 else self._sum_e[i] * 2.0 * self._count / self._sum_d[i]
                      for i in range(self.levels)])

    @property
    def multi_combined(self):
        """Equal-weight mean of ``multi_normalized`` over the levels."""
        cdef double total = 0.0
        cdef Py_ssize_t i
        for i in range(self.levels):
            if self._sum_d[i] != 0:
                total += self._sum_e[i] * 2.0 * self._count / self._sum_d[i]
        return total / self.levels

    def __repr__(self):
        return (f"OFI(window_sum={self.window_sum}, ewma={self.ewma:.1f}, "
                f"normalized={self.normalized:.4f}, count={self._count}, levels={self.levels})")
