"""The event gate's kept sums (kmm.engine.eventsums) give exactly the verdicts of the full recomputation.

Two gates read the same Portfolio and OrderManager: one keeps per-market numbers and event aggregates,
told what changed by the portfolio's and the order manager's watchers; the other cannot be told
(its views have no watchers) and runs the former full path (tests/reference/events.py: legs, then the
full rule set per size). Hypothesis drives random streams of order events (create, ack, amend and
decrease in flight and answered, cancel, failures, fills booked and fills reported before their fill
message), positions loaded over fills, settlements and a new session baseline; after every step every
Decision, every ``max_count`` size, the worst cases, the status, the kill signal and the quoting
inventory must be the same, and so must the denials counted."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm._core.fees import trade_fee
from kmm.engine.clock import ManualClock
from kmm.engine.eventwire import LiveResting
from kmm.engine.events import ROOM_OPEN, EventLimits, EventRiskGate, EventSpec
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill, MarketPosition, OrderAck, UserOrder
from tests.reference import events as ref

_tid = itertools.count()
_PLACE_ROOMS = EventRiskGate.place_rooms
ROOM_DROPS = [0, 0]          # places dropped for the event room, steps checked (test_kept_sums_on_long_seeded_streams)
prices = st.integers(1, 99).map(lambda c: c * 100)
sides = st.sampled_from(["bid", "ask"])
KINDS = ["create", "create", "create", "ack", "ack", "amend", "decrease", "cancel", "cancel_ack", "amend_ack",
         "decrease_ack", "fail", "gone", "fill", "fill", "user_fill", "user_order", "load", "settle",
         "baseline", "ask"]


class Unwatched:
    """The same views without watchers: the gate built on them gathers every check anew."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        if name in ("watchers", "watch"):
            raise AttributeError(name)
        return getattr(self.inner, name)


@st.composite
def streams(draw):
    n = draw(st.integers(1, 5))
    loss_ro = draw(st.sampled_from([0.5, 0.9, 1.0]))
    return dict(
        markets=tuple(f"KXS-{i}" for i in range(n)),
        me=draw(st.booleans()),
        none_possible=draw(st.booleans()),
        rate=draw(st.sampled_from([0, 17_500])),
        limits=dict(max_event_loss=draw(st.integers(1, 80)) * 1_0000,
                    max_event_exposure=draw(st.integers(1, 100)) * 100,
                    reduce_only_at=loss_ro, kill_at=draw(st.sampled_from([loss_ro, 1.0, 1.5]))),
        weight=draw(st.sampled_from([0.0, 0.5, 1.0])),
        steps=draw(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 40), sides, prices,
                                      st.integers(1, 30).map(lambda c: c * 100), st.integers(0, 3)),
                            min_size=1, max_size=40)),
    )


def _compare(fast: EventRiskGate, slow: EventRiskGate, t: str, side: str, price: int, count: int,
             step: int, old: tuple[int, int] | None, weight: float) -> None:
    assert fast.check_place(t, side, price, count) == ref.check_place(slow, t, side, price, count)
    assert fast.check_place(t, side, price, count, post_only=False) == \
        ref.check_place(slow, t, side, price, count, post_only=False)
    assert fast.max_count(t, side, price, count * 3, size_step=step) == \
        ref.max_count(slow, t, side, price, count * 3, size_step=step)
    op, orem = old if old is not None else (None, 0)
    assert fast.check_amend(t, side, price, count, op, orem) == ref.check_amend(slow, t, side, price, count, op, orem)
    assert fast.quote_inventory(t, weight) == slow.quote_inventory(t, weight)
    _compare_fits_whole(fast, slow, t, side, price, count, None)
    _compare_fits_whole(fast, slow, t, side, price, count * 3, None)
    if old is not None:
        _compare_fits_whole(fast, slow, t, side, price, count, old)


#: prices a place dropped for the event room is tried at against the former full check (1e-4 $)
ROOM_PRICES = (1, 2500, 7500, 9999)
ROOM_SIZES = {1: (1, 100), 100: (100,)}


