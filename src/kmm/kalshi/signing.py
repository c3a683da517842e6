"""Kalshi request signing (kalshi-api.md section 1) and a pool of pre-made signatures.

Message = timestamp_ms + METHOD + path, where path starts at ``/trade-api/...`` and has no query string.
Signature = base64(RSA-PSS(SHA-256, MGF1-SHA-256, salt 32 bytes)).

An RSA-2048 signature costs ~230 us, far too much for the order path. ``SignaturePool`` keeps a few
fresh single-use signatures for each hot (method, path) pair, made ahead of need and thrown away when
older than ``max_age_s``, so the timestamp the exchange checks stays close to now. When the pool is
empty the request is signed inline and the fallback is counted (``stats.fallbacks``: 0 in steady state).

Where signatures are made (``mode``):
- ``"process"`` (default): a separate signer process holds a copy of the key (sent once over a pipe,
  never logged) and signs what the pool asks for. The event loop reads the finished signatures from
  the pipe between callbacks (``loop.add_reader``), so signing never takes the GIL from the loop and
  never runs in the middle of a decision; without a running loop a small reader thread does it.
- ``"thread"``: the former worker thread (the library releases the GIL while it signs, but the Python
  around each signature competes with the loop for the GIL; measured in bench/bench_signing.py).

Sized to real churn: a fixed pair's depth grows with its measured take rate (enough for
``lead_s`` of peak demand, at least ``depth``); per-order pairs (an order's amend and decrease paths)
are kept only for the kinds this run actually uses: after ``per_order_warmup`` orders whose amend (or
decrease) signatures went unused, that kind is no longer pre-signed until a request of it is seen; a
kind in use keeps ``per_order_depth`` per order (an order re-priced twice within the refill time).
The signer process answers one signature at a time, emptiest pairs first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kmm import protocol
from kmm._core.sigring import PoolStats, SigRing  # PoolStats: the counters, compiled (a take counts from C)
from kmm.errors import AuthError, ConfigError
from kmm.kalshi.config import redact, warn_if_key_exposed

log = logging.getLogger("kmm.kalshi.signing")

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)  # salt = SHA-256 digest length
_SHA256 = hashes.SHA256()

Headers = dict[str, str]


def signed_path(path: str) -> str:
    """The part of a request target that is signed: the path without query string or fragment."""
    cut = len(path)
    for sep in ("?", "#"):
        i = path.find(sep)
        if 0 <= i < cut:
            cut = i
    return path[:cut]


def signing_message(timestamp_ms: int, method: str, path: str) -> bytes:
    """The exact bytes Kalshi verifies: ``f"{timestamp_ms}{METHOD}{path_without_query}"``."""
    return f"{timestamp_ms}{method.upper()}{signed_path(path)}".encode()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Signer:
    """Holds one RSA private key and signs Kalshi requests with it. ``repr`` never shows the key."""

    __slots__ = ("key_id", "_key")

    def __init__(self, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        if not key_id:
            raise ConfigError("api key id is empty; set api_key_id or KALSHI_API_KEY_ID")
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ConfigError("the Kalshi private key must be an RSA key (PEM, as downloaded from Kalshi)")
        self.key_id = key_id
        self._key = private_key

    def __repr__(self) -> str:
        return f"Signer(key_id={redact(self.key_id)}, key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("Signer holds a private key and cannot be pickled")

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes | str, password: bytes | None = None) -> Signer:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            # The library's message does not contain key material; keep only its class to be safe.
            raise ConfigError(f"the private key could not be loaded ({type(exc).__name__}); expected an "
                              "unencrypted PEM RSA private key") from None
        return cls(key_id, key)  # type: ignore[arg-type]

    @classmethod
    def from_file(cls, key_id: str, path: str | Path) -> Signer:
        p = Path(path).expanduser()
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"private key file {str(p)!r} cannot be read: {exc.strerror}") from None
        warn_if_key_exposed(p)
        try:
            return cls.from_pem(key_id, data)
        except ConfigError as exc:
            raise ConfigError(f"private key file {str(p)!r}: {exc}") from None

    @classmethod
    def from_config(cls, cfg: object) -> Signer:
        key_id = getattr(cfg, "api_key_id", None)
        pem = getattr(cfg, "private_key_pem", None)
        path = getattr(cfg, "private_key_path", None)
        if not key_id or (pem is None and path is None):
            raise AuthError("no Kalshi credentials configured: set api_key_id and private_key_path")
        return cls.from_pem(key_id, pem) if pem is not None else cls.from_file(key_id, path)  # type: ignore[arg-type]

    def sign(self, timestamp_ms: int, method: str, path: str) -> str:
        sig = self._key.sign(signing_message(timestamp_ms, method, path), _PSS, _SHA256)
        return base64.b64encode(sig).decode("ascii")

    def headers(self, method: str, path: str, timestamp_ms: int | None = None) -> Headers:
        """The three auth headers for one request (REST, or the WS upgrade with GET + WS path)."""
        ts = wall_ms() if timestamp_ms is None else timestamp_ms
        return {
            protocol.HDR_KEY: self.key_id,
            protocol.HDR_TIMESTAMP: str(ts),
            protocol.HDR_SIGNATURE: self.sign(ts, method, path),
        }

    def ws_headers(self, ws_path: str = protocol.WS_PATH) -> Headers:
        return self.headers("GET", ws_path)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()


def _per_order_kind(path: str) -> str:
    """"amend" / "decrease" for an order's own write paths, "" for a fixed path."""
    if path.endswith("/amend"):
        return "amend"
    if path.endswith("/decrease"):
        return "decrease"
    return ""


