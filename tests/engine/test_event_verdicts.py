"""The event gate's fast predicate gives exactly the verdicts of the full check it replaced.

``EventRiskGate.check_place`` / ``check_amend`` / ``max_count`` now gather an event's numbers once into
flat lists and check each size without building legs or messages (``kmm.engine.events._Verdicts``);
tests/reference/events.py keeps the former methods (legs, then the full rule set per size). Hypothesis
builds events (mutually exclusive or not, "none" possible or not, markets settled), positions and fees
booked by the real Portfolio before and after the session baseline, resting orders, limits that put
the event in every regime (ok, near a limit, reduce-only by loss or exposure, over the limit), and
asks both the same questions: every Decision (allowed, reason, sentence) and every size must match,
and the denials counted must be the same."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm._core.fees import trade_fee
from kmm.engine.clock import ManualClock
from kmm.engine.eventwire import LiveResting
from kmm.engine.events import EventLimits, EventRiskGate, EventSpec
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill, OrderAck, UserOrder
from tests.reference import events as ref

_tid = itertools.count()
prices = st.integers(1, 99).map(lambda c: c * 100)
sides = st.sampled_from(["bid", "ask"])


class Resting:
    def __init__(self, orders: dict[str, list[tuple[str, int, int]]]) -> None:
        self.orders = orders

    def may_fill(self, ticker: str) -> Iterable[tuple[str, int, int]]:
        return self.orders.get(ticker, [])


class PlainLedger:
    """A ledger with only the four LedgerView reads (no ``event_leg``): the gate's other path."""

    def __init__(self, pf: Portfolio) -> None:
        self.pf = pf

    def position(self, t: str) -> int:
        return self.pf.position(t)

    def position_cost(self, t: str) -> int:
        return self.pf.position_cost(t)

    def realized_pnl(self, t: str | None = None) -> int:
        return self.pf.realized_pnl(t)

    def fees_paid(self, t: str | None = None) -> int:
        return self.pf.fees_paid(t)


def _fill(pf: Portfolio, t: str, side: str, price: int, count: int, fee: int) -> None:
    assert pf.apply_fill(Fill(f"t{next(_tid)}", "o", None, t, side, price, count, fee, False, None, 0))


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 3))
    markets = tuple(f"KXV-{i}" for i in range(n))
    fill_s = st.tuples(st.sampled_from(markets), sides, prices, st.integers(1, 40).map(lambda c: c * 100),
                       st.integers(0, 300))
    loss_ro = draw(st.sampled_from([0.5, 0.8, 0.9, 1.0]))
    return dict(
        markets=markets,
        me=draw(st.booleans()),
        none_possible=draw(st.booleans()),
        rate=draw(st.sampled_from([0, 17_500, 35_000])),
        history=draw(st.lists(fill_s, max_size=3)),
        fills=draw(st.lists(fill_s, max_size=5)),
        resting={t: draw(st.lists(st.tuples(sides, prices, st.integers(-100, 3000)), max_size=3)) for t in markets},
        results=draw(st.dictionaries(st.sampled_from(markets), st.sampled_from(["yes", "no"]), max_size=n)),
        limits=dict(max_event_loss=draw(st.integers(1, 60)) * 1_0000,
                    max_event_exposure=draw(st.integers(1, 80)) * 100,
                    reduce_only_at=loss_ro, kill_at=draw(st.sampled_from([loss_ro, 1.0, 1.5]))),
        plain=draw(st.booleans()),
        asks=draw(st.lists(st.tuples(st.sampled_from(markets), sides, prices, st.integers(0, 4000),
                                     st.booleans(), st.sampled_from([1, 100]),
                                     st.one_of(st.none(), st.tuples(prices, st.integers(0, 3000)))),
                           min_size=1, max_size=8)),
    )


def _gate(sc: dict) -> EventRiskGate:
    pf = Portfolio(cash=10_000_0000)
    for f in sc["history"]:
        _fill(pf, *f)
    ledger = PlainLedger(pf) if sc["plain"] else pf
    gate = EventRiskGate(EventLimits(**sc["limits"]), ledger, Resting(sc["resting"]))  # type: ignore[arg-type]
    book = gate.add_event(EventSpec("KXV", sc["me"], sc["markets"], sc["none_possible"]),
                          maker_fee_rate_e6=sc["rate"])
    for f in sc["fills"]:
        _fill(pf, *f)
    for t, r in sc["results"].items():
        book.on_market_settled(t, r)
    return gate


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_fast_event_checks_give_the_former_verdicts(sc):
    fast, slow = _gate(sc), _gate(sc)
    for t, side, price, count, post_only, step, old in sc["asks"]:
        assert fast.check_place(t, side, price, count, post_only=post_only) == \
            ref.check_place(slow, t, side, price, count, post_only=post_only)
        assert fast.max_count(t, side, price, count, size_step=step, post_only=post_only) == \
            ref.max_count(slow, t, side, price, count, size_step=step, post_only=post_only)
        op, orem = old if old is not None else (None, 0)
        assert fast.check_amend(t, side, price, count, op, orem) == \
            ref.check_amend(slow, t, side, price, count, op, orem)
    assert fast.denials == slow.denials


