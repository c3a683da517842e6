from libc.stdint cimport int64_t
from kmm._core.grid cimport Grid


cdef class OrderLimits:
    cdef readonly object limits              # the kmm.config.RiskLimits these were read from (frozen)
    cdef int64_t max_order_size, price_min, price_max, max_order_notional
    cdef int64_t max_open_market, max_open_total
    cdef int64_t max_position, max_total_position, max_loss
    cdef double reduce_only_at, loss_reduce_only_at
    cdef int64_t reduce_before_close_ns, stop_before_close_ns
    cdef dict per_market
    cdef int64_t amend(self, object ticker, bint bid, int64_t price, int64_t size, int64_t old_remaining,
                       int64_t q, int64_t open_side, int64_t total_abs, int64_t last_pnl, bint fractional,
                       Grid grid, bint has_close, int64_t close_ns, int64_t wall_ns) except -2
    cdef int64_t place(self, object ticker, bint bid, int64_t price, int64_t size, int64_t open_market,
                       int64_t open_total, int64_t q, int64_t open_side, int64_t total_abs, int64_t last_pnl,
                       bint fractional, Grid grid, bint has_close, int64_t close_ns, int64_t wall_ns) except -2
