"""An event's numbers kept between checks, so that an event check costs O(markets touched), not
O(markets in the event + their resting orders).

Every event check needs, per market ``i`` of the event, the P&L of the positions if ``i`` settles YES /
NO (``py``, ``pn``), the same with the resting orders that hurt there (``ry``, ``rn``), the position
and the resting size per side; and, over the event, a few aggregates of them. :class:`EventSums` keeps
the per-market numbers and these aggregates:

* ``sum_pn``, ``sum_rn``: the sum over every market of ``pn`` / ``rn`` (the outcome "none wins");
* ``e_open``, ``bids_open``, ``asks_open``: position and resting size summed over unsettled markets;
* mutually exclusive: the minimum over the markets not settled NO of ``py - pn`` and of ``ry - rn``
  (the outcome "j wins" is ``sum_rn - rn_j + ry_j``), in two heaps with lazy deletion; the minimum
  without one market (the outcomes an order in market k can lower when k settles NO) is the heap's
  top, or the next entry when the top is k;
* otherwise (independent markets): the sum of each market's worse side, with and without resting.

A market's numbers are recomputed only when the order manager or the portfolio says that market
changed (their ``watchers``: every order transition, count, price and amend/decrease in flight, every
fill, loaded position and settlement), on the next check; the aggregates then move by the difference.
The session baseline and the settled results change rarely and rebuild everything. All sums are
Python integers of the same terms the full recomputation adds, so they are exact, not approximate:
tests/engine/test_event_sums.py feeds random streams of orders, fills, positions and settlements to
both and compares every verdict, size, worst case and status after each step.

A mutually exclusive event with a market settled YES is decided; its checks go back to the full
gather (kmm._core.eventgate.Verdicts), as do gates whose ledger or resting view cannot report changes.
"""

from __future__ import annotations

import heapq
from typing import Any

from kmm._core.eventgate import resting_sums
from kmm._core.fees import trade_fee

ONE_DOLLAR = 10_000
E6_PER_E4 = 100


