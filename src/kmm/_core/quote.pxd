# Avellaneda-Stoikov quoting quantized onto a Kalshi market's grid (design section 5).
#
# Model units (floats, model math only):
#   price / mid / reservation / spread    1e-4 $ (kmm's price unit, YES terms)
#   q (inventory inside the model)        contracts (the engine's 1e-2 contract int / 100)
#   sigma                                 1e-4 $ per sqrt(second): std of the mid over 1 s
#   tau                                   seconds until the market closes (T - t)
#   kappa                                 per 1e-4 $: order arrival decays as exp(-kappa * distance)
#   gamma                                 risk aversion, per (1e-4 $ x contract)
# Everything leaving this module is an int on the grid (1e-4 $) or an int size (1e-2 contracts).
cimport cython
from libc.math cimport log1p
from libc.stdint cimport int64_t

from kmm._core._types cimport px_t, qty_t
from kmm._core.grid cimport Grid

# Quotes.flags bits: why a side is absent, or what moved it.
cdef enum:
    QF_BID_LIMIT = 1        # no bid: inventory at/over the long limit (or room < one size step)
    QF_ASK_LIMIT = 2        # no ask: inventory at/under minus the short limit
    QF_BID_NO_PRICE = 4     # no bid: no grid price satisfies spread, edge and post-only
    QF_ASK_NO_PRICE = 8     # no ask: likewise
    QF_BID_POST_ONLY = 16   # bid lowered below the best ask (post-only)
    QF_ASK_POST_ONLY = 32   # ask raised above the best bid (post-only)


# r = s - q * gamma * sigma^2 * tau (A-S 2008, eq. for the reservation price). Any consistent units.
cdef inline double as_reservation(double mid, double q, double gamma, double sigma,
                                  double tau) noexcept nogil:
    return mid - q * gamma * sigma * sigma * tau


# delta_a + delta_b = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / kappa). For gamma / kappa
# < 1e-8 the second term is its series (2 / kappa) * (1 - x / 2) (exact to double precision), which
# also gives the gamma -> 0 limit 2 / kappa and avoids inf * 0 when gamma / kappa underflows.
# Callers guarantee gamma >= 0 and kappa > 0.
cdef inline double as_spread(double gamma, double sigma, double tau, double kappa) noexcept nogil:
    cdef double x = gamma / kappa
    if x < 1e-8:
        return gamma * sigma * sigma * tau + (2.0 / kappa) * (1.0 - 0.5 * x)
    return gamma * sigma * sigma * tau + (2.0 / gamma) * log1p(x)


@cython.final
cdef class QuoteParams:
    cdef readonly Grid grid            # the market's price grid
    cdef readonly double gamma         # risk aversion, per (1e-4 $ x contract); >= 0
    cdef readonly double kappa         # order-arrival decay, per 1e-4 $; > 0
    cdef readonly qty_t quote_size     # size quoted per side, 1e-2 contracts; > 0
    cdef readonly qty_t long_limit     # max long YES position, 1e-2 contracts; >= 0
    cdef readonly qty_t short_limit    # max short YES position (magnitude), 1e-2 contracts; >= 0
    cdef readonly int64_t maker_fee_rate_e6  # maker fee rate x multiplier, millionths (fees.fee_rate_e6)
    cdef readonly px_t min_spread      # minimum ask - bid, 1e-4 $; >= 1
    cdef readonly double min_edge      # each side >= min_edge from reservation after the maker fee, 1e-4 $
    cdef readonly qty_t size_step      # sizes are multiples of this, 1e-2 contracts (100 = whole contracts)
    cdef double _fee_c                 # maker_fee_rate_e6 / 1e10: fee(p) = _fee_c * p * (10000 - p)


@cython.final
@cython.freelist(16)
cdef class Quotes:
    cdef readonly px_t bid_price       # 1e-4 $, on the grid; 0 when there is no bid
    cdef readonly qty_t bid_size       # 1e-2 contracts; 0 when there is no bid
    cdef readonly px_t ask_price       # 1e-4 $, on the grid; 0 when there is no ask
    cdef readonly qty_t ask_size       # 1e-2 contracts; 0 when there is no ask
    cdef readonly double reservation   # reservation price incl. OFI and alpha skews, 1e-4 $ (float)
    cdef readonly double half_spread   # half spread used (model or min_spread / 2), 1e-4 $ (float)
    cdef readonly int flags            # QF_* bits


# Fill `out` for one book update. Inputs are trusted (validated by compute()).
cdef int fill_quotes(QuoteParams p, Quotes out, double mid, qty_t inventory, double tau,
                     double sigma, double skew, px_t best_bid, px_t best_ask) noexcept

# Public entry: validates, then fill_quotes into a fresh (freelisted) Quotes.
cpdef Quotes compute(QuoteParams params, double mid, qty_t inventory, double tau, double sigma,
                     double ofi_skew=*, double alpha_skew=*, px_t best_bid=*, px_t best_ask=*)
