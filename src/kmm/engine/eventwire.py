"""Event risk on the live loop: the glue between :mod:`kmm.engine.events` and the maker.

At start the maker learns each quoted market's event (``GET /events/{event_ticker}``), after the
positions are loaded (so every event's session baseline is the account as found). On every place the
event gate sizes the order after the per-market gate passed it (:meth:`EventWiring.size_place`: the
largest size whose worst case, with every resting order filling, stays inside ``risk.max_event_loss``
and ``risk.max_event_exposure``); every amend is checked the same way; after a fill
:meth:`kill_signal` says whether positions alone lost past the limit (the maker trips the kill switch).
The strategy's inventory is :meth:`quote_inventory` (``strategy.event_inventory_weight``).

Kept apart from the maker so that its decision path gains one call per check, not the event logic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kmm.engine.events import ROOMS_OPEN, EventRiskGate, EventRow, EventSpec, EventStatus, amend_entries, payout
from kmm.engine.orders import TERMINAL
from kmm.engine.risk import Decision
from kmm.engine.view import EventView

#: event statuses in which every quote of the event is pulled at once (then requoted through the gate,
#: which lets only risk-lowering orders through)
PULL = (EventStatus.REDUCE_ONLY, EventStatus.OVER_LIMIT, EventStatus.KILL)

log = logging.getLogger("kmm.events")

ROOMS_OPEN_STEP = (*ROOMS_OPEN, 100)


class LiveResting:
    """:class:`kmm.engine.events.RestingView` over the order manager: every non-terminal order of a
    market (a create or cancel in flight and an unknown outcome included; an amend in flight as
    :func:`kmm.engine.events.amend_entries` bounds it: its larger size at the worse price, or both its
    old and new price and size), plus what the exchange reported filled (``user_order``) whose fill
    messages are not booked in the portfolio yet: without it, an order update arriving before its
    fill would hide that risk for a moment and let a new order past the limit. That part is counted at
    the worst price the order has held (an amended order may have filled at its old price).
    ``fee_free``: the markets whose event is charged no maker fee (:meth:`EventWiring.learn` adds
    them), where the one-entry bound of an amend is exact at any prices."""

    def __init__(self, om: Any) -> None:
        self.om = om
        self.fee_free: set[str] = set()

    def watch(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(ticker)`` whenever what may fill in ``ticker`` may have changed (None: any
        market): the event gate's kept sums recompute only those markets."""
        self.om.watchers.append(callback)

    def may_fill(self, ticker: str) -> list[tuple[str, int, int]]:
        # may_fill_from_orders over the market's non-terminal orders, inlined (every check reads it)
        out: list[tuple[str, int, int]] = []
        for o in self.om.live_index(ticker):
            if o.state in TERMINAL:
                continue
            pp, pc = o.pending_price, o.pending_count
            if pp is not None and pc is not None:
                out.extend(amend_entries(o.side, o.price, o.remaining, pp, pc - max(o.filled, o.exchange_filled),
                                         ticker in self.fee_free))
            elif o.remaining > 0:
                out.append((o.side, o.price, o.remaining))
        if self.om._unbooked or self.om._unsure:
            out.extend(self.om.unbooked_in(ticker))
        return out