class EventSums:
    """One event's per-market numbers and aggregates (see the module doc). ``book`` is the
    :class:`kmm.engine.events.EventBook`; :meth:`refresh` brings it up to date before a read."""

    __slots__ = ("book", "idx", "dirty", "rev", "pos", "py", "pn", "ry", "rn", "bids", "asks", "ver",
                 "hp", "hr", "sum_pn", "sum_rn", "sum_cp", "sum_cr", "e_open", "bids_open", "asks_open",
                 "n_alive", "decided", "me", "none_incl", "yes_set", "yes_list", "changes")

    #: the heaps are rebuilt from the markets' numbers once they hold more than this many entries per
    #: market plus the slack (stale entries pile up between rebuilds); the tests set both low
    COMPACT_FACTOR = 4
    COMPACT_SLACK = 64

    def __init__(self, book: Any) -> None:
        self.book = book
        self.idx = {t: i for i, t in enumerate(book.spec.markets)}
        self.rev = -1                        # the book's rev last built from; -1: build on first read
        self.dirty: set[str] = set()
        self.me = bool(book.spec.mutually_exclusive)
        self.changes = 0                     # bumped whenever the numbers may have moved (readers' caches)

    # ------------------------------------------------------------------ upkeep
    def touch(self, ticker: str | None) -> None:
        if ticker is None:
            self.rev = -1
        else:
            self.dirty.add(ticker)

    def _rebuild(self) -> None:
        book = self.book
        n = len(book.spec.markets)
        self.pos = [0] * n
        self.py = [0] * n
        self.pn = [0] * n
        self.ry = [0] * n
        self.rn = [0] * n
        self.bids = [0] * n
        self.asks = [0] * n
        self.ver = [0] * n
        self.hp: list[tuple[int, int, int]] = []
        self.hr: list[tuple[int, int, int]] = []
        self.sum_pn = self.sum_rn = self.sum_cp = self.sum_cr = 0
        self.e_open = self.bids_open = self.asks_open = 0
        self.yes_set: set[int] = set()       # independent markets whose worse side is YES
        self.yes_list: list[str] | None = None   # their tickers in event order, built on demand
        results = book.results
        self.decided = self.me and any(r == "yes" for r in results.values())
        self.n_alive = sum(1 for t in book.spec.markets if results.get(t) != "no")
        self.none_incl = (not self.me) or book.spec.none_possible or self.n_alive == 0
        self.dirty = set(book.spec.markets)
        self.rev = book.rev
        self._apply_dirty()

    def refresh(self) -> bool:
        """Bring every changed market up to date. False when the event is decided (use the full path)."""
        if self.rev != self.book.rev:
            self._rebuild()
        elif self.dirty:
            self._apply_dirty()
        return not self.decided

    def _apply_dirty(self) -> None:
        self.changes += 1
        book = self.book
        led = book.ledger
        resting = book.resting
        rate = book.maker_fee_rate_e6
        baseline = book.baseline
        results = book.results
        leg_of = getattr(led, "event_leg", None)
        idx = self.idx
        for t in list(self.dirty):
            i = idx.get(t)
            if i is None:                    # a market of no interest here
                self.dirty.discard(t)
                continue
            if leg_of is not None:
                q, held = leg_of(t)
                base = (held - baseline.get(t, 0)) * E6_PER_E4
            else:
                q = led.position(t)
                base = (led.realized_pnl(t) - led.fees_paid(t) - baseline.get(t, 0)
                        - led.position_cost(t)) * E6_PER_E4
            py = base + (q * ONE_DOLLAR if q > 0 else 0)
            pn = base + (-q * ONE_DOLLAR if q < 0 else 0)
            if resting is not None:
                ya, na, b, a = resting_sums(resting.may_fill(t), rate)   # may raise: t stays dirty
            else:
                ya = na = b = a = 0
            ry, rn = py + ya, pn + na
            r = results.get(t)
            self.sum_pn += pn - self.pn[i]
            self.sum_rn += rn - self.rn[i]
            if r is None:
                self.e_open += q - self.pos[i]
                self.bids_open += b - self.bids[i]
                self.asks_open += a - self.asks[i]
            if self.me:
                v = self.ver[i] = self.ver[i] + 1
                if r != "no":
                    heapq.heappush(self.hp, (py - pn, i, v))
                    heapq.heappush(self.hr, (ry - rn, i, v))
            else:
                self.sum_cp += _side(r, py, pn) - _side(r, self.py[i], self.pn[i])
                self.sum_cr += _side(r, ry, rn) - _side(r, self.ry[i], self.rn[i])
                if (r == "yes" or (r is None and ry < rn)) != (i in self.yes_set):
                    self.yes_set ^= {i}
                    self.yes_list = None
            self.pos[i], self.py[i], self.pn[i], self.ry[i], self.rn[i] = q, py, pn, ry, rn
            self.bids[i], self.asks[i] = b, a
            self.dirty.discard(t)
            # compact only once market i's numbers are stored: _compact rebuilds from them
            if self.me and len(self.hr) > self.COMPACT_FACTOR * len(self.ver) + self.COMPACT_SLACK:
                self._compact()

    def _compact(self) -> None:
        results, tickers, ver = self.book.results, self.book.spec.markets, self.ver
        alive = [i for i in range(len(ver)) if results.get(tickers[i]) != "no"]
        self.hp = [(self.py[i] - self.pn[i], i, ver[i]) for i in alive]
        self.hr = [(self.ry[i] - self.rn[i], i, ver[i]) for i in alive]
        heapq.heapify(self.hp)
        heapq.heapify(self.hr)

    def _min(self, heap: list[tuple[int, int, int]], without: int = -1) -> int | None:
        """The least live value of ``heap``, skipping market ``without``; None when there is none."""
        e = self._least(heap, without)
        return None if e is None else e[0]

    def _least(self, heap: list[tuple[int, int, int]], without: int = -1) -> tuple[int, int, int] | None:
        """The least live entry (value, market, version) of ``heap`` skipping market ``without``: among
        equal values the first market in the event's order (entries compare by market next)."""
        ver = self.ver
        while heap and heap[0][2] != ver[heap[0][1]]:
            heapq.heappop(heap)
        if not heap:
            return None
        top = heap[0]
        if top[1] != without:
            return top
        heapq.heappop(heap)
        while heap and heap[0][2] != ver[heap[0][1]]:
            heapq.heappop(heap)
        out = heap[0] if heap else None
        heapq.heappush(heap, top)
        return out

    # ------------------------------------------------------------------ reads (after refresh)
    def worst_now(self) -> int:
        """The positions' worst case, 1e-6 $ (``_worst_e6`` without resting)."""
        if not self.me:
            return self.sum_cp
        return self.sum_pn + _lowest(0 if self.none_incl else None, self._min(self.hp))

    def worst_resting(self) -> int:
        """The worst case with every resting order that hurts filling, 1e-6 $."""
        if not self.me:
            return self.sum_cr
        return self.sum_rn + _lowest(0 if self.none_incl else None, self._min(self.hr))

    def verdicts(self, gate: Any, prop: Any, old: tuple[int, int] | None) -> SumVerdicts:
        """The verdicts of kmm._core.eventgate.Verdicts for ``prop`` (with ``old`` taken out first)."""
        book = self.book
        k = self.idx[prop.ticker]
        bid = prop.side == "bid"
        rate = book.maker_fee_rate_e6
        r = book.results.get(prop.ticker)
        ry, rn = self.ry[k], self.rn[k]
        bids, asks = self.bids_open, self.asks_open
        if old is not None:
            o_price, o_rem = old
            fee = trade_fee(o_rem, o_price, rate) if rate else 0
            sign = 1 if bid else -1
            ry -= min(0, sign * o_rem * (ONE_DOLLAR - o_price) - fee * E6_PER_E4)
            rn -= min(0, sign * o_rem * (0 - o_price) - fee * E6_PER_E4)
            if r is None:
                if bid:
                    bids -= o_rem
                else:
                    asks -= o_rem
        # per side of market k, the lowest outcome an order in k can lower, as (P&L with what rests,
        # k settles YES, outcome, its place in EventBook.outcomes() for ties; None: named on demand)
        outs: list[tuple[int, bool, tuple[str, ...] | None, int]] = []
        tickers = book.spec.markets
        if self.me:
            all_no = self.sum_rn - self.rn[k] + rn
            if r != "no":
                outs.append((all_no - rn + ry, True, (tickers[k],), k))
            ej = self._least(self.hr, k)       # the outcomes "j wins", j != k
            if ej is not None and not (self.none_incl and ej[0] >= 0):
                outs.append((all_no + ej[0], False, (tickers[ej[1]],), ej[1]))
            elif self.none_incl:
                outs.append((all_no, False, (), -1))
        else:
            others = self.sum_cr - _side(r, self.ry[k], self.rn[k])
            if r != "no":
                outs.append((others + ry, True, None, 0))
            if r != "yes":
                outs.append((others + rn, False, None, 1))
        lim = gate.limits
        name = book.ticker
        now = self.worst_now()
        e_now = self.e_open
        loss_ro = -now >= lim.reduce_only_at * lim.loss_for(name) * E6_PER_E4
        exposure_ro = abs(e_now) >= lim.reduce_only_at * lim.exposure_for(name)
        return SumVerdicts(not (loss_ro or exposure_ro), bid, prop.price, prop.fee_rate_e6,
                           -lim.loss_for(name) * E6_PER_E4, e_now, bids if bid else asks,
                           lim.exposure_for(name), outs, self, k)

    def passes_whole(self, gate: Any, ticker: str, bid: bool, price: int, count: int,
                     old: tuple[int, int] | None = None) -> bool:
        """``v.fast and v.passes(count)`` for ``v = verdicts(gate, prop, old)`` of a post-only order,
        without the verdicts object and its list of outcomes: the order path's question "does the
        whole size pass?" (:meth:`kmm.engine.events.EventRiskGate.fits_whole`). The same numbers in
        the same order: the lowest outcome on each side of market k, the reduce-only test, the fee,
        the exposure; False says only "ask the full path" (tests/engine/test_event_sums.py compares
        the two after every step of its random streams)."""
        book = self.book
        k = self.idx[ticker]
        lim = gate.limits
        name = book.ticker
        max_loss = lim.loss_for(name)
        limit_e = lim.exposure_for(name)
        e_now = self.e_open
        ro = lim.reduce_only_at
        if self.me:        # worst_now, inline
            hp = self._least(self.hp)
            now = self.sum_pn + _lowest(0 if self.none_incl else None, None if hp is None else hp[0])
        else:
            now = self.sum_cp
        if -now >= ro * max_loss * E6_PER_E4 or abs(e_now) >= ro * limit_e:
            return False                     # reduce-only regime: the full path decides
        rate = book.maker_fee_rate_e6
        fee = trade_fee(count, price, rate) * E6_PER_E4 if rate and count > 0 else 0
        if bid:
            ch_yes, ch_no = count * (ONE_DOLLAR - price) - fee, -count * price - fee
        else:
            ch_yes, ch_no = -(count * (ONE_DOLLAR - price)) - fee, count * price - fee
        floor = -max_loss * E6_PER_E4
        r = book.results.get(ticker)
        ry0, rn0 = ry, rn = self.ry[k], self.rn[k]
        bids, asks = self.bids_open, self.asks_open
        if old is not None:                  # the amended order taken out first (verdicts' rule)
            o_price, o_rem = old
            o_fee = trade_fee(o_rem, o_price, rate) if rate else 0
            sign = 1 if bid else -1
            ry -= min(0, sign * o_rem * (ONE_DOLLAR - o_price) - o_fee * E6_PER_E4)
            rn -= min(0, sign * o_rem * (0 - o_price) - o_fee * E6_PER_E4)
            if r is None:
                if bid:
                    bids -= o_rem
                else:
                    asks -= o_rem
        if self.me:
            all_no = self.sum_rn - rn0 + rn
            if r != "no" and ch_yes < 0 and all_no - rn + ry + ch_yes < floor:
                return False
            ej = self._least(self.hr, k)
            if ej is not None and not (self.none_incl and ej[0] >= 0):
                if ch_no < 0 and all_no + ej[0] + ch_no < floor:
                    return False
            elif self.none_incl and ch_no < 0 and all_no + ch_no < floor:
                return False
        else:
            others = self.sum_cr - _side(r, ry0, rn0)
            if r != "no" and ch_yes < 0 and others + ry + ch_yes < floor:
                return False
            if r != "yes" and ch_no < 0 and others + rn + ch_no < floor:
                return False
        extreme = e_now + (bids + count if bid else -(asks + count))
        return not (abs(extreme) > limit_e and abs(extreme) > abs(e_now))

    def yes_side(self, k: int) -> list[str]:
        """Independent markets: the markets other than ``k`` whose worse side is YES, in event order
        (the outcome ``_lowered_worst`` names). Kept as the markets change sides; only a denial's
        sentence reads it."""
        tickers = self.book.spec.markets
        if self.yes_list is None:
            self.yes_list = [tickers[i] for i in sorted(self.yes_set)]
        out = list(self.yes_list)
        if k in self.yes_set:
            out.remove(tickers[k])
        return out


