# The risk gate's place and amend checks for the common case, in C (issue 15's request path): what
# kmm.engine.risk.RiskGate.place_allowed / amend_size answer for a quote on a market that is not
# reduce-only, from the numbers they read (the position, the open orders and the side's open quantity,
# the total position, the session P&L, the clock) and the limits, with no Python frame. The compiled
# frame entry (kmm._core.entry) checks a decision's first request here and writes it; anything this does
# not answer with the request's own size (a denial, reduce-only sizing) it leaves to the engine's Python
# path, which asks the gate itself. The market gates (kill switch, pauses, close, freshness, back-off)
# are not here: the entry's decision already holds the gate's ALLOW for them (Pipeline.verdict_q).
# tests/engine/test_first_request.py holds both to RiskGate with hypothesis.
cimport cython
from libc.stdint cimport int64_t

from kmm._core.grid cimport Grid

cdef int64_t ONE_DOLLAR = 10000
cdef int64_t NS_PER_S = 1000000000


@cython.final
cdef class OrderLimits:
    """The limits :meth:`amend` and :meth:`place` check, read once from a frozen
    :class:`kmm.config.RiskLimits`."""

    def __init__(self, limits not None):
        self.limits = limits
        self.max_order_size = limits.max_order_size
        self.price_min = limits.price_min
        self.price_max = limits.price_max
        self.max_order_notional = limits.max_order_notional
        self.max_open_market = limits.max_open_orders_per_market
        self.max_open_total = limits.max_open_orders_total
        self.max_position = limits.max_position
        self.max_total_position = limits.max_total_position
        self.max_loss = limits.max_loss
        self.reduce_only_at = limits.reduce_only_at
        self.loss_reduce_only_at = limits.loss_reduce_only_at
        # RiskGate computes int(s * NS_PER_S) on every check: the same value, once
        self.reduce_before_close_ns = int(limits.reduce_only_before_close_s * NS_PER_S)
        self.stop_before_close_ns = int(limits.stop_before_close_s * NS_PER_S)
        self.per_market = dict(limits.per_market_max_position)

    cdef int64_t amend(self, object ticker, bint bid, int64_t price, int64_t size, int64_t old_remaining,
                       int64_t q, int64_t open_side, int64_t total_abs, int64_t last_pnl, bint fractional,
                       Grid grid, bint has_close, int64_t close_ns, int64_t wall_ns) except -2:
        """``size`` when RiskGate.amend_size would answer ``size`` for an amend of an order with
        ``old_remaining`` left to ``price`` / ``size`` on a market that is not reduce-only; -1 for
        anything else (the caller asks the gate). ``open_side``: the orders manager's open quantity on
        the amend's side (OrderManager.open_qty), the order itself included."""
        cdef int64_t limit, aq, worst, aw, growth
        cdef object per
        # RiskGate._order_ok's shape and close checks (its market gates are the decision's held ALLOW)
        if size <= 0 or size > self.max_order_size or (not fractional and size % 100):
            return -1
        if price < self.price_min or price > self.price_max or grid is None or not grid.valid(price):
            return -1
        if size * (price if bid else ONE_DOLLAR - price) // 100 > self.max_order_notional:
            return -1
        if has_close and wall_ns >= close_ns - self.stop_before_close_ns:
            return -1
        # RiskGate._reduce_only: any reason leaves the amend to the gate (it sizes reducing amends)
        per = self.per_market.get(ticker) if self.per_market else None
        limit = self.max_position if per is None else <int64_t>per
        aq = q if q >= 0 else -q
        if <double>aq >= self.reduce_only_at * <double>limit:
            return -1
        if <double>last_pnl <= -self.loss_reduce_only_at * <double>self.max_loss:
            return -1
        if has_close and wall_ns >= close_ns - self.reduce_before_close_ns:
            return -1
        # RiskGate.amend_size's position rules, the old remaining replaced by the new
        worst = q + (open_side - old_remaining + size) * (1 if bid else -1)
        aw = worst if worst >= 0 else -worst
        if aw > limit and aw > aq:
            return -1
        growth = aw - aq
        if growth > 0 and total_abs + growth > self.max_total_position:
            return -1
        return size

    cdef int64_t place(self, object ticker, bint bid, int64_t price, int64_t size, int64_t open_market,
                       int64_t open_total, int64_t q, int64_t open_side, int64_t total_abs, int64_t last_pnl,
                       bint fractional, Grid grid, bint has_close, int64_t close_ns, int64_t wall_ns) except -2:
        """``size`` when RiskGate.place_allowed allows a new order of ``size`` at ``price`` and the market
        is not reduce-only (QuotePlanner.place_checked keeps the size then); -1 for anything else.
        ``open_market`` / ``open_total``: the order manager's open orders in the market and in all."""
        if open_market >= self.max_open_market or open_total >= self.max_open_total:
            return -1
        return self.amend(ticker, bid, price, size, 0, q, open_side, total_abs, last_pnl, fractional, grid,
                          has_close, close_ns, wall_ns)

    def check_amend(self, ticker, bint bid, int64_t price, int64_t size, int64_t old_remaining, int64_t q,
                    int64_t open_side, int64_t total_abs, int64_t last_pnl, bint fractional, Grid grid,
                    close_ns, int64_t wall_ns):
        """:meth:`amend` from Python (the tests); ``close_ns`` None for a market with no close."""
        return self.amend(ticker, bid, price, size, old_remaining, q, open_side, total_abs, last_pnl,
                          fractional, grid, close_ns is not None, 0 if close_ns is None else close_ns, wall_ns)

    def check_place(self, ticker, bint bid, int64_t price, int64_t size, int64_t open_market,
                    int64_t open_total, int64_t q, int64_t open_side, int64_t total_abs, int64_t last_pnl,
                    bint fractional, Grid grid, close_ns, int64_t wall_ns):
        """:meth:`place` from Python (the tests)."""
        return self.place(ticker, bid, price, size, open_market, open_total, q, open_side, total_abs, last_pnl,
                          fractional, grid, close_ns is not None, 0 if close_ns is None else close_ns, wall_ns)
