# Our own order updates and fills (WebSocket ``user_order`` and ``fill``), decoded in C (issue 15).
#
# Every read that carries one of our order updates or fills decodes it before the read's book decision
# is made, and the Python decoders in kmm.kalshi.decode cost 5-14 us per message in situ (a helper call
# per field, each looking the field up under several names). Kalshi (and kmm sim) send one shape: the
# current field names, strings where the protocol says strings, integers where it says integers. This
# module reads exactly that shape with dict lookups and the compiled fixed-point parser, and builds the
# same record. Anything else (a legacy field name, a value of another JSON type, an out-of-range or
# malformed value, a missing field) is not judged here: the message goes to the Python decoder, which
# either reads it (legacy names, defaults) or raises its WireError naming the field. So the result is
# always the Python decoder's, which tests/kalshi/test_userdecode.py checks on generated messages of
# both kinds; ``fallbacks`` counts the messages handed over (0 on the sim's and Kalshi's messages).
cimport cython
from cpython.dict cimport PyDict_GetItem, PyDict_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from libc.stdint cimport int64_t

from kmm._core.fixed cimport parse_fixed

cdef extern from "Python.h":
    # declared here without an exception value: a string the UTF-8 codec refuses (a lone surrogate)
    # is handed to the Python decoder, which reports it as a WireError
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size)
    void PyErr_Clear()
    int PyObject_GenericSetAttr(object o, object name, object value) except -1
    bint PyUnicode_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)

# the limits kmm.kalshi.decode applies (kept equal by the tests: they import both)
cdef Py_ssize_t MAX_ID_LEN = 256
cdef int64_t MAX_TS_MS = 2 ** 53
cdef int64_t MAX_EXCHANGE_INDEX = 1023
cdef int64_t MAX_SUBACCOUNT = 2 ** 31
cdef int64_t ONE_DOLLAR = 10_000

cdef str RESTING = "resting"
cdef str CANCELED = "canceled"
cdef str EXECUTED = "executed"
cdef str BID = "bid"
cdef str ASK = "ask"

# the records and the Python decoders (bound by kmm.kalshi.decode at import: _core does not import kmm.kalshi)
cdef object _UserOrder = None
cdef object _Fill = None
cdef object _py_user_order = None
cdef object _py_fill = None

cdef unsigned long long _fast_uo = 0
cdef unsigned long long _fast_fill = 0
cdef unsigned long long _fallbacks = 0


cdef tuple _UO_FIELDS = ()
cdef tuple _FILL_FIELDS = ()


def bind(user_order_cls, fill_cls, py_user_order, py_fill):
    """The record classes and the Python decoders this module hands unusual messages to. The records
    are frozen slotted dataclasses; their fields, in order, are read here once, and a record is made
    the way their own ``__init__`` makes it (each field set with ``object.__setattr__``), in C: the
    generated ``__init__`` alone costs 1.5 us for a user_order."""
    global _UserOrder, _Fill, _py_user_order, _py_fill, _UO_FIELDS, _FILL_FIELDS
    import dataclasses
    for cls in (user_order_cls, fill_cls):
        if not (dataclasses.is_dataclass(cls) and "__slots__" in cls.__dict__ and cls.__dataclass_params__.frozen
                and not hasattr(cls, "__post_init__")):
            raise TypeError(f"{cls.__name__}: a frozen slotted dataclass without __post_init__ is expected")
    _UO_FIELDS = tuple(f.name for f in dataclasses.fields(user_order_cls))
    _FILL_FIELDS = tuple(f.name for f in dataclasses.fields(fill_cls))
    if len(_UO_FIELDS) != 18 or len(_FILL_FIELDS) != 13:
        raise TypeError("the UserOrder / Fill records changed: kmm._core.userdecode reads 18 / 13 fields")
    _UserOrder, _Fill, _py_user_order, _py_fill = user_order_cls, fill_cls, py_user_order, py_fill


cdef object _record(object cls, tuple names, tuple values):
    """``cls(*values)`` for a frozen slotted dataclass (see :func:`bind`)."""
    cdef object obj = object.__new__(cls)
    cdef Py_ssize_t i
    for i in range(len(names)):
        PyObject_GenericSetAttr(obj, names[i], values[i])
    return obj


