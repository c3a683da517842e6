from libc.stdint cimport int64_t

cdef struct _Sig:
    int64_t made_ns
    char* line              # the two header lines, malloc'd
    Py_ssize_t n            # their length
    Py_ssize_t ts_n         # the timestamp's length (it starts after "KALSHI-ACCESS-TIMESTAMP: ")
    Py_ssize_t sig_n        # the signature's length
    bint with_key           # the headers appended named the key id


cdef class PoolStats:
    cdef public long long hits, misses, expired, refreshed, made, unpooled, skipped, waited, wait_timeouts
    cdef public long long unpooled_reads
    cdef public dict miss_kinds


cdef class SigRing:
    cdef _Sig* buf
    cdef Py_ssize_t cap, head, size
    cdef public object kid
    cdef public PoolStats stats
    cdef public bint kicked, noted
    cdef public long long takes
    cdef void _clear(self) noexcept
    cdef int _grow(self) except -1
    cpdef push(self, int64_t made_ns, str ts, str sig, bint with_key=*)
    cdef object _view(self, _Sig* e)
    cdef bint fresh(self, int64_t now_ns, int64_t max_age_ns) noexcept
    cdef Py_ssize_t take_line(self, int64_t now_ns, int64_t max_age_ns, char* out, Py_ssize_t room) noexcept
