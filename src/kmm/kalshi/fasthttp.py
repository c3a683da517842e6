"""A minimal HTTP/1.1 keep-alive client for the order path.

aiohttp costs ~50-70 us per request before the first byte leaves (URL objects, header multidicts,
tracing hooks), more than the whole budget from decision to bytes on the socket (design section 9). Order
writes (create, batched create, cancels, amend, decrease) therefore go through this small client: a
few warm connections, the request written as one pre-formatted byte string with a single
``transport.write``, one request in flight per connection, and a response parser that knows exactly
what Kalshi sends (status line, headers, Content-Length or chunked body). Reads stay on aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from urllib.parse import urlsplit

from kmm.errors import RequestTimeout

log = logging.getLogger("kmm.kalshi.fasthttp")

_CRLF2 = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024
LINGER_S = 30.0  # how long a timed-out request's connection waits for its late answer

#: Called with ``(written_ns, waited_ns)`` by the request whose context holds it: ``written_ns`` is the
#: write stamp (monotonic ns, taken after ``transport.write`` returned), ``waited_ns`` how long the
#: request stood waiting for the write budget (the limiter's queue, a 429 pause; measured by the
#: caller and passed in) and for a free connection. The live loop sets it around starting a decision's
#: first request, so the decision is stamped when its bytes are written, and the time it spent waiting
#: for the budget is reported apart from kmm's own path (``Engine._issued``).
ON_WRITE: ContextVar[Callable[[int, int], None] | None] = ContextVar("kmm_on_write", default=None)


class HttpConnectionError(ConnectionError):
    """The connection failed or closed before a complete response arrived."""


class TlsVerifyError(HttpConnectionError):
    """The server's TLS certificate failed verification (untrusted chain or wrong host name)."""