def counts():
    """(user_order messages read here, fills read here, messages handed to the Python decoder)."""
    return _fast_uo, _fast_fill, _fallbacks


# ---- field readers: 1 read (the value in *out), 0 absent or null, -1 not this module's shape
cdef inline object _get(dict d, str key):
    cdef PyObject* p = PyDict_GetItem(d, key)
    if p == NULL:
        return None
    return <object>p


cdef inline int _fixed(object v, int scale, bint signed, int64_t* out):
    """A fixed-point string (the wire's dollar and _fp strings)."""
    cdef const char* s
    cdef Py_ssize_t n
    if v is None:
        return 0
    if not PyUnicode_CheckExact(v):
        return -1
    s = PyUnicode_AsUTF8AndSize(v, &n)
    if s == NULL:
        PyErr_Clear()
        return -1
    if parse_fixed(s, n, scale, signed, out) != 0:
        return -1
    return 1


cdef inline int _int_in(object v, int64_t lo, int64_t hi, int64_t* out):
    """A JSON integer in [lo, hi] (a bool is not one: PyLong_CheckExact refuses it)."""
    cdef int overflow = 0
    cdef long long x
    if v is None:
        return 0
    if not PyLong_CheckExact(v):
        return -1
    x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow != 0 or x < lo or x > hi:
        return -1
    out[0] = x
    return 1


cdef inline bint _is_id(object v):
    """A required id: a non-empty string of at most MAX_ID_LEN characters."""
    return v is not None and PyUnicode_CheckExact(v) and 0 < PyUnicode_GET_LENGTH(v) <= MAX_ID_LEN


cdef object _BAD = object()     # what the two readers below return for a value not of this module's shape


cdef inline object _opt_id(object v):
    """An optional id: absent, null or "" -> None."""
    if v is None:
        return None
    if not PyUnicode_CheckExact(v) or PyUnicode_GET_LENGTH(v) > MAX_ID_LEN:
        return _BAD
    return None if PyUnicode_GET_LENGTH(v) == 0 else v


cdef inline object _side(dict msg):
    """``book_side`` when it is "bid" or "ask"; None: any other case (legacy fields, a bad value)."""
    v = _get(msg, "book_side")
    if v is None or not PyUnicode_CheckExact(v):
        return None
    if v == BID:
        return BID
    if v == ASK:
        return ASK
    return None


cdef inline int _fee(object v, int64_t* out):
    """A non-negative dollar string; absent or null: 0."""
    cdef int r = _fixed(v, 4, True, out)
    if r == 0:
        out[0] = 0
        return 1
    if r < 0 or out[0] < 0:
        return -1
    return 1


cdef inline int _ts(object v, int64_t* out):
    """A time in ms inside [0, MAX_TS_MS]; absent or null: 0."""
    cdef int r = _int_in(v, 0, MAX_TS_MS, out)
    if r == 0:
        out[0] = 0
        return 1
    return r


cdef inline object _opt_int(object v, int64_t lo, int64_t hi):
    """An optional integer in [lo, hi]: absent or null -> None."""
    cdef int64_t x
    cdef int r = _int_in(v, lo, hi, &x)
    if r < 0:
        return _BAD
    return None if r == 0 else v