def _side(r: str | None, yes: int, no: int) -> int:
    """An independent market's worse side (``_worst_e6``'s rule, settled markets at their result)."""
    return yes if r == "yes" or (r is None and yes < no) else no


def _lowest(a: int | None, b: int | None) -> int:
    if a is None:
        return 0 if b is None else b
    return a if b is None or a <= b else b


class SumVerdicts:
    """The answers of kmm._core.eventgate.Verdicts from the kept sums: ``fast`` (not reduce-only) and
    :meth:`passes`. Per outcome that an order in its market can lower it keeps only the lowest value
    on each side (k YES / k NO): every such outcome moves by the same amount, so the lowest decides."""

    __slots__ = ("fast", "bid", "price", "rate", "floor", "e_now", "same", "limit_e", "outs", "sums", "k")

    def __init__(self, fast: bool, bid: bool, price: int, rate: int, floor: int, e_now: int, same: int,
                 limit_e: int, outs: list[tuple[int, bool, tuple[str, ...] | None, int]], sums: EventSums,
                 k: int) -> None:
        self.fast = fast
        self.bid = bid
        self.price = price
        self.rate = rate
        self.floor = floor
        self.e_now = e_now
        self.same = same
        self.limit_e = limit_e
        self.outs = outs
        self.sums = sums
        self.k = k

    def changes(self, count: int) -> tuple[int, int]:
        """The order's P&L change filled in full if its market settles YES / NO, 1e-6 $."""
        price = self.price
        fee = trade_fee(count, price, self.rate) if self.rate and count > 0 else 0
        if self.bid:
            return count * (ONE_DOLLAR - price) - fee * E6_PER_E4, count * (0 - price) - fee * E6_PER_E4
        return -(count * (ONE_DOLLAR - price)) - fee * E6_PER_E4, -(count * (0 - price)) - fee * E6_PER_E4

    def lowered_worst(self, count: int) -> tuple[int | None, tuple[str, ...]]:
        """``_lowered_worst`` with the order of ``count`` resting: the lowest outcome it lowers and
        which (ties as the former loop broke them: first in EventBook.outcomes() order)."""
        ch_yes, ch_no = self.changes(count)
        cands = []
        for v, k_yes, outcome, pos in self.outs:
            ch = ch_yes if k_yes else ch_no
            if ch < 0:
                cands.append((v + ch, pos, outcome, k_yes))
        if not cands:
            return None, ()
        if self.sums.me:
            best = min(cands, key=lambda c: (c[0], c[1]))
            return best[0], best[2]  # type: ignore[return-value]
        out = self.sums.yes_side(self.k)
        k_t = self.sums.book.spec.markets[self.k]
        return min((c[0], tuple(out + [k_t]) if c[3] else tuple(out)) for c in cands)

    def passes(self, count: int) -> bool:
        ch_yes, ch_no = self.changes(count)
        floor = self.floor
        for v, k_yes, _, _ in self.outs:
            if k_yes:
                if ch_yes < 0 and v + ch_yes < floor:
                    return False
            elif ch_no < 0 and v + ch_no < floor:
                return False
        extreme = self.e_now + (self.same + count if self.bid else -(self.same + count))
        return not (abs(extreme) > self.limit_e and abs(extreme) > abs(self.e_now))
