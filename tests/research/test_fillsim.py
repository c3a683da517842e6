"""The compiled fill simulator (kmm._core.fillsim.FillCore, bound on a ``FillSimulator`` by default)
against its plain-Python reference (``FillSimulator(compiled=False)``: the class's own methods).

Both are fed the same random streams of orders (places, post-only or not; amends that keep or lose the
queue place, refused ones; decreases; cancels), recorded trades (at, through and short of our prices,
prints of one taker sweep in the same millisecond, reaction trades), recorded book deltas (others' and
the recorded run's own, with the level named or unknown), snapshots, expiries and the pick-off hazard,
under every queue model, on the compiled book and on a plain-Python book. After every step: every
returned fill and ack field, every order's fields (queue estimate, pending decreases and trade credits
included), the resting sets, the statistics, the counters, the taken liquidity and the books."""

from __future__ import annotations

import copy
import random

from hypothesis import example, given, seed, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.fillsim import queue_after_cancel
from kmm._core.grid import Grid
from kmm.research.adverse import ALL, BUCKETS, PickoffModel
from kmm.research.fills import LINEAR_CENT, FillSimulator, MarketDef, SimOrder
from kmm.research.queue import QUEUE_MODELS, QueueModel
from tests.reference.book import RefBook

T, U = "KXTEST-26-A", "KXTEST-26-B"
MS = 1_000_000
PRICES = [3900, 4000, 4100, 5900, 6000, 6100]         # YES; the book rests at 39-41 c on both sides
LEVELS = [3900, 4000, 4100]                           # in each side's own terms


def _build(compiled: bool, queue: QueueModel, plain_u: bool, fractional: bool, pickoff: str | None,
           window_ns: int, book: list[tuple[int, int, int]]) -> FillSimulator:
    defs = {T: MarketDef(T, maker_rate_e6=17_500, fractional=fractional), U: MarketDef(U)}
    sim = FillSimulator(defs, queue, trade_window_ns=window_ns, compiled=compiled)
    assert sim.compiled is compiled
    sim.attach_book(T, OrderBook(Grid(list(LINEAR_CENT))))
    sim.attach_book(U, RefBook(list(LINEAR_CENT)) if plain_u else OrderBook(Grid(list(LINEAR_CENT))))
    for t in (T, U):
        for side, price, size in [(0, 4000, 1000), (1, 4000, 1000), *book]:
            sim.markets[t].book.apply_level_delta(side, price, size)
    sim.keep_outcomes = True
    sim.rng = random.Random(7)
    if pickoff == "always":
        sim.pickoff = PickoffModel("always", 0.5, reaction_ids=frozenset({"r1", "r2"}))
    elif pickoff == "rate":
        sim.pickoff = PickoffModel("rate", 0.3, {ALL: (3e3,) * BUCKETS}, {ALL: (100, 300)},
                                   reaction_ids=frozenset({"r1"}))
    return sim


def _fields(x) -> tuple:
    if x is None:
        return (None,)
    if isinstance(x, SimOrder):
        return tuple(_order(x))
    return tuple((k, getattr(x, k)) for k in type(x).__dataclass_fields__)


def _order(o: SimOrder) -> list:
    out = []
    for k in SimOrder.__slots__:
        v = getattr(o, k)
        if k == "sweep" and v is not None:
            v = (v[0], v[1], _fields(v[2]), v[3], v[4])
        out.append((k, copy.deepcopy(v)))
    return out


def _result(r) -> object:
    if isinstance(r, tuple):
        return tuple(_result(x) for x in r)
    if isinstance(r, list):
        return [_result(x) for x in r]
    if r is None or isinstance(r, (int, str, float)):
        return r
    return _fields(r)


def _state(sim: FillSimulator) -> tuple:
    return ([_order(o) for o in sim.orders.values()],
            sorted(sim.by_coid),
            [(t, list(m.orders), dict(m.live_own), dict(m.taken), m.book.levels()) for t, m in sim.markets.items()],
            repr(sim.stats), sim._n_orders, sim._n_trades, sorted(sim.corrected), [o.order_id for o in sim._swept],
            dict(sim.trade_outcomes), dict(sim.pickoff_by_ticker), sim.rng.getstate())