#: the signer process sends what it signed in messages of up to this many signatures, or as soon as the
#: oldest waited this long (a signature a request waits for, or a new pair's first, goes at once)
SIGNER_BATCH = 16
SIGNER_BATCH_NS = 2_000_000


def _signer_process(conn: object, key_id: str, pem: bytes, nice: int = 0) -> None:
    """The signer process: sign what it is asked for, one signature per answer.

    It first lowers its own priority by ``nice``: it works ahead of need (a pool of made signatures),
    so when it shares a core it should give way to whatever waits on a wake-up there.

    Work is a queue of ``[method, path, left]``; after every signature the pipe is checked. A job's
    fourth field is its level: 2, a request is waiting for this signature (``take_async``): signed
    before anything else, first come first served; 1, before every level-0 job, round robin among
    themselves; 0 (or absent), round robin, a job whose fifth field is true (a pair with nothing
    signed) to the front. The pool sends its fixed pairs (creates, batched cancels: every signature
    made is used) at level 1 and per-order pairs (an order's amend: most orders are cancelled before
    they are amended) at 0, a new order's first to the front. Served one round robin with every
    order's amend pair, a 100-market run's creates and batched cancels got a share of the signer as
    small as any order's, went empty, and the loop signed ~500 writes a second inline (~300 us of its
    time each)."""
    if nice:
        with contextlib.suppress(OSError):      # not allowed here: keep the inherited priority
            os.nice(nice)
    signer = Signer.from_pem(key_id, pem)
    recv, send, poll = conn.recv, conn.send, conn.poll  # type: ignore[attr-defined]
    work: deque[list[Any]] = deque()
    waited: deque[list[Any]] = deque()     # level 2: a request waits for each of these
    urgent: deque[list[Any]] = deque()     # level 1: before the refills, round robin among themselves

    def take_jobs(jobs: Any) -> bool:
        if jobs is None:
            return False
        for job in jobs:
            level = int(job[3]) if len(job) > 3 else 0
            entry = [job[0], job[1], job[2], level]
            if level >= 2:
                waited.append(entry)
            elif level:
                urgent.append(entry)
            elif len(job) > 4 and job[4]:
                entry[3] = 1               # a pair with nothing signed: sent as soon as signed
                work.appendleft(entry)
            else:
                work.append(entry)
        return True

    out: list[tuple[str, str, list[tuple[int, int, str]]]] = []   # signed, not sent yet
    out_ns = 0                                                      # when the oldest of them was made

    def flush() -> None:
        send(out)
        out.clear()

    while True:
        try:
            if not work and not waited and not urgent:
                if out:
                    flush()            # nothing more to sign: what is made goes now
                if not take_jobs(recv()):
                    return
            while poll():
                if not take_jobs(recv()):
                    return
        except (EOFError, OSError):
            return
        queue = waited if waited else urgent if urgent else work
        if not queue:
            continue
        job = queue[0]
        method, path = job[0], job[1]
        ts = wall_ms()
        now = time.monotonic_ns()
        if not out:
            out_ns = now
        out.append((method, path, [(now, ts, signer.sign(ts, method, path))]))
        job[2] -= 1
        # sent in batches: the loop reads one message per turn of its loop, and a busy loop's turn is
        # long (at 100 markets a signature a message left them waiting in the pipe while the loop signed
        # inline); a signature a request waits for, or a pair's first, goes at once
        try:
            if queue is waited or job[3] or len(out) >= SIGNER_BATCH or now - out_ns >= SIGNER_BATCH_NS:
                flush()
        except (BrokenPipeError, OSError):
            return
        job[3] = 0
        if queue is waited:
            if job[2] <= 0:
                waited.popleft()       # first come first served: its next signature before the others
            continue
        queue.popleft()
        if job[2] > 0:
            queue.append(job)          # round robin: one signature per pair per turn


