"""The execution driver: runs execution algorithms against the Kalshi connector.

One :class:`ExecutionService` owns a REST client and a WebSocket, and runs any number of executions
at once. For each one it follows docs/execution.md "Plugging in a driver":

- book changes of the market (WS ``orderbook_delta``) drive ``algo.on_book``; a timer loop calls
  ``algo.on_timer`` once ``next_wakeup_ns`` is due;
- every intent passes the risk gate (places and amends; cancels and decreases never blocked) and the
  connector's rate limiter, then becomes one REST call; its answer goes back to the algorithm exactly
  once (``on_order_update(..., ack=kind)``); a refusal is answered ``rejected``;
- a ``Cancel`` for a child whose place is still in flight is held until the place is answered;
  cancels are sent batched (``cancel_orders``: fixed path, pre-signed), up to 20 per request;
- WS ``user_order`` changes are forwarded as unsolicited updates and WS ``fill`` messages (by
  ``trade_id``, once) as ``on_fill``, also after the algorithm is done;
- when an algorithm is done the driver waits (at most ``settle_s``) for fills the exchange reported
  but that have not arrived, backfills the rest over REST, then writes metrics and children.

Order state. One :class:`kmm.engine.orders.OrderManager` (``svc.om``) tracks every child sent, as
the market maker's loop does: ``om.create(..., client_order_id=child_id)`` after the gate passes and
before the create goes out; every REST answer (ack, reject, timeout + lookup, amend/decrease/cancel
acks and failures, order reads) and every WS ``user_order`` and ``fill`` is fed to it, and cancels,
amends and decreases are marked ``om.request_*`` before they are sent. Fills are deduplicated by
``om.on_fill``. The risk gate reads open orders and open size from the OM. :class:`ChildOrder` keeps
only what the algorithm contract and the records need on top (place/held-cancel progress, the status
and fill count the algorithm was told, level, times); its ``order_id`` and ``live`` come from the OM.

Sharing the write budget. The connector's limiter serves cancels before amends before places and
paces them to the tier. On top of it the driver keeps at most ``max_inflight`` places/amends in
flight and picks the next one **round-robin across executions**, so one execution with many children
cannot starve the others: each gets an equal share of the place budget while it has work queued.

Child ids. Execution ids are ``[A-Za-z0-9_-]{1,40}`` (generated: ``x`` + 16 hex digits); a child is
``{execution_id}-{n}`` and is sent as the ``client_order_id`` unchanged (Kalshi-safe, <= 64 chars),
so an order found at the exchange names its execution.

The venue. The service runs on a :class:`kmm.engine.session.Session`, the same venue wiring as the
market maker: REST, WebSocket, rate limiter, order manager, risk gate (which reads the limiter's 429
back-off and the session's book freshness) and portfolio. This module keeps only what is
execution's own: algorithms, intents, children, fairness, metrics and records. Time comes from the
injected clock (``clock=``); waits are on events, never polling sleeps.

Stopping. ``stop()`` (and leaving ``async with``) cancels every running execution, waits for their
children to be reported terminal, then runs the session's stop sweep restricted to the executions'
orders (never the key's other orders, and never cancel-all): it cancels, lists resting orders over
REST and repeats until none of ours rests; ``stop_verified`` is True only when REST shows none and
the OM has no live order either. With a store, executions and children are written as they
change; :meth:`ExecutionService.recover` (run at start) finds executions left open by a previous run,
cancels their resting children and marks them ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmm._core.fees import TAKER_RATE_E6, fee_rate_e6
from kmm._core.grid import Grid
from kmm import protocol
from kmm.engine.clock import Clock, SystemClock
from kmm.engine.freshness import Freshness
from kmm.engine.orders import IN_FLIGHT, Order
from kmm.engine.risk import RiskLimits
from kmm.engine import session as S
from kmm.engine.session import (CancelAck, ConnectorConfig, FeedHandler, Fill, OrderAck,
                                OrderRequest, Session, SessionOptions, UserOrder)
from kmm.errors import ExchangeError, KmmError, RateLimited, RequestTimeout
from kmm.execution.algo import NS, Algo
from kmm.execution.algos import build_algo
from kmm.execution.decision import DEFAULT_POLICY, LiquidityPolicy
from kmm.execution.intents import Amend, Cancel, Decrease, Intent, Place
from kmm.execution.metrics import ExecutionMetrics, metrics_for
from kmm.execution.request import ExecutionRequest, MarketInfo, RequestError

__all__ = ["ExecutionService", "ExecutionHandle", "ChildOrder", "new_execution_id", "check_execution_id",
           "store_status", "market_info_from_raw", "BATCH_CANCEL_MAX"]

log = logging.getLogger(__name__)

BATCH_CANCEL_MAX = protocol.BATCH_CANCEL_MAX
EXEC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TIF_IOC = "immediate_or_cancel"


def new_execution_id() -> str:
    """A fresh execution id: ``x`` + 16 hex digits (children become ``x...-n``)."""
    return "x" + uuid.uuid4().hex[:16]


def check_execution_id(execution_id: str) -> str:
    if not EXEC_ID_RE.match(execution_id or ""):
        raise RequestError(f"execution id {execution_id!r} must be 1-40 characters of A-Z a-z 0-9 _ - "
                           "(its children's client_order_ids are '<id>-<n>', at most 64 characters)")
    return execution_id


def store_status(end_reason: str) -> str:
    """The store's terminal execution status for an algorithm's end reason."""
    if end_reason in ("filled", "all_splits_done", "schedule_done", "done"):
        return "done"
    if end_reason == "timeout":
        return "expired"
    if end_reason in ("too_many_rejects",) or end_reason.startswith("error"):
        return "failed"
    if end_reason.startswith("cancel") or "stop" in end_reason:
        return "canceled"
    return "done"


def market_info_from_raw(ticker: str, raw: dict[str, Any], series: dict[str, Any] | None) -> MarketInfo:
    """Execution's :class:`MarketInfo` from ``GET /markets/{t}`` and ``GET /series/{s}`` bodies."""
    grid = Grid(raw.get("price_ranges") or raw.get("price_level_structure") or None)
    rate = TAKER_RATE_E6
    if series:
        s = series.get("series", series)
        try:
            rate = fee_rate_e6(s.get("fee_type") or "quadratic", True, s.get("fee_multiplier", 1) or 1)
        except ValueError as exc:
            log.warning("%s: %s; estimating fees at the standard taker rate", ticker, exc)
    # every market takes 0.01-contract counts since Apr 2026 (kalshi-api.md 2.2); the flag is gone
    return MarketInfo(ticker, grid, True, rate)


