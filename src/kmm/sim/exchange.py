"""``SimExchange``: the embedded Kalshi exchange, started and stopped as an async context manager."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo
from typing import Any

from aiohttp import web

from kmm import protocol
from kmm.sim.auth import Verifier, new_key_id, new_key_pair
from kmm.sim.config import MarketSpec, SimConfig, parse_dollars
from kmm.sim.engine import ASK, BID, EXCHANGE_PAUSE, SIDE_NAMES, TRADING_PAUSE, Engine
from kmm.sim.faults import Faults
from kmm.sim.flow import PROFILES, MarketFlow
from kmm.sim.hub import Hub
from kmm.sim.ratelimit import RateLimiter
from kmm.sim.server import Api

log = logging.getLogger(__name__)
_ET = ZoneInfo("America/New_York")


def in_weekly_pause(ts_ms: int) -> bool:
    """True inside Kalshi's weekly trading pause, Thursday 03:00-05:00 US Eastern time."""
    t = datetime.fromtimestamp(ts_ms / 1000, _ET)
    return t.weekday() == 3 and 3 <= t.hour < 5


class SimExchange:
    """REST + WebSocket on one port, a matching engine, accounts, synthetic flow and fault injection."""

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.engine = Engine(self.cfg.market_specs(), n_shards=self.cfg.shards)
        self.verifier = Verifier(self.cfg.auth_window_s)
        self.limiter = RateLimiter(self.cfg.rate_tier, burst_s=self.cfg.burst_s)
        self.hub = Hub(self.engine)
        self.faults = Faults(self)
        self.stats_rest: Counter[str] = Counter()
        self.stats_ws: Counter[str] = Counter()
        self.ws_tasks: set[asyncio.Task[Any]] = set()
        self._default_balance = parse_dollars(self.cfg.balance)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._flows: list[MarketFlow] = []
        self.flow_running = True
        self.started_ms = time.time_ns() // 1_000_000
        # (start ms, end ms) maintenance windows GET /exchange/schedule lists; tests and tools add them
        self.maintenance_windows: list[tuple[int, int]] = []
        self._weekly_paused = False  # tests may freeze the synthetic flow to compare books at rest
        self.host = self.cfg.host
        self.port = 0
        self.ssl_context = self.cfg.server_ssl_context()
        for key_id, pem in self.cfg.extra_keys:
            self.add_key(key_id, pem)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        app = Api(self).app()
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.cfg.host, self.cfg.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self.ssl_context)
        await site.start()
        self._tasks.append(asyncio.create_task(self._expiry_loop()))
        self._tasks.append(asyncio.create_task(self._rebalance_loop()))
        if self.cfg.flow != "off":
            self._start_flow()
        log.info("kmm sim listening on %s", self.rest_url)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:  # stopping anyway; keep the cause visible instead of dropping it
                log.debug("simulator task %r ended with an error while stopping", t, exc_info=True)
        self._tasks.clear()
        for conn in list(self.hub.conns):
            self.hub.drop_conn(conn)
            try:
                await conn.ws.close()
            except Exception:  # the peer may already be gone; the connection is dropped either way
                log.debug("closing a simulator websocket failed", exc_info=True)
        for t in list(self.ws_tasks):
            t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rest_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{protocol.API_PREFIX}"

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{protocol.WS_PATH}"

    @property
    def tickers(self) -> list[str]:
        return list(self.engine.markets)

    # -- accounts --------------------------------------------------------------------------------
    def create_key(self, balance: str | int | None = None,
                   shard_balances: dict[int, str | int] | None = None) -> tuple[str, bytes]:
        """A new RSA-2048 key pair and its account; returns (key_id, private key PEM).

        ``balance`` (dollars) lands on shard 0; ``shard_balances`` adds dollars on other shards
        (e.g. ``{1: "50.00"}``), as if transferred there already."""
        priv, pub = new_key_pair()
        key_id = new_key_id()
        self.add_key(key_id, pub, balance, shard_balances)
        return key_id, priv

    def add_key(self, key_id: str, public_pem: bytes, balance: str | int | None = None,
                shard_balances: dict[int, str | int] | None = None) -> None:
        """Register a caller's public key with a fresh account holding ``balance`` dollars on shard 0."""
        self.verifier.add(key_id, public_pem)
        cash = self._default_balance if balance is None else parse_dollars(balance)
        if key_id not in self.engine.accounts:
            a = self.engine.add_account(key_id, cash)
            for shard, amount in (shard_balances or {}).items():
                a.cash[self.engine._shard_arg(shard)] += parse_dollars(amount)  # noqa: SLF001

    # -- control ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Fan out the engine's pending events to WebSocket subscribers."""
        out = self.engine.out
        if out:
            self.engine.out = []
            self.hub.dispatch(out)

    async def settle(self, ticker: str, result: str) -> None:
        self.engine.settle(ticker, result)
        self.flush()

    async def settle_event(self, event_ticker: str, winner: str | None) -> None:
        """Settle every market of an event: ``winner`` yes and the others no (``None``: all no). A mutually
        exclusive event can have at most one winner, so this is the way to settle one consistently."""
        tickers = [m.ticker for m in self.engine.markets.values() if m.spec.event_ticker == event_ticker]
        if not tickers:
            raise ValueError(f"settle_event: no markets in event {event_ticker!r}")
        if winner is not None and winner not in tickers:
            raise ValueError(f"settle_event: {winner!r} is not a market of {event_ticker} ({', '.join(tickers)})")
        for t in tickers:
            self.engine.settle(t, "yes" if t == winner else "no")
        self.flush()

    def pause_exchange(self, shard: int | None = None) -> None:
        """An exchange pause (maintenance or outage): no place, amend or cancel on ``shard`` (None: all)."""
        self.engine.pause(EXCHANGE_PAUSE, shard)
        self.flush()

    def pause_trading(self, shard: int | None = None) -> None:
        """A trading pause (the Thursday 03:00-05:00 ET window): no place or amend, cancels allowed."""
        self.engine.pause(TRADING_PAUSE, shard)
        self.flush()

    def resume_exchange(self, shard: int | None = None) -> None:
        """End either pause on ``shard`` (None: all)."""
        self.engine.resume(shard)
        self.flush()

    def set_price_structure(self, ticker: str, structure: str) -> None:
        """Change a live market's grid (lifecycle ``price_level_structure_updated``); resting orders stay."""
        self.engine.set_price_structure(ticker, structure)
        flow = next((f for f in self._flows if f.m.ticker == ticker), None)
        if flow is not None:
            flow.regrid()
        self.flush()

    def add_market(self, spec: MarketSpec) -> None:
        """List a market mid-run (lifecycle ``created``); the synthetic flow trades it when it runs."""
        m = self.engine.add_market(spec)
        if self._flows:
            prof = PROFILES[self.cfg.flow]
            f0 = self._flows[0]
            flow = MarketFlow(self.engine, m, self.cfg.seed, prof, f0.lp, f0.noise, f0.informed)
            self._flows.append(flow)
            flow._refill()  # noqa: SLF001
        self.flush()

    def set_close_time(self, ticker: str, close_s: int) -> None:
        """Move a market's close time (Unix s); lifecycle ``close_date_updated``."""
        self.engine.set_close_time(ticker, close_s)
        self.flush()

    def update_metadata(self, ticker: str, **fields: Any) -> None:
        """Change strikes / YES subtitle; lifecycle ``metadata_updated``."""
        self.engine.update_metadata(ticker, **fields)
        self.flush()

    def fund_shard(self, key_id: str, shard: int, dollars: str | int) -> None:
        """Add ``dollars`` of cash on ``shard`` to an account (a deposit, outside the transfer endpoint)."""
        self.engine.accounts[key_id].cash[self.engine._shard_arg(shard)] += parse_dollars(dollars)  # noqa: SLF001

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.expiry_check_s)
            if self.engine.expire(int(time.time())):
                self.flush()
            if self.cfg.weekly_trading_pause:
                self._follow_weekly_pause(self.engine.wall_ms())

    async def _rebalance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.rebalance_interval_s)
            self.engine.rebalance()

    def _follow_weekly_pause(self, now_ms: int) -> None:
        """Start or end the Thursday trading pause when the wall clock crosses its edges."""
        inside = in_weekly_pause(now_ms)
        if inside and not self._weekly_paused:
            self._weekly_paused = True
            self.pause_trading()
        elif not inside and self._weekly_paused:
            self._weekly_paused = False
            self.resume_exchange()

    def _start_flow(self) -> None:
        prof = PROFILES[self.cfg.flow]
        big = 10**15
        lp = self.engine.add_account("flow-liquidity", big, unlimited=True)
        noise = self.engine.add_account("flow-noise", big, unlimited=True)
        informed = self.engine.add_account("flow-informed", big, unlimited=True)
        self._flows = [MarketFlow(self.engine, m, self.cfg.seed, prof, lp, noise, informed)
                       for m in self.engine.markets.values()]
        for f in self._flows:  # a book to trade against from the first moment
            f._refill()  # noqa: SLF001
        self.flush()
        self._tasks.append(asyncio.create_task(self._flow_loop(prof.tick_s / self.cfg.speed)))

    async def _flow_loop(self, dt: float) -> None:
        sim_dt = dt * self.cfg.speed
        while True:
            await asyncio.sleep(dt)
            if not self.flow_running:
                continue
            for f in self._flows:
                f.step(sim_dt)
            self.flush()

    # -- ground truth, in kmm integer units ------------------------------------------------------
    def book(self, ticker: str) -> dict[str, list[tuple[int, int]]]:
        """{"yes": YES bids ascending, "no": NO bids ascending (NO prices)}, as (price 1e-4 $, size 1e-2)."""
        yes, no = self.engine.market(ticker).book_levels()
        return {"yes": yes, "no": no}

    def orders(self, key_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        accts = [self.engine.accounts[key_id]] if key_id else list(self.engine.accounts.values())
        out = []
        for a in accts:
            for o in a.orders.values():
                if status is None or o.status == status:
                    out.append({"order_id": o.id, "client_order_id": o.coid, "key_id": a.key_id,
                                "ticker": o.market.ticker, "side": SIDE_NAMES[o.side], "price": o.price,
                                "initial": o.initial, "remaining": o.remaining, "filled": o.filled,
                                "status": o.status, "time_in_force": o.tif, "post_only": o.post_only,
                                "order_group_id": o.group.id if o.group else None,
                                "created_ms": o.created_ms, "updated_ms": o.updated_ms})
        return out

    def fills(self, key_id: str | None = None) -> list[dict[str, Any]]:
        accts = [self.engine.accounts[key_id]] if key_id else list(self.engine.accounts.values())
        return [{k: v for k, v in f.items() if k != "wire"} for a in accts for f in a.fills]

    def position(self, key_id: str, ticker: str) -> dict[str, int]:
        p = self.engine.accounts[key_id].position(ticker)
        return {"position": p.qty, "cost": p.cost, "realized_pnl": p.realized, "fees_paid": p.fees_paid}

    def balance(self, key_id: str, shard: int | None = None) -> int:
        """Available balance (cash minus what resting orders hold), 1e-4 $, as GET /portfolio/balance:
        over every shard, or on ``shard``."""
        a = self.engine.accounts[key_id]
        return a.available if shard is None else a.available_on(shard)

    def cash(self, key_id: str, shard: int | None = None) -> int:
        a = self.engine.accounts[key_id]
        return a.total_cash if shard is None else a.cash[shard]

    @property
    def stats(self) -> dict[str, int]:
        s: dict[str, int] = dict(self.engine.stats)
        s.update(self.hub.stats)
        s.update({f"rest_{k}": v for k, v in self.stats_rest.items()})
        s.update({f"ws_{k}": v for k, v in self.stats_ws.items()})
        s["rest_429"] = self.stats_rest.get("429", 0) + self.stats_rest.get("fault_429", 0)
        s["ws_connections"] = len(self.hub.conns)
        return s

    # convenience for tests and tools that act inside the engine (no wire), e.g. as a counterparty
    def place_direct(self, key_id: str, ticker: str, side: str, price: int, count: int, *,
                     tif: str = protocol.TIF_GTC, coid: str | None = None) -> str:
        a = self.engine.accounts[key_id]
        o = self.engine.place(a, ticker, BID if side == "bid" else ASK, price, count,
                              coid=coid or f"direct-{self.engine.stats['orders_placed'] + 1}-{time.time_ns()}",
                              tif=tif)
        self.flush()
        return o.id
