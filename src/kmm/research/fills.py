"""The fill simulator: our virtual orders inside a recorded book (used by ``kmm backtest``; paper mode
will use the same object).

What it holds, per market:

- the replay book (a compiled ``OrderBook`` fed from the capture by the backtest driver), corrected so
  it is the book the engine would have seen had this run traded there: the recorded run's own orders
  are taken out (their deltas carry ``client_order_id``; a snapshot's share of them is subtracted), our
  virtual orders are put in at their price, and liquidity our taker orders took stays taken;
- our virtual orders, each with a queue position ``ahead`` (others' size in front of it, 1e-2
  contracts) estimated from the visible size at the price when the order arrived.

Queue rules (Kalshi's, kalshi-api.md section 4.1): a new order joins the back of its level; a decrease
(or an amend that only lowers size) keeps its place; an amend that changes the price or raises the size
goes to the back of the new level. ``ahead`` shrinks only with trades at our price (a trade eats the
front first; past the front it fills us) and with cancels, split front/behind by the
:class:`~kmm.research.queue.QueueModel`. A level that shrinks is first matched with trades at that
price seen within ``trade_window_ns`` (the trade and its book delta come on different channels and
either can come first); what no trade explains is a cancel. A trade at a price beyond ours (a seller
hitting a bid below our bid) means our level was swept: it fills us up to its size.

Orders that cross: a post-only order is cancelled (``PostOnlyCrossCancel``: an ack with nothing
filled and nothing resting); any other order walks the book best first up to its limit, each level's
size less our own orders there, pays the taker fee, and the size it took is removed from the replay
book for the rest of the replay, so the same liquidity is never filled twice. A post-only amend that
would cross is refused like the sim refuses it (``post_only_cross``; the order stays as it was).

Fees: the exact fee of each fill (``kmm._core.fees.trade_fee``: maker or taker rate of the market,
rounded up to $0.0001) charged in whole cents with the order's carry (``cent_fee``), as the exchange
reports it in ``fee_cost``.

Adverse selection (:mod:`kmm.research.adverse`): trades that filled the recorded run's own quotes
while they were stale are a reaction to those quotes; with a pick-off model they are left out of the
tape and our stale virtual orders are picked off at the rate fitted from them instead
(:meth:`FillSimulator.after_event`). Units everywhere: prices 1e-4 $ YES, sizes 1e-2 contracts, money 1e-4 $,
time ns on the replay's clock.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any

from kmm._core.fees import cent_fee, trade_fee
from kmm._core.grid import Grid
# one virtual order (order_id, side, price, remaining, queue estimate ``ahead``, pick-off hazard state, ...):
# compiled, so the compiled steps read its fields from the object (kmm._core.fillsim.SimOrder, also
# kmm._core.replay.SimOrder); FillCore: this simulator's hot steps compiled
from kmm._core.fillsim import FillCore, SimOrder
from kmm.kalshi.types import Fill, OrderAck
from kmm.research.adverse import ALL, BUCKETS, PickoffFit, PickoffModel, bucket_of
from kmm.research.queue import QueueModel

log = logging.getLogger("kmm.research.fills")

ONE = 10_000
YES, NO = 0, 1
LINEAR_CENT = ({"start": "0.0100", "end": "0.9900", "step": "0.0100"},)


@dataclass(slots=True)
class MarketDef:
    """What a replay needs to know about a market (stored beside a capture as ``markets.json``)."""

    ticker: str
    price_ranges: Any = LINEAR_CENT         # the wire form: [{start, end, step}] dollar strings
    maker_rate_e6: int = 0
    taker_rate_e6: int = 70_000
    close_time_ns: int | None = None
    fractional: bool = False
    status: str = "active"


@dataclass(slots=True)
class FillStats:
    """Counts a replay reports (and the reconciliation explains differences with)."""

    maker_fills: int = 0
    taker_fills: int = 0
    maker_contracts: int = 0
    taker_contracts: int = 0
    fills_at_level: int = 0          # from trades at our price, after the queue in front was eaten
    fills_through: int = 0           # from trades beyond our price (our level was swept)
    post_only_cancels: int = 0
    queue_cancel_advance: float = 0.0  # size the queue model moved us forward on cancels, 1e-2
    trade_advance: int = 0           # size trades moved us forward, 1e-2
    own_deltas_removed: int = 0      # recorded deltas of the recorded run's own orders left out
    taken: int = 0                   # size our taker orders removed from the book, 1e-2
    reaction_trades: int = 0         # recorded trades left out as a reaction to the recorded run's quotes
    pickoff_fills: int = 0           # fills of the pick-off model (stale virtual orders)
    pickoff_contracts: int = 0
    stale_ns: int = 0                # time our virtual orders stood stale (>= pickoff.min_cents), order-ns
    clamped: int = 0                 # corrections that would have made a level negative


@dataclass(slots=True)
class _Market:
    d: MarketDef
    book: Any = None
    grid: Any = None
    orders: dict[str, SimOrder] = field(default_factory=dict)     # resting, by order_id
    live_own: dict[tuple[int, int], int] = field(default_factory=dict)   # recorded run's resting size
    taken: dict[tuple[int, int], int] = field(default_factory=dict)      # our taker fills per level


class FillSimulator:
    """The virtual exchange of one replay. Every method takes ``now`` (ns on the replay clock) and
    ``wall_ms`` (exchange time stamps on what it reports)."""

    #: what a compiled simulator takes from :class:`kmm._core.fillsim.FillCore`: this class's method
    #: name -> the core's (the same steps; the methods here are their plain-Python reference)
    COMPILED = {"on_trade": "on_trade", "on_book_change": "on_book_change", "expire_all": "expire_all",
                "end_sweeps": "end_sweeps", "place": "place", "cancel": "cancel", "decrease": "decrease",
                "amend": "amend", "others_at": "others_at", "_maker_fill": "maker_fill", "_fill": "fill",
                "_sweep_fill": "_sweep_fill_py", "_close": "close", "_take": "take", "_rest": "rest",
                "_unrest": "unrest", "_expire": "_expire_py"}

    def __init__(self, markets: dict[str, MarketDef], queue: QueueModel | None = None, *,
                 trade_window_ns: int = 5_000_000, compiled: bool = True) -> None:
        """``compiled``: the hot steps (:attr:`COMPILED`) run on the compiled
        :class:`kmm._core.fillsim.FillCore` (bound on this object, so every caller takes them); False:
        this class's own methods, their plain-Python reference (the tests hold the two to the same
        fills, acks, orders and queue state). A subclass that overrides one of those methods keeps
        its own Python steps throughout."""
        self.markets = {t: _Market(d, grid=Grid(list(d.price_ranges))) for t, d in markets.items()}
        self.queue = queue or QueueModel()
        self.trade_window_ns = trade_window_ns
        self.stats = FillStats()
        self.orders: dict[str, SimOrder] = {}                 # every order, by order_id
        self.by_coid: dict[str, SimOrder] = {}
        self._n_orders = 0
        self._n_trades = 0
        self.corrected: set[str] = set()     # markets whose book carries taken liquidity
        self.keep_outcomes = False
        self.trade_outcomes: dict[str, tuple[str, str]] = {}
        self.pickoff: PickoffModel | None = None     # adverse selection (kmm.research.adverse)
        self.fit: PickoffFit | None = None           # a fitting pass: measure the recorded run's quotes
        self.rng = random.Random(0)                  # pick-off draws (the replay seeds it)
        self.pickoff_by_ticker: dict[str, int] = {}
        self._swept: list[SimOrder] = []             # orders with an open sweep fill
        self.compiled = compiled and all(getattr(type(self), n) is getattr(FillSimulator, n) for n in self.COMPILED)
        self._core: FillCore | None = None
        if self.compiled:
            self._core = core = FillCore(self)
            for name, cname in self.COMPILED.items():
                setattr(self, name, getattr(core, cname))

    # ------------------------------------------------------------------------------ books
    def attach_book(self, ticker: str, book: Any) -> None:
        self.markets[ticker].book = book

    def _own_at(self, m: _Market, bside: int, bprice: int) -> int:
        n = 0
        for o in m.orders.values():
            if o.bside == bside and o.bprice == bprice:
                n += o.remaining
        return n

    def _level(self, m: _Market, bside: int, bprice: int, delta: int) -> None:
        """Move a level of the replay book by ``delta``, never below zero."""
        if delta == 0:
            return
        book = m.book
        if delta < 0:
            have = book.size_at("yes" if bside == YES else "no", bprice)
            if have + delta < 0:
                self.stats.clamped += 1
                delta = -have
                if delta == 0:
                    return
        book.apply_level_delta(bside, bprice, delta)

    def others_at(self, ticker: str, side: str, price: int) -> int:
        """Visible size at a YES price on our order side, not counting our own virtual orders."""
        m = self.markets[ticker]
        bside = YES if side == "bid" else NO
        bprice = price if side == "bid" else ONE - price
        return max(0, m.book.size_at("yes" if bside == YES else "no", bprice) - self._own_at(m, bside, bprice))

    def apply_recorded_delta(self, ticker: str, bside: int, bprice: int, delta: int, own: bool) -> None:
        """A recorded delta the driver parsed itself (the recorded run's own order, or a market whose
        book carries taken liquidity)."""
        m = self.markets[ticker]
        key = (bside, bprice)
        if own:
            self.stats.own_deltas_removed += 1
            left = m.live_own.get(key, 0) + delta
            if left > 0:
                m.live_own[key] = left
            else:
                m.live_own.pop(key, None)
                if left < 0:
                    # a reduction of the recorded run's order that we never added: the level already
                    # lacks it (e.g. it was in a snapshot we corrected); nothing to apply
                    pass
            return
        taken = m.taken.get(key, 0)
        if taken and delta < 0:
            # the recorded level shrinks: what we took is the first to go (it was at the front)
            book_size = m.book.size_at("yes" if bside == YES else "no", bprice) - self._own_at(m, bside, bprice)
            recorded_before = book_size + taken
            recorded_after = max(0, recorded_before + delta)
            new_taken = min(taken, recorded_after)
            self._level(m, bside, bprice, (recorded_after - new_taken) - book_size)
            if new_taken:
                m.taken[key] = new_taken
            else:
                del m.taken[key]
                if not m.taken:
                    self.corrected.discard(ticker)
        else:
            self._level(m, bside, bprice, delta)

    def on_snapshot(self, ticker: str) -> None:
        """The router replaced the book from a recorded snapshot: take the recorded run's resting orders
        and the liquidity we took back out, and put our virtual orders back in."""
        m = self.markets[ticker]
        book = m.book
        for (bside, bprice), size in list(m.live_own.items()):
            have = book.size_at("yes" if bside == YES else "no", bprice)
            if have < size:
                # the snapshot shows less than we thought rests there: believe the snapshot
                m.live_own[(bside, bprice)] = have
            if have:
                book.apply_level_delta(bside, bprice, -min(have, size))
        for (bside, bprice), size in list(m.taken.items()):
            have = book.size_at("yes" if bside == YES else "no", bprice)
            cut = min(have, size)
            if cut:
                book.apply_level_delta(bside, bprice, -cut)
            if cut < size:
                if cut:
                    m.taken[(bside, bprice)] = cut
                else:
                    del m.taken[(bside, bprice)]
        if not m.taken:
            self.corrected.discard(ticker)
        for o in m.orders.values():
            book.apply_level_delta(o.bside, o.bprice, o.remaining)
            o.seen = self.others_at(ticker, o.side, o.price)
            o.ahead = min(o.ahead, float(o.seen))

    # ------------------------------------------------------------------------------ queue upkeep
    #: tests: a delta at a level without an order of ours checks that every order's visible size is unchanged
    check_levels = False

    def on_book_change(self, now: int, ticker: str, level: int = -1) -> None:
        """After a recorded delta in ``ticker``: see what happened at each of our levels. ``level``
        (``side << 16 | price``, -1 unknown): the level the delta moved; when no order of ours rests
        there, the visible size at each of ours is what it was (every other change to those levels
        comes with its own upkeep: placing, cancelling, filling, snapshots), so only the time-driven
        part runs: unexplained decreases past the trade window become cancels, and the front is
        capped as below."""
        m = self.markets[ticker]
        orders = m.orders
        if not orders:
            return
        size_at = m.book.size_at
        if level >= 0:
            bside, bprice = level >> 16, level & 0xFFFF
            for o in orders.values():
                if o.bprice == bprice and o.bside == bside:
                    break
            else:
                for o in list(orders.values()):
                    if self.check_levels:
                        own = sum(q.remaining for q in orders.values() if q.bside == o.bside and q.bprice == o.bprice)
                        vis = max(0, size_at("yes" if o.bside == YES else "no", o.bprice) - own)
                        assert vis == o.seen, (ticker, level, o.order_id, vis, o.seen)
                    if o.pend:
                        self._expire(o, now)
                    cap = o.seen + sum(p[1] for p in o.pend) if o.pend else o.seen
                    if o.ahead > cap:
                        o.ahead = float(cap)
                return
        for o in list(orders.values()):
            # others_at, inline: the visible size at our level less our own orders there
            bside, bprice = o.bside, o.bprice
            own = 0
            for q in orders.values():
                if q.bside == bside and q.bprice == bprice:
                    own += q.remaining
            vis = max(0, size_at("yes" if bside == YES else "no", bprice) - own)
            if vis < o.seen:
                d = o.seen - vis
                while d and o.credit:
                    c = o.credit[0]
                    if now - c[0] > self.trade_window_ns:
                        o.credit.pop(0)
                        continue
                    used = min(d, c[1])
                    c[1] -= used
                    d -= used
                    if c[1] == 0:
                        o.credit.pop(0)
                if d:
                    o.pend.append([now, d])
            o.seen = vis
            if o.pend:
                self._expire(o, now)
            # nobody can be in front who is not visible, except what left and is not yet explained
            cap = vis + sum(p[1] for p in o.pend) if o.pend else vis
            if o.ahead > cap:
                o.ahead = float(cap)

    def _expire(self, o: SimOrder, now: int) -> None:
        """Level decreases no trade explained within the window are cancels: the queue model splits them."""
        window = self.trade_window_ns
        pend = o.pend
        while pend and now - pend[0][0] > window:
            _, d = pend.pop(0)
            others_before = o.seen + d + sum(p[1] for p in pend)
            behind = max(0.0, others_before - o.ahead)
            before = o.ahead
            o.ahead = min(self.queue.after_cancel(o.ahead, behind, d), float(o.seen + sum(p[1] for p in pend)))
            self.stats.queue_cancel_advance += before - o.ahead

    def expire_all(self, now: int) -> None:
        for m in self.markets.values():
            for o in m.orders.values():
                if o.pend:
                    self._expire(o, now)
                if o.credit:
                    o.credit = [c for c in o.credit if now - c[0] <= self.trade_window_ns]

    def on_trade(self, now: int, wall_ms: int, ticker: str, price: int, count: int, taker_side: str,
                 trade_id: str = "") -> list[Fill]:
        """A recorded public trade: advance the queue of our orders it reaches, fill those it passes.
        With ``trade_id``, what the trade did to us is kept in ``trade_outcomes`` (``filled``, ``queue``:
        an order of ours was at the price but others in front took it all, or ``none``)."""
        m = self.markets.get(ticker)
        maker_side = "ask" if taker_side == "bid" else "bid"
        if m is not None and self.fit is not None and trade_id:
            self._fit_trade(m, ticker, maker_side, price, count, trade_id)
        po = self.pickoff
        if m is not None and po is not None and po.active and trade_id in po.reaction_ids:
            # it traded with the recorded run's stale quote because that quote was there: left out,
            # the pick-off hazard stands for it (kmm.research.adverse)
            self.stats.reaction_trades += 1
            if self.keep_outcomes:
                self.trade_outcomes[trade_id] = (ticker, "reaction")
            return []
        if m is None or not m.orders:
            if trade_id and self.keep_outcomes:
                self.trade_outcomes[trade_id] = (ticker, "none")
            return []
        outcome = "none"
        fills: list[Fill] = []
        # our orders on the maker side, best price first for the taker (a stable sort: ties keep their
        # order); one order changes nothing of another's while the loop runs
        mine = [o for o in m.orders.values() if o.side == maker_side and o.remaining > 0]
        if len(mine) > 1:
            mine.sort(key=lambda o: (o.price if maker_side == "ask" else -o.price))
        for o in mine:
            if o.pend:
                self._expire(o, now)
            at_level = o.price == price
            through = price > o.price if maker_side == "ask" else price < o.price
            if not at_level and not through:
                continue
            if through:
                q = min(o.remaining, count)
                o.ahead = 0.0
                if q > 0:
                    self.stats.fills_through += 1
                    fills.append(self._sweep_fill(o, q, now, wall_ms, taker_side))
                    outcome = "filled"
                continue
            # at our price: the trade ate the front of the queue first
            explained = 0
            while o.pend and explained < count:
                p = o.pend[0]
                used = min(count - explained, p[1])
                p[1] -= used
                explained += used
                if p[1] == 0:
                    o.pend.pop(0)
            if count > explained:
                o.credit.append([now, count - explained])
            before = o.ahead
            o.ahead = before - count
            self.stats.trade_advance += int(min(before, count))
            if o.ahead < 0:
                # the estimate is fractional; what stood in front is whole contracts (or 0.01 on a
                # fractional market): round the front up, never in our favour
                step = 1 if m.d.fractional else 100
                front = -(-int(math.ceil(before)) // step) * step
                q = min(o.remaining, max(0, count - front))
                o.ahead = 0.0
                if q > 0:
                    self.stats.fills_at_level += 1
                    fills.append(self._sweep_fill(o, q, now, wall_ms, taker_side))
                    outcome = "filled"
                elif outcome == "none":
                    outcome = "queue"
            elif outcome == "none":
                outcome = "queue"
        if trade_id and self.keep_outcomes:
            self.trade_outcomes[trade_id] = (ticker, outcome)
        return fills

    def _sweep_fill(self, o: SimOrder, q: int, now: int, wall_ms: int, taker_side: str) -> Fill:
        """A fill from a recorded trade. One taker order that sweeps several price levels prints one
        trade per maker order it met; had our order stood in front of them, the taker would have met
        it once, for the sum. So prints of the same taker side and exchange millisecond that reach the
        same order of ours (while :meth:`end_sweeps` has not been called) make one fill: the fill is
        returned again, grown, under the same trade_id, with its fee computed on the whole."""
        sw = o.sweep
        if sw is None or sw[0] != taker_side or sw[1] != wall_ms:
            carry0, fees0 = o.carry, o.fees
            f = self._maker_fill(o, q, now, wall_ms)
            o.sweep = (taker_side, wall_ms, f, carry0, fees0)
            self._swept.append(o)
            return f
        _, _, f0, carry0, fees0 = sw
        m = self.markets[o.ticker]
        total = f0.count + q
        charged, o.carry = cent_fee(trade_fee(total, o.price, m.d.maker_rate_e6), carry0)
        o.fees = fees0 + charged
        o.remaining -= q
        o.filled += q
        o.updated_ms = wall_ms
        self._level(m, o.bside, o.bprice, -q)
        self.stats.maker_contracts += q
        f = _new_fill(f0.trade_id, o.order_id, o.coid, o.ticker, o.side, o.price, total, charged, False, None, wall_ms,
                      f0.recv_ns, None)
        o.sweep = (taker_side, wall_ms, f, carry0, fees0)
        if o.remaining == 0:
            self._close(o, "executed", wall_ms)
        return f

    def end_sweeps(self) -> None:
        """The fills handed out so far are final: later prints start new fills."""
        for o in self._swept:
            o.sweep = None
        self._swept.clear()

    def _maker_fill(self, o: SimOrder, q: int, now: int, wall_ms: int) -> Fill:
        m = self.markets[o.ticker]
        f = self._fill(o, q, o.price, m.d.maker_rate_e6, False, now, wall_ms)
        self._level(m, o.bside, o.bprice, -q)
        self.stats.maker_fills += 1
        self.stats.maker_contracts += q
        if o.remaining == 0:
            self._close(o, "executed", wall_ms)
        return f

    def _fill(self, o: SimOrder, q: int, price: int, rate_e6: int, taker: bool, now: int, wall_ms: int) -> Fill:
        fee = trade_fee(q, price, rate_e6)
        charged, o.carry = cent_fee(fee, o.carry)
        o.fees += charged
        o.remaining -= q
        o.filled += q
        o.updated_ms = wall_ms
        self._n_trades += 1
        return _new_fill(f"bt-t{self._n_trades}", o.order_id, o.coid, o.ticker, o.side, price, q, charged, taker,
                         None, wall_ms, now, None)

    def _close(self, o: SimOrder, status: str, wall_ms: int) -> None:
        o.status = status
        o.updated_ms = wall_ms
        m = self.markets[o.ticker]
        m.orders.pop(o.order_id, None)
        o.pend.clear()
        o.credit.clear()

    # ------------------------------------------------------------------------------ adverse selection
    def others_mid(self, ticker: str) -> float | None:
        """Mid (YES, 1e-4 $) of the replay book without our virtual orders; None when a side is empty."""
        return self._others_mid(self.markets[ticker])

    def _others_mid(self, m: _Market) -> float | None:
        book = m.book
        orders = m.orders
        bid = book.best_bid()
        ask = book.best_ask()
        if not orders:
            return None if bid is None or ask is None else (bid + ask) / 2
        # our resting size at the best levels (what _own_at sums there); deeper only when a best level
        # is all ours
        own_bid = own_ask = 0
        nask = ONE - ask if ask is not None else -1
        for o in orders.values():
            if o.bside == YES:
                if o.bprice == bid:
                    own_bid += o.remaining
            elif o.bprice == nask:
                own_ask += o.remaining
        if bid is not None and book.best_bid_size() <= own_bid:
            bid = None                      # the best level is all ours: look deeper
            for p, sz in book.bids(8):
                if sz - self._own_at(m, YES, p) > 0:
                    bid = p
                    break
        if ask is not None and book.best_ask_size() <= own_ask:
            ask = None
            for p, sz in book.asks(8):
                if sz - self._own_at(m, NO, ONE - p) > 0:
                    ask = p
                    break
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    @staticmethod
    def staleness(side: str, price: int, mid: float) -> float:
        """Cents our ``side`` order at ``price`` stands beyond ``mid`` toward the losing side."""
        return ((price - mid) if side == "bid" else (mid - price)) / 100

    def _fit_trade(self, m: _Market, ticker: str, maker_side: str, price: int, count: int, trade_id: str) -> None:
        key = (YES, price) if maker_side == "bid" else (NO, ONE - price)
        if not m.live_own.get(key):
            return
        mid = self.others_mid(ticker)
        if mid is None:
            return
        assert self.fit is not None
        b = bucket_of(self.staleness(maker_side, price, mid), self.fit.min_cents)
        if b >= 0:
            self.fit.candidates.append((trade_id, ticker, b, count))

    def after_event(self, now: int, wall_ms: int, ticker: str) -> list[Fill]:
        """After a book message or trade of ``ticker``: measure the recorded run's quotes (a fitting
        pass) and run the pick-off hazard of our stale virtual orders. Returns pick-off fills."""
        m = self.markets.get(ticker)
        if m is None or m.book is None:
            return []
        fit = self.fit
        if fit is not None:
            if m.live_own:
                mid = self.others_mid(ticker)
                bid = nob = 0
                for bs, bp in m.live_own:
                    if bs == YES:
                        if bp > bid:
                            bid = bp
                    elif bp > nob:
                        nob = bp
                for side, px, name in ((0, bid, "bid"), (1, ONE - nob if nob else 0, "ask")):
                    b = -1
                    if mid is not None and 0 < px < ONE:
                        b = bucket_of(self.staleness(name, px, mid), fit.min_cents)
                    fit.expose(ticker, side, b, now)
            elif fit.state.get((ticker, 0), (-1,))[0] >= 0 or fit.state.get((ticker, 1), (-1,))[0] >= 0:
                fit.expose(ticker, 0, -1, now)
                fit.expose(ticker, 1, -1, now)
        po = self.pickoff
        if po is None or not po.active or not m.orders:
            return []
        mid = self._others_mid(m)
        fills: list[Fill] = []
        rng = self.rng
        stats = self.stats
        always = po.kind == "always"
        min_cents = po.min_cents
        rates = po.rates.get(ticker) or po.rates.get(ALL)     # PickoffModel.rate's table, once
        for o in list(m.orders.values()):
            if o.hz_t < 0:
                o.hz_t = now
                o.hz_need = rng.expovariate(1.0)
            elif now > o.hz_t:
                o.hz_acc += o.hz_rate * (now - o.hz_t)
                if o.hz_rate > 0 or always:
                    stats.stale_ns += now - o.hz_t
                o.hz_t = now
            # bucket_of(staleness(...)), inline: the same arithmetic
            if mid is None:
                b = -1
            else:
                d = ((o.price - mid) if o.side == "bid" else (mid - o.price)) / 100
                b = -1 if d < min_cents else min(int((d - min_cents) * 2 + 1e-9), BUCKETS - 1)
            if always:
                fire, size = b >= 0, o.remaining
            else:
                # checked at the market's recorded messages (tens of ms apart on a busy run, farther on
                # a loaded one) with the rate of the interval just ended; only a stale interval fires
                fire = o.hz_acc >= o.hz_need and o.hz_rate > 0
                if fire:
                    pool = po.size_pool(ticker)
                    size = pool[rng.randrange(len(pool))]
                else:
                    size = 0
            if fire and o.remaining > 0:
                # the hazard accrued past the draw carries over to the next draw. Reset to 0, it was lost:
                # one fire at most per check fires 1 - exp(-r dt) per check, under the fitted r per
                # second by ~15 % on a loaded run's 44 ms between checks (docs/research.md, "Loaded
                # runs, second look"); carried, the fires per second are the fitted rate
                o.hz_acc = 0.0 if always else o.hz_acc - o.hz_need
                o.hz_need = rng.expovariate(1.0)
                q = min(o.remaining, size)
                stats.pickoff_fills += 1
                self.pickoff_by_ticker[ticker] = self.pickoff_by_ticker.get(ticker, 0) + 1
                stats.pickoff_contracts += q
                fills.append(self._maker_fill(o, q, now, wall_ms))
                if o.remaining <= 0:
                    continue
            o.hz_rate = ((rates[b] if rates else 0.0) if b >= 0 else 0.0) / 1e9     # po.rate(ticker, b) / 1e9
        return fills

    # ------------------------------------------------------------------------------ order entry
    def _crosses(self, m: _Market, side: str, price: int) -> bool:
        if side == "bid":
            for p, s in m.book.asks(8):
                if p > price:
                    return False
                if s - self._own_at(m, NO, ONE - p) > 0:
                    return True
            return False
        for p, s in m.book.bids(8):
            if p < price:
                return False
            if s - self._own_at(m, YES, p) > 0:
                return True
        return False

    def _take(self, o: SimOrder, now: int, wall_ms: int) -> list[Fill]:
        """Walk the opposite side best first up to the order's price; the size taken stays taken."""
        m = self.markets[o.ticker]
        fills: list[Fill] = []
        levels = m.book.asks() if o.side == "bid" else m.book.bids()
        for p, size in levels:
            if o.remaining <= 0:
                break
            if (o.side == "bid" and p > o.price) or (o.side == "ask" and p < o.price):
                break
            bside, bprice = (NO, ONE - p) if o.side == "bid" else (YES, p)
            avail = size - self._own_at(m, bside, bprice)
            if avail <= 0:
                continue      # our own resting order: never trade with ourselves
            q = min(avail, o.remaining)
            fills.append(self._fill(o, q, p, m.d.taker_rate_e6, True, now, wall_ms))
            self._level(m, bside, bprice, -q)
            m.taken[(bside, bprice)] = m.taken.get((bside, bprice), 0) + q
            self.corrected.add(o.ticker)
            self.stats.taker_fills += 1
            self.stats.taker_contracts += q
            self.stats.taken += q
        return fills

    def _rest(self, o: SimOrder) -> None:
        m = self.markets[o.ticker]
        o.seen = self.others_at(o.ticker, o.side, o.price)
        o.ahead = float(o.seen)             # the back of the queue: everyone visible is in front
        o.pend.clear()
        o.credit.clear()
        m.orders[o.order_id] = o
        m.book.apply_level_delta(o.bside, o.bprice, o.remaining)

    def _unrest(self, o: SimOrder) -> None:
        o.sweep = None
        m = self.markets[o.ticker]
        if m.orders.pop(o.order_id, None) is not None and o.remaining:
            self._level(m, o.bside, o.bprice, -o.remaining)

    def place(self, now: int, wall_ms: int, ticker: str, side: str, price: int, count: int, coid: str,
              *, post_only: bool = True) -> tuple[OrderAck, SimOrder, list[Fill]]:
        """A create arrives at the exchange now. Returns the ack, the order and any taker fills."""
        m = self.markets[ticker]
        self._n_orders += 1
        o = SimOrder(f"bt-{self._n_orders}", coid, ticker, side, price, count, post_only, wall_ms)
        self.orders[o.order_id] = o
        self.by_coid[coid] = o
        fills: list[Fill] = []
        if self._crosses(m, side, price):
            if post_only:
                self.stats.post_only_cancels += 1
                o.remaining = 0
                o.status = "canceled"
                return _new_ack(o.order_id, coid, 0, 0, wall_ms), o, fills
            fills = self._take(o, now, wall_ms)
        if o.remaining > 0:
            self._rest(o)
        else:
            o.status = "executed"
        return _new_ack(o.order_id, coid, o.filled, o.remaining, wall_ms), o, fills

    def cancel(self, now: int, wall_ms: int, order_id: str) -> int | None:
        """Returns the size removed, or None when the order is not resting (already filled/cancelled)."""
        o = self.orders.get(order_id)
        if o is None or o.status != "resting":
            return None
        reduced = o.remaining
        self._unrest(o)
        o.remaining = 0
        self._close(o, "canceled", wall_ms)
        return reduced

    def decrease(self, now: int, wall_ms: int, order_id: str, reduce_to: int) -> SimOrder | None:
        """Shrink in place: the queue position is kept. None when the order is not resting."""
        o = self.orders.get(order_id)
        if o is None or o.status != "resting":
            return None
        if reduce_to <= 0:
            self.cancel(now, wall_ms, order_id)
            return o
        by = o.remaining - reduce_to
        if by > 0:
            self._level(self.markets[o.ticker], o.bside, o.bprice, -by)
            o.remaining = reduce_to
            o.initial = o.filled + reduce_to
            o.updated_ms = wall_ms
        return o

    def amend(self, now: int, wall_ms: int, order_id: str, price: int, remaining: int
              ) -> tuple[SimOrder | None, str | None, list[Fill]]:
        """Amend to ``price`` with ``remaining`` left. Returns (order, refusal code, fills). A pure size
        decrease keeps the queue position; a price change or a larger size goes to the back."""
        o = self.orders.get(order_id)
        if o is None or o.status != "resting":
            return None, "order_not_found", []
        if price == o.price and remaining <= o.remaining:
            self.decrease(now, wall_ms, order_id, remaining)
            return o, None, []
        m = self.markets[o.ticker]
        if price != o.price and o.post_only and self._crosses(m, o.side, price):
            return o, "post_only_cross", []      # refused: the order stays as it was, queue and all
        self._unrest(o)
        if price != o.price and o.hz_t >= 0:
            # the pick-off hazard of the old price ends here: accrued to now at its rate, and no rate
            # until the next check reads the new price's staleness (a draw carried past a pick-off must
            # not fire on the amended quote at the old quote's rate)
            if now > o.hz_t:
                o.hz_acc += o.hz_rate * (now - o.hz_t)
                if o.hz_rate > 0:
                    self.stats.stale_ns += now - o.hz_t
                o.hz_t = now
            o.hz_rate = 0.0
        o.price = price
        o.bprice = price if o.side == "bid" else ONE - price
        o.remaining = remaining
        o.initial = o.filled + remaining
        o.updated_ms = wall_ms
        fills: list[Fill] = []
        if not o.post_only and self._crosses(m, o.side, price):
            fills = self._take(o, now, wall_ms)
        if o.remaining > 0:
            self._rest(o)
        else:
            self._close(o, "executed", wall_ms)
        return o, None, fills

    def resting(self, ticker: str | None = None) -> list[SimOrder]:
        if ticker is not None:
            return list(self.markets[ticker].orders.values())
        return [o for m in self.markets.values() for o in m.orders.values()]