@st.composite
def _steps(draw) -> list[tuple]:
    out: list[tuple] = []
    for _ in range(draw(st.integers(1, 80))):
        kind = draw(st.sampled_from(["place", "place", "place", "amend", "amend", "decrease", "cancel", "trade",
                                     "trade", "trade", "delta", "delta", "delta", "delta", "own", "snapshot", "end",
                                     "expire", "event", "tick", "tick"]))
        t = draw(st.sampled_from([T, T, U]))
        if kind == "place":
            out.append((kind, t, draw(st.sampled_from(["bid", "ask"])), draw(st.sampled_from(PRICES)),
                        draw(st.sampled_from([1, 100, 250, 500, 1000])), draw(st.booleans())))
        elif kind == "amend":
            out.append((kind, draw(st.integers(1, 40)), draw(st.sampled_from(PRICES)),
                        draw(st.sampled_from([50, 100, 300, 800]))))
        elif kind == "decrease":
            out.append((kind, draw(st.integers(1, 40)), draw(st.sampled_from([0, 50, 100, 300]))))
        elif kind == "cancel":
            out.append((kind, draw(st.integers(1, 40))))
        elif kind == "trade":
            out.append((kind, t, draw(st.sampled_from(PRICES)), draw(st.sampled_from([1, 37, 100, 300, 1200, 5000])),
                        draw(st.sampled_from(["bid", "ask"])), draw(st.sampled_from(["", "t", "r1", "r2"])),
                        draw(st.booleans())))
        elif kind in ("delta", "own"):
            side = draw(st.sampled_from([0, 1]))
            out.append((kind, t, side, draw(st.sampled_from(LEVELS)),
                        draw(st.sampled_from([-2000, -500, -100, -37, 100, 400])), draw(st.booleans())))
        elif kind == "snapshot":
            out.append((kind, t, draw(st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from(PRICES),
                                                         st.sampled_from([100, 700, 3000])), max_size=5))))
        elif kind == "tick":
            out.append((kind, draw(st.sampled_from([0, 1, 2 * MS, 4 * MS, 20 * MS]))))
        else:
            out.append((kind, t))
    return out


def _run(sim: FillSimulator, steps: list[tuple]) -> list:
    now, wall = 1_000 * MS, 50_000
    got: list = []
    tid = 0
    for step in steps:
        kind = step[0]
        now += MS // 2
        if kind == "tick":
            now += step[1]
            wall = now // MS - 950
            continue
        try:
            if kind == "place":
                _, t, side, price, count, po = step
                r = sim.place(now, wall, t, side, price, count, f"c{len(sim.orders)}", post_only=po)
            elif kind == "amend":
                r = sim.amend(now, wall, f"bt-{step[1]}", step[2], step[3])
            elif kind == "decrease":
                r = sim.decrease(now, wall, f"bt-{step[1]}", step[2])
            elif kind == "cancel":
                r = sim.cancel(now, wall, f"bt-{step[1]}")
            elif kind == "trade":
                _, t, price, count, taker, trade_id, same_ms = step
                tid += 1
                if trade_id == "t":
                    trade_id = f"t{tid}"
                r = sim.on_trade(now, wall if same_ms else wall + 1, t, price, count, taker, trade_id)
                if not same_ms:
                    wall += 1
            elif kind in ("delta", "own"):
                _, t, side, price, delta, named = step
                sim.apply_recorded_delta(t, side, price, delta, kind == "own")
                sim.on_book_change(now, t, side << 16 | price if named and kind == "delta" else -1)
                r = None
            elif kind == "snapshot":
                _, t, levels = step
                book = sim.markets[t].book
                yes = {p: s for side, p, s in levels if side == 0 and p < 5000}
                no = {10_000 - p: s for side, p, s in levels if side == 1 or p >= 5000}
                book.apply_snapshot([[f"{p / 10_000:.4f}", f"{s / 100:.2f}"] for p, s in sorted(yes.items())],
                                    [[f"{p / 10_000:.4f}", f"{s / 100:.2f}"] for p, s in sorted(no.items())])
                sim.on_snapshot(t)
                r = None
            elif kind == "end":
                sim.end_sweeps()
                r = None
            elif kind == "expire":
                sim.expire_all(now)
                r = None
            else:
                r = sim.after_event(now, wall, step[1])
            got.append((kind, _result(r)))
        except Exception as e:          # the same error on both (a book desync, ...): compared, then on
            got.append((kind, type(e).__name__, str(e)))
        got.append(_state(sim))
    return got


