"""The matching engine and the accounts: one YES book per market, price-time priority, netting, fees.

Integer units inside (design section 2): price 1e-4 $ in YES terms, size 1e-2 contracts, money 1e-4 $.
A ``bid`` buys YES at ``price``; an ``ask`` sells YES, which is buying NO at ``10000 - price``.

Every state change appends an event to :attr:`Engine.out`; the exchange drains it after each operation and
fans the events out to WebSocket subscribers. Events are tuples whose first item names the kind:

``("d", market, side, price_side, delta, account, client_order_id, subaccount)``  book delta; ``side`` is "yes" (a
    bid level at ``price_side``) or "no" (an ask level, ``price_side`` in NO terms)
``("t", market, trade)``    public trade (wire dict)
``("k", market)``           the market's top of book / last price changed
``("f", account, fill)``    private fill (wire dict)
``("o", account, order)``   user_order (wire dict)
``("p", account, market)``  market_position changed
``("l", market, event)``    market_lifecycle_v2 event (wire dict)
``("g", account, update)``  order_group_updates message (wire dict)

Shards (kalshi-api.md 10): every market lives on one shard (``Market.shard``); an account's cash and holds
are kept per shard and an order needs collateral on its market's shard. Writes name a shard with
``exchange_index`` (None = the caller did not say: routed by ticker where there is one, else shard 0).
Pauses are per shard: a trading pause refuses places and amends (cancels work), an exchange pause refuses
cancels and decreases too.

Cash, cost and P&L on a fill (docs/sim.md has worked examples): the buyer of a side pays ``q * paid``
(``paid`` = p for YES, 1 - p for NO), rounded up to $0.0001, when the fill opens or extends a position; when
it reduces the opposite position, the holder is paid ``q * (1 - paid)`` (rounded down), the closed share of
the cost basis leaves ``cost`` and ``realized_pnl`` moves by proceeds - that cost. Fees are charged in whole
cents with a per-order carry (``kmm._core.fees.cent_fee``) and never enter ``realized_pnl``.
"""

from __future__ import annotations

import bisect
import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from kmm import protocol
from kmm._core.fees import cent_fee, fee_rate_e6, trade_fee
from kmm.sim.config import MAX_SHARDS, MarketSpec
from kmm.sim.rejects import Reject
from kmm.sim.wire import GRIDS, fmt_count, fmt_money, fmt_price, on_bands, ranges_wire, rfc3339

BID = 0
ASK = 1
SIDE_NAMES = ("bid", "ask")

RESTING = "resting"
CANCELED = "canceled"
EXECUTED = "executed"

# [U] whether the maker's book delta on a fill carries its client_order_id (kalshi-api.md 3.5). We say yes.
MAKER_FILL_DELTA_HAS_COID = True
# [U] an order group triggers when matched contracts in the window reach the limit ("hit") or pass it.
ORDER_GROUP_TRIGGER_AT_LIMIT = True


TRADE_TAPE_MAX = 200_000  # public trades kept per market for GET /markets/trades
POST_ONLY_CROSS_REASON = "PostOnlyCrossCancel"  # last_update_reason of a post-only order that would cross
TRADING_PAUSE = "trading"  # places and amends refused, cancels allowed (the Thursday window)
EXCHANGE_PAUSE = "exchange"  # nothing allowed, cancels included


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Position:
    __slots__ = ("qty", "cost", "realized", "fees_paid", "volume", "traded", "pos_fees", "updated_ms")

    def __init__(self) -> None:
        self.qty = 0  # signed 1e-2 contracts: > 0 YES, < 0 NO
        self.cost = 0  # 1e-4 $ paid for the open position
        self.realized = 0  # 1e-4 $, fees excluded
        self.fees_paid = 0  # 1e-4 $ (whole cents)
        self.volume = 0  # 1e-2 contracts traded
        self.traded = 0  # 1e-4 $ notional traded
        self.pos_fees = 0  # fees paid since the position was last flat
        self.updated_ms = 0


class OrderGroup:
    __slots__ = ("id", "account", "limit", "window", "window_sum", "triggered", "orders", "deleted", "shard",
                 "subaccount")

    def __init__(self, gid: str, account: Account, limit: int, shard: int = 0, subaccount: int = 0) -> None:
        self.shard = shard
        self.subaccount = subaccount
        self.id = gid
        self.account = account
        self.limit = limit  # 1e-2 contracts
        self.window: deque[tuple[int, int]] = deque()  # (monotonic ns, matched 1e-2 contracts)
        self.window_sum = 0
        self.triggered = False
        self.orders: set[Order] = set()
        self.deleted = False


class Account:
    __slots__ = ("key_id", "user_id", "cash", "reserved", "positions", "orders", "coids", "fills",
                 "groups", "unlimited", "order_watchers", "settlements", "transfers", "kill_until",
                 "allocation", "reservation")

    def __init__(self, key_id: str, cash: int, unlimited: bool = False) -> None:
        self.key_id = key_id
        self.user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "kmm-sim-user:" + key_id))
        self.cash = [0] * MAX_SHARDS  # 1e-4 $ per shard; deposits land on shard 0
        self.cash[0] = cash
        self.reserved = [0] * MAX_SHARDS  # 1e-4 $ held per shard for the opening part of resting orders
        self.settlements: list[dict[str, Any]] = []
        self.transfers: list[dict[str, Any]] = []
        # cancel-all tail: subaccount (None = every subaccount) -> wall ms until which new orders die
        self.kill_until: dict[int | None, int] = {}
        # target balance allocation (opt-in auto-rebalance): shard -> percent, and what resting orders hold back
        self.allocation: dict[int, int] = {}
        self.reservation = "sum"
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}
        self.coids: dict[str, Order] = {}
        # synthetic participants keep a bounded tail of fills so a long run does not grow without end
        self.fills: list[dict[str, Any]] | deque[dict[str, Any]] = deque(maxlen=10_000) if unlimited else []
        self.groups: dict[str, OrderGroup] = {}
        self.unlimited = unlimited  # synthetic participants: no balance checks
        self.order_watchers = 0  # user_orders subscriptions on this account (skip building unseen frames)

    @property
    def available(self) -> int:
        """Free cash over every shard, 1e-4 $."""
        return sum(self.cash) - sum(self.reserved)

    @property
    def total_cash(self) -> int:
        return sum(self.cash)

    def available_on(self, shard: int) -> int:
        return self.cash[shard] - self.reserved[shard]

    def position(self, ticker: str) -> Position:
        p = self.positions.get(ticker)
        if p is None:
            p = self.positions[ticker] = Position()
        return p


