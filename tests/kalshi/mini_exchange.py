"""A tiny scripted Kalshi-like server (aiohttp, 127.0.0.1, ephemeral port) for the connector's loopback tests.

It is not the simulator: no matching, no flow. It verifies signatures exactly as Kalshi describes,
serves the REST shapes of kalshi-api.md with canned state, speaks the WS subscription protocol with
per-sid seq, and lets a test inject faults (error bursts, delays, seq skips, dropped connections,
a stalled feed). Written from the protocol page, independently of kmm.kalshi.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _d(p: int) -> str:
    return f"{p // 10000}.{p % 10000:04d}"


def _c(n: int) -> str:
    return f"{n // 100}.{n % 100:02d}"


class MiniExchange:
    def __init__(self, public_key: Any, key_id: str, tickers: list[str], *, ping_interval_s: float = 10.0) -> None:
        self.public_key = public_key
        self.key_id = key_id
        self.tickers = tickers
        self.ping_interval_s = ping_interval_s
        # book: ticker -> {"yes": {price: size}, "no": {price: size}} (NO prices in NO terms)
        self.books = {t: {"yes": {4000 + 100 * i: 1000 for i in range(3)},
                          "no": {5000 + 100 * i: 500 for i in range(3)}} for t in tickers}
        self.orders: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth_failures = 0
        self.error_burst: list[int] = []
        self.delay_creates = 0.0
        self.delay_count = 0
        self.ws_clients: list[web.WebSocketResponse] = []
        self.ws_connects = 0
        self.stalled = False
        self._sids = itertools.count(1)
        self._seq: dict[int, int] = {}
        self._subs: dict[web.WebSocketResponse, dict[str, tuple[int, set[str]]]] = {}
        self.commands: list[dict[str, Any]] = []
        self.cancel_all_queries: list[dict[str, str]] = []
        self.pongs: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> MiniExchange:
        app = web.Application(middlewares=[self._auth])
        p = "/trade-api/v2"
        r = app.router
        r.add_get(p + "/markets", self.h_markets)
        r.add_get(p + "/markets/{t}", self.h_market)
        r.add_get(p + "/markets/{t}/orderbook", self.h_orderbook)
        r.add_get(p + "/series/{s}", self.h_series)
        r.add_get(p + "/exchange/status", self._const(
            lambda q: self._json({"exchange_active": True, "trading_active": True})))
        r.add_post(p + "/portfolio/events/orders", self.h_create)
        r.add_post(p + "/portfolio/events/orders/batched", self.h_batch_create)
        r.add_delete(p + "/portfolio/events/orders/batched", self.h_batch_cancel)
        r.add_delete(p + "/portfolio/events/orders", self.h_cancel_all)
        r.add_delete(p + "/portfolio/events/orders/{id}", self.h_cancel)
        r.add_post(p + "/portfolio/events/orders/{id}/amend", self.h_amend)
        r.add_post(p + "/portfolio/events/orders/{id}/decrease", self.h_decrease)
        r.add_get(p + "/portfolio/orders", self.h_orders)
        r.add_get(p + "/portfolio/orders/{id}", self.h_order)
        r.add_get(p + "/portfolio/fills", self.h_fills)
        r.add_get(p + "/portfolio/positions", self.h_positions)
        r.add_get(p + "/portfolio/balance", self._const(
            lambda q: self._json({"balance": 100000, "portfolio_value": 5000, "updated_ts": 1})))
        r.add_get(p + "/account/limits", self._const(lambda q: self._json({"usage_tier": "advanced"})))
        r.add_post(p + "/portfolio/order_groups/create", self.h_group_create)
        r.add_get(p + "/portfolio/order_groups", self._const(lambda q: self._json({"order_groups": [{"id": "g1"}]})))
        r.add_get(p + "/portfolio/order_groups/{id}", self._const(
            lambda q: self._json({"id": q.match_info["id"], "contracts_limit": 10})))
        for action in ("reset", "trigger", "limit"):
            r.add_put(p + "/portfolio/order_groups/{id}/" + action, self._const(lambda q: self._json({})))
        r.add_delete(p + "/portfolio/order_groups/{id}", self._const(lambda q: self._json({})))
        r.add_get("/trade-api/ws/v2", self.h_ws)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self.ws_clients):
            await ws.close()
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/trade-api/v2"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/trade-api/ws/v2"

    # -- auth ----------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        h = request.headers
        try:
            ts = h["KALSHI-ACCESS-TIMESTAMP"]
            if h["KALSHI-ACCESS-KEY"] != self.key_id:
                raise InvalidSignature
            if abs(int(ts) - time.time() * 1000) > 60_000:
                raise InvalidSignature
            msg = (ts + request.method + request.path).encode()  # path: no query string
            self.public_key.verify(base64.b64decode(h["KALSHI-ACCESS-SIGNATURE"]), msg, PSS, hashes.SHA256())
        except (KeyError, ValueError, InvalidSignature):
            self.auth_failures += 1
            return self._json({"error": {"code": "unauthorized", "message": "bad signature"}}, 401)
        self.requests.append((request.method, request.path))
        if self.error_burst and request.path != "/trade-api/ws/v2":
            status = self.error_burst.pop(0)
            body = {"error": "too many requests"} if status == 429 else \
                {"error": {"code": "internal", "message": "boom"}}
            return self._json(body, status)
        return await handler(request)

    def _const(self, fn: Any) -> Any:
        async def handler(q: web.Request) -> web.Response:
            return fn(q)
        return handler

    @staticmethod
    def _json(obj: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")

    # -- REST ----------------------------------------------------------------------------------
    async def h_markets(self, q: web.Request) -> web.Response:
        limit = int(q.query.get("limit", 100))
        start = int(q.query.get("cursor") or 0)
        page = self.tickers[start:start + limit]
        nxt = str(start + limit) if start + limit < len(self.tickers) else ""
        return self._json({"markets": [self._market(t) for t in page], "cursor": nxt})

    def _market(self, t: str) -> dict[str, Any]:
        return {"ticker": t, "event_ticker": "EV", "status": "active", "price_level_structure": "linear_cent",
                "price_ranges": [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}],
                "yes_bid_dollars": "0.4200", "yes_ask_dollars": "0.4800", "volume_fp": "0.00",
                "open_interest_fp": "0.00", "close_time": "2030-01-01T00:00:00Z"}

    async def h_market(self, q: web.Request) -> web.Response:
        t = q.match_info["t"]
        if t not in self.books:
            return self._json({"error": {"code": "not_found", "message": "market not found"}}, 404)
        return self._json({"market": self._market(t)})

    async def h_orderbook(self, q: web.Request) -> web.Response:
        b = self.books[q.match_info["t"]]
        return self._json({"orderbook_fp": {"yes_dollars": [[_d(p), _c(s)] for p, s in sorted(b["yes"].items())],
                                            "no_dollars": [[_d(p), _c(s)] for p, s in sorted(b["no"].items())]}})

    async def h_series(self, q: web.Request) -> web.Response:
        return self._json({"series": {"ticker": q.match_info["s"], "fee_type": "quadratic", "fee_multiplier": 1}})

    def _place(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        coid = body["client_order_id"]
        if any(o["client_order_id"] == coid for o in self.orders.values()):
            return {"error": {"code": "order_already_exists", "message": "duplicate client_order_id"}}, 409
        oid = str(uuid.uuid4())
        self.orders[oid] = {"order_id": oid, "client_order_id": coid, "ticker": body["ticker"], "status": "resting",
                            "book_side": body["side"], "yes_price_dollars": body["price"],
                            "initial_count_fp": body["count"], "fill_count_fp": "0.00",
                            "remaining_count_fp": body["count"], "created_ts_ms": 1}
        return {"order_id": oid, "client_order_id": coid, "fill_count": "0.00",
                "remaining_count": body["count"], "ts_ms": 1}, 201

    async def h_create(self, q: web.Request) -> web.Response:
        body = orjson.loads(await q.read())
        resp, status = self._place(body)
        if self.delay_count > 0:
            self.delay_count -= 1
            await asyncio.sleep(self.delay_creates)  # processed, but the answer comes too late
        return self._json(resp, status)

    async def h_batch_create(self, q: web.Request) -> web.Response:
        out = []
        for body in orjson.loads(await q.read())["orders"]:
            resp, status = self._place(body)
            out.append(resp if status == 201 else {"client_order_id": body["client_order_id"], **resp})
        return self._json({"orders": out}, 201)

    def _cancel(self, oid: str) -> dict[str, Any] | None:
        o = self.orders.get(oid)
        if o is None or o["status"] != "resting":
            return None
        o["status"] = "canceled"
        reduced = o["remaining_count_fp"]
        o["remaining_count_fp"] = "0.00"
        return {"order_id": oid, "client_order_id": o["client_order_id"], "reduced_by": reduced, "ts_ms": 2}

    async def h_cancel(self, q: web.Request) -> web.Response:
        r = self._cancel(q.match_info["id"])
        if r is None:
            return self._json({"error": {"code": "not_found", "message": "order not found"}}, 404)
        return self._json(r)

    async def h_batch_cancel(self, q: web.Request) -> web.Response:
        out = []
        for item in orjson.loads(await q.read())["orders"]:
            r = self._cancel(item["order_id"])
            out.append(r if r is not None else {"order_id": item["order_id"],
                                                "error": {"code": "not_found", "message": "order not found"}})
        return self._json({"orders": out})

    async def h_cancel_all(self, q: web.Request) -> web.Response:
        # kalshi-api.md 4.1: every shard, no ticker/event/shard filter, 204 with an empty body
        if set(q.query) - {"subaccount"}:
            return self._json({"error": {"code": "invalid_parameters", "message": f"unknown {sorted(q.query)}"}}, 400)
        self.cancel_all_queries.append(dict(q.query))
        for oid in list(self.orders):
            self._cancel(oid)
        return web.Response(status=204)

    async def h_amend(self, q: web.Request) -> web.Response:
        o = self.orders[q.match_info["id"]]
        body = orjson.loads(await q.read())
        o["yes_price_dollars"] = body["price"]
        o["remaining_count_fp"] = body["count"]
        return self._json({"order_id": o["order_id"], "client_order_id": o["client_order_id"], "ts_ms": 3,
                           "remaining_count": body["count"], "fill_count": "0.00"})

    async def h_decrease(self, q: web.Request) -> web.Response:
        o = self.orders[q.match_info["id"]]
        o["remaining_count_fp"] = orjson.loads(await q.read())["reduce_to"]
        return self._json({"order_id": o["order_id"], "client_order_id": o["client_order_id"],
                           "remaining_count": o["remaining_count_fp"]})

    async def h_orders(self, q: web.Request) -> web.Response:
        ticker = q.query.get("ticker")
        items = [o for o in self.orders.values() if ticker is None or o["ticker"] == ticker]
        limit = int(q.query.get("limit", 100))
        start = int(q.query.get("cursor") or 0)
        nxt = str(start + limit) if start + limit < len(items) else ""
        return self._json({"orders": items[start:start + limit], "cursor": nxt})

    async def h_order(self, q: web.Request) -> web.Response:
        o = self.orders.get(q.match_info["id"])
        if o is None:
            return self._json({"error": {"code": "not_found", "message": "order not found"}}, 404)
        return self._json({"order": o})

    async def h_fills(self, q: web.Request) -> web.Response:
        fills = [{"trade_id": f"t{i}", "order_id": "o", "ticker": self.tickers[0], "book_side": "bid",
                  "yes_price_dollars": "0.4000", "count_fp": "1.00", "fee_cost": "0.0100", "is_taker": True,
                  "ts": 100 + i} for i in range(3)]
        start = int(q.query.get("cursor") or 0)
        nxt = str(start + 2) if start + 2 < len(fills) else ""
        return self._json({"fills": fills[start:start + 2], "cursor": nxt})

    async def h_positions(self, q: web.Request) -> web.Response:
        return self._json({"market_positions": [{"ticker": self.tickers[0], "position_fp": "-2.00",
                                                 "market_exposure_dollars": "1.1000",
                                                 "realized_pnl_dollars": "0.0000", "fees_paid_dollars": "0.0200"}],
                           "event_positions": [], "cursor": ""})

    async def h_group_create(self, q: web.Request) -> web.Response:
        body = orjson.loads(await q.read())
        assert "contracts_limit_fp" in body
        return self._json({"order_group_id": "g1"}, 201)

    # -- WebSocket -----------------------------------------------------------------------------
    async def h_ws(self, q: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(q)
        self.ws_clients.append(ws)
        self.ws_connects += 1
        self._subs[ws] = {}
        pinger = asyncio.get_running_loop().create_task(self._ping(ws))
        try:
            async for m in ws:
                if m.type == WSMsgType.TEXT:
                    await self._command(ws, orjson.loads(m.data))
                elif m.type == WSMsgType.PONG:
                    self.pongs.append(bytes(m.data))
        finally:
            pinger.cancel()
            self.ws_clients.remove(ws)
            self._subs.pop(ws, None)
        return ws

    async def _ping(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.ping_interval_s)
            if not self.stalled and not ws.closed:
                await ws.ping(b"heartbeat")

    async def _send(self, ws: web.WebSocketResponse, obj: dict[str, Any]) -> None:
        if not self.stalled and not ws.closed:
            await ws.send_str(orjson.dumps(obj).decode())

    def _next_seq(self, sid: int) -> int:
        self._seq[sid] = self._seq.get(sid, 0) + 1
        return self._seq[sid]

    async def _snapshot(self, ws: web.WebSocketResponse, sid: int, t: str) -> None:
        b = self.books[t]
        msg: dict[str, Any] = {"market_ticker": t, "market_id": "id-" + t}
        if b["yes"]:
            msg["yes_dollars_fp"] = [[_d(p), _c(s)] for p, s in sorted(b["yes"].items())]
        if b["no"]:
            msg["no_dollars_fp"] = [[_d(p), _c(s)] for p, s in sorted(b["no"].items())]
        await self._send(ws, {"type": "orderbook_snapshot", "sid": sid, "seq": self._next_seq(sid), "msg": msg})

    async def _command(self, ws: web.WebSocketResponse, cmd: dict[str, Any]) -> None:
        self.commands.append(cmd)
        subs = self._subs[ws]
        params = cmd.get("params", {})
        if cmd["cmd"] == "subscribe":
            for ch in params["channels"]:
                sid = next(self._sids)
                tickers = set(params.get("market_tickers") or ())
                subs[ch] = (sid, tickers)
                self._seq[sid] = 1  # the doc example's first snapshot has seq 2
                await self._send(ws, {"id": cmd["id"], "type": "subscribed", "msg": {"channel": ch, "sid": sid}})
                if ch == "orderbook_delta":
                    for t in sorted(tickers):
                        await self._snapshot(ws, sid, t)
        elif cmd["cmd"] == "update_subscription":
            sid = params["sids"][0]
            ch = next(c for c, (s, _) in subs.items() if s == sid)
            tickers = subs[ch][1]
            action = params["action"]
            if action == "add_markets":
                tickers.update(params["market_tickers"])
            elif action == "delete_markets":
                tickers.difference_update(params["market_tickers"])
            await self._send(ws, {"id": cmd["id"], "sid": sid, "seq": self._seq.get(sid, 0), "type": "ok",
                                  "msg": {"market_tickers": sorted(tickers)}})
            if ch == "orderbook_delta" and action in ("add_markets", "get_snapshot"):
                for t in params["market_tickers"]:
                    await self._snapshot(ws, sid, t)
        elif cmd["cmd"] == "unsubscribe":
            for sid in params["sids"]:
                for ch, (s, _) in list(subs.items()):
                    if s == sid:
                        del subs[ch]
                await self._send(ws, {"id": cmd["id"], "sid": sid, "seq": 0, "type": "unsubscribed"})

    # -- scripted events -----------------------------------------------------------------------
    async def push_delta(self, ticker: str, side: str, price: int, delta: int, *, skip_seq: int = 0) -> None:
        """Change the book and send the delta to every subscriber of that market."""
        levels = self.books[ticker][side]
        levels[price] = levels.get(price, 0) + delta
        if levels[price] == 0:
            del levels[price]
        for ws, subs in list(self._subs.items()):
            sub = subs.get("orderbook_delta")
            if sub is None or ticker not in sub[1]:
                continue
            sid = sub[0]
            self._seq[sid] = self._seq.get(sid, 0) + skip_seq
            await self._send(ws, {"type": "orderbook_delta", "sid": sid, "seq": self._next_seq(sid),
                                  "msg": {"market_ticker": ticker, "market_id": "id-" + ticker,
                                          "price_dollars": _d(price), "delta_fp": _c(delta) if delta >= 0
                                          else "-" + _c(-delta), "side": side, "ts_ms": 5}})

    async def push_user(self, typ: str, msg: dict[str, Any]) -> None:
        channel = {"fill": "fill", "user_order": "user_orders", "market_position": "market_positions"}[typ]
        for ws, subs in list(self._subs.items()):
            if channel in subs:
                await self._send(ws, {"type": typ, "sid": subs[channel][0], "msg": msg})

    async def drop_connections(self) -> None:
        for ws in list(self.ws_clients):
            await ws.close()
