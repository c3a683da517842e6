"""Connector benchmarks (design section 9).

1. frame received -> book updated, ns per message: the compiled BookRouter (kmm._core.wire) against a
   baseline of orjson + a dict book; plus the connector's own dispatch around the router.
2. decision -> request bytes on the socket (create_order), p50/p99, with a pre-made signature from the
   pool against signing inline. The server is a raw asyncio protocol on 127.0.0.1 that stamps the
   monotonic time the request's first bytes arrive and answers a canned 201.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson
import pytest

from kmm._core.fixed import parse_count, parse_price, parse_signed_count
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.loop import run as run_loop
from kmm.kalshi.rest import KalshiRest
from kmm.kalshi.signing import SignaturePool, Signer
from kmm.kalshi.types import OrderRequest
from kmm.kalshi.ws import DELTA, FeedHandler, KalshiWs

N_FRAMES = 20_000


def _frames(n: int, ticker: str = "KXBENCH-1") -> tuple[bytes, list[bytes]]:
    snap = orjson.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {
        "market_ticker": ticker, "market_id": "m",
        "yes_dollars_fp": [[f"0.{40 + i:02d}00", "100.00"] for i in range(10)],
        "no_dollars_fp": [[f"0.{40 + i:02d}00", "100.00"] for i in range(10)]}})
    out = []
    for i in range(n):
        price = f"0.{40 + i % 10:02d}00"
        d = "5.00" if (i // 10) % 2 == 0 else "-5.00"
        out.append(orjson.dumps({"type": "orderbook_delta", "sid": 1, "seq": 2 + i, "msg": {
            "market_ticker": ticker, "market_id": "m", "price_dollars": price, "delta_fp": d,
            "side": "yes" if i % 3 else "no", "ts_ms": 1767225600000 + i}}))
    return snap, out


class DictBook:
    """Baseline: orjson + dict levels + a per-sid seq check, in plain Python."""

    def __init__(self) -> None:
        self.yes: dict[int, int] = {}
        self.no: dict[int, int] = {}
        self.seq = 0

    def feed(self, data: bytes) -> int:
        obj = orjson.loads(data)
        msg = obj["msg"]
        if obj["type"] == "orderbook_snapshot":
            self.yes = {parse_price(p): parse_count(c) for p, c in msg.get("yes_dollars_fp", ())}
            self.no = {parse_price(p): parse_count(c) for p, c in msg.get("no_dollars_fp", ())}
            self.seq = obj["seq"]
            return 1
        if obj["seq"] != self.seq + 1:
            return 3
        self.seq = obj["seq"]
        levels = self.yes if msg["side"] == "yes" else self.no
        price = parse_price(msg["price_dollars"])
        size = levels.get(price, 0) + parse_signed_count(msg["delta_fp"])
        if size:
            levels[price] = size
        else:
            levels.pop(price, None)
        return 2


def test_frame_to_book_baseline_orjson_dict(benchmark):
    snap, deltas = _frames(N_FRAMES)

    def run() -> DictBook:
        book = DictBook()
        book.feed(snap)
        for f in deltas:
            book.feed(f)
        return book

    benchmark.group = "kalshi: frame -> book updated"
    benchmark.extra_info.update(role="baseline", ops=N_FRAMES + 1)
    book = benchmark(run)
    assert book.seq == N_FRAMES + 1 and sum(book.yes.values()) + sum(book.no.values()) > 0


def _real_router():
    try:
        from kmm._core.book import OrderBook
        from kmm._core.wire import BookRouter
    except ImportError:
        pytest.skip("kmm._core.wire / kmm._core.book (branch core-book) not merged yet")
    return BookRouter, OrderBook


def test_frame_to_book_router(benchmark):
    BookRouter, OrderBook = _real_router()
    snap, deltas = _frames(N_FRAMES)

    def run():
        router = BookRouter()
        router.add("KXBENCH-1", OrderBook(None))
        feed = router.feed
        feed(snap, 0)
        for f in deltas:
            feed(f, 0)
        return router

    benchmark.group = "kalshi: frame -> book updated"
    benchmark.extra_info.update(role="kmm", ops=N_FRAMES + 1, label="BookRouter.feed", budget_ns=1500)
    router = benchmark(run)
    assert router.deltas == N_FRAMES and router.gaps == 0 and router.malformed == 0


def test_frame_to_book_through_connector(benchmark):
    """The whole connector path: handle_frame -> router.feed -> on_book callback."""
    BookRouter, OrderBook = _real_router()
    snap, deltas = _frames(N_FRAMES)
    cfg = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                          ws_url="ws://127.0.0.1:1/trade-api/ws/v2")

    class Count(FeedHandler):
        n = 0

        def on_book(self, ticker: str, recv_ns: int) -> None:
            self.n += 1

    def run():
        handler = Count()
        ws = KalshiWs(cfg, handler, router=BookRouter(), book_factory=OrderBook)
        ws.add_markets(["KXBENCH-1"])
        handle = ws.handle_frame
        handle(snap, 0)
        last = 0
        for f in deltas:
            last = handle(f, 0)
        return handler, last

    benchmark.group = "kalshi: frame -> book updated"
    benchmark.extra_info.update(role="kmm", ops=N_FRAMES + 1, label="through KalshiWs.handle_frame + on_book")
    handler, last = benchmark(run)
    assert handler.n == N_FRAMES + 1 and last == DELTA


# -- decision -> request bytes on the socket ---------------------------------------------------------

_RESPONSE = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
             b"Connection: keep-alive\r\n\r\n")
_BODY = orjson.dumps({"order_id": "o-1", "client_order_id": "c", "fill_count": "0.00",
                      "remaining_count": "1.00", "ts_ms": 1})


class _Stamp(asyncio.Protocol):
    """Loopback HTTP/1.1 server: stamps when a request's first bytes arrive, answers once it is complete."""

    def __init__(self, stamps: list[int]) -> None:
        self.stamps = stamps
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.buf:
            self.stamps.append(time.monotonic_ns())
        self.buf += data
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if len(rest) < length:
            return
        self.buf = rest[length:]
        assert self.transport is not None
        self.transport.write(_RESPONSE % len(_BODY) + _BODY)