class Order:
    __slots__ = ("id", "coid", "account", "market", "side", "price", "initial", "remaining", "filled",
                 "status", "tif", "post_only", "reduce_only", "stp", "group", "cancel_on_pause",
                 "expiration_s", "created_ms", "updated_ms", "taker_cost", "maker_cost", "taker_fees",
                 "maker_fees", "carry", "subaccount", "open_left", "reserve", "prio", "reason")
    id: str
    coid: str
    account: Account
    market: Market
    side: int  # BID | ASK
    price: int  # 1e-4 $, YES terms
    initial: int  # 1e-2 contracts (filled + remaining)
    remaining: int
    filled: int
    status: str
    tif: str
    post_only: bool
    reduce_only: bool
    stp: str
    group: OrderGroup | None
    cancel_on_pause: bool
    expiration_s: int | None
    created_ms: int
    updated_ms: int
    taker_cost: int  # 1e-4 $, in the bought side's terms
    maker_cost: int
    taker_fees: int  # 1e-4 $, whole cents charged
    maker_fees: int
    carry: int  # fee rounding carry, 1e-4 $ (0..99)
    subaccount: int
    open_left: int  # 1e-2 contracts of this order that open a position (drives the hold)
    reserve: int  # 1e-4 $ held from the account's cash
    prio: int  # time priority
    reason: str  # last_update_reason ("" until something names one)

    def __init__(self) -> None:
        self.reason = ""
        self.reserve = 0
        self.carry = 0
        self.taker_cost = self.maker_cost = self.taker_fees = self.maker_fees = 0
        self.filled = 0

    @property
    def paid(self) -> int:
        """Price per contract of the side this order buys, 1e-4 $."""
        return self.price if self.side == BID else 10000 - self.price


