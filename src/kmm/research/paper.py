"""``kmm run --paper``: quote on the live public feed while the fill simulator fills the orders; no
order is ever sent.

:class:`PaperRest` stands where the engine's ``KalshiRest`` stands: reads (markets, series, exchange
status, limits) go to the venue; every write (create, amend, decrease, cancel, order groups) is served
by the same :class:`~kmm.research.fills.FillSimulator` ``kmm backtest`` uses, after the same write
token wait and a latency draw, against the live book as it is when the order "arrives". Account reads
(positions, resting orders, fills, balance) answer from the paper account, so the engine's reconcile
and stop checks run unchanged. Anything else on the real client is refused: a write cannot leak.

:class:`PaperEngine` is the live engine with that client and three feed hooks: book messages and
trades go to the simulator before the engine sees them (queue upkeep, fills of resting paper orders),
and the account's real fills/orders/positions on the socket are ignored (they are not this session's).
It runs on the engine's venue session: ``session.rest_factory`` builds the paper client in place of
the real one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from kmm.engine.live import Engine
from kmm.engine.portfolio import Portfolio
from kmm.errors import ExchangeError, NotFound
from kmm.kalshi import limiter as _lim
from kmm.kalshi.types import (Balance, CancelAck, DecreaseAck, Fill, MarketPosition, OrderAck, OrderRequest,
                              Trade, UserOrder)
from kmm.research.fills import FillSimulator, MarketDef
from kmm.research.latency import LatencyModel
from kmm.research.queue import QueueModel

log = logging.getLogger("kmm.research.paper")

# what PaperRest passes to the venue: reads only
_READS = frozenset({"start", "close", "apply_account_limits", "get_exchange_status", "get_market_raw", "get_event",
                    "get_series", "get_markets", "get_orderbook", "limiter", "signer", "config", "base"})


class PaperRest:
    """The engine's REST client in paper mode (see the module docstring)."""

    def __init__(self, real: Any, engine: PaperEngine) -> None:
        self._real = real
        self._engine = engine
        self.pf = Portfolio(mark="mid")
        self.fills: list[Fill] = []
        self._cash0: int | None = None
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        if name in _READS:
            return getattr(self._real, name)
        raise AttributeError(f"paper mode: {name} is not available (no request that could change the "
                             "account is ever sent in paper mode)")

    # ---------------------------------------------------------------- account reads (the paper account)
    async def get_balance(self) -> Balance:
        if self._cash0 is None:
            self._cash0 = (await self._real.get_balance()).balance
            self.pf.set_cash(self._cash0)
        return Balance(self.pf.cash, None)

    async def get_positions(self, **kw: Any) -> list[MarketPosition]:
        out = []
        for t in self.pf.tickers():
            v = self.pf.view(t)
            out.append(MarketPosition(t, v.position, v.position_cost, v.realized_pnl, v.fees_paid, v.volume))
        return out

    async def get_orders(self, **kw: Any) -> list[UserOrder]:
        sim = self._engine.sim
        return [o.user_order() for o in sim.resting()] if sim is not None else []

    async def get_order(self, order_id: str) -> UserOrder:
        sim = self._engine.sim
        o = sim.orders.get(order_id) if sim is not None else None
        if o is None:
            raise NotFound(404, "not_found", f"paper order {order_id} does not exist")
        return o.user_order()

    async def find_order_by_client_id(self, client_order_id: str, *, ticker: str | None = None,
                                      **kw: Any) -> UserOrder | None:
        sim = self._engine.sim
        o = sim.by_coid.get(client_order_id) if sim is not None else None
        return o.user_order() if o is not None else None

    async def get_fills(self, **kw: Any) -> list[Fill]:
        return list(self.fills)

    # ---------------------------------------------------------------- writes (the fill simulator)
    async def _travel(self, lane: int) -> None:
        """Wait for write tokens as a real request would, then the entry latency (+ feed: the order
        meets the book as we will see it)."""
        await self._real.limiter.acquire(lane, 2 if lane == _lim.CANCEL else 10)
        lat = self._engine.latency
        await asyncio.sleep((lat.entry.draw(self._engine.rng) + lat.feed.draw(self._engine.rng)) / 1e9)

    async def _back(self) -> None:
        lat = self._engine.latency
        await asyncio.sleep(max(0, lat.response.draw(self._engine.rng) - lat.feed.median_ns) / 1e9)

    def _now(self) -> tuple[int, int]:
        c = self._engine.clock
        return c.monotonic_ns(), c.time_ns() // 1_000_000

    def book_fill(self, f: Fill) -> None:
        """A paper fill: into the paper account, then to the engine like a WS fill."""
        self.fills.append(f)
        self.pf.apply_fill(f)
        self._engine.deliver_fill(f)

    async def create_order(self, req: OrderRequest) -> OrderAck:
        self.writes += 1
        await self._travel(_lim.PLACE)
        sim = self._engine.sim
        assert sim is not None
        now, wall = self._now()
        ack, _, fills = sim.place(now, wall, req.ticker, req.side, req.price, req.count, req.client_order_id,
                                  post_only=req.post_only)
        await self._back()
        for f in fills:
            self.book_fill(f)
        return ack

    async def cancel_orders(self, order_ids: list[str], **kw: Any) -> list[CancelAck]:
        self.writes += 1
        await self._travel(_lim.CANCEL)
        sim = self._engine.sim
        assert sim is not None
        now, wall = self._now()
        out = []
        for oid in order_ids:
            o = sim.orders.get(oid)
            reduced = sim.cancel(now, wall, oid)
            out.append(CancelAck(oid, o.coid if o else None, reduced or 0, wall, already_gone=reduced is None))
        await self._back()
        return out

    async def amend_order(self, order_id: str, *, ticker: str, side: str, price: int, count: int,
                          client_order_id: str | None = None, **kw: Any) -> OrderAck:
        self.writes += 1
        await self._travel(_lim.AMEND)
        sim = self._engine.sim
        assert sim is not None
        now, wall = self._now()
        o = sim.orders.get(order_id)
        remaining = count - (o.filled if o is not None else 0)
        so: Any
        refused: str | None
        fills: list[Fill]
        if o is not None and remaining <= 0:     # filled past the new total on the way, as Kalshi refuses it
            so, refused, fills = o, "invalid_count", []
        else:
            so, refused, fills = sim.amend(now, wall, order_id, price, remaining)
        await self._back()
        for f in fills:
            self.book_fill(f)
        if refused is not None or so is None:
            code = refused or "order_not_found"
            raise ExchangeError(404 if code == "order_not_found" else 400, code, f"paper amend of {order_id} refused")
        return OrderAck(so.order_id, so.coid, so.filled, so.remaining, ts_ms=wall)

    async def decrease_order(self, order_id: str, reduce_to: int) -> DecreaseAck:
        self.writes += 1
        await self._travel(_lim.AMEND)
        sim = self._engine.sim
        assert sim is not None
        now, wall = self._now()
        so = sim.decrease(now, wall, order_id, reduce_to)
        await self._back()
        if so is None:
            raise ExchangeError(404, "order_not_found", f"paper order {order_id} is not resting")
        return DecreaseAck(order_id, so.coid, so.remaining)

    async def create_order_group(self, contracts_limit: int, **kw: Any) -> str:
        return "paper-group"

    async def delete_order_group(self, order_group_id: str) -> None:
        return None

    async def reset_order_group(self, order_group_id: str) -> None:
        return None

    def presign_order(self, order_id: str, depth: int = 1) -> None:
        return None

    def forget_order(self, order_id: str) -> None:
        return None


