"""Fixtures for the connector's tests: RSA keys generated at test time, fake clocks."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class FakeClock:
    """Monotonic ns clock moved by hand."""

    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())


@pytest.fixture
def key_file(tmp_path, rsa_pem):
    p = tmp_path / "kalshi.pem"
    p.write_bytes(rsa_pem)
    p.chmod(0o600)
    return p


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