def _check_place_rooms(fast: EventRiskGate, slow: EventRiskGate, markets: tuple[str, ...], price: int,
                       count: int) -> int:
    """A place ``place_rooms`` leaves no room for (the pipelines drop it: its least size ``step`` at its
    price lowers the event's P&L past the side's room) is one the former full check refuses, at every
    size from ``step`` on that is tried: the rooms never stop a place the gate would let through.
    Returns how many (market, side, price, step) were dropped, for the caller's count."""
    counted = dict(slow.denials)
    dropped = 0
    for m in markets:
        rooms = fast.place_rooms(m)               # as the engine reads them (EventWiring.rooms)
        # the rooms kept between decisions (EventRiskGate._rooms) are the ones computed now
        book = fast.event_of(m)
        if EventRiskGate.place_rooms is _PLACE_ROOMS and book is not None and book.sums is not None \
                and book.sums.refresh() and book.results.get(m) is None:     # (one test opens the rooms)
            for st in (1, 100):
                assert fast.place_rooms(m, st) == fast._place_rooms(book, book.sums, m, st, fast.limits), (m, st)
        for step in (1, 100):
            for k, sd in enumerate(("bid", "ask")):
                for p in (*ROOM_PRICES, price):
                    if step * (p if k == 0 else 10_000 - p) <= rooms[k]:
                        continue
                    dropped += 1
                    for n in (*ROOM_SIZES[step], count):
                        assert not ref.check_place(slow, m, sd, p, n), (m, sd, p, n, step, rooms)
    slow.denials.clear()
    slow.denials.update(counted)              # these checks are not the stream's own
    return dropped