# Fill(...) with every field given in order, without the frozen dataclass's __init__ (one
# object.__setattr__ call per field, about 1.8 us; this is about 0.8 us): the simulator makes a Fill for
# every fill and every print that grows a sweep's fill. The same object: tests/research/test_replay_speed.py
# holds it equal to Fill(...) field by field.
_FILL_SETS = tuple(getattr(Fill, f.name).__set__ for f in dataclasses.fields(Fill))
if tuple(f.name for f in dataclasses.fields(Fill)) != (
        "trade_id", "order_id", "client_order_id", "ticker", "side", "price", "count", "fee", "is_taker",
        "post_position", "ts_ms", "recv_ns", "exchange_index"):
    raise ImportError("kmm.kalshi.types.Fill's fields changed: update kmm.research.fills._new_fill")


def _new_fill(trade_id: str, order_id: str, client_order_id: str | None, ticker: str, side: str, price: int,
              count: int, fee: int, is_taker: bool, post_position: int | None, ts_ms: int, recv_ns: int,
              exchange_index: int | None, _s: tuple[Any, ...] = _FILL_SETS, _new: Any = object.__new__) -> Fill:
    f = _new(Fill)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = _s
    s0(f, trade_id)
    s1(f, order_id)
    s2(f, client_order_id)
    s3(f, ticker)
    s4(f, side)
    s5(f, price)
    s6(f, count)
    s7(f, fee)
    s8(f, is_taker)
    s9(f, post_position)
    s10(f, ts_ms)
    s11(f, recv_ns)
    s12(f, exchange_index)
    return f


