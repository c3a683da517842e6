from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from kmm import protocol
from kmm.errors import ConfigError
from kmm.kalshi.signing import SignaturePool, Signer, signed_path, signing_message

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def verify(signer: Signer, headers: dict[str, str], method: str, path: str) -> None:
    """Verify exactly as the exchange does: raises InvalidSignature when wrong."""
    ts = headers[protocol.HDR_TIMESTAMP]
    message = (ts + method + path).encode()
    signer.public_key().verify(base64.b64decode(headers[protocol.HDR_SIGNATURE]), message, PSS, hashes.SHA256())


@pytest.fixture(scope="module")
def signer(rsa_key) -> Signer:
    return Signer("key-id-1", rsa_key)


def test_signature_verifies_with_public_key_over_timestamp_method_path(signer):
    h = signer.headers("POST", "/trade-api/v2/portfolio/events/orders", timestamp_ms=1703123456789)
    assert h[protocol.HDR_KEY] == "key-id-1" and h[protocol.HDR_TIMESTAMP] == "1703123456789"
    verify(signer, h, "POST", "/trade-api/v2/portfolio/events/orders")
    with pytest.raises(InvalidSignature):
        verify(signer, h, "GET", "/trade-api/v2/portfolio/events/orders")
    with pytest.raises(InvalidSignature):
        verify(signer, {**h, protocol.HDR_TIMESTAMP: "1703123456788"}, "POST", "/trade-api/v2/portfolio/events/orders")


def test_signature_excludes_the_query_string(signer):
    assert signing_message(1703123456789, "get", "/trade-api/v2/portfolio/orders?limit=5") == \
        b"1703123456789GET/trade-api/v2/portfolio/orders"
    h = signer.headers("GET", "/trade-api/v2/portfolio/orders?limit=5&cursor=abc")
    verify(signer, h, "GET", "/trade-api/v2/portfolio/orders")
    assert signed_path("/a/b?x=1#f") == "/a/b"


def test_signature_uses_pss_with_salt_32(signer):
    """A verifier that insists on salt 32 accepts it; one that expects the maximum salt does not."""
    h = signer.headers("GET", "/trade-api/ws/v2", timestamp_ms=5)
    sig = base64.b64decode(h[protocol.HDR_SIGNATURE])
    assert len(sig) == 256  # RSA-2048
    signer.public_key().verify(sig, b"5GET/trade-api/ws/v2", PSS, hashes.SHA256())
    max_salt = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=256 - 32 - 2)
    with pytest.raises(InvalidSignature):
        signer.public_key().verify(sig, b"5GET/trade-api/ws/v2", max_salt, hashes.SHA256())


def test_ws_headers_sign_get_and_the_ws_path(signer):
    h = signer.ws_headers()
    verify(signer, h, "GET", protocol.WS_PATH)


def test_from_pem_with_garbage_raises_config_error_without_echoing_it():
    with pytest.raises(ConfigError) as exc:
        Signer.from_pem("k", b"-----BEGIN RSA PRIVATE KEY-----\nSECRETSTUFF\n-----END RSA PRIVATE KEY-----\n")
    assert "SECRETSTUFF" not in str(exc.value)


def test_from_file_loads_the_key(key_file, signer):
    s = Signer.from_file("key-id-1", key_file)
    h = s.headers("GET", "/trade-api/v2/portfolio/balance")
    verify(signer, h, "GET", "/trade-api/v2/portfolio/balance")  # same key pair


PAIR = ("POST", "/trade-api/v2/portfolio/events/orders")


def make_pool(signer, clock, wall, depth=2, max_age_s=5.0):
    return SignaturePool(signer, [PAIR], depth=depth, max_age_s=max_age_s, clock_ns=clock, wall_ms=wall)


def test_pool_take_after_fill_is_a_hit_with_a_valid_signature(signer, clock):
    pool = make_pool(signer, clock, lambda: 1_700_000_000_000)
    assert pool.fill_now() == 2 and pool.available(*PAIR) == 2
    h = pool.take(*PAIR)
    verify(signer, h, *PAIR)
    assert h[protocol.HDR_TIMESTAMP] == "1700000000000"
    assert (pool.stats.hits, pool.stats.misses, pool.available(*PAIR)) == (1, 0, 1)


def test_pool_signatures_are_single_use(signer, clock):
    pool = make_pool(signer, clock, iter(range(10**12, 10**12 + 100)).__next__)
    pool.fill_now()
    a, b = pool.take(*PAIR), pool.take(*PAIR)
    assert a[protocol.HDR_SIGNATURE] != b[protocol.HDR_SIGNATURE]
    c = pool.take(*PAIR)  # empty now: signed inline
    verify(signer, c, *PAIR)
    assert (pool.stats.hits, pool.stats.misses) == (2, 1)


def test_pool_discards_signatures_older_than_max_age_and_signs_inline(signer, clock):
    pool = make_pool(signer, clock, lambda: 1, depth=2, max_age_s=5.0)
    pool.fill_now()
    clock.advance(5.1)
    h = pool.take(*PAIR)
    verify(signer, h, *PAIR)
    assert (pool.stats.hits, pool.stats.misses, pool.stats.expired) == (0, 1, 2)
    assert pool.stats.discards == 2


def test_pool_refill_replaces_entries_past_half_their_age(signer, clock):
    pool = make_pool(signer, clock, lambda: 1, depth=2, max_age_s=4.0)
    pool.fill_now()
    clock.advance(1.0)
    assert pool.fill_now() == 0  # still fresh
    clock.advance(1.5)  # 2.5 s > 2 s refresh age
    assert pool.fill_now() == 2
    assert pool.stats.refreshed == 2 and pool.stats.made == 4
    pool.take(*PAIR)
    assert pool.stats.hits == 1


def test_pool_unpooled_path_is_signed_inline_and_counted(signer, clock):
    pool = make_pool(signer, clock, lambda: 7)
    h = pool.take("DELETE", "/trade-api/v2/portfolio/events/orders/abc")
    verify(signer, h, "DELETE", "/trade-api/v2/portfolio/events/orders/abc")
    assert pool.stats.unpooled == 1 and pool.stats.misses == 0


def test_pool_worker_thread_fills_in_the_background(signer):
    pool = SignaturePool(signer, [PAIR], depth=3, max_age_s=5.0)
    pool.start()
    try:
        import time
        deadline = time.monotonic() + 5
        while pool.available(*PAIR) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.available(*PAIR) == 3
        verify(signer, pool.take(*PAIR), *PAIR)
        assert pool.stats.hits == 1
    finally:
        pool.close()


def test_pool_per_order_pair_keeps_its_own_depth_and_stops_after_removal(signer, clock):
    pool = make_pool(signer, clock, lambda: 1_700_000_000_000, depth=3)
    amend = ("POST", "/trade-api/v2/portfolio/events/orders/abc/amend")
    pool.add_pair(*amend, depth=1)
    pool.fill_now()
    assert pool.available(*amend) == 1 and pool.available(*PAIR) == 3
    verify(signer, pool.take(*amend), *amend)
    assert pool.stats.hits == 1
    pool.remove_pair(*amend)
    pool.fill_now()
    assert pool.available(*amend) == 0 and amend not in pool.pairs
    pool.take(*amend)
    assert pool.stats.unpooled == 1