def test_the_property_reaches_every_regime():
    """The scenarios above are not all easy passes: each reason occurs (checked on fixed cases)."""
    base = dict(markets=("KXV-0", "KXV-1"), me=True, none_possible=True, rate=17_500, history=[], results={},
                plain=False, asks=[])
    seen = set()
    for fills, resting, limits in (
            ([], {}, dict(max_event_loss=100_0000, max_event_exposure=8000)),
            ([], {}, dict(max_event_loss=1_0000, max_event_exposure=8000)),
            ([], {"KXV-0": [("bid", 5000, 1000)]}, dict(max_event_loss=100_0000, max_event_exposure=1000)),
            ([("KXV-0", "bid", 5000, 1000, 0)], {}, dict(max_event_loss=5_5000, max_event_exposure=8000)),
            ([("KXV-0", "bid", 5000, 1000, 0)], {}, dict(max_event_loss=100_0000, max_event_exposure=1000))):
        sc = dict(base, fills=fills, resting=resting, limits=dict(limits, reduce_only_at=0.9, kill_at=1.0))
        g, r = _gate(sc), _gate(sc)
        for side in ("bid", "ask"):
            d = g.check_place("KXV-1", side, 5000, 2000)
            assert d == ref.check_place(r, "KXV-1", side, 5000, 2000)
            seen.add(d.reason)
    assert {"ok", "event_max_loss", "event_max_exposure", "event_reduce_only"} <= seen


# ---------------------------------------------------------------- what the gate reads, per market

@st.composite
def order_streams(draw):
    return draw(st.lists(st.tuples(st.sampled_from(["create", "ack", "amend", "cancel", "fill", "user_fill",
                                                    "cancel_ack", "amend_ack", "fail", "gone", "final"]),
                                   st.integers(0, 5), sides, prices, st.integers(1, 30).map(lambda c: c * 100)),
                         min_size=1, max_size=25))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_streams())
def test_live_resting_reads_what_the_former_view_read(stream):
    """LiveResting.may_fill (now a loop over the order manager's index) against the former
    may_fill_from_orders(live_in) + unbooked_in, after every step of a random order stream. KXV-1 has
    no maker fee (an amend in flight there is always one entry), KXV-0 has."""
    om = OrderManager(ManualClock(), session="ktest")
    view = LiveResting(om)
    view.fee_free.add("KXV-1")
    made = []
    for kind, i, side, price, count in stream:
        t = ("KXV-0", "KXV-1")[i % 2]
        o = made[i % len(made)] if made else None
        if kind == "create" or o is None:
            made.append(om.create(t, side, price, count))
        elif kind == "ack" and o.order_id is None and o.is_live:
            om.on_ack(OrderAck(f"id-{o.client_order_id}", o.client_order_id, 0, o.count))
        elif kind == "amend" and o.order_id is not None:
            om.request_amend(o.order_id, price, count)
        elif kind == "cancel" and o.order_id is not None:
            om.request_cancel(o.order_id)
        elif kind == "cancel_ack" and o.order_id is not None:
            om.on_cancel_ack(o.order_id)
        elif kind == "amend_ack" and o.order_id is not None and o.pending_price is not None:
            om.on_amend_ack(OrderAck(o.order_id, o.client_order_id, o.fill_count,
                                     max(0, (o.pending_count or 0) - o.fill_count)))
        elif kind == "fail" and o.order_id is not None:
            om.on_request_failed(o.order_id, "refused")
        elif kind == "gone" and o.order_id is not None:      # a write answered 404: filled or cancelled?
            om.on_request_failed(o.order_id, "order_not_found", gone=True)
        elif kind == "final" and o.order_id is not None:     # the exchange's last word on the order
            executed = bool(count % 200)
            om.on_user_order(UserOrder(o.order_id, o.client_order_id, o.ticker,
                                       "executed" if executed else "canceled", o.side, o.price, o.count,
                                       o.fill_count + ((o.unsure or o.remaining) if executed else 0), 0))
        elif kind in ("fill", "user_fill") and o.order_id is not None and o.remaining > 0:
            n = min(o.remaining, count)
            if kind == "fill":
                om.on_fill(Fill(f"f{next(_tid)}", o.order_id, o.client_order_id, o.ticker, o.side, o.price, n,
                                trade_fee(n, o.price, 17_500), False, None, 0))
            else:     # the exchange reports the fill before its fill message: unbooked
                om._apply_counts(o, o.fill_count + n, o.remaining - n)
                om._settle(o, "test")
        for tk in ("KXV-0", "KXV-1"):
            assert sorted(view.may_fill(tk)) == sorted(ref.may_fill(om, tk, view.fee_free))


