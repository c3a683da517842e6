"""Kalshi request signing (kalshi-api.md section 1) and a pool of pre-made signatures.

Message = timestamp_ms + METHOD + path, where path starts at ``/trade-api/...`` and has no query string.
Signature = base64(RSA-PSS(SHA-256, MGF1-SHA-256, salt 32 bytes)).

An RSA-2048 signature costs ~230 us, far too much for the order path. ``SignaturePool`` keeps a few
fresh single-use signatures for each hot (method, path) pair, made ahead of need on a worker thread
(the cryptography library releases the GIL while it signs) and thrown away when older than
``max_age_s``, so the timestamp the exchange checks stays close to now. When the pool is empty the
request is signed inline and the miss is counted.

Paths with a per-order component (``DELETE /portfolio/events/orders/{id}``, amend, decrease) cannot be
pre-signed: the engine should cancel through the batched endpoint, whose path is fixed.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kmm import protocol
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


@dataclass(slots=True)
class PoolStats:
    """Counters; each is written by one thread only (the caller's or the worker's)."""

    hits: int = 0        # a pre-made signature was used
    misses: int = 0      # a pooled pair was empty: signed inline on the caller's thread
    expired: int = 0     # found too old at take time and thrown away (caller's thread)
    refreshed: int = 0   # replaced by the worker before it could expire unused (worker thread)
    made: int = 0        # made ahead of need
    unpooled: int = 0    # pair not pooled (per-order paths): signed inline by design

    @property
    def discards(self) -> int:
        """Signatures made and never used because they grew old."""
        return self.expired + self.refreshed


class SignaturePool:
    """Fresh, single-use signatures for hot (method, path) pairs, made ahead on a worker thread.

    ``take(method, path)`` is O(1) and never blocks on signing when the pool has one. Each entry is
    (made_at_ns monotonic, headers). ``clock_ns`` (monotonic) and ``wall_ms`` are injectable; tests
    drive ``fill_now()`` by hand instead of ``start()``-ing the worker.
    """

    def __init__(self, signer: Signer, pairs: Iterable[tuple[str, str]], *, depth: int = 4,
                 max_age_s: float = 5.0, clock_ns: Callable[[], int] = time.monotonic_ns,
                 wall_ms: Callable[[], int] = wall_ms) -> None:
        if depth < 1:
            raise ConfigError("sig_pool_depth must be at least 1")
        self.signer = signer
        self.depth = depth
        self.max_age_ns = int(max_age_s * 1e9)
        # Entries younger than this are good; the worker replaces older ones before they expire.
        self.refresh_age_ns = self.max_age_ns // 2
        self._clock = clock_ns
        self._wall = wall_ms
        self._slots: dict[tuple[str, str], deque[tuple[int, Headers]]] = {
            (m.upper(), signed_path(p)): deque() for m, p in pairs}
        self._depth: dict[tuple[str, str], int] = {}   # per-pair depth overrides
        self.stats = PoolStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SignaturePool(pairs={len(self._slots)}, depth={self.depth}, stats={self.stats})"

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self._slots)

    def add_pair(self, method: str, path: str, depth: int | None = None) -> None:
        """Start keeping signatures for ``(method, path)``; ``depth`` overrides the pool's for this pair
        (per-order paths such as an order's amend need only one or two)."""
        key = (method.upper(), signed_path(path))
        self._slots.setdefault(key, deque())
        if depth is not None:
            self._depth[key] = max(1, depth)
        self._wake.set()

    def remove_pair(self, method: str, path: str) -> None:
        """Stop keeping signatures for ``(method, path)`` (e.g. the order is gone); unused ones are dropped."""
        key = (method.upper(), signed_path(path))
        self._slots.pop(key, None)
        self._depth.pop(key, None)

    def available(self, method: str, path: str) -> int:
        q = self._slots.get((method.upper(), signed_path(path)))
        return len(q) if q is not None else 0

    def take(self, method: str, path: str) -> Headers:
        """Auth headers for one request: a pre-made signature if fresh, else signed inline now."""
        q = self._slots.get((method, path))
        if q is None:
            key = (method.upper(), signed_path(path))
            q = self._slots.get(key)
            if q is None:
                self.stats.unpooled += 1
                return self.signer.headers(method, path, self._wall())
        now = self._clock()
        while True:
            try:
                made_ns, headers = q.popleft()  # oldest first: use them before they expire
            except IndexError:
                break
            if now - made_ns <= self.max_age_ns:
                self.stats.hits += 1
                self._wake.set()
                return headers
            self.stats.expired += 1
        self.stats.misses += 1
        self._wake.set()
        return self.signer.headers(method, path, self._wall())

    def fill_now(self) -> int:
        """Drop stale entries and top every pair up to ``depth``. Returns how many were signed."""
        made = 0
        for (method, path), q in list(self._slots.items()):
            depth = self._depth.get((method, path), self.depth)
            now = self._clock()
            while True:
                try:
                    made_ns = q[0][0]
                except IndexError:
                    break
                if now - made_ns <= self.refresh_age_ns:
                    break
                try:
                    q.popleft()  # the caller may have taken it meanwhile: then we drop the next one
                except IndexError:
                    break
                self.stats.refreshed += 1
            while len(q) < depth and (method, path) in self._slots:
                q.append((self._clock(), self.signer.headers(method, path, self._wall())))
                made += 1
        self.stats.made += made
        return made

    # -- worker thread -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kmm-sig-pool", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _run(self) -> None:
        period_s = max(self.refresh_age_ns / 4e9, 0.01)
        while not self._stop.is_set():
            try:
                self.fill_now()
            except Exception:  # never let the worker die silently; inline signing still works
                log.exception("signature pool worker failed to sign; requests will be signed inline")
            self._wake.wait(period_s)
            self._wake.clear()
