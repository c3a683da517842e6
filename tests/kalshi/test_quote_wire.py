"""The compiled quote writes (kmm._core.quotewire) and the signature rings they take from
(kmm._core.sigring), against their Python references: a ring is the deque of ``(made_ns, headers)`` it
replaced in the signature pool, and a compiled take is the pool's take (the same signature, the same
counts, a top-up asked). The bytes of the compiled writes against the Python bodies are held in
tests/kalshi/test_quote_now.py and test_quote_body.py."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm import protocol
from kmm._core import sigring
from kmm._core.sigring import SigRing
from kmm.kalshi.signing import SignaturePool, Signer
from tests.kalshi.test_quote_now import FIXED_AUTH, FULL, offline, sign_ahead  # noqa: F401 - the fixture
from tests.kalshi.test_rest_loopback import KEY_ID

TS, SIG, KEY = protocol.HDR_TIMESTAMP, protocol.HDR_SIGNATURE, protocol.HDR_KEY


def test_the_rings_header_names_are_the_protocols():
    assert (sigring.HDR_KEY, sigring.HDR_TIMESTAMP, sigring.HDR_SIGNATURE) == (KEY, TS, SIG)


headers_st = st.builds(
    lambda ts, sig, key: {**({KEY: "kid-1"} if key else {}), TS: str(ts), SIG: sig},
    st.integers(0, 10**13), st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=700),
    st.booleans())
ops_st = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 10**12), headers_st),
    st.tuples(st.just("popleft")), st.tuples(st.just("first")), st.tuples(st.just("last")),
    st.tuples(st.just("clear")), st.tuples(st.just("len"))), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=ops_st)
def test_a_ring_is_the_deque_it_replaced(ops):
    """Any sequence of the pool's operations gives the same answers on a ring and on a deque of
    (made_ns, headers) (the ring grows past its first four slots and wraps around)."""
    ring, ref = SigRing("kid-1"), deque()
    for op in ops:
        if op[0] == "append":
            ring.append((op[1], op[2]))
            ref.append((op[1], op[2]))
        elif op[0] == "popleft":
            if ref:
                assert ring.popleft() == ref.popleft()
            else:
                with pytest.raises(IndexError):
                    ring.popleft()
        elif op[0] in ("first", "last"):
            i = 0 if op[0] == "first" else -1
            if ref:
                assert ring[i] == ref[i]
            else:
                with pytest.raises(IndexError):
                    ring[i]
        elif op[0] == "clear":
            ring.clear()
            ref.clear()
        assert len(ring) == len(ref) and bool(ring) == bool(ref)


@settings(max_examples=200, deadline=None)
@given(ages=st.lists(st.integers(0, 20), min_size=0, max_size=12), max_age=st.integers(0, 20))
def test_a_compiled_take_is_the_oldest_fresh_signature_as_its_header_lines(ages, max_age):
    """take_line drops what is older than the limit (counted in ``expired``) and gives the oldest fresh
    signature's two header lines, exactly as the Python take's headers would be written."""
    now = 1_000
    ring = SigRing("kid")
    ref = deque()
    for k, age in enumerate(ages):
        h = {KEY: "kid", TS: str(1700000000000 + k), SIG: f"sig{k}=="}
        ring.append((now - age, h))
        ref.append((now - age, h))
    expired = 0
    while ref and now - ref[0][0] > max_age:
        ref.popleft()
        expired += 1
    got = ring.take_lines(now, max_age)
    if not ref:
        assert got is None and ring.stats.hits == 0
    else:
        _, h = ref.popleft()
        assert got == f"{TS}: {h[TS]}\r\n{SIG}: {h[SIG]}\r\n".encode()
        assert ring.stats.hits == 1 and ring.takes == 1
    assert ring.stats.expired == expired and len(ring) == len(ref)


@pytest.mark.parametrize("headers", [{TS: "1", SIG: "s", "X-Other": "v"}, {TS: "1", SIG: "s\r\nX-Injected: 1"},
                                     {TS: "1", SIG: "s\u00e9"}])
def test_a_ring_refuses_headers_it_could_not_write_as_they_are(headers):
    ring = SigRing("kid")
    with pytest.raises(ValueError):
        ring.append((0, headers))
    assert len(ring) == 0


def pool(rsa_key: Any) -> SignaturePool:
    return SignaturePool(Signer(KEY_ID, rsa_key), [("POST", FULL)], depth=2, mode="thread")


def test_the_pool_keeps_rings_and_counts_the_compiled_takes(rsa_key):
    """A signature taken by a compiled write counts in the pool's hits and in its fixed pair's take
    rate; the pool's take of a signature a ring stored gives the headers the signer made."""
    p = pool(rsa_key)
    p.fill_now()
    ring = p._slots[("POST", FULL)]
    assert type(ring) is SigRing and len(ring) == 2
    assert ring.take_lines(time.monotonic_ns(), p.max_age_ns) is not None
    assert p.stats.hits == 1 and ring.stats is p.stats     # the pool's counters, counted from C
    assert ring.take_lines(time.monotonic_ns(), p.max_age_ns) is not None
    p._last_tick_ns = time.monotonic_ns() - 1_000_000_000  # a second since the last rate tick
    p._update_rates()
    assert p._peak_rate[("POST", FULL)] == pytest.approx(2.0, rel=0.2)   # two takes in the second
    assert p.stats.hits == 2
    # the Python take of a headers dict the ring stored
    p.fill_now()
    h = p.take("POST", FULL)
    assert set(h) == {KEY, TS, SIG} and h[KEY] == KEY_ID and p.stats.hits == 3


