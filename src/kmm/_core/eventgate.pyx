"""The event gate's per-check verdicts, compiled (kmm.engine.events uses it on every place and amend).

:class:`Verdicts` gathers one event's numbers for one proposed order (market, side, price) in a single
pass over the event's markets and their resting orders, decides whether the event is in a reduce-only
regime, and answers "does this size pass?" for any size without copying or wording anything. It gives
the verdict of ``EventRiskGate._check`` outside reduce-only (property-tested against the former Python
methods, tests/reference/events.py, in tests/engine/test_event_verdicts.py); in reduce-only (``fast`` is
False) and on a denial the caller runs the full Python check, which words and counts the denial.

Units as everywhere in kmm: prices 1e-4 $ (YES terms), sizes 1e-2 contracts; P&L here is 1e-6 $
(count x price). Money sums stay Python integers (no overflow to reason about); only the fee, on an
order's own count and price, is computed in C (:func:`kmm._core.fees.trade_fee`'s rule and checks).
"""

cimport cython
from libc.stdint cimport int64_t

from kmm._core.fees cimport fee_e4

cdef enum:
    ONE_DOLLAR = 10000     # 1e-4 $
    E6_PER_E4 = 100        # count (1e-2) x price (1e-4 $) is 1e-6 $


cdef object _fee(object count, object price, object rate):
    # kmm._core.fees.trade_fee: the same checks, the same rounding
    if count < 0:
        raise ValueError(f"trade_fee: count {count} is negative; give the fill size in 1e-2 contracts")
    if price < 0 or price > 10000:
        raise ValueError(f"trade_fee: price {price} is outside 0..10000 (1e-4 $)")
    if rate < 0:
        raise ValueError(f"trade_fee: rate_e6 {rate} is negative")
    return fee_e4(count, price, rate)


cdef object _change(bint bid, object price, object count, object value, object fee):
    # kmm.engine.events.order_change_e6
    if bid:
        return count * (value - price) - fee * E6_PER_E4
    return -(count * (value - price)) - fee * E6_PER_E4


@cython.overflowcheck(True)
cdef tuple _resting_sums(object orders, object rate):
    """What a market's resting orders add if it settles YES / NO (the part that hurts, with fees) and
    their size per side: (yes, no, bids, asks). In int64 with overflow checks (an amount past 2^63
    raises OverflowError instead of wrapping: the check fails closed)."""
    cdef int64_t ry = 0, rn = 0, bids = 0, asks = 0, rem, price, fee_e6, r64
    cdef int64_t zero = 0
    r64 = rate
    for side, p, n in orders:
        rem = n
        if rem <= 0:
            continue
        price = p
        fee_e6 = 0
        if r64:                     # trade_fee's checks, only where trade_fee was called
            if price < 0 or price > 10000:
                raise ValueError(f"trade_fee: price {price} is outside 0..10000 (1e-4 $)")
            if r64 < 0:
                raise ValueError(f"trade_fee: rate_e6 {r64} is negative")
            fee_e6 = fee_e4(rem, price, r64) * E6_PER_E4
        if side == "bid":
            ry += min(zero, rem * (ONE_DOLLAR - price) - fee_e6)
            rn -= rem * price + fee_e6
            bids += rem
        else:
            ry -= rem * (ONE_DOLLAR - price) + fee_e6
            rn += min(zero, rem * price - fee_e6)
            asks += rem
    return ry, rn, bids, asks


def worst_value(book, list yes, list no):
    """``_worst_e6(book, legs)[0]`` from each market's P&L if it settles YES / NO (in market order)."""
    cdef Py_ssize_t i, n
    spec = book.spec
    results = book.results
    tickers = spec.markets
    n = len(tickers)
    if not spec.mutually_exclusive:
        total = 0
        for i in range(n):
            r = results.get(tickers[i])
            if r == "yes" or (r is None and yes[i] < no[i]):
                total += yes[i]
            else:
                total += no[i]
        return total
    all_no = sum(no)
    for i in range(n):
        if results.get(tickers[i]) == "yes":
            return all_no - no[i] + yes[i]
    best = all_no if spec.none_possible else None
    for i in range(n):
        if results.get(tickers[i]) == "no":
            continue
        v = all_no - no[i] + yes[i]
        if best is None or v < best:
            best = v
    return all_no if best is None else best


