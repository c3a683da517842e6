# WebSocket frame bytes -> compiled books (kalshi-api.md section 3.5), with no Python object per level.
cimport cython
from libc.stdint cimport int64_t, uint64_t
from cpython.object cimport PyObject
from kmm._core.book cimport OrderBook

# What feed() found (also exported to Python as module constants of the same names).
cdef enum FeedResult:
    FEED_NOT_BOOK = 0        # valid JSON but not an orderbook_snapshot/orderbook_delta: decode it elsewhere
    FEED_SNAPSHOT = 1        # snapshot applied, ticker fresh
    FEED_DELTA = 2           # delta applied
    FEED_GAP = 3             # seq skipped on the sid: its books are marked stale, nothing applied
    FEED_STALE_SKIPPED = 4   # delta for a stale book (waiting for a snapshot): not applied
    FEED_UNKNOWN_MARKET = 5  # book frame for a ticker that was never add()ed
    FEED_MALFORMED = 6       # unparseable frame or field, bad level, or desync: see last_error

# BookRouter.last_other: the type of a NOT_BOOK frame the compiled entry may leave unread
# (kmm._core.entry.FrameEntry.ignore); also exported to Python.
cdef enum OtherType:
    OTHER_TICKER = 1
    OTHER_TRADE = 2

# Kinds of JSON value the scanner records.
cdef enum JKind:
    J_NONE = 0     # key absent
    J_STRING = 1
    J_INT = 2      # integer that fits int64
    J_NUMBER = 3   # any other number (fraction, exponent, or outside int64)
    J_OBJECT = 4
    J_ARRAY = 5
    J_TRUE = 6
    J_FALSE = 7
    J_NULL = 8

# One recorded value: a span of the frame, never a copy.
cdef struct JVal:
    int kind
    const char* p    # string: first byte after the opening quote; object/array: the opening bracket
    Py_ssize_t n     # string: raw byte length between the quotes; object/array: length with brackets
    bint esc         # string holds backslash escapes (decode before use)
    int64_t i        # value of a J_INT

# The fields the router reads: top level, then inside "msg".
cdef enum:  # Field
    F_TYPE = 0
    F_SID
    F_SEQ
    F_MSG
    F_SENDING_TS
    F_TICKER       # msg.market_ticker
    F_PRICE        # msg.price_dollars
    F_DELTA        # msg.delta_fp
    F_SIDE         # msg.side
    F_TS_MS        # msg.ts_ms
    F_COID         # msg.client_order_id
    F_YES          # msg.yes_dollars_fp
    F_NO           # msg.no_dollars_fp
    F_COUNT

# One scan of one frame.
cdef struct Scan:
    const char* start
    const char* end
    const char* err     # where scanning failed (NULL while fine)
    const char* why     # static text saying what was expected there
    JVal f[13]          # indexed by Field (F_COUNT entries)

# A slot of the router's open-addressing ticker table.
cdef struct TickerSlot:
    uint64_t hash
    const char* key      # UTF-8 bytes of the ticker, owned by the _Market's bytes object
    Py_ssize_t n
    PyObject* market     # borrowed: BookRouter._markets owns the _Market


# Scan one whole frame (whitespace, one JSON value, whitespace) into s.f. Returns 0 when the frame is
# valid JSON, -1 otherwise (s.err / s.why say where and what).
cdef int scan_frame(Scan* s, const char* p, Py_ssize_t n) noexcept nogil

# Decode a JSON string body (no quotes) with escapes into UTF-8; returns the length, or -1 when the
# output would exceed cap or an escape is invalid (a lone surrogate).
cdef Py_ssize_t unescape(const char* p, Py_ssize_t n, char* out, Py_ssize_t cap) noexcept nogil


@cython.final
cdef class _Market:
    cdef readonly str ticker
    cdef bytes key              # ticker as UTF-8, the hash-table key
    cdef readonly OrderBook book
    cdef bint stale             # True until a snapshot lands, and after a gap/desync/mark_stale
    cdef bint linked            # a snapshot tied this ticker to `sid`
    cdef int64_t sid


@cython.final
cdef class BookRouter:
    cdef dict _markets                 # ticker str -> _Market (owner)
    cdef TickerSlot* _table            # open addressing over _markets, capacity _mask + 1
    cdef Py_ssize_t _mask
    cdef int64_t* _sids                # subscriptions seen: sid -> last seq, parallel arrays
    cdef int64_t* _seqs
    cdef Py_ssize_t _nsid, _capsid
    cdef char* _buf                    # scratch for decoding escaped strings
    cdef Py_ssize_t _bufcap
    cdef Scan _scan

    cdef readonly object last_type              # "orderbook_snapshot" | "orderbook_delta" | None
    cdef readonly object last_ticker            # str or None
    cdef readonly int64_t last_sid              # 0 when absent
    cdef readonly int64_t last_seq              # 0 when absent
    cdef readonly int64_t last_ts_ms            # msg.ts_ms of a delta, ms; 0 when absent
    cdef readonly int64_t last_sending_ts_ms    # top-level sending_ts_ms, ms; 0 when absent
    cdef readonly object last_client_order_id   # str or None
    cdef readonly object last_error             # str or None
    cdef readonly int64_t last_recv_ns          # the recv_ns given to feed(), ns

    cdef readonly uint64_t frames, snapshots, deltas, gaps, stale_skipped, malformed, unknown
    cdef readonly uint64_t not_book
    cdef readonly int last_other                # a NOT_BOOK frame's type: OTHER_TICKER, OTHER_TRADE, else 0

    # feed() for compiled callers: a FeedResult (frame must not be None)
    cdef int _feed(self, bytes frame, int64_t recv_ns) except -1
    cdef int _rebuild(self) except -1
    cdef _Market _lookup(self, const char* key, Py_ssize_t n)
    # The last seq seen on a sid (pointer into _seqs), NULL when the sid has no base yet.
    cdef int64_t* _seq_find(self, int64_t sid) noexcept
    cdef int _seq_set(self, int64_t sid, int64_t seq) except -1
    # A J_STRING's bytes, decoded into the scratch buffer when escaped: 0 ok, 1 undecodable escape.
    cdef int _str(self, JVal* v, const char** out, Py_ssize_t* n) except -1
    # Count a MALFORMED frame: last_error = why, and mark the market stale (m may be None).
    cdef int _fail(self, _Market m, str why) except -1
    # The two book paths of feed(), once the frame is scanned and the market found; return a FeedResult.
    cdef int _apply_snapshot(self, _Market m) except -1
    cdef int _apply_delta(self, _Market m) except -1
    # Parse one snapshot side's [[price, size], ...] span into the book's staging arrays; None when
    # fine, else the error text.
    cdef str _stage_array(self, OrderBook book, int side, JVal* v)
    cdef _mark_sid_stale(self, int64_t sid)          # every market linked to sid becomes stale
    cdef _Market _get(self, str ticker)              # KeyError naming the ticker when not routed
    cdef object _text(self, JVal* v)                 # a field's raw text, for error messages
    cdef str _raw(self, const char* p, const char* end)