class SignaturePool:
    """Fresh, single-use signatures for hot (method, path) pairs, made ahead on a worker thread.

    ``take(method, path)`` is O(1) and never blocks on signing when the pool has one. Each entry is
    (made_at_ns monotonic, headers). ``clock_ns`` (monotonic) and ``wall_ms`` are injectable; tests
    drive ``fill_now()`` by hand instead of ``start()``-ing the worker.
    """

    def __init__(self, signer: Signer, pairs: Iterable[tuple[str, str]], *, depth: int = 4,
                 max_age_s: float = 5.0, clock_ns: Callable[[], int] = time.monotonic_ns,
                 wall_ms: Callable[[], int] = wall_ms, mode: str = "process", max_depth: int = 64,
                 lead_s: float = 0.25, per_order_warmup: int = 20, per_order_depth: int = 2,
                 cpus: frozenset[int] = frozenset(), nice: int = 0) -> None:
        if depth < 1:
            raise ConfigError("sig_pool_depth must be at least 1")
        if mode not in ("process", "thread"):
            raise ConfigError(f"signature pool mode {mode!r} must be 'process' or 'thread'")
        self.mode = mode
        self.cpus = cpus          # the signer process's CPUs ([run] signer_cpus; empty: inherited)
        if not 0 <= nice <= 19:
            raise ConfigError(f"signer niceness {nice} must be 0-19 (run.signer_nice)")
        self.nice = nice          # niceness the signer process adds to its own ([run] signer_nice)
        self.max_depth = max(depth, max_depth)
        self.lead_s = lead_s
        self.per_order_warmup = per_order_warmup
        self.per_order_depth = per_order_depth
        self._takes: dict[tuple[str, str], int] = {}      # takes of fixed pairs since the last tick
        self._peak_rate: dict[tuple[str, str], float] = {}  # decayed peak takes/s of fixed pairs
        self._kind_adds = {"amend": 0, "decrease": 0}      # per-order pairs added since the kind's last take
        self._kind_used = {"amend": False, "decrease": False}
        self._outstanding: dict[tuple[str, str], int] = {}
        self._waiters: dict[tuple[str, str], deque[asyncio.Future[Headers]]] = {}
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: object = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick_pending = False
        self._kicked: set[tuple[str, str]] = set()   # pairs taken from or added since the last top-up
        #: after a take_async timed out, take_async signs inline at once until then (monotonic ns)
        self._no_wait_until_ns = 0
        self.no_wait_after_timeout_ns = 1_000_000_000
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_tick_ns = 0
        self._send_lock = threading.Lock()    # the reader thread and the caller may both ask
        self.signer = signer
        self.depth = depth
        self.max_age_ns = int(max_age_s * 1e9)
        # Entries younger than this are good; the worker replaces older ones before they expire.
        self.refresh_age_ns = self.max_age_ns // 2
        self._clock = clock_ns
        self._wall = wall_ms
        self.stats = PoolStats()
        # each pair's signatures, oldest first, in C memory (the compiled quote writes copy them from
        # there: kmm._core.quotewire); a ring is used as the deque it replaced
        self._slots: dict[tuple[str, str], SigRing] = {
            (m.upper(), signed_path(p)): SigRing(signer.key_id, self.stats) for m, p in pairs}
        self._depth: dict[tuple[str, str], int] = {}   # per-pair depth overrides
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SignaturePool(pairs={len(self._slots)}, depth={self.depth}, stats={self.stats})"

    @staticmethod
    def _takes_of(q: Any) -> int:
        """A ring's compiled takes since the last call (read and reset)."""
        if type(q) is not SigRing:
            return 0
        n = q.takes
        q.takes = 0
        return n

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self._slots)

    def add_pair(self, method: str, path: str, depth: int | None = None) -> None:
        """Start keeping signatures for ``(method, path)``; ``depth`` overrides the pool's for this pair
        (per-order paths such as an order's amend need only one or two)."""
        key = (method.upper(), signed_path(path))
        if key not in self._slots:
            self._slots[key] = SigRing(self.signer.key_id, self.stats)
        if depth is not None:
            self._depth[key] = max(1, depth)
        kind = _per_order_kind(key[1])
        if kind:
            self._kind_adds[kind] += 1
        self._kick(key)

    def remove_pair(self, method: str, path: str) -> None:
        """Stop keeping signatures for ``(method, path)`` (e.g. the order is gone); unused ones are dropped."""
        key = (method.upper(), signed_path(path))
        self._slots.pop(key, None)
        self._depth.pop(key, None)

    def available(self, method: str, path: str) -> int:
        q = self._slots.get((method.upper(), signed_path(path)))
        return len(q) if q is not None else 0

    def wanted_depth(self, key: tuple[str, str]) -> int:
        """How many signatures to keep for ``key`` now: 0 for a per-order kind this run does not use,
        else the pair's depth, grown for a fixed pair to ``lead_s`` of its peak take rate."""
        kind = _per_order_kind(key[1])
        if kind and not self._kind_used[kind] and self._kind_adds[kind] > self.per_order_warmup:
            return 0
        base = self._depth.get(key, self.depth)
        if kind:
            # a kind in use is often taken twice on one order within the refill time (re-pricing)
            return max(base, self.per_order_depth) if self._kind_used[kind] else base
        peak = self._peak_rate.get(key, 0.0)
        return min(self.max_depth, max(base, math.ceil(peak * self.lead_s) + 1)) if peak else base

    def take(self, method: str, path: str) -> Headers:
        """Auth headers for one request: a pre-made signature if fresh, else signed inline now."""
        q = self._slots.get((method, path))
        if q is None:
            key = (method.upper(), signed_path(path))
            q = self._slots.get(key)
            if q is None:
                self.stats.unpooled += 1
                if method == "GET":
                    self.stats.unpooled_reads += 1
                return self.signer.headers(method, path, self._wall())
        else:
            key = (method, path)
        kind = _per_order_kind(key[1])
        if kind:
            if not self._kind_used[kind]:
                self._kind_used[kind] = True
        else:
            self._takes[key] = self._takes.get(key, 0) + 1
        now = self._clock()
        while True:
            try:
                made_ns, headers = q.popleft()  # oldest first: use them before they expire
            except IndexError:
                break
            if now - made_ns <= self.max_age_ns:
                self.stats.hits += 1
                self._kick(key)
                return headers
            self.stats.expired += 1
        self.stats.misses += 1
        k = kind or key[1].rsplit("/", 1)[-1]
        self.stats.miss_kinds[k] = self.stats.miss_kinds.get(k, 0) + 1
        self._kick(key)
        return self.signer.headers(method, path, self._wall())

    async def take_async(self, method: str, path: str, wait_s: float = 0.02) -> Headers:
        """:meth:`take`, except that when a pooled pair is empty and the signer process is running, the
        request waits (up to ``wait_s``) for the process's next signature instead of signing inline
        on the loop: the loop keeps serving other markets meanwhile. Counted in ``stats.waited``."""
        key = (method.upper(), signed_path(path))
        q = self._slots.get(key)
        now = self._clock()
        if (q is None or self._conn is None or self._loop is None or self._stop.is_set()
                or now < self._no_wait_until_ns or asyncio.get_running_loop() is not self._loop):
            return self.take(method, path)
        while q:
            made_ns, headers = q.popleft()
            if now - made_ns <= self.max_age_ns:
                self.stats.hits += 1
                self._note_take(key)
                self._kick(key)
                return headers
            self.stats.expired += 1
        self._note_take(key)
        fut = self._loop.create_future()
        self._waiters.setdefault(key, deque()).append(fut)
        self._request_fill(extra=(key,), only=(key,))
        try:
            headers = await asyncio.wait_for(fut, wait_s)
        except asyncio.TimeoutError:
            w = self._waiters.get(key)
            if w is not None and fut in w:
                w.remove(fut)
            # the process did not deliver in time (stuck, starved of CPU, gone): for a while, requests
            # sign inline at once rather than each waiting wait_s first
            self.stats.wait_timeouts += 1
            self._no_wait_until_ns = self._clock() + self.no_wait_after_timeout_ns
            return self.take(method, path)      # counted as a miss there
        self.stats.waited += 1
        return headers

    def _note_take(self, key: tuple[str, str]) -> None:
        kind = _per_order_kind(key[1])
        if kind:
            self._kind_used[kind] = True
        else:
            self._takes[key] = self._takes.get(key, 0) + 1

    def _drop_aging(self, key: tuple[str, str], q: SigRing | deque[tuple[int, Headers]], now: int) -> None:
        while True:
            try:
                made_ns = q[0][0]
            except IndexError:
                return
            if now - made_ns <= self.refresh_age_ns:
                return
            try:
                q.popleft()  # the caller may have taken it meanwhile: then we drop the next one
            except IndexError:
                return
            self.stats.refreshed += 1

    def fill_now(self) -> int:
        """Drop stale entries and top every pair up to its depth here, on this thread (tests, and the
        ``thread`` mode's worker). Returns how many were signed."""
        made = 0
        for key, q in list(self._slots.items()):
            method, path = key
            if type(q) is SigRing:
                q.kicked = False
            self._drop_aging(key, q, self._clock())
            depth = self.wanted_depth(key)
            if depth == 0 and len(q) == 0:
                self.stats.skipped += 1
            while len(q) < depth and key in self._slots:
                q.append((self._clock(), self.signer.headers(method, path, self._wall())))
                made += 1
        self.stats.made += made
        return made

    # -- background signing ----------------------------------------------------------------------
    def start(self) -> None:
        """Start making signatures in the background (``mode``: a signer process, or a thread)."""
        if self._thread is not None or self._proc is not None:
            return
        if self.mode == "thread":
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="kmm-sig-pool", daemon=True)
            self._thread.start()
            return
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        key = self.signer._key
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        self._proc = ctx.Process(target=_signer_process, args=(child, self.signer.key_id, pem, self.nice),
                                 name="kmm-signer", daemon=True)
        self._proc.start()
        if self.cpus and self._proc.pid is not None:
            from kmm.cpus import pin_process
            pin_process(self._proc.pid, self.cpus, "run.signer_cpus")
        child.close()
        self._conn = parent
        self._stop.clear()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if self._loop is not None:
            self._loop.add_reader(parent.fileno(), self._on_readable)
            self._schedule_tick()
        else:
            self._thread = threading.Thread(target=self._recv_run, name="kmm-sig-recv", daemon=True)
            self._thread.start()
        self._request_fill()

    async def wait_ready(self, timeout_s: float = 3.0, poll_s: float = 0.01) -> bool:
        """Wait (up to ``timeout_s``) until every fixed pair holds a signature. The signer process takes
        a second or more to start on a loaded machine; a session that quotes before that signs its first
        writes inline after waiting ``take_async``'s ``wait_s`` for each (measured: the first six creates
        of a run at 21-24 ms from frame to bytes). True when ready; False (and nothing else changes)
        when not started, in thread mode, or on timeout."""
        if self._conn is None or self._loop is None:
            return False
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        fixed = [q for k, q in self._slots.items() if not _per_order_kind(k[1])]
        while not all(fixed):
            proc = self._proc
            if proc is not None and proc.exitcode is not None:
                # spawned, it imports the parent's main module: a script that starts kmm at import
                # (no ``if __name__ == "__main__":`` guard) makes the child run the script and exit
                log.warning("the signer process exited at start (exit code %s): every write is signed "
                            "on the loop (counted in the signature fallbacks). A script that runs kmm "
                            "must start it under 'if __name__ == \"__main__\":' (docs/connector.md)",
                            proc.exitcode)
                return False
            if loop.time() >= end or self._stop.is_set():
                log.info("the signer process has not delivered within %.1f s; starting anyway", timeout_s)
                return False
            await asyncio.sleep(poll_s)
            fixed = [q for k, q in self._slots.items() if not _per_order_kind(k[1])]
        return True

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        conn: Any = self._conn
        if conn is not None:
            if self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.remove_reader(conn.fileno())
                except (ValueError, OSError):
                    pass
            try:
                with self._send_lock:
                    conn.send(None)
            except (OSError, ValueError):
                pass
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._proc is not None:
            self._proc.join(timeout=2.0)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=2.0)
            self._proc = None
        if conn is not None:
            conn.close()
        self._conn = None
        self._loop = None

    def _kick(self, key: tuple[str, str]) -> None:
        """``key`` was taken from or added: top it up soon, never inside the caller's decision. Only the
        pairs kicked since the last top-up are looked at then (a take costs O(1), not a pass over every
        order's pairs); the periodic tick (:meth:`_tick`) looks at every pair, for signatures aging out."""
        if self._conn is None:
            self._wake.set()           # thread mode (or not started): the worker looks now
            return
        if self._loop is None:
            self._request_fill(only=(key,))   # reader-thread mode: ask now (a short pipe write)
            return
        self._kicked.add(key)
        if not self._kick_pending:
            self._kick_pending = True
            self._loop.call_soon(self._fill_kicked)

    def _fill_kicked(self) -> None:
        self._kick_pending = False
        keys, self._kicked = self._kicked, set()
        self._request_fill(only=keys)

    def _schedule_tick(self) -> None:
        if self._loop is not None and not self._stop.is_set():
            self._tick_handle = self._loop.call_later(max(self.refresh_age_ns / 4e9, 0.01), self._tick)

    def _tick(self) -> None:
        self._request_fill()
        self._schedule_tick()

    def _update_rates(self) -> None:
        now = self._clock()
        if not self._last_tick_ns:
            self._last_tick_ns = now
            return
        elapsed = (now - self._last_tick_ns) / 1e9
        if elapsed < 0.1:
            return
        self._last_tick_ns = now
        decay = 0.5 ** (elapsed / 10.0)        # the peak fades with a 10 s half-life
        for key, q in self._slots.items():
            if _per_order_kind(key[1]):
                continue
            rate = (self._takes.pop(key, 0) + self._takes_of(q)) / elapsed
            self._peak_rate[key] = max(rate, self._peak_rate.get(key, 0.0) * decay)

    def _request_fill(self, extra: tuple[tuple[str, str], ...] = (),
                      only: Iterable[tuple[str, str]] | None = None) -> None:
        """Ask the signer process for what each pair is short of (minus what is already asked for);
        ``extra`` pairs get one more (a request is waiting for it); ``only``: look at these pairs
        (the ones kicked), else at every pair."""
        slots = self._slots
        pairs = list(slots.items()) if only is None else [(k, slots[k]) for k in only if k in slots]
        for _, q in pairs:
            if type(q) is SigRing:
                q.kicked = False        # looked at: a compiled take asks for a top-up again (QuoteWire)
        conn: Any = self._conn
        if conn is None:
            return
        self._update_rates()
        now = self._clock()
        jobs = []
        for key, q in pairs:
            self._drop_aging(key, q, now)
            need = self.wanted_depth(key) - len(q) - self._outstanding.get(key, 0) + len(self._waiters.get(key, ()))
            if key in extra:
                need = max(need, 1)
            if need > 0:
                # level 1 (before any order's own path): a fixed pair, whose signatures are all used;
                # an order's pair at 0, to the front of those when it has nothing signed (just acked)
                level = 0 if _per_order_kind(key[1]) else 1
                front = not q
                if key in extra:
                    # a request waits for one: signed before anything else; the rest as the pair's refill
                    jobs.append((key[0], key[1], 1, 2, front))
                    if need > 1:
                        jobs.append((key[0], key[1], need - 1, level, front))
                else:
                    jobs.append((key[0], key[1], need, level, front))
                self._outstanding[key] = self._outstanding.get(key, 0) + need
        if jobs:
            jobs.sort(key=lambda j: -j[3])
            try:
                with self._send_lock:
                    conn.send(jobs)
            except (OSError, ValueError):
                log.warning("the signer process is gone; requests will be signed inline")

    def _receive(self, msg: Any) -> None:
        """One message of the signer process: a list of ``(method, path, signatures)`` (or one such
        tuple: the thread mode's reader and older senders)."""
        if type(msg) is list:
            for one in msg:
                self._receive_pair(*one)
            return
        self._receive_pair(*msg)

    def _receive_pair(self, method: str, path: str, sigs: list[tuple[int, int, str]]) -> None:
        key = (method, path)
        left = self._outstanding.get(key, 0) - len(sigs)
        if left > 0:
            self._outstanding[key] = left
        else:
            self._outstanding.pop(key, None)
        q = self._slots.get(key)
        if q is None:
            return                     # the order went away meanwhile
        kid = self.signer.key_id
        waiters = self._waiters.get(key)
        ring = type(q) is SigRing
        for made_ns, ts, sig in sigs:
            while waiters and waiters[0].done():
                waiters.popleft()
            if waiters:
                waiters.popleft().set_result(
                    {protocol.HDR_KEY: kid, protocol.HDR_TIMESTAMP: str(ts), protocol.HDR_SIGNATURE: sig})
            elif ring:
                q.push(made_ns, str(ts), sig)      # stored as the request's header lines
            else:
                q.append((made_ns, {protocol.HDR_KEY: kid, protocol.HDR_TIMESTAMP: str(ts),
                                    protocol.HDR_SIGNATURE: sig}))
        self.stats.made += len(sigs)

    def _on_readable(self) -> None:
        conn: Any = self._conn
        try:
            if conn is not None:
                # one message per call: the loop's reader is level-triggered and calls again while the
                # pipe holds more (a conn.poll() around each recv built a selector per call: ~40 us)
                self._receive(conn.recv())
        except (EOFError, OSError):
            if self._loop is not None and conn is not None:
                try:
                    self._loop.remove_reader(conn.fileno())
                except (ValueError, OSError):
                    pass
            if not self._stop.is_set():
                log.warning("the signer process stopped; requests will be signed inline")

    def _recv_run(self) -> None:
        conn: Any = self._conn
        period_s = max(self.refresh_age_ns / 4e9, 0.01)
        while not self._stop.is_set():
            try:
                if conn.poll(period_s):
                    self._receive(conn.recv())
                else:
                    self._request_fill()
            except (EOFError, OSError):
                return

    def _run(self) -> None:
        period_s = max(self.refresh_age_ns / 4e9, 0.01)
        while not self._stop.is_set():
            try:
                self.fill_now()
            except Exception:  # never let the worker die silently; inline signing still works
                log.exception("signature pool worker failed to sign; requests will be signed inline")
            self._wake.wait(period_s)
            self._wake.clear()
