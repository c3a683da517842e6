# The maker's quote requests written in one compiled call (issue 15's request path): a create or an
# amend of a quote goes from its arguments to transport.write with its bytes built in C from kept parts
# (the request head, the ticker's JSON string, the body's fixed middle and end) and its signature copied
# from the pair's SigRing. What it reads of Python: the idle connection, the write budget's try_acquire,
# the market's shard; what it makes: the bytes and the completion object. KalshiRest.place_quote_now /
# amend_quote_now call it and keep their Python bodies as the reference: tests/kalshi/test_quote_wire.py
# holds the two to the same bytes, budget, signatures and outcomes.
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memmove
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from kmm._core.fixed cimport format_fixed
from kmm._core.sigring cimport SigRing

cdef enum:
    BUF = 8192           # one request's bytes (a quote's are ~900)

cdef bytes CL_HEAD = b"Content-Length: "
cdef bytes CL_TAIL = b"\r\nConnection: keep-alive\r\n\r\n"
cdef bytes Q_TICKER = b'{"ticker":'
cdef bytes Q_COID = b',"client_order_id":'
cdef bytes Q_SIDE = b',"side":"'
cdef bytes Q_COUNT = b'","count":"'
cdef bytes Q_PRICE = b'","price":"'
cdef bytes A_SIDE = b',"side":"'
cdef bytes A_PRICE = b'","price":"'
cdef bytes A_COUNT = b'","count":"'
cdef bytes A_COID = b'","client_order_id":'
cdef bytes A_SHARD = b',"exchange_index":'
cdef str S_BID = "bid"
cdef str S_ASK = "ask"


cdef inline int64_t _mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline Py_ssize_t _put(char* out, Py_ssize_t at, const char* s, Py_ssize_t n) noexcept:
    memcpy(out + at, s, n)
    return at + n


