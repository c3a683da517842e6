"""A socket read that moves several markets: every market is decided before any request is written, and
each market's first request goes out before any market's second (``FrameEntry`` and its reference
collect the read's decisions, ``Engine._act_read`` sends them).

- End to end through the connector (the compiled entry and the plain-Python reference): three markets'
  deltas in one read make three decisions, all stamped before the first request; the requests are
  written market by market in the order the markets first changed, first requests first; the marks
  come after every request.
- ``Engine._act_read`` against ``Engine._act`` called market after market (the former order), over
  random decisions: the same requests per market in the same order, the same stamps, the same
  blocked markets, the same skipped reprices; only markets' requests change places, and in rounds.
- A market whose requests raise leaves the other markets' requests sent, its marks made; the error is
  raised once all are done.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm._core.wire import BookRouter
from kmm.config import load_config
from kmm.engine import maker as maker_mod
from kmm.engine.clock import SystemClock
from kmm.engine.live import Engine, EngineOptions
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.kalshi import ConnectorConfig
from kmm.kalshi.ws import KalshiWs
from tests.kalshi.test_ws_frames import delta as delta_frame, snapshot as snapshot_frame
from tests.reference.entry import RefFrameEntry

MARKETS = ("KXREAD-26-A", "KXREAD-26-B", "KXREAD-26-C", "KXREAD-26-D")
WS_CFG = ConnectorConfig(env="sim", rest_url="http://127.0.0.1:1/trade-api/v2",
                         ws_url="ws://127.0.0.1:1/trade-api/ws/v2")


def _engine(n: int, mode: str = "entry") -> tuple[Engine, KalshiWs, list[tuple[Any, ...]]]:
    """An engine on ``n`` compiled markets behind its own connector (no connection), quoting; its
    ``_apply`` records each action it is given (every one "written") and ``_marks`` records the
    marks: ``log`` holds ("apply", ticker, side, decisions stamped so far) and ("marks", ticker)."""
    tickers = MARKETS[:n]
    cfg = load_config(None, environ={}, cli={"run.markets": ",".join(tickers), "strategy.quote_size": "5",
                                            "strategy.max_position": "30", "run.coalesce_reads": "read"})
    e = Engine(cfg, ConnectorConfig(env="sim"), clock=SystemClock(), options=EngineOptions(view="off"))
    orig = maker_mod.MarketPipeline
    maker_mod.MarketPipeline = functools.partial(MarketPipeline, compiled=True)  # type: ignore[misc]
    try:
        for t in tickers:
            grid = Grid("linear_cent")
            e.gate.add_market(t, grid, close_time_ns=None, fractional=False)
            e.freshness.add(t)
            e._add_pipeline(MarketInfo(t, grid, None))
    finally:
        maker_mod.MarketPipeline = orig  # type: ignore[misc]
    e.quoting = True
    log: list[tuple[Any, ...]] = []

    def apply(pipe: Any, actions: Any, trigger_ns: int) -> int:
        n_sent = 0
        for a in actions:
            log.append(("apply", pipe.ticker, a.side, len(e.decide_ns)))
            n_sent += 1
        return n_sent
    marks = e._marks

    def marked(ticker: str, inp: Any) -> None:
        log.append(("marks", ticker))
        marks(ticker, inp)
    e._apply, e._marks = apply, marked  # type: ignore[method-assign]
    ws = KalshiWs(WS_CFG, e, router=BookRouter(), book_factory=OrderBook)
    ws.add_markets({t: "linear_cent" for t in tickers})
    e.session.ws = ws
    assert ws.entry is not None and ws.entry.coalesce
    if mode == "reference":
        from kmm.kalshi.ws import log as ws_log
        ref = RefFrameEntry(ws.router, ws.stats, ws._after_feed, ws._raw, ws_log, e, e.session, e.clock,
                            coalesce=True, flush_python=False)
        for t in tickers:
            ref.add(t, e.pipes[t].core, e.pipes[t], e.freshness.get(t))
        ws.entry, ws._feed = ref, ref.feed
        e.entry = ref
    for i, t in enumerate(tickers):
        ws._feed(snapshot_frame(1 + i, 1, t, yes=(("0.4000", "10.00"),), no=(("0.5500", "12.00"),)),
                 e.clock.monotonic_ns(), True)
        assert e.pipes[t].ready, t
    log.clear()
    e.decide_ns.clear()
    return e, ws, log


@pytest.mark.parametrize("mode", ["entry", "reference"])
def test_a_read_of_three_markets_is_decided_whole_then_sent_first_requests_first(mode: str) -> None:
    e, ws, log = _engine(3, mode)
    order = (MARKETS[1], MARKETS[0], MARKETS[2])           # the order the markets first change in the read
    recv = e.clock.monotonic_ns()
    for k, t in enumerate(order):
        # the best bid moves up a cent: each market re-quotes (two places: it holds no order)
        ws._feed(delta_frame(1 + MARKETS.index(t), 2, t, price="0.4100", d="5.00"), recv, k == len(order) - 1)
    applies = [x for x in log if x[0] == "apply"]
    assert len(e.decide_ns) == 3 and all(d > 0 for d in e.decide_ns)
    # every decision of the read was stamped before its first request was written
    assert applies and all(x[3] == 3 for x in applies), applies
    # the first request of each market, in the order they changed, then each market's second
    assert [x[1] for x in applies] == list(order) * 2, applies
    by_market = {t: [x[2] for x in applies if x[1] == t] for t in order}
    assert all(sorted(v) == [0, 1] for v in by_market.values()), by_market
    # the marks of the read's book decisions after all of its requests
    last_apply = max(i for i, x in enumerate(log) if x[0] == "apply")
    marks = [i for i, x in enumerate(log) if x[0] == "marks"]
    assert sorted(log[i][1] for i in marks) == sorted(order) and min(marks) > last_apply, log
    # every decision's trigger is the read's receive stamp
    assert all(e.pipes[t].trigger_ns == recv for t in order)
    assert ws.entry.decided >= 3 and not ws.entry.pending


def test_a_read_of_one_market_is_sent_as_before() -> None:
    e, ws, log = _engine(3)
    calls: list[str] = []
    act_read = e._act_read
    e._act_read = lambda d: (calls.append("read"), act_read(d))  # type: ignore[method-assign]
    recv = e.clock.monotonic_ns()
    ws._feed(delta_frame(1, 2, MARKETS[0], price="0.4100", d="5.00"), recv, False)
    ws._feed(delta_frame(1, 3, MARKETS[0], price="0.4100", d="1.00"), recv, True)
    assert calls == [] and len(e.decide_ns) == 1
    # one decision, both of its requests, in _act's order
    assert [(x[1], x[2]) for x in log if x[0] == "apply"] == [(MARKETS[0], 0), (MARKETS[0], 1)]


class _Act:
    def __init__(self, side: int, i: int) -> None:
        self.kind, self.side, self.i = 0, side, i


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_act_read_sends_what_act_sends_market_after_market_in_rounds(data: Any) -> None:
    n = data.draw(st.integers(2, 4))
    plans = []
    for k in range(n):
        # per action: written (1) or refused by the planner (0); a decision may write nothing
        sent = data.draw(st.lists(st.integers(0, 1), min_size=1, max_size=4))
        skip = data.draw(st.integers(0, 5)) == 0           # a small reprice under pressure: skipped whole
        live = data.draw(st.integers(0, 2))
        marks = data.draw(st.booleans())
        plans.append((MARKETS[k], sent, skip, live, marks))
    got = []
    for how in ("read", "act"):
        e, _, _ = _engine(n)
        log: list[tuple[Any, ...]] = []
        verdict = {t: s for t, s, _, _, _ in plans}

        def apply(pipe: Any, actions: Any, trigger_ns: int, log: Any = log, verdict: Any = verdict) -> int:
            out = 0
            for a in actions:
                log.append((pipe.ticker, a.i))
                out += verdict[pipe.ticker][a.i]
            return out
        e._apply = apply  # type: ignore[method-assign]
        e._small_reprices_only = lambda p, a, plans=plans: any(  # type: ignore[method-assign]
            t == p.ticker and s for t, _, s, _, _ in plans)
        e._mark_top = lambda p, log=log: log.append(("marks", p.ticker))  # type: ignore[method-assign]
        e.blocked[MARKETS[0]] = ("earlier", "")             # a market blocked before the read
        for t, *_ in plans:
            e.pipes[t].decided_ns = 0                       # (the snapshot's decision stamped it)
        decisions = [(e.pipes[t], tuple(_Act(i % 2, i) for i in range(len(s))), live, 1_000 + k,
                      e.decide_ns, marks, 5_000 + 10 * k) for k, (t, s, _, live, marks) in enumerate(plans)]
        if how == "read":
            e._act_read(decisions)
        else:
            for d in decisions:
                e._act(*d)
        got.append((log, list(e.decide_ns), {t: e.pipes[t].decided_ns for t, *_ in plans},
                    sorted(e.blocked), e.skipped_reprices))
    (rlog, rstamps, rdec, rblocked, rskip), (alog, astamps, adec, ablocked, askip) = got
    assert (rstamps, rdec, rblocked, rskip) == (astamps, adec, ablocked, askip)
    requests = [x for x in rlog if x[0] != "marks"]
    for t, *_ in plans:                                     # each market's own order is kept
        assert [x for x in requests if x[0] == t] == [x for x in alog if x[0] == t]
    assert sorted(requests) == sorted(x for x in alog if x[0] != "marks")
    # round one: each market up to its first written request, in the decisions' order
    first = []
    for t, s, skip, _, _ in plans:
        if not skip:
            upto = s.index(1) + 1 if 1 in s else len(s)
            first += [(t, i) for i in range(upto)]
    assert requests[:len(first)] == first
    # the marks after every request, one per decision that asked for them
    n_req = len(requests)
    assert all(x[0] != "marks" for x in rlog[:n_req])
    assert sorted(x[1] for x in rlog[n_req:]) == sorted(t for t, _, _, _, m in plans if m)


def test_a_market_that_raises_leaves_the_others_sent_and_marked() -> None:
    e, _, _ = _engine(3)
    log: list[Any] = []

    def apply(pipe: Any, actions: Any, trigger_ns: int) -> int:
        for a in actions:
            if pipe.ticker == MARKETS[1] and a.i == 1:
                raise RuntimeError("boom")
            log.append((pipe.ticker, a.i))
        return len(actions)
    e._apply = apply  # type: ignore[method-assign]
    e._mark_top = lambda p: log.append(("marks", p.ticker))  # type: ignore[method-assign]
    decisions = [(e.pipes[t], (_Act(0, 0), _Act(1, 1)), 0, 1, e.decide_ns, True, 2) for t in MARKETS[:3]]
    with pytest.raises(RuntimeError, match="boom"):
        e._act_read(decisions)
    assert log == [(MARKETS[0], 0), (MARKETS[1], 0), (MARKETS[2], 0), (MARKETS[0], 1), (MARKETS[2], 1),
                   ("marks", MARKETS[0]), ("marks", MARKETS[1]), ("marks", MARKETS[2])]
    assert len(e.decide_ns) == 3


@pytest.mark.parametrize("mode", ["entry", "reference"])
def test_the_event_rooms_are_asked_only_for_a_market_whose_event_refused_lately(mode: str) -> None:
    """The compiled entry reads EventWiring's open rooms itself for a market not in its hot set (no
    Python frame) and asks ``rooms`` for one that is, which counts its hot decisions down: the same
    rooms and the same count as the reference, which always asks."""
    from kmm.engine.eventwire import ROOMS_OPEN_STEP
    e, ws, log = _engine(2, mode)
    hot = e.event_risk._hot
    assert mode != "entry" or ws.entry.hot is hot
    a, b = MARKETS[0], MARKETS[1]
    hot[b] = 3
    asked: list[str] = []
    rooms_now = e.event_risk.rooms_now

    def rooms_now_spy(ticker: str, fractional: bool = False) -> tuple[int, int, int]:
        asked.append(ticker)
        return (1_000_000, 2_000_000, 100)               # a room that binds: the decision must read it
    e.event_risk.rooms_now = rooms_now_spy  # type: ignore[method-assign]
    recv = e.clock.monotonic_ns()
    ws._feed(delta_frame(1, 2, a, price="0.4100", d="5.00"), recv, False)
    ws._feed(delta_frame(2, 2, b, price="0.4100", d="5.00"), recv, True)
    assert asked == [b] and hot == {b: 2}
    ca, cb = e.pipes[a].core, e.pipes[b].core
    assert (ca.bid_room, ca.ask_room, ca.block_step) == ROOMS_OPEN_STEP
    assert (cb.bid_room, cb.ask_room, cb.block_step) == (1_000_000, 2_000_000, 100)
    e.event_risk.rooms_now = rooms_now  # type: ignore[method-assign]
