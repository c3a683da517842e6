"""A small Kalshi client written for the simulator's tests only (aiohttp + cryptography + orjson).

It is deliberately independent of kmm's connector and of the simulator's own signing helper.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


class SimClient:
    def __init__(self, rest_url: str, ws_url: str, key_id: str | None, private_pem: bytes | None) -> None:
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.prefix = urlsplit(rest_url).path
        self.key_id = key_id
        self.key = serialization.load_pem_private_key(private_pem, None) if private_pem else None
        self.session: aiohttp.ClientSession | None = None
        self.ts_offset_ms = 0
        self.n = 0

    async def __aenter__(self) -> SimClient:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    def headers(self, method: str, path: str) -> dict[str, str]:
        if self.key is None:
            return {}
        ts = str(int(time.time() * 1000) + self.ts_offset_ms)
        sig = self.key.sign((ts + method + path.split("?")[0]).encode(),  # type: ignore[union-attr]
                            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        return {"KALSHI-ACCESS-KEY": self.key_id or "", "KALSHI-ACCESS-TIMESTAMP": ts,
                "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode()}

    async def req(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                  auth: bool = True) -> tuple[int, Any]:
        assert self.session is not None
        full = self.prefix + path
        hdrs = self.headers(method, full) if auth else {}
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        async with self.session.request(method, self.rest_url + path, data=data, headers=hdrs,
                                        params=params) as r:
            raw = await r.read()
            return r.status, (orjson.loads(raw) if raw else None)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.req("GET", path, **kw)

    def order(self, ticker: str, side: str, price: str, count: str, tif: str = "good_till_canceled",
              stp: str = "taker_at_cross", **extra: Any) -> dict[str, Any]:
        self.n += 1
        return {"ticker": ticker, "client_order_id": extra.pop("client_order_id", f"t-{self.n}-{time.time_ns()}"),
                "side": side, "price": price, "count": count, "time_in_force": tif,
                "self_trade_prevention_type": stp, **extra}

    async def place(self, ticker: str, side: str, price: str, count: str, **kw: Any) -> tuple[int, Any]:
        return await self.req("POST", "/portfolio/events/orders", self.order(ticker, side, price, count, **kw))

    async def ws(self, auth: bool = True) -> WsConn:
        assert self.session is not None
        hdrs = self.headers("GET", "/trade-api/ws/v2") if auth else {}
        ws = await self.session.ws_connect(self.ws_url, headers=hdrs, autoping=True)
        return WsConn(ws)


class WsConn:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.id = 0

    async def send(self, cmd: str, params: dict[str, Any] | None = None) -> int:
        self.id += 1
        msg: dict[str, Any] = {"id": self.id, "cmd": cmd}
        if params is not None:
            msg["params"] = params
        await self.ws.send_bytes(orjson.dumps(msg))
        return self.id

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"ws got {msg.type}")
        return orjson.loads(msg.data)  # type: ignore[no-any-return]

    async def recv_until(self, pred: Any, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Every frame up to and including the first that satisfies ``pred``."""
        out = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no matching frame; got {out[-5:]}")
            m = await self.recv(left)
            out.append(m)
            if pred(m):
                return out

    async def drain(self, quiet: float = 0.1) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(await self.recv(quiet))
            except (TimeoutError, asyncio.TimeoutError):
                return out

    async def close(self) -> None:
        await self.ws.close()


class WsBook:
    """A book rebuilt from orderbook_snapshot + orderbook_delta, with seq checks, in integer units."""

    def __init__(self) -> None:
        self.books: dict[str, dict[str, dict[int, int]]] = {}
        self.seq: dict[int, int] = {}

    @staticmethod
    def _p(s: str) -> int:
        whole, _, frac = s.partition(".")
        return int(whole) * 10000 + int((frac + "0000")[:4])

    @staticmethod
    def _c(s: str) -> int:
        neg = s.startswith("-")
        whole, _, frac = s.lstrip("-").partition(".")
        v = int(whole) * 100 + int((frac + "00")[:2])
        return -v if neg else v

    def apply(self, m: dict[str, Any]) -> None:
        t = m.get("type")
        if t not in ("orderbook_snapshot", "orderbook_delta"):
            return
        sid, seq = m["sid"], m["seq"]
        if t == "orderbook_delta":
            assert self.seq.get(sid, 0) + 1 == seq, f"seq gap on sid {sid}: {self.seq.get(sid)} -> {seq}"
        self.seq[sid] = seq
        msg = m["msg"]
        if t == "orderbook_snapshot":
            self.books[msg["market_ticker"]] = {
                "yes": {self._p(p): self._c(c) for p, c in msg.get("yes_dollars_fp", [])},
                "no": {self._p(p): self._c(c) for p, c in msg.get("no_dollars_fp", [])}}
            return
        side = self.books[msg["market_ticker"]][msg["side"]]
        p = self._p(msg["price_dollars"])
        side[p] = side.get(p, 0) + self._c(msg["delta_fp"])
        assert side[p] >= 0, f"negative level {msg}"
        if side[p] == 0:
            del side[p]

    def levels(self, ticker: str) -> dict[str, list[tuple[int, int]]]:
        b = self.books[ticker]
        return {"yes": sorted(b["yes"].items()), "no": sorted(b["no"].items())}