class PaperEngine(Engine):
    """The live engine on :class:`PaperRest`, with the fill simulator fed from the live feed."""

    def __init__(self, *args: Any, queue: QueueModel | None = None, latency: LatencyModel | None = None,
                 seed: int = 0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.queue = queue or QueueModel()
        self.latency = latency or LatencyModel()
        self.rng = random.Random(seed)
        self.sim: FillSimulator | None = None
        self.paper: PaperRest | None = None
        self.ignored_account_messages = 0
        self.session.opt.group_state_path = None     # paper order groups are not the account's

    async def _start(self) -> None:
        real_cls = self.session.rest_factory

        def make(conn: Any) -> Any:
            self.paper = PaperRest(real_cls(conn), self)
            return self.paper
        self.session.rest_factory = make
        try:
            await super()._start()
        finally:
            self.session.rest_factory = real_cls

    def _ensure_sim(self) -> FillSimulator | None:
        if self.sim is None and self.pipes and self.ws is not None:
            from kmm.research.runrecord import market_defs
            wire = market_defs(self)
            defs = {t: MarketDef(t, wire[t]["price_ranges"], p.info.maker_rate_e6, p.info.taker_rate_e6,
                                 p.info.close_time_ns, p.info.fractional, p.info.status)
                    for t, p in self.pipes.items()}
            self.sim = FillSimulator(defs, self.queue)
        return self.sim

    # ---------------------------------------------------------------- feed hooks
    def on_book(self, ticker: str, recv_ns: int) -> None:
        sim = self._ensure_sim()
        pipe = self.pipes.get(ticker)
        if sim is not None and pipe is not None and self.ws is not None:
            m = sim.markets[ticker]
            if m.book is None:
                sim.attach_book(ticker, self.ws.book(ticker))
            if self.router.last_ticker == ticker and self.router.last_type == "orderbook_snapshot":
                sim.on_snapshot(ticker)
            elif m.orders:
                sim.on_book_change(self.clock.monotonic_ns(), ticker)
        super().on_book(ticker, recv_ns)

    def on_trade(self, trade: Trade) -> None:
        sim = self.sim
        super().on_trade(trade)
        if sim is not None and self.paper is not None and sim.markets.get(trade.ticker) is not None \
                and sim.markets[trade.ticker].book is not None:
            for f in sim.on_trade(self.clock.monotonic_ns(), trade.ts_ms or self.clock.time_ns() // 1_000_000,
                                  trade.ticker, trade.price, trade.count, trade.taker_side, trade.trade_id):
                self.paper.book_fill(f)
            sim.end_sweeps()        # fills are delivered at once here: each print is its own fill

    def deliver_fill(self, f: Fill) -> None:
        Engine.on_fill(self, f)

    def on_fill(self, fill: Fill) -> None:
        self.ignored_account_messages += 1     # the account's real fills are not this paper session's

    def on_user_order(self, order: Any) -> None:
        self.ignored_account_messages += 1

    def on_market_position(self, position: Any) -> None:
        self.ignored_account_messages += 1
