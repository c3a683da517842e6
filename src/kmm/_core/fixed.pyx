"""Kalshi's fixed-point strings and kmm's integer units.

Prices are dollar strings with at most 4 decimals ("0.4275" -> 4275, 1e-4 $); counts are contract
strings with at most 2 decimals ("10.00" -> 1000, 1e-2 contracts). Parsing is strict: a string that
is not a plain decimal, or that carries more decimals than the unit holds, is an error rather than
a rounding.
"""

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t

cdef enum:
    _ZERO = 48  # ord('0')
    _NINE = 57
    _DOT = 46
    _MINUS = 45
    _PLUS = 43
    _MAX_DIGITS = 17  # keeps value * 10**scale far inside int64


cdef int parse_fixed(const char* s, Py_ssize_t n, int scale, bint signed, int64_t* out) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef int64_t v = 0
    cdef int digits = 0
    cdef int frac = -1  # decimals seen after '.', -1 before the point
    cdef char c
    if n <= 0:
        return -1
    if s[0] == _MINUS or s[0] == _PLUS:
        if not signed:
            return -1
        neg = s[0] == _MINUS
        i = 1
    if i >= n:
        return -1
    while i < n:
        c = s[i]
        if _ZERO <= c <= _NINE:
            if frac >= 0:
                if frac == scale:
                    return -1
                frac += 1
            digits += 1
            if digits > _MAX_DIGITS:
                return -1
            v = v * 10 + (c - _ZERO)
        elif c == _DOT and frac < 0:
            frac = 0
        else:
            return -1
        i += 1
    if digits == 0:
        return -1
    if frac < 0:
        frac = 0
    if digits + scale - frac > 18:  # value * 10**scale must stay below 1e18 (inside int64)
        return -1
    while frac < scale:
        v *= 10
        frac += 1
    out[0] = -v if neg else v
    return 0


cdef Py_ssize_t format_fixed(int64_t value, int scale, char* buf) noexcept nogil:
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, k = 0
    cdef int digits = 0
    cdef bint neg = value < 0
    cdef unsigned long long u = <unsigned long long>(-value) if neg else <unsigned long long>value
    while digits <= scale or u > 0:  # at least one digit before the point
        tmp[n] = <char>(_ZERO + (u % 10))
        u //= 10
        n += 1
        digits += 1
        if digits == scale:
            tmp[n] = _DOT
            n += 1
    if neg:
        buf[k] = _MINUS
        k += 1
    while n > 0:
        n -= 1
        buf[k] = tmp[n]
        k += 1
    return k


cdef int64_t _parse(object text, int scale, bint signed, str what) except? -1:
    cdef const char* s
    cdef Py_ssize_t n
    cdef int64_t v
    if isinstance(text, str):
        s = PyUnicode_AsUTF8AndSize(text, &n)
    elif isinstance(text, bytes):
        s = text
        n = len(<bytes>text)
    else:
        raise ValueError(f"{what} {text!r} is not a string; the wire sends fixed-point strings")
    if parse_fixed(s, n, scale, signed, &v) != 0:
        raise ValueError(f"{what} {text!r} is not a decimal with at most {scale} decimals")
    return v


def parse_price(text):
    """Dollar string -> price in 1e-4 $ ("0.4275" -> 4275). Raises ValueError when malformed."""
    return _parse(text, 4, False, "price")


def parse_count(text):
    """Contract string -> size in 1e-2 contracts ("10.00" -> 1000). Raises ValueError when malformed."""
    return _parse(text, 2, False, "count")


def parse_signed_count(text):
    """Signed contract string -> 1e-2 contracts ("-5.00" -> -500), as in ``delta_fp``/``position_fp``."""
    return _parse(text, 2, True, "signed count")


def parse_money(text):
    """Signed dollar string -> 1e-4 $ ("-0.1750" -> -1750), as in ``*_dollars`` money fields."""
    return _parse(text, 4, True, "dollar amount")


def format_price(int64_t price):
    """Price in 1e-4 $ -> dollar string with 4 decimals (4275 -> "0.4275")."""
    cdef char buf[32]
    cdef Py_ssize_t n = format_fixed(price, 4, buf)
    return buf[:n].decode("ascii")


def format_count(int64_t count):
    """Size in 1e-2 contracts -> contract string with 2 decimals (1000 -> "10.00")."""
    cdef char buf[32]
    cdef Py_ssize_t n = format_fixed(count, 2, buf)
    return buf[:n].decode("ascii")
