"""The replay's write queue is the live connector's: the same RateLimiter object, driven without an event
loop (kmm.research.writequeue), must grant the same requests in the same order at the same times as
``RateLimiter.acquire`` does live, drop the same ones, and the backtest must send in that order."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.kalshi import limiter as lim
from kmm.kalshi.limiter import FAIR_KEY, NotSent, RateLimiter
from kmm.research.backtest import BacktestOptions
from kmm.research.writequeue import ReplayWriteQueue
from tests.research.helpers import T
from tests.research.test_backtest import bt, busy_level

MS = 1_000_000
T0 = 1_000_000_000
STEP = MS
COST = {lim.CANCEL: 2, lim.AMEND: 10, lim.PLACE: 10}


def _empty_limiter(clock: list[int]) -> RateLimiter:
    r = RateLimiter.for_tier("basic", clock_ns=lambda: clock[0])
    r.write.refill(clock[0])
    r.write.tokens = 0.0
    return r


def live_grants(reqs: list[tuple[int, str, int, str]], until_ns: int) -> list[tuple[str, int | None]]:
    """Each (submit time, name, lane, market) through the live ``RateLimiter.acquire`` (asyncio tasks with
    FAIR_KEY set as the maker sets it), the clock moved in STEP steps and the limiter dispatched at each:
    (name, grant time or None when dropped), in grant order."""
    out: list[tuple[str, int | None]] = []

    async def main() -> None:
        clock = [T0]
        r = _empty_limiter(clock)

        async def one(name: str, lane: int, key: str) -> None:
            FAIR_KEY.set(key)
            try:
                await r.acquire(lane, COST[lane])
            except NotSent:
                out.append((name, None))
                return
            out.append((name, clock[0]))
        todo = sorted(reqs)
        tasks = []
        while clock[0] <= until_ns:
            while todo and todo[0][0] <= clock[0]:
                _, name, lane, key = todo.pop(0)
                tasks.append(asyncio.get_running_loop().create_task(one(name, lane, key)))
                await asyncio.sleep(0)          # it runs to its acquire (granted now or queued)
            r.dispatch()
            for _ in range(3):
                await asyncio.sleep(0)
            clock[0] += STEP
        r.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())
    return out


def replay_grants(reqs: list[tuple[int, str, int, str]], until_ns: int) -> list[tuple[str, int | None]]:
    """The same requests through :class:`ReplayWriteQueue` on the same stepped clock."""
    out: list[tuple[str, int | None]] = []
    clock = [T0]
    wq = ReplayWriteQueue(_empty_limiter(clock))
    todo = sorted(reqs)
    while clock[0] <= until_ns:
        while todo and todo[0][0] <= clock[0]:
            _, name, lane, key = todo.pop(0)
            if wq.submit(lane, COST[lane], key, lambda n=name: out.append((n, clock[0])),
                         lambda exc, n=name: out.append((n, None))):
                out.append((name, clock[0]))
        wq.dispatch()
        clock[0] += STEP
    return out


def test_the_market_served_least_goes_first_as_live():
    """Market A has had 5 writes granted, B none: with the bucket empty, A queues two amends, then B one.
    Live and in the replay B's amend leaves first (least served), then A's; first come first served
    (the replay's queue before) would have sent A's two first and left B's quote stale longer."""
    clock = [T0]
    r = RateLimiter.for_tier("basic", clock_ns=lambda: clock[0])
    wq = ReplayWriteQueue(r)
    for _ in range(5):
        assert wq.submit(lim.AMEND, 10, "A", lambda: None, lambda exc: None)   # the bucket pays at once
    r.write.tokens = 0.0
    got: list[str] = []
    for name, key in (("a1", "A"), ("a2", "A"), ("b1", "B")):
        assert not wq.submit(lim.AMEND, 10, key, lambda n=name: got.append(n), lambda exc: None)
    while wq.waiting():
        clock[0] += 10 * MS
        wq.dispatch()
    assert got == ["b1", "a1", "a2"]
    # the same three through the live limiter's acquire
    reqs = [(T0 + i * MS, f"w{i}", lim.AMEND, "A") for i in range(5)]
    later = (("a1", "A"), ("a2", "A"), ("b1", "B"))
    reqs += [(T0 + 5 * MS + i * MS, n, lim.AMEND, k) for i, (n, k) in enumerate(later)]
    # (here the bucket starts empty, so all eight queue: the two queues must still serve them alike)
    assert live_grants(reqs, T0 + 2 * 10**9) == replay_grants(reqs, T0 + 2 * 10**9)


def test_a_place_that_waited_a_second_goes_before_the_amends_and_a_stale_one_is_dropped():
    """Amends of market A keep coming (30 a second, the budget pays 10): the place of market B queued
    at the start waits behind them only until it has waited promote_after_s (1 s); places still queued
    after max_queue_s (4 s) are dropped, never sent. Live and replay grant and drop the same."""
    reqs = [(T0, "placeB", lim.PLACE, "B")]
    reqs += [(T0 + i * 33 * MS, f"amendA{i}", lim.AMEND, "A") for i in range(150)]
    reqs += [(T0 + 10 * MS + i * MS, f"placeC{i}", lim.PLACE, "C") for i in range(40)]
    live = live_grants(reqs, T0 + 5 * 10**9)
    rep = replay_grants(reqs, T0 + 5 * 10**9)
    assert rep == live
    when = dict(rep)
    assert when["placeB"] is not None and 1.0e9 <= when["placeB"] - T0 < 1.1e9
    dropped = [n for n, t in rep if t is None]
    assert dropped and all(n.startswith(("placeC", "amendA")) for n in dropped)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1500), st.sampled_from([lim.CANCEL, lim.AMEND, lim.PLACE]),
                          st.sampled_from(["A", "B", "C"])), min_size=1, max_size=60))