def _compare_fits_whole(fast: EventRiskGate, slow: EventRiskGate, t: str, side: str, price: int,
                        count: int, old: tuple[int, int] | None) -> None:
    """The order path's one-call question (``fits_whole``) gives the verdicts' answer (``fast`` and
    ``passes`` of the whole size), and a yes is the reference's full size (a place) or its allow (an
    amend of ``old``)."""
    whole = fast.fits_whole(t, side, price, count, old)
    book = fast.event_of(t)
    s = book.sums if book is not None else None
    former = False
    if s is not None and s.refresh():
        v = s.verdicts(fast, fast._proposal(book, t, side, price, True), old)
        former = v.fast and v.passes(count)
    assert whole == former
    if whole and old is None:
        assert ref.max_count(slow, t, side, price, count, size_step=1) == count
    elif whole:
        assert ref.check_amend(slow, t, side, price, count, old[0], old[1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_kept_sums_give_the_former_verdicts_after_every_step(sc):
    _run(sc)


def test_kept_sums_on_long_seeded_streams():
    """Longer streams than hypothesis makes by default, over every kind of event, 1 to 6 markets."""
    import random
    ROOM_DROPS[:] = [0, 0]
    for seed in range(140):
        rng = random.Random(seed)
        n = rng.randint(1, 6) if seed < 120 else rng.randint(1, 3)
        # the last seeds: long streams on few markets, so the heaps are compacted many times over
        loss_ro = rng.choice([0.5, 0.9, 1.0])
        _run(dict(
            markets=tuple(f"KXS-{i}" for i in range(n)), me=rng.random() < 0.7, none_possible=rng.random() < 0.6,
            rate=rng.choice([0, 17_500]),
            limits=dict(max_event_loss=rng.randint(1, 80) * 1_0000, max_event_exposure=rng.randint(1, 100) * 100,
                        reduce_only_at=loss_ro, kill_at=rng.choice([loss_ro, 1.0, 1.5])),
            weight=rng.choice([0.0, 0.5, 1.0]),
            steps=[(rng.choice(KINDS), rng.randint(0, 40), rng.choice(["bid", "ask"]), rng.randint(1, 99) * 100,
                    rng.randint(1, 30) * 100, rng.randint(0, 3))
                   for _ in range(rng.randint(20, 80) if seed < 120 else 400)]))
    # the room check above is not idle: over these streams many places are dropped (and each refused)
    assert ROOM_DROPS[0] > ROOM_DROPS[1] or EventRiskGate.place_rooms is not _PLACE_ROOMS, ROOM_DROPS


def test_kept_sums_with_the_heaps_rebuilt_at_every_update(monkeypatch):
    """The same streams with the heaps compacted on (nearly) every update: a rebuild must read every
    market's numbers as stored after the update that triggered it."""
    from kmm.engine.eventsums import EventSums
    monkeypatch.setattr(EventSums, "COMPACT_FACTOR", 1)
    monkeypatch.setattr(EventSums, "COMPACT_SLACK", 0)
    monkeypatch.setattr(EventRiskGate, "place_rooms", lambda self, t, step=100: (ROOM_OPEN, ROOM_OPEN))  # checked above
    test_kept_sums_on_long_seeded_streams()


def _run(sc: dict) -> None:
    markets = sc["markets"]
    pf = Portfolio(cash=10_000_0000)
    om = OrderManager(ManualClock(), session="ktest")
    fast = EventRiskGate(EventLimits(**sc["limits"]), pf, LiveResting(om))
    slow = EventRiskGate(EventLimits(**sc["limits"]), Unwatched(pf), Unwatched(LiveResting(om)))  # type: ignore[arg-type]
    assert fast.incremental and not slow.incremental
    spec = EventSpec("KXS", sc["me"], markets, sc["none_possible"])
    fb = fast.add_event(spec, maker_fee_rate_e6=sc["rate"])
    sb = slow.add_event(spec, maker_fee_rate_e6=sc["rate"])
    made = []
    for kind, i, side, price, count, x in sc["steps"]:
        t = markets[i % len(markets)]
        o = made[i % len(made)] if made else None
        if kind == "create" or o is None:
            made.append(om.create(t, side, price, count))
        elif kind == "ack" and o.order_id is None and o.is_live:
            om.on_ack(OrderAck(f"id-{o.client_order_id}", o.client_order_id, 0, o.count))
        elif kind == "amend" and o.order_id is not None:
            om.request_amend(o.order_id, price, count)
        elif kind == "decrease" and o.order_id is not None:
            om.request_decrease(o.order_id, max(0, o.remaining - count))
        elif kind == "cancel" and o.order_id is not None:
            om.request_cancel(o.order_id)
        elif kind == "cancel_ack" and o.order_id is not None:
            om.on_cancel_ack(o.order_id, reduced_by=None if x else max(0, o.remaining - 100))
        elif kind == "amend_ack" and o.order_id is not None and o.pending_price is not None:
            om.on_amend_ack(OrderAck(o.order_id, o.client_order_id, o.fill_count,
                                     max(0, (o.pending_count or 0) - o.fill_count)))
        elif kind == "decrease_ack" and o.order_id is not None and o.pending_count is not None:
            om.on_decrease_ack(o.order_id, o.pending_count)
        elif kind in ("fail", "gone") and o.order_id is not None:
            om.on_request_failed(o.order_id, "refused", gone=kind == "gone")
        elif kind == "fill" and o.order_id is not None and o.fill_count < o.count + 1000:
            n = min(max(o.remaining, 100), count)
            f = Fill(f"f{next(_tid)}", o.order_id, o.client_order_id, o.ticker, o.side, o.price, n,
                     trade_fee(n, o.price, sc["rate"]), False, None, 0)
            om.on_fill(f)
            pf.apply_fill(f)
        elif kind == "user_fill" and o.order_id is not None and o.remaining > 0:
            n = min(o.remaining, count)       # the exchange reports a fill before its fill message
            om.on_user_order(UserOrder(o.order_id, o.client_order_id, o.ticker,
                                       "resting" if n < o.remaining else "executed", o.side, o.price,
                                       o.count, o.fill_count + n, o.remaining - n))
        elif kind == "user_order" and o.order_id is not None:
            om.on_user_order(UserOrder(o.order_id, o.client_order_id, o.ticker,
                                       ("resting", "canceled", "executed")[x % 3], o.side, price, o.count,
                                       o.fill_count, o.remaining if x % 3 == 0 else 0))
        elif kind == "load":
            q = (count if side == "bid" else -count) * (x - 1)
            pf.load_position(MarketPosition(t, q, abs(q) * price // 10_000, x * 1000, x * 100))
        elif kind == "settle" and t not in fb.results and x == 0:
            r = "yes" if side == "bid" else "no"
            if not (sc["me"] and r == "yes" and any(v == "yes" for v in fb.results.values())):
                fb.on_market_settled(t, r)
                sb.on_market_settled(t, r)
                pf.settle(t, r)
        elif kind == "baseline":
            fast.set_baseline()
            slow.set_baseline()
        old = (o.price, o.remaining) if o is not None and o.remaining > 0 and x % 2 else None
        for sd in ("bid", "ask"):
            _compare(fast, slow, t, sd, price, count, 1 if x == 3 else 100, old if sd == side else None,
                     sc["weight"])
        assert fast.status("KXS") == slow.status("KXS")
        assert fast.kill_signal() == slow.kill_signal()
        ROOM_DROPS[0] += _check_place_rooms(fast, slow, markets, price, count)
        ROOM_DROPS[1] += 1
        if fb.sums is not None and fb.sums.refresh():
            assert fb.sums.worst_now() // 100 == sb.worst().pnl
            assert fb.sums.worst_resting() // 100 == sb.worst(with_resting=True).pnl
            assert fb.sums.e_open == sb.inventory()
    assert fast.denials == slow.denials


def test_a_check_after_a_change_reads_only_the_market_that_changed():
    """The point of the kept sums: 300 markets, one order placed; the next check recomputes one market,
    not 300 (counted through the resting view's reads)."""
    pf = Portfolio(cash=10_000_0000)
    om = OrderManager(ManualClock(), session="ktest")

    class Counting(LiveResting):
        reads = 0

        def may_fill(self, ticker: str) -> list[tuple[str, int, int]]:
            Counting.reads += 1
            return super().may_fill(ticker)

    gate = EventRiskGate(EventLimits(max_event_loss=1000_0000, max_event_exposure=100_000), pf, Counting(om))
    markets = tuple(f"KXS-{i}" for i in range(300))
    gate.add_event(EventSpec("KXS", True, markets))
    assert gate.check_place("KXS-7", "bid", 4000, 500)
    assert Counting.reads == 300                     # the first check builds every market once
    om.create("KXS-7", "bid", 4000, 500)
    Counting.reads = 0
    assert gate.max_count("KXS-8", "ask", 6000, 2000) == 2000
    assert gate.check_place("KXS-9", "bid", 4000, 500)
    assert Counting.reads == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("fill"), st.sampled_from(["KXS-0", "KXS-1", "KXS-2"]), st.sampled_from(["bid", "ask", "x"]),
              st.integers(-100, 10_100), st.integers(-100, 4000), st.integers(0, 400), st.integers(0, 3)),
    st.tuples(st.just("load"), st.sampled_from(["KXS-0", "KXS-1", "KXS-3"]), st.integers(-5000, 5000),
              st.integers(-2000, 2000), st.integers(0, 500)),
    st.tuples(st.just("mark"), st.sampled_from(["KXS-0", "KXS-1", "KXS-2"]),
              st.one_of(st.none(), st.integers(0, 10_000)), st.one_of(st.none(), st.integers(0, 10_000))),
    st.tuples(st.just("settle"), st.sampled_from(["KXS-0", "KXS-1", "KXS-9"]), st.sampled_from(["yes", "no", 4000]))),
    max_size=30), st.sampled_from(["conservative", "mid"]), st.sampled_from(["cent", "exact"]))
