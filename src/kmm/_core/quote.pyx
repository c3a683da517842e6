"""Avellaneda-Stoikov quotes for a Kalshi market, on its grid, post-only safe, inside position limits.

The model (Avellaneda & Stoikov 2008, "High-frequency trading in a limit order book") gives a
reservation price r = s - q * gamma * sigma^2 * tau and a total spread
gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / kappa). :func:`compute` adds the OFI and alpha
skews to r, brackets it by the half spread, then quantizes: the bid is the highest grid price that is
at most r - half, earns at least ``min_edge`` below r after the maker fee and, post-only, stays below
the best ask; the ask is the mirror image. Every clamp moves a quote away from r, so the spread and
edge guarantees survive quantization. Units are listed in quote.pxd.
"""

cimport cython
from libc.math cimport floor, ceil, sqrt, isfinite, INFINITY
from libc.stdint cimport int64_t

from kmm._core._types cimport px_t, qty_t
from kmm._core.grid cimport Grid
from kmm._core.fees cimport fee_per_contract

QUOTE_FLAGS = {
    "BID_LIMIT": QF_BID_LIMIT, "ASK_LIMIT": QF_ASK_LIMIT,
    "BID_NO_PRICE": QF_BID_NO_PRICE, "ASK_NO_PRICE": QF_ASK_NO_PRICE,
    "BID_POST_ONLY": QF_BID_POST_ONLY, "ASK_POST_ONLY": QF_ASK_POST_ONLY,
}
BID_LIMIT = QF_BID_LIMIT
ASK_LIMIT = QF_ASK_LIMIT
BID_NO_PRICE = QF_BID_NO_PRICE
ASK_NO_PRICE = QF_ASK_NO_PRICE
BID_POST_ONLY = QF_BID_POST_ONLY
ASK_POST_ONLY = QF_ASK_POST_ONLY

# The highest maker fee rate accepted: keeps p + fee(p) and p - fee(p) strictly increasing in p.
cdef int64_t MAX_FEE_RATE_E6 = 500_000


cdef inline int _check_real(double x, str name, bint nonneg) except -1:
    if not isfinite(x) or (nonneg and x < 0.0):
        raise ValueError(f"{name} = {x!r} must be a finite number{' >= 0' if nonneg else ''}")
    return 0


def reservation_price(double mid, double inventory, double gamma, double sigma, double tau):
    """Avellaneda-Stoikov reservation price ``mid - inventory * gamma * sigma**2 * tau``.

    Unit-agnostic floats: use one consistent set (kmm's: mid in 1e-4 $, inventory in contracts,
    sigma in 1e-4 $ per sqrt(s), tau in s, gamma per (1e-4 $ x contract)).
    """
    if not tau >= 0.0:
        raise ValueError(f"reservation_price: tau = {tau!r} must be >= 0 (time left until the close)")
    return as_reservation(mid, inventory, gamma, sigma, tau)


def optimal_spread(double gamma, double sigma, double tau, double kappa):
    """Avellaneda-Stoikov total spread ``gamma * sigma**2 * tau + (2 / gamma) * ln(1 + gamma / kappa)``.

    ``gamma == 0`` gives the limit ``2 / kappa``. Raises ValueError unless gamma >= 0, kappa > 0 and
    tau >= 0. Same units as :func:`reservation_price`; kappa is per price unit.
    """
    if not (0.0 <= gamma < INFINITY and 0.0 < kappa < INFINITY and 0.0 <= tau < INFINITY
            and isfinite(sigma)):
        raise ValueError(f"optimal_spread: need finite gamma >= 0, kappa > 0, tau >= 0 and sigma; got "
                         f"gamma={gamma!r}, sigma={sigma!r}, tau={tau!r}, kappa={kappa!r}")
    return as_spread(gamma, sigma, tau, kappa)