# ---------------------------------------------------------------------------------------- state
@dataclass(slots=True)
class ChildOrder:
    """The driver's view of one child order (the algorithm keeps its own)."""

    child_id: str
    side: str
    price: int
    total: int                        # size asked for: place count, amended total, filled + reduce_to
    level: int                        # arrival take-side levels the price reaches (0 = passive)
    created_ns: int
    order: Order | None = None        # the service's OrderManager entry, from the moment it is sent
    place: str = "queued"             # queued -> sent -> acked | rejected
    held_cancel: bool = False         # a Cancel came while the place was in flight
    status: str = "pending"           # exchange vocabulary: what the algorithm and the store were told
    filled: int = 0                   # best known exchange fill count (also from a cancel's reduced_by)
    filled_ns: int | None = None

    @property
    def order_id(self) -> str | None:
        return self.order.order_id if self.order is not None else None

    @property
    def live(self) -> bool:
        """Sent and not terminal in the order manager (which may be at the exchange)."""
        return self.order is not None and self.order.is_live


class ExecutionHandle:
    """What :meth:`ExecutionService.submit` returns: watch, wait for or cancel one execution."""

    def __init__(self, service: ExecutionService, run: _Run) -> None:
        self._svc = service
        self._run = run

    @property
    def execution_id(self) -> str:
        return self._run.algo.execution_id

    @property
    def request(self) -> ExecutionRequest:
        return self._run.algo.request

    @property
    def algo(self) -> Algo:
        return self._run.algo

    @property
    def done(self) -> bool:
        """Ended, every child terminal and the final records written."""
        return self._run.finished.is_set()

    @property
    def metrics(self) -> ExecutionMetrics:
        """Metrics so far (final once :attr:`done`)."""
        return self._run.final_metrics or metrics_for(self._run.algo)

    @property
    def children(self) -> list[ChildOrder]:
        return list(self._run.kids.values())

    @property
    def live_children(self) -> list[ChildOrder]:
        return [c for c in self._run.kids.values() if c.live]

    async def wait(self, timeout: float | None = None) -> ExecutionMetrics:
        """Wait until the execution is done (raises ``asyncio.TimeoutError`` after ``timeout`` s)."""
        await asyncio.wait_for(self._run.finished.wait(), timeout)
        return self.metrics

    async def cancel(self, reason: str = "cancelled") -> None:
        """Stop the execution: every child is cancelled; returns at once (``wait()`` for the end)."""
        self._svc._cancel_run(self._run, reason)

    def __repr__(self) -> str:
        return f"ExecutionHandle({self.execution_id}, {'done' if self.done else 'running'})"


@dataclass(slots=True, eq=False)
class _Run:
    algo: Algo
    market: MarketInfo
    arrival_bid: int | None = None
    arrival_ask: int | None = None
    arrival_take: tuple[tuple[int, int], ...] = ()
    kids: dict[str, ChildOrder] = field(default_factory=dict)
    queue: deque[Intent] = field(default_factory=deque)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    settling: bool = False
    final_metrics: ExecutionMetrics | None = None
    error: str = ""

    @property
    def ticker(self) -> str:
        return self.market.ticker


