# A pre-made signature pair's store (issue 15's request path): the signatures a signer made for one
# (method, path), oldest first, each kept as the two header lines a request carries, in C memory. The
# connector's compiled quote path (kmm._core.quotewire) copies a signature's lines into the request with
# no Python object touched; the signature pool (kmm.kalshi.signing.SignaturePool) uses it as the deque
# it replaces: append((made_ns, headers)), popleft(), [0], len(), clear().
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t
from libc.string cimport memcpy

# kmm.protocol's header names (this package imports nothing from the rest of kmm; tests/core hold them equal)
HDR_KEY = "KALSHI-ACCESS-KEY"
HDR_TIMESTAMP = "KALSHI-ACCESS-TIMESTAMP"
HDR_SIGNATURE = "KALSHI-ACCESS-SIGNATURE"
cdef bytes TS_HEAD = b"KALSHI-ACCESS-TIMESTAMP: "
cdef bytes SIG_HEAD = b"\r\nKALSHI-ACCESS-SIGNATURE: "


cdef inline int _ascii_value(const char* s, Py_ssize_t n) noexcept:
    """1 when ``s`` may stand in a header line as it is: printable ASCII, no CR or LF."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = <unsigned char>s[i]
        if c < 32 or c > 126:
            return 0
    return 1


cdef class PoolStats:
    """The signature pool's counters (kmm.kalshi.signing.SignaturePool.stats). Each is written by one
    thread only (the caller's or the worker's); a compiled take counts ``hits`` and ``expired`` here
    from C (the rings share their pool's)."""

    def __init__(self):
        self.miss_kinds = {}

    @property
    def discards(self):
        """Signatures made and never used because they grew old."""
        return self.expired + self.refreshed

    @property
    def fallbacks(self):
        """Requests signed inline on the caller's thread (the loop's, on the order path)."""
        return self.misses + self.unpooled

    @property
    def write_fallbacks(self):
        """Writes (creates, amends, decreases, cancels) signed inline on the caller's thread: the
        figure that is 0 in steady state (reads are signed inline by design)."""
        return self.misses + self.unpooled - self.unpooled_reads

    def __repr__(self):
        return (f"PoolStats(hits={self.hits}, misses={self.misses}, expired={self.expired}, "
                f"refreshed={self.refreshed}, made={self.made}, unpooled={self.unpooled}, skipped={self.skipped}, "
                f"miss_kinds={self.miss_kinds!r}, waited={self.waited}, wait_timeouts={self.wait_timeouts}, "
                f"unpooled_reads={self.unpooled_reads})")


cdef class SigRing:
    """The signatures of one (method, path), oldest first. Each is stored as its request's header
    lines, ``KALSHI-ACCESS-TIMESTAMP: <ts>\\r\\nKALSHI-ACCESS-SIGNATURE: <sig>\\r\\n``, with the
    monotonic time it was made. ``kid``: the key id the headers view adds back (when the headers
    appended had it). ``stats``: the pool's counters, where :meth:`take_line` (the compiled take)
    counts its hits and the signatures it found expired; ``takes``: the compiled takes since the pool
    last read them (a fixed pair's take rate). ``kicked`` / ``noted``: the pool's flags (a top-up asked
    since the pool last looked at the pair; the pair's first take noted)."""

    def __cinit__(self):
        self.cap = 4
        self.buf = <_Sig*>PyMem_Malloc(self.cap * sizeof(_Sig))
        if self.buf == NULL:
            raise MemoryError()
        self.head = 0
        self.size = 0

    def __init__(self, kid=None, PoolStats stats=None):
        self.kid = kid
        self.stats = stats if stats is not None else PoolStats()

    def __dealloc__(self):
        self._clear()
        PyMem_Free(self.buf)

    cdef void _clear(self) noexcept:
        while self.size:
            PyMem_Free(self.buf[self.head].line)
            self.head = (self.head + 1) % self.cap
            self.size -= 1
        self.head = 0

    cdef int _grow(self) except -1:
        cdef Py_ssize_t i, cap = self.cap * 2
        cdef _Sig* nb = <_Sig*>PyMem_Malloc(cap * sizeof(_Sig))
        if nb == NULL:
            raise MemoryError()
        for i in range(self.size):
            nb[i] = self.buf[(self.head + i) % self.cap]
        PyMem_Free(self.buf)
        self.buf, self.cap, self.head = nb, cap, 0
        return 0

    cpdef push(self, int64_t made_ns, str ts, str sig, bint with_key=True):
        """Append one signature made at ``made_ns`` (monotonic) with its timestamp and signature text
        (printable ASCII, as Kalshi's are). ``with_key``: the headers view names the key id too."""
        cdef Py_ssize_t nt, ns, n
        cdef const char* t = PyUnicode_AsUTF8AndSize(ts, &nt)
        cdef const char* s = PyUnicode_AsUTF8AndSize(sig, &ns)
        cdef char* line
        cdef _Sig* e
        if not _ascii_value(t, nt) or not _ascii_value(s, ns):
            raise ValueError("a signature's timestamp and text must be printable ASCII")
        if self.size == self.cap:
            self._grow()
        n = len(TS_HEAD) + nt + len(SIG_HEAD) + ns + 2
        line = <char*>PyMem_Malloc(n)
        if line == NULL:
            raise MemoryError()
        memcpy(line, <char*>TS_HEAD, len(TS_HEAD))
        memcpy(line + len(TS_HEAD), t, nt)
        memcpy(line + len(TS_HEAD) + nt, <char*>SIG_HEAD, len(SIG_HEAD))
        memcpy(line + len(TS_HEAD) + nt + len(SIG_HEAD), s, ns)
        line[n - 2] = 13
        line[n - 1] = 10
        e = &self.buf[(self.head + self.size) % self.cap]
        e.made_ns, e.line, e.n, e.ts_n, e.sig_n, e.with_key = made_ns, line, n, nt, ns, with_key
        self.size += 1

    def append(self, item):
        """``(made_ns, headers)``, as the pool's deque took it: headers hold the timestamp and the
        signature, and may hold the key id (nothing else)."""
        made_ns, headers = item
        for k in headers:
            if k != HDR_KEY and k != HDR_TIMESTAMP and k != HDR_SIGNATURE:
                raise ValueError(f"a pooled signature's headers hold only the key id, timestamp and "
                                 f"signature, not {k!r}")
        self.push(made_ns, headers[HDR_TIMESTAMP], headers[HDR_SIGNATURE], HDR_KEY in headers)

    cdef object _view(self, _Sig* e):
        cdef Py_ssize_t at = len(TS_HEAD)
        ts = e.line[at:at + e.ts_n].decode("ascii")
        at += e.ts_n + len(SIG_HEAD)
        sig = e.line[at:at + e.sig_n].decode("ascii")
        if e.with_key:
            return e.made_ns, {HDR_KEY: self.kid, HDR_TIMESTAMP: ts, HDR_SIGNATURE: sig}
        return e.made_ns, {HDR_TIMESTAMP: ts, HDR_SIGNATURE: sig}

    def popleft(self):
        """The oldest ``(made_ns, headers)``, removed (IndexError when empty)."""
        cdef _Sig* e
        if not self.size:
            raise IndexError("pop from an empty SigRing")
        e = &self.buf[self.head]
        out = self._view(e)
        PyMem_Free(e.line)
        self.head = (self.head + 1) % self.cap
        self.size -= 1
        return out

    def __getitem__(self, Py_ssize_t i):
        """``[0]``: the oldest, ``[-1]``: the newest (as a deque's ends)."""
        if i < 0:
            i += self.size
        if i < 0 or i >= self.size:
            raise IndexError("SigRing index out of range")
        return self._view(&self.buf[(self.head + i) % self.cap])

    def __len__(self):
        return self.size

    def clear(self):
        self._clear()

    cdef bint fresh(self, int64_t now_ns, int64_t max_age_ns) noexcept:
        """Drop the signatures older than ``max_age_ns`` from the front (counted in ``expired``); 1 when
        one is left."""
        cdef _Sig* e
        while self.size:
            e = &self.buf[self.head]
            if now_ns - e.made_ns <= max_age_ns:
                return 1
            PyMem_Free(e.line)
            self.head = (self.head + 1) % self.cap
            self.size -= 1
            self.stats.expired += 1
        return 0

    cdef Py_ssize_t take_line(self, int64_t now_ns, int64_t max_age_ns, char* out, Py_ssize_t room) noexcept:
        """The oldest fresh signature's header lines copied to ``out`` and removed: their length, 0 when
        none is fresh (the stale ones dropped), -1 when they do not fit in ``room`` (nothing removed)."""
        cdef _Sig* e
        cdef Py_ssize_t n
        if not self.fresh(now_ns, max_age_ns):
            return 0
        e = &self.buf[self.head]
        n = e.n
        if n > room:
            return -1
        memcpy(out, e.line, n)
        PyMem_Free(e.line)
        self.head = (self.head + 1) % self.cap
        self.size -= 1
        self.stats.hits += 1
        self.takes += 1
        return n

    def take_lines(self, int64_t now_ns, int64_t max_age_ns):
        """:meth:`take_line` for Python (tests): the lines as bytes, or None when none is fresh."""
        cdef char out[4096]
        cdef Py_ssize_t n = self.take_line(now_ns, max_age_ns, out, 4096)
        if n <= 0:
            return None
        return PyBytes_FromStringAndSize(out, n)
