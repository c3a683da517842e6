"""WebSocket frames -> compiled order books, without a Python object per price level.

The connector hands every text frame (bytes) to :meth:`BookRouter.feed`. The router scans the frame
once in C (strict JSON: any key order, any whitespace, unknown keys and values of every JSON type
skipped, strings checked for valid UTF-8 and escapes, nesting up to 128 deep), records where the
fields it needs sit, and for ``orderbook_snapshot``/``orderbook_delta`` frames applies them to the
market's :class:`~kmm._core.book.OrderBook` through its compiled methods. Other frames return
``NOT_BOOK`` for the caller to decode with orjson. It never raises on frame content.

Sequence rules (kalshi-api.md section 3.5): ``seq`` counts per ``sid``, shared by every market of the
subscription. A snapshot sets the sid's base to its own seq and makes its market fresh; a delta whose
seq is not base + 1 is a GAP and marks every market of that sid stale until its next snapshot. See
docs/core-book.md for the full decision order.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t, INT64_MAX
from libc.string cimport memcmp, memset

from kmm._core._types cimport px_t, qty_t
from kmm._core.book cimport (OrderBook, BOOK_OK, BOOK_DESYNC, BOOK_OFF_GRID, BOOK_BAD_SIZE,
                             BOOK_DUPLICATE)
from kmm._core.fixed cimport parse_fixed

NOT_BOOK = FEED_NOT_BOOK
SNAPSHOT = FEED_SNAPSHOT
DELTA = FEED_DELTA
GAP = FEED_GAP
STALE_SKIPPED = FEED_STALE_SKIPPED
UNKNOWN_MARKET = FEED_UNKNOWN_MARKET
MALFORMED = FEED_MALFORMED
OTHER_TICKER_FRAME = OTHER_TICKER
OTHER_TRADE_FRAME = OTHER_TRADE
RESULT_NAMES = ("NOT_BOOK", "SNAPSHOT", "DELTA", "GAP", "STALE_SKIPPED", "UNKNOWN_MARKET", "MALFORMED")
MAX_DEPTH = 128

cdef str _T_SNAPSHOT = "orderbook_snapshot"
cdef str _T_DELTA = "orderbook_delta"
cdef tuple _SIDES = ("yes", "no")

cdef enum:
    _MAX_DEPTH = 128    # deepest nesting of objects/arrays accepted in a frame
    _KEY_MAX = 32       # longest key the router reads is 15 bytes; longer decoded keys never match


# ---- the scanner ------------------------------------------------------------------------------

cdef inline const char* _ws(const char* p, const char* end) noexcept nogil:
    while p < end and (p[0] == c' ' or p[0] == c'\n' or p[0] == c'\r' or p[0] == c'\t'):
        p += 1
    return p


cdef inline const char* _fail_at(Scan* s, const char* p, const char* why) noexcept nogil:
    if s.err == NULL:
        s.err = p
        s.why = why
    return NULL


cdef inline int _hex(char c) noexcept nogil:
    if c'0' <= c <= c'9':
        return c - c'0'
    if c'a' <= c <= c'f':
        return c - c'a' + 10
    if c'A' <= c <= c'F':
        return c - c'A' + 10
    return -1


cdef inline int _utf8_len(const unsigned char* q, const char* end) noexcept nogil:
    """Bytes in the UTF-8 sequence starting at q (first byte >= 0x80), 0 when invalid (overlong,
    surrogate, above U+10FFFF, truncated)."""
    cdef unsigned char c = q[0], lo = 0x80, hi = 0xBF
    cdef int need, i
    cdef Py_ssize_t avail = end - <const char*>q
    if 0xC2 <= c <= 0xDF:
        need = 2
    elif c == 0xE0:
        need = 3
        lo = 0xA0
    elif (0xE1 <= c <= 0xEC) or c == 0xEE or c == 0xEF:
        need = 3
    elif c == 0xED:
        need = 3
        hi = 0x9F
    elif c == 0xF0:
        need = 4
        lo = 0x90
    elif 0xF1 <= c <= 0xF3:
        need = 4
    elif c == 0xF4:
        need = 4
        hi = 0x8F
    else:
        return 0
    if avail < need or q[1] < lo or q[1] > hi:
        return 0
    for i in range(2, need):
        if (q[i] & 0xC0) != 0x80:
            return 0
    return need


cdef const char* _scan_string(Scan* s, const char* p, JVal* v) noexcept nogil:
    # p is at the opening quote
    cdef const char* end = s.end
    cdef const char* q = p + 1
    cdef unsigned char c
    cdef bint esc = False
    cdef int k
    while True:
        if q >= end:
            return _fail_at(s, q, "unterminated string")
        c = <unsigned char>q[0]
        if c == c'"':
            break
        if c == c'\\':
            if q + 1 >= end:
                return _fail_at(s, q, "unterminated escape")
            c = <unsigned char>q[1]
            if c == c'u':
                if q + 6 > end or _hex(q[2]) < 0 or _hex(q[3]) < 0 or _hex(q[4]) < 0 or _hex(q[5]) < 0:
                    return _fail_at(s, q, "bad \\u escape")
                q += 6
            elif (c == c'"' or c == c'\\' or c == c'/' or c == c'b' or c == c'f' or c == c'n'
                  or c == c'r' or c == c't'):
                q += 2
            else:
                return _fail_at(s, q, "bad escape")
            esc = True
        elif c < 0x20:
            return _fail_at(s, q, "control character in string")
        elif c < 0x80:
            q += 1
        else:
            k = _utf8_len(<const unsigned char*>q, end)
            if k == 0:
                return _fail_at(s, q, "invalid UTF-8")
            q += k
    v.kind = J_STRING
    v.p = p + 1
    v.n = q - (p + 1)
    v.esc = esc
    return q + 1


cdef const char* _scan_number(Scan* s, const char* p, JVal* v) noexcept nogil:
    cdef const char* end = s.end
    cdef const char* q = p
    cdef bint neg = False, big = False, isint = True
    cdef uint64_t mag = 0, d
    if q[0] == c'-':
        neg = True
        q += 1
    if q >= end:
        return _fail_at(s, q, "digit expected")
    if q[0] == c'0':
        q += 1
    elif c'1' <= q[0] <= c'9':
        while q < end and c'0' <= q[0] <= c'9':
            d = <uint64_t>(q[0] - c'0')
            if not big:
                if mag > (<uint64_t>0xFFFFFFFFFFFFFFFF - d) // 10:
                    big = True
                else:
                    mag = mag * 10 + d
            q += 1
    else:
        return _fail_at(s, q, "digit expected")
    if q < end and q[0] == c'.':
        q += 1
        if q >= end or not (c'0' <= q[0] <= c'9'):
            return _fail_at(s, q, "digit expected after '.'")
        while q < end and c'0' <= q[0] <= c'9':
            q += 1
        isint = False
    if q < end and (q[0] == c'e' or q[0] == c'E'):
        q += 1
        if q < end and (q[0] == c'+' or q[0] == c'-'):
            q += 1
        if q >= end or not (c'0' <= q[0] <= c'9'):
            return _fail_at(s, q, "digit expected in exponent")
        while q < end and c'0' <= q[0] <= c'9':
            q += 1
        isint = False
    v.p = p
    v.n = q - p
    v.esc = False
    if isint and not big and (mag <= <uint64_t>INT64_MAX or (neg and mag == <uint64_t>INT64_MAX + 1)):
        v.kind = J_INT
        v.i = <int64_t>(<uint64_t>0 - mag) if neg else <int64_t>mag
    else:
        v.kind = J_NUMBER
    return q


cdef const char* _scan_array(Scan* s, const char* p, int depth, JVal* v) noexcept nogil:
    cdef const char* end = s.end
    cdef const char* q
    cdef JVal tmp
    if depth > _MAX_DEPTH:
        return _fail_at(s, p, "nesting deeper than 128")
    q = _ws(p + 1, end)
    if q < end and q[0] == c']':
        q += 1
    else:
        while True:
            q = _scan_value(s, q, depth, 0, &tmp)
            if q == NULL:
                return NULL
            q = _ws(q, end)
            if q >= end:
                return _fail_at(s, q, "',' or ']' expected")
            if q[0] == c',':
                q = _ws(q + 1, end)
                continue
            if q[0] == c']':
                q += 1
                break
            return _fail_at(s, q, "',' or ']' expected")
    v.kind = J_ARRAY
    v.p = p
    v.n = q - p
    v.esc = False
    return q


cdef inline int _field_of(JVal* key, int level) noexcept nogil:
    cdef char buf[_KEY_MAX]
    cdef const char* k = key.p
    cdef Py_ssize_t n = key.n
    if key.esc:
        n = unescape(key.p, key.n, buf, _KEY_MAX)
        if n < 0:
            return -1
        k = buf
    if level == 1:
        if n == 4 and memcmp(k, b"type", 4) == 0:
            return F_TYPE
        if n == 3:
            if memcmp(k, b"sid", 3) == 0:
                return F_SID
            if memcmp(k, b"seq", 3) == 0:
                return F_SEQ
            if memcmp(k, b"msg", 3) == 0:
                return F_MSG
        if n == 13 and memcmp(k, b"sending_ts_ms", 13) == 0:
            return F_SENDING_TS
        return -1
    if n == 13:
        if memcmp(k, b"market_ticker", 13) == 0:
            return F_TICKER
        if memcmp(k, b"price_dollars", 13) == 0:
            return F_PRICE
        if memcmp(k, b"no_dollars_fp", 13) == 0:
            return F_NO
    elif n == 8 and memcmp(k, b"delta_fp", 8) == 0:
        return F_DELTA
    elif n == 4 and memcmp(k, b"side", 4) == 0:
        return F_SIDE
    elif n == 5 and memcmp(k, b"ts_ms", 5) == 0:
        return F_TS_MS
    elif n == 15 and memcmp(k, b"client_order_id", 15) == 0:
        return F_COID
    elif n == 14 and memcmp(k, b"yes_dollars_fp", 14) == 0:
        return F_YES
    return -1


cdef const char* _scan_object(Scan* s, const char* p, int depth, int level, JVal* v) noexcept nogil:
    # level 1: the frame's top object (records type/sid/seq/msg/sending_ts_ms); level 2: msg
    cdef const char* end = s.end
    cdef const char* q
    cdef JVal key, tmp
    cdef int fid, k
    if depth > _MAX_DEPTH:
        return _fail_at(s, p, "nesting deeper than 128")
    q = _ws(p + 1, end)
    if q < end and q[0] == c'}':
        q += 1
    else:
        while True:
            if q >= end or q[0] != c'"':
                return _fail_at(s, q, "string key expected")
            q = _scan_string(s, q, &key)
            if q == NULL:
                return NULL
            q = _ws(q, end)
            if q >= end or q[0] != c':':
                return _fail_at(s, q, "':' expected")
            q = _ws(q + 1, end)
            fid = _field_of(&key, level) if level != 0 else -1
            if fid == F_MSG:
                for k in range(F_TICKER, F_COUNT):  # a repeated "msg" key replaces the earlier one
                    s.f[k].kind = J_NONE
                q = _scan_value(s, q, depth, 2, &s.f[F_MSG])
            elif fid >= 0:
                q = _scan_value(s, q, depth, 0, &s.f[fid])
            else:
                q = _scan_value(s, q, depth, 0, &tmp)
            if q == NULL:
                return NULL
            q = _ws(q, end)
            if q >= end:
                return _fail_at(s, q, "',' or '}' expected")
            if q[0] == c',':
                q = _ws(q + 1, end)
                continue
            if q[0] == c'}':
                q += 1
                break
            return _fail_at(s, q, "',' or '}' expected")
    v.kind = J_OBJECT
    v.p = p
    v.n = q - p
    v.esc = False
    return q


cdef const char* _scan_value(Scan* s, const char* p, int depth, int level, JVal* v) noexcept nogil:
    cdef const char* end = s.end
    cdef char c
    if p >= end:
        return _fail_at(s, p, "value expected")
    c = p[0]
    if c == c'"':
        return _scan_string(s, p, v)
    if c == c'{':
        return _scan_object(s, p, depth + 1, level, v)
    if c == c'[':
        return _scan_array(s, p, depth + 1, v)
    if c == c'-' or (c'0' <= c <= c'9'):
        return _scan_number(s, p, v)
    v.p = p
    v.esc = False
    if c == c't' and end - p >= 4 and memcmp(p, b"true", 4) == 0:
        v.kind = J_TRUE
        v.n = 4
        return p + 4
    if c == c'f' and end - p >= 5 and memcmp(p, b"false", 5) == 0:
        v.kind = J_FALSE
        v.n = 5
        return p + 5
    if c == c'n' and end - p >= 4 and memcmp(p, b"null", 4) == 0:
        v.kind = J_NULL
        v.n = 4
        return p + 4
    return _fail_at(s, p, "value expected")


cdef int scan_frame(Scan* s, const char* p, Py_ssize_t n) noexcept nogil:
    cdef JVal top
    cdef const char* q
    cdef int k
    s.start = p
    s.end = p + n
    s.err = NULL
    s.why = NULL
    for k in range(F_COUNT):
        s.f[k].kind = J_NONE
    q = _ws(p, s.end)
    q = _scan_value(s, q, 0, 1, &top)
    if q == NULL:
        return -1
    q = _ws(q, s.end)
    if q != s.end:
        _fail_at(s, q, "end of frame expected")
        return -1
    return 0


cdef Py_ssize_t unescape(const char* p, Py_ssize_t n, char* out, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t i = 0, o = 0, need
    cdef char c
    cdef unsigned int cp, lo
    while i < n:
        c = p[i]
        if c != c'\\':
            if o >= cap:
                return -1
            out[o] = c
            o += 1
            i += 1
            continue
        c = p[i + 1]
        if c != c'u':
            if o >= cap:
                return -1
            if c == c'b':
                c = 8
            elif c == c'f':
                c = 12
            elif c == c'n':
                c = 10
            elif c == c'r':
                c = 13
            elif c == c't':
                c = 9
            out[o] = c  # '"', '\\' and '/' stand for themselves
            o += 1
            i += 2
            continue
        cp = ((_hex(p[i + 2]) << 12) | (_hex(p[i + 3]) << 8) | (_hex(p[i + 4]) << 4)
              | _hex(p[i + 5]))
        i += 6
        if 0xD800 <= cp <= 0xDBFF:
            if i + 6 > n or p[i] != c'\\' or p[i + 1] != c'u':
                return -1
            lo = ((_hex(p[i + 2]) << 12) | (_hex(p[i + 3]) << 8) | (_hex(p[i + 4]) << 4)
                  | _hex(p[i + 5]))
            if not (0xDC00 <= lo <= 0xDFFF):
                return -1
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            i += 6
        elif 0xDC00 <= cp <= 0xDFFF:
            return -1
        need = 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
        if o + need > cap:
            return -1
        if need == 1:
            out[o] = <char>cp
        elif need == 2:
            out[o] = <char>(0xC0 | (cp >> 6))
            out[o + 1] = <char>(0x80 | (cp & 0x3F))
        elif need == 3:
            out[o] = <char>(0xE0 | (cp >> 12))
            out[o + 1] = <char>(0x80 | ((cp >> 6) & 0x3F))
            out[o + 2] = <char>(0x80 | (cp & 0x3F))
        else:
            out[o] = <char>(0xF0 | (cp >> 18))
            out[o + 1] = <char>(0x80 | ((cp >> 12) & 0x3F))
            out[o + 2] = <char>(0x80 | ((cp >> 6) & 0x3F))
            out[o + 3] = <char>(0x80 | (cp & 0x3F))
        o += need
    return o


cdef inline uint64_t _hash(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL  # FNV-1a
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>p[i]) * 1099511628211ULL
    return h


cdef str _dollars(int64_t v, int scale):
    return f"{v / (10 ** scale):.{scale}f}"


# ---- the router -------------------------------------------------------------------------------

@cython.final
cdef class _Market:
    """One routed market: its book, its freshness and the subscription that feeds it."""

    def __cinit__(self, str ticker, OrderBook book):
        self.ticker = ticker
        self.key = ticker.encode("utf-8")
        self.book = book
        self.stale = True
        self.linked = False
        self.sid = 0


@cython.final
cdef class BookRouter:
    """Routes WebSocket frames to the compiled books of the markets it holds.

    ``feed(frame, recv_ns)`` returns one of NOT_BOOK, SNAPSHOT, DELTA, GAP, STALE_SKIPPED,
    UNKNOWN_MARKET, MALFORMED and leaves the frame's particulars in the ``last_*`` attributes.
    A market starts stale when added and becomes fresh with its first snapshot."""

    def __cinit__(self):
        self._markets = {}
        self._table = NULL
        self._mask = 0
        self._sids = NULL
        self._seqs = NULL
        self._nsid = 0
        self._capsid = 0
        self._buf = NULL
        self._bufcap = 0
        self.last_type = None
        self.last_ticker = None
        self.last_client_order_id = None
        self.last_error = None
        self._rebuild()

    def __dealloc__(self):
        PyMem_Free(self._table)
        PyMem_Free(self._sids)
        PyMem_Free(self._seqs)
        PyMem_Free(self._buf)

    # ---- ticker table and sid table ----

    cdef int _rebuild(self) except -1:
        cdef Py_ssize_t cap = 16, i
        cdef TickerSlot* table
        cdef _Market m
        cdef uint64_t h
        while cap < 2 * len(self._markets) + 2:
            cap *= 2
        table = <TickerSlot*>PyMem_Malloc(cap * sizeof(TickerSlot))
        if table == NULL:
            raise MemoryError()
        memset(table, 0, cap * sizeof(TickerSlot))
        for m in self._markets.values():
            h = _hash(PyBytes_AS_STRING(m.key), PyBytes_GET_SIZE(m.key))
            i = h & (cap - 1)
            while table[i].market != NULL:
                i = (i + 1) & (cap - 1)
            table[i].hash = h
            table[i].key = PyBytes_AS_STRING(m.key)
            table[i].n = PyBytes_GET_SIZE(m.key)
            table[i].market = <PyObject*>m
        PyMem_Free(self._table)
        self._table = table
        self._mask = cap - 1
        return 0

    cdef _Market _lookup(self, const char* key, Py_ssize_t n):
        cdef uint64_t h = _hash(key, n)
        cdef Py_ssize_t i = h & self._mask
        cdef TickerSlot* slot
        while True:
            slot = &self._table[i]
            if slot.market == NULL:
                return None
            if slot.hash == h and slot.n == n and memcmp(slot.key, key, n) == 0:
                return <_Market>slot.market
            i = (i + 1) & self._mask

    cdef int64_t* _seq_find(self, int64_t sid) noexcept:
        cdef Py_ssize_t i
        for i in range(self._nsid):
            if self._sids[i] == sid:
                return &self._seqs[i]
        return NULL

    cdef int _seq_set(self, int64_t sid, int64_t seq) except -1:
        cdef int64_t* slot = self._seq_find(sid)
        cdef int64_t* grown
        if slot != NULL:
            slot[0] = seq
            return 0
        if self._nsid == self._capsid:
            self._capsid = 8 if self._capsid == 0 else 2 * self._capsid
            grown = <int64_t*>PyMem_Realloc(self._sids, self._capsid * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self._sids = grown
            grown = <int64_t*>PyMem_Realloc(self._seqs, self._capsid * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self._seqs = grown
        self._sids[self._nsid] = sid
        self._seqs[self._nsid] = seq
        self._nsid += 1
        return 0

    cdef int _str(self, JVal* v, const char** out, Py_ssize_t* n) except -1:
        cdef Py_ssize_t k
        cdef char* grown
        if not v.esc:
            out[0] = v.p
            n[0] = v.n
            return 0
        if self._bufcap < v.n:
            grown = <char*>PyMem_Realloc(self._buf, v.n + 64)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._bufcap = v.n + 64
        k = unescape(v.p, v.n, self._buf, self._bufcap)
        if k < 0:
            return 1
        out[0] = self._buf
        n[0] = k
        return 0

    cdef int _fail(self, _Market m, str why) except -1:
        self.malformed += 1
        self.last_error = why
        if m is not None:
            m.stale = True
        return FEED_MALFORMED

    # ---- feeding ----

    def feed(self, bytes frame not None, int64_t recv_ns=0):
        """Scan one WebSocket text frame and apply it when it is an order-book message. Returns a
        result code (module constants); the ``last_*`` attributes describe the frame. Never raises
        on frame content."""
        return self._feed(frame, recv_ns)

    cdef int _feed(self, bytes frame, int64_t recv_ns) except -1:
        # feed() for compiled callers (kmm._core.entry): the same, without a Python call
        cdef Scan* s = &self._scan
        cdef JVal* fm
        cdef JVal* ft
        cdef JVal* t
        cdef const char* k
        cdef Py_ssize_t kn
        cdef bint is_delta
        cdef int64_t sid, seq
        cdef int64_t* base
        cdef _Market m = None
        self.frames += 1
        self.last_type = None
        self.last_ticker = None
        self.last_client_order_id = None
        self.last_error = None
        self.last_sid = 0
        self.last_seq = 0
        self.last_ts_ms = 0
        self.last_sending_ts_ms = 0
        self.last_recv_ns = recv_ns
        self.last_other = 0
        if scan_frame(s, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame)) != 0:
            return self._fail(None, f"frame is not valid JSON: {s.why.decode('ascii')} at byte "
                                    f"{s.err - s.start} of {s.end - s.start}")
        t = &s.f[F_TYPE]
        if t.kind != J_STRING or self._str(t, &k, &kn) != 0:
            self.not_book += 1
            return FEED_NOT_BOOK
        if kn == 15 and memcmp(k, b"orderbook_delta", 15) == 0:
            is_delta = True
            self.last_type = _T_DELTA
        elif kn == 18 and memcmp(k, b"orderbook_snapshot", 18) == 0:
            is_delta = False
            self.last_type = _T_SNAPSHOT
        else:
            self.not_book += 1
            if kn == 6 and memcmp(k, b"ticker", 6) == 0:
                self.last_other = OTHER_TICKER
            elif kn == 5 and memcmp(k, b"trade", 5) == 0:
                self.last_other = OTHER_TRADE
            return FEED_NOT_BOOK

        fm = &s.f[F_MSG]
        ft = &s.f[F_TICKER]
        if fm.kind == J_OBJECT and ft.kind == J_STRING:
            if self._str(ft, &k, &kn) != 0:
                return self._fail(None, "msg.market_ticker holds an invalid \\u escape")
            m = self._lookup(k, kn)
            self.last_ticker = m.ticker if m is not None else k[:kn].decode("utf-8")

        if s.f[F_SID].kind != J_INT or s.f[F_SEQ].kind != J_INT:
            return self._fail(m, f"{self.last_type} for {self.last_ticker!r} lacks an integer sid "
                                 "and seq")
        sid = s.f[F_SID].i
        seq = s.f[F_SEQ].i
        self.last_sid = sid
        self.last_seq = seq
        if s.f[F_SENDING_TS].kind == J_INT:
            self.last_sending_ts_ms = s.f[F_SENDING_TS].i
        if is_delta:
            base = self._seq_find(sid)
            if base == NULL:
                self._seq_set(sid, seq)
            else:
                if <uint64_t>seq != <uint64_t>base[0] + 1:
                    base[0] = seq
                    self._mark_sid_stale(sid)
                    self.gaps += 1
                    return FEED_GAP
                base[0] = seq
        else:
            # a snapshot is numbered in the same sequence: a jump means messages of the sid were
            # missed, and the sid's other books may lack deltas (this one is replaced by the snapshot)
            base = self._seq_find(sid)
            if base != NULL and <uint64_t>seq != <uint64_t>base[0] + 1:
                self._mark_sid_stale(sid)
                self.gaps += 1
            self._seq_set(sid, seq)

        if fm.kind != J_OBJECT:
            return self._fail(None, f"{self.last_type} sid={sid} seq={seq}: msg is missing or "
                                    "not an object")
        if ft.kind != J_STRING:
            return self._fail(None, f"{self.last_type} sid={sid} seq={seq}: msg.market_ticker is "
                                    "missing or not a string")
        if m is None:
            self.unknown += 1
            return FEED_UNKNOWN_MARKET
        if is_delta:
            return self._apply_delta(m)
        return self._apply_snapshot(m)

    def note_seq(self, int64_t sid, int64_t seq):
        """A non-book frame of subscription ``sid`` (e.g. an ``ok`` answer) carried ``seq``: if it is
        ahead of the sid's last seq, the sequence moves on to it, so the next book frame is not taken
        for a gap. Nothing happens before the sid's first snapshot or for an older seq."""
        cdef int64_t* base = self._seq_find(sid)
        if base != NULL and seq > base[0]:
            base[0] = seq

    cdef _mark_sid_stale(self, int64_t sid):
        cdef _Market m
        for m in self._markets.values():
            if m.linked and m.sid == sid:
                m.stale = True

    cdef int _apply_delta(self, _Market m) except -1:
        cdef Scan* s = &self._scan
        cdef JVal* v
        cdef const char* k
        cdef Py_ssize_t kn
        cdef int side, status
        cdef int64_t price, delta
        cdef qty_t have
        v = &s.f[F_TS_MS]
        if v.kind == J_INT:
            self.last_ts_ms = v.i
        elif v.kind != J_NONE:
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: ts_ms is not an integer")
        v = &s.f[F_COID]
        if v.kind == J_STRING:
            if self._str(v, &k, &kn) != 0:
                return self._fail(m, f"orderbook_delta for {m.ticker!r}: client_order_id holds an "
                                     "invalid \\u escape")
            self.last_client_order_id = k[:kn].decode("utf-8")
        elif v.kind != J_NONE and v.kind != J_NULL:
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: client_order_id is not a string")
        if m.stale or not m.linked or m.sid != self.last_sid:
            m.stale = True
            self.stale_skipped += 1
            return FEED_STALE_SKIPPED

        v = &s.f[F_SIDE]
        if v.kind != J_STRING or self._str(v, &k, &kn) != 0:
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: side is missing or not a string")
        if kn == 3 and memcmp(k, b"yes", 3) == 0:
            side = 0
        elif kn == 2 and memcmp(k, b"no", 2) == 0:
            side = 1
        else:
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: unknown side "
                                 f"{k[:kn].decode('utf-8')!r} (expected 'yes' or 'no')")
        v = &s.f[F_PRICE]
        if v.kind != J_STRING or self._str(v, &k, &kn) != 0 or parse_fixed(k, kn, 4, False, &price) != 0:
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: {_SIDES[side]} price_dollars "
                                 f"{self._text(v)} is not a dollar string with <= 4 decimals")
        v = &s.f[F_DELTA]
        if v.kind != J_STRING or self._str(v, &k, &kn) != 0 or parse_fixed(k, kn, 2, True, &delta) != 0:
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: {_SIDES[side]} level at price "
                                 f"{_dollars(price, 4)}: delta_fp {self._text(v)} is not a signed "
                                 "count with <= 2 decimals")
        status = m.book._try_level(side, price, delta)
        if status != BOOK_OK:
            if status == BOOK_DESYNC:
                have = m.book.size_at(_SIDES[side], price)
                return self._fail(m, f"orderbook_delta for {m.ticker!r}: {_SIDES[side]} level at "
                                     f"price {_dollars(price, 4)} holds {_dollars(have, 2)}; delta "
                                     f"{_dollars(delta, 2)} would make it negative (desync: a "
                                     "message was missed; book unchanged and marked stale)")
            if status == BOOK_OFF_GRID:
                return self._fail(m, f"orderbook_delta for {m.ticker!r}: {_SIDES[side]} price "
                                     f"{_dollars(price, 4)} (delta {_dollars(delta, 2)}) is off the "
                                     "market's grid or outside (0, 1)")
            return self._fail(m, f"orderbook_delta for {m.ticker!r}: {_SIDES[side]} level at price "
                                 f"{_dollars(price, 4)}: delta {_dollars(delta, 2)} out of range")
        self.deltas += 1
        return FEED_DELTA

    cdef object _text(self, JVal* v):
        """A field's raw JSON text, for error messages."""
        if v.kind == J_NONE:
            return "(missing)"
        if v.kind == J_STRING:
            return repr(v.p[:v.n].decode("utf-8"))
        return (v.p)[:v.n].decode("utf-8")

    cdef int _apply_snapshot(self, _Market m) except -1:
        cdef Scan* s = &self._scan
        cdef JVal* v
        cdef int side
        cdef str err
        m.sid = self.last_sid
        m.linked = True
        for side in range(2):
            v = &s.f[F_YES + side]
            if v.kind != J_NONE and v.kind != J_NULL and v.kind != J_ARRAY:
                return self._fail(m, f"orderbook_snapshot for {m.ticker!r}: "
                                     f"{'yes' if side == 0 else 'no'}_dollars_fp is not an array")
        m.book._stage_begin()
        for side in range(2):
            v = &s.f[F_YES + side]
            if v.kind == J_ARRAY:
                err = self._stage_array(m.book, side, v)
                if err is not None:
                    return self._fail(m, f"orderbook_snapshot for {m.ticker!r}: {err} (book unchanged)")
        m.book._stage_commit()
        m.stale = False
        self.snapshots += 1
        return FEED_SNAPSHOT

    cdef str _stage_array(self, OrderBook book, int side, JVal* v):
        cdef Scan* s = &self._scan
        cdef const char* q = v.p + 1
        cdef const char* end = v.p + v.n - 1   # the closing ']'
        cdef const char* lv
        cdef const char* k
        cdef Py_ssize_t kn
        cdef JVal a, b
        cdef int64_t price, size
        cdef int status
        q = _ws(q, end)
        while q < end:
            lv = q
            if q[0] != c'[':
                return f"{_SIDES[side]} level {self._raw(lv, end)} is not a [price, size] pair"
            q = _ws(q + 1, end)
            if q >= end or q[0] != c'"':
                return f"{_SIDES[side]} level {self._raw(lv, end)} is not a [price, size] pair"
            q = _ws(_scan_string(s, q, &a), end)
            if q >= end or q[0] != c',':
                return f"{_SIDES[side]} level {self._raw(lv, end)} is not a [price, size] pair"
            q = _ws(q + 1, end)
            if q >= end or q[0] != c'"':
                return f"{_SIDES[side]} level {self._raw(lv, end)} is not a [price, size] pair"
            q = _ws(_scan_string(s, q, &b), end)
            if q >= end or q[0] != c']':
                return f"{_SIDES[side]} level {self._raw(lv, end)} is not a [price, size] pair"
            q = _ws(q + 1, end)
            if q < end:
                q = _ws(q + 1, end)  # the ',' between levels (the scan already checked the syntax)
            if self._str(&a, &k, &kn) != 0 or parse_fixed(k, kn, 4, False, &price) != 0:
                return f"{_SIDES[side]} price {self._text(&a)} is not a dollar string with <= 4 decimals"
            if self._str(&b, &k, &kn) != 0 or parse_fixed(k, kn, 2, False, &size) != 0:
                return (f"{_SIDES[side]} level at price {_dollars(price, 4)}: size {self._text(&b)} "
                        "is not a count with <= 2 decimals")
            status = book._stage_level(side, price, size)
            if status != BOOK_OK:
                if status == BOOK_DUPLICATE:
                    return f"{_SIDES[side]} level at price {_dollars(price, 4)} appears twice"
                if status == BOOK_OFF_GRID:
                    return (f"{_SIDES[side]} level at price {_dollars(price, 4)} (size "
                            f"{_dollars(size, 2)}) is off the market's grid or outside (0, 1)")
                return f"{_SIDES[side]} level at price {_dollars(price, 4)}: size {_dollars(size, 2)} out of range"
        return None

    cdef str _raw(self, const char* p, const char* end):
        cdef Py_ssize_t n = end - p
        if n > 40:
            n = 40
        return repr(p[:n].decode("utf-8", "replace"))

    # ---- markets ----

    def add(self, str ticker not None, OrderBook book not None):
        """Route ``ticker``'s frames to ``book`` (replacing any earlier book for it). The market is
        stale until its first snapshot."""
        if not ticker:
            raise ValueError("ticker must be a non-empty string")
        self._markets[ticker] = _Market(ticker, book)
        self._rebuild()

    def regrid(self, str ticker not None, price_ranges):
        """A market's price grid changed (lifecycle ``price_level_structure_updated``): its book
        moves to the new grid (a ``Grid``, ``price_ranges`` or a structure name) in place, emptied,
        and the market is stale until a fresh snapshot lands (deltas meanwhile are STALE_SKIPPED).
        The sid link and seq base are kept, so ``get_snapshot`` on the same subscription refills it.
        KeyError if not routed; ValueError (nothing changed) for bad ranges. Returns the book."""
        cdef _Market m = self._get(ticker)
        m.book.regrid(price_ranges)
        m.stale = True
        return m.book

    def remove(self, str ticker not None):
        """Stop routing ``ticker`` (KeyError if it was not added)."""
        if ticker not in self._markets:
            raise KeyError(f"ticker {ticker!r} is not routed")
        del self._markets[ticker]
        self._rebuild()

    cdef _Market _get(self, str ticker):
        cdef _Market m = self._markets.get(ticker)
        if m is None:
            raise KeyError(f"ticker {ticker!r} is not routed; add() it first")
        return m

    def book(self, str ticker not None):
        """The OrderBook of ``ticker`` (KeyError if not added)."""
        return self._get(ticker).book

    def tickers(self):
        """The routed tickers, in the order they were added."""
        return list(self._markets)

    def __len__(self):
        return len(self._markets)

    def __contains__(self, ticker):
        return ticker in self._markets

    # ---- freshness and subscriptions ----

    def is_stale(self, str ticker not None):
        """True when ``ticker``'s book must not be trusted: no snapshot yet, or a gap, desync,
        malformed message or mark_stale since its last snapshot."""
        return self._get(ticker).stale

    def stale_tickers(self):
        """The routed tickers that are stale, in the order they were added."""
        cdef _Market m
        return [m.ticker for m in self._markets.values() if m.stale]

    def mark_stale(self, str ticker not None):
        """Mark one market stale: deltas are skipped until its next snapshot."""
        self._get(ticker).stale = True

    def mark_all_stale(self):
        """Mark every market stale (e.g. the socket dropped); seq bases are kept."""
        cdef _Market m
        for m in self._markets.values():
            m.stale = True

    def sid_of(self, str ticker not None):
        """The subscription id whose snapshot last fed ``ticker``, or None."""
        cdef _Market m = self._get(ticker)
        return m.sid if m.linked else None

    def last_seq_of(self, int64_t sid):
        """The last seq seen on ``sid``, or None when the sid has no base."""
        cdef int64_t* slot = self._seq_find(sid)
        return None if slot == NULL else slot[0]

    def forget_sid(self, int64_t sid):
        """Drop ``sid`` (unsubscribed): its seq base is forgotten and its markets become stale and
        unlinked."""
        cdef Py_ssize_t i
        cdef _Market m
        for i in range(self._nsid):
            if self._sids[i] == sid:
                self._sids[i] = self._sids[self._nsid - 1]
                self._seqs[i] = self._seqs[self._nsid - 1]
                self._nsid -= 1
                break
        for m in self._markets.values():
            if m.linked and m.sid == sid:
                m.stale = True
                m.linked = False

    def reset(self):
        """Forget every sid and mark every market stale and unlinked (call on reconnect)."""
        cdef _Market m
        self._nsid = 0
        for m in self._markets.values():
            m.stale = True
            m.linked = False

    def counters(self):
        """The frame counters as a dict."""
        return {"frames": self.frames, "snapshots": self.snapshots, "deltas": self.deltas,
                "gaps": self.gaps, "stale_skipped": self.stale_skipped,
                "malformed": self.malformed, "unknown": self.unknown, "not_book": self.not_book}


def scan_fields(bytes frame not None):
    """Debug/test helper: scan ``frame`` and return {field: (kind, raw_text)} for the fields the
    router reads, or raise ValueError naming where the JSON is invalid."""
    cdef Scan s
    cdef int k
    names = ("type", "sid", "seq", "msg", "sending_ts_ms", "market_ticker", "price_dollars",
             "delta_fp", "side", "ts_ms", "client_order_id", "yes_dollars_fp", "no_dollars_fp")
    if scan_frame(&s, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame)) != 0:
        raise ValueError(f"not valid JSON: {s.why.decode('ascii')} at byte {s.err - s.start}")
    out = {}
    for k in range(F_COUNT):
        if s.f[k].kind != J_NONE:
            out[names[k]] = (s.f[k].kind, s.f[k].p[:s.f[k].n])
    return out
