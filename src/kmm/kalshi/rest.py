"""Kalshi REST client: aiohttp keep-alive pool, signed requests, typed results, error mapping.

Rules that matter for money:
- Reads may be retried (timeouts, 5xx, 429) with exponential backoff.
- Creates are never retried blindly. After a timeout the client looks the order up by its
  ``client_order_id`` and returns what the exchange holds, or raises ``OrderNotPlaced``.
- A 404 on a cancel means the order is already gone: it is reported as done (``already_gone``).
- Every request passes through the rate limiter's lane for its kind (cancel > amend > place; read).
- Every write reaches the market's shard: ``exchange_index`` (body for create/amend/decrease and batch
  items, query for a single cancel) from the shard map, which learns each market's shard from the
  markets it reads (``set_shard`` to tell it), plus ``market_ticker`` on cancels and decreases so an
  unknown shard is still auto-routed by the exchange (kalshi-api.md 4.1, 10).
- A V2 cancel, amend or decrease answer that names another ``order_id`` than the one sent is not
  trusted (kalshi-api.md 4.1, CL May 21): the result carries ``mismatch=True`` and its counts come
  from ``GET /portfolio/orders/{id}`` (amend, decrease) or are marked unknown (cancel).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import logging
import random
import ssl
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from kmm import protocol
from kmm._core.fixed import format_count, format_price
from kmm._core.quotewire import QuoteWire
from kmm.kalshi.decode import ONE_DOLLAR
from kmm.errors import (AuthError, DuplicateOrder, ExchangeError, KmmError, NotFound, RateLimited,
                        RequestTimeout)
from kmm.kalshi import decode as wire
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.fasthttp import FastHttp, HttpConnectionError, TlsVerifyError
from kmm.kalshi.limiter import AMEND, CANCEL, PLACE, READ, RateLimiter, limits_from_account
from kmm.kalshi.signing import SignaturePool, Signer, signed_path
from kmm.kalshi.types import (AccountLimits, Balance, BookSnapshot, CancelAck, DecreaseAck, EndpointCosts, Event,
                              EventPosition, ExchangeSchedule, ExchangeStatus, Fill, HistoricalCutoff, Market,
                              MarketPosition, OrderAck, OrderRequest, Series, Settlement, Trade, UserOrder)

log = logging.getLogger("kmm.kalshi.rest")

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_HDR_TS, _HDR_SIG = protocol.HDR_TIMESTAMP, protocol.HDR_SIGNATURE
#: items of a paged read handed to its caller between two turns of the event loop (KalshiRest.paginate)
PAGE_CHUNK = 50


class OrderNotPlaced(RequestTimeout):
    """A create timed out and the exchange showed no order with its client_order_id over the lookup window.

    Still watch ``user_orders``: a request stuck longer than the window could land later; the engine
    treats an order with an unknown client_order_id as foreign (adopt or cancel).
    """

    def __init__(self, client_order_id: str, ticker: str) -> None:
        self.client_order_id = client_order_id
        self.ticker = ticker
        super().__init__(f"create of {client_order_id} on {ticker} timed out and the exchange has no such "
                         "order: it was not placed (watch user_orders in case it lands late)")


class TradingPaused(ExchangeError):
    """The exchange refused a place or amend during a trading pause: cancels still work."""


class ExchangePaused(ExchangeError):
    """The exchange refused a request during an exchange pause: cancels are refused too."""


class ShardBalanceError(KmmError):
    """A shard holding markets to trade has less free balance than needed (collateral is checked per
    shard, kalshi-api.md 10). The message names the shard, the amounts and the transfer to make."""

    def __init__(self, shortfalls: list[tuple[int, int, int, list[str]]], balance: Balance) -> None:
        self.shortfalls = shortfalls          # (shard, have, need, tickers), money 1e-4 $
        self.balance = balance
        lines = []
        spare = {i: b for i, b in balance.breakdown}
        for shard, have, need, tickers in shortfalls:
            missing = need - have
            # take it from the shard with the most to spare after its own needs
            src = max((i for i in spare if i != shard), key=lambda i: spare[i], default=0)
            lines.append(
                f"shard {shard} ({', '.join(tickers[:5])}{'...' if len(tickers) > 5 else ''}) holds "
                f"${format_price(have)} and needs ${format_price(need)}; move ${format_price(missing)} to it, e.g. "
                + transfer_command(missing, src, shard))
        super().__init__("not enough balance on the markets' shards: " + "; ".join(lines))


def transfer_body(amount: int, source_shard: int, destination_shard: int,
                  client_transfer_id: str) -> dict[str, Any]:
    """The body of ``POST /portfolio/intra_exchange_instance_transfer``; ``amount`` in 1e-4 $ (the
    wire's centi-cents, $1 = 10,000)."""
    return {"source": protocol.TRANSFER_INSTANCE, "destination": protocol.TRANSFER_INSTANCE,
            "amount": amount, "source_exchange_shard": source_shard, "destination_exchange_shard": destination_shard,
            "client_transfer_id": client_transfer_id}


def transfer_command(amount: int, source_shard: int, destination_shard: int) -> str:
    """The command that moves ``amount`` (1e-4 $) between shards, and the REST call it makes."""
    body = transfer_body(amount, source_shard, destination_shard, "<new uuid>")
    return (f"python -m kmm.kalshi.transfer --config <your kmm config> --from-shard {source_shard} "
            f"--to-shard {destination_shard} --amount {format_price(amount)} --yes "
            f"(POST {protocol.API_PREFIX}{protocol.PATH_TRANSFER} {orjson.dumps(body).decode()})")


# A create being looked up was made seconds ago: list orders from this long before now (covers clock skew)
LOOKUP_SKEW_S = 120

# Error codes that mean "no such order (any more)" in a batched cancel's items [U: lower-case FIX names]
NOT_FOUND_CODES = frozenset({"not_found", "order_not_found"})


# ---- the quote body without a dict (KalshiRest.place_quote_now): JSON strings kept per value
_QUOTE_FIXED = ('"time_in_force":"good_till_canceled","self_trade_prevention_type":"taker_at_cross",'
                '"post_only":true,"cancel_order_on_pause":true')
_JSON_STR: dict[str, str | None] = {}         # value -> its JSON string when ASCII, else None
_QUOTE_TAILS: dict[tuple[str | None, Any], str | None] = {}


def _json_str(value: str) -> str | None:
    """``orjson.dumps(value)`` as text when it is all ASCII (then its length is its byte count), else
    None. Kept for tickers and group ids (bounded: cleared past 100,000)."""
    j = _JSON_STR.get(value)
    if j is None and value not in _JSON_STR:
        raw = orjson.dumps(value)
        j = raw.decode("ascii") if raw.isascii() else None
        if len(_JSON_STR) >= 100_000:
            _JSON_STR.clear()
        _JSON_STR[value] = j
    return j


def _quote_tail(order_group_id: str | None, shard: Any) -> str | None:
    """The body's optional end (``,"order_group_id":...``, ``,"exchange_index":n``) as orjson writes
    it, or None when it cannot be written as ASCII text here (the dict path encodes it then)."""
    key = (order_group_id, shard)
    try:
        return _QUOTE_TAILS[key]
    except KeyError:
        pass
    except TypeError:        # an unhashable shard: not one the exchange names
        return None
    out: str | None = ""
    if order_group_id is not None:
        g = _json_str(order_group_id)
        out = None if g is None else f',"order_group_id":{g}'
    if out is not None and shard is not None:
        out = f'{out},"exchange_index":{shard}' if type(shard) is int else None
    if len(_QUOTE_TAILS) < 1024:
        _QUOTE_TAILS[key] = out
    return out


def new_client_order_id() -> str:
    return str(uuid.uuid4())


def _error_from(status: int, body: bytes, method: str, path: str) -> ExchangeError | AuthError:
    code, message, details = "", "", None
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or "")
        message = str(err.get("message") or "")
        details = err.get("details") or err.get("service")
        if details is not None:
            details = str(details)
    elif isinstance(err, str):
        message = err
    else:
        message = body[:200].decode("utf-8", "replace")
    if status == 429:
        return RateLimited(status, code or "too_many_requests", message or "too many requests", details,
                           method=method, path=path)
    if status == 404:
        return NotFound(status, code or "not_found", message or "not found", details, method=method, path=path)
    if status == 409:
        return DuplicateOrder(status, code or "duplicate", message or "duplicate client_order_id", details,
                              method=method, path=path)
    if code in protocol.PAUSE_TRADING_CODES:
        return TradingPaused(status, code, message or "trading is paused", details, method=method, path=path)
    if code in protocol.PAUSE_EXCHANGE_CODES:
        return ExchangePaused(status, code, message or "the exchange is paused", details, method=method, path=path)
    if status in (401, 403):
        # Never echo our headers; the body is the exchange's text about why.
        return AuthError(f"{method} {path}: HTTP {status} {code or 'unauthorized'}: {message or 'refused'}; "
                         "check the api key id, the private key file and the clock")
    return ExchangeError(status, code or f"http_{status}", message or "error", details, method=method, path=path)


