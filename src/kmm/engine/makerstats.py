"""Maker metrics: what kmm gives the book as a market maker, counted as it happens.

Fed incrementally by the order manager's state changes and the book top, with time from an injected
:class:`~kmm.engine.clock.Clock` (monotonic ns for durations, wall ns for the 30-day window):

* ``on_resting(key, ticker, side, price, remaining)``: an order of ours rests on the book (first time:
  placed; again: amended, partly filled or re-priced);
* ``on_done(key)``: it left the book (canceled, filled, rejected);
* ``on_top(ticker, best_bid, best_ask)``: the market's best YES bid and ask (None: empty side);
* ``on_fill(fill)``: one of our fills (maker or taker), deduplicated by ``trade_id``.

Metrics (:class:`MakerMetrics`; formulas in docs/event-risk.md):

* resting orders placed, and the contracts they offered;
* liquidity provided: contract-seconds and dollar-seconds of our resting size that is at or near the
  best price of its side, "near" being within ``near`` (1e-4 $) of it: a bid at ``p`` counts while
  ``best_bid - p <= near``, an ask while ``p - best_ask <= near``. Dollar-seconds weigh a bid by its
  YES price and an ask by its NO price (1 - p): the money the order puts at risk. The same figures for
  all resting size, wherever it sits, come beside them;
* average spread improvement: for each new quote price (placement or re-price), by how much it beats
  the best price of its side at that moment (a bid above the best bid, an ask below the best ask; 0
  when it joins or sits behind). Feed ``on_top`` with the book without our own orders where that is
  known; with the full book, a re-price of the order that is itself the best counts as 0;
* maker fill rate: maker-filled contracts / contracts offered by resting orders (and the share of
  resting orders that got any maker fill);
* maker/taker ratio: maker-filled contracts / taker-filled contracts (None with no taker fill);
* 30-day volume: contracts (and dollars, YES notional) of our fills, maker + taker, whose exchange time
  lies in the last ``volume_window_s`` (Kalshi's tier rule counts maker + taker, kalshi-api.md s. 5).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from kmm.engine.clock import NS_PER_S, Clock
from kmm.engine.dedupe import forget_before
from kmm.kalshi.types import Fill, UserOrder

ONE_DOLLAR = 10_000
NS_PER_MS = 1_000_000
THIRTY_DAYS_S = 30 * 86_400
CONTRACT = 100                       # 1e-2 contracts
E6_PER_DOLLAR = 1_000_000


@dataclass(slots=True)
class _Order:
    ticker: str
    side: str
    price: int
    remaining: int
    maker_filled: int = 0


@dataclass(slots=True)
class _Market:
    best_bid: int | None = None
    best_ask: int | None = None
    last_ns: int = 0
    keys: set[str] = field(default_factory=set)


@dataclass(slots=True, frozen=True)
class MakerMetrics:
    """A snapshot of :class:`MakerStats`. Contracts and dollars as floats for the summary and view."""

    resting_orders_placed: int
    contracts_offered: float
    contract_seconds_near_best: float
    dollar_seconds_near_best: float
    contract_seconds_resting: float
    dollar_seconds_resting: float
    near: int                              # 1e-4 $: the "near the best" distance used
    spread_improvement_avg: float | None   # 1e-4 $ per quote price; None before the first sample
    spread_improvement_samples: int
    maker_contracts: float
    taker_contracts: float
    maker_fill_rate: float | None          # maker-filled / offered contracts
    maker_order_fill_rate: float | None    # resting orders with a maker fill / resting orders placed
    maker_taker_ratio: float | None        # maker / taker contracts; None without taker fills
    volume_30d_contracts: float
    volume_30d_dollars: float
    volume_30d_source: str = "this session's fills only"   # where the 30-day volume comes from

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


class MakerStats:
    """Maker metrics, updated in O(orders of one market) per event. ``near`` in 1e-4 $ (0: at the best
    only); ``volume_window_s`` is the volume window (30 days)."""

    def __init__(self, clock: Clock, *, near: int = 0, volume_window_s: float = THIRTY_DAYS_S) -> None:
        if near < 0:
            raise ValueError(f"MakerStats: near {near} must be >= 0 (1e-4 $)")
        self.clock = clock
        self.near = near
        self.window_ns = int(volume_window_s * NS_PER_S)
        self._orders: dict[str, _Order] = {}
        self._markets: dict[str, _Market] = {}
        # orders counted as placed -> whether a maker fill of theirs was counted (the newest
        # MAX_KEYS, in placing order: an order is not placed again or filled that long after)
        self._seen_keys: OrderedDict[str, bool] = OrderedDict()
        self.orders_with_maker_fill = 0
        # trade ids counted -> their exchange ms, forgotten once no resync can offer them again
        self._trades: OrderedDict[str, int] = OrderedDict()
        self._volume: deque[tuple[int, int, int]] = deque()     # (exchange ns, count, notional 1e-6 $)
        self._vol_count = 0
        self._vol_notional_e6 = 0
        self.placed = 0
        self.offered = 0                    # 1e-2 contracts
        # integrals: (1e-2 contracts x ns) and (1e-6 $ x ns)
        self.cs_near = 0
        self.ds_near = 0
        self.cs_all = 0
        self.ds_all = 0
        self.improvement_sum = 0            # 1e-4 $
        self.improvement_n = 0
        self.maker_count = 0                # 1e-2 contracts
        self.taker_count = 0
        self.volume_source = "this session's fills only"

    # ------------------------------------------------------------------ accrual
    def _market(self, ticker: str) -> _Market:
        m = self._markets.get(ticker)
        if m is None:
            m = self._markets[ticker] = _Market(last_ns=self.clock.monotonic_ns())
        return m

    def _near_best(self, m: _Market, o: _Order) -> bool:
        if o.side == "bid":
            return m.best_bid is not None and m.best_bid - o.price <= self.near
        return m.best_ask is not None and o.price - m.best_ask <= self.near

    def _accrue(self, ticker: str) -> _Market:
        m = self._market(ticker)
        now = self.clock.monotonic_ns()
        dt = now - m.last_ns
        m.last_ns = now
        if dt <= 0:
            return m
        for key in m.keys:
            o = self._orders[key]
            notional = o.remaining * (o.price if o.side == "bid" else ONE_DOLLAR - o.price)
            self.cs_all += o.remaining * dt
            self.ds_all += notional * dt
            if self._near_best(m, o):
                self.cs_near += o.remaining * dt
                self.ds_near += notional * dt
        return m

    # ------------------------------------------------------------------ events
    def on_top(self, ticker: str, best_bid: int | None, best_ask: int | None) -> None:
        """The best YES bid and ask of ``ticker`` (1e-4 $; None or 0 for an empty side)."""
        m = self._accrue(ticker)
        m.best_bid = best_bid or None
        m.best_ask = best_ask or None

    def on_resting(self, key: str, ticker: str, side: str, price: int, remaining: int) -> None:
        """Order ``key`` (its client_order_id) rests with ``remaining`` at ``price``. The first call
        counts it as placed; later calls follow amends, partial fills and re-prices."""
        if side not in ("bid", "ask"):
            raise ValueError(f"MakerStats.on_resting: side {side!r} must be 'bid' or 'ask'")
        if remaining <= 0:
            self.on_done(key)
            return
        m = self._accrue(ticker)
        o = self._orders.get(key)
        new_price = o is None or o.price != price
        if o is None:
            if key not in self._seen_keys:
                self._seen_key(key)
                self.placed += 1
                self.offered += remaining
            o = self._orders[key] = _Order(ticker, side, price, remaining)
            m.keys.add(key)
        else:
            if remaining > o.remaining:           # an amend up offers more
                self.offered += remaining - o.remaining
            o.price, o.remaining = price, remaining
        if new_price:
            best = m.best_bid if side == "bid" else m.best_ask
            if best is not None:
                self.improvement_sum += max(0, price - best if side == "bid" else best - price)
                self.improvement_n += 1

    #: orders remembered as placed (see _seen_keys)
    MAX_KEYS = 200_000

    def _seen_key(self, key: str) -> None:
        """Remember ``key`` as placed; past :attr:`MAX_KEYS` the oldest one no longer resting is forgotten."""
        seen = self._seen_keys
        seen[key] = False
        for _ in range(len(seen)):           # bounded: every key looked at once at most
            if len(seen) <= self.MAX_KEYS:
                break
            old = next(iter(seen))
            if old in self._orders:          # still resting (a quote kept all along): keep it
                seen.move_to_end(old)
            else:
                del seen[old]

    def forget_trades_before(self, before_ms: int) -> int:
        """Forget the trade ids of fills older than ``before_ms`` (exchange ms) that no resync can
        offer again (kmm.engine.dedupe); returns how many."""
        return forget_before(self._trades, before_ms)

    def on_done(self, key: str) -> None:
        """Order ``key`` left the book (canceled, filled or rejected)."""
        o = self._orders.get(key)
        if o is None:
            return
        m = self._accrue(o.ticker)
        m.keys.discard(key)
        del self._orders[key]

    def on_user_order(self, uo: UserOrder) -> None:
        """An order update from the exchange (WS ``user_order``): ``resting`` with size left rests,
        anything else is done. The key is the client_order_id (the order_id when there is none)."""
        key = uo.client_order_id or uo.order_id
        if uo.status == "resting" and uo.remaining_count > 0:
            self.on_resting(key, uo.ticker, uo.side, uo.price, uo.remaining_count)
        else:
            self.on_done(key)

    def on_fill(self, fill: Fill, key: str | None = None) -> None:
        """One of our fills. ``key`` (the order's client_order_id, when known) links a maker fill to
        the order for the per-order fill rate."""
        if fill.trade_id in self._trades:
            return
        self._trades[fill.trade_id] = fill.ts_ms
        if fill.is_taker:
            self.taker_count += fill.count
        else:
            self.maker_count += fill.count
            k = key if key is not None else fill.client_order_id
            if k is not None and self._seen_keys.get(k) is False:
                self._seen_keys[k] = True
                self.orders_with_maker_fill += 1
        self._add_volume(fill)

    def _add_volume(self, fill: Fill) -> None:
        ts = fill.ts_ms * NS_PER_MS if fill.ts_ms else self.clock.time_ns()
        notional = fill.count * fill.price
        vol = self._volume
        if vol and ts < vol[-1][0]:
            # older than the newest (fills of two markets out of exchange-time order, a backfill): put it
            # in time order, found from the newest end, where it almost always belongs; re-sorting the
            # 30 days (every fill of them) cost O(n log n) on the fill's path
            i = len(vol)
            while i and vol[i - 1][0] > ts:
                i -= 1
            vol.insert(i, (ts, fill.count, notional))
        else:
            vol.append((ts, fill.count, notional))
        self._vol_count += fill.count
        self._vol_notional_e6 += notional
        self._evict()

    def load_volume(self, fills: list[Fill], source: str) -> None:
        """Seed only the 30-day volume from the exchange's fills (``GET /portfolio/fills`` since 30 days
        ago, read at start): the maker/taker counts and fill rates stay this session's. Fills seen again
        later (deduplicated by ``trade_id``) count once. ``source`` says where the figure comes from."""
        for f in sorted(fills, key=lambda f: f.ts_ms):
            if f.trade_id in self._trades:
                continue
            self._trades[f.trade_id] = f.ts_ms
            self._add_volume(f)
        self.volume_source = source

    def load_fills(self, fills: list[Fill]) -> None:
        """Seed the 30-day volume (and maker/taker counts) from ``GET /portfolio/fills`` at start."""
        for f in sorted(fills, key=lambda f: f.ts_ms):
            self.on_fill(f)

    def _evict(self) -> None:
        cutoff = self.clock.time_ns() - self.window_ns
        vol = self._volume
        while vol and vol[0][0] < cutoff:
            _, count, notional = vol.popleft()
            self._vol_count -= count
            self._vol_notional_e6 -= notional

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> MakerMetrics:
        """The metrics now (accrues every market to the clock's time)."""
        for t in list(self._markets):
            self._accrue(t)
        self._evict()
        to_cs = 1.0 / (CONTRACT * NS_PER_S)
        to_ds = 1.0 / (E6_PER_DOLLAR * NS_PER_S)
        return MakerMetrics(
            resting_orders_placed=self.placed,
            contracts_offered=self.offered / CONTRACT,
            contract_seconds_near_best=self.cs_near * to_cs,
            dollar_seconds_near_best=self.ds_near * to_ds,
            contract_seconds_resting=self.cs_all * to_cs,
            dollar_seconds_resting=self.ds_all * to_ds,
            near=self.near,
            spread_improvement_avg=(self.improvement_sum / self.improvement_n) if self.improvement_n else None,
            spread_improvement_samples=self.improvement_n,
            maker_contracts=self.maker_count / CONTRACT,
            taker_contracts=self.taker_count / CONTRACT,
            maker_fill_rate=(self.maker_count / self.offered) if self.offered else None,
            maker_order_fill_rate=(self.orders_with_maker_fill / self.placed) if self.placed else None,
            maker_taker_ratio=(self.maker_count / self.taker_count) if self.taker_count else None,
            volume_30d_contracts=self._vol_count / CONTRACT,
            volume_30d_dollars=self._vol_notional_e6 / E6_PER_DOLLAR,
            volume_30d_source=self.volume_source,
        )