async def _measure_create(pooled: bool, n: int, rsa_pem: bytes,
                          fast: bool = True) -> tuple[list[int], list[int], KalshiRest]:
    stamps: list[int] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Stamp(stamps), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = ConnectorConfig(env="sim", rest_url=f"http://127.0.0.1:{port}/trade-api/v2",
                          ws_url=f"ws://127.0.0.1:{port}/trade-api/ws/v2", write_rate=1e9, read_rate=1e9,
                          sig_pool_depth=n + 30 if pooled else 0, sig_pool_max_age_s=30.0, fast_writes=fast)
    signer = Signer.from_pem("bench-key", rsa_pem)
    pool = SignaturePool(signer, [], depth=n + 30, max_age_s=30.0)
    rest = KalshiRest(cfg, signer=signer, pool=pool if pooled else None)
    await rest.start()
    if pooled:
        for m, p in rest.hot_pairs():
            pool.add_pair(m, p)
        pool.close()  # keep the worker off the CPU while we measure; fill by hand
        pool.fill_now()
    latencies = []
    written = []
    try:
        for i in range(n + 20):
            req = OrderRequest("KXBENCH-1", "bid", 4500, 100, f"c{i}", post_only=True)
            t0 = time.monotonic_ns()
            ack = await rest.create_order(req)
            assert ack.order_id == "o-1"
            if i >= 20:  # warm-up: connection opened, code paths hot
                latencies.append(stamps[-1] - t0)
                if rest.fast is not None:
                    written.append(rest.fast.last_write_ns - t0)
    finally:
        await rest.close()
        server.close()
        await server.wait_closed()
    return latencies, written, rest