# a fixed seed and no example database: test_the_random_streams_fill_queue_and_cancel counts what these
# streams reach, and with fresh random streams each run it failed about one run in six (9 examples with
# pick-off fills where it asks for 10); a database's replayed (shrunk, quiet) examples made it worse
@seed(20261129)
@settings(max_examples=500, deadline=None, database=None)
@given(steps=_steps(), queue=st.sampled_from(QUEUE_MODELS), power=st.sampled_from([0.5, 1.0, 2.0, 3]),
       plain_u=st.booleans(), fractional=st.booleans(), pickoff=st.sampled_from([None, None, "always", "rate"]),
       window=st.sampled_from([0, 2 * MS, 5 * MS]),
       book=st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from(LEVELS),
                               st.sampled_from([100, 500, 2000])), max_size=6))
def test_the_compiled_fill_simulator_makes_the_python_simulators_fills_acks_orders_and_queues(
        steps, queue, power, plain_u, fractional, pickoff, window, book):
    q = QueueModel(queue, power)
    a = _build(True, q, plain_u, fractional, pickoff, window, book)
    b = _build(False, q, plain_u, fractional, pickoff, window, book)
    ra, rb = _run(a, steps), _run(b, steps)
    _SEEN.append((a.stats, sum(1 for r in ra if r[0] == "snapshot" and len(r) == 2)))
    assert len(ra) == len(rb)
    for i, (x, y) in enumerate(zip(ra, rb)):
        assert x == y, (i, steps[i // 2] if i // 2 < len(steps) else None)


_SEEN: list = []


def test_the_random_streams_fill_queue_and_cancel():
    """The streams above are not all quiet (runs after the property test, on what it saw): orders
    filled at their level, through it and by the pick-off hazard, post-only cancels, taker fills,
    queue advances by cancels and by trades, reaction trades left out, snapshots applied."""
    if not _SEEN:
        return
    tot = lambda k: sum(getattr(s, k) > 0 for s, _ in _SEEN)     # noqa: E731
    for k in ("fills_at_level", "fills_through", "pickoff_fills", "post_only_cancels", "taker_fills",
              "queue_cancel_advance", "trade_advance", "reaction_trades", "own_deltas_removed", "clamped"):
        assert tot(k) >= 10, k
    assert sum(n for _, n in _SEEN) >= 3


def test_a_subclass_that_overrides_a_step_keeps_the_python_steps():
    class Watched(FillSimulator):
        def on_trade(self, *a, **kw):          # type: ignore[override]
            return super().on_trade(*a, **kw)
    sim = Watched({T: MarketDef(T)})
    assert not sim.compiled and sim._core is None
    assert FillSimulator({T: MarketDef(T)}).compiled


def test_the_replays_of_a_generated_feed_see_the_same_steps_compiled():
    """The binding: a compiled simulator's methods are the core's, a reference one's its class's."""
    a = FillSimulator({T: MarketDef(T)})
    b = FillSimulator({T: MarketDef(T)}, compiled=False)
    for name in FillSimulator.COMPILED:
        assert getattr(a, name).__self__ is a._core
        assert getattr(b, name).__func__ is getattr(FillSimulator, name)


_size = st.one_of(st.integers(0, 5000).map(float), st.floats(0, 5000, allow_nan=False), st.floats(0, 1e7),
                  st.just(0.0))


@settings(max_examples=2000, deadline=None)
@given(kind=st.sampled_from(QUEUE_MODELS), power=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 7.5]),
       ahead=_size, behind=_size, cancelled=st.one_of(st.integers(-5, 5000), st.integers(0, 10_000_000)))
@example(kind="log", power=2.0, ahead=500.0, behind=100.0, cancelled=400)      # more from behind than there is
@example(kind="power", power=0.5, ahead=1500.0, behind=300.0, cancelled=900)
@example(kind="pessimistic", power=2.0, ahead=700.0, behind=200.0, cancelled=500)
def test_the_compiled_cancel_split_is_the_queue_models(kind, power, ahead, behind, cancelled):
    """The queue model's arithmetic in C (every branch: a share from the front, the excess over the
    size behind taken from the front, nothing in front, nothing behind)."""
    want = QueueModel(kind, power).after_cancel(ahead, behind, cancelled)
    got = queue_after_cancel(kind, power, ahead, behind, cancelled)
    assert got == want and type(got) is type(want)