cdef inline Py_ssize_t _putb(char* out, Py_ssize_t at, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(out + at, PyBytes_AS_STRING(b), n)
    return at + n


cdef inline int _clean(const char* s, Py_ssize_t n, unsigned char lo, unsigned char no1, unsigned char no2) noexcept:
    """1 when ``s`` is non-empty and every byte is in ``lo``..126 and neither ``no1`` nor ``no2``."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if n == 0:
        return 0
    for i in range(n):
        c = <unsigned char>s[i]
        if c < lo or c > 126 or c == no1 or c == no2:
            return 0
    return 1


cdef inline int _plain(const char* s, Py_ssize_t n) noexcept:
    """1 when ``s`` is its own JSON string body (printable ASCII, no quote or backslash) and non-empty."""
    return _clean(s, n, 32, 34, 92)


cdef inline int _path_safe(const char* s, Py_ssize_t n) noexcept:
    """1 when ``s`` may stand in a request target as it is (printable ASCII, no space, '?' or '#')."""
    return _clean(s, n, 33, 63, 35)


cdef class QuoteWire:
    """One client's compiled quote writes. Built by ``KalshiRest`` (``rest``) over its FastHttp
    (``fast``), signature pool (``pool``) and limiter; the callables and kept texts are the connector's
    (``json_str``: a value's JSON string when ASCII else None; ``quote_tail``: the create body's
    optional end or None; ``quote_answer`` / ``amend_answer``: the completion classes). ``place`` and
    ``amend`` return the write stamp, 0 when nothing could be written now (nothing taken; the caller
    takes the full path) or -1 when a value is not one these bytes are built for (nothing taken; the
    caller's Python body builds them)."""

    cdef object rest, fast, pool, idle, slots, shards, try_acquire, try_calm, pressure
    cdef object json_str, quote_tail, quote_answer, amend_answer, create_key, create_full
    cdef SigRing create_ring
    cdef bytes create_head, amend_start, amend_end, quote_fixed
    cdef dict tickers, tails
    cdef int place_lane, amend_lane
    cdef double cost
    cdef int64_t one_dollar, max_age_ns
    cdef char out[BUF]
    cdef readonly unsigned long long places, amends

    def __init__(self, rest, fast, pool, limiter, *, create_key, str create_full, str create_head,
                 str quote_fixed, json_str, quote_tail, quote_answer, amend_answer, int place_lane,
                 int amend_lane, double cost, int64_t one_dollar):
        self.rest, self.fast, self.pool = rest, fast, pool
        self.idle = fast._idle
        self.slots = pool._slots
        self.shards = rest.shards
        self.try_acquire = limiter.try_acquire
        self.try_calm = getattr(limiter, "try_acquire_calm", None)   # the compiled limiter core's
        self.pressure = getattr(limiter, "pressure", None) if self.try_calm is None else None
        self.json_str, self.quote_tail = json_str, quote_tail
        self.quote_answer, self.amend_answer = quote_answer, amend_answer
        self.create_key, self.create_full = create_key, create_full
        ring = self.slots.get(create_key)
        self.create_ring = ring if isinstance(ring, SigRing) else None
        self.create_head = create_head.encode("latin-1")
        # an amend's head: "POST <create_full>/<order_id>/amend HTTP/1.1\r\n" and the create head's rest
        line_end = create_head.index("\r\n") + 2
        self.amend_start = f"POST {create_full}/".encode("latin-1")
        self.amend_end = ("/amend HTTP/1.1\r\n" + create_head[line_end:]).encode("latin-1")
        self.quote_fixed = ('",' + quote_fixed).encode("ascii")
        self.tickers = {}
        self.tails = {}
        self.place_lane, self.amend_lane, self.cost, self.one_dollar = place_lane, amend_lane, cost, one_dollar
        self.max_age_ns = pool.max_age_ns

    cdef object _conn(self):
        """The warmest idle connection, taken (a closed one is dropped, as FastHttp does), or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    cdef object _granted(self, int lane, object shard, bint sharded, double max_pressure, object key):
        """The warmest idle connection with ``lane``'s write budget taken (on ``shard``'s bucket when
        ``sharded``), or None with nothing taken (the connection back in the idle pool). With
        ``max_pressure`` below 1, also None when the limiter's write pressure is above it (the frame
        entry's first request: ``Engine._small_reprices_only`` decides then); ``key``: the fair key
        the grant counts for (None: the limiter's FAIR_KEY)."""
        conn = self._conn()
        if conn is None:
            return None
        try:
            if max_pressure < 1.0 or key is not None:
                if self.try_calm is not None:
                    ok = self.try_calm(lane, self.cost, shard if sharded else None, max_pressure, key)
                else:           # a limiter without the compiled core's one call: its two (key not counted)
                    ok = not (max_pressure < 1.0 and self.pressure is not None
                              and self.pressure() > max_pressure) and (
                        self.try_acquire(lane, self.cost, shard=shard) if sharded else self.try_acquire(lane, self.cost))
            else:
                ok = self.try_acquire(lane, self.cost, shard=shard) if sharded else self.try_acquire(lane, self.cost)
            if ok:
                return conn
        except BaseException:
            self.idle.append(conn)
            raise
        self.idle.append(conn)
        return None

    cdef bytes _ticker(self, object ticker):
        cdef PyObject* p = PyDict_GetItem(self.tickers, ticker)
        if p != NULL:
            return <bytes>p
        j = self.json_str(ticker)
        if j is None:
            return None
        b = (<str>j).encode("ascii")
        if len(self.tickers) < 100_000:
            self.tickers[ticker] = b
        return b

    cdef bytes _tail(self, object group, object shard):
        """The create body's end after its fixed middle: ``quote_tail``'s text and the closing brace."""
        key = (group, shard)
        cdef PyObject* p = PyDict_GetItem(self.tails, key)
        if p != NULL:
            return <bytes>p
        t = self.quote_tail(group, shard)
        if t is None:
            return None
        b = ((<str>t) + "}").encode("ascii")
        if len(self.tails) < 1024:
            self.tails[key] = b
        return b

    cdef object _write(self, object conn, Py_ssize_t n, object answer_of, tuple args):
        """Write the ``n`` bytes built in :attr:`out` on ``conn`` with the completion ``answer_of(*args)``;
        the connection goes back to the idle pool when anything fails before its ``start``."""
        try:
            data = PyBytes_FromStringAndSize(self.out, n)
            answer = answer_of(*args)
        except BaseException:
            self.idle.append(conn)
            raise
        fast = self.fast
        conn.start(data, fast.timeout_s, answer)
        written = conn.last_write_ns
        fast.last_write_ns = written
        fast.requests += 1
        return written

    cdef int _after_take(self, SigRing ring, object key, bint per_order) except -1:
        """The pool's bookkeeping of a take, after the write: the pair's first take noted (a per-order
        kind in use), a top-up asked once until the pool has looked at the pair."""
        pool = self.pool
        if per_order and not ring.noted:
            ring.noted = True
            pool._note_take(key)
        if not ring.kicked:
            ring.kicked = True
            pool._kick(key)
        return 0

    def place(self, ticker, side, int64_t price, int64_t count, client_order_id, order_group_id,
              done, ctx, spawn, double max_pressure=2.0, key=None):
        """``KalshiRest.place_quote_now``'s write (its docstring), or 0 / -1 (this class's docstring)."""
        cdef SigRing ring = self.create_ring
        cdef Py_ssize_t nc, n, k, body_at, cl_at, rest_n
        cdef const char* c
        cdef bytes tj, tail
        cdef char num[32]
        cdef char* out = self.out
        if ring is None or type(ticker) is not str or type(client_order_id) is not str:
            return -1
        rest = self.rest
        if rest._session is None:
            return 0
        if not (0 < price < self.one_dollar and count > 0 and client_order_id and (side == S_BID or side == S_ASK)):
            return 0
        if not ring.size:               # the Python body's check (an aged-out one is found at the take)
            return 0
        shard = self.shards.get(ticker)
        tail = self._tail(order_group_id, shard)
        tj = self._ticker(ticker)
        c = PyUnicode_AsUTF8AndSize(client_order_id, &nc)
        if tail is None or tj is None or not _plain(c, nc):
            return -1                   # the Python body encodes it (orjson's escapes)
        # what follows the signature: the length's lines, the body's parts and two 20-digit numbers
        rest_n = (PyBytes_GET_SIZE(CL_HEAD) + 6 + PyBytes_GET_SIZE(CL_TAIL) + PyBytes_GET_SIZE(tj) + nc
                  + PyBytes_GET_SIZE(self.quote_fixed) + PyBytes_GET_SIZE(tail) + 128)
        if PyBytes_GET_SIZE(self.create_head) + rest_n + 256 > BUF:
            return -1
        sharded = isinstance(shard, int) and shard >= 1 and rest._limiter_shards
        conn = self._granted(self.place_lane, shard, sharded, max_pressure, key)
        if conn is None:
            return 0
        rest.requests += 1
        n = _putb(out, 0, self.create_head)
        k = ring.take_line(_mono_ns(), self.max_age_ns, out + n, BUF - n - rest_n)
        if k <= 0:
            # only when every kept signature aged out since the check above, or one does not fit:
            # the budget is taken; the Python body signs inline (counted as a miss there)
            self.idle.append(conn)
            return rest._place_quote_taken(ticker, side, price, count, client_order_id, order_group_id, shard,
                                           sharded, done, ctx, spawn)
        n += k
        n = _putb(out, n, CL_HEAD)
        cl_at = n
        n += 6                          # the length's room (a quote body is < 1,000,000 bytes)
        n = _putb(out, n, CL_TAIL)
        body_at = n
        n = _putb(out, n, Q_TICKER)
        n = _putb(out, n, tj)
        n = _putb(out, n, Q_COID)
        out[n] = 34
        n = _put(out, n + 1, c, nc)
        out[n] = 34
        n = _putb(out, n + 1, Q_SIDE)
        n = _put(out, n, "bid" if side == S_BID else "ask", 3)
        n = _putb(out, n, Q_COUNT)
        n = _put(out, n, num, format_fixed(count, 2, num))
        n = _putb(out, n, Q_PRICE)
        n = _put(out, n, num, format_fixed(price, 4, num))
        n = _putb(out, n, self.quote_fixed)
        n = _putb(out, n, tail)
        n = self._length(cl_at, body_at, n)
        self.places += 1
        written = self._write(conn, n, self.quote_answer, (rest, ticker, side, price, count, client_order_id,
                                                           order_group_id, shard if sharded else None, done, ctx,
                                                           spawn))
        self._after_take(ring, self.create_key, False)
        return written

    cdef Py_ssize_t _length(self, Py_ssize_t cl_at, Py_ssize_t body_at, Py_ssize_t end) noexcept:
        """Write the body's length at ``cl_at`` (6 bytes kept there) and close the gap the unused digits
        leave: the head after it moves left. Returns the request's new end."""
        cdef char num[32]
        cdef Py_ssize_t k = format_fixed(end - body_at, 0, num)
        cdef Py_ssize_t gap = 6 - k
        memcpy(self.out + cl_at, num, k)
        if gap:
            memmove(self.out + cl_at + k, self.out + cl_at + 6, end - cl_at - 6)
        return end - gap

    def amend(self, order_id, ticker, side, int64_t price, int64_t count, client_order_id, done, ctx, spawn,
              double max_pressure=2.0, key=None):
        """``KalshiRest.amend_quote_now``'s write (its docstring), or 0 / -1 (this class's docstring)."""
        cdef Py_ssize_t no, nc = 0, n, k, body_at, cl_at, rest_n
        cdef const char* o
        cdef const char* c = NULL
        cdef bytes tj
        cdef char num[32]
        cdef char* out = self.out
        cdef SigRing ring
        if type(order_id) is not str or type(ticker) is not str or not (side == S_BID or side == S_ASK):
            return -1
        rest = self.rest
        if rest._session is None:
            return 0
        o = PyUnicode_AsUTF8AndSize(order_id, &no)
        if not _path_safe(o, no):
            return -1                   # the Python body refuses ('?', '#') or fails as before
        full = f"{self.create_full}/{order_id}/amend"
        key = ("POST", full)
        r = self.slots.get(key)
        if r is None:
            return 0
        if type(r) is not SigRing:
            return -1
        ring = <SigRing>r
        if not ring.size:
            return 0
        if client_order_id is not None:
            if type(client_order_id) is not str:
                return -1
            c = PyUnicode_AsUTF8AndSize(client_order_id, &nc)
            if not _plain(c, nc):
                return -1
        shard = self.shards.get(ticker)
        if shard is not None and type(shard) is not int:
            return -1
        tj = self._ticker(ticker)
        if tj is None:
            return -1
        rest_n = PyBytes_GET_SIZE(CL_HEAD) + 6 + PyBytes_GET_SIZE(CL_TAIL) + PyBytes_GET_SIZE(tj) + nc + 160
        if PyBytes_GET_SIZE(self.amend_start) + no + PyBytes_GET_SIZE(self.amend_end) + rest_n + 256 > BUF:
            return -1
        sharded = isinstance(shard, int) and shard >= 1 and rest._limiter_shards
        conn = self._granted(self.amend_lane, shard, sharded, max_pressure, key)
        if conn is None:
            return 0
        rest.requests += 1
        n = _putb(out, 0, self.amend_start)
        n = _put(out, n, o, no)
        n = _putb(out, n, self.amend_end)
        k = ring.take_line(_mono_ns(), self.max_age_ns, out + n, BUF - n - rest_n)
        if k <= 0:
            self.idle.append(conn)
            return rest._amend_quote_taken(order_id, ticker, side, price, count, client_order_id, full, shard,
                                           sharded, done, ctx, spawn)
        n += k
        n = _putb(out, n, CL_HEAD)
        cl_at = n
        n += 6
        n = _putb(out, n, CL_TAIL)
        body_at = n
        n = _putb(out, n, Q_TICKER)
        n = _putb(out, n, tj)
        n = _putb(out, n, A_SIDE)
        n = _put(out, n, "bid" if side == S_BID else "ask", 3)
        n = _putb(out, n, A_PRICE)
        n = _put(out, n, num, format_fixed(price, 4, num))
        n = _putb(out, n, A_COUNT)
        n = _put(out, n, num, format_fixed(count, 2, num))
        if c != NULL:
            n = _putb(out, n, A_COID)
            out[n] = 34
            n = _put(out, n + 1, c, nc)
            out[n] = 34
            n += 1
        else:
            out[n] = 34
            n += 1
        if shard is not None:
            n = _putb(out, n, A_SHARD)
            n = _put(out, n, num, format_fixed(shard, 0, num))
        out[n] = 125                    # }
        n = self._length(cl_at, body_at, n + 1)
        self.amends += 1
        written = self._write(conn, n, self.amend_answer, (rest, order_id, full, shard if sharded else None, done,
                                                           ctx, spawn))
        self._after_take(ring, key, True)
        rest.remember_order(order_id, ticker)
        return written
