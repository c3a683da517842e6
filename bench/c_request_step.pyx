# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A request step over compact C data, for bench/probe_c_request.py (built there with pyximport; not
part of kmm).

It does what the order path does between "actions decided" and ``transport.write`` for one amend,
in the shape a typed request path would take: the gate's checks on the order's shape and the position
(C fields, not the portfolio's and order manager's objects), a token taken from a write bucket, a
pre-made signature taken from a ring, and the request's bytes (head template, auth headers, JSON body
with the price and count written as Kalshi's fixed-point strings). It sends nothing. The point is its
cost in situ, cold, next to the Python path's."""

from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef enum:
    RING = 64          # pre-made signatures kept
    MARKETS = 8


cdef struct Signature:
    int64_t made_ns
    int length
    char text[360]


cdef struct State:
    int64_t max_order_size, price_min, price_max, max_position, max_total, max_notional
    int64_t position[MARKETS]
    int64_t open_qty[MARKETS][2]
    int64_t total_abs
    bint armed
    bint quotable[MARKETS]
    double tokens, rate, capacity
    int64_t refill_ns
    Signature ring[RING]
    int ring_head
    char head[400]
    int head_len
    char ticker[64]
    int ticker_len
    char out[2048]


cdef State st


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _abs(int64_t v) noexcept nogil:
    return -v if v < 0 else v


cdef int _put(char* out, const char* s, int n) noexcept nogil:
    memcpy(out, s, n)
    return n


cdef int _uint(char* out, int64_t v) noexcept nogil:
    """``v`` (>= 0) in decimal."""
    cdef char tmp[24]
    cdef int n = 0, i
    if v == 0:
        out[0] = 48
        return 1
    while v > 0:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef int _fixed(char* out, int64_t v, int decimals) noexcept nogil:
    """``v`` units of 10**-decimals as "I.FF..." (Kalshi's dollar and count strings)."""
    cdef int64_t d = 1
    cdef int k, i
    for i in range(decimals):
        d *= 10
    k = _uint(out, v // d)
    out[k] = 46
    k += 1
    v %= d
    for i in range(decimals):
        d //= 10
        out[k] = <char>(48 + (v // d) % 10)
        k += 1
    return k


def setup(bytes head not None, bytes ticker not None) -> None:
    """Limits and positions that let every step through; ``head``: a request head up to the auth headers."""
    cdef int i
    if len(head) > 400 or len(ticker) > 64:
        raise ValueError("head or ticker too long for the probe's buffers")
    memset(&st, 0, sizeof(State))
    st.max_order_size, st.price_min, st.price_max = 100_000, 1, 9_999
    st.max_position, st.max_total, st.max_notional = 100_000, 1_000_000, 100_000_000
    st.armed, st.total_abs = True, 500
    st.rate = st.capacity = st.tokens = 8000.0
    st.refill_ns = _now_ns()
    for i in range(MARKETS):
        st.quotable[i] = True
        st.position[i] = 300
        st.open_qty[i][0] = st.open_qty[i][1] = 500
    memcpy(st.head, <char*>head, len(head))
    st.head_len = len(head)
    memcpy(st.ticker, <char*>ticker, len(ticker))
    st.ticker_len = len(ticker)
    for i in range(RING):
        st.ring[i].made_ns = st.refill_ns
        st.ring[i].length = 344               # a 2048-bit RSA-PSS signature in base64
        memset(st.ring[i].text, 65, 344)


def step(int market, int side, int64_t price, int64_t size, int64_t old_remaining):
    """One amend's checks, budget, signature and bytes. Returns (ns inside, the request bytes or None)."""
    cdef int64_t t0 = _now_ns()
    cdef int64_t q, worst, sign = 1 if side == 0 else -1
    cdef Signature* sg
    cdef char body[256]
    cdef int b = 0, k = 0
    cdef double tokens
    market %= MARKETS
    if not st.armed or not st.quotable[market] or size <= 0 or size > st.max_order_size \
            or price < st.price_min or price > st.price_max \
            or size * (price if side == 0 else 10_000 - price) // 100 > st.max_notional:
        return _now_ns() - t0, None
    q = st.position[market]
    worst = q + sign * (st.open_qty[market][side & 1] - old_remaining + size)
    if _abs(worst) > st.max_position and _abs(worst) > _abs(q):
        return _now_ns() - t0, None
    if _abs(worst) > _abs(q) and st.total_abs + _abs(worst) - _abs(q) > st.max_total:
        return _now_ns() - t0, None
    tokens = st.tokens + (t0 - st.refill_ns) * 1e-9 * st.rate
    st.refill_ns = t0
    st.tokens = st.capacity if tokens > st.capacity else tokens
    if st.tokens < 10.0:
        return _now_ns() - t0, None
    st.tokens -= 10.0
    sg = &st.ring[st.ring_head]               # the oldest signature (the ring is refilled elsewhere)
    st.ring_head = (st.ring_head + 1) % RING
    b += _put(body + b, b'{"ticker":"', 11)
    b += _put(body + b, st.ticker, st.ticker_len)
    b += _put(body + b, b'","side":"', 10)
    b += _put(body + b, b"bid" if side == 0 else b"ask", 3)
    b += _put(body + b, b'","price":"', 11)
    b += _fixed(body + b, price, 4)
    b += _put(body + b, b'","count":"', 11)
    b += _fixed(body + b, size, 2)
    b += _put(body + b, b'"}', 2)
    k += _put(st.out + k, st.head, st.head_len)
    k += _put(st.out + k, b"KALSHI-ACCESS-TIMESTAMP: 1700000000000\r\nKALSHI-ACCESS-SIGNATURE: ", 64)
    k += _put(st.out + k, sg.text, sg.length)
    k += _put(st.out + k, b"\r\nContent-Length: ", 18)
    k += _uint(st.out + k, b)
    k += _put(st.out + k, b"\r\nConnection: keep-alive\r\n\r\n", 28)
    k += _put(st.out + k, body, b)
    data = PyBytes_FromStringAndSize(st.out, k)
    return _now_ns() - t0, data
