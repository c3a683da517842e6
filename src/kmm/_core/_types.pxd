# Integer units shared by every compiled module (design section 2).
from libc.stdint cimport int64_t

ctypedef int64_t px_t      # price, 1e-4 $ in YES terms (0..10000)
ctypedef int64_t qty_t     # size, 1e-2 contracts
ctypedef int64_t money_t   # money and fees, 1e-4 $
ctypedef int64_t ns_t      # time, ns

cdef enum:
    PRICE_ONE = 10000      # $1.00 in price units
    QTY_ONE = 100          # one contract in size units