class KalshiRest:
    """Async client for the Trade API v2. Create with ``KalshiRest(config)``; ``await start()``/``close()``
    or use ``async with``. ``signer``, ``limiter``, ``pool`` and ``session`` may be injected; ``clock_ns``
    (monotonic ns) is the clock of the limiter it builds when none is given."""

    def __init__(self, config: ConnectorConfig, *, signer: Signer | None = None,
                 limiter: RateLimiter | None = None, pool: SignaturePool | None = None,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep,
                 clock_ns: Callable[[], int] | None = None) -> None:
        if not config.rest_url:
            raise KmmError("ConnectorConfig.rest_url is empty; point it at a Kalshi-compatible server")
        config.require_prod_opt_in()
        self.config = config
        self.base = config.rest_url.rstrip("/")
        self.prefix = urlsplit(self.base).path.rstrip("/")  # "/trade-api/v2": the signed path's start
        self.signer = signer if signer is not None else (
            Signer.from_config(config) if config.has_credentials else None)
        if limiter is None:
            read, write = config.rates()
            limiter = RateLimiter(read, write, burst_s=config.burst_s,
                                  cancel_reserve=config.cancel_reserve_tokens,
                                  backoff_base_s=config.backoff_429_base_s, backoff_max_s=config.backoff_429_max_s,
                                  clock_ns=clock_ns or time.monotonic_ns)
        self.limiter = limiter
        if pool is None and self.signer is not None and config.sig_pool_depth > 0:
            pool = SignaturePool(self.signer, self.hot_pairs(), depth=config.sig_pool_depth,
                                 max_age_s=config.sig_pool_max_age_s, cpus=config.signer_cpus,
                                 nice=config.signer_nice)
        self.pool = pool
        # the headers every signed write carries unchanged, for the order path's prebuilt heads
        self._fixed_head: tuple[tuple[str, str], ...] = tuple(_JSON.items()) + (
            ((protocol.HDR_KEY, self.signer.key_id),) if self.signer is not None else ())
        # the create path, for place_quote_now: target, signature pool key, prebuilt head (on first use)
        self._create_full = self.prefix + protocol.PATH_ORDERS_V2
        self._create_key = ("POST", signed_path(self._create_full))
        self._create_head: str | None = None
        self._session = session
        self._own_session = session is None
        # One verified TLS context for reads and writes (None for a plain http:// server).
        self._ssl: ssl.SSLContext | None = config.ssl_context() if urlsplit(self.base).scheme == "https" else None
        self.fast = FastHttp(self.base, connections=config.order_connections, timeout_s=config.request_timeout_s,
                             connect_timeout_s=config.connect_timeout_s,
                             ssl_context=self._ssl) if config.fast_writes else None
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.requests = 0
        self.retries = 0
        self.budget_waits = 0          # requests that waited for the limiter (queue or 429 pause)
        self.recovered_creates = 0
        self.lost_creates = 0
        self.mismatched_answers = 0
        # ticker -> exchange_index, learned from every Market read (or set_shard); order_id -> ticker,
        # learned from our creates, so a cancel by id can name its market and shard
        self.shards: dict[str, int] = {}
        self._order_ticker: OrderedDict[str, str] = OrderedDict()
        self.endpoint_costs: EndpointCosts | None = None
        # does the limiter keep per-shard write buckets (acquire(..., shard=))? single writes on shard
        # >= 1 then bill their shard's bucket; batches and shard 0 bill the unscoped one
        self._limiter_shards = all("shard" in inspect.signature(getattr(limiter, f)).parameters
                                   for f in ("acquire", "on_success", "on_rate_limited"))
        # the maker's quote writes compiled (place_quote_now, amend_quote_now); None: the Python bodies
        self._qw: QuoteWire | None = None
        if (self.fast is not None and pool is not None and self.signer is not None
                and callable(getattr(limiter, "try_acquire", None))):
            self._create_head = self.fast.head_template("POST", self._create_full, self._fixed_head)
            self._qw = QuoteWire(self, self.fast, pool, limiter, create_key=self._create_key,
                                 create_full=self._create_full, create_head=self._create_head,
                                 quote_fixed=_QUOTE_FIXED, json_str=_json_str, quote_tail=_quote_tail,
                                 quote_answer=_QuoteAnswer, amend_answer=_AmendAnswer, place_lane=PLACE,
                                 amend_lane=AMEND, cost=protocol.COST_DEFAULT, one_dollar=ONE_DOLLAR)

    def __repr__(self) -> str:
        return f"KalshiRest(base={self.base!r}, signer={self.signer!r})"

    def hot_pairs(self) -> list[tuple[str, str]]:
        """The (method, path) pairs whose signatures are pre-made: fixed paths on the order path."""
        p = self.prefix
        return [("POST", p + protocol.PATH_ORDERS_V2), ("POST", p + protocol.PATH_ORDERS_V2_BATCHED),
                ("DELETE", p + protocol.PATH_ORDERS_V2_BATCHED), ("DELETE", p + protocol.PATH_ORDERS_V2)]

    def presign_order(self, order_id: str, depth: int = 1) -> None:
        """Keep pre-made signatures for a resting order's own write paths (amend, decrease).

        Their paths name the order, so they cannot be in the fixed hot pairs; without this an amend is
        signed inline (~300 us) on the order path. Call :meth:`forget_order` when the order is gone."""
        if self.pool is None:
            return
        base = f"{self.prefix}{protocol.PATH_ORDERS_V2}/{order_id}"
        self.pool.add_pair("POST", base + "/amend", depth)
        self.pool.add_pair("POST", base + "/decrease", depth)

    def forget_order(self, order_id: str) -> None:
        """Stop pre-signing the paths of an order that no longer rests."""
        if self.pool is None:
            return
        base = f"{self.prefix}{protocol.PATH_ORDERS_V2}/{order_id}"
        self.pool.remove_pair("POST", base + "/amend")
        self.pool.remove_pair("POST", base + "/decrease")

    # -- shard routing -------------------------------------------------------------------------
    def set_shard(self, ticker: str, exchange_index: int | None) -> None:
        """Tell the client which shard a market trades on (None: forget it, auto-route)."""
        if exchange_index is None:
            self.shards.pop(ticker, None)
        else:
            self.shards[ticker] = exchange_index

    def shard_of(self, ticker: str | None) -> int | None:
        """The market's shard if known (learned from Market reads or set_shard), else None."""
        return self.shards.get(ticker) if ticker is not None else None

    def remember_order(self, order_id: str, ticker: str) -> None:
        """Note which market an order is in (done for our creates; call it for adopted orders)."""
        ot = self._order_ticker
        ot[order_id] = ticker
        if len(ot) > 100_000:
            ot.popitem(last=False)

    def _learn(self, m: Market) -> Market:
        if m.exchange_index is not None:
            self.shards[m.ticker] = m.exchange_index
        return m

    def _route(self, order_id: str | None, ticker: str | None, exchange_index: int | None) -> dict[str, Any]:
        """``exchange_index`` and ``market_ticker`` for a write on an existing order."""
        if ticker is None and order_id is not None:
            ticker = self._order_ticker.get(order_id)
        if exchange_index is None:
            exchange_index = self.shard_of(ticker)
        out: dict[str, Any] = {}
        if exchange_index is not None:
            out["exchange_index"] = exchange_index
        if ticker is not None:
            out["market_ticker"] = ticker
        return out

    def _with_shard(self, req: OrderRequest) -> dict[str, Any]:
        body = wire.encode_order(req)
        if "exchange_index" not in body:
            shard = self.shard_of(req.ticker)
            if shard is not None:
                body["exchange_index"] = shard
        return body

    def _cost(self, method: str, path: str, default: float) -> float:
        """Tokens for a call: GET /account/endpoint_costs when loaded, else ``default``."""
        ec = self.endpoint_costs
        if ec is None:
            return default
        return float(ec.costs.get((method, path), default))

    async def start(self) -> KalshiRest:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.pool_connections, keepalive_timeout=60.0,
                                             enable_cleanup_closed=True,
                                             ssl=self._ssl if self._ssl is not None else True)
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s,
                                            sock_connect=self.config.connect_timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                                  json_serialize=lambda o: orjson.dumps(o).decode())
        if self.pool is not None:
            self.pool.start()
        if self.fast is not None:
            try:
                await self.fast.warm()
            except HttpConnectionError as exc:  # not fatal: connections open on first use
                log.warning("could not pre-open order connections: %s", exc)
        return self

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.fast is not None:
            await self.fast.close()
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None
        self.limiter.close()

    async def __aenter__(self) -> KalshiRest:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the one request function --------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, lane: int = READ, cost: float = protocol.COST_DEFAULT,
                      auth: bool = True, retry: bool | None = None, shard: int | None = None) -> Any:
        """Send one request (``path`` relative to the API prefix) and return the decoded JSON body.

        ``retry`` defaults to True for GET; writes are never retried here. ``shard``: the write bucket
        a single write with ``exchange_index >= 1`` bills (kalshi-api.md 5); passed to the limiter's
        ``acquire``/``on_rate_limited``/``on_success`` as ``shard=`` when they take it (the limiter
        keeps one unscoped write bucket until then).
        """
        if self._session is None:
            raise KmmError("KalshiRest is not started: use 'async with KalshiRest(cfg)' or await start()")
        full = self.prefix + path
        url = self.base + path
        data = orjson.dumps(body) if body is not None else None
        q = {k: _param(v) for k, v in params.items() if v is not None} if params else None
        attempts = 1 + (self.config.read_retries if (method == "GET" if retry is None else retry) else 0)
        delay = self.config.retry_backoff_s
        for attempt in range(attempts):
            # the time spent waiting for the write budget (a queue ahead in the lane, a 429 pause) is
            # measured apart: it is the budget's, not kmm's path (ON_WRITE gets it with the write stamp)
            waited = 0
            lim = self.limiter
            sharded = shard is not None and self._limiter_shards
            try_acquire = getattr(lim, "try_acquire", None)   # an injected limiter may only acquire
            if try_acquire is None or not (try_acquire(lane, cost, shard=shard) if sharded
                                           else try_acquire(lane, cost)):
                t0 = time.monotonic_ns()
                if sharded:
                    await lim.acquire(lane, cost, shard=shard)
                else:
                    await lim.acquire(lane, cost)
                waited = time.monotonic_ns() - t0 if try_acquire is not None else 0
            if waited:
                self.budget_waits += 1
            headers = dict(_JSON)
            if auth and self.signer is not None:
                if self.pool is None:
                    headers.update(self.signer.headers(method, full))
                elif lane == READ or lane == CANCEL:
                    # a cancel never waits for a signature; reads are signed inline (not pooled: counted
                    # in stats.unpooled_reads; waiting for the signer process made the create-recovery
                    # lookups too slow on a loaded machine)
                    headers.update(self.pool.take(method, full))
                else:
                    # creates, amends, decreases: a signature from the pool, or (pool empty) the signer
                    # process's next one, awaited, rather than ~300 us of signing inline on the loop;
                    # no suspension when the pool has one
                    headers.update(await self.pool.take_async(method, full))
            self.requests += 1
            try:
                if self.fast is not None and lane != READ:
                    target = full + ("?" + urlencode(q) if q else "")
                    status, raw = await self.fast.request(method, target, headers, data, priority=lane == CANCEL,
                                                          waited_ns=waited)
                else:
                    async with self._session.request(method, url, params=q, data=data, headers=headers) as resp:
                        raw = await resp.read()
                        status = resp.status
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError, RequestTimeout):
                if attempt + 1 < attempts:
                    self.retries += 1
                    await self._backoff(delay)
                    delay *= 2
                    continue
                raise RequestTimeout(f"{method} {full}: no answer within {self.config.request_timeout_s} s") \
                    from None
            except (aiohttp.ClientConnectorCertificateError, TlsVerifyError) as exc:
                # not transient: retrying cannot make an untrusted certificate trusted
                raise ExchangeError(0, "tls_verify_failed", f"{_tls_reason(exc)}; {TLS_HINT}",
                                    method=method, path=full) from None
            except (aiohttp.ClientError, HttpConnectionError) as exc:
                if attempt + 1 < attempts:
                    self.retries += 1
                    await self._backoff(delay)
                    delay *= 2
                    continue
                raise ExchangeError(0, "connection_error", f"{type(exc).__name__}: {exc}",
                                    method=method, path=full) from None
            if status < 300:
                if shard is not None and self._limiter_shards:
                    self.limiter.on_success(lane, shard=shard)
                else:
                    self.limiter.on_success(lane)
                if not raw:
                    return {}
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise ExchangeError(status, "bad_json", f"response is not JSON: {raw[:120]!r}",
                                        method=method, path=full) from None
                if not isinstance(obj, dict):   # every answer of the API is an object
                    raise ExchangeError(status, "bad_json", f"response is not a JSON object: {raw[:120]!r}",
                                        method=method, path=full)
                return obj
            err = _error_from(status, raw, method, full)
            if status == 429:
                pause_ns = (self.limiter.on_rate_limited(lane, shard=shard)
                            if shard is not None and self._limiter_shards else self.limiter.on_rate_limited(lane))
                log.warning("429 on %s %s: pausing non-cancel requests for %.3f s", method, full, pause_ns / 1e9)
            if attempt + 1 < attempts and (status == 429 or status >= 500):
                self.retries += 1
                await self._backoff(delay)
                delay *= 2
                continue
            raise err
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the order path without a coroutine: write now, complete by callback ---------------------------
    def send_now(self, method: str, path: str, body: Any, *, lane: int, cost: float, shard: int | None,
                 on_answer: Callable[[Any, BaseException | None], None]) -> int:
        """One write, now, or nothing: when a warm connection is idle, the write budget allows it at once
        (nothing more urgent queued) and a pre-made signature is there, the bytes are written before this
        returns and ``on_answer(obj, None)`` / ``on_answer(None, exc)`` is called from the connection's
        callbacks with the decoded answer or the same error :meth:`request` would raise (never retried:
        writes are not). Returns the write stamp (monotonic ns), or 0 when any of the three is missing:
        nothing was taken or written, and the caller takes the coroutine path (:meth:`request`), which
        waits for the budget, a signature or a connection."""
        fast = self.fast
        if fast is None or self._session is None or not fast.has_idle():
            return 0
        full = self.prefix + path
        pool = self.pool
        if self.signer is not None and (pool is None or (lane != CANCEL and not pool.available(method, full))):
            return 0
        lim = self.limiter
        try_acquire = getattr(lim, "try_acquire", None)
        sharded = shard is not None and self._limiter_shards
        if try_acquire is None or not (try_acquire(lane, cost, shard=shard) if sharded else try_acquire(lane, cost)):
            return 0
        self.requests += 1

        def answered(status: int, raw: bytes, exc: BaseException | None) -> None:
            on_answer(*self._answer(method, full, lane, shard if sharded else None, status, raw, exc))
        data = orjson.dumps(body)
        if self.signer is None or pool is None:
            return fast.send_now(method, full, dict(_JSON), data, answered)
        # a prebuilt head (request line, Host, content type, key id), then the signature's two headers
        auth = pool.take(method, full)
        head = fast.head_template(method, full, self._fixed_head)
        return fast.send_raw((f"{head}{_HDR_TS}: {auth[_HDR_TS]}\r\n{_HDR_SIG}: {auth[_HDR_SIG]}\r\n"
                              f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n"
                              ).encode("latin-1") + data, answered)

    def _answer(self, method: str, full: str, lane: int, shard: int | None, status: int, raw: bytes,
                exc: BaseException | None) -> tuple[Any, BaseException | None]:
        """What :meth:`request` makes of one answer (no retry): (decoded object, None) or (None, error)."""
        if exc is not None:
            if isinstance(exc, RequestTimeout):
                return None, RequestTimeout(f"{method} {full}: no answer within {self.config.request_timeout_s} s")
            if isinstance(exc, TlsVerifyError):
                return None, ExchangeError(0, "tls_verify_failed", f"{_tls_reason(exc)}; {TLS_HINT}",
                                           method=method, path=full)
            return None, ExchangeError(0, "connection_error", f"{type(exc).__name__}: {exc}", method=method,
                                       path=full)
        lim = self.limiter
        if status < 300:
            if shard is not None:
                lim.on_success(lane, shard=shard)
            else:
                lim.on_success(lane)
            if not raw:
                return {}, None
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None, ExchangeError(status, "bad_json", f"response is not JSON: {raw[:120]!r}",
                                           method=method, path=full)
            if not isinstance(obj, dict):
                return None, ExchangeError(status, "bad_json", f"response is not a JSON object: {raw[:120]!r}",
                                           method=method, path=full)
            return obj, None
        err = _error_from(status, raw, method, full)
        if status == 429:
            pause_ns = lim.on_rate_limited(lane, shard=shard) if shard is not None else lim.on_rate_limited(lane)
            log.warning("429 on %s %s: pausing non-cancel requests for %.3f s", method, full, pause_ns / 1e9)
        return None, err

    def create_order_now(self, req: OrderRequest, done: Callable[[OrderAck | None, BaseException | None], None],
                         spawn: Callable[[Any], Any]) -> int:
        """:meth:`create_order` written now (see :meth:`send_now`; 0: not sent, use create_order). The
        outcome goes to ``done(ack, None)`` or ``done(None, exc)`` with what create_order would return or
        raise: an unknown outcome (timeout, dropped connection, 5xx, 408, an answer without the counts)
        is looked up by client_order_id in a coroutine started with ``spawn``, never re-sent."""
        body = self._with_shard(req)

        def on_answer(obj: Any, exc: BaseException | None) -> None:
            self._create_answered(req, obj, exc, done, spawn)
        return self.send_now("POST", protocol.PATH_ORDERS_V2, body, lane=PLACE, cost=protocol.COST_DEFAULT,
                             shard=_write_shard(body), on_answer=on_answer)

    def _create_answered(self, req: OrderRequest, obj: Any, exc: BaseException | None,
                         done: Callable[[OrderAck | None, BaseException | None], None],
                         spawn: Callable[[Any], Any]) -> None:
        """What a create written now comes to (:meth:`create_order_now`, :meth:`place_quote_now`): its
        ack or refusal to ``done``; an unknown outcome (timeout, dropped connection, 5xx, 408, an answer
        without the counts) looked up by client_order_id in a coroutine started with ``spawn``."""
        if exc is not None:
            if not (isinstance(exc, RequestTimeout) or (isinstance(exc, ExchangeError) and (
                    exc.code == "connection_error" or exc.status >= 500 or exc.status == 408))):
                done(None, exc)
                return
        elif "remaining_count" in obj and "order_id" in obj:
            try:
                ack = self._placed(req, wire.decode_order_ack(obj))
            except Exception as e:  # noqa: BLE001 - an unreadable answer: the outcome is unknown
                done(None, e)
                return
            done(ack, None)
            return

        async def run() -> None:
            try:
                ack = await self._recover_create(req)
            except Exception as exc:  # noqa: BLE001 - OrderNotPlaced, or the lookups failed
                done(None, exc)
                return
            done(ack, None)
        spawn(run())

    def place_quote_now(self, ticker: str, side: str, price: int, count: int, client_order_id: str,
                        order_group_id: str | None, done: Callable[[Any, OrderAck | None, BaseException | None], None],
                        ctx: Any, spawn: Callable[[Any], Any]) -> int:
        """The maker's quote (post-only, good till cancelled, cancelled on pause, in ``order_group_id``)
        written now in one call: the same bytes, budget, signature and outcome as
        ``create_order_now(OrderRequest(ticker, side, price, count, client_order_id, post_only=True,
        cancel_order_on_pause=True, order_group_id=order_group_id), ...)``, without the request object,
        the per-request closures and the generic :meth:`send_now` steps (tests/kalshi/test_quote_now.py
        holds the two to the same bytes and outcomes). The outcome goes to ``done(ctx, ack, None)`` or
        ``done(ctx, None, exc)``. Returns the write stamp, or 0 when anything is missing (no idle warm
        connection, no budget now, no pre-made signature, a value :func:`wire.encode_order` refuses):
        nothing was taken or written and the caller takes the full path, which raises or waits.

        The write is compiled (:class:`kmm._core.quotewire.QuoteWire`: the bytes built in C, the
        signature copied from its pair's ring); a value it does not build bytes for (one that needs
        JSON escapes) takes :meth:`_place_quote_py`, the same steps in Python and the reference the
        compiled write is held to (tests/kalshi/test_quote_wire.py)."""
        qw = self._qw
        if qw is not None:
            written = qw.place(ticker, side, price, count, client_order_id, order_group_id, done, ctx, spawn)
            if written >= 0:
                return written
        return self._place_quote_py(ticker, side, price, count, client_order_id, order_group_id, done, ctx, spawn)

    def _place_quote_py(self, ticker: str, side: str, price: int, count: int, client_order_id: str,
                        order_group_id: str | None, done: Callable[[Any, OrderAck | None, BaseException | None], None],
                        ctx: Any, spawn: Callable[[Any], Any]) -> int:
        """:meth:`place_quote_now` in Python (its docstring)."""
        fast = self.fast
        pool = self.pool
        if fast is None or self._session is None or self.signer is None or pool is None or not fast.has_idle():
            return 0
        if not (0 < price < ONE_DOLLAR and count > 0 and client_order_id and (side == "bid" or side == "ask")):
            return 0
        if not pool._slots.get(self._create_key):   # pool.available without re-deriving the key
            return 0
        shard = self.shards.get(ticker)
        sharded = isinstance(shard, int) and shard >= 1 and self._limiter_shards
        lim = self.limiter
        try_acquire = getattr(lim, "try_acquire", None)
        if try_acquire is None or not (try_acquire(PLACE, protocol.COST_DEFAULT, shard=shard) if sharded
                                       else try_acquire(PLACE, protocol.COST_DEFAULT)):
            return 0
        self.requests += 1
        return self._place_quote_taken(ticker, side, price, count, client_order_id, order_group_id, shard, sharded,
                                       done, ctx, spawn)

    def _place_quote_taken(self, ticker: str, side: str, price: int, count: int, client_order_id: str,
                           order_group_id: str | None, shard: Any, sharded: bool,
                           done: Callable[[Any, OrderAck | None, BaseException | None], None], ctx: Any,
                           spawn: Callable[[Any], Any]) -> int:
        """:meth:`place_quote_now`'s steps once the budget is taken (and ``requests`` counted): the
        signature, the bytes, the write (on the warmest idle connection)."""
        fast = self.fast
        pool = self.pool
        assert fast is not None and pool is not None
        tail = _QUOTE_TAILS.get((order_group_id, shard))      # the kept texts, inline; made on a miss
        if tail is None:
            tail = _quote_tail(order_group_id, shard)
        tj = _JSON_STR.get(ticker) or _json_str(ticker)
        try:
            cj: str | None = orjson.dumps(client_order_id).decode("ascii")
        except UnicodeDecodeError:
            cj = None
        auth = pool.take("POST", self._create_full)
        head = self._create_head
        if head is None:
            head = self._create_head = fast.head_template("POST", self._create_full, self._fixed_head)
        if tail is not None and tj is not None and cj is not None:
            # the bytes orjson makes of the body dict below (same keys, order, separators), as one
            # string with the head: one encode, no dict (tests/kalshi/test_quote_body.py)
            body = (f'{{"ticker":{tj},"client_order_id":{cj},"side":"{side}","count":"{format_count(count)}",'
                    f'"price":"{format_price(price)}",{_QUOTE_FIXED}{tail}}}')
            data = (f"{head}{_HDR_TS}: {auth[_HDR_TS]}\r\n{_HDR_SIG}: {auth[_HDR_SIG]}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n{body}").encode("latin-1")
        else:                # a value outside ASCII (or an odd shard): orjson encodes the dict
            b: dict[str, Any] = {
                "ticker": ticker, "client_order_id": client_order_id, "side": side,
                "count": format_count(count), "price": format_price(price), "time_in_force": "good_till_canceled",
                "self_trade_prevention_type": "taker_at_cross", "post_only": True, "cancel_order_on_pause": True}
            if order_group_id is not None:
                b["order_group_id"] = order_group_id
            if shard is not None:
                b["exchange_index"] = shard
            raw = orjson.dumps(b)
            data = (f"{head}{_HDR_TS}: {auth[_HDR_TS]}\r\n{_HDR_SIG}: {auth[_HDR_SIG]}\r\n"
                    f"Content-Length: {len(raw)}\r\nConnection: keep-alive\r\n\r\n").encode("latin-1") + raw
        return fast.send_raw(data, _QuoteAnswer(self, ticker, side, price, count, client_order_id, order_group_id,
                                                shard if sharded else None, done, ctx, spawn))

    def amend_order_now(self, order_id: str, *, ticker: str, side: str, price: int, count: int,
                        client_order_id: str | None, done: Callable[[OrderAck | None, BaseException | None], None],
                        spawn: Callable[[Any], Any]) -> int:
        """:meth:`amend_order` written now (0: not sent). An answer about another order, or without the
        counts, is read back in a coroutine started with ``spawn``, as amend_order does."""
        body: dict[str, Any] = {"ticker": ticker, "side": side, "price": format_price(price),
                                "count": format_count(count)}
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        shard = self.shard_of(ticker)
        if shard is not None:
            body["exchange_index"] = shard

        def on_answer(resp: Any, exc: BaseException | None) -> None:
            self._amend_answered(order_id, resp, exc, done, spawn)
        written = self.send_now("POST", f"{protocol.PATH_ORDERS_V2}/{order_id}/amend", body, lane=AMEND,
                                cost=protocol.COST_DEFAULT, shard=_write_shard(body), on_answer=on_answer)
        if written:
            self.remember_order(order_id, ticker)
        return written

    def _amend_answered(self, order_id: str, resp: Any, exc: BaseException | None,
                        done: Callable[[OrderAck | None, BaseException | None], None],
                        spawn: Callable[[Any], Any]) -> None:
        """What an amend written now comes to (:meth:`amend_order_now`, :meth:`amend_quote_now`): an
        answer about another order, or without the counts, is read back in a coroutine started with
        ``spawn``, as amend_order does."""
        def read_back(mismatch: bool) -> None:
            async def run() -> None:
                try:
                    ack = wire.order_ack_from_order(await self.get_order(order_id), mismatch=mismatch)
                except Exception as exc:  # noqa: BLE001
                    done(None, exc)
                    return
                done(ack, None)
            spawn(run())

        if exc is not None:
            done(None, exc)
            return
        if resp.get("order_id") not in (None, order_id):
            self.mismatched_answers += 1
            log.warning("amend of %s answered about order %s: reading the order back", order_id,
                        str(resp.get("order_id"))[:60])
            read_back(True)
            return
        if "order_id" not in resp:
            resp = {**resp, "order_id": order_id}
        if "remaining_count" not in resp or "fill_count" not in resp:
            read_back(False)
            return
        try:
            ack = wire.decode_order_ack(resp)
        except Exception as e:  # noqa: BLE001
            done(None, e)
            return
        done(ack, None)

    def amend_quote_now(self, order_id: str, ticker: str, side: str, price: int, count: int,
                        client_order_id: str | None, done: Callable[[Any, OrderAck | None, BaseException | None], None],
                        ctx: Any, spawn: Callable[[Any], Any]) -> int:
        """``amend_order_now`` in one call, as :meth:`place_quote_now` is for a create: the same bytes,
        budget, signature and outcome (tests/kalshi/test_quote_now.py), ``done(ctx, ack, exc)``, 0 when
        anything is missing (nothing taken: the caller takes the full path). Compiled as
        :meth:`place_quote_now` is; :meth:`_amend_quote_py` is the reference and the path for values
        the compiled write does not build bytes for."""
        qw = self._qw
        if qw is not None:
            written = qw.amend(order_id, ticker, side, price, count, client_order_id, done, ctx, spawn)
            if written >= 0:
                return written
        return self._amend_quote_py(order_id, ticker, side, price, count, client_order_id, done, ctx, spawn)

    def _amend_quote_py(self, order_id: str, ticker: str, side: str, price: int, count: int,
                        client_order_id: str | None, done: Callable[[Any, OrderAck | None, BaseException | None], None],
                        ctx: Any, spawn: Callable[[Any], Any]) -> int:
        """:meth:`amend_quote_now` in Python (its docstring)."""
        fast = self.fast
        pool = self.pool
        if fast is None or self._session is None or self.signer is None or pool is None or not fast.has_idle():
            return 0
        if "?" in order_id or "#" in order_id:      # the signed path would differ from the target
            return 0
        full = f"{self._create_full}/{order_id}/amend"
        if not pool._slots.get(("POST", full)):
            return 0
        shard = self.shards.get(ticker)
        sharded = isinstance(shard, int) and shard >= 1 and self._limiter_shards
        try_acquire = getattr(self.limiter, "try_acquire", None)
        if try_acquire is None or not (try_acquire(AMEND, protocol.COST_DEFAULT, shard=shard) if sharded
                                       else try_acquire(AMEND, protocol.COST_DEFAULT)):
            return 0
        self.requests += 1
        return self._amend_quote_taken(order_id, ticker, side, price, count, client_order_id, full, shard, sharded,
                                       done, ctx, spawn)

    def _amend_quote_taken(self, order_id: str, ticker: str, side: str, price: int, count: int,
                           client_order_id: str | None, full: str, shard: Any, sharded: bool,
                           done: Callable[[Any, OrderAck | None, BaseException | None], None], ctx: Any,
                           spawn: Callable[[Any], Any]) -> int:
        """:meth:`amend_quote_now`'s steps once the budget is taken (and ``requests`` counted)."""
        fast = self.fast
        pool = self.pool
        assert fast is not None and pool is not None
        body: dict[str, Any] = {"ticker": ticker, "side": side, "price": format_price(price),
                                "count": format_count(count)}
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        if shard is not None:
            body["exchange_index"] = shard
        data = orjson.dumps(body)
        auth = pool.take("POST", full)
        head = fast.head_template("POST", full, self._fixed_head)
        written = fast.send_raw((f"{head}{_HDR_TS}: {auth[_HDR_TS]}\r\n{_HDR_SIG}: {auth[_HDR_SIG]}\r\n"
                                 f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n"
                                 ).encode("latin-1") + data,
                                _AmendAnswer(self, order_id, full, shard if sharded else None, done, ctx, spawn))
        if written:
            self.remember_order(order_id, ticker)
        return written

    def cancel_orders_now(self, order_ids: list[str],
                          done: Callable[[list[CancelAck] | None, BaseException | None], None],
                          spawn: Callable[[Any], Any]) -> int:
        """:meth:`cancel_orders` written now (0: not sent). Ids the answer does not settle (a 404 for the
        whole request, an id missing or unreadable) are cancelled one by one in a coroutine, as
        cancel_orders does."""
        items = [{"order_id": oid, **self._route(oid, None, None)} for oid in order_ids]

        def finish(by_id: dict[str, CancelAck]) -> None:
            missing = [oid for oid in order_ids if oid not in by_id]
            if not missing:
                done([by_id[oid] for oid in order_ids], None)
                return

            async def run() -> None:
                try:
                    for oid in missing:
                        by_id[oid] = await self._cancel_one(oid)
                except Exception as exc:  # noqa: BLE001
                    done(None, exc)
                    return
                done([by_id[oid] for oid in order_ids], None)
            spawn(run())

        def on_answer(resp: Any, exc: BaseException | None) -> None:
            if isinstance(exc, NotFound):
                log.warning("batched cancel answered 404 as a whole; cancelling %d orders one by one", len(order_ids))
                finish({})
            elif exc is not None:
                done(None, exc)
            else:
                finish(self._cancel_items(resp))
        return self.send_now("DELETE", protocol.PATH_ORDERS_V2_BATCHED, {"orders": items}, lane=CANCEL,
                             cost=protocol.COST_CANCEL * len(order_ids), shard=None, on_answer=on_answer)

    async def _backoff(self, delay_s: float) -> None:
        await self._sleep(delay_s * (0.5 + self._rng.random() / 2))

    # -- pagination ----------------------------------------------------------------------------
    async def paginate(self, path: str, key: str, params: Mapping[str, Any] | None = None, *,
                       limit: int | None = None, max_pages: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield the items under ``key`` across cursor pages; stops at an empty cursor or the page cap.

        Every :data:`PAGE_CHUNK` items the event loop gets a turn (``asyncio.sleep(0)``): what the caller
        does per item (decoding a fill is ~1 us in situ) would otherwise hold the loop for a whole page,
        180-215 us for a page of 200 fills in a busy run's resync, while book frames wait."""
        p = dict(params or {})
        if limit is not None:
            p["limit"] = limit
        cap = self.config.max_pages if max_pages is None else max_pages
        for _ in range(cap):
            body = await self.request("GET", path, params=p)
            for i, item in enumerate(body.get(key) or (), 1):
                yield item
                if not i % PAGE_CHUNK:
                    await asyncio.sleep(0)
            cursor = body.get("cursor")
            if not cursor:
                return
            p["cursor"] = cursor
        log.warning("GET %s: stopped after the page cap of %d pages; more items exist", path, cap)

    # -- market data ---------------------------------------------------------------------------
    async def iter_markets(self, *, status: str | None = None, event_ticker: str | None = None,
                           series_ticker: str | None = None, tickers: Iterable[str] | None = None,
                           limit: int = 1000, max_pages: int | None = None, **filters: Any) -> AsyncIterator[Market]:
        params = {"status": status, "event_ticker": event_ticker, "series_ticker": series_ticker,
                  "tickers": ",".join(tickers) if tickers else None, **filters}
        async for m in self.paginate(protocol.PATH_MARKETS, "markets", params, limit=limit, max_pages=max_pages):
            yield self._learn(wire.decode_market(m))

    async def get_markets(self, **kw: Any) -> list[Market]:
        return [m async for m in self.iter_markets(**kw)]

    async def get_market(self, ticker: str) -> Market:
        body = await self.request("GET", f"{protocol.PATH_MARKETS}/{ticker}")
        return self._learn(wire.decode_market(body.get("market") or body))

    async def get_market_raw(self, ticker: str) -> dict[str, Any]:
        body = await self.request("GET", f"{protocol.PATH_MARKETS}/{ticker}")
        m = dict(body.get("market") or body)
        shard = m.get("exchange_index")
        if isinstance(shard, int) and not isinstance(shard, bool) and shard >= 0:
            self.shards[ticker] = shard     # the raw read teaches the shard map too (writes route by it)
        return m

    async def get_orderbook(self, ticker: str, depth: int | None = None) -> BookSnapshot:
        body = await self.request("GET", f"{protocol.PATH_MARKETS}/{ticker}/orderbook",
                                  params={"depth": depth})
        return wire.decode_rest_orderbook(ticker, body)

    async def get_orderbooks(self, tickers: Iterable[str]) -> dict[str, BookSnapshot]:
        """``GET /markets/orderbooks``, 100 tickers per call."""
        ts = list(tickers)
        out: dict[str, BookSnapshot] = {}
        for i in range(0, len(ts), 100):
            body = await self.request("GET", protocol.PATH_ORDERBOOKS, params={"tickers": ",".join(ts[i:i + 100])})
            out.update(wire.decode_orderbooks(body))
        return out

    async def get_series(self, series_ticker: str) -> dict[str, Any]:
        """The raw series object (see ``get_series_info`` for the typed one)."""
        body = await self.request("GET", f"{protocol.PATH_SERIES}/{series_ticker}")
        return dict(body.get("series") or body)

    async def get_series_info(self, series_ticker: str) -> Series:
        body = await self.request("GET", f"{protocol.PATH_SERIES}/{series_ticker}")
        return wire.decode_series(body.get("series") or body)

    async def list_series(self, *, category: str | None = None, tags: str | None = None,
                          include_volume: bool | None = None, min_updated_ts: int | None = None) -> list[Series]:
        body = await self.request("GET", protocol.PATH_SERIES, params={
            "category": category, "tags": tags, "include_volume": include_volume, "min_updated_ts": min_updated_ts})
        return [wire.decode_series(x) for x in body.get("series") or ()]

    async def iter_events(self, *, status: str | None = None, series_ticker: str | None = None,
                          with_nested_markets: bool | None = None, tickers: Iterable[str] | None = None,
                          limit: int = 200, max_pages: int | None = None) -> AsyncIterator[Event]:
        params = {"status": status, "series_ticker": series_ticker, "with_nested_markets": with_nested_markets,
                  "tickers": ",".join(tickers) if tickers else None}
        async for e in self.paginate(protocol.PATH_EVENTS, "events", params, limit=min(limit, 200),
                                     max_pages=max_pages):
            ev = wire.decode_event(e)
            for m in ev.markets:
                self._learn(m)
            yield ev

    async def get_events(self, **kw: Any) -> list[Event]:
        return [e async for e in self.iter_events(**kw)]

    async def get_event(self, event_ticker: str) -> Event:
        """``GET /events/{ticker}``: the event with its markets (and ``mutually_exclusive``)."""
        body = await self.request("GET", f"{protocol.PATH_EVENTS}/{event_ticker}")
        ev = wire.decode_event(body.get("event") or body, body.get("markets"))
        for m in ev.markets:
            self._learn(m)
        return ev

    async def iter_trades(self, ticker: str | None = None, *, min_ts: int | None = None,
                          max_ts: int | None = None, limit: int = 1000,
                          max_pages: int | None = None) -> AsyncIterator[Trade]:
        params = {"ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        async for t in self.paginate(protocol.PATH_TRADES, "trades", params, limit=limit, max_pages=max_pages):
            yield wire.decode_trade(t)

    async def get_exchange_status(self) -> ExchangeStatus:
        """Top level (shard 0) and ``exchange_index_statuses`` per shard; ``status.pause(shard)`` tells a
        trading pause (cancels allowed) from an exchange pause (no cancels)."""
        return wire.decode_exchange_status(await self.request("GET", protocol.PATH_EXCHANGE_STATUS))

    async def get_exchange_schedule(self) -> ExchangeSchedule:
        return wire.decode_schedule(await self.request("GET", protocol.PATH_EXCHANGE_SCHEDULE))

    async def get_historical_cutoff(self) -> HistoricalCutoff:
        return wire.decode_historical_cutoff(await self.request("GET", protocol.PATH_HISTORICAL_CUTOFF))

    # -- orders (V2) ---------------------------------------------------------------------------
    async def create_order(self, req: OrderRequest) -> OrderAck:
        """Place one order. Never retried: after a timeout the order is looked up by client_order_id."""
        body = self._with_shard(req)
        try:
            ack = await self.request("POST", protocol.PATH_ORDERS_V2, body=body, lane=PLACE,
                                     cost=protocol.COST_DEFAULT, retry=False, shard=_write_shard(body))
        except RequestTimeout:
            return await self._recover_create(req)
        except ExchangeError as exc:
            # A refusal (4xx) is final. A dropped connection, a 5xx or a 408 (e.g. from a proxy after the
            # exchange took the order) leaves the outcome unknown: look the order up, never re-send.
            if exc.code != "connection_error" and not (exc.status >= 500 or exc.status == 408):
                raise
            return await self._recover_create(req)
        if "remaining_count" not in ack or "order_id" not in ack:
            # an answer without the counts would read as "nothing rests": look the order up instead
            return await self._recover_create(req)
        return self._placed(req, wire.decode_order_ack(ack))

    def _placed(self, req: OrderRequest, ack: OrderAck) -> OrderAck:
        self.remember_order(ack.order_id, req.ticker)
        if req.post_only and ack.fill_count == 0 and ack.remaining_count == 0:
            # a post-only order that would have crossed is cancelled, not rejected (CL Jun 4) [U: the
            # create answer is undocumented; "0 filled, 0 resting" is what it must mean]
            log.info("post-only %s on %s would have crossed: cancelled by the exchange (%s)",
                     req.client_order_id, req.ticker, protocol.LAST_UPDATE_POST_ONLY_CROSS)
            return OrderAck(ack.order_id, ack.client_order_id, 0, 0, ts_ms=ack.ts_ms, post_only_cross=True)
        return ack

    async def _recover_create(self, req: OrderRequest) -> OrderAck:
        """The create's outcome is unknown: look the order up by client_order_id, several times.

        A request that timed out may still be sitting in a queue on the exchange's side and land later,
        so one miss is not proof. Lookups are spaced over ``create_lookup_window_s`` (doubling from
        50 ms); only when every one misses is the order reported as not placed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.create_lookup_window_s
        since_s = int(time.time()) - LOOKUP_SKEW_S   # the order was created just now; allow clock skew
        wait = 0.05
        while True:
            try:
                order = await self.find_order_by_client_id(req.client_order_id, ticker=req.ticker, min_ts=since_s)
            except (RequestTimeout, ExchangeError) as exc:
                log.warning("lookup of %s after a create timeout failed: %s", req.client_order_id, exc)
                order = None
            if order is not None:
                self.recovered_creates += 1
                log.warning("create of %s timed out but the exchange holds it as %s (%s)", req.client_order_id,
                            order.order_id, order.status)
                self.remember_order(order.order_id, req.ticker)
                return wire.order_ack_from_order(order)
            left = deadline - loop.time()
            if left <= 0:
                break
            await self._sleep(min(wait, left))
            wait *= 2
        self.lost_creates += 1
        raise OrderNotPlaced(req.client_order_id, req.ticker)

    async def find_order_by_client_id(self, client_order_id: str, *, ticker: str | None = None,
                                      min_ts: int | None = None, max_pages: int = 20) -> UserOrder | None:
        """Look an order up by client_order_id (GET /portfolio/orders filtered by ticker, and by
        ``min_ts``, Unix s, when the create time is known: a short listing, a few read tokens)."""
        async for o in self.iter_orders(ticker=ticker, min_ts=min_ts, max_pages=max_pages):
            if o.client_order_id == client_order_id:
                return o
        return None

    async def create_orders(self, reqs: list[OrderRequest]) -> list[OrderAck | ExchangeError]:
        """Batched create: one result per request, in order (an ExchangeError for items the exchange refused)."""
        if not reqs:
            return []
        bodies = [self._with_shard(r) for r in reqs]
        try:
            resp = await self.request("POST", protocol.PATH_ORDERS_V2_BATCHED, body={"orders": bodies},
                                      lane=PLACE, cost=protocol.COST_DEFAULT * len(reqs), retry=False)
        except RequestTimeout:
            out: list[OrderAck | ExchangeError] = []
            for r in reqs:
                try:
                    out.append(await self._recover_create(r))
                except OrderNotPlaced as exc:
                    out.append(ExchangeError(0, "not_placed", str(exc), method="POST",
                                             path=self.prefix + protocol.PATH_ORDERS_V2_BATCHED))
            return out
        items = resp.get("orders") or []
        results: list[OrderAck | ExchangeError] = []
        for one, item in zip(reqs, items):
            if not isinstance(item, Mapping):
                results.append(ExchangeError(200, "bad_item", f"batch item {str(item)[:80]} is not an object",
                                             method="POST", path=self.prefix + protocol.PATH_ORDERS_V2_BATCHED))
                continue
            err = item.get("error")
            if err:
                e = err if isinstance(err, dict) else {"code": str(err), "message": str(err)}
                results.append(ExchangeError(int(e.get("status") or 400), str(e.get("code") or "error"),
                                             str(e.get("message") or ""), e.get("details"), method="POST",
                                             path=self.prefix + protocol.PATH_ORDERS_V2_BATCHED))
            else:
                results.append(self._placed(one, wire.decode_order_ack(item)))
        if len(items) != len(reqs):
            raise ExchangeError(200, "batch_mismatch", f"sent {len(reqs)} orders, got {len(items)} results",
                                method="POST", path=self.prefix + protocol.PATH_ORDERS_V2_BATCHED)
        return results

    async def cancel_order(self, order_id: str, *, ticker: str | None = None,
                           exchange_index: int | None = None, subaccount: int | None = None) -> CancelAck:
        """Cancel one order on its shard (``exchange_index`` and ``market_ticker`` from the arguments or
        what the client knows of the order). A 404 means it is already gone: ``already_gone=True``.
        An answer about another order gives ``mismatch=True`` with the reduction unknown.

        Its path names the order, so its signature cannot be pre-made: prefer ``cancel_orders``.
        """
        params = self._route(order_id, ticker, exchange_index)
        if subaccount is not None:
            params["subaccount"] = subaccount
        try:
            body = await self.request("DELETE", f"{protocol.PATH_ORDERS_V2}/{order_id}", params=params or None,
                                      lane=CANCEL, cost=protocol.COST_CANCEL, retry=False,
                                      shard=_write_shard(params))
        except NotFound:
            return CancelAck(order_id=order_id, client_order_id=None, reduced_by=0, already_gone=True)
        if body.get("order_id") not in (None, order_id):
            return self._cancel_mismatch(order_id, body)
        if "order_id" not in body:
            body = {**body, "order_id": order_id}
        return wire.decode_cancel_ack(body)

    def _cancel_mismatch(self, order_id: str, body: Mapping[str, Any]) -> CancelAck:
        self.mismatched_answers += 1
        log.warning("cancel of %s answered about order %s: not trusting its counts (take the state from "
                    "user_orders or GET /portfolio/orders/%s)", order_id, str(body.get("order_id"))[:60], order_id)
        return CancelAck(order_id=order_id, client_order_id=None, reduced_by=0, reduced_known=False, mismatch=True)

    async def cancel_orders(self, order_ids: list[str], *, subaccount: int | None = None,
                            tickers: Mapping[str, str] | None = None) -> list[CancelAck]:
        """Batched cancel (fixed path, so pre-signed); one CancelAck per id, in order. Each item names its
        shard and market when known (``tickers``: order_id -> ticker, else what the client remembers).

        Only an item the exchange answers with "not found" counts as already gone. An item refused for
        another reason comes back with ``error`` set (the order may still rest). A 404 on the whole
        request (the route, not an order) or an id missing from the answer is retried with a single
        cancel for that id, so a cancel is never assumed."""
        if not order_ids:
            return []
        items = []
        for oid in order_ids:
            item: dict[str, Any] = {"order_id": oid, **self._route(oid, (tickers or {}).get(oid), None)}
            if subaccount is not None:
                item["subaccount"] = subaccount
            items.append(item)
        try:
            resp = await self.request("DELETE", protocol.PATH_ORDERS_V2_BATCHED, body={"orders": items},
                                      lane=CANCEL, cost=protocol.COST_CANCEL * len(order_ids), retry=False)
        except NotFound:
            log.warning("batched cancel answered 404 as a whole; cancelling %d orders one by one", len(order_ids))
            return [await self._cancel_one(oid) for oid in order_ids]
        by_id = self._cancel_items(resp)
        out = []
        for oid in order_ids:
            ack = by_id.get(oid)
            out.append(ack if ack is not None else await self._cancel_one(oid))
        return out

    @staticmethod
    def _cancel_items(resp: Mapping[str, Any]) -> dict[str, CancelAck]:
        """A batched cancel's answer, by order id (only an item answered "not found" is already gone;
        ids the answer leaves out or that cannot be read are not in it)."""
        by_id: dict[str, CancelAck] = {}
        for item in resp.get("orders") or []:
            if not isinstance(item, Mapping):
                continue
            iid = item.get("order_id")
            if not isinstance(iid, str):
                continue
            err = item.get("error")
            coid = item.get("client_order_id") if isinstance(item.get("client_order_id"), str) else None
            if err:
                code = str(err.get("code", "") if isinstance(err, dict) else err)
                if code in NOT_FOUND_CODES:
                    by_id[iid] = CancelAck(order_id=iid, client_order_id=coid, reduced_by=0, already_gone=True)
                else:
                    by_id[iid] = CancelAck(order_id=iid, client_order_id=coid, reduced_by=0, error=code or "refused")
            else:
                try:
                    by_id[iid] = wire.decode_cancel_ack(item)
                except wire.WireError as exc:
                    log.warning("batched cancel item for %s unreadable (%s): cancelling it alone", iid, exc)
        return by_id

    async def _cancel_one(self, order_id: str) -> CancelAck:
        try:
            return await self.cancel_order(order_id)
        except ExchangeError as exc:
            return CancelAck(order_id=order_id, client_order_id=None, reduced_by=0, error=exc.code)

    async def cancel_all(self, *, subaccount: int | None = None) -> None:
        """``DELETE /portfolio/events/orders`` (kalshi-api.md 4.1): cancels every resting order of the
        member on every shard (all subaccounts, or only ``subaccount``); no ticker filter exists. Answers
        204 with no body. Orders placed in the minute after it may be cancelled too: do not re-quote at
        once. Raises ExchangeError (or RateLimited) when refused; the caller verifies over REST."""
        params = {"subaccount": subaccount} if subaccount is not None else None
        await self.request("DELETE", protocol.PATH_CANCEL_ALL, params=params, lane=CANCEL,
                           cost=self._cost("DELETE", protocol.PATH_CANCEL_ALL, protocol.COST_CANCEL_ALL), retry=False)

    async def amend_order(self, order_id: str, *, ticker: str, side: str, price: int, count: int,
                          client_order_id: str | None = None, updated_client_order_id: str | None = None,
                          exchange_index: int | None = None) -> OrderAck:
        """Amend price and/or size. ``count`` is the new total (filled + desired remaining), 1e-2 contracts.
        An answer about another order is not trusted: the order is read back (``mismatch=True``)."""
        body: dict[str, Any] = {"ticker": ticker, "side": side, "price": format_price(price),
                                "count": format_count(count)}
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        if updated_client_order_id is not None:
            body["updated_client_order_id"] = updated_client_order_id
        shard = exchange_index if exchange_index is not None else self.shard_of(ticker)
        if shard is not None:
            body["exchange_index"] = shard
        self.remember_order(order_id, ticker)
        resp = await self.request("POST", f"{protocol.PATH_ORDERS_V2}/{order_id}/amend", body=body, lane=AMEND,
                                  retry=False, shard=_write_shard(body))
        if resp.get("order_id") not in (None, order_id):
            self.mismatched_answers += 1
            log.warning("amend of %s answered about order %s: reading the order back", order_id,
                        str(resp.get("order_id"))[:60])
            return wire.order_ack_from_order(await self.get_order(order_id), mismatch=True)
        if "order_id" not in resp:
            resp = {**resp, "order_id": order_id}
        if "remaining_count" not in resp or "fill_count" not in resp:
            # the counts are optional in the amend answer: read the order rather than assume 0
            return wire.order_ack_from_order(await self.get_order(order_id))
        return wire.decode_order_ack(resp)

    async def decrease_order(self, order_id: str, reduce_to: int | None = None, *, reduce_by: int | None = None,
                             ticker: str | None = None, exchange_index: int | None = None) -> DecreaseAck:
        """V2 decrease: exactly one of ``reduce_to`` (the remaining size wanted) or ``reduce_by``, 1e-2
        contracts. An answer about another order is not trusted: the order is read back."""
        if (reduce_to is None) == (reduce_by is None):
            raise ValueError("decrease_order takes exactly one of reduce_to and reduce_by")
        body: dict[str, Any] = ({"reduce_to": format_count(reduce_to)} if reduce_to is not None
                                else {"reduce_by": format_count(reduce_by)})  # type: ignore[arg-type]
        body.update(self._route(order_id, ticker, exchange_index))
        resp = await self.request("POST", f"{protocol.PATH_ORDERS_V2}/{order_id}/decrease", body=body, lane=AMEND,
                                  retry=False, shard=_write_shard(body))
        if resp.get("order_id") not in (None, order_id):
            self.mismatched_answers += 1
            log.warning("decrease of %s answered about order %s: reading the order back", order_id,
                        str(resp.get("order_id"))[:60])
            o = await self.get_order(order_id)
            return DecreaseAck(order_id, o.client_order_id, o.remaining_count, mismatch=True)
        if "order_id" not in resp:
            resp = {**resp, "order_id": order_id}
        return wire.decode_decrease_ack(resp)

    # -- portfolio reads -----------------------------------------------------------------------
    async def iter_orders(self, *, ticker: str | None = None, event_ticker: str | None = None,
                          status: str | None = None, min_ts: int | None = None, max_ts: int | None = None,
                          limit: int = 200, max_pages: int | None = None, exchange_index: int | None = None,
                          subaccount: int | None = None) -> AsyncIterator[UserOrder]:
        params = {"ticker": ticker, "event_ticker": event_ticker, "status": status, "min_ts": min_ts,
                  "max_ts": max_ts, "exchange_index": exchange_index, "subaccount": subaccount}
        async for o in self.paginate(protocol.PATH_ORDERS_READ, "orders", params, limit=limit, max_pages=max_pages):
            yield wire.decode_user_order(o)

    async def get_orders(self, **kw: Any) -> list[UserOrder]:
        return [o async for o in self.iter_orders(**kw)]

    async def get_order(self, order_id: str) -> UserOrder:
        body = await self.request("GET", f"{protocol.PATH_ORDERS_READ}/{order_id}")
        return wire.decode_user_order(body.get("order") or body)

    async def iter_fills(self, *, ticker: str | None = None, order_id: str | None = None,
                         min_ts: int | None = None, max_ts: int | None = None, limit: int = 200,
                         max_pages: int | None = None, exchange_index: int | None = None,
                         subaccount: int | None = None) -> AsyncIterator[Fill]:
        params = {"ticker": ticker, "order_id": order_id, "min_ts": min_ts, "max_ts": max_ts,
                  "exchange_index": exchange_index, "subaccount": subaccount}
        async for f in self.paginate(protocol.PATH_FILLS, "fills", params, limit=limit, max_pages=max_pages):
            yield wire.decode_fill(f)

    async def get_fills(self, **kw: Any) -> list[Fill]:
        return [f async for f in self.iter_fills(**kw)]

    async def iter_positions(self, *, ticker: str | None = None, event_ticker: str | None = None,
                             count_filter: str | None = None, settlement_status: str | None = None,
                             limit: int = 200, max_pages: int | None = None, exchange_index: int | None = None,
                             subaccount: int | None = None) -> AsyncIterator[MarketPosition]:
        params = {"ticker": ticker, "event_ticker": event_ticker, "count_filter": count_filter,
                  "settlement_status": settlement_status, "exchange_index": exchange_index,
                  "subaccount": subaccount}
        async for p in self.paginate(protocol.PATH_POSITIONS, "market_positions", params, limit=limit,
                                     max_pages=max_pages):
            yield wire.decode_market_position(p)

    async def get_positions(self, **kw: Any) -> list[MarketPosition]:
        return [p async for p in self.iter_positions(**kw)]

    async def get_event_positions(self, *, event_ticker: str | None = None, limit: int = 200,
                                  max_pages: int | None = None) -> list[EventPosition]:
        """``event_positions[]`` of GET /portfolio/positions (``total_cost_shares_fp`` included)."""
        out = []
        async for e in self.paginate(protocol.PATH_POSITIONS, "event_positions", {"event_ticker": event_ticker},
                                     limit=limit, max_pages=max_pages):
            out.append(wire.decode_event_position(e))
        return out

    async def iter_settlements(self, *, ticker: str | None = None, event_ticker: str | None = None,
                               min_ts: int | None = None, max_ts: int | None = None, limit: int = 200,
                               max_pages: int | None = None, subaccount: int | None = None
                               ) -> AsyncIterator[Settlement]:
        params = {"ticker": ticker, "event_ticker": event_ticker, "min_ts": min_ts, "max_ts": max_ts,
                  "subaccount": subaccount}
        async for x in self.paginate(protocol.PATH_SETTLEMENTS, "settlements", params, limit=limit,
                                     max_pages=max_pages):
            yield wire.decode_settlement(x)

    async def get_settlements(self, **kw: Any) -> list[Settlement]:
        return [x async for x in self.iter_settlements(**kw)]

    async def get_balance(self, *, exchange_index: int | None = None, subaccount: int | None = None) -> Balance:
        """Balance over every shard with ``breakdown`` per shard (or one shard's with ``exchange_index``)."""
        return wire.decode_balance(await self.request("GET", protocol.PATH_BALANCE, params={
            "exchange_index": exchange_index, "subaccount": subaccount}))

    async def transfer_between_shards(self, amount: int, source_shard: int, destination_shard: int, *,
                                      source_subaccount: int | None = None,
                                      destination_subaccount: int | None = None,
                                      client_transfer_id: str | None = None) -> str:
        """``POST /portfolio/intra_exchange_instance_transfer``: move ``amount`` (1e-4 $, the wire's
        centi-cents) of collateral between shards. Returns the ``transfer_id``. Not retried (a write);
        pass the same ``client_transfer_id`` to retry safely."""
        if amount <= 0:
            raise ValueError(f"transfer amount {amount} must be > 0 (1e-4 $)")
        body = transfer_body(amount, source_shard, destination_shard, client_transfer_id or str(uuid.uuid4()))
        if source_subaccount is not None:
            body["source_subaccount"] = source_subaccount
        if destination_subaccount is not None:
            body["destination_subaccount"] = destination_subaccount
        resp = await self.request("POST", protocol.PATH_TRANSFER, body=body, lane=AMEND, retry=False)
        tid = resp.get("transfer_id") if isinstance(resp, Mapping) else None
        if not isinstance(tid, str) or not tid:
            raise wire.WireError(f"transfer answer without transfer_id: {str(resp)[:120]}")
        return tid

    intra_exchange_instance_transfer = transfer_between_shards   # the endpoint's own name

    async def check_shard_balances(self, needs: Mapping[str, int]) -> Balance:
        """Check that each shard holding markets to trade has the balance they need before trading.

        ``needs``: ticker -> money the market may tie up (1e-4 $); summed per shard. A market's shard
        comes from the shard map (it is read with GET /markets/{t} when unknown). Raises
        ``ShardBalanceError`` naming each short shard and the transfer to make; returns the balance
        when every shard has enough. With no ``balance_breakdown`` (subaccount-locked keys) the total
        balance is checked against the total need instead."""
        per_shard: dict[int, int] = {}
        tickers_of: dict[int, list[str]] = {}
        for t, need in needs.items():
            shard = self.shard_of(t)
            if shard is None:
                shard = (await self.get_market(t)).exchange_index or 0
                self.shards.setdefault(t, shard)
            per_shard[shard] = per_shard.get(shard, 0) + need
            tickers_of.setdefault(shard, []).append(t)
        bal = await self.get_balance()
        short = []
        if not bal.breakdown:
            total = sum(per_shard.values())
            if bal.balance < total:
                raise ShardBalanceError([(0, bal.balance, total, sorted(needs))], bal)
            return bal
        have = dict(bal.breakdown)
        for shard, need in sorted(per_shard.items()):
            if have.get(shard, 0) < need:
                short.append((shard, have.get(shard, 0), need, tickers_of[shard]))
        if short:
            raise ShardBalanceError(short, bal)
        return bal

    # -- order groups (write bucket, place lane) -----------------------------------------------
    async def create_order_group(self, contracts_limit: int, *, subaccount: int | None = None,
                                 exchange_index: int | None = None) -> str:
        """Create a group; ``contracts_limit`` in 1e-2 contracts over the rolling 15 s window. A group
        lives on one shard (kalshi-api.md 4.4): create one per shard the session trades on."""
        body: dict[str, Any] = {"contracts_limit_fp": format_count(contracts_limit)}
        if contracts_limit % 100 == 0:
            body["contracts_limit"] = contracts_limit // 100
        if subaccount is not None:
            body["subaccount"] = subaccount
        if exchange_index is not None:
            body["exchange_index"] = exchange_index
        resp = await self.request("POST", f"{protocol.PATH_ORDER_GROUPS}/create", body=body, lane=AMEND,
                                  retry=False)
        return str(resp["order_group_id"])

    async def get_order_group(self, order_group_id: str) -> dict[str, Any]:
        body = await self.request("GET", f"{protocol.PATH_ORDER_GROUPS}/{order_group_id}")
        return dict(body.get("order_group") or body)

    async def list_order_groups(self) -> list[dict[str, Any]]:
        body = await self.request("GET", protocol.PATH_ORDER_GROUPS)
        return list(body.get("order_groups") or [])

    async def reset_order_group(self, order_group_id: str) -> None:
        await self.request("PUT", f"{protocol.PATH_ORDER_GROUPS}/{order_group_id}/reset", body={}, lane=AMEND,
                           retry=False)

    async def trigger_order_group(self, order_group_id: str) -> None:
        """Kill switch: cancel every order in the group and block new ones until a reset."""
        await self.request("PUT", f"{protocol.PATH_ORDER_GROUPS}/{order_group_id}/trigger", body={},
                           lane=CANCEL, retry=False)

    async def set_order_group_limit(self, order_group_id: str, contracts_limit: int) -> None:
        body: dict[str, Any] = {"contracts_limit_fp": format_count(contracts_limit)}
        if contracts_limit % 100 == 0:
            body["contracts_limit"] = contracts_limit // 100
        await self.request("PUT", f"{protocol.PATH_ORDER_GROUPS}/{order_group_id}/limit", body=body,
                           lane=AMEND, retry=False)

    async def delete_order_group(self, order_group_id: str) -> None:
        """Delete a group; the exchange cancels its orders."""
        try:
            await self.request("DELETE", f"{protocol.PATH_ORDER_GROUPS}/{order_group_id}", lane=CANCEL,
                               retry=False)
        except NotFound:
            pass

    # -- account -------------------------------------------------------------------------------
    async def get_account_limits(self) -> AccountLimits:
        """``GET /account/limits``, typed: ``read``/``write`` {refill_rate, bucket_capacity}, ``grants``.
        Raises WireError when the answer lacks the spec's fields (see ``apply_account_limits``)."""
        return wire.decode_account_limits(await self.request("GET", protocol.PATH_ACCOUNT_LIMITS))

    async def get_endpoint_costs(self) -> EndpointCosts:
        """``GET /account/endpoint_costs`` (default cost + the routes that differ); kept in
        ``self.endpoint_costs`` for the client's own cost of cancel-all."""
        self.endpoint_costs = wire.decode_endpoint_costs(
            await self.request("GET", protocol.PATH_ENDPOINT_COSTS, auth=True))
        return self.endpoint_costs

    async def apply_account_limits(self) -> tuple[float, float] | None:
        """Read GET /account/limits and size the buckets from it (rates and capacities); returns (read,
        write) tokens/s, or None (budget unchanged) if unreadable. An answer in the spec's shape is used
        as is; an older shape (tier name, ``read_limit``) falls back to the limiter's reading of it."""
        try:
            body = await self.request("GET", protocol.PATH_ACCOUNT_LIMITS)
        except (ExchangeError, RequestTimeout) as exc:
            log.info("account limits unavailable (%s); keeping the configured budget", exc)
            return None
        try:
            lim = wire.decode_account_limits(body)
        except wire.WireError as exc:
            rates = limits_from_account(body)
            if rates is None:
                log.info("account limits body not understood (%s); keeping the configured budget", exc)
                return None
            self.limiter.set_budget(*rates)
            return rates
        self.limiter.set_budget(lim.read.refill_rate, lim.write.refill_rate,
                                read_capacity=lim.read.bucket_capacity, write_capacity=lim.write.bucket_capacity)
        return lim.read.refill_rate, lim.write.refill_rate


TLS_HINT = ("the server's TLS certificate is not trusted: set kalshi.ca_file to the PEM bundle of the CA "
            "that signed it, or fix the system's trust store")


def _tls_reason(exc: BaseException) -> str:
    cert_err = getattr(exc, "certificate_error", None)  # aiohttp keeps the ssl error here
    if isinstance(cert_err, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cert_err.verify_message}"
    return str(exc)


def _write_shard(fields: Mapping[str, Any]) -> int | None:
    """The per-shard write bucket a single write bills: its exchange_index when >= 1, else None."""
    i = fields.get("exchange_index")
    return i if isinstance(i, int) and i >= 1 else None


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class _QuoteAnswer:
    """The completion of one :meth:`KalshiRest.place_quote_now` create: the connection calls it with the
    answer (or failure); it is what ``create_order_now``'s three closures were, as one object made per
    request. The :class:`OrderRequest` the outcome code reads is only built here, after the answer."""

    __slots__ = ("rest", "ticker", "side", "price", "count", "coid", "group", "shard", "done", "ctx", "spawn")

    def __init__(self, rest: KalshiRest, ticker: str, side: str, price: int, count: int, coid: str,
                 group: str | None, shard: int | None, done: Callable[[Any, Any, Any], None], ctx: Any,
                 spawn: Callable[[Any], Any]) -> None:
        self.rest, self.ticker, self.side, self.price, self.count = rest, ticker, side, price, count
        self.coid, self.group, self.shard, self.done, self.ctx, self.spawn = coid, group, shard, done, ctx, spawn

    def request(self) -> OrderRequest:
        """The request the bytes encode (``place_quote_now``'s docstring)."""
        return OrderRequest(ticker=self.ticker, side=self.side, price=self.price, count=self.count,
                            client_order_id=self.coid, post_only=True, cancel_order_on_pause=True,
                            order_group_id=self.group, exchange_index=None)

    def _done(self, ack: OrderAck | None, exc: BaseException | None) -> None:
        self.done(self.ctx, ack, exc)

    def __call__(self, status: int, raw: bytes, exc: BaseException | None) -> None:
        rest = self.rest
        obj, err = rest._answer("POST", rest._create_full, PLACE, self.shard, status, raw, exc)
        rest._create_answered(self.request(), obj, err, self._done, self.spawn)


class _AmendAnswer:
    """The completion of one :meth:`KalshiRest.amend_quote_now` amend (as :class:`_QuoteAnswer`)."""

    __slots__ = ("rest", "order_id", "full", "shard", "done", "ctx", "spawn")

    def __init__(self, rest: KalshiRest, order_id: str, full: str, shard: int | None,
                 done: Callable[[Any, Any, Any], None], ctx: Any, spawn: Callable[[Any], Any]) -> None:
        self.rest, self.order_id, self.full, self.shard = rest, order_id, full, shard
        self.done, self.ctx, self.spawn = done, ctx, spawn

    def _done(self, ack: OrderAck | None, exc: BaseException | None) -> None:
        self.done(self.ctx, ack, exc)

    def __call__(self, status: int, raw: bytes, exc: BaseException | None) -> None:
        rest = self.rest
        obj, err = rest._answer("POST", self.full, AMEND, self.shard, status, raw, exc)
        rest._amend_answered(self.order_id, obj, err, self._done, self.spawn)
