# The fill simulator's virtual order and its compiled steps (kmm.research.fills, issue 10).
cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class SimOrder:
    cdef public object order_id, coid, ticker, side, price, initial, remaining, filled
    cdef public object post_only, carry, fees, status, bside, bprice, ahead, seen
    cdef public object pend, credit, created_ms, updated_ms, sweep
    cdef public int64_t hz_t
    cdef public double hz_acc, hz_need, hz_rate
