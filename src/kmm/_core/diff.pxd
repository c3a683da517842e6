# Target quotes vs live orders -> the fewest order actions, with hysteresis (design section 5).
cimport cython
from kmm._core._types cimport px_t, qty_t, ns_t

# Action kinds.
cdef enum:
    ACT_PLACE = 0       # new order: side, price, size
    ACT_AMEND = 1       # change price and/or size of order_id (loses queue priority on Kalshi)
    ACT_DECREASE = 2    # shrink order_id's remaining to size, price unchanged (keeps queue priority)
    ACT_CANCEL = 3      # cancel order_id

# Sides, as Kalshi V2 orders: bid = buy YES, ask = sell YES.
cdef enum:
    SIDE_BID = 0
    SIDE_ASK = 1


@cython.final
@cython.freelist(8)
cdef class Action:
    cdef readonly int kind          # ACT_*
    cdef readonly int side          # SIDE_BID | SIDE_ASK
    cdef readonly object order_id   # the live order's id; None for a place
    cdef readonly px_t price        # 1e-4 $: new price (place, amend) or the order's price (decrease, cancel)
    cdef readonly qty_t size        # 1e-2 contracts: new remaining (place, amend, decrease); 0 for cancel


# One decided action before it becomes a Python object.
ctypedef struct act_t:
    int kind
    int side
    Py_ssize_t live_index   # index into the live sequence, -1 for a place
    px_t price
    qty_t size


@cython.final
cdef class Differ:
    cdef readonly px_t price_tol     # keep an order whose price is within this of the target, 1e-4 $
    cdef readonly qty_t size_tol     # ... and whose remaining is at most this below the target, 1e-2 contracts
    cdef readonly ns_t max_age_ns    # ... and that is younger than this, ns (INT64_MAX = no limit)
    # Scratch, reused across calls (grown, never shrunk): the live orders and the decided actions.
    cdef Py_ssize_t _cap
    cdef int* _side
    cdef px_t* _px
    cdef qty_t* _rem
    cdef ns_t* _age
    cdef act_t* _acts

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef Py_ssize_t _read_live(self, object live) except -1
    cdef int _category(self, Py_ssize_t i, px_t tp, qty_t ts, px_t other_tp, int side) noexcept nogil
    cdef Py_ssize_t _decide(self, px_t bid_px, qty_t bid_size, px_t ask_px, qty_t ask_size,
                            Py_ssize_t n) noexcept nogil
