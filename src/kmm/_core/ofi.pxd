# Order-flow imbalance from consecutive book states (Cont, Kukanov & Stoikov 2014), level 1 and
# the first N levels, over a rolling time window and as an exponentially decayed sum.
cimport cython
from libc.stdint cimport int64_t, uint64_t
from kmm._core._types cimport px_t, qty_t, ns_t
from kmm._core.book cimport OrderBook


@cython.final
cdef class OFI:
    cdef readonly ns_t window_ns        # rolling window length, ns: events with ts > now - window_ns
    cdef readonly ns_t half_life_ns     # half-life of the decayed sum, ns
    cdef readonly Py_ssize_t levels     # N, book levels per side tracked (level 1 = index 0)
    cdef readonly Py_ssize_t capacity   # ring size in events
    cdef readonly uint64_t events       # update() calls since reset
    cdef readonly uint64_t overflowed   # events dropped from the window early because the ring was full
    cdef readonly ns_t last_ns          # time of the last update, ns
    cdef readonly double ewma           # decayed sum of level-1 e at last_ns, 1e-2 contracts
    cdef bint _has_prev
    cdef px_t* _pb                      # previous bid price per level, 1e-4 $ (0 when missing)
    cdef qty_t* _qb                     # previous bid size per level, 1e-2 contracts
    cdef px_t* _pa                      # previous YES ask price per level (10000 when missing)
    cdef qty_t* _qa                     # previous ask size per level
    cdef px_t* _cb                      # scratch: current state, same layout
    cdef qty_t* _cqb
    cdef px_t* _ca
    cdef qty_t* _cqa
    cdef int64_t* _last_e               # this event's e per level, 1e-2 contracts
    cdef ns_t* _ts                      # ring: event time, ns
    cdef int64_t* _e                    # ring: e per level [slot * levels + i]
    cdef int64_t* _d                    # ring: qb + qa per level [slot * levels + i]
    cdef Py_ssize_t _head               # ring index of the oldest event
    cdef Py_ssize_t _count              # events in the window
    cdef int64_t* _sum_e                # window sums of e per level
    cdef int64_t* _sum_d                # window sums of qb + qa per level

    # One event: read the book's first `levels` levels, compute e per level, roll the window and
    # the decayed sum. Returns the level-1 e (1e-2 contracts, as float).
    cpdef double update(self, OrderBook book, ns_t now_ns) except? -1.0
    # Drop events with ts <= now_ns - window_ns.
    cdef void _expire(self, ns_t now_ns) noexcept nogil
    cdef void _pop(self) noexcept nogil