# ---------------------------------------------------------------------------------------- service
class ExecutionService(FeedHandler):
    """Runs executions on one connection. ``async with ExecutionService(conn) as svc: ...``.

    ``conn``: a :class:`ConnectorConfig` or anything with a ``conn`` attribute (the CLI's ``Venue``).
    ``store``: a :class:`kmm.record.store.Store`, a path to open one at (closed on stop), or None.
    ``limits``: risk limits of the gate (default :class:`RiskLimits()`). ``time_scale``: the
    algorithms' clock runs this many times faster than the wall (for simulations whose flow is sped
    up by the same factor); 1.0 for real trading. ``recover``: on start, close executions a previous
    run left open in the store (cancelling their resting children).
    """

    def __init__(self, conn: Any, *, store: Any = None, limits: RiskLimits | None = None,
                 policy: LiquidityPolicy = DEFAULT_POLICY, max_inflight: int = 4, settle_s: float = 2.0,
                 time_scale: float = 1.0, recover: bool = True, stop_timeout_s: float = 10.0,
                 clock: Clock | None = None) -> None:
        self.conn: ConnectorConfig = getattr(conn, "conn", conn)
        if not isinstance(self.conn, ConnectorConfig):
            raise TypeError(f"ExecutionService needs a ConnectorConfig (or a Venue), got {type(conn).__name__}")
        if time_scale <= 0:
            raise ValueError(f"time_scale {time_scale} must be > 0")
        self._store_arg = store
        self.store: Any = None
        self._own_store = False
        self.policy = policy
        self.max_inflight = max(1, max_inflight)
        self.settle_s = settle_s
        self.time_scale = float(time_scale)
        self.recover_on_start = recover
        self.stop_timeout_s = stop_timeout_s
        self.clock: Clock = clock or SystemClock()
        self._t0 = self.clock.monotonic_ns()
        self.session = Session(self.conn, self.clock, limits or RiskLimits(),
                               options=SessionOptions(stop_deadline_s=stop_timeout_s))
        self.pf = self.session.pf
        # every child sent is tracked here; the gate reads its open orders from it
        self.om = self.session.om
        self.gate = self.session.gate
        # a ready book stays fresh until the connector flags it (gap, disconnect): executions on calm
        # markets are not blocked by silence; the session's freshness is the one state the gate reads
        self.freshness = Freshness(self.clock, stale_after_s=limits.stale_after_s if limits else 5.0)
        self.gate.freshness = self.freshness
        self._progress: asyncio.Event | None = None
        self._runs: dict[str, _Run] = {}
        self._rr: deque[_Run] = deque()
        self._cancels: list[tuple[_Run, ChildOrder]] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._markets: dict[str, MarketInfo] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._wake: asyncio.Event | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self.started = False
        self.stopping = False
        self.stop_verified: bool | None = None
        self.recovered: list[str] = []
        self.calls: dict[str, int] = {"place": 0, "amend": 0, "decrease": 0, "cancel": 0, "cancel_batches": 0}
        self.errors: dict[str, int] = {}

    @property
    def rest(self) -> Any:
        return self.session.rest

    @property
    def ws(self) -> Any:
        return self.session.ws

    # ----------------------------------------------------------------- time
    def now_ns(self) -> int:
        """The algorithms' clock (monotonic ns, scaled by ``time_scale``)."""
        m = self.clock.monotonic_ns()
        if self.time_scale == 1.0:
            return m
        return self._t0 + int((m - self._t0) * self.time_scale)

    # ----------------------------------------------------------------- life cycle
    async def __aenter__(self) -> ExecutionService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.started:
            return
        loop = asyncio.get_running_loop()
        if isinstance(self._store_arg, (str, os.PathLike)):
            from kmm.record.store import Store
            self.store = await loop.run_in_executor(None, Store, Path(self._store_arg))
            self._own_store = True
        else:
            self.store = self._store_arg
        self._progress = asyncio.Event()
        try:
            rest = await self.session.open()      # REST, account limits, status; the gate reads the limiter
            for p in await rest.get_positions():
                self.pf.load_position(p)
            await self.session.open_ws(self, _router(), _book_factory(), {}).start()
        except BaseException:
            await self.session.close()
            raise
        self._wake = asyncio.Event()
        self._timer_task = loop.create_task(self._timer_loop(), name="kmm-exec-timers")
        self.started = True
        if self.store is not None and self.recover_on_start:
            self.recovered = await self.recover()

    async def stop(self, reason: str = "driver stopped") -> bool:
        """Cancel every running execution, verify over REST that none of their children rests, close.
        Returns True when verified (also in ``stop_verified``)."""
        if not self.started or self.stopping:
            return bool(self.stop_verified)
        self.stopping = True
        verified = False
        try:
            for run in list(self._runs.values()):
                if not run.algo.finished:
                    self._cancel_run(run, reason)
            await self._wait_for(lambda: all(r.algo.done for r in self._runs.values()), self.stop_timeout_s)
            verified = await self._stop_sweep()
            for run in list(self._runs.values()):
                if not run.finished.is_set():
                    self._finalize(run, forced=reason)
        except KmmError as exc:
            log.critical("execution stop failed: %s; check the exchange for resting orders", exc)
        finally:
            self.stop_verified = verified
            if self._timer_task is not None:
                self._timer_task.cancel()
            for t in list(self._tasks):
                if not t.done():
                    t.cancel()
            await self.session.close()
            if self._own_store and self.store is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.store.close)
            self.started = False
        return verified

    async def _stop_sweep(self) -> bool:
        """The session's stop sweep, restricted to our executions' orders (found by the order manager
        or by their execution id prefix) and without cancel-all (the key may carry other orders):
        cancel, list resting orders over REST, repeat until none of ours rests. Verified only when REST
        shows none and the order manager has no live order either."""
        ids = tuple(self._runs)
        res = await self.session.stop_sweep(owned=lambda o: self._owned(o, ids), escalate=False)
        unsure = [o for o in self.om.orders() if o.is_live]
        if unsure:
            log.critical("execution stop: %d child orders not confirmed terminal (%s); check the exchange",
                         len(unsure), ", ".join(f"{o.client_order_id}:{o.state.value}" for o in unsure))
        if res.verified and not unsure:
            log.info("execution stop: verified over REST and the order manager that none of %d executions' "
                     "orders rests", len(ids))
        return res.verified and not unsure

    async def _wait_for(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (on the algorithms' progress, never polling) until ``cond()`` or ``timeout_s`` passes."""
        assert self._progress is not None
        end = self.clock.monotonic_ns() + int(timeout_s * NS)
        while not cond():
            left = (end - self.clock.monotonic_ns()) / NS
            if left <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True

    def _owned(self, o: UserOrder, exec_ids: tuple[str, ...]) -> bool:
        coid = o.client_order_id or ""
        if self.om.get(coid) is not None:
            return True
        return any(coid.startswith(e + "-") for e in exec_ids)

    async def _cancel_ids(self, order_ids: list[str]) -> None:
        """Batched cancels outside the algorithms (stop sweep, recovery); answers go to the order manager."""
        assert self.rest is not None
        for i in range(0, len(order_ids), BATCH_CANCEL_MAX):
            chunk = order_ids[i:i + BATCH_CANCEL_MAX]
            for oid in chunk:
                o = self.om.by_order_id(oid)
                if o is not None and o.is_live:
                    self.om.request_cancel(oid)
            self.calls["cancel_batches"] += 1
            try:
                acks = await self.rest.cancel_orders(chunk)
            except KmmError:
                for oid in chunk:
                    self.om.on_request_failed(oid, "batched cancel failed")
                raise
            for a in acks:
                self._om_cancel_answer(a)

    def _om_cancel_answer(self, a: CancelAck) -> None:
        if self.om.by_order_id(a.order_id) is None:
            return                            # not ours this session (recovery of a previous run)
        if a.error:
            self.om.on_request_failed(a.order_id, f"cancel refused: {a.error}")
        else:
            self.om.on_cancel_ack(a.order_id, a.reduced_by)

    async def recover(self) -> list[str]:
        """Close executions a previous run left open in the store: cancel their resting children
        (found by client_order_id), verify, and mark them ended. Returns their ids."""
        if self.store is None or self.rest is None:
            return []
        loop = asyncio.get_running_loop()
        open_recs = await loop.run_in_executor(None, self.store.open_executions)
        open_recs = [r for r in open_recs if r.execution_id not in self._runs]
        if not open_recs:
            return []
        done: list[str] = []
        for rec in open_recs:
            kids = {k.client_order_id: k for k in
                    await loop.run_in_executor(None, self.store.execution_orders, rec.execution_id)}
            prefix = rec.execution_id + "-"
            cancelled = 0
            left: list[UserOrder] = []
            for _ in range(3):
                left = [o for o in await self.rest.get_orders(status="resting", ticker=rec.ticker)
                        if o.client_order_id and (o.client_order_id in kids or o.client_order_id.startswith(prefix))]
                if not left:
                    break
                cancelled += len(left)
                await self._cancel_ids([o.order_id for o in left])
            if left:
                log.critical("recovery of %s: %d child orders still rest after cancelling", rec.execution_id,
                             len(left))
                continue
            for coid, k in kids.items():
                if k.status not in ("canceled", "executed", "rejected"):
                    try:
                        o = await self.rest.find_order_by_client_id(coid, ticker=rec.ticker)
                    except KmmError:
                        o = None
                    self.store.record_execution_order(
                        execution_id=rec.execution_id, client_order_id=coid, level=k.level,
                        target_price=k.target_price, size=k.size,
                        status=o.status if o is not None else "canceled",
                        filled=o.fill_count if o is not None else k.filled,
                        order_id=o.order_id if o is not None else k.order_id)
            self.store.update_execution(rec.execution_id, status="canceled",
                                        reason=f"interrupted: kmm stopped while it ran; {cancelled} resting "
                                               "child orders cancelled on the next start")
            log.warning("recovered execution %s left open by a previous run: %d resting children cancelled",
                        rec.execution_id, cancelled)
            done.append(rec.execution_id)
        return done

    # ----------------------------------------------------------------- markets
    async def market(self, ticker: str) -> MarketInfo:
        """The market's execution info (cached); its book is followed from now on."""
        info = self._markets.get(ticker)
        if info is not None:
            return info
        assert self.rest is not None and self.ws is not None
        raw = await self.rest.get_market_raw(ticker)
        status = str(raw.get("status", "active"))
        if status not in ("active", "open"):
            raise RequestError(f"{ticker} is {status}: executions need an open market")
        series = None
        sname = raw.get("series_ticker") or str(raw.get("event_ticker", ticker)).split("-")[0]
        try:
            series = await self.rest.get_series(sname)
        except KmmError as exc:
            log.warning("%s: series %s not readable (%s); standard taker fee assumed", ticker, sname, exc)
        info = market_info_from_raw(ticker, raw, series)
        self._markets[ticker] = info
        self.gate.add_market(ticker, info.grid, fractional=info.fractional)
        self.freshness.add(ticker)
        self._ready.setdefault(ticker, asyncio.Event())
        self.ws.add_markets({ticker: raw.get("price_ranges") or info.grid.ranges})
        if self.ws.is_ready(ticker):
            self._ready[ticker].set()
        return info

    async def book(self, ticker: str, timeout_s: float = 10.0) -> Any:
        """The live book of ``ticker`` once its snapshot has arrived."""
        await self.market(ticker)
        ev = self._ready[ticker]
        try:
            await asyncio.wait_for(ev.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise KmmError(f"no order book snapshot for {ticker} within {timeout_s} s") from None
        assert self.ws is not None
        return self.ws.book(ticker)

    # ----------------------------------------------------------------- submit / cancel
    async def submit(self, request: ExecutionRequest, *, execution_id: str | None = None,
                     policy: LiquidityPolicy | None = None) -> ExecutionHandle:
        """Start an execution; returns at once with a handle (``await handle.wait()``)."""
        if not self.started or self.stopping:
            raise KmmError("the execution service is not running (use 'async with ExecutionService(...)')")
        eid = check_execution_id(execution_id or request.execution_id or new_execution_id())
        if eid in self._runs:
            raise RequestError(f"execution id {eid} is already in use")
        info = await self.market(request.ticker)
        book = await self.book(request.ticker)
        algo = build_algo(request, info, policy=policy or self.policy, execution_id=eid)
        run = _Run(algo, info)
        bids, asks = list(book.bids(10)), list(book.asks(10))
        run.arrival_bid = bids[0][0] if bids else None
        run.arrival_ask = asks[0][0] if asks else None
        run.arrival_take = tuple(asks if algo.side == "bid" else bids)
        self._runs[eid] = run
        if self.store is not None:
            self.store.record_execution(execution_id=eid, ticker=request.ticker, side=algo.side,
                                        target_size=algo.target_size, algo=request.algo, limit_price=algo.limit,
                                        params={**dict(request.params), "action": request.action.value,
                                                "limit_user": request.limit_price, "edge": request.edge,
                                                "confidence": request.confidence})
            self.store.record_book_snapshot(ticker=request.ticker, bids=bids, asks=asks, reason="arrival")
        log.info("execution %s: %s", eid, request.describe())
        self._feed(run, "start", book)
        return ExecutionHandle(self, run)

    def handles(self) -> list[ExecutionHandle]:
        return [ExecutionHandle(self, r) for r in self._runs.values()]

    def _cancel_run(self, run: _Run, reason: str) -> None:
        if not run.algo.finished:
            self._feed(run, "cancel", reason)

    # ----------------------------------------------------------------- the algorithm side
    def _feed(self, run: _Run, method: str, *args: Any, **kw: Any) -> None:
        """Call one algorithm entry point and send what it returns."""
        algo = run.algo
        try:
            intents = getattr(algo, method)(self.now_ns(), *args, **kw)
        except Exception as exc:  # an algorithm bug must not leave orders behind
            log.exception("execution %s: %s raised; cancelling the execution", algo.execution_id, method)
            run.error = f"error: {exc}"
            try:
                intents = algo.cancel(self.now_ns(), f"error in {method}")
            except Exception:
                log.exception("execution %s: cancel after the error raised too", algo.execution_id)
                intents = [Cancel(c.child_id) for c in algo.live_children]
        for it in intents:
            self._enqueue(run, it)
        self._pump()
        if algo.done and not run.settling:
            run.settling = True
            self._spawn(self._settle(run))
        if self._wake is not None:
            self._wake.set()
        if self._progress is not None:
            self._progress.set()

    def _enqueue(self, run: _Run, it: Intent) -> None:
        if isinstance(it, Place):
            level = sum(1 for p, _ in run.arrival_take
                        if (p <= it.price if it.side == "bid" else p >= it.price))
            c = ChildOrder(it.child_id, it.side, it.price, it.count, level, self.clock.time_ns())
            run.kids[it.child_id] = c
            self._record_child(run, c)
            self._queue_write(run, it)
        elif isinstance(it, Cancel):
            known = run.kids.get(it.child_id)
            if known is None:
                return
            if known.place in ("queued", "sent"):
                known.held_cancel = True       # answered once the place is answered
            elif known.place == "rejected":
                return                         # nothing at the exchange: dropped (contract item 4)
            else:
                self._cancels.append((run, known))
        else:
            self._queue_write(run, it)

    def _queue_write(self, run: _Run, it: Intent) -> None:
        if not run.queue:
            self._rr.append(run)
        run.queue.append(it)

    def _pump(self) -> None:
        """Send what the budget allows: every ready cancel (batched), then places/amends round-robin."""
        if self.rest is None:
            return
        if self._cancels:
            batch, self._cancels = self._cancels, []
            for i in range(0, len(batch), BATCH_CANCEL_MAX):
                self._spawn(self._do_cancels(batch[i:i + BATCH_CANCEL_MAX]))
        while self._inflight < self.max_inflight and self._rr:
            run = self._rr.popleft()
            if not run.queue:
                continue
            it = run.queue.popleft()
            if run.queue:
                self._rr.append(run)
            self._inflight += 1
            self._spawn(self._do_write(run, it))

    async def _do_write(self, run: _Run, it: Intent) -> None:
        try:
            if isinstance(it, Place):
                await self._do_place(run, it)
            elif isinstance(it, Amend):
                await self._do_amend(run, it)
            elif isinstance(it, Decrease):
                await self._do_decrease(run, it)
        finally:
            self._inflight -= 1
            self._pump()

    def _deny(self, run: _Run, child_id: str, kind: str, why: str) -> None:
        self.errors[why] = self.errors.get(why, 0) + 1
        c = run.kids.get(child_id)
        rem = max(0, c.total - c.filled) if c is not None else 0
        filled = c.filled if c is not None else 0
        self._feed(run, "on_order_update", child_id, "rejected", rem, filled, ack=kind)

    async def _do_place(self, run: _Run, it: Place) -> None:
        assert self.rest is not None
        c = run.kids[it.child_id]
        if run.algo.finished and c.held_cancel:
            # ended while the place waited for its turn: never sent, nothing at the exchange
            c.place, c.status = "rejected", "rejected"
            self._record_child(run, c)
            self._deny(run, it.child_id, "place", "not sent: execution ended")
            return
        d = self.gate.check_place(run.ticker, it.side, it.price, it.count)
        if not d:
            c.place, c.status = "rejected", "rejected"
            self._record_child(run, c)
            log.info("execution %s: place %s refused by the risk gate: %s", run.algo.execution_id, it.child_id,
                     d.detail)
            self._deny(run, it.child_id, "place", f"risk:{d.reason}")
            return
        try:
            c.order = self.om.create(run.ticker, it.side, it.price, it.count, client_order_id=it.child_id)
        except ValueError as exc:             # an id or size the order manager refuses: never sent
            c.place, c.status = "rejected", "rejected"
            self._record_child(run, c)
            self._deny(run, it.child_id, "place", f"invalid: {exc}")
            return
        c.place = "sent"
        coid = it.child_id
        req = OrderRequest(ticker=run.ticker, side=it.side, price=it.price, count=it.count,
                           client_order_id=coid, time_in_force=it.tif, post_only=it.post_only)
        self.calls["place"] += 1
        # the session's create: never re-sent, its outcome recorded in the order manager
        outcome = await self.session.place(c.order, req)
        if outcome == S.NOT_PLACED:
            self._place_failed(run, c, "not placed (create timed out, lookups found nothing)")
            return
        if outcome == S.RATE_LIMITED:
            self._place_failed(run, c, "429")
            return
        if outcome in (S.REFUSED, S.PAUSED, S.GROUP_FIRED):
            refusal = self.session.last_refusal
            self._place_failed(run, c, refusal.code if refusal is not None else outcome)
            return
        if outcome == S.UNKNOWN:
            found = await self._lookup(run, c)
            self.om.resolve_unknown(coid, found)
            if found is None:
                self._place_failed(run, c, "outcome unknown; not found at the exchange")
                return
            ack = OrderAck(found.order_id, found.client_order_id, found.fill_count, found.remaining_count)
        else:
            o = self.om.get(coid)
            assert o is not None and o.order_id is not None
            ack = OrderAck(o.order_id, coid, o.fill_count, o.remaining)
        c.place = "acked"
        c.filled = max(c.filled, ack.fill_count)
        if ack.remaining_count > 0:
            status = "resting"
        else:
            status = "executed" if ack.fill_count >= it.count else "canceled"
        if c.status not in ("canceled", "executed"):
            c.status = status
        self._record_child(run, c)
        self._feed(run, "on_order_update", it.child_id, status, ack.remaining_count, ack.fill_count,
                   ack="place", price=it.price)
        if c.held_cancel:
            c.held_cancel = False
            if c.live:
                self._cancels.append((run, c))
                self._pump()
            elif run.algo.children[it.child_id].pending.get("cancel") is not None:
                # the order is already terminal: answer the held cancel with its final state
                self._feed(run, "on_order_update", it.child_id, c.status, 0, c.filled, ack="cancel")

    def _place_failed(self, run: _Run, c: ChildOrder, why: str) -> None:
        c.place, c.status = "rejected", "rejected"
        c.held_cancel = False
        self._record_child(run, c)
        log.info("execution %s: create %s refused: %s", run.algo.execution_id, c.child_id, why)
        self._deny(run, c.child_id, "place", why)

    async def _lookup(self, run: _Run, c: ChildOrder) -> UserOrder | None:
        assert self.rest is not None
        try:
            return await self.rest.find_order_by_client_id(c.child_id, ticker=run.ticker)
        except KmmError:
            return None

    async def _do_amend(self, run: _Run, it: Amend) -> None:
        assert self.rest is not None
        c = run.kids.get(it.child_id)
        o = c.order if c is not None else None
        if c is None or o is None or o.order_id is None or not o.is_live:
            self._deny(run, it.child_id, "amend", "amend of an order that is not live")
            return
        oid = o.order_id
        d = self.gate.check_amend(run.ticker, c.side, it.price, max(0, it.count - o.fill_count), o.remaining)
        if not d:
            self._deny(run, it.child_id, "amend", f"risk:{d.reason}")
            return
        if self.om.request_amend(oid, it.price, max(0, it.count - o.fill_count)) is None:
            self._deny(run, it.child_id, "amend", f"order is {o.state.value}")
            return
        self.calls["amend"] += 1
        try:
            ack = await self.rest.amend_order(oid, ticker=run.ticker, side=c.side, price=it.price,
                                              count=it.count, client_order_id=c.child_id)
        except RateLimited:
            self.om.on_request_failed(oid, "429")
            self._deny(run, it.child_id, "amend", "429")
            return
        except (ExchangeError, RequestTimeout, KmmError) as exc:
            self.om.on_request_failed(oid, f"amend: {exc}", gone=getattr(exc, "status", 0) == 404)
            self._deny(run, it.child_id, "amend", getattr(exc, "code", str(exc)))
            await self._refresh(run, c)       # a 404 means it is gone: report its final state
            return
        self.om.on_amend_ack(ack)
        c.price, c.total = it.price, it.count
        c.filled = max(c.filled, ack.fill_count)
        status = "resting" if ack.remaining_count > 0 else ("executed" if ack.fill_count >= it.count else "canceled")
        c.status = status
        self._record_child(run, c)
        self._feed(run, "on_order_update", it.child_id, status, ack.remaining_count, ack.fill_count,
                   ack="amend", price=it.price)

    async def _do_decrease(self, run: _Run, it: Decrease) -> None:
        assert self.rest is not None
        c = run.kids.get(it.child_id)
        o = c.order if c is not None else None
        if c is None or o is None or o.order_id is None or not o.is_live:
            self._deny(run, it.child_id, "decrease", "decrease of an order that is not live")
            return
        oid = o.order_id
        if self.om.request_decrease(oid, it.reduce_to) is None:
            self._deny(run, it.child_id, "decrease", f"order is {o.state.value}")
            return
        self.calls["decrease"] += 1
        try:
            ack = await self.rest.decrease_order(oid, it.reduce_to)
        except (ExchangeError, RequestTimeout, KmmError) as exc:
            self.om.on_request_failed(oid, f"decrease: {exc}", gone=getattr(exc, "status", 0) == 404)
            self._deny(run, it.child_id, "decrease", getattr(exc, "code", str(exc)))
            await self._refresh(run, c)
            return
        self.om.on_decrease_ack(oid, ack.remaining_count)
        c.total = c.filled + ack.remaining_count
        status = "resting" if ack.remaining_count > 0 else "canceled"
        c.status = status
        self._record_child(run, c)
        self._feed(run, "on_order_update", it.child_id, status, ack.remaining_count, c.filled, ack="decrease")

    async def _do_cancels(self, batch: list[tuple[_Run, ChildOrder]]) -> None:
        assert self.rest is not None
        batch = [(r, c) for r, c in batch if c.order_id is not None]
        if not batch:
            return
        for _, c in batch:
            if c.live:
                self.om.request_cancel(c.order_id)  # type: ignore[arg-type]
        self.calls["cancel"] += len(batch)
        self.calls["cancel_batches"] += 1
        try:
            acks = await self.rest.cancel_orders([c.order_id for _, c in batch])
        except (ExchangeError, RequestTimeout, KmmError) as exc:
            log.warning("batched cancel of %d children failed: %s; each is answered rejected and retried",
                        len(batch), exc)
            for run, c in batch:
                self.om.on_request_failed(c.order_id, f"batched cancel failed: {exc}")  # type: ignore[arg-type]
                self._deny(run, c.child_id, "cancel", getattr(exc, "code", str(exc)))
            return
        by_id = {a.order_id: a for a in acks}
        for run, c in batch:
            a = by_id.get(c.order_id)
            if (a is None or a.already_gone or not a.reduced_known
                    or (a.reduced_by == 0 and not a.error and c.filled < c.total)):
                # gone, or the answer does not say how much was removed (or removed nothing while we
                # think part of it rested): the order's own record says what filled
                await self._refresh(run, c, ack="cancel")
                continue
            self._om_cancel_answer(a)
            if a.error:
                # refused for another reason: the order may still rest; the algorithm retries the cancel
                self._deny(run, c.child_id, "cancel", a.error)
                continue
            # the order had ``total`` in all; the cancel removed what remained, so the rest was filled
            c.filled = max(c.filled, c.total - a.reduced_by)
            c.status = "canceled" if c.status not in ("executed",) else c.status
            self._record_child(run, c)
            self._feed(run, "on_order_update", c.child_id, "canceled", 0, c.filled, ack="cancel")

    async def _refresh(self, run: _Run, c: ChildOrder, ack: str | None = None) -> None:
        """Read the order's real state over REST and report it (answering ``ack`` if given)."""
        assert self.rest is not None
        oid = c.order_id
        if oid is None:
            return
        try:
            o = await self.rest.get_order(oid)
        except KmmError as exc:
            log.warning("execution %s: state of %s unreadable (%s)", run.algo.execution_id, c.child_id, exc)
            if ack is not None:
                self.om.on_request_failed(oid, f"{ack}: state unknown")
                self._deny(run, c.child_id, ack, "state unknown")
            return
        mine = self.om.by_order_id(oid)
        if mine is not None and mine.state in IN_FLIGHT:
            self.om.on_request_failed(oid, "read back")     # the request is over: the read says the rest
        self.om.on_user_order(o)
        c.filled = max(c.filled, o.fill_count)
        c.status = o.status
        self._record_child(run, c)
        if ack is not None and o.status == "resting":
            self._deny(run, c.child_id, ack, "still resting")   # the algorithm retries the cancel
            return
        self._feed(run, "on_order_update", c.child_id, o.status, o.remaining_count, o.fill_count, ack=ack,
                   price=o.price)

    # ----------------------------------------------------------------- feed callbacks
    def on_book_ready(self, ticker: str) -> None:
        self.freshness.add(ticker)
        self.freshness.on_ready(ticker)
        ev = self._ready.get(ticker)
        if ev is not None:
            ev.set()

    def on_book_stale(self, ticker: str, reason: str) -> None:
        self.freshness.on_stale(ticker, reason)
        ev = self._ready.get(ticker)
        if ev is not None:
            ev.clear()

    def on_book(self, ticker: str, recv_ns: int) -> None:
        self.freshness.on_data(ticker, recv_ns or self.clock.monotonic_ns())
        if self.ws is None:
            return
        runs = [r for r in self._runs.values() if r.ticker == ticker and r.algo.started and not r.algo.finished]
        if not runs:
            return
        book = self.ws.book(ticker)
        for run in runs:
            self._feed(run, "on_book", book)

    def _hit(self, order_id: str | None, client_order_id: str | None) -> tuple[_Run, ChildOrder] | None:
        """The execution and child an exchange message is about (by client_order_id, else order_id)."""
        o = (self.om.get(client_order_id) if client_order_id else None) or (
            self.om.by_order_id(order_id) if order_id else None)
        if o is None:
            return None
        run = self._runs.get(o.client_order_id.rpartition("-")[0])
        c = run.kids.get(o.client_order_id) if run is not None else None
        return (run, c) if run is not None and c is not None else None

    def on_fill(self, fill: Fill) -> None:
        hit = self._hit(fill.order_id, fill.client_order_id)
        if hit is None or not self.om.on_fill(fill):
            return                            # not ours, or a trade_id already counted
        run, c = hit
        self.pf.apply_fill(fill)
        c.filled_ns = self.clock.time_ns()
        if self.store is not None:
            self.store.record_fill(fill)
        self._feed(run, "on_fill", c.child_id, fill.count, fill.price, fill.fee)

    def on_user_order(self, order: UserOrder) -> None:
        hit = self._hit(order.order_id, order.client_order_id)
        if hit is None:
            return
        run, c = hit
        self.om.on_user_order(order)
        c.filled = max(c.filled, order.fill_count)
        if c.status not in ("canceled", "executed"):
            c.status = order.status
        self._record_child(run, c)
        self._feed(run, "on_order_update", c.child_id, order.status, order.remaining_count, order.fill_count,
                   price=order.price)

    def on_disconnected(self, reason: str) -> None:
        if self.stopping:
            return
        self.freshness.on_disconnected()
        log.warning("execution feed disconnected (%s): books stale until the snapshot returns", reason)

    # ----------------------------------------------------------------- timers, settling
    async def _timer_loop(self) -> None:
        assert self._wake is not None
        while True:
            now = self.now_ns()
            nxt: int | None = None
            for run in list(self._runs.values()):
                w = run.algo.next_wakeup_ns
                if w is None:
                    continue
                if now >= w:
                    self._feed(run, "on_timer")
                    w = run.algo.next_wakeup_ns
                if w is not None and (nxt is None or w < nxt):
                    nxt = w
            self.session.forget_closed_orders()     # pre-made signatures of closed children are dropped
            delay = 0.25 if nxt is None else max(0.0, (nxt - self.now_ns()) / NS / self.time_scale)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), min(delay, 0.25))
            except asyncio.TimeoutError:
                pass

    async def _settle(self, run: _Run) -> None:
        """The algorithm is done: wait for fills still on their way, backfill the rest, write records."""
        algo = run.algo
        await self._wait_for(lambda: algo.unsettled <= 0, self.settle_s)
        if algo.unsettled > 0 and self.rest is not None:
            for c in list(run.kids.values()):
                ch = algo.children.get(c.child_id)
                if ch is None or c.order_id is None or ch.exch_filled <= ch.seen_filled:
                    continue
                try:
                    fills = await self.rest.get_fills(order_id=c.order_id)
                except KmmError as exc:
                    log.warning("execution %s: fill backfill of %s failed: %s", algo.execution_id, c.child_id, exc)
                    continue
                for f in sorted(fills, key=lambda f: f.ts_ms):
                    self.on_fill(f)
        self._finalize(run)

    def _finalize(self, run: _Run, forced: str = "") -> None:
        if run.finished.is_set():
            return
        algo = run.algo
        m = metrics_for(algo)
        run.final_metrics = m
        if self.store is not None:
            from kmm.record.store import ExecutionMetrics as StoredMetrics
            self.store.record_execution_metrics(StoredMetrics(
                execution_id=algo.execution_id, ts_ns=self.clock.time_ns(), target_size=m.target_size,
                filled_size=m.filled_size, fill_rate=m.fill_rate, target_price=m.target_price,
                limit_price=m.limit, avg_fill_price=m.avg_fill_price, arrival_bid=run.arrival_bid,
                arrival_ask=run.arrival_ask, slippage_arrival=m.slippage_vs_arrival,
                slippage_limit=m.slippage_vs_limit, fees=m.fees, time_to_first_fill_ns=m.time_to_first_fill_ns,
                time_to_full_fill_ns=m.time_to_full_fill_ns, walks=m.walks, splits=m.splits,
                api_calls=m.api_calls_total))
            for c in run.kids.values():
                self._record_child(run, c)
            reason = run.error or algo.end_reason or forced
            if not algo.done:
                reason = f"{reason}; children not confirmed terminal at stop"
            self.store.update_execution(algo.execution_id, status=store_status(run.error or algo.end_reason
                                                                               or forced),
                                        reason=reason, state={"filled": m.filled_size, "unsettled": algo.unsettled})
        log.info("execution %s done: %s", algo.execution_id, m.summary())
        run.finished.set()

    def _record_child(self, run: _Run, c: ChildOrder) -> None:
        if self.store is None:
            return
        self.store.record_execution_order(execution_id=run.algo.execution_id, client_order_id=c.child_id,
                                          level=c.level, target_price=c.price, size=c.total, status=c.status,
                                          filled=c.filled, order_id=c.order_id, filled_ns=c.filled_ns)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("execution task failed: %r", task.exception(), exc_info=task.exception())


def _router() -> Any:
    from kmm._core.wire import BookRouter
    return BookRouter()


def _book_factory() -> Callable[[Any], Any]:
    from kmm._core.book import OrderBook
    return OrderBook