#: What a request's completion is told: ``(status, body, None)`` for an answer, ``(0, b"", exc)`` for a
#: failure (RequestTimeout, HttpConnectionError). Called from the protocol's callbacks, once.
Done = Callable[[int, bytes, "BaseException | None"], None]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight.

    A request's completion is a plain callback (``done``), called from ``data_received`` /
    ``connection_lost`` / the pool's timeout sweep: the order path needs no future, task or timer per
    request (:meth:`FastHttp.send_now`). The coroutine API (:meth:`FastHttp.request`) wraps it in a
    future. Timeouts: the pool keeps one timer for all its connections (``deadline`` per request)."""

    __slots__ = ("transport", "buf", "done", "closed", "keep_alive", "_head_done", "_status", "_length",
                 "_chunked", "_body", "last_write_ns", "_timer", "_pool", "deadline", "timeout_s")

    def __init__(self, pool: FastHttp) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: Done | None = None
        self.closed = False
        self.keep_alive = True
        self._timer: asyncio.TimerHandle | None = None    # only the linger after a timeout
        self.deadline = 0.0                                 # loop time the answer is due by (0: idle)
        self.timeout_s = 0.0
        self.last_write_ns = 0
        self._reset_response()

    @property
    def waiter(self) -> Done | None:       # the request in flight, if any (older name)
        return self.done

    def _reset_response(self) -> None:
        self._head_done = False
        self._status = 0
        self._length = -1
        self._chunked = False
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        self._pool._lingering.discard(self)
        if (exc is None and self._head_done and not self._chunked and self._length < 0
                and self.done is not None):
            # a body with neither a length nor chunks runs to the end of the connection: it is complete
            self._body = self.buf[:]
            del self.buf[:]
            self.keep_alive = False
            self._complete()
            return
        self._fail(HttpConnectionError(f"connection closed before the response completed ({exc or 'EOF'})"))

    def _take_done(self) -> Done | None:
        d, self.done = self.done, None
        self.deadline = 0.0
        self._pool._busy.discard(self)
        return d

    @staticmethod
    def _call(d: Done | None, status: int, body: bytes, exc: BaseException | None) -> None:
        if d is not None:
            try:
                d(status, body, exc)
            except Exception:  # a completion must never break the connection's protocol callbacks
                log.exception("request completion failed")

    def _finish(self, status: int, body: bytes, exc: BaseException | None) -> None:
        self._call(self._take_done(), status, body, exc)

    def _fail(self, exc: BaseException) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._finish(0, b"", exc)

    def start(self, data: bytes, timeout_s: float, done: Done) -> None:
        """Write one request and note its completion; the answer (or failure) calls ``done``."""
        assert self.transport is not None and self.done is None
        self.done = done
        self._head_done = False                 # _reset_response, inline (every order request)
        self._status = 0
        self._length = -1
        self._chunked = False
        self._body = bytearray()
        self.transport.write(data)
        self.last_write_ns = time.monotonic_ns()
        self.timeout_s = timeout_s
        self._pool._arm(self, timeout_s)

    def send(self, data: bytes, timeout_s: float, loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, bytes]]:
        """:meth:`start` with a future for the coroutine API."""
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()

        def done(status: int, body: bytes, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result((status, body))
        self.start(data, timeout_s, done)
        return fut

    def _on_timeout(self) -> None:
        """Fail the caller, but keep the connection open a while: the request may still be processed,
        and closing it could make the server drop it. The connection is never reused."""
        self.keep_alive = False
        self._pool._forget(self)
        self._pool._lingering.add(self)
        self._finish(0, b"", RequestTimeout(f"no answer within {self.timeout_s} s"))
        self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._abort)

    def _abort(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self._head_done:
            end = self.buf.find(_CRLF2)
            if end < 0:
                if len(self.buf) > _MAX_HEAD:
                    self._protocol_error("response head too large")
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            try:
                self._parse_head(head)
            except ValueError as exc:
                self._protocol_error(str(exc))
                return
            if 100 <= self._status < 200:
                self._reset_response()   # an interim answer (100 Continue, 103 Early Hints): the real one follows
        if self._chunked:
            if not self._read_chunks():
                return
        elif self._length >= 0:
            if len(self.buf) < self._length:
                return
            self._body = self.buf[:self._length]
            del self.buf[:self._length]
        else:  # no length: body runs to EOF (Connection: close)
            return
        self._complete()

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1."):
            raise ValueError(f"bad status line {status_line[:40]!r}")
        self._status = int(status_line[9:12])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            n = name.strip().lower()
            if n == b"content-length":
                self._length = int(value.strip())
            elif n == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif n == b"connection" and value.strip().lower() == b"close":
                self.keep_alive = False
        if self._status in (204, 304) and self._length < 0:
            self._length = 0
        self._head_done = True

    def _read_chunks(self) -> bool:
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(self.buf[:line_end]).split(b";")[0], 16)
            if size == 0:  # last chunk, optional trailers, blank line
                end = self.buf.find(_CRLF2, line_end)
                if end < 0:
                    return False
                del self.buf[:end + 4]
                return True
            if len(self.buf) < line_end + 2 + size + 2:
                return False
            self._body += self.buf[line_end + 2:line_end + 2 + size]
            del self.buf[:line_end + 2 + size + 2]

    def _protocol_error(self, why: str) -> None:
        self.keep_alive = False
        self._fail(HttpConnectionError(f"bad HTTP response: {why}"))
        if self.transport is not None:
            self.transport.abort()

    def _complete(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        w = self.done
        result = (self._status, bytes(self._body))
        self._reset_response()
        if w is None:
            # the late answer to a request that already timed out, or an answer nobody asked for: this
            # connection's request/response pairing can no longer be trusted, so it is closed
            log.info("HTTP %d answer with no request waiting (closing the connection): %s", result[0],
                     result[1][:200])
            if self.transport is not None:
                self.transport.close()
            return
        if self.buf and self.transport is not None:
            # bytes after the answer while no other request is out (kmm never pipelines): an answer
            # nobody asked for would be paired with the next request, so the connection is dropped
            log.info("%d unexpected bytes after an HTTP answer: closing the connection", len(self.buf))
            self.keep_alive = False
        d = self._take_done()
        if not self.keep_alive and self.transport is not None:
            self.transport.close()
        else:
            self._pool._release(self)
        # the connection is idle again before the completion runs: a request it starts at once (the
        # market's next decision) can take it
        self._call(d, result[0], result[1], None)


class FastHttp:
    """A small pool of warm HTTP/1.1 connections to one origin."""

    def __init__(self, base_url: str, *, connections: int = 2, timeout_s: float = 5.0,
                 connect_timeout_s: float = 3.0, ssl_context: ssl_module.SSLContext | None = None) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"base url {base_url!r} must be http:// or https://")
        self.secure = u.scheme == "https"
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.secure else 80)
        default_port = 443 if self.secure else 80
        self.host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        self.max_connections = max(1, connections)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._ssl = (ssl_context or ssl_module.create_default_context()) if self.secure else None
        self._idle: deque[_Conn] = deque()
        self._all: set[_Conn] = set()
        self._lingering: set[_Conn] = set()  # timed out, waiting for a late answer; never reused
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._opening = 0
        self.last_write_ns = 0
        self.requests = 0
        self.opened = 0
        self.conn_waits = 0          # requests that found no idle connection and waited for one
        self._busy: set[_Conn] = set()      # connections with a request in flight (for the timeout sweep)
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        self._heads: dict[tuple[str, str], str] = {}   # (method, target) -> request line and Host
        self._templates: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}

    # -- timeouts: one timer per pool, at the earliest deadline of the requests in flight --------------
    def _arm(self, conn: _Conn, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        conn.deadline = at = loop.time() + timeout_s
        self._busy.add(conn)
        if self._sweep is None or at < self._sweep_at:
            if self._sweep is not None:
                self._sweep.cancel()
            self._sweep_at = at
            self._sweep = loop.call_at(at, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        nxt = 0.0
        for conn in list(self._busy):
            if conn.done is None:
                self._busy.discard(conn)
            elif conn.deadline <= now:
                conn._on_timeout()
            elif not nxt or conn.deadline < nxt:
                nxt = conn.deadline
        if nxt:
            self._sweep_at = nxt
            self._sweep = loop.call_at(nxt, self._on_sweep)

    def head_template(self, method: str, target: str, fixed: tuple[tuple[str, str], ...]) -> str:
        """The unchanging part of a request head, made once per (method, target, fixed headers): the
        request line, Host and ``fixed``; the caller appends the per-request headers (timestamp,
        signature), ``Content-Length`` and the blank line (:meth:`send_raw`)."""
        key = (method, target, fixed)
        t = self._templates.get(key)
        if t is None:
            t = f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in fixed)
            if len(self._templates) < 4096:      # fixed paths; per-order paths come and go
                self._templates[key] = t
        return t

    def send_raw(self, data: bytes, done: Done, timeout_s: float | None = None) -> int:
        """:meth:`send_now` for a request already in bytes (from :meth:`head_template`)."""
        idle = self._idle
        while idle:                                  # _idle_conn, inline
            conn = idle.pop()
            if not conn.closed:
                break
        else:
            return 0
        conn.start(data, self.timeout_s if timeout_s is None else timeout_s, done)
        self.last_write_ns = conn.last_write_ns
        self.requests += 1
        return conn.last_write_ns

    def send_now(self, method: str, target: str, headers: dict[str, str], body: bytes, done: Done,
                 timeout_s: float | None = None) -> int:
        """Write one request now on a warm idle connection, without a coroutine, task or future: the
        answer calls ``done(status, body, exc)`` from the connection's callbacks. Returns the write stamp
        (monotonic ns, after ``transport.write``), or 0 when no connection is idle (nothing was written:
        the caller takes the coroutine path, which waits for one)."""
        conn = self._idle_conn()
        if conn is None:
            return 0
        conn.start(self.request_head(method, target, headers, len(body)) + body,
                   self.timeout_s if timeout_s is None else timeout_s, done)
        self.last_write_ns = conn.last_write_ns
        self.requests += 1
        return conn.last_write_ns

    def request_head(self, method: str, target: str, headers: dict[str, str], body_len: int) -> bytes:
        """The request line and headers as bytes (Host, Content-Length added)."""
        line = self._heads.get((method, target))
        if line is None:
            line = f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            if len(self._heads) < 4096:          # fixed paths; per-order paths come and go
                self._heads[(method, target)] = line
        parts = [line]
        for k, v in headers.items():
            parts.append(f"{k}: {v}\r\n")
        parts.append(f"Content-Length: {body_len}\r\nConnection: keep-alive\r\n\r\n")
        return "".join(parts).encode("latin-1")

    async def warm(self, n: int | None = None) -> None:
        """Open connections ahead of need so the first order does not pay for connect (and TLS)."""
        want = min(self.max_connections, n or self.max_connections)
        conns = [await self._open() for _ in range(max(0, want - len(self._all)))]
        for c in conns:
            self._release(c)

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        self._opening += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(self), self.host, self.port, ssl=self._ssl,
                                       server_hostname=self.host if self.secure else None),
                self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise HttpConnectionError(f"connect to {self.host}:{self.port} timed out") from None
        except ssl_module.SSLCertVerificationError as exc:
            raise TlsVerifyError(f"connect to {self.host}:{self.port}: certificate verify failed: "
                                 f"{exc.verify_message}") from None
        except OSError as exc:
            raise HttpConnectionError(f"connect to {self.host}:{self.port} failed: {exc}") from None
        finally:
            self._opening -= 1
        self._all.add(conn)
        self.opened += 1
        return conn

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            return
        while self._waiting:
            w = self._waiting.popleft()
            if not w.done():
                self._idle.append(conn)
                w.set_result(None)
                return
        self._idle.append(conn)

    def _forget(self, conn: _Conn) -> None:
        self._all.discard(conn)
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        self._wake_one()       # a slot is free: a request waiting for a connection may open one

    def _wake_one(self) -> None:
        while self._waiting:
            w = self._waiting.popleft()
            if not w.done():
                w.set_result(None)
                return

    def has_idle(self) -> bool:
        """True when a warm connection is idle (a request written now would not wait)."""
        for conn in self._idle:
            if not conn.closed:
                return True
        return False

    def _idle_conn(self) -> _Conn | None:
        """A warm idle connection, taken synchronously (the order path writes without yielding)."""
        while self._idle:
            conn = self._idle.pop()  # most recently used: warmest
            if not conn.closed:
                return conn
        return None

    async def _acquire(self, priority: bool = False) -> _Conn:
        """A connection: an idle one, a new one below the limit, or the next one released. A priority
        request (cancels) may open one connection above the limit rather than wait behind others."""
        while True:
            while self._idle:
                conn = self._idle.pop()  # most recently used: warmest
                if not conn.closed:
                    return conn
            limit = self.max_connections + (1 if priority else 0)
            if len(self._all) + self._opening < limit:
                return await self._open()
            w: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(w)
            await w

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes | None,
                      timeout_s: float | None = None, *, priority: bool = False,
                      waited_ns: int = 0) -> tuple[int, bytes]:
        """Send one request; returns (status, body). Raises RequestTimeout or HttpConnectionError.
        Waiting for a connection counts against the request's timeout. ``waited_ns``: how long the
        caller already waited for the write budget; the ON_WRITE hook gets it plus the connection wait."""
        limit_s = self.timeout_s if timeout_s is None else timeout_s
        conn = self._idle_conn()
        if conn is None:   # only then wait (wait_for runs the wait in a task: never on the warm path)
            t0 = time.monotonic_ns()
            try:
                conn = await asyncio.wait_for(self._acquire(priority), limit_s)
            except asyncio.TimeoutError:
                raise RequestTimeout(f"{method} {target}: no connection free within {limit_s} s") from None
            waited_ns += time.monotonic_ns() - t0
            self.conn_waits += 1
        payload = body or b""
        data = self.request_head(method, target, headers, len(payload)) + payload
        fut = conn.send(data, limit_s, asyncio.get_running_loop())
        self.last_write_ns = conn.last_write_ns
        self.requests += 1
        on_write = ON_WRITE.get()
        if on_write is not None:
            on_write(conn.last_write_ns, waited_ns)
        return await fut

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all) + list(self._lingering):
            if conn._timer is not None:
                conn._timer.cancel()
                conn._timer = None
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._lingering.clear()
        self._idle.clear()
        for w in self._waiting:
            if not w.done():
                w.cancel()
        self._waiting.clear()