cdef object _read_user_order(dict msg, object recv_ns):
    cdef int64_t initial, filled, remaining, price, taker, maker, created, updated
    cdef object coid, group, reason, shard, sub
    status = _get(msg, "status")
    if status is None or not PyUnicode_CheckExact(status):
        return None
    if status == RESTING:
        status = RESTING
    elif status == CANCELED:
        status = CANCELED
    elif status == EXECUTED:
        status = EXECUTED
    else:
        return None
    # the count fields under their current names; the legacy names and the default are Python's
    if _fixed(_get(msg, "initial_count_fp"), 2, False, &initial) != 1:
        return None
    if _fixed(_get(msg, "fill_count_fp"), 2, False, &filled) != 1:
        return None
    if _fixed(_get(msg, "remaining_count_fp"), 2, False, &remaining) != 1:
        return None
    order_id = _get(msg, "order_id")
    if not _is_id(order_id):
        return None
    coid = _opt_id(_get(msg, "client_order_id"))
    if coid is _BAD:
        return None
    ticker = _get(msg, "ticker")
    if not _is_id(ticker):
        return None
    side = _side(msg)
    if side is None:
        return None
    if _fixed(_get(msg, "yes_price_dollars"), 4, False, &price) != 1 or not 0 < price < ONE_DOLLAR:
        return None
    if _fee(_get(msg, "taker_fees_dollars"), &taker) < 0 or _fee(_get(msg, "maker_fees_dollars"), &maker) < 0:
        return None
    group = _opt_id(_get(msg, "order_group_id"))
    if group is _BAD:
        return None
    if _ts(_get(msg, "created_ts_ms"), &created) < 0 or _ts(_get(msg, "last_updated_ts_ms"), &updated) < 0:
        return None
    shard = _opt_int(_get(msg, "exchange_index"), 0, MAX_EXCHANGE_INDEX)
    if shard is _BAD:
        return None
    reason = _opt_id(_get(msg, "last_update_reason"))
    if reason is _BAD:
        return None
    v = _get(msg, "subaccount_number")
    if v is None:
        v = _get(msg, "subaccount")
    sub = _opt_int(v, 0, MAX_SUBACCOUNT)
    if sub is _BAD:
        return None
    return _record(_UserOrder, _UO_FIELDS, (order_id, coid, ticker, status, side, price, initial, filled,
                                            remaining, taker, maker, group, created, updated, recv_ns, shard,
                                            reason, sub))


cdef object _read_fill(dict msg, object recv_ns):
    cdef int64_t price, count, fee, post, ts
    cdef object coid, shard, post_position = None
    cdef int r
    trade_id = _get(msg, "trade_id")
    if not _is_id(trade_id):
        return None
    order_id = _get(msg, "order_id")
    if not _is_id(order_id):
        return None
    coid = _opt_id(_get(msg, "client_order_id"))
    if coid is _BAD:
        return None
    ticker = _get(msg, "market_ticker")
    if not _is_id(ticker):
        return None
    side = _side(msg)
    if side is None:
        return None
    if _fixed(_get(msg, "yes_price_dollars"), 4, False, &price) != 1 or not 0 < price < ONE_DOLLAR:
        return None
    if _fixed(_get(msg, "count_fp"), 2, False, &count) != 1 or count <= 0:
        return None
    v = _get(msg, "fee_cost")
    if v is None:
        v = _get(msg, "fee_cost_dollars")
        if v is None:
            v = _get(msg, "fees_dollars")
    if _fee(v, &fee) < 0:
        return None
    v = _get(msg, "is_taker")
    if v is None:
        taker = False
    elif v is True or v is False:
        taker = v
    else:
        return None
    r = _fixed(_get(msg, "post_position_fp"), 2, True, &post)
    if r < 0:
        return None
    if r == 1:
        post_position = post
    # ts_ms; its absence (the legacy "ts", created_time_ms) is Python's
    if _int_in(_get(msg, "ts_ms"), 0, MAX_TS_MS, &ts) != 1:
        return None
    if ts == 0:
        return None           # Python then reads created_time_ms
    shard = _opt_int(_get(msg, "exchange_index"), 0, MAX_EXCHANGE_INDEX)
    if shard is _BAD:
        return None
    return _record(_Fill, _FILL_FIELDS, (trade_id, order_id, coid, ticker, side, price, count, fee, taker,
                                         post_position, ts, recv_ns, shard))


def decode_user_order(msg, recv_ns=0):
    """``kmm.kalshi.decode.decode_user_order``: the same record, or the same WireError."""
    global _fast_uo, _fallbacks
    if PyDict_CheckExact(msg):
        o = _read_user_order(<dict>msg, recv_ns)
        if o is not None:
            _fast_uo += 1
            return o
    _fallbacks += 1
    return _py_user_order(msg, recv_ns)


def decode_fill(msg, recv_ns=0):
    """``kmm.kalshi.decode.decode_fill``: the same record, or the same WireError."""
    global _fast_fill, _fallbacks
    if PyDict_CheckExact(msg):
        f = _read_fill(<dict>msg, recv_ns)
        if f is not None:
            _fast_fill += 1
            return f
    _fallbacks += 1
    return _py_fill(msg, recv_ns)