def _pct(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


N_ORDERS = 300


@pytest.mark.parametrize("pooled", [True, False], ids=["presigned", "inline"])
def test_decision_to_request_bytes(benchmark, pooled, rsa_pem):
    result: dict[str, object] = {}

    def run() -> None:
        lat, written, rest = run_loop(_measure_create(pooled, N_ORDERS, rsa_pem))
        result["lat"], result["written"], result["rest"] = lat, written, rest

    benchmark.group = "kalshi: decision -> request bytes (create_order)"   # before the run: pedantic reads it
    benchmark.pedantic(run, rounds=1, iterations=1)
    lat: list[int] = result["lat"]  # type: ignore[assignment]
    rest: KalshiRest = result["rest"]  # type: ignore[assignment]
    written: list[int] = result["written"]  # type: ignore[assignment]
    p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
    benchmark.extra_info.update(role="kmm" if pooled else "baseline", ops=1, p50_ns=p50, p99_ns=p99,
                                p999_ns=_pct(lat, 0.999), mean_ns=statistics.fmean(lat),
                                write_p50_ns=_pct(written, 0.5), write_p99_ns=_pct(written, 0.99),
                                budget_ns=50_000 if pooled else None,
                                unit="create_order call -> first request byte received by the loopback server")
    _RESULTS["pooled" if pooled else "inline"] = p50
    assert len(lat) == N_ORDERS and len(written) == N_ORDERS and all(w > 0 for w in written)
    print(f"\ncreate_order -> bytes on socket ({'pre-signed' if pooled else 'inline signing'}): "
          f"received p50 {p50 / 1e3:.1f} us, p99 {p99 / 1e3:.1f} us; written p50 "
          f"{_pct(written, 0.5) / 1e3:.1f} us, p99 {_pct(written, 0.99) / 1e3:.1f} us")
    if pooled:
        assert rest.pool is not None and rest.pool.stats.hits == N_ORDERS + 20 and rest.pool.stats.misses == 0
        assert p50 <= 50_000, f"p50 {p50} ns over the 50 us budget (design section 9)"
    else:
        assert rest.pool is None
        if "pooled" in _RESULTS:
            ratio = p50 / _RESULTS["pooled"]
            print(f"inline / pre-signed p50 ratio: {ratio:.1f}x")
            assert ratio > 2, "a pre-made signature should take signing off the path"


_RESULTS: dict[str, int] = {}


@pytest.mark.parametrize("fast", [True, False], ids=["fasthttp", "aiohttp"])
def test_order_transport_presigned(benchmark, fast, rsa_pem):
    """Why writes bypass aiohttp: the same pre-signed create through each transport."""
    result: dict[str, object] = {}

    def run() -> None:
        lat, written, rest = run_loop(_measure_create(True, N_ORDERS, rsa_pem, fast=fast))
        result["lat"], result["rest"] = lat, rest

    benchmark.group = "kalshi: order transport, pre-signed create_order -> bytes received"
    benchmark.pedantic(run, rounds=1, iterations=1)
    lat: list[int] = result["lat"]  # type: ignore[assignment]
    rest: KalshiRest = result["rest"]  # type: ignore[assignment]
    p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
    benchmark.extra_info.update(role="kmm" if fast else "baseline", ops=1, p50_ns=p50, p99_ns=p99)
    print(f"\n{'fasthttp' if fast else 'aiohttp'}: p50 {p50 / 1e3:.1f} us, p99 {p99 / 1e3:.1f} us")
    _RESULTS["fast" if fast else "aiohttp"] = p50
    assert len(lat) == N_ORDERS and rest.pool is not None and rest.pool.stats.misses == 0
    assert (rest.fast is not None) == fast
    if not fast and "fast" in _RESULTS:
        assert p50 > _RESULTS["fast"], "the order-path client should beat aiohttp"