def test_total_pnl_kept_equals_the_sum_over_markets(steps, mark, rounding):
    """Portfolio.total_pnl (realized and fees kept as running totals, unrealized over the markets held:
    the loss limit reads it after every fill) equals the former sum over every market after every step,
    net of fees and gross, with duplicate and malformed fills, loaded positions, marks and settlements."""
    pf = Portfolio(cash=10_000_0000, mark=mark, cash_rounding=rounding)

    def former(net: bool) -> int:
        from kmm.engine.portfolio import e6_to_e4
        return e6_to_e4(sum(m.realized_e6 + pf._unrealized_e6(m) - (m.fees_paid_e6 if net else 0)
                            for m in pf._markets.values()))
    for s_ in steps:
        if s_[0] == "fill":
            _, t, side, price, count, fee, dup = s_
            pf.apply_fill(Fill(f"d{dup}" if dup else f"t{next(_tid)}", f"o{dup}", None, t, side, price, count,
                               fee, False, None, 0))
        elif s_[0] == "load":
            pf.load_position(MarketPosition(s_[1], s_[2], abs(s_[2]) * 50, s_[3], s_[4]))
        elif s_[0] == "mark":
            pf.set_mark(s_[1], s_[2], s_[3])
        else:
            pf.settle(s_[1], s_[2])
        assert pf.total_pnl() == former(True)
        assert pf.total_pnl(net_of_fees=False) == former(False)


def test_refresh_brings_the_kept_sums_up_to_date_off_the_order_path():
    """``EventRiskGate.refresh`` (called by the maker once an order or fill callback is done) applies
    what changed, so the next check reads no market; a refresh that fails is logged and the next
    check applies the change itself (and raises there, as before)."""
    pf = Portfolio(cash=10_000_0000)
    om = OrderManager(ManualClock(), session="ktest")

    class Counting(LiveResting):
        reads = 0
        fail = False

        def may_fill(self, ticker: str) -> list[tuple[str, int, int]]:
            Counting.reads += 1
            if Counting.fail:
                raise RuntimeError("test: resting view")
            return super().may_fill(ticker)

    gate = EventRiskGate(EventLimits(max_event_loss=1000_0000, max_event_exposure=100_000), pf, Counting(om))
    markets = tuple(f"KXS-{i}" for i in range(5))
    gate.add_event(EventSpec("KXS", True, markets))
    assert gate.check_place("KXS-1", "bid", 4000, 500)
    om.create("KXS-3", "bid", 4000, 500)
    sums = gate.event_of("KXS-3").sums
    assert sums.dirty == {"KXS-3"}
    Counting.reads = 0
    gate.refresh()
    assert Counting.reads == 1 and not sums.dirty
    assert gate.fits_whole("KXS-2", "ask", 6000, 500) and Counting.reads == 1     # nothing left to apply
    om.create("KXS-4", "bid", 4000, 500)
    Counting.fail = True
    gate.refresh()                                   # logged, not raised: the market stays dirty
    assert sums.dirty == {"KXS-4"}
    Counting.fail = False
    assert gate.check_place("KXS-2", "ask", 6000, 500) and not sums.dirty