cdef class Verdicts:
    """One proposed order's verdicts at any size (see the module doc). ``old`` (price, remaining): an
    order the amend replaces, taken out first (as ``kmm.engine.events._remove_resting``)."""

    cdef readonly bint fast
    cdef bint bid, lowers_known
    cdef object price, rate, e_now, same, limit_e, max_loss_e6
    cdef list outs_v
    cdef list outs_k

    def __init__(self, gate, book, prop, old=None):
        cdef Py_ssize_t i, j, k, n
        cdef bint bid = prop.side == "bid"
        led = book.ledger
        rate = book.maker_fee_rate_e6
        resting = book.resting
        baseline = book.baseline
        results = book.results
        spec = book.spec
        tickers = spec.markets
        n = len(tickers)
        pos = [0] * n
        py = [0] * n
        pn = [0] * n
        ry = [0] * n
        rn = [0] * n
        bids = 0
        asks = 0
        k = -1
        target = prop.ticker
        leg_of = getattr(led, "event_leg", None)
        for i in range(n):
            t = tickers[i]
            if t == target:
                k = i
            if leg_of is not None:
                q, held = leg_of(t)
                base = (held - baseline.get(t, 0)) * E6_PER_E4
            else:
                q = led.position(t)
                base = (led.realized_pnl(t) - led.fees_paid(t) - baseline.get(t, 0) - led.position_cost(t)) * E6_PER_E4
            y = base + (q * ONE_DOLLAR if q > 0 else 0)
            no = base + (-q * ONE_DOLLAR if q < 0 else 0)
            pos[i] = q
            py[i] = y
            pn[i] = no
            a = 0
            b = 0
            if resting is not None:
                ya, na, b, a = _resting_sums(resting.may_fill(t), rate)
                y += ya
                no += na
            if i == k and old is not None:
                o_price, o_rem = old
                fee = _fee(o_rem, o_price, rate) if rate else 0
                y -= min(0, _change(bid, o_price, o_rem, ONE_DOLLAR, fee))
                no -= min(0, _change(bid, o_price, o_rem, 0, fee))
                if bid:
                    b -= o_rem
                else:
                    a -= o_rem
            ry[i] = y
            rn[i] = no
            if t not in results:
                bids += b
                asks += a
        if k < 0:
            raise ValueError(f"event check: {target} is not a market of event {book.ticker}")
        lim = gate.limits
        name = book.ticker
        now = worst_value(book, py, pn)
        e_now = 0
        for i in range(n):
            if tickers[i] not in results:
                e_now += pos[i]
        loss_ro = -now >= lim.reduce_only_at * lim.loss_for(name) * E6_PER_E4
        exposure_ro = abs(e_now) >= lim.reduce_only_at * lim.exposure_for(name)
        self.fast = not (loss_ro or exposure_ro)
        self.bid = bid
        self.price = prop.price
        self.rate = prop.fee_rate_e6
        self.max_loss_e6 = -lim.loss_for(name) * E6_PER_E4
        self.e_now = e_now
        self.same = bids if bid else asks
        self.limit_e = lim.exposure_for(name)
        # the outcomes an order in market k can lower: P&L there with what rests, and whether k is YES
        self.outs_v = []
        self.outs_k = []
        r = results.get(tickers[k])
        if not spec.mutually_exclusive:
            others = 0
            for i in range(n):
                if i == k:
                    continue
                res = results.get(tickers[i])
                if res == "yes" or (res is None and ry[i] < rn[i]):
                    others += ry[i]
                else:
                    others += rn[i]
            if r != "no":
                self.outs_v.append(others + ry[k])
                self.outs_k.append(True)
            if r != "yes":
                self.outs_v.append(others + rn[k])
                self.outs_k.append(False)
        else:
            all_no = sum(rn)
            idx = {tickers[i]: i for i in range(n)}
            kt = tickers[k]
            for o in book.outcomes():
                if o:
                    j = idx[o[0]]
                    self.outs_v.append(all_no - rn[j] + ry[j])
                    self.outs_k.append(kt in o)
                else:
                    self.outs_v.append(all_no)
                    self.outs_k.append(False)

    def passes(self, count):
        """``bool(EventRiskGate._check(..., count))`` outside the reduce-only regime (``fast``)."""
        cdef Py_ssize_t i
        fee = _fee(count, self.price, self.rate) if self.rate and count > 0 else 0
        ch_yes = _change(self.bid, self.price, count, ONE_DOLLAR, fee)
        ch_no = _change(self.bid, self.price, count, 0, fee)
        cdef bint lowers_yes = ch_yes < 0
        cdef bint lowers_no = ch_no < 0
        d_yes = ch_yes if lowers_yes else 0
        d_no = ch_no if lowers_no else 0
        floor = self.max_loss_e6
        for i in range(len(self.outs_v)):
            if self.outs_k[i]:
                if lowers_yes and self.outs_v[i] + d_yes < floor:
                    return False
            elif lowers_no and self.outs_v[i] + d_no < floor:
                return False
        extreme = self.e_now + (self.same + count if self.bid else -(self.same + count))
        return not (abs(extreme) > self.limit_e and abs(extreme) > abs(self.e_now))


def resting_sums(orders, rate):
    """``(yes, no, bids, asks)`` of a market's resting orders, as :class:`Verdicts` gathers them (1e-6 $
    and 1e-2 contracts): the per-market numbers kmm.engine.eventsums keeps between checks."""
    return _resting_sums(orders, rate)
