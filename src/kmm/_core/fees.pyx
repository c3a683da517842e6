"""Kalshi's trade fee in integer units (1e-4 $), shared by quoting, execution, portfolio and the sim.

Trade fee = roundup(rate x multiplier x C x P x (1 - P)) to $0.0001 (kalshi-api.md section 6):
takers pay 0.07; makers pay 0.0175 only on series whose ``fee_type`` is
``quadratic_with_maker_fees`` and 0 on ``quadratic``. Cash is then settled in whole cents with a
per-order carry that refunds the over-collected rounding (see :func:`cent_fee`).
"""

from decimal import Decimal, InvalidOperation

from libc.stdint cimport int64_t

cdef extern from *:
    """
    static inline long long kmm_fee_e4(long long count, long long price, long long rate_e6) {
        if (count <= 0 || rate_e6 <= 0 || price <= 0 || price >= 10000) return 0;
        /* count * price * (10000 - price) * rate_e6 can pass 2^63: use 128-bit arithmetic. */
        __int128 num = (__int128)rate_e6 * count * price * (10000 - price);
        const __int128 den = (__int128)1000000000000LL; /* 1e6 (rate) * 100 (count) * 1e4 (price) */
        return (long long)((num + den - 1) / den);
    }
    """
    long long kmm_fee_e4(long long count, long long price, long long rate_e6) nogil

TAKER_RATE_E6 = 70_000
MAKER_RATE_E6 = 17_500
MULTIPLIER_ONE_E6 = 1_000_000
FEE_TYPES = ("quadratic", "quadratic_with_maker_fees")


cdef money_t fee_e4(qty_t count, px_t price, int64_t rate_e6) noexcept nogil:
    return kmm_fee_e4(count, price, rate_e6)


cdef double fee_per_contract(px_t price, int64_t rate_e6) noexcept nogil:
    if price <= 0 or price >= 10000 or rate_e6 <= 0:
        return 0.0
    return <double>rate_e6 * <double>price * <double>(10000 - price) / 1e10


def trade_fee(qty_t count, px_t price, int64_t rate_e6):
    """Fee for one fill of ``count`` (1e-2 contracts) at YES ``price`` (1e-4 $), in 1e-4 $, rounded up.

    ``rate_e6`` is from :func:`fee_rate_e6`. Raises ValueError for a price outside [0, 10000] or a
    negative count or rate.
    """
    if count < 0:
        raise ValueError(f"trade_fee: count {count} is negative; give the fill size in 1e-2 contracts")
    if price < 0 or price > 10000:
        raise ValueError(f"trade_fee: price {price} is outside 0..10000 (1e-4 $)")
    if rate_e6 < 0:
        raise ValueError(f"trade_fee: rate_e6 {rate_e6} is negative")
    return kmm_fee_e4(count, price, rate_e6)


def parse_multiplier_e6(multiplier):
    """A series ``fee_multiplier`` (number or decimal string, e.g. 1, 0.5, "0.5") in millionths."""
    try:
        d = Decimal(str(multiplier))
    except (InvalidOperation, ValueError):
        raise ValueError(f"fee_multiplier {multiplier!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"fee_multiplier {multiplier!r} must be a finite number >= 0")
    scaled = d * 1_000_000
    if scaled != scaled.to_integral_value():
        raise ValueError(f"fee_multiplier {multiplier!r} has more than 6 decimal places")
    return int(scaled)


def fee_rate_e6(str fee_type, bint taker, multiplier=1):
    """Effective fee rate (rate x multiplier) in millionths for a fill on a series.

    ``fee_type`` is the series' ``fee_type``: ``quadratic`` (makers pay nothing) or
    ``quadratic_with_maker_fees``. The ``flat`` type has no documented formula, so it is refused with
    a ValueError rather than guessed.
    """
    if fee_type not in FEE_TYPES:
        raise ValueError(
            f"fee_type {fee_type!r} is not supported: expected one of {', '.join(FEE_TYPES)} "
            "(Kalshi documents no formula for 'flat')")
    cdef int64_t m = parse_multiplier_e6(multiplier)
    cdef int64_t base
    if taker:
        base = TAKER_RATE_E6
    elif fee_type == "quadratic_with_maker_fees":
        base = MAKER_RATE_E6
    else:
        return 0
    # base (<= 7e4) * m / 1e6: exact for multipliers with up to 6 decimals (0.5 -> 35000)
    return (base * m) // 1_000_000


def cent_fee(money_t fee, money_t carry):
    """Charge a fill's fee in whole cents with a per-order carry (Kalshi's 2026 rounding).

    The exact fee (1e-4 $, already rounded up to $0.0001) is charged rounded up to the next cent; the
    over-collection accumulates in ``carry`` (1e-4 $, 0 <= carry < 100) and whole cents of it are
    refunded as soon as they add up. Returns ``(charged, new_carry)``, both in 1e-4 $; ``charged`` is
    a multiple of 100. Over an order's fills, sum(charged) - final carry == sum(fee).
    """
    if fee < 0 or carry < 0 or carry >= 100:
        raise ValueError(f"cent_fee: fee {fee} must be >= 0 and carry {carry} in 0..99 (1e-4 $)")
    cdef money_t charged = ((fee + 99) // 100) * 100
    carry += charged - fee
    cdef money_t refund = (carry // 100) * 100
    return charged - refund, carry - refund
