"""The venue session: the one place that wires kmm to an exchange account.

A :class:`Session` owns the REST client, the WebSocket, the connector's rate limiter (through the REST
client), the order manager, the risk gate, the portfolio and the store. It does what every user of
the account needs, whatever decides the orders (the market maker in :mod:`kmm.engine.maker`, or
``kmm execute``):

- start: account limits, exchange status, positions, an **account-wide** reconcile (every resting
  order of the key, in every market and on every shard, is adopted or cancelled by policy with one
  report line each), deletion of the order groups that earlier sessions left behind (their ids are
  kept in a small state file), this session's order group, and cash counted with the holds of the
  orders that stay resting (:meth:`start`);
- the request coroutines with their read-backs and the resolution of unknown outcomes
  (:meth:`place`, :meth:`cancel`, :meth:`amend`, :meth:`decrease`, :meth:`verify_order`,
  :meth:`resolve_unknown`, :meth:`watch_requests`) and batched cancels (:meth:`cancel_orders`);
- the stop (:meth:`stop`): cancels first, escalating to cancel-all and the order group's trigger, a
  verification over REST that nothing of ours rests in any market, then the final check of positions
  and cash against the exchange.

Pauses: an ``exchange_paused`` / ``trading_paused`` answer is a signal at once (:attr:`pause`). A
trading pause (Thursday maintenance) still allows cancels; an exchange pause does not
(kalshi-api.md 4.7), and the stop then waits for the exchange instead of hammering it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kmm import protocol
from kmm.engine.clock import NS_PER_S, Clock
from kmm.engine.eager import start_eager
from kmm.engine.orders import IN_FLIGHT, Order, OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import RiskGate, RiskLimits
from kmm.errors import ExchangeError, KmmError, NotFound, RateLimited
from kmm.kalshi import ConnectorConfig, FeedHandler, KalshiRest, KalshiWs, OrderNotPlaced
from kmm.kalshi.types import CancelAck, Fill, MarketPosition, OrderAck, OrderRequest, UserOrder

# what a user of the session (the maker, the execution driver) needs from the connector, so that
# they import the session and never the connector
__all__ = ["Session", "SessionOptions", "StopResult", "ConnectorConfig", "FeedHandler", "OrderNotPlaced",
           "CancelAck", "Fill", "MarketPosition", "OrderAck", "OrderRequest", "UserOrder"]

log = logging.getLogger("kmm.session")

# what a place came to; the caller decides what that means for its quoting
PLACED, NOT_PLACED, RATE_LIMITED, REFUSED, GROUP_FIRED, PAUSED, UNKNOWN = (
    "placed", "not_placed", "rate_limited", "refused", "group_fired", "paused", "unknown")

PAUSE_CODES = {"exchange_paused": "exchange", "trading_paused": "trading"}


def pause_kind(exc: BaseException) -> str:
    """``"exchange"`` / ``"trading"`` when an error answer says the exchange is paused, else ``""``."""
    if isinstance(exc, ExchangeError):
        return PAUSE_CODES.get(exc.code.lower(), "")
    return ""


def resting_hold(o: UserOrder) -> int:
    """Money (1e-4 $) the exchange holds back for a resting order: what it costs if it all fills.

    [U] Kalshi's balance excludes the collateral of resting orders; the hold is assumed to be the
    order's full cost (count x price for a bid, count x (1 - price) for an ask), rounded up. An order
    that would close an existing position may hold less (the sim holds only the opening part)."""
    paid = o.price if o.side == "bid" else protocol.PRICE_ONE - o.price
    return -(-o.remaining_count * paid // 100)


@dataclass(slots=True)
class SessionOptions:
    order_group_limit: int = 0          # session order group contracts limit, 1e-2 contracts; 0: none
    group_state_path: Path | None = None  # where the ids of this key's order groups are kept
    stop_deadline_s: float = 8.0        # the stop sweep gives up (and says so) after this long
    stop_escalate_s: float = 1.5        # cancel-all / group trigger when orders still rest after this
    stop_read_every_s: float = 0.25     # pacing of the verification reads during the stop
    stop_cancel_retry_s: float = 0.05   # refused cancels are retried this often while a read is out
    adopt_outside_markets: bool = False  # orders of the key outside the session's markets: cancel them
    backoff_base_s: float | None = 0.25  # the limiter's 429 back-off ([risk] backoff_*); None: connector's
    backoff_max_s: float | None = 1.0
    stop_backoff_max_s: float = 0.3      # during the stop: reads retry promptly, paced by the limiter
    pause_hold_s: float = 2.0            # a pause seen in an answer outlives status polls this long


@dataclass(slots=True)
class StopResult:
    verified: bool = False
    resting_left: int = -1
    agrees: bool = False
    seconds: float = 0.0
    escalations: list[str] = field(default_factory=list)


class Session:
    """One exchange account, wired once. See the module docstring."""

    def __init__(self, conn: ConnectorConfig, clock: Clock, limits: RiskLimits, *,
                 unknown_order_policy: str = "cancel", pnl_mark: str = "mid", cash_rounding: str = "exact",
                 recorder: Any = None, strategy_name: str = "", options: SessionOptions | None = None) -> None:
        self.conn = conn
        self.clock = clock
        self.recorder = recorder
        self.strategy_name = strategy_name
        self.opt = options or SessionOptions()
        self.om = OrderManager(clock, unknown_order_policy=unknown_order_policy)
        self.pf = Portfolio(mark=pnl_mark, cash_rounding=cash_rounding)
        self.gate = RiskGate(limits, clock, self.pf, self.om)
        self.rest: KalshiRest | None = None
        self.ws: KalshiWs | None = None
        # what builds the REST client (paper mode stands a client that never writes in its place)
        # the limiter (token buckets, the one 429 back-off) runs on the session's injected clock
        self.rest_factory: Callable[[ConnectorConfig], Any] = partial(KalshiRest, clock_ns=clock.monotonic_ns)
        self.markets: tuple[str, ...] = ()
        self.group_id: str | None = None
        self.group_fired = False
        self.stopping = False
        self.pause: str = ""                  # "" | "trading" | "exchange": the exchange's pause as last seen
        self.on_pause: Callable[[str], None] | None = None   # told at once when an answer says paused
        self.on_booked: Callable[[Fill], Any] | None = None  # every fill booked (the session P&L)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._verifying: set[str] = set()
        self._presigned: set[str] = set()
        self.session_start_ms = 0
        self.backfill_from_ms = 0
        self.start_holds = 0                  # 1e-4 $ held at start for orders that stayed resting
        self.orders_sent = self.cancels_sent = self.amends_sent = self.decreases_sent = 0
        self.fills = 0
        self.fills_by_side = {"bid": 0, "ask": 0}
        self.position_mismatches = 0
        self.notes: list[str] = []
        self._position_suspect: dict[str, int] = {}
        # a request unanswered this long is read back (the connector's timeout plus its create lookups)
        self.stuck_ns = int((conn.request_timeout_s + conn.create_lookup_window_s + 2.0) * NS_PER_S)
        # what was done about each failure, for the operator's log and for tests:
        # (monotonic ns, kind, ticker or "*", detail)
        self.events: deque[tuple[int, str, str, str]] = deque(maxlen=10_000)

    # ================================================================================== events, tasks
    def event(self, kind: str, ticker: str = "*", detail: str = "") -> None:
        self.events.append((self.clock.monotonic_ns(), kind, ticker, detail))

    def events_of(self, kind: str, ticker: str | None = None) -> list[tuple[int, str, str, str]]:
        return [e for e in self.events if e[1] == kind and (ticker is None or e[2] == ticker)]

    def spawn(self, coro: Any, *, eager: bool = False) -> asyncio.Future[Any]:
        loop = self._loop or asyncio.get_running_loop()
        task = start_eager(loop, coro) if eager else loop.create_task(coro)
        if task.done():
            self._task_done(task)
            return task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed: %r", task.exception(), exc_info=task.exception())

    def pending_tasks(self) -> list[asyncio.Future[Any]]:
        cur = asyncio.current_task()
        return [t for t in self._tasks if not t.done() and t is not cur]

    # ================================================================================== start
    async def open(self) -> KalshiRest:
        """REST up, the account's rate budget applied, the exchange's status read."""
        self._loop = asyncio.get_running_loop()
        rest = self.rest = self.rest_factory(self.conn)
        await rest.start()
        rest.limiter.set_backoff(self.opt.backoff_base_s, self.opt.backoff_max_s)
        self.gate.backoff = rest.limiter      # the one 429 back-off: the gate reads the limiter's
        try:
            budget = await rest.apply_account_limits()
            if budget:
                log.info("rate limits from /account/limits: read %.0f, write %.0f tokens/s", *budget)
        except KmmError as exc:
            log.info("account limits not available (%s); using the configured tier", exc)
        await self.read_status()
        return rest

    async def check_shard_balances(self, quote_sizes: dict[str, int]) -> None:
        """Refuse to start when a shard holding markets to trade cannot fund them (collateral is checked
        per shard, kalshi-api.md 10). The need per market is one two-sided quote at the worst price:
        ``quote_size`` contracts x $1.00 (a bid at p and an ask at p' > p tie up p + (1 - p') < $1 per
        contract), summed per shard. Raises ``ShardBalanceError`` (``kmm run`` exits 2 with the
        transfer command). A venue without per-shard balances (paper) is not checked."""
        check = getattr(self.rest, "check_shard_balances", None)
        if check is None:
            return
        # 1e-2 contracts x $1 = 100 x 1e-4 $ per 1e-2 contract
        await check({t: size * (protocol.PRICE_ONE // 100) for t, size in quote_sizes.items()})

    async def read_status(self) -> None:
        """``GET /exchange/status``: an exchange pause (``exchange_active`` false) forbids cancels too;
        a trading pause (``trading_active`` false) forbids places and amends only."""
        assert self.rest is not None
        st = await self.rest.get_exchange_status()
        kind = "" if st.trading_active and st.exchange_active else ("exchange" if not st.exchange_active else "trading")
        if (not kind and self.pause and not self._status_said_paused
                and self.clock.monotonic_ns() < self._pause_answer_until):
            return        # an answer said paused moments ago and the status never did: [U] it may lag
        self._status_said_paused = bool(kind)
        self.set_pause(kind, "status poll")

    def set_pause(self, kind: str, why: str) -> None:
        if kind == self.pause:
            return
        was, self.pause = self.pause, kind
        self.gate.set_exchange_paused(bool(kind))
        if kind:
            log.warning("exchange %s pause (%s): no new orders%s", kind, why,
                        "; cancels are refused too" if kind == "exchange" else "; cancels still allowed")
        else:
            log.warning("exchange resumed after a %s pause (%s)", was, why)
        self.event("exchange_paused" if kind else "exchange_resumed", detail=f"{kind or was}: {why}")
        if self.on_pause is not None:
            self.on_pause(kind)

    async def load_account(self, markets: Iterable[str]) -> None:
        """Positions as the exchange has them (the session starts from there), then the account-wide
        reconcile of resting orders, the order groups, and cash."""
        assert self.rest is not None
        self.markets = tuple(markets)
        # fills older than this are in the positions; the REST backfill never applies them again
        self.session_start_ms = self.backfill_from_ms = self.clock.time_ns() // 1_000_000
        for p in await self.rest.get_positions():
            self.pf.load_position(p)
        self.gate.set_pnl_baseline()         # the loss limit counts this session's P&L only
        await self._delete_previous_groups()
        kept = await self.reconcile_account()
        if self.opt.order_group_limit > 0:
            try:
                self.group_id = await self.rest.create_order_group(self.opt.order_group_limit)
                self._remember_group(self.group_id)
                log.info("session order group %s: contracts limit %s per 15 s", self.group_id,
                         self.opt.order_group_limit / 100)
            except KmmError as exc:
                log.warning("could not create the session order group (%s); continuing without it", exc)
        # the balance excludes what the exchange holds for resting orders: count the holds of the
        # orders that stay resting so cash compares like with like at the end (when none rests)
        bal = await self.rest.get_balance()
        self.start_holds = sum(resting_hold(o) for o in kept)
        self.pf.set_cash(bal.balance + self.start_holds)
        if self.start_holds:
            log.info("cash %s = balance %s + holds of %d adopted resting orders %s (1e-4 $)",
                     self.pf.cash, bal.balance, len(kept), self.start_holds)

    async def reconcile_account(self) -> list[UserOrder]:
        """Every resting order of the key, in every market: adopt or cancel by policy, a line each.

        Orders in the session's markets follow ``unknown_order_policy``; orders elsewhere are cancelled
        (nobody here watches those books) unless ``adopt_outside_markets``. Returns the orders kept."""
        assert self.rest is not None
        t0 = self.clock.monotonic_ns()
        resting = await self.rest.get_orders(status="resting")
        mine = set(self.markets)
        inside = [o for o in resting if o.ticker in mine]
        outside = [o for o in resting if o.ticker not in mine]
        rep = self.om.reconcile(inside, (), as_of_ns=t0, tickers=self.markets)
        kept: list[UserOrder] = []
        by_id = {o.order_id: o for o in inside}
        for o in rep.adopted:
            log.warning("start: adopted order %s (%s %s %s @ %.4f x %s) left from before", o.order_id,
                        o.ticker, o.client_order_id, o.side, o.price / 1e4, o.remaining / 100)
            self.event("adopted", o.ticker, o.order_id or "")
            if o.order_id in by_id:
                kept.append(by_id[o.order_id])
        cancel_ids = [o.order_id for o in rep.to_cancel if o.order_id]
        for o in rep.to_cancel:
            log.warning("start: cancelling order %s in %s left from before (unknown_order_policy cancel)",
                        o.order_id, o.ticker)
            self.event("leftover_cancelled", o.ticker, o.order_id or "")
        for uo in outside:
            if self.opt.adopt_outside_markets:
                log.warning("start: order %s in %s (outside this session's markets) left resting as configured",
                            uo.order_id, uo.ticker)
                self.event("outside_kept", uo.ticker, uo.order_id)
                kept.append(uo)
                continue
            log.warning("start: cancelling order %s in %s: it rests outside this session's markets (%s) "
                        "and nobody here would watch it", uo.order_id, uo.ticker, ", ".join(self.markets))
            self.event("outside_cancelled", uo.ticker, uo.order_id)
            cancel_ids.append(uo.order_id)
        if rep.to_cancel:
            for o in rep.to_cancel:
                if o.order_id:
                    self.om.request_cancel(o.order_id)
        await self._cancel_ids(cancel_ids, "left from before")
        return kept

    # ---- order groups left by earlier sessions
    def _group_state(self) -> Path | None:
        return self.opt.group_state_path

    def _known_groups(self) -> list[str]:
        p = self._group_state()
        if p is None or not p.exists():
            return []
        try:
            data = json.loads(p.read_text())
            return [str(g) for g in data.get(self.conn.api_key_id or "", [])]
        except (OSError, ValueError) as exc:
            log.warning("order group state %s unreadable (%s); earlier groups are not cleaned up", p, exc)
            return []

    def _write_groups(self, groups: list[str]) -> None:
        p = self._group_state()
        if p is None:
            return
        try:
            data = json.loads(p.read_text()) if p.exists() else {}
        except (OSError, ValueError):
            data = {}
        key = self.conn.api_key_id or ""
        if groups:
            data[key] = groups
        else:
            data.pop(key, None)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, p)
        except OSError as exc:
            log.warning("could not write the order group state %s (%s)", p, exc)

    def _remember_group(self, gid: str) -> None:
        self._write_groups(self._known_groups() + [gid])

    def _forget_group(self, gid: str) -> None:
        self._write_groups([g for g in self._known_groups() if g != gid])

    async def _delete_previous_groups(self) -> None:
        assert self.rest is not None
        for gid in self._known_groups():
            try:
                await self.rest.delete_order_group(gid)     # 404 (already gone) counts as deleted
            except KmmError as exc:
                log.warning("start: could not delete order group %s of an earlier session (%s); "
                            "delete it by hand if it stays", gid, exc)
                continue
            log.warning("start: deleted order group %s left by an earlier session", gid)
            self.event("old_group_deleted", detail=gid)
            self._forget_group(gid)

    #: warm order connections the session keeps at most (2 per quoted market up to this)
    max_order_connections = 16

    async def warm_order_connections(self, n_markets: int) -> int:
        """Open enough warm order connections that a decision's requests do not wait for one: each
        market has at most one decision in flight, of usually two requests (bid and ask), so two per
        market, at least ``order_connections``, at most :attr:`max_order_connections`. Measured with 3
        markets on the default 2: 22-30 of ~300 decisions a run waited for a connection, and a create
        that waits is no longer written at once. Returns the pool's size."""
        fast = getattr(self.rest, "fast", None)
        if fast is None:
            return 0
        want = max(fast.max_connections, min(self.max_order_connections, 2 * n_markets))
        fast.max_connections = want
        try:
            await fast.warm(want)
        except Exception as exc:  # noqa: BLE001 - not fatal: connections open on first use
            log.warning("could not pre-open %d order connections: %s", want, exc)
        return want

    async def signatures_ready(self, timeout_s: float = 3.0) -> bool:
        """Before the first write: wait (bounded) until the signer process has pre-made a signature for
        every fixed write path, so the first quotes are not signed inline."""
        pool = getattr(self.rest, "pool", None)
        wait = getattr(pool, "wait_ready", None)
        return bool(await wait(timeout_s)) if wait is not None else False

    def open_ws(self, handler: FeedHandler, router: Any, book_factory: Any,
                markets: dict[str, Any]) -> KalshiWs:
        ws = self.ws = KalshiWs(self.conn, handler=handler, router=router, book_factory=book_factory,
                                lifecycle=True)
        ws.add_markets(markets)
        return ws

    # ================================================================================== records
    def record_order(self, coid: str, status: str, *, order_id: str | None = None, reason: str | None = None) -> None:
        if self.recorder is not None:
            self.recorder.store.record_order(status=status, client_order_id=coid, order_id=order_id, reason=reason)

    def _record_cancelled(self, order_id: str) -> None:
        """A cancel confirmed by the exchange: the orders table says so (never left ``resting``)."""
        if self.recorder is None:
            return
        o = self.om.by_order_id(order_id)
        if o is not None:
            self.recorder.store.record_order(status="canceled", client_order_id=o.client_order_id,
                                             order_id=order_id, reason="cancelled")

    # ================================================================================== fills
    def apply_fill(self, fill: Fill, *, defer: Callable[..., Any] | None = None) -> bool:
        """Our fill, from the feed or a REST backfill: order manager, portfolio, records. False for a
        duplicate (same trade_id). ``defer(fn, *args)``: how the records (store row, ops.log line) are
        run; the maker passes ``loop.call_soon`` so they come after the requote the fill triggers."""
        self.om.on_fill(fill)
        if not self.pf.apply_fill(fill):
            return False
        if self.on_booked is not None:
            self.on_booked(fill)
        self.fills += 1
        self.fills_by_side[fill.side] = self.fills_by_side.get(fill.side, 0) + 1
        if defer is None:
            self._record_fill(fill)
        else:
            defer(self._record_fill, fill)
        return True

    def _record_fill(self, fill: Fill) -> None:
        if self.recorder is not None:
            self.recorder.store.record_fill(fill)
        log.info("fill %s %s %s @ %.4f x %s (fee %.4f)%s", fill.ticker, fill.side, fill.trade_id,
                 fill.price / 1e4, fill.count / 100, fill.fee / 1e4, " taker" if fill.is_taker else "")

    # ================================================================================== requests
    _pause_answer_until = 0
    _status_said_paused = False

    def _answer_paused(self, exc: BaseException) -> bool:
        kind = pause_kind(exc)
        if kind:
            self._pause_answer_until = self.clock.monotonic_ns() + int(self.opt.pause_hold_s * NS_PER_S)
            self.set_pause(kind, f"answer {exc}")
            return True
        return False

    async def place(self, o: Order, req: OrderRequest) -> str:
        """Create one order; the outcome is recorded in the order manager. Never re-sent."""
        assert self.rest is not None
        self.orders_sent += 1
        self.last_refusal = None
        try:
            ack: OrderAck = await self.rest.create_order(req)
        except Exception as exc:  # noqa: BLE001 - every failure has its outcome (_place_result)
            return self._place_result(o, None, exc)
        return self._place_result(o, ack, None)

    # The order path without a coroutine per request: the connector writes now and its answer comes
    # back through a callback (one per request, from the connection's data_received); a request that
    # cannot be written at once (no idle connection, no budget now, no pre-made signature) is not sent
    # (0) and the caller takes the coroutine path above. Outcomes are the same functions either way.
    inflight_now = 0          # requests written by a *_now method and not answered yet

    def place_now(self, o: Order, req: OrderRequest, then: Callable[[str, ExchangeError | None], None]) -> int:
        """:meth:`place` without a coroutine: returns the write stamp (0: not sent); ``then(outcome,
        refusal)`` when the outcome is known (the refusal of a REFUSED / PAUSED / GROUP_FIRED create)."""
        now = getattr(self.rest, "create_order_now", None)
        if now is None:
            return 0

        def done(ack: OrderAck | None, exc: BaseException | None) -> None:
            then(*self.placed_now(o, ack, exc))
        written = now(req, done, self.spawn)
        if written:
            self.orders_sent += 1
            self.inflight_now += 1
        return written

    def placed_now(self, o: Order, ack: OrderAck | None, exc: BaseException | None
                   ) -> tuple[str, ExchangeError | None]:
        """The answer of a create written now (:meth:`place_now`, or the maker's quote path that writes
        through ``rest.place_quote_now`` and counts ``orders_sent`` / ``inflight_now`` itself): the
        outcome, and the refusal of a REFUSED / PAUSED / GROUP_FIRED create."""
        self.inflight_now -= 1
        outcome = self._place_result(o, ack, exc)
        return outcome, (exc if isinstance(exc, ExchangeError) and outcome in (REFUSED, PAUSED, GROUP_FIRED)
                         else None)

    def _place_result(self, o: Order, ack: OrderAck | None, exc: BaseException | None) -> str:
        """What a create came to (its ack, or what it raised), recorded in the order manager and store."""
        coid = o.client_order_id
        if exc is not None:
            if isinstance(exc, OrderNotPlaced):
                self.om.resolve_unknown(coid, None)
                self.record_order(coid, "rejected", reason="not placed (create timed out, lookups found nothing)")
                return NOT_PLACED
            if isinstance(exc, RateLimited):
                self.event("rate_limited", o.ticker, "create")
                self.om.on_create_rejected(coid, "rate limited")
                self.record_order(coid, "rejected", reason="429")
                return RATE_LIMITED
            if isinstance(exc, ExchangeError):
                self.om.on_create_rejected(coid, exc.code)
                self.record_order(coid, "rejected", reason=exc.code)
                self.last_refusal = exc
                if self._answer_paused(exc):
                    return PAUSED
                if "order_group" in exc.code.lower():
                    self.group_fired = True
                    return GROUP_FIRED
                return REFUSED
            # RequestTimeout, OSError, a malformed answer...: outcome unknown, resolved by
            # client_order_id (watch_requests), never re-sent
            self.om.on_create_timeout(coid)
            log.warning("%s: create %s outcome unknown (%s); resolving by lookup", o.ticker, coid, exc)
            return UNKNOWN
        assert ack is not None and self.rest is not None
        if self.pause and not self.stopping:
            self.set_pause("", "a create went through")
        self.om.on_ack(ack)
        if ack.remaining_count:
            self.rest.presign_order(ack.order_id)
            self._presigned.add(ack.order_id)
        self.record_order(coid, "resting" if ack.remaining_count else "executed", order_id=ack.order_id)
        return PLACED

    last_refusal: ExchangeError | None = None    # the last create refusal (the caller reads its code)
    batches_sent = 0

    async def place_batch(self, items: list[tuple[Order, OrderRequest]]) -> list[tuple[str, ExchangeError | None]]:
        """Create several orders in one batched request; one outcome per item, as :meth:`place` gives
        them (with the item's refusal, if any). Never re-sent: an answer that is lost (or does not match
        the items) leaves every item's outcome unknown, looked up by client_order_id like a single
        create (:meth:`watch_requests`);
        the connector already looks the items up itself after a timeout (``not_placed`` items)."""
        assert self.rest is not None
        self.orders_sent += len(items)
        self.batches_sent += 1
        self.last_refusal = None
        try:
            results: list[Any] = await self.rest.create_orders([r for _, r in items])
        except RateLimited:
            for o, _ in items:
                self.event("rate_limited", o.ticker, "batched create")
                self.om.on_create_rejected(o.client_order_id, "rate limited")
                self.record_order(o.client_order_id, "rejected", reason="429")
            return [(RATE_LIMITED, None)] * len(items)
        except ExchangeError as exc:
            if exc.code == "batch_mismatch":          # some items may rest: find each one
                results = [None] * len(items)
            else:                                     # the whole batch was refused
                paused = self._answer_paused(exc)
                for o, _ in items:
                    self.om.on_create_rejected(o.client_order_id, exc.code)
                    self.record_order(o.client_order_id, "rejected", reason=exc.code)
                self.last_refusal = exc
                return [(PAUSED if paused else REFUSED, exc)] * len(items)
        except Exception as exc:  # noqa: BLE001 - outcome unknown: resolved by lookup, never re-sent
            log.warning("batched create of %d orders: outcome unknown (%s); resolving each by lookup",
                        len(items), exc)
            results = [None] * len(items)
        out: list[tuple[str, ExchangeError | None]] = []
        for (o, _), res in zip(items, results):
            coid = o.client_order_id
            if res is None:
                self.om.on_create_timeout(coid)
                out.append((UNKNOWN, None))
            elif isinstance(res, ExchangeError):
                if res.code == "not_placed":
                    self.om.resolve_unknown(coid, None)
                    self.record_order(coid, "rejected",
                                      reason="not placed (batch timed out, lookups found nothing)")
                    out.append((NOT_PLACED, None))
                    continue
                self.om.on_create_rejected(coid, res.code)
                self.record_order(coid, "rejected", reason=res.code)
                self.last_refusal = res
                if self._answer_paused(res):
                    out.append((PAUSED, res))
                elif "order_group" in res.code.lower():
                    self.group_fired = True
                    out.append((GROUP_FIRED, res))
                else:
                    out.append((REFUSED, res))
            else:
                self.om.on_ack(res)
                if res.remaining_count:
                    self.rest.presign_order(res.order_id)
                    self._presigned.add(res.order_id)
                self.record_order(coid, "resting" if res.remaining_count else "executed", order_id=res.order_id)
                out.append((PLACED, None))
        if any(x == PLACED for x, _ in out) and self.pause and not self.stopping:
            self.set_pause("", "a create went through")
        return out

    def on_cancel_acks(self, acks: Iterable[Any]) -> int:
        """Apply batched-cancel answers; returns how many were refused (those orders may still rest)."""
        refused = 0
        for ack in acks:
            if ack.error:
                refused += 1
                self.om.on_request_failed(ack.order_id, f"cancel refused: {ack.error}")
                if ack.error in PAUSE_CODES:
                    self.set_pause(PAUSE_CODES[ack.error], f"cancel answer {ack.error}")
                log.warning("cancel of %s refused by the exchange (%s); it is retried", ack.order_id, ack.error)
            elif ack.already_gone:
                # not resting at the exchange any more: cancelled, or executed with its fill messages on
                # their way. Closed here; what it had resting counts as able to fill until the order's
                # user_order says which (OrderManager.on_request_failed)
                self.om.on_request_failed(ack.order_id, "cancel: not resting at the exchange", gone=True)
                self._record_cancelled(ack.order_id)
            else:
                self.om.on_cancel_ack(ack.order_id, ack.reduced_by if ack.reduced_known else None)
                self._record_cancelled(ack.order_id)
        return refused

    async def cancel(self, order_id: str, ticker: str = "") -> None:
        """Cancel one order (batched-cancel path: pre-signed)."""
        assert self.rest is not None
        self.cancels_sent += 1
        try:
            acks = await self.rest.cancel_orders([order_id])
        except Exception as exc:  # noqa: BLE001 - whatever failed, the order is still ours to cancel
            self._cancel_result(order_id, ticker, None, exc)
        else:
            self._cancel_result(order_id, ticker, acks, None)

    def cancel_now(self, order_id: str, ticker: str, then: Callable[[], None]) -> int:
        """:meth:`cancel` without a coroutine: the write stamp (0: not sent); ``then()`` once answered."""
        now = getattr(self.rest, "cancel_orders_now", None)
        if now is None:
            return 0

        def done(acks: list[CancelAck] | None, exc: BaseException | None) -> None:
            self.inflight_now -= 1
            self._cancel_result(order_id, ticker, acks, exc)
            then()
        written = now([order_id], done, self.spawn)
        if written:
            self.cancels_sent += 1
            self.inflight_now += 1
        return written

    def _cancel_result(self, order_id: str, ticker: str, acks: list[CancelAck] | None,
                       exc: BaseException | None) -> None:
        if exc is None and acks is not None:
            self.on_cancel_acks(acks)
            return
        self._answer_paused(exc)  # type: ignore[arg-type]
        self.om.on_request_failed(order_id, str(exc))
        log.warning("%s: cancel of %s failed (%s); the next sweep retries", ticker, order_id, exc)

    async def amend(self, o: Order, price: int) -> bool:
        assert self.rest is not None and o.order_id is not None
        self.amends_sent += 1
        try:
            ack = await self.rest.amend_order(o.order_id, ticker=o.ticker, side=o.side, price=price,
                                              count=int(o.pending_count or 0),
                                              client_order_id=o.client_order_id)
        except Exception as exc:  # noqa: BLE001 - each failure has its meaning (_amend_result)
            return self._amend_result(o, None, exc)
        return self._amend_result(o, ack, None)

    def amend_now(self, o: Order, price: int, then: Callable[[], None]) -> int:
        """:meth:`amend` without a coroutine: the write stamp (0: not sent); ``then()`` once answered."""
        now = getattr(self.rest, "amend_order_now", None)
        if now is None or o.order_id is None:
            return 0

        def done(ack: OrderAck | None, exc: BaseException | None) -> None:
            self.amended_now(o, ack, exc)
            then()
        written = now(o.order_id, ticker=o.ticker, side=o.side, price=price, count=int(o.pending_count or 0),
                      client_order_id=o.client_order_id, done=done, spawn=self.spawn)
        if written:
            self.amends_sent += 1
            self.inflight_now += 1
        return written

    def amended_now(self, o: Order, ack: OrderAck | None, exc: BaseException | None) -> bool:
        """The answer of an amend written now (:meth:`amend_now`, or the maker's path through
        ``rest.amend_quote_now``, which counts ``amends_sent`` / ``inflight_now`` itself)."""
        self.inflight_now -= 1
        return self._amend_result(o, ack, exc)

    def _amend_result(self, o: Order, ack: OrderAck | None, exc: BaseException | None) -> bool:
        assert o.order_id is not None
        if exc is None and ack is not None:
            self.om.on_amend_ack(ack)
            return True
        if isinstance(exc, RateLimited):
            self.om.on_request_failed(o.order_id, "rate limited")
        elif isinstance(exc, ExchangeError):
            self._answer_paused(exc)
            # a 404: closed, what rested kept as able to fill until the exchange says (watch_requests)
            self.om.on_request_failed(o.order_id, exc.code, gone=exc.status == 404)
            log.info("%s: amend of %s refused: %s", o.ticker, o.order_id, exc)
        else:   # outcome unknown: read it back
            self.om.on_request_failed(o.order_id, f"amend outcome unknown: {exc}")
            self.verify_soon(o.order_id)
        return False

    async def decrease(self, order_id: str, reduce_to: int) -> None:
        assert self.rest is not None
        self.decreases_sent += 1
        try:
            ack = await self.rest.decrease_order(order_id, reduce_to)
        except ExchangeError as exc:
            self._answer_paused(exc)
            # a 404: closed, what rested kept as able to fill until the exchange says (watch_requests)
            self.om.on_request_failed(order_id, exc.code, gone=exc.status == 404)
        except Exception as exc:  # noqa: BLE001 - outcome unknown: read it back
            self.om.on_request_failed(order_id, f"decrease outcome unknown: {exc}")
            self.verify_soon(order_id)
        else:
            self.om.on_decrease_ack(order_id, ack.remaining_count)

    async def _cancel_ids(self, ids: list[str], reason: str) -> int:
        """Batched cancel of order ids, ``protocol.BATCH_CANCEL_MAX`` a request. Returns how many were
        not confirmed (refused or failed)."""
        assert self.rest is not None
        left = 0
        for i in range(0, len(ids), protocol.BATCH_CANCEL_MAX):
            chunk = ids[i:i + protocol.BATCH_CANCEL_MAX]
            self.cancels_sent += len(chunk)
            try:
                left += self.on_cancel_acks(await self.rest.cancel_orders(chunk))
            except Exception as exc:  # noqa: BLE001 - the orders stay live; the next sweep retries
                self._answer_paused(exc)
                left += len(chunk)
                for oid in chunk:
                    self.om.on_request_failed(oid, str(exc))
                log.error("cancel sweep (%s): batch of %d failed: %s", reason, len(chunk), exc)
        return left

    async def cancel_orders(self, orders: Iterable[Order], reason: str) -> int:
        """Batched cancel of ``orders`` (those with an exchange id)."""
        ids = []
        for o in orders:
            if o.order_id is None:
                continue
            if self.om.request_cancel(o.order_id) is not None or o.state.value == "pending_cancel":
                ids.append(o.order_id)
        return await self._cancel_ids(ids, reason)

    def live_with_id(self) -> list[Order]:
        return [o for o in self.om.orders() if o.is_live and o.order_id is not None]

    async def cancel_everything(self, reason: str, *, quiet: bool = False) -> int:
        live = self.live_with_id()
        if not quiet:
            self.event("cancel_all", detail=reason)
        if not live:
            return 0
        (log.info if quiet else log.warning)("cancelling all %d live orders: %s", len(live), reason)
        return await self.cancel_orders(live, reason)

    async def cancel_stray(self, order_id: str) -> None:
        assert self.rest is not None
        self._verifying.add(order_id)
        try:
            acks = await self.rest.cancel_orders([order_id])
            if any(a.error for a in acks):
                log.error("stray order %s: cancel refused (%s); the stop sweep and reconcile will retry",
                          order_id, ", ".join(str(a.error) for a in acks if a.error))
            else:
                self._record_cancelled(order_id)
        except Exception as exc:  # noqa: BLE001
            log.error("stray order %s: cancel failed (%s); the stop sweep and reconcile will retry", order_id, exc)
        finally:
            self._verifying.discard(order_id)

    def verifying(self, key: str) -> bool:
        return key in self._verifying

    def verify_soon(self, order_id: str) -> None:
        if order_id not in self._verifying:
            self.spawn(self.verify_order(order_id))

    async def verify_order(self, order_id: str) -> None:
        """Read an order back after a request on it ended without a usable answer."""
        assert self.rest is not None
        self._verifying.add(order_id)
        try:
            try:
                uo = await self.rest.get_order(order_id)
            except NotFound:     # the exchange does not know it: nothing of it rests or can fill
                self.om.on_request_failed(order_id, "gone at the exchange", gone=True, may_have_filled=False)
                self.om.resolve_gone(order_id)
                return
            o = self.om.by_order_id(order_id)
            if o is not None and o.state in IN_FLIGHT:
                self.om.on_request_failed(order_id, "read back after no answer")
            self.om.on_user_order(uo)
        except Exception as exc:  # noqa: BLE001 - the next watchdog pass tries again
            log.warning("could not read back order %s: %s", order_id, exc)
        finally:
            self._verifying.discard(order_id)

    async def resolve_unknown(self, o: Order) -> UserOrder | None:
        """A create whose outcome is unknown: look it up by client_order_id, now."""
        assert self.rest is not None
        coid = o.client_order_id
        self._verifying.add(coid)
        try:
            found = await self.rest.find_order_by_client_id(coid, ticker=o.ticker)
            self.om.resolve_unknown(coid, found)
            if found is not None and found.status == "resting":
                log.warning("%s: create %s with an unknown outcome rests at the exchange as %s",
                            o.ticker, coid, found.order_id)
            return found
        except Exception as exc:  # noqa: BLE001 - the next watchdog pass tries again
            log.warning("lookup of %s by client_order_id failed: %s", coid, exc)
            return None
        finally:
            self._verifying.discard(coid)

    def watch_requests(self) -> None:
        """Creates with an unknown outcome are looked up at once; requests with no answer for longer
        than the connector can take are read back. Spawns the reads; never waits on them."""
        for o in self.om.unknown():
            if o.client_order_id not in self._verifying:
                self.spawn(self.resolve_unknown(o))
        for o in self.om.in_flight_older_than(self.stuck_ns):
            if o.order_id is not None:
                self.verify_soon(o.order_id)
            else:
                self.om.on_create_timeout(o.client_order_id)   # resolved on the next pass
        if not self.stopping:    # the stop's cancels come first; its end lists what rests anyway
            for o in self.om.unsure_older_than(self.stuck_ns):
                if o.order_id is not None:
                    self.verify_soon(o.order_id)

    def forget_closed_orders(self) -> None:
        if self.rest is None or not self._presigned:
            return
        for oid in [oid for oid in self._presigned if not ((o := self.om.by_order_id(oid)) and o.is_live)]:
            self._presigned.discard(oid)
            self.rest.forget_order(oid)

    # ================================================================================== reconcile reads
    async def session_fills(self) -> list[Fill]:
        """Our fills in our markets since the last good reconcile (never from before the session)."""
        assert self.rest is not None
        fills = await self.rest.get_fills(min_ts=max(0, self.backfill_from_ms // 1000 - 1))
        mine = set(self.markets)
        # ts 0: the answer carried no usable time; the server's min_ts filter already applied, and a
        # fill counted twice is impossible (trade_id dedupe), so keep it rather than lose it
        return [f for f in fills if f.ticker in mine and (f.ts_ms == 0 or f.ts_ms >= self.session_start_ms)]

    async def check_positions(self, why: str, busy: bool = False) -> bool | None:
        """Compare positions with ``GET /portfolio/positions``. None: not checked (``busy``).

        A fill can be in the exchange's answer before its message reaches us, or the other way round, so
        a mismatch is only acted on when it is still there at the next check with no fill in between
        (or at stop, when nothing is in flight): then it is logged CRITICAL and the exchange's position
        is taken."""
        assert self.rest is not None
        if why != "stop" and busy:
            return None
        exch = {p.ticker: p for p in await self.rest.get_positions()}
        ok = True
        for t in self.markets:
            pos = exch.get(t) or MarketPosition(t, 0, 0, 0, 0)
            check = self.pf.check_against(pos, check_volume=False)
            if check.ok:
                self._position_suspect.pop(t, None)
                continue
            ok = False
            if why != "stop" and self._position_suspect.get(t) != self.fills:
                self._position_suspect[t] = self.fills
                log.warning("portfolio %s differs from the exchange (%s): %s; checking again", t, why, check)
                continue
            self._position_suspect.pop(t, None)
            self.position_mismatches += 1
            log.critical("portfolio %s (%s): %s; taking the exchange's position", t, why, check)
            self.pf.load_position(pos)
        if ok:
            log.info("portfolio agrees with exchange positions (%s)", why)
        return ok

    # ================================================================================== stop
    async def _sleep(self, s: float) -> None:
        await asyncio.sleep(s)

    async def _read_resting(self) -> list[UserOrder] | None:
        """Resting orders of the key in every market, or None when the read failed."""
        assert self.rest is not None
        try:
            return await self.rest.get_orders(status="resting")
        except Exception as exc:  # noqa: BLE001 - paced retry by the caller
            log.info("stop: listing resting orders failed (%s); reading again", exc)
            return None

    async def _escalate(self, res: StopResult, reason: str) -> None:
        """Cancel-all (every resting order of the member, all shards) and the session group's trigger."""
        assert self.rest is not None
        if self.pause == "exchange":
            return                       # the exchange refuses cancels during its pause: do not hammer it
        try:
            await self.rest.cancel_all()
            res.escalations.append("cancel_all")
            self.event("stop_cancel_all", detail=reason)
            log.warning("stop: cancel-all sent (%s)", reason)
        except Exception as exc:  # noqa: BLE001
            self._answer_paused(exc)
            log.warning("stop: cancel-all failed (%s)", exc)
        if self.group_id is not None:
            try:
                await self.rest.trigger_order_group(self.group_id)
                res.escalations.append("group_trigger")
                self.event("stop_group_trigger", detail=self.group_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("stop: order group trigger failed (%s)", exc)

    async def stop_sweep(self, owned: Callable[[UserOrder], bool] | None = None, *,
                         escalate: bool = True) -> StopResult:
        """Cancel everything of ours, escalate if orders still rest, and verify over REST (all markets)
        that nothing rests. Bounded by ``stop_deadline_s``.

        Cancels go first: they take the cancel lane of the write budget, which places never use; the
        verification reads use the read bucket, paced every ``stop_read_every_s``, so they cannot
        starve the cancels. A create still in flight is cancelled on its ack (the caller's place
        coroutine sees ``stopping``); one with an unknown outcome is looked up and cancelled.

        ``owned``: which resting orders are ours (default: every order of the key, for the maker, which
        owns the account); ``escalate=False`` never sends cancel-all or the group trigger (execution
        shares the key with other users)."""
        ours = owned or self._ours
        assert self.rest is not None
        res = StopResult()
        self.rest.limiter.set_backoff(max_s=self.opt.stop_backoff_max_s)
        drop = getattr(self.rest.limiter, "drop_waiting", None)
        if drop is not None:
            drop("stop")      # places and amends still queued in the limiter are never sent
        t0 = self.clock.monotonic_ns()
        deadline = t0 + int(self.opt.stop_deadline_s * NS_PER_S)
        escalate_ns = int(self.opt.stop_escalate_s * NS_PER_S)
        next_escalation = t0 + escalate_ns
        escalated = False
        left: list[UserOrder] = []
        while True:
            for o in self.om.unknown():
                if o.client_order_id not in self._verifying:
                    self.spawn(self.resolve_unknown(o))
            refused = await self.cancel_everything("stop") if self.pause != "exchange" else 0
            now = self.clock.monotonic_ns()
            if escalate and self.live_with_id() and ((refused and not escalated) or now >= next_escalation):
                escalated = True
                # cancels refused (429, ...) or orders still live: cancel-all and the group's trigger,
                # again every stop_escalate_s while anything is live
                next_escalation = now + escalate_ns
                await self._escalate(res, "cancels refused" if refused else "orders still live")
            # the verification read runs on the read bucket while refused cancels are retried at once
            # (the limiter's cancel lane paces them): a slow or refused read never holds a cancel back
            read = self.spawn(self._read_resting())
            while not read.done():
                if (refused and self.pause != "exchange" and self.live_with_id()
                        and self.clock.monotonic_ns() < deadline):
                    refused = await self.cancel_everything("stop", quiet=True)
                    if refused:
                        await asyncio.wait({read}, timeout=self.opt.stop_cancel_retry_s)
                else:
                    await asyncio.wait({read})
            listed = read.result()
            if listed is not None:
                left = [uo for uo in listed if ours(uo)]
                for uo in left:
                    if self.om.by_order_id(uo.order_id) is None:
                        self.om.on_user_order(uo)     # ours to cancel
                if not left:
                    # nothing of ours rests at the exchange: whatever we still think live is gone
                    for o in self.live_with_id():
                        self.om.on_cancel_ack(o.order_id)  # type: ignore[arg-type]
                        self._record_cancelled(o.order_id)  # type: ignore[arg-type]
            unsure = [o for o in self.om.orders() if o.is_live and o.order_id is None]
            if listed is not None and not left and not unsure:
                res.verified, res.resting_left = True, 0
                break
            if self.clock.monotonic_ns() >= deadline:
                res.resting_left = len(left) + len(unsure)
                break
            await self._sleep(self.opt.stop_read_every_s)
        res.seconds = (self.clock.monotonic_ns() - t0) / NS_PER_S
        if res.verified:
            log.info("stop: verified over REST that no order rests, in any market (%.2f s)", res.seconds)
        else:
            ids = [o.order_id for o in left] + [o.client_order_id for o in self.om.orders()
                                                 if o.is_live and o.order_id is None]
            log.critical("stop: %d orders may still rest after %.1f s: %s; cancel them by hand "
                         "(kmm execute or the exchange's site)", res.resting_left, res.seconds, ", ".join(ids))
        return res

    def _ours(self, o: UserOrder) -> bool:
        """The session owns the key: every resting order of it is ours to cancel at stop."""
        return True

    async def delete_group(self, attempts: int = 4) -> bool:
        """Delete the session's order group, retrying a 429 or a failed request; a group that cannot be
        deleted is a note in the summary (its orders were cancelled by the sweep) and the next start
        deletes it (its id stays in the group state file)."""
        if self.group_id is None or self.rest is None:
            return True
        for attempt in range(1, attempts + 1):
            try:
                await self.rest.delete_order_group(self.group_id)
                self._forget_group(self.group_id)
                return True
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                log.warning("could not delete the session order group %s (attempt %d): %s", self.group_id,
                            attempt, exc)
                if attempt == attempts:
                    self.notes.append(f"the session order group {self.group_id} could not be deleted ({exc}); "
                                      "the next start deletes it, or delete it on Kalshi "
                                      "(DELETE /portfolio/order_groups/ID)")
                    return False
                await self._sleep(0.5 * attempt)
        return False

    async def _read_paced(self, fn: Callable[[], Any], what: str, deadline_s: float = 10.0) -> Any:
        """A read at stop, retried every ``stop_read_every_s`` (paced by the limiter) until it works or
        ``deadline_s`` passes (then its error is raised)."""
        end = self.clock.monotonic_ns() + int(deadline_s * NS_PER_S)
        while True:
            try:
                return await fn()
            except KmmError as exc:
                if self.clock.monotonic_ns() >= end:
                    raise
                log.info("stop: %s failed (%s); reading again", what, exc)
                await self._sleep(self.opt.stop_read_every_s)

    async def final_check(self, settle_s: float = 0.2) -> bool:
        """Backfill the last fills, then compare positions and cash with the exchange."""
        assert self.rest is not None
        await self._sleep(settle_s)   # let the last fill messages arrive over the socket
        for f in sorted(await self._read_paced(self.session_fills, "fill backfill"), key=lambda f: f.ts_ms):
            self.apply_fill(f)
        ok = bool(await self._read_paced(lambda: self.check_positions("stop"), "position check"))
        rest = self.rest
        bal = await self._read_paced(rest.get_balance, "balance")
        cash = self.pf.check_balance(bal.balance)
        if cash.ok:
            log.info("cash agrees with the exchange balance: %s", cash)
        else:
            log.critical("cash disagrees with the exchange balance: %s", cash)
        return ok and cash.ok and self.position_mismatches == 0

    async def close(self) -> None:
        for t in list(self._tasks):
            if not t.done():
                t.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.rest is not None:
            await self.rest.close()