class EventWiring:
    """The event gate as the maker uses it. ``cfg`` is the :class:`kmm.config.KmmConfig`."""

    def __init__(self, cfg: Any, pf: Any, om: Any) -> None:
        self.cfg = cfg
        self.pf = pf
        self.resting = LiveResting(om)
        self.gate = EventRiskGate(cfg.event_limits(), pf, self.resting)
        self.resized = 0                    # places cut to what the event limits allow
        # event -> ticker -> (result, Kalshi's payout for the position held: $1 a net contract, cents)
        self.settled: dict[str, dict[str, tuple[str, int]]] = {}
        self._weight: dict[str, float] = {}
        self._status: dict[str, EventStatus] = {}    # last status seen per event (for pulls)
        self.pulls: list[tuple[str, str]] = []       # (event, status) of every event-level pull
        #: the market gate's reduce-only reason (RiskGate.reduce_only_reason; the engine sets it): a
        #: fractional market in reduce-only may have a place cut to part of a contract (see rooms)
        self.reduce_only_of: Callable[[str], str] | None = None
        # markets whose rooms are read before their decisions, with the decisions left: the markets of
        # an event that refused or cut a place lately (rooms cost ~16 us a decision in situ, and only
        # bind where the event is at its limit)
        self._hot: dict[str, int] = {}

    # ------------------------------------------------------------------ start
    async def learn(self, rest: Any, raws: Mapping[str, Mapping[str, Any]], infos: Mapping[str, Any]) -> None:
        """Register the event of every quoted market. ``raws``: ticker -> the market's JSON (its
        ``event_ticker``); ``infos``: ticker -> :class:`kmm.engine.market.MarketInfo` (fee rates).

        An event that cannot be read is registered with the quoted markets only and as *not* mutually
        exclusive: every combination of results is then possible, the most careful worst case."""
        by_event: dict[str, list[str]] = {}
        for t, raw in raws.items():
            ev = str(raw.get("event_ticker") or "")
            if ev:
                by_event.setdefault(ev, []).append(t)
        for ev, quoted in by_event.items():
            try:
                e = await rest.get_event(ev)
                markets = tuple(m.ticker for m in e.markets)
                markets += tuple(t for t in quoted if t not in markets)
                spec = EventSpec(ev, bool(e.mutually_exclusive), markets)
            except Exception as exc:  # noqa: BLE001 - any failure: the careful fallback below
                log.warning("event %s not readable (%s); its markets %s are limited as independent "
                            "(every combination of results possible)", ev, exc, ", ".join(quoted))
                spec = EventSpec(ev, False, tuple(quoted))
            maker = max(infos[t].maker_rate_e6 for t in quoted)
            taker = max(infos[t].taker_rate_e6 for t in quoted)
            self.gate.add_event(spec, maker_fee_rate_e6=maker, taker_fee_rate_e6=taker)
            if maker == 0:     # the event's resting orders are charged no fee: an amend's bound is exact
                self.resting.fee_free.update(spec.markets)
            log.info("event %s (%s, %d markets, %d quoted): max_event_loss $%.2f", ev,
                     "mutually exclusive" if spec.mutually_exclusive else "independent", len(spec.markets),
                     len(quoted), self.gate.limits.loss_for(ev) / 1e4)
        for t in raws:
            self._weight[t] = float(self.cfg.strategy_for(t).event_inventory_weight)

    # ------------------------------------------------------------------ settlement
    def on_settled(self, ticker: str, result: str) -> None:
        """A market of an event settled (lifecycle ``settled``); call before the portfolio settles it.
        The event's outcomes narrow (a YES decides a mutually exclusive event) and the payout Kalshi's
        rule gives for the position held is kept, per event, for the log and the summary."""
        book = self.gate.event_of(ticker)
        if book is None or result not in ("yes", "no"):
            return
        paid = payout(self.pf.position(ticker), result)
        book.on_market_settled(ticker, result)
        done = self.settled.setdefault(book.ticker, {})
        done[ticker] = (result, paid)
        if len(done) == len(book.markets):
            winner = next((t for t, (r, _) in done.items() if r == "yes"), "none")
            log.info("event %s settled (%s won): payouts $%.2f over %d markets", book.ticker, winner,
                     sum(p for _, p in done.values()) / 1e4, len(done))

    # ------------------------------------------------------------------ checks
    def size_place(self, ticker: str, side: str, price: int, size: int) -> tuple[int, Decision | None]:
        """The size a place may have under the event limits (``size`` when it passes whole, less near
        a limit, 0 with the denial, counted, when no size passes)."""
        gate = self.gate
        if gate.fits_whole(ticker, side, price, size):
            return size, None                # the common case, from the kept sums in one call
        if gate.event_of(ticker) is None:
            return size, None
        step = 100 if size % 100 == 0 else 1
        n = self.gate.max_count(ticker, side, price, size, size_step=step)
        if n == size:
            return size, None
        self.heat(ticker)                   # the event binds: its markets read their rooms for a while
        if n <= 0:
            return 0, self.gate.check_place(ticker, side, price, size)
        self.resized += 1
        return n, None

    def amend_fits(self, ticker: str, side: str, price: int, size: int, old_price: int,
                   old_remaining: int) -> bool:
        """True when the amend passes the event limits for certain (the kept sums, or no event), False
        for "ask :meth:`check_amend`", which says why and counts the denial; nothing is counted here."""
        gate = self.gate
        return gate.fits_whole(ticker, side, price, size,
                               (old_price, old_remaining) if old_price is not None and old_remaining > 0
                               else None) or gate.event_of(ticker) is None

    def check_amend(self, ticker: str, side: str, price: int, size: int, old_price: int,
                    old_remaining: int) -> Decision | None:
        """None when the amend passes the event limits, else the (counted) denial."""
        gate = self.gate
        if gate.fits_whole(ticker, side, price, size,
                           (old_price, old_remaining) if old_price is not None and old_remaining > 0 else None):
            return None                      # the common case, from the kept sums in one call
        if gate.event_of(ticker) is None:
            return None
        d = gate.check_amend(ticker, side, price, size, old_price, old_remaining)
        return None if d else d

    #: decisions a market keeps reading its rooms after its event last refused or cut a place
    HOT_DECISIONS = 256

    def heat(self, ticker: str) -> None:
        """``ticker``'s event refused or cut a place: each of its markets reads its rooms before its
        next :attr:`HOT_DECISIONS` decisions (:meth:`rooms`)."""
        book = self.gate.event_of(ticker)
        for t in (book.markets if book is not None else (ticker,)):
            self._hot[t] = self.HOT_DECISIONS

    def rooms(self, ticker: str, fractional: bool = False) -> tuple[int, int, int]:
        """:meth:`rooms_now` for a market whose event refused or cut a place in its last
        :attr:`HOT_DECISIONS` decisions (:meth:`heat`), else open: the rooms only bind where an event
        is at its limit, and there the gate refuses a place first. So a market of an event at its limit
        asks the gate once, then stops asking for places that cannot pass while it reads its rooms,
        and asks once again when they lapse (one refused place per market per HOT_DECISIONS decisions
        instead of one a decision); a market of an event far from its limit pays a dict read."""
        left = self._hot.get(ticker)
        if not left:
            return ROOMS_OPEN_STEP
        if left > 1:
            self._hot[ticker] = left - 1
        else:
            del self._hot[ticker]
        return self.rooms_now(ticker, fractional)

    def rooms_now(self, ticker: str, fractional: bool = False) -> tuple[int, int, int]:
        """``(bid_room, ask_room, block_step)`` for ``Pipeline.set_rooms``, read fresh: how far a place
        on each side of ``ticker`` may lower its event's P&L and pass now (1e-6 $;
        :meth:`EventRiskGate.place_rooms`) and the least size the order path tries for a size in whole
        contracts: 100, or 1 on a ``fractional`` market the market gate holds in reduce-only
        (:attr:`reduce_only_of`), where it may cut a place to part of a contract."""
        if not self.gate.events:
            return ROOMS_OPEN_STEP
        bid, ask = self.gate.place_rooms(ticker)
        ro = self.reduce_only_of
        return bid, ask, 1 if fractional and (ro is None or ro(ticker)) else 100

    def kill_signal(self, ticker: str | None = None) -> str | None:
        """:meth:`EventRiskGate.kill_signal`: ``ticker``'s event only (after its fill), or every event."""
        return self.gate.kill_signal(ticker) if self.gate.events else None

    def quote_inventory(self, ticker: str) -> int:
        """The inventory the strategy skews on: ``(1 - w) q + w E`` (``strategy.event_inventory_weight``)."""
        w = self._weight.get(ticker, 0.0)
        if not w:
            return self.pf.position(ticker)
        return self.gate.quote_inventory(ticker, w)

    # ------------------------------------------------------------------ event-level pulls
    def to_pull(self, ticker: str | None = None) -> list[tuple[str, EventStatus, tuple[str, ...]]]:
        """Events whose status just moved into one that pulls quotes (:data:`PULL`): ``(event, status,
        markets)``. Only ``ticker``'s event (after its fill), or every event (the housekeeping tick).
        O(markets + resting orders) per event checked."""
        if not self.gate.events:
            return []
        if ticker is not None:
            book = self.gate.event_of(ticker)
            books = [book] if book is not None else []
        else:
            books = list(self.gate.events.values())
        out = []
        for book in books:
            st = self.gate.status(book.ticker)
            prev = self._status.get(book.ticker, EventStatus.OK)
            self._status[book.ticker] = st
            if st is not prev and st in PULL:
                out.append((book.ticker, st, book.markets))
                self.pulls.append((book.ticker, st.value))
                if book.markets:
                    self.heat(book.markets[0])      # its places are refused now: read the rooms
        return out

    def status_of(self, event: str) -> str:
        return self._status.get(event, EventStatus.OK).value

    @property
    def denials(self) -> dict[str, int]:
        return self.gate.denials

    def rollup(self) -> list[EventRow]:
        return self.gate.rollup() if self.gate.events else []

    def views(self, pnl_of: Callable[[str], int], quoted: Collection[str],
              incentive_of: Callable[[str], str] | None = None) -> list[EventView]:
        """The per-event roll-up for the view and the records, worst case (with resting) first:
        positions, worst-case loss, exposure and this session's P&L (``pnl_of(ticker)``, net) per
        event. O(markets + resting orders)."""
        out = []
        lim = self.gate.limits
        for row in self.rollup():
            book = self.gate.events[row.event_ticker]
            mine = [t for t in book.markets if t in quoted]
            out.append(EventView(
                row.event_ticker, row.mutually_exclusive, row.markets, len(mine),
                sum(abs(self.pf.position(t)) for t in book.markets), row.inventory, row.worst_now,
                row.worst_resting, row.max_event_loss, lim.exposure_for(row.event_ticker),
                sum(pnl_of(t) for t in mine), row.status,
                incentive_of(row.event_ticker) if incentive_of is not None else ""))
        out.sort(key=lambda v: (v.worst_resting, v.event))
        return out


async def pull_event_orders(session: Any, markets: Collection[str], reason: str, *, limit_s: float = 2.0,
                            every_s: float = 0.02) -> int:
    """Cancel every order of ours in ``markets`` (one event) that is live now, in batched cancels (one
    request per 20), and those still being created as soon as their ack gives them an id (polled every
    ``every_s`` for at most ``limit_s``). Orders placed after this call went through the event gate and
    are left alone. Returns how many cancels were sent."""
    om = session.om
    coids = {o.client_order_id for t in markets for o in om.live_in(t) if o.is_live}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    asked: set[str] = set()
    sent = 0
    while coids:
        todo = []
        waiting = False
        for t in markets:
            for o in om.live_in(t):
                if o.client_order_id not in coids or not o.is_live:
                    continue
                if o.order_id is None:
                    waiting = True               # a create in flight: cancelled once acked
                elif o.client_order_id not in asked:
                    todo.append(o)
        if todo:
            asked.update(o.client_order_id for o in todo)
            sent += len(todo)
            await session.cancel_orders(todo, reason)
        if not waiting or loop.time() >= deadline:
            break
        await asyncio.sleep(every_s)
    return sent


def merged_denials(*counts: Iterable[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c:
            out[k] = out.get(k, 0) + v
    return out
