"""Kalshi request signatures, verified: RSA-PSS(SHA-256, MGF1-SHA-256, salt = digest length) over
``timestamp_ms + METHOD + path`` (query string removed), base64 in ``KALSHI-ACCESS-SIGNATURE``."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kmm import protocol
from kmm.sim.rejects import Reject

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
_SHA256 = hashes.SHA256()


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh RSA-2048 pair as (private PEM (PKCS#8, unencrypted), public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def new_key_id() -> str:
    return str(uuid.uuid4())


class Verifier:
    """Holds the registered public keys and checks each request's signature (no caching of results)."""

    def __init__(self, window_s: float = 60.0, clock_ms: Callable[[], int] | None = None) -> None:
        self.window_ms = int(window_s * 1000)
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.keys: dict[str, rsa.RSAPublicKey] = {}

    def add(self, key_id: str, public_pem: bytes) -> None:
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"key {key_id}: the public key is not RSA")
        self.keys[key_id] = key

    def verify(self, headers: Mapping[str, str], method: str, path: str) -> str | None:
        """The key id if the headers carry a valid signature, None if they carry no auth at all.

        Raises :class:`Reject` (401) for an unknown key, a bad signature or a stale timestamp.
        """
        key_id = headers.get(protocol.HDR_KEY)
        ts = headers.get(protocol.HDR_TIMESTAMP)
        sig = headers.get(protocol.HDR_SIGNATURE)
        if key_id is None and ts is None and sig is None:
            return None
        if not key_id or not ts or not sig:
            raise Reject("missing_auth", f"send all of {protocol.HDR_KEY}, {protocol.HDR_TIMESTAMP}, "
                         f"{protocol.HDR_SIGNATURE}")
        key = self.keys.get(key_id)
        if key is None:
            raise Reject("unknown_api_key", f"key {key_id!r} is not registered")
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 16):
            raise Reject("timestamp_out_of_window", f"{protocol.HDR_TIMESTAMP} {ts!r} is not Unix milliseconds")
        skew = abs(int(ts) - self.clock_ms())
        if skew > self.window_ms:
            raise Reject("timestamp_out_of_window", f"timestamp is {skew} ms away from the server clock "
                         f"(window {self.window_ms} ms)")
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise Reject("invalid_signature", "signature is not base64") from None
        path = path.split("?", 1)[0]
        try:
            key.verify(raw, (ts + method.upper() + path).encode(), _PSS, _SHA256)
        except InvalidSignature:
            raise Reject("invalid_signature", "RSA-PSS check failed for timestamp+METHOD+path") from None
        return key_id


def sign(private_pem_or_key: bytes | rsa.RSAPrivateKey, ts_ms: int, method: str, path: str) -> str:
    """Kalshi's signature (used by the simulator's own tests and tools, never by the client connector)."""
    key = private_pem_or_key
    if isinstance(key, bytes):
        key = serialization.load_pem_private_key(key, password=None)  # type: ignore[assignment]
    assert isinstance(key, rsa.RSAPrivateKey)
    msg = (str(ts_ms) + method.upper() + path.split("?", 1)[0]).encode()
    return base64.b64encode(key.sign(msg, _PSS, _SHA256)).decode()