def test_a_compiled_take_asks_for_a_top_up_once_until_the_pool_looks(offline):  # noqa: F811
    rest, sent = offline
    ring = rest.pool._slots[("POST", FULL)]
    ring.kicked = False
    kicks = []
    kick = rest.pool._kick
    rest.pool._kick = lambda key: kicks.append(key)        # type: ignore[method-assign]
    try:
        for coid in ("k1", "k2"):
            sign_ahead(rest)
            assert rest.place_quote_now("KXT-0", "bid", 4500, 100, coid, None, lambda *a: None, None,
                                        lambda c: None) == 1
        assert kicks == [("POST", FULL)] and ring.kicked      # once: the pool has not looked since
        rest.pool._request_fill(only=[("POST", FULL)])        # the pool's top-up looks at the pair
        assert not ring.kicked
        sign_ahead(rest)
        rest.place_quote_now("KXT-0", "bid", 4500, 100, "k3", None, lambda *a: None, None, lambda c: None)
        assert kicks == [("POST", FULL)] * 2
    finally:
        rest.pool._kick = kick                                 # type: ignore[method-assign]
        ring.clear()
        sign_ahead(rest)


def test_a_signature_that_aged_out_is_signed_inline_after_the_budget_is_taken(offline, rsa_key):  # noqa: F811
    """The compiled write checks that the pair has a signature (as the Python body does); one that aged
    out since is found at the take: the budget is taken, the request signed inline and written (a
    miss, as the Python take counts it)."""
    rest, sent = offline
    ring = rest.pool._slots[("POST", FULL)]
    ring.clear()
    ring.append((0, FIXED_AUTH))                               # made long ago
    del sent[:]
    places = rest._qw.places
    granted = rest.limiter.granted()["place"]
    assert rest.place_quote_now("KXT-0", "ask", 5500, 300, "aged", None, lambda *a: None, None,
                                lambda c: None) == 1
    assert rest._qw.places == places and rest.limiter.granted()["place"] == granted + 1
    assert len(sent) == 1 and b'"client_order_id":"aged"' in sent[0][0] and len(ring) == 0
    sign_ahead(rest)


def test_an_amend_with_a_target_it_cannot_write_takes_the_python_body(offline):  # noqa: F811
    rest, sent = offline
    del sent[:]
    amends = rest._qw.amends
    assert rest.amend_quote_now("o?x", "KXT-0", "bid", 4500, 100, None, lambda *a: None, None,
                                lambda c: None) == 0                 # the signed path would differ
    assert rest._qw.amends == amends and sent == []


def test_a_failure_before_the_write_puts_the_connection_back(offline):  # noqa: F811
    """Nothing is lost when building the completion fails after the connection and the budget were
    taken: the connection is idle again and the error reaches the caller (nothing was written)."""
    from kmm._core.quotewire import QuoteWire
    from kmm.kalshi import rest as rest_mod
    from kmm.kalshi.limiter import AMEND, PLACE

    class Broken:
        def __init__(self, *a: Any) -> None:
            raise RuntimeError("completion")
    rest, sent = offline
    qw = QuoteWire(rest, rest.fast, rest.pool, rest.limiter, create_key=rest._create_key,
                   create_full=rest._create_full, create_head=rest._create_head, quote_fixed=rest_mod._QUOTE_FIXED,
                   json_str=rest_mod._json_str, quote_tail=rest_mod._quote_tail, quote_answer=Broken,
                   amend_answer=Broken, place_lane=PLACE, amend_lane=AMEND, cost=protocol.COST_DEFAULT,
                   one_dollar=10_000)
    idle = list(rest.fast._idle)
    del sent[:]
    sign_ahead(rest)
    with pytest.raises(RuntimeError):
        qw.place("KXT-0", "bid", 4500, 100, "b1", None, lambda *a: None, None, lambda c: None)
    sign_ahead(rest, f"{FULL}/o9/amend")
    with pytest.raises(RuntimeError):
        qw.amend("o9", "KXT-0", "bid", 4500, 100, None, lambda *a: None, None, lambda c: None)
    assert list(rest.fast._idle) == idle and sent == []


def test_a_write_under_write_pressure_is_refused_with_nothing_taken(offline):  # noqa: F811
    """The frame entry's first request passes the maker's write-pressure bound (``max_pressure``) and
    the market as the fair key: above the bound nothing is taken (no budget, no connection, no
    signature) and the caller decides; at or below it the write counts its grant for that key."""
    rest, sent = offline
    lim = rest.limiter
    del sent[:]
    idle = list(rest.fast._idle)
    sign_ahead(rest)
    ring = rest.pool._slots[("POST", FULL)]
    n_sigs = len(ring)
    tokens = lim._w0.bucket.tokens
    assert lim.pressure() > 0.0 or tokens == lim._w0.bucket.capacity
    lim._w0.bucket.tokens = lim._w0.bucket.capacity * 0.3     # 70 % used
    assert rest._qw.place("KXT-0", "bid", 4500, 100, "p1", None, lambda *a: None, None, lambda c: None,
                          0.5, "KXT-0") == 0
    assert sent == [] and list(rest.fast._idle) == idle and len(ring) == n_sigs
    assert lim._w0.bucket.tokens == pytest.approx(lim._w0.bucket.capacity * 0.3, rel=1e-3)
    assert rest._qw.place("KXT-0", "bid", 4500, 100, "p1", None, lambda *a: None, None, lambda c: None,
                          0.9, "KXT-0") > 0
    assert len(sent) == 1 and lim._fair["KXT-0"][0] >= 1
    lim._w0.bucket.tokens = tokens
    sign_ahead(rest)