def test_the_replay_queue_grants_as_the_live_limiter_for_any_requests(raw):
    """Any requests (time in ms, lane, market) on an empty bucket: the same grants, order, times and drops."""
    reqs = [(T0 + t * MS, f"r{i}", lane, key) for i, (t, lane, key) in enumerate(raw)]
    assert replay_grants(reqs, T0 + 7 * 10**9) == live_grants(reqs, T0 + 7 * 10**9)


def test_the_backtest_sends_queued_requests_least_served_market_first(tmp_path):
    """In the replay driver: with the write bucket empty, market A queues two amends after five writes
    of its own, then market B one: B's leaves first."""
    b = bt(tmp_path, busy_level(), BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0",
                                                   rate_tier="basic"), bid=0)
    b.clock.mono = T0
    left: list[str] = []
    pa = SimpleNamespace(ticker="A", in_flight=0, ready=True, dirty=False)
    pb = SimpleNamespace(ticker="B", in_flight=0, ready=True, dirty=False)

    def act(name):
        return lambda: (left.append(name), (lambda: None))[1]
    b.limiter.write.refill(T0)
    b.limiter.write.tokens = 100.0
    for i in range(5):
        b._send(pa, False, T0, lim.AMEND, act(f"w{i}"))
    assert b.rate_waits == 0
    b.limiter.write.tokens = 0.0
    b._send(pa, False, T0, lim.AMEND, act("a1"))
    b._send(pa, False, T0, lim.AMEND, act("a2"))
    b._send(pb, False, T0, lim.AMEND, act("b1"))
    assert b.rate_waits == 3
    b._run_events(T0 + 2 * 10**9)
    assert left == ["w0", "w1", "w2", "w3", "w4", "b1", "a1", "a2"]
    assert pa.in_flight == 0 and pb.in_flight == 0


def test_a_place_dropped_from_the_queue_never_reaches_the_exchange(tmp_path):
    """A create still queued after max_queue_s (4 s) is dropped as live (NotSent, a create rejected for the
    rate limit) when the limiter next looks at its queue (here: when the 10 s pause after a 429 ends, as
    the live limiter's timer does): nothing rests at the exchange, the order manager closes it, the
    market is free again."""
    b = bt(tmp_path, busy_level(), BacktestOptions(feed_latency="0", entry_latency="0", response_latency="0",
                                                   rate_tier="basic"), bid=0)
    b.clock.mono = T0
    b.limiter.write.refill(T0)
    b.limiter.write.tokens = 0.0
    b.limiter.on_rate_limited(lim.PLACE)     # a 429: places wait out the back-off ...
    b.limiter._w0.paused_until_ns = T0 + 10 * 10**9     # ... held 10 s here, longer than max_queue_s
    pipe = b.pipes[T]
    o = b.om.create(T, "bid", 4000, 500)
    b._send(pipe, True, T0, lim.PLACE, b._x_place, o.client_order_id, T, "bid", 4000, 500)
    assert pipe.in_flight == 1 and b.rate_waits == 1
    b._run_events(T0 + 9 * 10**9)
    assert b._writeq.dropped == 0 and pipe.in_flight == 1
    b._run_events(T0 + 11 * 10**9)
    assert b._writeq.dropped == 1
    assert b.sim.resting() == [] and b.sim.orders == {}      # it never reached the exchange
    assert pipe.in_flight == 0
    assert not o.is_live and o.reason == "rate limited" and o.remaining == 0
    assert not [x for x in b.om.orders() if x.is_live]