@cython.final
cdef class QuoteParams:
    """The slowly changing half of a quote: the market's grid, model constants, sizes, limits, fees.

    Immutable; build a new one (or call :meth:`replace`) when a parameter changes.
    """

    def __init__(self, Grid grid not None, double gamma, double kappa, qty_t quote_size,
                 qty_t long_limit, qty_t short_limit, int64_t maker_fee_rate_e6=0,
                 px_t min_spread=1, double min_edge=0.0, qty_t size_step=100):
        _check_real(gamma, "QuoteParams.gamma (risk aversion, per 1e-4 $ x contract)", True)
        if not (isfinite(kappa) and kappa > 0.0):
            raise ValueError(f"QuoteParams.kappa = {kappa!r} must be > 0 (order-arrival decay per 1e-4 $)")
        if size_step < 1:
            raise ValueError(f"QuoteParams.size_step = {size_step} must be >= 1 (1e-2 contracts; "
                             "100 for whole-contract markets, 1 for fractional ones)")
        if quote_size < size_step:
            raise ValueError(f"QuoteParams.quote_size = {quote_size} must be >= size_step {size_step} "
                             "(1e-2 contracts)")
        if long_limit < 0 or short_limit < 0:
            raise ValueError(f"QuoteParams: long_limit {long_limit} and short_limit {short_limit} must be "
                             ">= 0 (1e-2 contracts; short_limit is a magnitude)")
        if not 0 <= maker_fee_rate_e6 <= MAX_FEE_RATE_E6:
            raise ValueError(f"QuoteParams.maker_fee_rate_e6 = {maker_fee_rate_e6} must be in "
                             f"0..{MAX_FEE_RATE_E6} (millionths; use kmm._core.fees.fee_rate_e6)")
        if not 1 <= min_spread <= 10000:
            raise ValueError(f"QuoteParams.min_spread = {min_spread} must be in 1..10000 (1e-4 $)")
        _check_real(min_edge, "QuoteParams.min_edge (1e-4 $)", True)
        self.grid = grid
        self.gamma = gamma
        self.kappa = kappa
        self.quote_size = quote_size
        self.long_limit = long_limit
        self.short_limit = short_limit
        self.maker_fee_rate_e6 = maker_fee_rate_e6
        self.min_spread = min_spread
        self.min_edge = min_edge
        self.size_step = size_step
        self._fee_c = <double>maker_fee_rate_e6 / 1e10

    def replace(self, **changes):
        """A copy with some parameters changed (validated like the constructor)."""
        kw = dict(grid=self.grid, gamma=self.gamma, kappa=self.kappa, quote_size=self.quote_size,
                  long_limit=self.long_limit, short_limit=self.short_limit,
                  maker_fee_rate_e6=self.maker_fee_rate_e6, min_spread=self.min_spread,
                  min_edge=self.min_edge, size_step=self.size_step)
        unknown = set(changes) - set(kw)
        if unknown:
            raise ValueError(f"QuoteParams.replace: unknown parameter(s) {', '.join(sorted(unknown))}")
        kw.update(changes)
        return QuoteParams(**kw)

    def __repr__(self):
        return (f"QuoteParams(gamma={self.gamma!r}, kappa={self.kappa!r}, quote_size={self.quote_size}, "
                f"long_limit={self.long_limit}, short_limit={self.short_limit}, "
                f"maker_fee_rate_e6={self.maker_fee_rate_e6}, min_spread={self.min_spread}, "
                f"min_edge={self.min_edge!r}, size_step={self.size_step}, grid={self.grid!r})")


@cython.final
@cython.freelist(16)
cdef class Quotes:
    """Target quotes for one market after one book update. A missing side has price 0 and size 0."""

    def __init__(self):
        raise TypeError("Quotes are produced by kmm._core.quote.compute")

    @property
    def has_bid(self):
        return self.bid_size > 0

    @property
    def has_ask(self):
        return self.ask_size > 0

    @property
    def bid(self):
        """``(price, size)`` of the bid, or None."""
        return (self.bid_price, self.bid_size) if self.bid_size > 0 else None

    @property
    def ask(self):
        """``(price, size)`` of the ask, or None."""
        return (self.ask_price, self.ask_size) if self.ask_size > 0 else None

    def __repr__(self):
        return (f"Quotes(bid={self.bid!r}, ask={self.ask!r}, reservation={self.reservation:.4f}, "
                f"half_spread={self.half_spread:.4f}, flags={self.flags})")


cdef inline px_t _clip_px(double x) noexcept nogil:
    # A float price clipped to -1..10001 before the cast, so the cast cannot overflow.
    if x < -1.0:
        return -1
    if x > 10001.0:
        return 10001
    return <px_t>x


cdef px_t _model_bid(QuoteParams p, double r, double half) noexcept:
    # Highest grid price b with b <= r - half and b + fee(b) <= r - min_edge, or -1.
    cdef Grid g = p.grid
    cdef double c = p._fee_c
    cdef int64_t rate = p.maker_fee_rate_e6
    cdef double lim = r - p.min_edge
    cdef double x = r - half
    cdef double k, guess
    cdef px_t b
    if lim < 1.0 or x < 1.0:
        return -1
    if lim < 10000.0:
        # Root of c*b^2 - (1 + 1e4 c) b + lim = 0 in its cancellation-free form; +1 covers rounding.
        k = 1.0 + 10000.0 * c
        guess = 2.0 * lim / (k + sqrt(k * k - 4.0 * c * lim)) + 1.0
        if guess < x:
            x = guess
    b = g.floor_px(_clip_px(floor(x)))
    while b > 0 and <double>b + fee_per_contract(b, rate) > lim:
        b = g.floor_px(b - 1)
    return b