@given(st.lists(st.tuples(sides, prices, st.integers(1, 40).map(lambda c: c * 100), st.integers(0, 400)),
                max_size=8), st.booleans())
def test_portfolio_event_leg_is_the_four_reads(fills, settle):
    pf = Portfolio(cash=10_000_0000)
    for side, price, count, fee in fills:
        _fill(pf, "KXV-0", side, price, count, fee)
    if settle and fills:
        pf.settle("KXV-0", "yes")
    t = "KXV-0"
    assert pf.event_leg(t) == (pf.position(t), pf.realized_pnl(t) - pf.fees_paid(t) - pf.position_cost(t))
    assert pf.event_leg("KXV-none") == (0, 0)


def test_fast_and_former_agree_at_the_exact_loss_limit():
    """An order whose worst case lands exactly on -max_event_loss passes, one contract more does not,
    in both kinds of event and on both sides (the random cases above rarely hit the boundary)."""
    for me in (True, False):
        for side, price in (("bid", 5000), ("ask", 5000), ("bid", 2000), ("ask", 8000)):
            per = price if side == "bid" else 10_000 - price          # 1e-4 $ lost per contract
            sc = dict(markets=("KXV-0", "KXV-1"), me=me, none_possible=True, rate=0, history=[], results={},
                      plain=False, asks=[], fills=[], resting={"KXV-0": [("bid", 3000, 500)]},
                      limits=dict(max_event_loss=10 * per + 15_000, max_event_exposure=100_000,
                                  reduce_only_at=1.0, kill_at=1.0))
            g, r = _gate(sc), _gate(sc)
            for count in (900, 1000, 1100):
                d = g.check_place("KXV-1", side, price, count)
                assert d == ref.check_place(r, "KXV-1", side, price, count)
                assert d.allowed == (count <= 1000), (me, side, price, count, d)
            assert g.max_count("KXV-1", side, price, 3000, size_step=1) == 1000 == \
                ref.max_count(r, "KXV-1", side, price, 3000, size_step=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("fill"), st.sampled_from(["KXV-0", "KXV-1", "KXV-2"]), st.sampled_from(["bid", "ask", "x"]),
              st.integers(-100, 10_100), st.integers(-100, 4000), st.integers(0, 3)),
    st.tuples(st.just("load"), st.sampled_from(["KXV-0", "KXV-1", "KXV-3"]), st.integers(-5000, 5000)),
    st.tuples(st.just("settle"), st.sampled_from(["KXV-0", "KXV-1", "KXV-9"]), st.sampled_from(["yes", "no", 4000]))),
    max_size=30))
def test_total_abs_position_kept_equals_the_sum_over_markets(steps):
    """Portfolio.total_abs_position (kept as positions change: the account-level position check reads
    it on every order) equals the former sum of |position| over the markets after every step, with
    duplicate and malformed fills, positions loaded over fills and settlements."""
    from kmm.kalshi.types import MarketPosition
    pf = Portfolio(cash=10_000_0000)
    for st_ in steps:
        if st_[0] == "fill":
            _, t, side, price, count, dup = st_
            pf.apply_fill(Fill(f"d{dup}" if dup else f"t{next(_tid)}", "o", None, t, side, price, count, 0,
                               False, None, 0))
        elif st_[0] == "load":
            pf.load_position(MarketPosition(st_[1], st_[2], abs(st_[2]) * 50, 0, 0))
        else:
            pf.settle(st_[1], st_[2])
        assert pf.total_abs_position() == sum(abs(pf.position(t)) for t in pf.tickers())


def test_compiled_gather_treats_odd_resting_prices_as_the_former_code_did():
    """A resting order priced outside 0..10000 (never sent by kmm; a foreign order's bad data): with no
    maker fee both compute with it and agree; with a fee both raise trade_fee's ValueError."""
    import pytest
    for rate, raises in ((0, False), (17_500, True)):
        sc = dict(markets=("KXV-0", "KXV-1"), me=True, none_possible=True, rate=rate, history=[], results={},
                  plain=False, asks=[], fills=[], resting={"KXV-0": [("bid", 10_500, 500), ("ask", -200, 300)]},
                  limits=dict(max_event_loss=100_0000, max_event_exposure=100_000, reduce_only_at=0.9, kill_at=1.0))
        g, r = _gate(sc), _gate(sc)
        if raises:
            with pytest.raises(ValueError, match="outside 0..10000"):
                g.check_place("KXV-1", "bid", 5000, 1000)
            with pytest.raises(ValueError, match="outside 0..10000"):
                ref.check_place(r, "KXV-1", "bid", 5000, 1000)
        else:
            for side in ("bid", "ask"):
                assert g.check_place("KXV-1", side, 5000, 1000) == ref.check_place(r, "KXV-1", side, 5000, 1000)
                assert g.max_count("KXV-1", side, 5000, 9000) == ref.max_count(r, "KXV-1", side, 5000, 9000)
