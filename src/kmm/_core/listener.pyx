# The compiled WebSocket listener (issue 15): picows hands every frame of a socket read to
# ``on_ws_frame``; a cdef subclass of picows' WSListener overriding that cpdef method is called through
# the C vtable, so a text frame goes from picows' parser to the client's frame entry (kmm._core.entry)
# without a Python frame, without the msg_type enum object and without the property calls the Python
# listener (kmm.kalshi.ws._Listener) makes. It does exactly what that listener does (the two are kept
# equal by tests/kalshi/test_ws_frames.py): the read's receive stamp (taken at its first frame, shared
# by the frames after it), the former read ended when a new one begins, complete text frames fed with
# their ``last_in_buffer`` flag; every other frame (fragments, pings, pongs, close) goes to the
# client's Python path (KalshiWs._other_frame), which is where the Python listener sends it too.
#
# Binary compatibility: this module is compiled against picows' own declarations (picows.pxd), so the
# picows it runs with must be the one it was built with; pyproject.toml pins the same version for the
# build and for the install. A picows whose types differ makes the import fail (Cython checks the
# type sizes), and kmm.kalshi.ws then takes the Python listener and says so in the log.
cimport cython
from libc.stdint cimport int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from picows.picows cimport WSListener, WSFrame, WSTransport, WSMsgType

import time


cdef inline int64_t _mono() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


@cython.final
cdef class FeedListener(WSListener):
    """picows listener of one :class:`kmm.kalshi.ws.KalshiWs` connection, compiled.

    ``client._feed(data, recv_ns, last)`` takes each complete text (or binary) frame; the client's
    ``_other_frame(transport, frame, recv_ns, last)`` takes every other frame. The receive stamp is
    the client's clock (``time.monotonic_ns`` read in C when the client uses it, else the client's
    own clock function, for tests)."""
    cdef readonly object client
    cdef readonly int64_t _read_ns       # receive stamp of the read whose frames are being handed over
    cdef public bint _read_open          # the last frame handed over was not the last of its read
    cdef object _clock
    cdef bint _c_clock

    def __init__(self, client):
        self.client = client
        self._clock = client._clock
        self._c_clock = client._clock is time.monotonic_ns
        self._read_ns = 0
        self._read_open = False

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef bint last = frame.last_in_buffer
        cdef int64_t recv_ns
        cdef WSMsgType mt = frame.msg_type
        client = self.client
        if self._read_open:
            recv_ns = self._read_ns
        else:
            recv_ns = _mono() if self._c_clock else <int64_t>self._clock()
            self._read_ns = recv_ns
            entry = client.entry
            if entry is not None and entry.open:
                entry.end_read()       # the former read's last frame never came: decide what it left
        self._read_open = not last
        if (mt == WSMsgType.TEXT or mt == WSMsgType.BINARY) and frame.fin:
            client._feed(frame.get_payload_as_bytes(), recv_ns, last)
            return None
        client._other_frame(transport, frame, recv_ns, last)
        return None


def make_frame(WSMsgType msg_type, bytes payload, bint fin=True, bint last=True):
    """A picows frame as a socket read hands it over (``last``: the last frame of its read), for tests
    that drive either listener frame by frame (picows' own test frame is always last in its read)."""
    from picows.picows import _make_test_ws_frame
    cdef WSFrame frame = _make_test_ws_frame(msg_type, payload, fin, False)
    frame.last_in_buffer = last
    return frame