cdef px_t _model_ask(QuoteParams p, double r, double half) noexcept:
    # Lowest grid price a with a >= r + half and a - fee(a) >= r + min_edge, or -1.
    cdef Grid g = p.grid
    cdef double c = p._fee_c
    cdef int64_t rate = p.maker_fee_rate_e6
    cdef double lim = r + p.min_edge
    cdef double x = r + half
    cdef double k, guess
    cdef px_t a
    if lim >= 10000.0 or x > 10000.0:
        return -1
    if lim > 0.0:
        # Root of c*a^2 + (1 - 1e4 c) a - lim = 0; -1 covers rounding.
        k = 1.0 - 10000.0 * c
        guess = 2.0 * lim / (k + sqrt(k * k + 4.0 * c * lim)) - 1.0
        if guess > x:
            x = guess
    a = g.ceil_px(_clip_px(ceil(x)))
    while a > 0 and <double>a - fee_per_contract(a, rate) < lim:
        a = g.ceil_px(a + 1)
    return a


cdef int fill_quotes(QuoteParams p, Quotes out, double mid, qty_t inventory, double tau,
                     double sigma, double skew, px_t best_bid, px_t best_ask) noexcept:
    cdef Grid g = p.grid
    cdef double r = as_reservation(mid, <double>inventory / 100.0, p.gamma, sigma, tau) + skew
    cdef double half = 0.5 * as_spread(p.gamma, sigma, tau, p.kappa)
    cdef qty_t size
    cdef px_t px, bound
    cdef int flags = 0
    if not half >= 0.5 * <double>p.min_spread:
        half = 0.5 * <double>p.min_spread
    out.reservation = r
    out.half_spread = half
    out.bid_price = 0
    out.bid_size = 0
    out.ask_price = 0
    out.ask_size = 0

    size = p.long_limit - inventory
    if size > p.quote_size:
        size = p.quote_size
    size -= size % p.size_step if size > 0 else 0
    if size <= 0:
        flags |= QF_BID_LIMIT
    else:
        px = _model_bid(p, r, half)
        if px > 0 and 0 < best_ask < 10000 and px >= best_ask:
            px = g.floor_px(best_ask - 1)
            flags |= QF_BID_POST_ONLY
        if px > 0:
            out.bid_price = px
            out.bid_size = size
        else:
            flags |= QF_BID_NO_PRICE

    size = inventory + p.short_limit
    if size > p.quote_size:
        size = p.quote_size
    size -= size % p.size_step if size > 0 else 0
    if size <= 0:
        flags |= QF_ASK_LIMIT
    else:
        px = _model_ask(p, r, half)
        if px > 0 and best_bid > 0 and px <= best_bid:
            px = g.ceil_px(best_bid + 1)
            flags |= QF_ASK_POST_ONLY
        if px > 0:
            out.ask_price = px
            out.ask_size = size
        else:
            flags |= QF_ASK_NO_PRICE
    out.flags = flags
    return 0


cpdef Quotes compute(QuoteParams params, double mid, qty_t inventory, double tau, double sigma,
                     double ofi_skew=0.0, double alpha_skew=0.0, px_t best_bid=0, px_t best_ask=0):
    """Target quotes for one book update.

    mid: mid or microprice (float, 1e-4 $). inventory: signed position (1e-2 contracts, > 0 long YES).
    tau: seconds to the close (>= 0). sigma: volatility, 1e-4 $ per sqrt(s) (>= 0). ofi_skew and
    alpha_skew: added to the reservation price (1e-4 $). best_bid / best_ask: the book's best YES bid
    and ask (1e-4 $) for post-only safety; pass 0 for an empty side. Returns a :class:`Quotes`.
    """
    if params is None:
        raise ValueError("compute: params is None; build a QuoteParams first")
    if not isfinite(mid):
        raise ValueError(f"compute: mid = {mid!r} must be a finite price (1e-4 $)")
    if not (isfinite(tau) and tau >= 0.0):
        raise ValueError(f"compute: tau = {tau!r} must be finite and >= 0 (seconds to the close)")
    if not (isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"compute: sigma = {sigma!r} must be finite and >= 0 (1e-4 $ per sqrt(s))")
    if not (isfinite(ofi_skew) and isfinite(alpha_skew)):
        raise ValueError(f"compute: ofi_skew = {ofi_skew!r} and alpha_skew = {alpha_skew!r} must be "
                         "finite (1e-4 $)")
    if best_bid < 0 or best_bid >= 10000 or best_ask < 0 or best_ask > 10000:
        raise ValueError(f"compute: best_bid {best_bid} must be in 0..9999 and best_ask {best_ask} in "
                         "0..10000 (1e-4 $; 0 = that side of the book is empty)")
    cdef Quotes out = Quotes.__new__(Quotes)
    fill_quotes(params, out, mid, inventory, tau, sigma, ofi_skew + alpha_skew, best_bid, best_ask)
    return out
