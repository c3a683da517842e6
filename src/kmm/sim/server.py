"""REST (/trade-api/v2) and WebSocket (/trade-api/ws/v2) on one aiohttp server.

Request path: fault injection (error bursts, delays) -> signature check -> token bucket -> handler.
Handlers parse the wire themselves (kmm.sim.wire), call the engine, then flush the engine's events to the
WebSocket hub before answering, so a client that sees the REST answer can rely on the frames being queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
from aiohttp import WSMsgType, web

from kmm import protocol
from kmm.sim.engine import ASK, BID, EXCHANGE_PAUSE, RESTING, Account, Order, order_wire
from kmm.sim.hub import CHANNELS, PRIVATE_CHANNELS, WS_ERRORS, Conn, Sub
from kmm.sim.ratelimit import COST_CANCEL, COST_CANCEL_ALL, DEFAULT_COST, ENDPOINT_COSTS, RateLimiter
from kmm.sim.rejects import Reject
from kmm.sim.wire import (WireError, fmt_count, fmt_money, fmt_price, parse_count, parse_int_param, parse_price,
                          rfc3339)

if TYPE_CHECKING:
    from kmm.sim.exchange import SimExchange

log = logging.getLogger(__name__)

P = protocol.API_PREFIX
# Shard names as Kalshi's /exchange/status describes them (kalshi-api.md 10; [U] for 2 and 3 after Sep 10).
SHARD_NAMES = {0: "Default", 1: "Exotics", 2: "Crypto and commodities", 3: "Tennis, baseball and basketball"}
MAX_BATCH = 20  # [U] V2 batch size limit (V1 documented 20)
MAX_LIMIT = 1000
# [U] Kalshi documents no limit on client_order_id; the simulator takes at most 64 printable ASCII characters
# with no whitespace (UUIDs and the usual prefixes fit) and answers 400 invalid_parameters otherwise.
MAX_COID_LEN = 64
MAX_SUBACCOUNT = 32  # [U] subaccount numbers 0 (primary) .. 32

# Body fields each write accepts (SDK request models); anything else is refused, like "type": "market".
CREATE_FIELDS = frozenset({"ticker", "client_order_id", "side", "count", "count_fp", "price", "time_in_force",
                           "self_trade_prevention_type", "expiration_time", "post_only", "reduce_only",
                           "cancel_order_on_pause", "subaccount", "order_group_id", "exchange_index"})
AMEND_FIELDS = frozenset({"ticker", "side", "price", "count", "count_fp", "client_order_id",
                          "updated_client_order_id", "expiration_time", "exchange_index", "subaccount"})
DECREASE_FIELDS = frozenset({"reduce_by", "reduce_to", "reduce_by_fp", "reduce_to_fp", "exchange_index",
                             "market_ticker", "subaccount"})
BATCH_CANCEL_ITEM_FIELDS = frozenset({"order_id", "subaccount", "exchange_index", "market_ticker"})
GROUP_CREATE_FIELDS = frozenset({"contracts_limit", "contracts_limit_fp", "subaccount", "exchange_index"})
GROUP_LIMIT_FIELDS = frozenset({"contracts_limit", "contracts_limit_fp", "exchange_index", "subaccount"})
TRANSFER_FIELDS = frozenset({"source", "destination", "amount", "source_exchange_shard",
                             "destination_exchange_shard", "source_subaccount", "destination_subaccount",
                             "client_transfer_id"})

ACCOUNT_KEY = web.RequestKey("account", object)
BODY_KEY = web.RequestKey("body", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _reject(r: Reject) -> web.Response:
    return _json(r.body(), status=r.status)


def _bad(field: str, reason: str, code: str = "invalid_parameters") -> Reject:
    return Reject(code, f"{field}: {reason}")


# -- request field helpers -----------------------------------------------------------------------
def _req(body: dict[str, Any], field: str) -> Any:
    v = body.get(field)
    if v is None:
        raise Reject("missing_parameters", f"{field} is required")
    return v


def _str(body: dict[str, Any], field: str, required: bool = True) -> str | None:
    v = _req(body, field) if required else body.get(field)
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise _bad(field, "expected a non-empty string")
    if len(v) > 256 or not v.isprintable():
        raise _bad(field, f"{v[:24]!r}... is too long or holds control characters")
    return v


def _coid(body: dict[str, Any], field: str = "client_order_id", required: bool = False) -> str | None:
    v = _str(body, field, required)
    if v is None:
        return None
    if len(v) > MAX_COID_LEN or not v.isascii() or any(c.isspace() for c in v):
        raise _bad(field, f"must be 1..{MAX_COID_LEN} printable ASCII characters without whitespace")
    return v


def _fields(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = set(body) - allowed
    if extra:
        raise _bad(where, f"unknown field(s) {', '.join(sorted(repr(x)[:40] for x in extra))}")


def _int_field(body: dict[str, Any], field: str, lo: int, hi: int) -> int | None:
    v = body.get(field)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(field, f"expected an integer in {lo}..{hi}, got {str(v)[:24]!r}")
    return v


def _subaccount(body: dict[str, Any], field: str = "subaccount") -> int | None:
    return _int_field(body, field, 0, MAX_SUBACCOUNT)


def _shard_field(body: dict[str, Any], field: str = "exchange_index") -> int | None:
    """``exchange_index``: >= 0 a shard, -1 route by ticker (returned as None), omitted None."""
    v = _int_field(body, field, -1, 1 << 15)
    return None if v is None or v < 0 else v


def _bool(body: dict[str, Any], field: str) -> bool:
    v = body.get(field, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _bad(field, f"expected true or false, got {v!r}")
    return v


def _enum(body: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    v = _req(body, field)
    if v not in allowed:
        raise _bad(field, f"{str(v)[:40]!r} is not one of {', '.join(allowed)}")
    return str(v)


def _price(body: dict[str, Any], field: str = "price") -> int:
    try:
        return parse_price(_req(body, field), field)
    except WireError as e:
        raise Reject("invalid_price", str(e)) from None


def _count(body: dict[str, Any], field: str = "count", fp_field: str | None = "count_fp",
           required: bool = True) -> int | None:
    raw = body.get(field)
    raw_fp = body.get(fp_field) if fp_field else None
    if raw is None and raw_fp is None:
        if required:
            raise Reject("missing_parameters", f"{field} is required")
        return None
    try:
        a = parse_count(raw, field) if raw is not None else None
        b = parse_count(raw_fp, fp_field or field) if raw_fp is not None else None
    except WireError as e:
        raise Reject("invalid_count", str(e)) from None
    if a is not None and b is not None and a != b:
        raise Reject("invalid_count", f"{field} and {fp_field} disagree")
    return a if a is not None else b


def _side(body: dict[str, Any]) -> int:
    return BID if _enum(body, "side", (protocol.SIDE_BID, protocol.SIDE_ASK)) == protocol.SIDE_BID else ASK


def _int_q(req: web.Request, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    v = req.query.get(name)
    if v is None or v == "":
        return None
    try:
        return parse_int_param(v, name, lo, hi)
    except WireError as e:
        raise _bad(name, e.reason) from None


def _shard_q(req: web.Request) -> int | None:
    v = _int_q(req, "exchange_index", -1, 1 << 15)
    return None if v is None or v < 0 else v


def _sub_q(req: web.Request) -> int | None:
    return _int_q(req, "subaccount", 0, MAX_SUBACCOUNT)


def _page(req: web.Request, items: list[Any], default: int = 100) -> tuple[list[Any], str]:
    got = _int_q(req, "limit")
    limit = default if got is None else got
    if limit < 1 or limit > MAX_LIMIT:
        raise _bad("limit", f"must be within 1..{MAX_LIMIT}")
    cur = req.query.get("cursor") or "0"
    if not (cur.isascii() and cur.isdigit() and len(cur) <= 12):
        raise _bad("cursor", f"{cur[:24]!r} is not a cursor this server issued")
    start = int(cur)
    page = items[start:start + limit]
    nxt = str(start + limit) if start + limit < len(items) else ""
    return page, nxt


def _fill_summary(o: Order) -> dict[str, Any]:
    d: dict[str, Any] = {"fill_count": fmt_count(o.filled), "remaining_count": fmt_count(o.remaining)}
    if o.filled:
        # taker_cost is in the bought side's terms; report the YES price, rounded to $0.0001
        avg_paid = (o.taker_cost + o.maker_cost) * 100 // o.filled
        d["average_fill_price"] = fmt_price(avg_paid if o.side == BID else 10000 - avg_paid)
        d["average_fee_paid"] = fmt_money((o.taker_fees + o.maker_fees) * 100 // o.filled)
    return d


class Api:
    """The route handlers; one instance per exchange."""

    def __init__(self, sim: SimExchange) -> None:
        self.sim = sim
        self.engine = sim.engine

    # -- plumbing --------------------------------------------------------------------------------
    def flush(self) -> None:
        self.sim.flush()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware],  # type: ignore[list-item]
                              client_max_size=4 * 1024 * 1024)
        r = app.router
        g, po, de, pu = r.add_get, r.add_post, r.add_delete, r.add_put
        g(P + "/exchange/status", self.exchange_status)
        g(P + "/exchange/schedule", self.exchange_schedule)
        g(P + "/markets", self.markets)
        g(P + "/markets/trades", self.trades)
        g(P + "/markets/orderbooks", self.orderbooks)  # before /markets/{ticker}, which would swallow it
        g(P + "/markets/{ticker}", self.market)
        g(P + "/markets/{ticker}/orderbook", self.orderbook)
        g(P + "/series", self.series_list)
        g(P + "/series/fee_changes", self.fee_changes)  # before /series/{ticker}
        g(P + "/series/{ticker}", self.series)
        g(P + "/events", self.events)
        g(P + "/events/{ticker}", self.event)
        g(P + "/historical/cutoff", self.historical_cutoff)
        g(P + "/account/endpoint_costs", self.endpoint_costs)
        g(P + "/incentive_programs", self.incentive_programs)
        po(P + "/portfolio/events/orders/batched", self.batch_create)
        de(P + "/portfolio/events/orders/batched", self.batch_cancel)
        po(P + "/portfolio/events/orders", self.create_order)
        de(P + "/portfolio/events/orders", self.cancel_all)
        de(P + "/portfolio/events/orders/{id}", self.cancel_order)
        po(P + "/portfolio/events/orders/{id}/amend", self.amend_order)
        po(P + "/portfolio/events/orders/{id}/decrease", self.decrease_order)
        g(P + "/portfolio/orders/queue_positions", self.queue_positions)
        g(P + "/portfolio/orders", self.list_orders)
        g(P + "/portfolio/orders/{id}", self.get_order)
        g(P + "/portfolio/orders/{id}/queue_position", self.queue_position)
        # V1 order entry: retired (kalshi-api.md 0, 4.2)
        po(P + "/portfolio/orders", self.v1_gone)
        po(P + "/portfolio/orders/batched", self.v1_gone)
        de(P + "/portfolio/orders/batched", self.v1_gone)
        de(P + "/portfolio/orders/{id}", self.v1_gone)
        po(P + "/portfolio/orders/{id}/amend", self.v1_gone)
        po(P + "/portfolio/orders/{id}/decrease", self.v1_gone)
        g(P + "/portfolio/balance", self.balance)
        g(P + "/portfolio/positions", self.positions)
        g(P + "/portfolio/fills", self.fills)
        g(P + "/portfolio/settlements", self.settlements)
        po(P + "/portfolio/intra_exchange_instance_transfer", self.transfer)
        g(P + "/portfolio/intra_exchange_instance_transfers", self.transfer_list)
        g(P + "/portfolio/intra_exchange_instance_transfers/{id}", self.transfer_get)
        po(P + "/portfolio/target_balance_allocation", self.allocation_set)
        g(P + "/portfolio/target_balance_allocation", self.allocation_get)
        po(P + "/portfolio/order_groups/create", self.group_create)
        g(P + "/portfolio/order_groups", self.group_list)
        g(P + "/portfolio/order_groups/{id}", self.group_get)
        de(P + "/portfolio/order_groups/{id}", self.group_delete)
        pu(P + "/portfolio/order_groups/{id}/reset", self.group_reset)
        pu(P + "/portfolio/order_groups/{id}/trigger", self.group_trigger)
        pu(P + "/portfolio/order_groups/{id}/limit", self.group_limit)
        g(P + "/account/limits", self.account_limits)
        g(protocol.WS_PATH, self.websocket)
        return app

    PUBLIC_PREFIXES = (P + "/markets", P + "/series", P + "/exchange", P + "/events", P + "/historical/cutoff",
                       P + "/account/endpoint_costs", P + "/incentive_programs")

    @web.middleware
    async def middleware(self, req: web.Request, handler: Handler) -> web.StreamResponse:
        sim = self.sim
        faults = sim.faults
        sim.stats_rest["requests"] += 1
        if req.path == protocol.WS_PATH:
            return await handler(req)
        if faults.error_burst_left > 0:
            faults.error_burst_left -= 1
            status = faults.error_burst_status
            sim.stats_rest[f"fault_{status}"] += 1
            if status == 429:
                return _json({"error": "too many requests"}, status=429)
            return _json(Reject("internal_error", "injected fault").body(), status=status)
        hit = faults.intercept(req.method, req.path)
        if hit is not None:
            return _json(hit[1], status=hit[0])
        if faults.delay_left > 0:
            faults.delay_left -= 1
            await asyncio.sleep(faults.delay_s)
        try:
            # the signature covers the path as sent (percent-encoding kept), not aiohttp's decoded path
            key_id = sim.verifier.verify(req.headers, req.method, req.raw_path.split("?", 1)[0])
            if key_id is None and not req.path.startswith(self.PUBLIC_PREFIXES):
                raise Reject("missing_auth", "this endpoint needs a signed request")
            req[ACCOUNT_KEY] = sim.engine.accounts.get(key_id) if key_id else None
            kind, cost, shard = await self._cost(req)
            if not sim.limiter.take(key_id or "anonymous:" + (req.remote or ""), kind, cost, shard):
                sim.stats_rest["429"] += 1
                return _json({"error": "too many requests"}, status=429)
            return await handler(req)
        except Reject as r:
            if r.status >= 400:
                sim.stats_rest[str(r.status)] += 1
            return _reject(r)
        except web.HTTPException:
            raise
        except Exception:  # a bug here must not kill the server; say so loudly
            log.exception("sim: handler failed for %s %s", req.method, req.path)
            return _reject(Reject("internal_error", "the simulator failed on this request; see its log"))

    async def _cost(self, req: web.Request) -> tuple[str, int, int | None]:
        """(bucket kind, tokens, shard of the write bucket or None for the unscoped one) (kalshi-api.md 5)."""
        path, method = req.path, req.method
        if method == "GET" or not path.startswith((P + "/portfolio/events/orders", P + "/portfolio/order_groups")):
            return "read", DEFAULT_COST, None
        if path.endswith("/batched"):  # every batch bills the unscoped bucket, item by item
            body = await self._body(req)
            raw = body.get("orders") if isinstance(body.get("orders"), list) else body.get("ids")
            items = raw if isinstance(raw, list) else []
            per = COST_CANCEL if method == "DELETE" else DEFAULT_COST
            return "write", per * max(1, len(items)), None
        if method == "DELETE" and path == P + "/portfolio/events/orders":
            return "write", COST_CANCEL_ALL, None
        # a single write named to a shard >= 1 bills that shard's bucket
        if method == "DELETE":
            shard = _shard_q(req)
        else:
            body = await self._body(req)
            shard = _shard_field(body) if isinstance(body.get("exchange_index"), int) else None
        if method == "DELETE" and path.startswith(P + "/portfolio/events/orders/"):
            return "write", COST_CANCEL, shard
        return "write", DEFAULT_COST, shard

    async def _body(self, req: web.Request) -> dict[str, Any]:
        if BODY_KEY in req:
            return cast(dict[str, Any], req[BODY_KEY])
        raw = await req.read()
        if not raw:
            body: Any = {}
        else:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise Reject("invalid_json", str(e)) from None
        if not isinstance(body, dict):
            raise Reject("invalid_json", "the body must be a JSON object")
        req[BODY_KEY] = body
        return body

    def _account(self, req: web.Request) -> Account:
        a = req.get(ACCOUNT_KEY)
        if a is None:
            raise Reject("missing_auth", "this endpoint needs a signed request")
        return cast(Account, a)

    # -- market data -----------------------------------------------------------------------------
    def _shard_status(self, shard: int) -> dict[str, Any]:
        state = self.engine.paused[shard]
        return {"exchange_index": shard, "description": SHARD_NAMES.get(shard, f"shard {shard}"),
                "exchange_active": state != EXCHANGE_PAUSE, "trading_active": state is None,
                "intra_exchange_transfers_active": self.engine.transfers_active}

    async def exchange_status(self, req: web.Request) -> web.Response:
        """Top level = shard 0 (kalshi-api.md 4.7); one ``exchange_index_statuses`` row per shard."""
        rows = [self._shard_status(i) for i in range(self.engine.n_shards)]
        top = rows[0]
        return _json({"exchange_active": top["exchange_active"], "trading_active": top["trading_active"],
                      "exchange_estimated_resume_time": None,
                      "intra_exchange_transfers_active": self.engine.transfers_active,
                      "exchange_index_statuses": rows})

    async def exchange_schedule(self, req: web.Request) -> web.Response:
        """Open around the clock except the weekly Thursday 03:00-05:00 ET trading pause (kalshi-api.md 4.7).
        [U] The simulator lists the pause as a maintenance window only when one is scheduled by a test."""
        days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        hours: dict[str, Any] = {"start_time": "2026-01-01T00:00:00Z", "end_time": "2027-01-01T00:00:00Z"}
        for d in days:
            hours[d] = ([{"open_time": "00:00", "close_time": "03:00"}, {"open_time": "05:00", "close_time": "23:59"}]
                        if d == "thursday" else [{"open_time": "00:00", "close_time": "23:59"}])
        windows = [{"start_datetime": rfc3339(a), "end_datetime": rfc3339(b)}
                   for a, b in self.sim.maintenance_windows]
        return _json({"schedule": {"standard_hours": [hours], "maintenance_windows": windows}})

    _STATUS_FILTER = {"unopened": ("initialized",), "open": ("active",), "closed": ("closed", "inactive"),
                      "settled": ("determined", "finalized")}

    async def markets(self, req: web.Request) -> web.Response:
        q = req.query
        ms = list(self.engine.markets.values())
        if "status" in q:
            want: tuple[str, ...] = ()
            paused = False
            for s in q["status"].split(","):
                if s == "paused":  # active markets on a shard in a trading or exchange pause
                    paused = True
                    continue
                if s not in self._STATUS_FILTER:
                    raise _bad("status", f"{s!r} is not one of unopened, open, closed, settled, paused")
                want += self._STATUS_FILTER[s]
            ms = [m for m in ms if m.status in want
                  or (paused and m.status == "active" and self.engine.paused[m.shard] is not None)]
        if q.get("event_ticker"):
            ev = set(q["event_ticker"].split(","))
            ms = [m for m in ms if m.spec.event_ticker in ev]
        if q.get("series_ticker"):
            ms = [m for m in ms if m.spec.series_ticker == q["series_ticker"]]
        if q.get("tickers"):
            ts = set(q["tickers"].split(","))
            ms = [m for m in ms if m.ticker in ts]
        page, cursor = _page(req, ms)
        return _json({"markets": [m.to_wire() for m in page], "cursor": cursor})

    async def market(self, req: web.Request) -> web.Response:
        return _json({"market": self.engine.market(req.match_info["ticker"]).to_wire()})

    async def orderbooks(self, req: web.Request) -> web.Response:
        """GET /markets/orderbooks?tickers=A,B (at most 100)."""
        raw = req.query.get("tickers", "")
        tickers = [t for t in raw.split(",") if t]
        if not tickers:
            raise Reject("missing_parameters", "tickers is required (a comma list of up to 100)")
        if len(tickers) > 100:
            raise _bad("tickers", f"{len(tickers)} tickers; at most 100")
        out = []
        for t in tickers:
            yes, no = self.engine.market(t).book_levels()
            out.append({"ticker": t, "orderbook_fp": {"yes_dollars": [[fmt_price(p), fmt_count(q)] for p, q in yes],
                                                      "no_dollars": [[fmt_price(p), fmt_count(q)] for p, q in no]}})
        return _json({"orderbooks": out})

    async def orderbook(self, req: web.Request) -> web.Response:
        m = self.engine.market(req.match_info["ticker"])
        depth = _int_q(req, "depth")
        if depth is not None and not 0 <= depth <= 100:
            raise _bad("depth", "must be within 0..100")
        yes, no = m.book_levels()
        if depth:
            yes, no = yes[-depth:], no[-depth:]
        return _json({"orderbook_fp": {"yes_dollars": [[fmt_price(p), fmt_count(s)] for p, s in yes],
                                       "no_dollars": [[fmt_price(p), fmt_count(s)] for p, s in no]}})

    async def trades(self, req: web.Request) -> web.Response:
        ticker = req.query.get("ticker")
        lo, hi = _int_q(req, "min_ts"), _int_q(req, "max_ts")
        ms = [self.engine.market(ticker)] if ticker else list(self.engine.markets.values())
        out = [t for m in ms for t in m.trades
               if (lo is None or t["ts"] >= lo) and (hi is None or t["ts"] <= hi)]
        out.sort(key=lambda t: t["ts_ms"])  # stable: same-ms trades keep their order
        out.reverse()
        page, cursor = _page(req, out)
        return _json({"trades": page, "cursor": cursor})

    def _series_wire(self, t: str, m: Any) -> dict[str, Any]:
        spec = m.spec
        return {"ticker": t, "frequency": "custom", "title": f"Simulated series {t}", "category": spec.category,
                "categories": [spec.category], "tags": [], "settlement_sources": [{"name": "kmm sim",
                                                                                   "url": "http://127.0.0.1/"}],
                "contract_url": f"http://127.0.0.1/contracts/{t}.pdf",
                "contract_terms_url": f"http://127.0.0.1/contracts/{t}-terms.pdf",
                "fee_type": spec.fee_type, "fee_multiplier": float(spec.fee_multiplier),
                "additional_prohibitions": [], "exchange_index": m.shard,
                "last_updated_ts": rfc3339(m.open_ms)}

    def _series_all(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.engine.markets.values():
            out.setdefault(m.spec.series_ticker, m)
        return out

    async def series(self, req: web.Request) -> web.Response:
        t = req.match_info["ticker"]
        m = self._series_all().get(t)
        if m is None:
            raise Reject("not_found", f"no series {t!r}")
        return _json({"series": self._series_wire(t, m)})

    async def series_list(self, req: web.Request) -> web.Response:
        cat = req.query.get("category")
        _int_q(req, "min_updated_ts", 0)
        rows = [self._series_wire(t, m) for t, m in self._series_all().items()
                if not cat or m.spec.category == cat]
        if req.query.get("include_volume") == "true":
            for r in rows:
                r["volume_fp"] = fmt_count(sum(m.volume for m in self.engine.markets.values()
                                               if m.spec.series_ticker == r["ticker"]))
        return _json({"series": rows})

    async def fee_changes(self, req: web.Request) -> web.Response:
        """GET /series/fee_changes: the simulator schedules no fee changes."""
        return _json({"series_fee_change_arr": []})

    def _events_all(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for m in self.engine.markets.values():
            out.setdefault(m.spec.event_ticker, []).append(m)
        return out

    def _event_wire(self, et: str, ms: list[Any], nested: bool) -> dict[str, Any]:
        first = ms[0].spec
        me = first.mutually_exclusive
        d: dict[str, Any] = {"event_ticker": et, "series_ticker": first.series_ticker,
                             "title": f"Simulated event {et}", "sub_title": "",
                             "collateral_return_type": "MECNET" if me else "", "mutually_exclusive": me,
                             "settlement_sources": [{"name": "kmm sim", "url": "http://127.0.0.1/"}],
                             "category": first.category, "exchange_index": ms[0].shard,
                             "strike_period": "", "available_on_brokers": False}
        if nested:
            d["markets"] = [m.to_wire() for m in ms]
        return d

    async def events(self, req: web.Request) -> web.Response:
        q = req.query
        evs = self._events_all()
        limit = _int_q(req, "limit", 1, 200)
        nested = q.get("with_nested_markets") == "true"
        rows = []
        wanted = set(filter(None, q.get("tickers", "").split(",")))  # event tickers
        for et, ms in evs.items():
            if wanted and et not in wanted:
                continue
            if q.get("series_ticker") and ms[0].spec.series_ticker != q["series_ticker"]:
                continue
            if q.get("status"):
                want = self._STATUS_FILTER.get(q["status"])
                if want is None:
                    raise _bad("status", f"{q['status']!r} is not one of unopened, open, closed, settled")
                if not any(m.status in want for m in ms):
                    continue
            rows.append(self._event_wire(et, ms, nested))
        page, cursor = _page(req, rows, default=limit or 200)
        return _json({"events": page, "cursor": cursor})

    async def event(self, req: web.Request) -> web.Response:
        et = req.match_info["ticker"]
        ms = self._events_all().get(et)
        if ms is None:
            raise Reject("not_found", f"no event {et!r}")
        return _json({"event": self._event_wire(et, ms, True), "markets": [m.to_wire() for m in ms]})

    async def historical_cutoff(self, req: web.Request) -> web.Response:
        """Nothing in the simulator is old enough for the historical tier: the cutoffs are its start."""
        t = rfc3339(self.sim.started_ms)
        return _json({"market_settled_ts": t, "trades_created_ts": t, "orders_updated_ts": t,
                      "market_positions_last_updated_ts": t})

    _PROGRAM_STATUS = ("all", "active", "upcoming", "closed", "paid_out")
    _PROGRAM_TYPES = ("all", "liquidity", "volume", "margin_maker_volume")

    async def incentive_programs(self, req: web.Request) -> web.Response:
        """GET /incentive_programs?status&type&limit&cursor (kalshi-api.md 11): the configured programs,
        filtered; the cursor comes back as ``next_cursor``."""
        q = req.query
        status = q.get("status", "all")
        kind = q.get("type", "all")
        if status not in self._PROGRAM_STATUS:
            raise _bad("status", f"{status!r} is not one of {', '.join(self._PROGRAM_STATUS)}")
        if kind not in self._PROGRAM_TYPES:
            raise _bad("type", f"{kind!r} is not one of {', '.join(self._PROGRAM_TYPES)}")
        now = time.time()
        rows = []
        for p in self.sim.cfg.incentive_programs:
            start = datetime.fromisoformat(p["start_date"].replace("Z", "+00:00")).timestamp()
            end = datetime.fromisoformat(p["end_date"].replace("Z", "+00:00")).timestamp()
            state = ("paid_out" if p.get("paid_out") else "upcoming" if now < start
                     else "active" if now < end else "closed")
            if (status == "all" or status == state) and (kind == "all" or kind == p["incentive_type"]):
                rows.append(p)
        page, cursor = _page(req, rows, default=100)
        body: dict[str, Any] = {"incentive_programs": page}
        if cursor:
            body["next_cursor"] = cursor
        return _json(body)

    async def endpoint_costs(self, req: web.Request) -> web.Response:
        return _json({"default_cost": DEFAULT_COST,
                      "endpoint_costs": [{"method": m, "path": P + p, "cost": c} for m, p, c in ENDPOINT_COSTS]})

    # -- orders ----------------------------------------------------------------------------------
    def _place(self, a: Account, body: dict[str, Any]) -> Order:
        if not isinstance(body, dict):
            raise Reject("invalid_order", "each order must be a JSON object")
        _fields(body, CREATE_FIELDS, "order")
        ticker = _str(body, "ticker")
        coid = _coid(body, required=True)
        side = _side(body)
        count = _count(body)
        price = _price(body)
        tif = _enum(body, "time_in_force", protocol.TIME_IN_FORCE)
        stp = _enum(body, "self_trade_prevention_type", protocol.SELF_TRADE_PREVENTION)
        exp = _int_field(body, "expiration_time", 1, 10**11)
        sub = _subaccount(body) or 0
        shard = _shard_field(body)
        assert ticker is not None and coid is not None and count is not None
        return self.engine.place(a, ticker, side, price, count, coid=coid, tif=tif, stp=stp,
                                 post_only=_bool(body, "post_only"), reduce_only=_bool(body, "reduce_only"),
                                 cancel_on_pause=_bool(body, "cancel_order_on_pause"), expiration_s=exp,
                                 group_id=_str(body, "order_group_id", required=False), subaccount=sub,
                                 exchange_index=shard)

    def _placed(self, o: Order) -> dict[str, Any]:
        d = {"order_id": o.id, "client_order_id": o.coid, **_fill_summary(o), "ts_ms": o.updated_ms}
        return d

    async def create_order(self, req: web.Request) -> web.Response:
        a = self._account(req)
        body = await self._body(req)
        try:
            o = self._place(a, body)
        finally:
            self.flush()
        return _json(self._placed(o), status=201)

    async def batch_create(self, req: web.Request) -> web.Response:
        a = self._account(req)
        items = (await self._body(req)).get("orders")
        if not isinstance(items, list) or not items:
            raise Reject("missing_parameters", "orders must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise _bad("orders", f"at most {MAX_BATCH} orders per batch")
        out = []
        for item in items:
            try:
                out.append(self._placed(self._place(a, item)))
            except Reject as r:
                out.append({"order_id": None,
                            "client_order_id": item.get("client_order_id") if isinstance(item, dict) else None,
                            "error": r.flat()})
        self.flush()
        return _json({"orders": out}, status=201)

    def _cancelled(self, o: Order, reduced: int) -> dict[str, Any]:
        return {"order_id": o.id, "client_order_id": o.coid, "reduced_by": fmt_count(reduced),
                "ts_ms": o.updated_ms}

    def _route(self, shard: int | None, ticker: Any) -> int:
        """The shard a write on an existing order goes to: named, else by ``market_ticker``, else 0."""
        if ticker is not None and not isinstance(ticker, str):
            raise _bad("market_ticker", "expected a ticker string")
        return self.engine.shard_of(shard, ticker or None)

    async def cancel_order(self, req: web.Request) -> web.Response:
        a = self._account(req)
        _sub_q(req)
        shard = self._route(_shard_q(req), req.query.get("market_ticker"))
        try:
            o, reduced = self.engine.cancel(a, req.match_info["id"], shard)
        finally:
            self.flush()
        return _json(self._cancelled(o, reduced))

    async def batch_cancel(self, req: web.Request) -> web.Response:
        a = self._account(req)
        body = await self._body(req)
        items = body.get("orders")
        if items is None and isinstance(body.get("ids"), list):
            items = [{"order_id": i} for i in body["ids"]]
        if not isinstance(items, list) or not items:
            raise Reject("missing_parameters", "orders must be a non-empty list of {order_id}")
        if len(items) > MAX_BATCH:
            raise _bad("orders", f"at most {MAX_BATCH} orders per batch")
        out = []
        for item in items:
            oid = item.get("order_id") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict):
                    raise Reject("invalid_parameters", "each item must be an object {order_id, ...}")
                _fields(item, BATCH_CANCEL_ITEM_FIELDS, "orders[]")
                if not isinstance(oid, str) or not oid:
                    raise Reject("missing_parameters", "order_id is required")
                _subaccount(item)
                shard = self._route(_shard_field(item), item.get("market_ticker"))
                o, reduced = self.engine.cancel(a, oid, shard)
                out.append(self._cancelled(o, reduced))
            except Reject as r:
                # a failed item keeps reduced_by (required by the SDK) and has no ts_ms
                out.append({"order_id": oid if isinstance(oid, str) else "", "reduced_by": "0.00",
                            "error": r.flat()})
        self.flush()
        return _json({"orders": out})

    async def cancel_all(self, req: web.Request) -> web.Response:
        """DELETE /portfolio/events/orders: every resting order on every shard, 204 with no body."""
        a = self._account(req)
        sub = _sub_q(req)
        cfg = self.sim.cfg
        if cfg.legacy_cancel_all:
            done = self.engine.cancel_all(a, req.query.get("ticker") or None, subaccount=sub)
            self.flush()
            return _json({"orders": [self._cancelled(o, r) for o, r in done]})
        self.engine.cancel_all(a, subaccount=sub, tail_ms=int(cfg.cancel_all_tail_s * 1000))
        self.flush()
        return web.Response(status=204)

    async def amend_order(self, req: web.Request) -> web.Response:
        a = self._account(req)
        body = await self._body(req)
        _fields(body, AMEND_FIELDS, "amend")
        _subaccount(body)
        ticker = _str(body, "ticker")
        side = _side(body)
        price = _price(body)
        count = _count(body)
        assert ticker is not None and count is not None
        oid = req.match_info["id"]
        shard = self.engine.shard_of(_shard_field(body), ticker)
        old = self.engine.order_of(a, oid, shard)
        coid = _coid(body)
        if coid is not None and coid != old.coid:
            raise Reject("order_id_and_client_order_id_mismatch", f"{coid!r} is not this order's client_order_id")
        try:
            o = self.engine.amend(a, oid, ticker, side, price, count, _coid(body, "updated_client_order_id"), shard,
                                  _int_field(body, "expiration_time", 0, 10**11))
        finally:
            self.flush()
        return _json({"order_id": o.id, "client_order_id": o.coid, "ts_ms": o.updated_ms, **_fill_summary(o)})

    async def decrease_order(self, req: web.Request) -> web.Response:
        a = self._account(req)
        body = await self._body(req)
        _fields(body, DECREASE_FIELDS, "decrease")
        _subaccount(body)
        to = _count(body, "reduce_to", "reduce_to_fp", required=False)
        by = _count(body, "reduce_by", "reduce_by_fp", required=False)
        if (to is None) == (by is None):
            raise Reject("invalid_parameters", "give exactly one of reduce_by or reduce_to")
        shard = self._route(_shard_field(body), body.get("market_ticker"))
        try:
            o = self.engine.decrease(a, req.match_info["id"], to, by, shard)
        finally:
            self.flush()
        return _json({"order_id": o.id, "client_order_id": o.coid, "remaining_count": fmt_count(o.remaining),
                      "ts_ms": o.updated_ms})

    async def v1_gone(self, req: web.Request) -> web.Response:
        if self.sim.cfg.v1_gone:
            raise Reject("deprecated_v1_order_endpoint", f"{req.method} {req.path}: use {P}/portfolio/events/orders")
        raise Reject("not_found", "V1 compatibility is not implemented")

    async def list_orders(self, req: web.Request) -> web.Response:
        a = self._account(req)
        q = req.query
        os_ = list(a.orders.values())
        if q.get("ticker"):
            os_ = [o for o in os_ if o.market.ticker == q["ticker"]]
        if q.get("event_ticker"):
            ev = set(q["event_ticker"].split(","))
            os_ = [o for o in os_ if o.market.spec.event_ticker in ev]
        if q.get("status"):
            if q["status"] not in protocol.ORDER_STATUS:
                raise _bad("status", f"{q['status']!r} is not one of {', '.join(protocol.ORDER_STATUS)}")
            os_ = [o for o in os_ if o.status == q["status"]]
        shard, sub = _shard_q(req), _sub_q(req)
        if shard is not None:
            os_ = [o for o in os_ if o.market.shard == shard]
        if sub is not None:
            os_ = [o for o in os_ if o.subaccount == sub]
        lo, hi = _int_q(req, "min_ts"), _int_q(req, "max_ts")
        if lo is not None:
            os_ = [o for o in os_ if o.created_ms // 1000 >= lo]
        if hi is not None:
            os_ = [o for o in os_ if o.created_ms // 1000 <= hi]
        os_.sort(key=lambda o: o.prio, reverse=True)
        page, cursor = _page(req, os_)
        return _json({"orders": [order_wire(o) for o in page], "cursor": cursor})

    async def get_order(self, req: web.Request) -> web.Response:
        return _json({"order": order_wire(self.engine.order_of(self._account(req), req.match_info["id"]))})

    async def queue_position(self, req: web.Request) -> web.Response:
        o = self.engine.order_of(self._account(req), req.match_info["id"])
        return _json({"queue_position_fp": fmt_count(self.engine.queue_position(o))})

    async def queue_positions(self, req: web.Request) -> web.Response:
        a = self._account(req)
        tick = set(filter(None, req.query.get("market_tickers", "").split(",")))
        ev = req.query.get("event_ticker")
        out = [{"order_id": o.id, "market_ticker": o.market.ticker,
                "queue_position_fp": fmt_count(self.engine.queue_position(o))}
               for o in a.orders.values() if o.status == RESTING
               and (not tick or o.market.ticker in tick) and (not ev or o.market.spec.event_ticker == ev)]
        return _json({"queue_positions": out})

    # -- portfolio -------------------------------------------------------------------------------
    async def balance(self, req: web.Request) -> web.Response:
        """Totals over every shard unless ``exchange_index`` names one; ``balance_breakdown`` per shard."""
        a = self._account(req)
        _sub_q(req)
        shard = _shard_q(req)
        if shard is not None and shard >= self.engine.n_shards:
            raise _bad("exchange_index", f"this exchange runs shards 0..{self.engine.n_shards - 1}")
        shards = range(self.engine.n_shards) if shard is None else (shard,)
        value = sum(p.cost for t, p in a.positions.items() if self.engine.markets[t].shard in shards)
        bal = sum(a.available_on(i) for i in shards)
        return _json({"balance": bal // 100, "balance_dollars": fmt_money(bal), "portfolio_value": value // 100,
                      "portfolio_value_dollars": fmt_money(value), "updated_ts": int(time.time()),
                      "balance_breakdown": [{"exchange_index": i, "balance": fmt_money(a.available_on(i))}
                                            for i in shards]})

    async def positions(self, req: web.Request) -> web.Response:
        a = self._account(req)
        q = req.query
        rows = []
        _sub_q(req)
        shard = _shard_q(req)
        events: dict[str, dict[str, int]] = {}
        for t, p in sorted(a.positions.items()):
            m = self.engine.markets[t]
            if q.get("ticker") and t != q["ticker"]:
                continue
            if q.get("event_ticker") and m.spec.event_ticker != q["event_ticker"]:
                continue
            if q.get("count_filter") and p.qty == 0:
                continue
            if q.get("settlement_status") == "unsettled" and m.status in ("determined", "finalized"):
                continue
            if q.get("settlement_status") == "settled" and m.status not in ("determined", "finalized"):
                continue
            if shard is not None and m.shard != shard:
                continue
            rows.append({"ticker": t, "exchange_index": m.shard, "position_fp": fmt_count(p.qty),
                         "market_exposure_dollars": fmt_money(p.cost), "position_cost_dollars": fmt_money(p.cost),
                         "realized_pnl_dollars": fmt_money(p.realized), "fees_paid_dollars": fmt_money(p.fees_paid),
                         "total_traded_dollars": fmt_money(p.traded), "volume_fp": fmt_count(p.volume),
                         "last_updated_ts": rfc3339(p.updated_ms)})
            e = events.setdefault(m.spec.event_ticker, {"cost": 0, "pnl": 0, "fees": 0, "traded": 0, "shares": 0})
            e["cost"] += p.cost
            e["pnl"] += p.realized
            e["fees"] += p.fees_paid
            e["traded"] += p.traded
            e["shares"] += abs(p.qty)
        page, cursor = _page(req, rows)
        ev_rows = [{"event_ticker": k, "event_exposure_dollars": fmt_money(v["cost"]),
                    "realized_pnl_dollars": fmt_money(v["pnl"]), "fees_paid_dollars": fmt_money(v["fees"]),
                    "total_cost_dollars": fmt_money(v["traded"]), "total_cost_shares_fp": fmt_count(v["shares"])}
                   for k, v in events.items()]
        return _json({"market_positions": page, "event_positions": ev_rows, "cursor": cursor})

    async def fills(self, req: web.Request) -> web.Response:
        a = self._account(req)
        q = req.query
        lo, hi = _int_q(req, "min_ts"), _int_q(req, "max_ts")
        _sub_q(req)
        shard = _shard_q(req)
        tickers = set(filter(None, q.get("ticker", "").split(",")))
        # REST fills carry no client_order_id since Mar 30 2026 (join to orders by order_id)
        rows = [{k: v for k, v in f["wire"].items() if k != "client_order_id"} for f in reversed(a.fills)
                if (not tickers or f["ticker"] in tickers)
                and (not q.get("order_id") or f["order_id"] == q["order_id"])
                and (shard is None or f["wire"]["exchange_index"] == shard)
                and (lo is None or f["ts_ms"] // 1000 >= lo) and (hi is None or f["ts_ms"] // 1000 <= hi)]
        limit = _int_q(req, "limit")
        if limit is not None and limit > 200:
            raise _bad("limit", "must be within 1..200")
        page, cursor = _page(req, rows)
        return _json({"fills": page, "cursor": cursor})

    async def settlements(self, req: web.Request) -> web.Response:
        a = self._account(req)
        q = req.query
        lo, hi = _int_q(req, "min_ts"), _int_q(req, "max_ts")
        _sub_q(req)
        rows = [{k: v for k, v in s.items() if k != "ts_ms"} for s in reversed(a.settlements)
                if (not q.get("ticker") or s["ticker"] == q["ticker"])
                and (not q.get("event_ticker") or s["event_ticker"] == q["event_ticker"])
                and (lo is None or s["ts_ms"] // 1000 >= lo) and (hi is None or s["ts_ms"] // 1000 <= hi)]
        page, cursor = _page(req, rows)
        return _json({"settlements": page, "cursor": cursor})

    # -- shards: moving collateral -----------------------------------------------------------------
    async def transfer(self, req: web.Request) -> web.Response:
        """POST /portfolio/intra_exchange_instance_transfer; ``amount`` in centi-cents ($1 = 10,000)."""
        a = self._account(req)
        body = await self._body(req)
        _fields(body, TRANSFER_FIELDS, "transfer")
        for f in ("source", "destination"):
            if _enum(body, f, ("event_contract",)) != "event_contract":
                raise _bad(f, "only event_contract is simulated")
        amount = _int_field(body, "amount", 1, 10**15)
        src = _int_field(body, "source_exchange_shard", 0, self.engine.n_shards - 1)
        dst = _int_field(body, "destination_exchange_shard", 0, self.engine.n_shards - 1)
        if amount is None or src is None or dst is None:
            raise Reject("missing_parameters", "amount, source_exchange_shard and destination_exchange_shard "
                         "are required")
        ss, ds = _subaccount(body, "source_subaccount"), _subaccount(body, "destination_subaccount")
        if (ss or 0) != 0 or (ds or 0) != 0:
            raise _bad("source_subaccount", "subaccount transfers are not simulated; use subaccount 0")
        ctid = _str(body, "client_transfer_id", required=False)
        rec = self.engine.transfer(a, src, dst, amount, ctid)
        return _json({"transfer_id": rec["transfer_id"]}, status=201)

    async def allocation_set(self, req: web.Request) -> web.Response:
        """POST /portfolio/target_balance_allocation {allocations: [{exchange_index, percent}],
        resting_margin_reservation?}: opt in to moving free capital toward the targets every
        ``SimConfig.rebalance_interval_s``."""
        a = self._account(req)
        body = await self._body(req)
        _fields(body, frozenset({"allocations", "resting_margin_reservation"}), "target balance allocation")
        rows = body.get("allocations")
        if not isinstance(rows, list) or not rows:
            raise Reject("missing_parameters", "allocations must be a non-empty list of {exchange_index, percent}")
        alloc: dict[int, int] = {}
        for r in rows:
            if not isinstance(r, dict):
                raise _bad("allocations", "each item must be {exchange_index, percent}")
            _fields(r, frozenset({"exchange_index", "percent"}), "allocations[]")
            sh = _int_field(r, "exchange_index", 0, self.engine.n_shards - 1)
            pct = _int_field(r, "percent", 0, 100)
            if sh is None or pct is None or sh in alloc:
                raise _bad("allocations", "each shard once, with exchange_index and percent")
            alloc[sh] = pct
        res = body.get("resting_margin_reservation", "sum")
        if not isinstance(res, str):
            raise _bad("resting_margin_reservation", "expected none, max or sum")
        self.engine.set_allocation(a, alloc, res)
        return _json({}, status=200)

    async def allocation_get(self, req: web.Request) -> web.Response:
        a = self._account(req)
        return _json({"allocations": [{"exchange_index": sh, "percent": p} for sh, p in sorted(a.allocation.items())],
                      "resting_margin_reservation": a.reservation})

    @staticmethod
    def _transfer_wire(t: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in t.items() if k != "created_ts"}

    async def transfer_list(self, req: web.Request) -> web.Response:
        a = self._account(req)
        page, cursor = _page(req, [self._transfer_wire(t) for t in reversed(a.transfers)])
        return _json({"transfers": page, "cursor": cursor})

    async def transfer_get(self, req: web.Request) -> web.Response:
        a = self._account(req)
        tid = req.match_info["id"]
        for t in a.transfers:
            if t["transfer_id"] == tid:
                return _json({"transfer": self._transfer_wire(t)})
        raise Reject("not_found", f"no transfer {tid!r}")

    # -- order groups ----------------------------------------------------------------------------
    def _group_limit(self, body: dict[str, Any]) -> int:
        lim = _count(body, "contracts_limit", "contracts_limit_fp")
        assert lim is not None
        return lim

    def _group_wire(self, g: Any) -> dict[str, Any]:
        return {"order_group_id": g.id, "id": g.id, "contracts_limit": g.limit // 100,
                "contracts_limit_fp": fmt_count(g.limit), "is_auto_cancel_enabled": g.triggered,
                "exchange_index": g.shard, "subaccount": g.subaccount}

    async def group_create(self, req: web.Request) -> web.Response:
        body = await self._body(req)
        _fields(body, GROUP_CREATE_FIELDS, "order group")
        sub = _subaccount(body) or 0
        shard = self.engine.shard_of(_shard_field(body))
        try:
            g = self.engine.create_group(self._account(req), self._group_limit(body), shard, sub)
        finally:
            self.flush()
        return _json({"order_group_id": g.id, "subaccount": g.subaccount, "exchange_index": g.shard}, status=201)

    async def group_list(self, req: web.Request) -> web.Response:
        a = self._account(req)
        return _json({"order_groups": [self._group_wire(g) for g in a.groups.values()]})

    async def group_get(self, req: web.Request) -> web.Response:
        g = self.engine.group_of(self._account(req), req.match_info["id"])
        self.engine._roll_group(g)
        return _json({**self._group_wire(g), "orders": sorted(o.id for o in g.orders),
                      "matched_in_window_fp": fmt_count(g.window_sum)})

    async def group_delete(self, req: web.Request) -> web.Response:
        g = self.engine.group_of(self._account(req), req.match_info["id"])
        self.engine.delete_group(g)
        self.flush()
        return _json({})

    async def group_reset(self, req: web.Request) -> web.Response:
        self.engine.reset_group(self.engine.group_of(self._account(req), req.match_info["id"]))
        self.flush()
        return _json({})

    async def group_trigger(self, req: web.Request) -> web.Response:
        self.engine.trigger_group(self.engine.group_of(self._account(req), req.match_info["id"]))
        self.flush()
        return _json({})

    async def group_limit(self, req: web.Request) -> web.Response:
        g = self.engine.group_of(self._account(req), req.match_info["id"])
        body = await self._body(req)
        _fields(body, GROUP_LIMIT_FIELDS, "order group limit")
        self.engine.set_group_limit(g, self._group_limit(body))
        self.flush()
        return _json({})

    async def account_limits(self, req: web.Request) -> web.Response:
        """``{usage_tier, read, write, grants}`` (kalshi-api.md 5); the per-shard write buckets have the same
        refill and capacity as ``write``. Tier "off" enforces no limits and reports the largest tier
        (prestige), so a client that sizes its buckets from this answer is never the one that limits."""
        self._account(req)
        lim = self.sim.limiter
        tier = "prestige" if lim.tier == "off" else lim.tier

        def bucket(kind: str) -> dict[str, int]:
            rate, cap = RateLimiter(tier, burst_s=lim.burst_s).limits(kind)
            return {"refill_rate": rate, "bucket_capacity": cap}
        grants = [{"exchange_instance": "event_contract", "level": tier, "source": "manual"}]
        return _json({"usage_tier": tier, "read": bucket("read"), "write": bucket("write"), "grants": grants})

    # -- websocket -------------------------------------------------------------------------------
    async def websocket(self, req: web.Request) -> web.StreamResponse:
        sim = self.sim
        try:
            key_id = sim.verifier.verify(req.headers, "GET", protocol.WS_PATH)
        except Reject as r:
            return _reject(r)
        if key_id is None and sim.cfg.require_ws_auth:
            return _reject(Reject("missing_auth", "sign GET /trade-api/ws/v2 and send the headers on the upgrade"))
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(req)
        conn = Conn(ws, sim.engine.accounts.get(key_id) if key_id else None)
        sim.hub.conns.add(conn)
        writer = asyncio.create_task(self._writer(conn, req.transport))
        pinger = asyncio.create_task(self._pinger(conn))
        sim.ws_tasks.add(writer)
        sim.ws_tasks.add(pinger)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._command(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._command(conn, msg.data)
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.last_pong = time.monotonic()
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR, WSMsgType.CLOSING):
                    break
        finally:
            sim.hub.drop_conn(conn)
            pinger.cancel()
            writer.cancel()
            sim.ws_tasks.discard(writer)
            sim.ws_tasks.discard(pinger)
            if not ws.closed:
                await ws.close()
        return ws

    async def _writer(self, conn: Conn, transport: Any) -> None:
        """Write queued frames. Server frames are unmasked text frames, so a batch is framed here and
        handed to the transport in one write (aiohttp's per-frame await costs more than the framing);
        other writers (pings, close) write whole frames on the same loop, so frames never interleave."""
        hub = self.sim.hub
        ws = conn.ws
        try:
            while not conn.closed:
                await conn.wake.wait()
                conn.wake.clear()
                while hub.stall_until > time.monotonic() and not conn.closed:
                    await asyncio.sleep(min(0.05, hub.stall_until - time.monotonic()))
                frames, conn.pending = conn.pending, []
                if not frames or conn.closed:
                    continue
                if transport is None or transport.is_closing():
                    for f in frames:
                        await ws.send_str(f)
                else:
                    transport.write(_frame_batch(frames))
                    while transport.get_write_buffer_size() > WRITE_HIGH_WATER and not transport.is_closing():
                        await asyncio.sleep(0.001)
                conn.sent += len(frames)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("sim: ws writer failed")

    async def _pinger(self, conn: Conn) -> None:
        cfg = self.sim.cfg
        ws = conn.ws
        try:
            while not conn.closed:
                await asyncio.sleep(cfg.ping_interval_s)
                if time.monotonic() - conn.last_pong > cfg.ping_interval_s + cfg.pong_timeout_s:
                    log.info("sim: ws client missed pongs for %.1f s; dropping it", cfg.pong_timeout_s)
                    self.sim.stats_ws["dropped_no_pong"] += 1
                    if ws._req is not None and ws._req.transport is not None:  # noqa: SLF001
                        ws._req.transport.close()  # noqa: SLF001
                    await ws.close(code=1011, message=b"pong timeout")
                    return
                await ws.ping(protocol.WS_PING_PAYLOAD)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    def _err(self, conn: Conn, cid: Any, code: int) -> None:
        self.sim.hub.reply(conn, {"id": cid, "type": "error", "msg": {"code": code, "msg": WS_ERRORS[code]}})

    def _command(self, conn: Conn, data: str | bytes) -> None:
        try:
            cmd = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._err(conn, None, 1)
            return
        if not isinstance(cmd, dict):
            self._err(conn, None, 1)
            return
        cid = cmd.get("id")
        name = cmd.get("cmd")
        params = cmd.get("params")
        now = time.monotonic()
        if now - conn.cmd_window >= 1.0:
            conn.cmd_window = now
            conn.cmd_count = 0
        conn.cmd_count += 1
        if conn.cmd_count > self.sim.cfg.ws_max_commands_per_s:
            self._err(conn, cid, 27)
            return
        try:
            if name == "subscribe":
                self._subscribe(conn, cid, params)
            elif name == "unsubscribe":
                self._unsubscribe(conn, cid, params)
            elif name == "update_subscription":
                self._update(conn, cid, params)
            elif name == "list_subscriptions":
                self.sim.hub.reply(conn, {"id": cid, "type": "ok", "msg": [
                    {"channel": s.channel, "sid": s.sid} for s in conn.subs.values()]})
            else:
                self._err(conn, cid, 5)
        except _WsError as e:
            self._err(conn, cid, e.code)

    def _tickers(self, params: dict[str, Any]) -> list[str] | None:
        if "market_ticker" in params:
            t = params["market_ticker"]
            if not isinstance(t, str):
                raise _WsError(11)
            tickers = [t]
        elif "market_tickers" in params:
            ts = params["market_tickers"]
            if not isinstance(ts, list) or not all(isinstance(t, str) for t in ts):
                raise _WsError(11)
            tickers = list(ts)
        else:
            return None
        for t in tickers:
            if t not in self.engine.markets:
                raise _WsError(16)
        return tickers

    def _subscribe(self, conn: Conn, cid: Any, params: Any) -> None:
        hub = self.sim.hub
        if not isinstance(params, dict):
            raise _WsError(2)
        channels = params.get("channels")
        if not channels or not isinstance(channels, list):
            raise _WsError(3)
        for ch in channels:
            if ch not in CHANNELS:
                raise _WsError(8)
            if ch in PRIVATE_CHANNELS and conn.account is None:
                raise _WsError(9)
        _check_shard_params(params)
        tickers = self._tickers(params)
        if "orderbook_delta" in channels and not tickers:
            raise _WsError(14)
        if tickers and len(set(tickers)) > self.sim.cfg.ws_max_markets_per_sub:
            raise _WsError(26)
        for ch in channels:
            sub = hub.add_sub(conn, ch, set(tickers) if tickers else None)
            hub.reply(conn, {"id": cid, "type": "subscribed", "msg": {"channel": ch, "sid": sub.sid}})
            if ch == "orderbook_delta":
                for t in tickers or ():
                    hub.snapshot(sub, self.engine.markets[t])
            elif ch == "ticker" and params.get("send_initial_snapshot"):
                for t in tickers or list(self.engine.markets):
                    hub._send(sub, "ticker", hub.ticker_msg(self.engine.markets[t]))

    def _unsubscribe(self, conn: Conn, cid: Any, params: Any) -> None:
        if not isinstance(params, dict):
            raise _WsError(2)
        sids = params.get("sids")
        if not sids or not isinstance(sids, list):
            raise _WsError(4)
        subs = []
        for sid in sids:
            sub = conn.subs.get(sid) if isinstance(sid, int) else None
            if sub is None:
                raise _WsError(7)
            subs.append(sub)
        for sub in subs:
            self.sim.hub.remove_sub(sub)
            self.sim.hub.reply(conn, {"id": cid, "sid": sub.sid, "seq": sub.seq, "type": "unsubscribed"})

    def _update(self, conn: Conn, cid: Any, params: Any) -> None:
        hub = self.sim.hub
        if not isinstance(params, dict):
            raise _WsError(2)
        if "sids" in params:
            sids = params["sids"]
            if not isinstance(sids, list) or len(sids) != 1:
                raise _WsError(12)
            sid = sids[0]
        elif "sid" in params:
            sid = params["sid"]
        else:
            raise _WsError(4)
        sub: Sub | None = conn.subs.get(sid) if isinstance(sid, int) else None
        if sub is None:
            raise _WsError(7)
        action = params.get("action")
        if not action:
            raise _WsError(15)
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            raise _WsError(13)
        tickers = self._tickers(params)
        if action == "get_snapshot":
            if sub.channel != "orderbook_delta":
                raise _WsError(13)
            for t in tickers or sorted(sub.tickers or ()):
                hub.snapshot(sub, self.engine.markets[t])
        else:
            if not tickers:
                raise _WsError(14)
            if action == "add_markets":
                if sub.tickers is not None and len(sub.tickers | set(tickers)) > self.sim.cfg.ws_max_markets_per_sub:
                    raise _WsError(26)
                new = hub.add_markets(sub, tickers)
                if sub.channel == "orderbook_delta":
                    for t in new:
                        hub.snapshot(sub, self.engine.markets[t])
            else:
                hub.delete_markets(sub, tickers)
        hub.reply(conn, {"id": cid, "sid": sub.sid, "seq": sub.seq, "type": "ok",
                         "msg": {"market_tickers": sorted(sub.tickers or ())}})


def _check_shard_params(params: dict[str, Any]) -> None:
    """``shard_factor`` (1..100) and ``shard_key`` (0..factor-1, only with a factor): WS errors 19-22 [U]."""
    factor = params.get("shard_factor")
    key = params.get("shard_key")
    if factor is not None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor <= 0:
            raise _WsError(19)
        if factor > 100:
            raise _WsError(22)
    if key is not None:
        if factor is None:
            raise _WsError(20)
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < factor:
            raise _WsError(21)


WRITE_HIGH_WATER = 4 * 1024 * 1024  # bytes queued in the transport before the writer waits


def _frame_batch(frames: list[str]) -> bytes:
    """RFC 6455 unmasked FIN text frames for ``frames``, concatenated."""
    out = bytearray()
    for f in frames:
        b = f.encode()
        n = len(b)
        if n < 126:
            out += bytes((0x81, n))
        elif n < 65536:
            out += bytes((0x81, 126)) + n.to_bytes(2, "big")
        else:
            out += bytes((0x81, 127)) + n.to_bytes(8, "big")
        out += b
    return bytes(out)


class _WsError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(WS_ERRORS[code])
        self.code = code