# OrderAck(order_id, client_order_id, fill_count, remaining_count, ts_ms=...) the same way (the
# simulator answers every create and the replay every amend with one; the frozen dataclass's __init__
# was ~1 % of a replay): the optional fields take their defaults. tests/research/test_replay_speed.py
# holds it equal to OrderAck(...).
_ACK_SETS = tuple(getattr(OrderAck, f.name).__set__ for f in dataclasses.fields(OrderAck))
if tuple((f.name, f.default) for f in dataclasses.fields(OrderAck)) != (
        ("order_id", dataclasses.MISSING), ("client_order_id", dataclasses.MISSING),
        ("fill_count", dataclasses.MISSING), ("remaining_count", dataclasses.MISSING),
        ("average_fill_price", None), ("average_fee_paid", None), ("ts_ms", 0), ("mismatch", False),
        ("post_only_cross", False)):
    raise ImportError("kmm.kalshi.types.OrderAck's fields changed: update kmm.research.fills._new_ack")


def _new_ack(order_id: str, client_order_id: str | None, fill_count: int, remaining_count: int, ts_ms: int,
             _s: tuple[Any, ...] = _ACK_SETS, _new: Any = object.__new__) -> OrderAck:
    a = _new(OrderAck)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _s
    s0(a, order_id)
    s1(a, client_order_id)
    s2(a, fill_count)
    s3(a, remaining_count)
    s4(a, None)
    s5(a, None)
    s6(a, ts_ms)
    s7(a, False)
    s8(a, False)
    return a
