# Kalshi trade fees (kalshi-api.md section 6), in integer units.
from kmm._core._types cimport px_t, qty_t, money_t
from libc.stdint cimport int64_t

# fee = roundup(rate_e6/1e6 * C * P * (1 - P)) to $0.0001, with C = count/100 contracts and
# P = price/10000 $. rate_e6 is the fee rate times the series multiplier, in millionths
# (taker 0.07 -> 70000; maker 0.0175 -> 17500). Returns 1e-4 $; 0 for count <= 0.
cdef money_t fee_e4(qty_t count, px_t price, int64_t rate_e6) noexcept nogil

# The same fee for one whole contract before rounding, as a float in 1e-4 $ (for quoting math).
cdef double fee_per_contract(px_t price, int64_t rate_e6) noexcept nogil