class Market:
    __slots__ = ("spec", "ticker", "id", "status", "result", "levels", "sizes", "prices", "last_price",
                 "volume", "open_interest", "dollar_volume", "taker_rate", "maker_rate", "open_ms",
                 "trades", "close_s", "settled_ms", "last_size", "shard", "structure", "bands", "updated_ms",
                 "meta", "determined_ms")

    def __init__(self, spec: MarketSpec, now_ms: int) -> None:
        self.spec = spec
        self.ticker = spec.ticker
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, "kmm-sim-market:" + spec.ticker))
        self.status = "active"
        self.result = ""
        # per side (BID, ASK): price -> FIFO of orders; price -> total size; ascending list of prices
        self.levels: tuple[dict[int, deque[Order]], dict[int, deque[Order]]] = ({}, {})
        self.sizes: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.prices: tuple[list[int], list[int]] = ([], [])
        self.last_price = 0
        self.volume = 0
        self.open_interest = 0
        self.dollar_volume = 0
        self.taker_rate = fee_rate_e6(spec.fee_type, True, spec.fee_multiplier)
        self.maker_rate = fee_rate_e6(spec.fee_type, False, spec.fee_multiplier)
        self.open_ms = now_ms
        self.trades: deque[dict[str, Any]] = deque(maxlen=TRADE_TAPE_MAX)
        self.close_s = spec.close_time or 0
        self.settled_ms = 0
        self.determined_ms = 0
        self.last_size = 0
        self.shard = spec.exchange_index
        self.structure = spec.price_level_structure
        self.bands = GRIDS[spec.price_level_structure]
        self.updated_ms = now_ms  # last non-trading change (grid, close time, metadata)
        self.meta: dict[str, Any] = {"yes_sub_title": "Yes", "no_sub_title": "No", "strike_type": "custom",
                                     "floor_strike": None, "cap_strike": None, "custom_strike": None}

    def best_bid(self) -> int:
        p = self.prices[BID]
        return p[-1] if p else 0

    def best_ask(self) -> int:
        p = self.prices[ASK]
        return p[0] if p else 0

    # -- wire views ------------------------------------------------------------------------------
    def book_levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(YES bids ascending, NO bids ascending in NO terms), sizes in 1e-2 contracts."""
        yes = [(p, self.sizes[BID][p]) for p in self.prices[BID]]
        no = [(10000 - p, self.sizes[ASK][p]) for p in reversed(self.prices[ASK])]
        return yes, no

    def to_wire(self) -> dict[str, Any]:
        s = self.spec
        bb, ba = self.best_bid(), self.best_ask()
        close_iso = rfc3339(self.close_s * 1000)
        meta = self.meta
        d = {
            "ticker": s.ticker, "event_ticker": s.event_ticker, "series_ticker": s.series_ticker,
            "market_type": "binary", "title": s.title, "subtitle": "", "yes_sub_title": meta["yes_sub_title"],
            "no_sub_title": meta["no_sub_title"], "status": self.status, "result": self.result,
            "created_time": rfc3339(self.open_ms), "updated_time": rfc3339(self.updated_ms),
            "open_time": rfc3339(self.open_ms), "close_time": close_iso, "expiration_time": close_iso,
            "latest_expiration_time": close_iso, "expected_expiration_time": close_iso,
            "settlement_timer_seconds": 0, "can_close_early": True,
            "yes_bid_dollars": fmt_price(bb), "yes_ask_dollars": fmt_price(ba) if ba else "1.0000",
            "no_bid_dollars": fmt_price(10000 - ba) if ba else "0.0000",
            "no_ask_dollars": fmt_price(10000 - bb) if bb else "1.0000",
            "yes_bid_size_fp": fmt_count(self.sizes[BID].get(bb, 0)),
            "yes_ask_size_fp": fmt_count(self.sizes[ASK].get(ba, 0)),
            "last_price_dollars": fmt_price(self.last_price),
            "previous_price_dollars": "0.0000", "previous_yes_bid_dollars": "0.0000",
            "previous_yes_ask_dollars": "0.0000",
            "volume_fp": fmt_count(self.volume), "volume_24h_fp": fmt_count(self.volume),
            "open_interest_fp": fmt_count(self.open_interest), "liquidity_dollars": "0.0000",
            "notional_value_dollars": "1.0000", "price_level_structure": self.structure,
            "price_ranges": ranges_wire(self.bands), "settlement_bounds_type": "default",
            "expiration_value": "", "exchange_index": self.shard, "strike_type": meta["strike_type"],
            "rules_primary": "Simulated market: settles by the simulator's settle call.", "rules_secondary": "",
        }
        for k in ("floor_strike", "cap_strike", "custom_strike"):
            if meta[k] is not None:
                d[k] = meta[k]
        if self.settled_ms:
            d["settlement_ts"] = rfc3339(self.settled_ms)
        return d


class Engine:
    """Matching, accounts and order groups. Not thread-safe; one asyncio loop drives it."""

    def __init__(self, specs: list[MarketSpec], *, wall_ms: Callable[[], int] | None = None,
                 mono_ns: Callable[[], int] | None = None, n_shards: int = 1) -> None:
        self.wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self.mono_ns = mono_ns or time.monotonic_ns
        now = self.wall_ms()
        self.markets: dict[str, Market] = {}
        for spec in specs:
            if spec.ticker in self.markets:
                raise ValueError(f"market {spec.ticker} is configured twice")
            self.markets[spec.ticker] = Market(spec, now)
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self.groups: dict[str, OrderGroup] = {}
        self.out: list[tuple[Any, ...]] = []
        shards = 1 + max((m.shard for m in self.markets.values()), default=0)
        self.n_shards = max(shards, n_shards)
        self.paused: list[str | None] = [None] * self.n_shards  # None | TRADING_PAUSE | EXCHANGE_PAUSE
        self.transfers_active = True
        self.expiring: set[Order] = set()
        self._prio = itertools.count()
        self._check_events()
        self.stats = {"orders_placed": 0, "orders_matched": 0, "fills": 0, "trades": 0, "rejects": 0,
                      "cancels": 0}

    def _check_events(self) -> None:
        seen: dict[str, Market] = {}
        for m in self.markets.values():
            first = seen.setdefault(m.spec.event_ticker, m)
            if first.shard != m.shard or first.spec.mutually_exclusive != m.spec.mutually_exclusive:
                raise ValueError(f"event {m.spec.event_ticker}: markets {first.ticker} and {m.ticker} disagree "
                                 "on exchange_index or mutually_exclusive; every market of an event shares both")

    @property
    def trading_active(self) -> bool:
        """Shard 0 accepts orders (the top-level status Kalshi reports)."""
        return self.paused[0] is None

    def shard_of(self, exchange_index: int | None, ticker: str | None = None) -> int:
        """The shard a write goes to: the one named, else the ticker's market's, else 0 (kalshi-api.md 4.1)."""
        if exchange_index is not None and exchange_index >= 0:
            if exchange_index >= self.n_shards:
                raise Reject("invalid_parameters", f"exchange_index {exchange_index}: this exchange runs shards "
                             f"0..{self.n_shards - 1}")
            return exchange_index
        if ticker:
            return self.market(ticker).shard
        return 0

    # -- accounts --------------------------------------------------------------------------------
    def add_account(self, key_id: str, cash: int, unlimited: bool = False) -> Account:
        if key_id in self.accounts:
            raise ValueError(f"account {key_id} exists already")
        a = self.accounts[key_id] = Account(key_id, cash, unlimited)
        return a

    def market(self, ticker: str) -> Market:
        m = self.markets.get(ticker)
        if m is None:
            raise Reject("market_not_found", f"no market {ticker!r}")
        return m

    def order_of(self, account: Account, order_id: str, shard: int | None = None) -> Order:
        """The caller's order; with ``shard`` given, only if it lives there (an order id does not name its
        shard: a write sent to the wrong shard does not find it)."""
        o = account.orders.get(order_id)
        if o is None or (shard is not None and o.market.shard != shard):
            where = f" on shard {shard}" if shard is not None else ""
            raise Reject("order_not_found", f"no order {order_id!r} for this key{where}; pass the order's "
                         "exchange_index or market_ticker")
        return o

    # -- placing ---------------------------------------------------------------------------------
    def check_price(self, m: Market, price: int, field: str = "price") -> None:
        if not on_bands(m.bands, price):
            raise Reject("invalid_price", f"{field} {fmt_price(price)} is not on the "
                         f"{m.structure} grid of {m.ticker} ({_grid_text(m)})")

    def check_count(self, m: Market, count: int, field: str = "count") -> None:
        # counts are in 0.01 steps on every market (the wire parser already refuses a third decimal)
        if count <= 0:
            raise Reject("invalid_count", f"{field} must be > 0")

    def check_cancellable(self, shard: int) -> None:
        if self.paused[shard] == EXCHANGE_PAUSE:
            raise Reject("exchange_paused", f"shard {shard} is in an exchange pause: no cancels either; "
                         "retry after it resumes")

    def _check_tradable(self, m: Market) -> None:
        state = self.paused[m.shard]
        if state == EXCHANGE_PAUSE:
            raise Reject("exchange_paused", f"shard {m.shard} is in an exchange pause; retry after it resumes")
        if state == TRADING_PAUSE:
            raise Reject("trading_paused", f"trading is paused on shard {m.shard} (cancels still work); "
                         "retry after it resumes")
        if m.status != "active":
            raise Reject("market_inactive", f"{m.ticker} is {m.status}")
        if m.close_s and self.wall_ms() // 1000 >= m.close_s:
            raise Reject("market_already_closed", f"{m.ticker} closed at {rfc3339(m.close_s * 1000)}")

    def place(self, account: Account, ticker: str, side: int, price: int, count: int, *, coid: str,
              tif: str = protocol.TIF_GTC, stp: str = protocol.STP_TAKER_AT_CROSS, post_only: bool = False,
              reduce_only: bool = False, cancel_on_pause: bool = False, expiration_s: int | None = None,
              group_id: str | None = None, subaccount: int = 0, exchange_index: int | None = None) -> Order:
        """Validate, match and (GTC) rest one order. Raises :class:`Reject` without touching state."""
        m = self.market(ticker)
        if exchange_index is not None and exchange_index >= 0:
            self.shard_of(exchange_index)  # a shard this exchange runs
        if exchange_index is not None and exchange_index >= 0 and exchange_index != m.shard:
            raise Reject("market_not_found", f"{ticker} is not on shard {exchange_index} (it is on shard "
                         f"{m.shard}); send exchange_index {m.shard} or -1 to route by ticker")
        self.check_price(m, price)
        self.check_count(m, count)
        if coid in account.coids:
            raise Reject("order_already_exists", f"client_order_id {coid!r} was used by order "
                         f"{account.coids[coid].id}")
        if expiration_s is not None:
            if tif != protocol.TIF_GTC:
                raise Reject("invalid_order", "expiration_time is allowed with good_till_canceled only")
            if expiration_s * 1000 <= self.wall_ms():
                raise Reject("invalid_order", f"expiration_time {expiration_s} is in the past")
        self._check_tradable(m)
        group = None
        if group_id:
            group = account.groups.get(group_id)
            if group is None or group.deleted:
                raise Reject("order_group_not_found", f"no order group {group_id!r}")
            self._roll_group(group)
            if group.triggered:
                raise Reject("exceeded_order_group_risk_limit", f"order group {group_id} is triggered; reset it")
        pos = account.position(ticker).qty
        if reduce_only:
            closable = -pos if side == BID else pos
            if closable <= 0:
                raise Reject("reduce_only_would_increase", f"position in {ticker} is {fmt_count(pos)}")
            count = min(count, closable)
        opp = ASK if side == BID else BID
        if group is not None and group.shard != m.shard:
            raise Reject("invalid_order", f"order group {group.id} lives on shard {group.shard}, {ticker} on "
                         f"shard {m.shard}; a group does not span shards")
        crosses = self._crosses(m, side, price)
        paid = price if side == BID else 10000 - price
        closable = max(0, -pos if side == BID else pos)
        open_qty = max(0, count - closable)
        if not account.unlimited:
            need = _ceil_div(open_qty * paid, 100)
            fee = _ceil_div(trade_fee(count, price, m.taker_rate), 100) * 100
            free = account.available_on(m.shard)
            if free < need + fee:
                hint = (f"; shard {m.shard} holds {fmt_money(account.cash[m.shard])}: move collateral there with "
                        "POST /portfolio/intra_exchange_instance_transfer") if m.shard else ""
                raise Reject("insufficient_balance", f"order needs {fmt_money(need + fee)}, available on shard "
                             f"{m.shard} {fmt_money(free)}{hint}")
        if tif == protocol.TIF_FOK:
            self._check_fok(m, account, side, price, count, stp)
        now = self.wall_ms()
        o = Order()
        o.id = str(uuid.uuid4())
        o.coid = coid
        o.account = account
        o.market = m
        o.side = side
        o.price = price
        o.initial = o.remaining = count
        o.status = RESTING
        o.tif = tif
        o.post_only = post_only
        o.reduce_only = reduce_only
        o.stp = stp
        o.group = group
        o.cancel_on_pause = cancel_on_pause
        o.expiration_s = expiration_s
        o.created_ms = o.updated_ms = now
        o.subaccount = subaccount
        o.open_left = open_qty
        o.prio = next(self._prio)
        account.orders[o.id] = o
        account.coids[coid] = o
        self.orders[o.id] = o
        if group is not None:
            group.orders.add(o)
        if expiration_s is not None:
            self.expiring.add(o)
        self.stats["orders_placed"] += 1
        if post_only and crosses:
            # since Jun 4 2026 a crossing post-only order is accepted and cancelled, not rejected
            o.remaining = 0
            o.reason = POST_ONLY_CROSS_REASON
            self._finish(o, CANCELED)
            self._emit_order(o)
            return o
        if crosses:
            self._match(o, opp)
        if o.status == RESTING:
            if o.remaining and tif == protocol.TIF_GTC:
                self._rest(o)
            else:
                self._finish(o, CANCELED if o.remaining else EXECUTED)
        self._emit_order(o)
        tail = max(account.kill_until.get(None, 0), account.kill_until.get(subaccount, 0))
        if tail and o.status == RESTING and now < tail:
            self._cancel_resting(o)  # [U] the cancel-all tail (SimConfig.cancel_all_tail_s)
        return o

    def _crosses(self, m: Market, side: int, price: int) -> bool:
        if side == BID:
            ba = m.best_ask()
            return ba != 0 and ba <= price
        bb = m.best_bid()
        return bb != 0 and bb >= price

    def _check_fok(self, m: Market, account: Account, side: int, price: int, count: int, stp: str) -> None:
        opp = ASK if side == BID else BID
        prices = m.prices[opp] if opp == ASK else list(reversed(m.prices[opp]))
        got = 0
        for p in prices:
            if (side == BID and p > price) or (side == ASK and p < price):
                break
            for r in m.levels[opp][p]:
                if r.account is account:
                    if stp == protocol.STP_TAKER_AT_CROSS:
                        raise Reject("self_cross_attempt", "fill-or-kill would meet your own resting order")
                    continue
                got += r.remaining
                if got >= count:
                    return
        raise Reject("fok_insufficient_volume", f"only {fmt_count(got)} available at {fmt_price(price)} or better")

    # -- matching --------------------------------------------------------------------------------
    def _match(self, o: Order, opp: int) -> None:
        m = o.market
        levels = m.levels[opp]
        prices = m.prices[opp]
        acct = o.account
        price = o.price
        while o.remaining and prices:
            best = prices[0] if opp == ASK else prices[-1]
            if (opp == ASK and best > price) or (opp == BID and best < price):
                break
            q = levels[best]
            while q and o.remaining:
                r = q[0]
                if r.account is acct:
                    if o.stp == protocol.STP_MAKER:
                        self._cancel_resting(r, CANCELED)
                        continue
                    # taker_at_cross: cancel the taker's remainder, keep what it filled
                    self._finish(o, CANCELED)
                    return
                self._fill(o, r, min(o.remaining, r.remaining))
                if o.status != RESTING:  # the taker's order group triggered
                    return
        self.stats["orders_matched"] += 1 if o.filled else 0

    def _fill(self, t: Order, r: Order, qty: int) -> None:
        """Trade ``qty`` between taker ``t`` and resting maker ``r`` at the maker's price."""
        m = t.market
        px = r.price
        now = self.wall_ms()
        trade_id = str(uuid.uuid4())
        t_fee = trade_fee(qty, px, m.taker_rate)
        r_fee = trade_fee(qty, px, m.maker_rate)
        t_chg, t.carry = cent_fee(t_fee, t.carry)
        r_chg, r.carry = cent_fee(r_fee, r.carry)
        # maker leaves the book first (its level shrinks), so the book never shows a crossed state
        side = r.side
        r.remaining -= qty
        r.filled += qty
        r.updated_ms = now
        self._level_add(m, side, px, -qty)
        lvl = m.levels[side][px]
        if r.remaining == 0:
            lvl.popleft()
            if not lvl:
                self._drop_level(m, side, px)
        self.out.append(("d", m, "yes" if side == BID else "no", px if side == BID else 10000 - px, -qty,
                         r.account if MAKER_FILL_DELTA_HAS_COID else None, r.coid, r.subaccount))
        t.remaining -= qty
        t.filled += qty
        t.updated_ms = now
        t_leg = _ceil_div(qty * (px if t.side == BID else 10000 - px), 100)
        r_leg = _ceil_div(qty * r.paid, 100)
        t.taker_cost += t_leg
        t.taker_fees += t_chg
        r.maker_cost += r_leg
        r.maker_fees += r_chg
        oi_before = self._long_yes(t.account, m) + self._long_yes(r.account, m)
        t_pos = self._apply_fill(t.account, m, t.side == BID, qty, px, t_chg, now)
        r_pos = self._apply_fill(r.account, m, r.side == BID, qty, px, r_chg, now)
        m.open_interest += self._long_yes(t.account, m) + self._long_yes(r.account, m) - oi_before
        m.last_price = px
        m.last_size = qty
        m.volume += qty
        m.dollar_volume += qty * 10000 // 100
        self._set_reserve(t)
        self._set_reserve(r)
        self.stats["fills"] += 2
        self.stats["trades"] += 1
        ts_s = now // 1000
        taker_yes = t.side == BID
        trade = {"trade_id": trade_id, "market_ticker": m.ticker, "ticker": m.ticker,
                 "yes_price_dollars": fmt_price(px), "no_price_dollars": fmt_price(10000 - px),
                 "count_fp": fmt_count(qty), "taker_side": "yes" if taker_yes else "no",
                 "taker_outcome_side": "yes" if taker_yes else "no",
                 "taker_book_side": SIDE_NAMES[t.side], "is_block_trade": False, "ts": ts_s, "ts_ms": now,
                 "created_time": rfc3339(now)}
        m.trades.append(trade)
        self.out.append(("t", m, trade))
        for o, is_taker, chg, pos_after in ((t, True, t_chg, t_pos), (r, False, r_chg, r_pos)):
            yes = o.side == BID
            fill = {"trade_id": trade_id, "fill_id": trade_id, "order_id": o.id, "client_order_id": o.coid,
                    "market_ticker": m.ticker, "ticker": m.ticker, "exchange_index": m.shard, "is_taker": is_taker,
                    "side": "yes" if yes else "no", "yes_price_dollars": fmt_price(px),
                    "no_price_dollars": fmt_price(10000 - px), "count_fp": fmt_count(qty),
                    "fee_cost": fmt_money(chg), "action": "buy", "outcome_side": "yes" if yes else "no",
                    "book_side": SIDE_NAMES[o.side], "purchased_side": "yes" if yes else "no",
                    "post_position_fp": fmt_count(pos_after), "subaccount": o.subaccount,
                    "subaccount_number": o.subaccount,
                    "ts": ts_s, "ts_ms": now, "created_time": rfc3339(now)}
            o.account.fills.append({"trade_id": trade_id, "order_id": o.id, "client_order_id": o.coid,
                                    "key_id": o.account.key_id, "ticker": m.ticker, "side": SIDE_NAMES[o.side],
                                    "price": px, "count": qty, "fee": chg, "is_taker": is_taker,
                                    "post_position": pos_after, "ts_ms": now, "wire": fill})
            self.out.append(("f", o.account, fill))
            self.out.append(("p", o.account, m))
        if r.remaining == 0:
            self._finish(r, EXECUTED)
        self._emit_order(r)
        self.out.append(("k", m))
        for o in (t, r):
            g = o.group
            if g is not None and not g.deleted:
                self._group_matched(g, qty)

    def _long_yes(self, a: Account, m: Market) -> int:
        p = a.positions.get(m.ticker)
        return p.qty if p is not None and p.qty > 0 else 0

    def _apply_fill(self, a: Account, m: Market, buys_yes: bool, q: int, px: int, fee: int, now: int) -> int:
        """Move cash, cost, realized P&L and fees of ``a`` for buying ``q`` of a side; returns the new position."""
        p = a.position(m.ticker)
        cash = a.cash
        sh = m.shard
        paid = px if buys_yes else 10000 - px
        pos = p.qty
        held = -pos if buys_yes else pos  # contracts of the other side this fill closes
        closing = min(q, held) if held > 0 else 0
        opening = q - closing
        if closing:
            part = p.cost if closing == held else p.cost * closing // held
            proceeds = closing * (10000 - paid) // 100
            p.cost -= part
            p.realized += proceeds - part
            cash[sh] += proceeds
            pos += closing if buys_yes else -closing
        if opening:
            spend = _ceil_div(opening * paid, 100)
            p.cost += spend
            cash[sh] -= spend
            pos += opening if buys_yes else -opening
        if p.qty == 0 or (p.qty > 0) != (pos > 0):
            p.pos_fees = 0
        cash[sh] -= fee
        p.fees_paid += fee
        p.pos_fees += fee
        p.qty = pos
        p.volume += q
        p.traded += q * paid // 100
        p.updated_ms = now
        return pos

    def _set_reserve(self, o: Order) -> None:
        a = o.account
        new = (_ceil_div(min(o.open_left, o.remaining) * o.paid, 100)
               if o.status == RESTING and o.remaining else 0)
        a.reserved[o.market.shard] += new - o.reserve
        o.reserve = new

    # -- book maintenance ------------------------------------------------------------------------
    def _level_add(self, m: Market, side: int, px: int, delta: int) -> None:
        sizes = m.sizes[side]
        sizes[px] = sizes.get(px, 0) + delta

    def _drop_level(self, m: Market, side: int, px: int) -> None:
        del m.levels[side][px]
        del m.sizes[side][px]
        prices = m.prices[side]
        del prices[bisect.bisect_left(prices, px)]

    def _rest(self, o: Order) -> None:
        m = o.market
        side = o.side
        lv = m.levels[side].get(o.price)
        if lv is None:
            lv = m.levels[side][o.price] = deque()
            m.sizes[side][o.price] = 0
            bisect.insort(m.prices[side], o.price)
        lv.append(o)
        m.sizes[side][o.price] += o.remaining
        self._set_reserve(o)
        self.out.append(("d", m, "yes" if side == BID else "no",
                         o.price if side == BID else 10000 - o.price, o.remaining, o.account, o.coid, o.subaccount))
        self.out.append(("k", m))

    def _unrest(self, o: Order) -> None:
        """Take a resting order off its level (publishing the delta); its fields stay as they are."""
        m = o.market
        side = o.side
        lv = m.levels[side].get(o.price)
        if lv is None or o not in lv:
            return
        lv.remove(o)
        m.sizes[side][o.price] -= o.remaining
        if not lv:
            self._drop_level(m, side, o.price)
        self.out.append(("d", m, "yes" if side == BID else "no",
                         o.price if side == BID else 10000 - o.price, -o.remaining, o.account, o.coid, o.subaccount))
        self.out.append(("k", m))

    def _finish(self, o: Order, status: str) -> None:
        o.status = status
        if status == CANCELED:
            o.remaining = 0
        o.updated_ms = self.wall_ms()
        self._set_reserve(o)
        if o.group is not None:
            o.group.orders.discard(o)
        if o.expiration_s is not None:
            self.expiring.discard(o)
        a = o.account
        if a.unlimited:  # synthetic participants: forget finished orders (nobody reads them back)
            a.orders.pop(o.id, None)
            a.coids.pop(o.coid, None)
            self.orders.pop(o.id, None)

    def _cancel_resting(self, o: Order, status: str = CANCELED) -> int:
        """Cancel a resting order: off the book, status canceled, user_order out. Returns the size removed."""
        if o.status != RESTING:
            return 0
        self._unrest(o)
        reduced = o.remaining
        o.remaining = 0
        self._finish(o, status)
        self._emit_order(o)
        self.stats["cancels"] += 1
        return reduced

    # -- order operations ------------------------------------------------------------------------
    def cancel(self, account: Account, order_id: str, shard: int | None = None) -> tuple[Order, int]:
        o = self.order_of(account, order_id, shard)
        if o.status != RESTING:
            raise Reject("order_not_found", f"order {order_id} is {o.status}, not resting")
        self.check_cancellable(o.market.shard)
        return o, self._cancel_resting(o)

    def cancel_all(self, account: Account, ticker: str | None = None, *, subaccount: int | None = None,
                   tail_ms: int = 0) -> list[tuple[Order, int]]:
        """Cancel the caller's resting orders on every shard (one subaccount, or all); ``ticker`` is the
        legacy per-market filter. With ``tail_ms``, orders placed in the next ``tail_ms`` die too."""
        done = []
        for o in list(account.orders.values()):
            if o.status == RESTING and (ticker is None or o.market.ticker == ticker) \
                    and (subaccount is None or o.subaccount == subaccount) \
                    and self.paused[o.market.shard] != EXCHANGE_PAUSE:
                done.append((o, self._cancel_resting(o)))
        if tail_ms > 0:
            account.kill_until[subaccount] = self.wall_ms() + tail_ms
        return done

    def decrease(self, account: Account, order_id: str, reduce_to: int | None, reduce_by: int | None,
                 shard: int | None = None) -> Order:
        o = self.order_of(account, order_id, shard)
        self.check_cancellable(o.market.shard)
        if o.status != RESTING:
            raise Reject("order_not_found", f"order {order_id} is {o.status}, not resting")
        if (reduce_to is None) == (reduce_by is None):
            raise Reject("invalid_parameters", "give exactly one of reduce_to or reduce_by")
        target = reduce_to if reduce_to is not None else o.remaining - (reduce_by or 0)
        if reduce_by is not None and reduce_by <= 0:
            raise Reject("invalid_count", "reduce_by must be > 0")
        if target < 0:
            target = 0
        if target >= o.remaining:
            raise Reject("invalid_count", f"reduce_to {fmt_count(target)} must be below the remaining "
                         f"{fmt_count(o.remaining)}")
        if target == 0:
            self._cancel_resting(o)
            return o
        self._shrink(o, o.remaining - target)
        self._emit_order(o)
        return o

    def _shrink(self, o: Order, by: int) -> None:
        """Reduce a resting order in place (keeps its queue priority)."""
        m = o.market
        o.remaining -= by
        o.initial -= by
        o.updated_ms = self.wall_ms()
        m.sizes[o.side][o.price] -= by
        self._set_reserve(o)
        self.out.append(("d", m, "yes" if o.side == BID else "no",
                         o.price if o.side == BID else 10000 - o.price, -by, o.account, o.coid, o.subaccount))
        self.out.append(("k", m))

    def amend(self, account: Account, order_id: str, ticker: str, side: int, price: int, count: int,
              new_coid: str | None = None, shard: int | None = None, expiration_s: int | None = None) -> Order:
        """``count`` is the new total (filled + remaining). Keeps priority only for a pure size decrease.
        ``expiration_s``: None keeps the order's expiry, 0 clears it, else a future Unix second (GTC only)."""
        o = self.order_of(account, order_id, shard)
        if o.status != RESTING:
            raise Reject("order_not_found", f"order {order_id} is {o.status}, not resting")
        if ticker != o.market.ticker:
            raise Reject("invalid_order", f"ticker {ticker!r} does not match the order's {o.market.ticker!r}")
        if side != o.side:
            raise Reject("invalid_order", f"side {SIDE_NAMES[side]} does not match the order's {SIDE_NAMES[o.side]}")
        m = o.market
        self.check_price(m, price)
        self.check_count(m, count)
        if count <= o.filled:
            raise Reject("invalid_count", f"count {fmt_count(count)} is the new total and must exceed the "
                         f"filled {fmt_count(o.filled)}")
        if new_coid and new_coid != o.coid and new_coid in account.coids:
            raise Reject("order_already_exists", f"client_order_id {new_coid!r} is in use")
        self._check_tradable(m)
        new_remaining = count - o.filled
        crosses = self._crosses(m, o.side, price) if price != o.price else False
        if o.post_only and crosses:
            raise Reject("post_only_cross", f"amend to {fmt_price(price)} would cross the book")
        if not account.unlimited:
            paid = price if o.side == BID else 10000 - price
            pos = account.position(m.ticker).qty
            closable = max(0, -pos if o.side == BID else pos)
            need = _ceil_div(max(0, new_remaining - closable) * paid, 100) - o.reserve
            if need > 0 and account.available_on(m.shard) < need:
                raise Reject("insufficient_balance", f"amend needs {fmt_money(need)} more, available on "
                             f"shard {m.shard} {fmt_money(account.available_on(m.shard))}")
        if expiration_s:
            if o.tif != protocol.TIF_GTC:
                raise Reject("invalid_order", "expiration_time is allowed with good_till_canceled only")
            if expiration_s * 1000 <= self.wall_ms():
                raise Reject("invalid_order", f"expiration_time {expiration_s} is in the past")
        if expiration_s is not None:
            o.expiration_s = expiration_s or None
            if o.expiration_s is None:
                self.expiring.discard(o)
            else:
                self.expiring.add(o)
        if new_coid and new_coid != o.coid:
            del account.coids[o.coid]
            o.coid = new_coid
            account.coids[new_coid] = o
        if price == o.price and new_remaining <= o.remaining:
            if new_remaining < o.remaining:
                self._shrink(o, o.remaining - new_remaining)
                o.initial = count
            self._emit_order(o)
            return o
        self._unrest(o)
        o.price = price
        o.remaining = new_remaining
        o.initial = count
        pos = account.position(m.ticker).qty
        o.open_left = max(0, new_remaining - max(0, -pos if o.side == BID else pos))
        o.prio = next(self._prio)
        o.updated_ms = self.wall_ms()
        if crosses:
            self._match(o, ASK if o.side == BID else BID)
        if o.status == RESTING:
            if o.remaining:
                self._rest(o)
            else:
                self._finish(o, EXECUTED)
        self._emit_order(o)
        return o

    def expire(self, now_s: int) -> int:
        """Cancel resting GTC orders whose ``expiration_time`` has come; returns how many."""
        due = [o for o in self.expiring if o.expiration_s is not None and o.expiration_s <= now_s]
        for o in due:
            self.expiring.discard(o)
            self._cancel_resting(o)
        return len(due)

    def pause(self, kind: str = TRADING_PAUSE, shard: int | None = None) -> None:
        """Start a pause on one shard (or all): ``trading`` keeps cancels, ``exchange`` refuses them too.
        Orders with ``cancel_order_on_pause`` die when either starts."""
        if kind not in (TRADING_PAUSE, EXCHANGE_PAUSE):
            raise ValueError(f"pause kind {kind!r}: expected {TRADING_PAUSE!r} or {EXCHANGE_PAUSE!r}")
        shards = range(self.n_shards) if shard is None else (self._shard_arg(shard),)
        for sh in shards:
            self.paused[sh] = kind
        for o in list(self.orders.values()):
            if o.status == RESTING and o.cancel_on_pause and o.market.shard in shards:
                self._cancel_resting(o)

    def resume(self, shard: int | None = None) -> None:
        for sh in range(self.n_shards) if shard is None else (self._shard_arg(shard),):
            self.paused[sh] = None

    def _shard_arg(self, shard: int) -> int:
        if not 0 <= shard < self.n_shards:
            raise ValueError(f"shard {shard}: this exchange runs shards 0..{self.n_shards - 1}")
        return shard

    # -- money between shards --------------------------------------------------------------------
    def transfer(self, account: Account, source: int, destination: int, amount: int,
                 client_transfer_id: str | None = None) -> dict[str, Any]:
        """Move ``amount`` (1e-4 $) of free cash between shards; returns the transfer record."""
        if not self.transfers_active:
            raise Reject("exchange_paused", "intra-exchange transfers are paused")
        for name, sh in (("source_exchange_shard", source), ("destination_exchange_shard", destination)):
            if not 0 <= sh < self.n_shards:
                raise Reject("invalid_parameters", f"{name} {sh}: this exchange runs shards 0..{self.n_shards - 1}")
        if amount <= 0:
            raise Reject("invalid_parameters", "amount must be a positive integer of centi-cents")
        if client_transfer_id is not None:
            for t in account.transfers:
                if t["client_transfer_id"] == client_transfer_id:
                    raise Reject("transfer_already_exists", f"client_transfer_id {client_transfer_id!r} was "
                                 f"used by transfer {t['transfer_id']}")
        free = account.available_on(source)
        if free < amount:
            raise Reject("insufficient_balance", f"transfer of {fmt_money(amount)} needs that much free cash on "
                         f"shard {source}, which has {fmt_money(free)}")
        account.cash[source] -= amount
        account.cash[destination] += amount
        now = self.wall_ms()
        rec = {"transfer_id": str(uuid.uuid4()), "client_transfer_id": client_transfer_id,
               "source": "event_contract", "destination": "event_contract", "amount": amount,
               "source_exchange_shard": source, "destination_exchange_shard": destination,
               "status": "complete", "created_ts": now, "created_time": rfc3339(now)}
        account.transfers.append(rec)
        return rec

    def set_allocation(self, account: Account, allocation: dict[int, int], reservation: str = "sum") -> None:
        """Opt in to auto-rebalance: ``allocation`` maps shard -> whole percent (summing to 100)."""
        if reservation not in ("none", "max", "sum"):
            raise Reject("invalid_parameters", f"resting_margin_reservation {reservation!r}: none, max or sum")
        if any(not 0 <= sh < self.n_shards for sh in allocation) or sum(allocation.values()) != 100 \
                or any(p < 0 for p in allocation.values()):
            raise Reject("invalid_parameters", f"allocations must name shards 0..{self.n_shards - 1} with "
                         "percents >= 0 that sum to 100")
        account.allocation = dict(allocation)
        account.reservation = reservation

    def _movable(self, a: Account, shard: int) -> int:
        """Free capital of a shard for rebalancing: cash less what resting orders hold, per the reservation
        mode. [U] ``max`` is read as the larger of the holds of bids and of asks on the shard."""
        if a.reservation == "none":
            return a.cash[shard]
        if a.reservation == "sum":
            return a.cash[shard] - a.reserved[shard]
        bids = sum(o.reserve for o in a.orders.values() if o.status == RESTING and o.market.shard == shard
                   and o.side == BID)
        asks = sum(o.reserve for o in a.orders.values() if o.status == RESTING and o.market.shard == shard
                   and o.side == ASK)
        return a.cash[shard] - max(bids, asks)

    def rebalance(self) -> int:
        """One auto-rebalance pass over the accounts that opted in (Kalshi runs one every 10 s): move free
        capital from shards above their target share to those below. Returns how many transfers ran."""
        done = 0
        for a in self.accounts.values():
            if not a.allocation:
                continue
            shards = range(self.n_shards)
            free = {sh: max(0, min(self._movable(a, sh), a.available_on(sh))) for sh in shards}
            total = sum(free.values())
            want = {sh: total * a.allocation.get(sh, 0) // 100 for sh in shards}
            over = [(sh, free[sh] - want[sh]) for sh in shards if free[sh] > want[sh]]
            under = [[sh, want[sh] - free[sh]] for sh in shards if free[sh] < want[sh]]
            for src, extra in over:
                for item in under:
                    if extra <= 0:
                        break
                    amount = min(extra, item[1])
                    if amount > 0:
                        self.transfer(a, src, item[0], amount)
                        a.transfers[-1]["source"] = "rebalance"
                        extra -= amount
                        item[1] -= amount
                        done += 1
        return done

    # -- market changes (Python / fault API) -----------------------------------------------------
    def add_market(self, spec: MarketSpec) -> Market:
        """List a new market mid-run: lifecycle ``created`` (and ``event_lifecycle`` for a new event)."""
        if spec.ticker in self.markets:
            raise ValueError(f"market {spec.ticker} exists already")
        if spec.exchange_index >= self.n_shards:
            raise ValueError(f"market {spec.ticker}: shard {spec.exchange_index} is not run (0..{self.n_shards - 1})")
        new_event = all(m.spec.event_ticker != spec.event_ticker for m in self.markets.values())
        m = self.markets[spec.ticker] = Market(spec, self.wall_ms())
        try:
            self._check_events()
        except ValueError:
            del self.markets[spec.ticker]
            raise
        if new_event:
            self.out.append(("l", m, {"event_ticker": spec.event_ticker, "exchange_index": m.shard,
                                      "title": f"Simulated event {spec.event_ticker}", "subtitle": "",
                                      "collateral_return_type": "MECNET" if spec.mutually_exclusive else "",
                                      "series_ticker": spec.series_ticker, "_type": "event_lifecycle"}))
        self.out.append(("l", m, {"market_ticker": spec.ticker, "event_type": "created", "exchange_index": m.shard,
                                  "open_ts": m.open_ms // 1000, "close_ts": m.close_s,
                                  "price_level_structure": m.structure, "price_ranges": ranges_wire(m.bands),
                                  "additional_metadata": {
                                      "name": spec.title, "title": spec.title, "yes_sub_title": "Yes",
                                      "no_sub_title": "No", "rules_primary": "", "rules_secondary": "",
                                      "can_close_early": True, "event_ticker": spec.event_ticker,
                                      "expected_expiration_ts": m.close_s, "strike_type": "custom"}}))
        return m

    def set_price_structure(self, ticker: str, structure: str) -> None:
        """Move a live market to another grid in place; resting orders stay (Kalshi moved combos this way)."""
        if structure not in GRIDS:
            raise ValueError(f"set_price_structure {ticker}: unknown structure {structure!r}")
        m = self.market(ticker)
        m.structure = structure
        m.bands = GRIDS[structure]
        m.updated_ms = self.wall_ms()
        self.out.append(("l", m, {"market_ticker": ticker, "event_type": "price_level_structure_updated",
                                  "price_level_structure": structure, "price_ranges": ranges_wire(m.bands)}))

    def set_close_time(self, ticker: str, close_s: int) -> None:
        """Move a market's close time (Unix s): lifecycle ``close_date_updated``."""
        if isinstance(close_s, bool) or not isinstance(close_s, int) or close_s <= 0:
            raise ValueError(f"set_close_time {ticker}: close_s {close_s!r} must be Unix seconds")
        m = self.market(ticker)
        m.close_s = close_s
        m.updated_ms = self.wall_ms()
        self.out.append(("l", m, {"market_ticker": ticker, "event_type": "close_date_updated",
                                  "close_ts": close_s}))

    META_FIELDS = ("floor_strike", "cap_strike", "strike_type", "custom_strike", "yes_sub_title")

    def update_metadata(self, ticker: str, **fields: Any) -> None:
        """Change strikes or the YES subtitle: lifecycle ``metadata_updated`` with the changed fields."""
        bad = set(fields) - set(self.META_FIELDS)
        if bad or not fields:
            raise ValueError(f"update_metadata {ticker}: fields must be among {', '.join(self.META_FIELDS)}")
        m = self.market(ticker)
        m.meta.update(fields)
        m.updated_ms = self.wall_ms()
        self.out.append(("l", m, {"market_ticker": ticker, "event_type": "metadata_updated", **fields}))

    def settle(self, ticker: str, result: str) -> None:
        """Determine ``ticker``: cancel resting orders, pay $1 per winning net contract, flatten positions."""
        if result not in ("yes", "no"):
            raise ValueError(f"settle {ticker}: result must be 'yes' or 'no', not {result!r}")
        m = self.market(ticker)
        if m.status in ("determined", "finalized"):
            raise ValueError(f"settle {ticker}: market is already {m.status} ({m.result})")
        for side in (BID, ASK):
            for lv in list(m.levels[side].values()):
                for o in list(lv):
                    self._cancel_resting(o)
        now = self.wall_ms()
        m.status = "determined"
        m.result = result
        self.out.append(("l", m, {"market_ticker": ticker, "event_type": "determined", "result": result,
                                  "determination_ts": now // 1000,
                                  "settlement_value": "1.0000" if result == "yes" else "0.0000"}))
        m.determined_ms = now
        for a in self.accounts.values():
            p = a.positions.get(ticker)
            if p is None or p.qty == 0:
                continue
            won = (p.qty > 0) == (result == "yes")
            payout = abs(p.qty) * 100 if won else 0  # $1.00 per contract, 1e-2 contracts -> 1e-4 $
            a.cash[m.shard] += payout
            if not a.unlimited:
                yes_q, no_q = (p.qty, 0) if p.qty > 0 else (0, -p.qty)
                a.settlements.append({
                    "ticker": ticker, "exchange_index": m.shard, "event_ticker": m.spec.event_ticker,
                    "market_result": result, "yes_count_fp": fmt_count(yes_q),
                    "yes_total_cost_dollars": fmt_money(p.cost if yes_q else 0), "no_count_fp": fmt_count(no_q),
                    "no_total_cost_dollars": fmt_money(p.cost if no_q else 0), "revenue": payout // 100,
                    "settled_time": rfc3339(now), "fee_cost": "0.0000",
                    "value": 100 if result == "yes" else 0, "ts_ms": now})
            p.realized += payout - p.cost
            p.cost = 0
            p.qty = 0
            p.pos_fees = 0
            p.updated_ms = now
            self.out.append(("p", a, m))
        m.open_interest = 0
        m.status = "finalized"
        m.settled_ms = now
        self.out.append(("l", m, {"market_ticker": ticker, "event_type": "settled", "result": result,
                                  "settled_ts": now // 1000}))
        self.out.append(("k", m))

    # -- order groups ----------------------------------------------------------------------------
    def create_group(self, account: Account, limit: int, shard: int = 0, subaccount: int = 0) -> OrderGroup:
        lo, hi = protocol.ORDER_GROUP_LIMIT_RANGE
        if not lo * 100 <= limit <= hi * 100:
            raise Reject("invalid_parameters", f"contracts_limit must be within {lo}..{hi}")
        if len(account.groups) >= MAX_ORDER_GROUPS:
            raise Reject("invalid_parameters", f"at most {MAX_ORDER_GROUPS} order groups per user")
        g = OrderGroup(str(uuid.uuid4()), account, limit, shard, subaccount)
        account.groups[g.id] = g
        self.groups[g.id] = g
        self._group_event(g, "created")
        return g

    def _group_event(self, g: OrderGroup, event_type: str) -> None:
        msg: dict[str, Any] = {"event_type": event_type, "order_group_id": g.id}
        if event_type in ("created", "limit_updated"):
            msg["contracts_limit_fp"] = fmt_count(g.limit)
        msg["ts_ms"] = self.wall_ms()
        self.out.append(("g", g.account, msg))

    def group_of(self, account: Account, gid: str) -> OrderGroup:
        g = account.groups.get(gid)
        if g is None or g.deleted:
            raise Reject("order_group_not_found", f"no order group {gid!r}")
        return g

    def _roll_group(self, g: OrderGroup) -> None:
        cutoff = self.mono_ns() - int(protocol.ORDER_GROUP_WINDOW_S * 1e9)
        w = g.window
        while w and w[0][0] <= cutoff:
            g.window_sum -= w.popleft()[1]

    def _group_matched(self, g: OrderGroup, qty: int) -> None:
        g.window.append((self.mono_ns(), qty))
        g.window_sum += qty
        self._roll_group(g)
        if g.window_sum >= g.limit if ORDER_GROUP_TRIGGER_AT_LIMIT else g.window_sum > g.limit:
            self.trigger_group(g)

    def trigger_group(self, g: OrderGroup) -> None:
        if not g.triggered:
            self._group_event(g, "triggered")
        g.triggered = True
        for o in list(g.orders):
            if o.status == RESTING:
                if o.market.levels[o.side].get(o.price) is not None and o in o.market.levels[o.side][o.price]:
                    self._cancel_resting(o)
                else:  # the taker mid-match: stop it, keep its fills
                    o.remaining = 0
                    self._finish(o, CANCELED)
        g.orders.clear()

    def reset_group(self, g: OrderGroup) -> None:
        g.triggered = False
        g.window.clear()
        g.window_sum = 0
        self._group_event(g, "reset")

    def set_group_limit(self, g: OrderGroup, limit: int) -> None:
        lo, hi = protocol.ORDER_GROUP_LIMIT_RANGE
        if not lo * 100 <= limit <= hi * 100:
            raise Reject("invalid_parameters", f"contracts_limit must be within {lo}..{hi}")
        g.limit = limit
        self._group_event(g, "limit_updated")
        self._roll_group(g)
        if g.window_sum >= limit if ORDER_GROUP_TRIGGER_AT_LIMIT else g.window_sum > limit:
            self.trigger_group(g)

    def delete_group(self, g: OrderGroup) -> None:
        for o in list(g.orders):
            self._cancel_resting(o)
        g.deleted = True
        del g.account.groups[g.id]
        self.groups.pop(g.id, None)
        self._group_event(g, "deleted")

    # -- wire views ------------------------------------------------------------------------------
    def queue_position(self, o: Order) -> int:
        """Contracts (1e-2) resting ahead of ``o`` at its price."""
        if o.status != RESTING:
            return 0
        ahead = 0
        for r in o.market.levels[o.side].get(o.price, ()):
            if r is o:
                break
            ahead += r.remaining
        return ahead

    def _emit_order(self, o: Order) -> None:
        if o.account.order_watchers:
            self.out.append(("o", o.account, order_wire(o, user=True)))

    def position_wire(self, a: Account, m: Market) -> dict[str, Any]:
        p = a.position(m.ticker)
        return {"user_id": a.user_id, "market_ticker": m.ticker, "position_fp": fmt_count(p.qty),
                "position_cost_dollars": fmt_money(p.cost), "realized_pnl_dollars": fmt_money(p.realized),
                "fees_paid_dollars": fmt_money(p.fees_paid), "position_fee_cost_dollars": fmt_money(p.pos_fees),
                "volume_fp": fmt_count(p.volume), "subaccount": 0}


MAX_ORDER_GROUPS = 100_000  # per user (CL Aug 13)


def _grid_text(m: Market) -> str:
    return ", ".join(f"{fmt_price(a)}..{fmt_price(b)} step {fmt_price(s)}" for a, b, s in m.bands)


def order_wire(o: Order, user: bool = False) -> dict[str, Any]:
    """The order as ``user_order`` (``user=True``) or as a REST order object."""
    yes = o.side == BID
    d: dict[str, Any] = {
        "order_id": o.id, "user_id": o.account.user_id, "ticker": o.market.ticker, "status": o.status,
        "outcome_side": "yes" if yes else "no", "book_side": SIDE_NAMES[o.side],
        "side": "yes" if yes else "no", "is_yes": yes, "yes_price_dollars": fmt_price(o.price),
        "no_price_dollars": fmt_price(10000 - o.price),
        "fill_count_fp": fmt_count(o.filled), "remaining_count_fp": fmt_count(o.remaining),
        "initial_count_fp": fmt_count(o.initial),
        "taker_fill_cost_dollars": fmt_money(o.taker_cost), "maker_fill_cost_dollars": fmt_money(o.maker_cost),
        "taker_fees_dollars": fmt_money(o.taker_fees), "maker_fees_dollars": fmt_money(o.maker_fees),
        "client_order_id": o.coid, "self_trade_prevention_type": o.stp,
        "created_ts_ms": o.created_ms, "last_updated_ts_ms": o.updated_ms, "subaccount_number": o.subaccount,
        "exchange_index": o.market.shard,
    }
    if o.reason:
        d["last_update_reason"] = o.reason
    if o.group is not None:
        d["order_group_id"] = o.group.id
    if o.expiration_s is not None:
        d["expiration_ts_ms"] = o.expiration_s * 1000
    if not user:
        d.update({"action": "buy", "type": "limit", "time_in_force": o.tif, "post_only": o.post_only,
                  "reduce_only": o.reduce_only, "cancel_order_on_pause": o.cancel_on_pause,
                  "created_time": rfc3339(o.created_ms), "last_update_time": rfc3339(o.updated_ms),
                  "expiration_time": rfc3339(o.expiration_s * 1000) if o.expiration_s else None,
                  "event_ticker": o.market.spec.event_ticker, "last_updated_time": rfc3339(o.updated_ms)})
    return d
