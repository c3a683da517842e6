"""The pipelines learn the event-level refused side (EventRiskGate.place_block -> Pipeline.side_block).

A market of an event at its limit stops proposing places the event gate refuses whatever their price
and size, and proposes them again in the first decision after the event's state lets them through.
The figure: the event gate's refusals over the same decisions, with the side left unknown (0, the
former behaviour) and with it read before each decision as the engine does (Engine._frame, _requote,
FrameEntry), on the compiled pipeline and on the Python path.
"""

from __future__ import annotations

import dataclasses
import pytest

from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm.config import StrategyParams, load_config
from kmm.engine.clock import ManualClock
from kmm.engine.events import EventSpec
from kmm.engine.eventwire import EventWiring
from kmm.engine.market import MarketInfo, MarketPipeline
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.engine.quoting import PLACE, QuotePlanner
from kmm.engine.risk import RiskGate, RiskLimits
from kmm.kalshi.types import Fill, MarketPosition, OrderAck
from kmm.strategy.alpha import AlphaSource
from kmm.strategy.inside import InsideStrategy

MARKETS = ("KXEV-26-A", "KXEV-26-B", "KXEV-26-C")
WALL0 = 1_700_000_000 * 10**9


class Rig:
    """Portfolio, order manager, market gate, event wiring, planner and three pipelines over one event
    (independent markets, $10 loss limit) with 18 YES of A carried at $0.50: the worst case is -$9,
    at reduce-only (0.9 of the limit); B and C are flat."""

    def __init__(self, compiled: bool, learn: bool) -> None:
        self.clock = ManualClock()
        self.pf = Portfolio(cash=1_000_0000)
        self.om = OrderManager(self.clock, session="ktest")
        cfg = load_config(None, environ={}, cli={"risk.max_event_loss": "10", "risk.reduce_only_at": "0.9"})
        self.gate = RiskGate(RiskLimits(max_position=100_000, max_order_size=100_000), self.clock, self.pf, self.om)
        self.ev = EventWiring(cfg, self.pf, self.om)
        self.pf.load_position(MarketPosition(MARKETS[0], 1800, 9_0000, 0, 0))
        self.ev.gate.add_event(EventSpec("KXEV-26", False, MARKETS))
        self.planner = QuotePlanner(self.gate, self.om, self.pf, self.ev)
        self.ev.reduce_only_of = self.gate.reduce_only_reason     # as Engine sets it
        self.learn = learn
        self.pipes = {}
        for t in MARKETS:
            book = OrderBook()
            book.apply_snapshot([["0.4000", "10.00"]], [["0.5000", "10.00"]])
            grid = Grid("linear_cent")
            self.gate.add_market(t, grid)
            self.gate.set_book_stale(t, False)
            self.pipes[t] = MarketPipeline(MarketInfo(t, grid, None), book,
                                           InsideStrategy(grid, quote_size=500, max_position=100_000),
                                           StrategyParams(), AlphaSource(), compiled=compiled)
        self.now = 10**12
        self.proposed: list[tuple[str, str]] = []      # (market, side) of every place a decision proposed
        self.places_refused = 0                        # ... that the planner (the gates) then refused

    def refusals(self) -> int:
        return sum(self.ev.denials.values())

    def decide_all(self) -> None:
        """One decision per market, as the engine makes it: the refused sides read first, then the
        frame, then the planner (which asks the event gate for every place); creates are acked."""
        for t, pipe in self.pipes.items():
            self.now += 1_000_000
            self.gate.on_book_update(t)
            if self.learn:
                pipe.set_rooms(*self.ev.rooms(t, pipe.info.fractional))
            live = self.om.live_orders(t, now_ns=self.now)
            actions = pipe.frame(self.now, WALL0, self.ev.quote_inventory(t), live)
            places = [(t, ("bid", "ask")[a.side]) for a in actions if a.kind == PLACE]
            self.proposed += places
            placed = 0
            for step in self.planner.plan(t, actions):
                if step[0] == PLACE:
                    placed += 1
                    o = step[1]
                    self.om.on_ack(OrderAck(f"id-{o.client_order_id}", o.client_order_id, 0, o.count))
            self.places_refused += len(places) - placed


@pytest.mark.parametrize("compiled", [True, False])
def test_an_event_at_its_limit_proposes_no_refused_side_and_both_come_back_within_one_decision(compiled: bool) -> None:
    before, after = Rig(compiled, learn=False), Rig(compiled, learn=True)
    for rig in (before, after):
        rig.decide_all()
    # the event's first refusals make its markets read their rooms (EventWiring.heat): until then they
    # are not read (a market whose event is far from its limit pays nothing for them)
    first = after.refusals()
    assert 0 < first <= 5 and after.places_refused == first, after.ev.denials
    assert (MARKETS[0], "ask") in after.proposed           # the place that lowers the risk, from the start
    n_first = len(after.proposed)
    for rig in (before, after):
        for _ in range(4):
            rig.decide_all()
    # the former behaviour: B and C ask for both sides and A for its bid on every decision; all refused
    assert before.ev.gate.status("KXEV-26").value == "reduce_only"
    assert before.refusals() >= 5 * 5 - 1, before.ev.denials
    assert before.places_refused == before.refusals()
    # learnt: no place the event gate refuses is proposed again, and the one that lowers risk still is
    assert after.refusals() == after.places_refused == first, after.ev.denials
    assert set(after.proposed[n_first:]) <= {(MARKETS[0], "ask")}
    assert after.om.open_qty(MARKETS[0], "ask") == 500
    assert after.ev.rooms_now(MARKETS[1]) == after.ev.rooms_now(MARKETS[2]) == (-1, -1, 100)   # flat
    assert after.ev.rooms_now(MARKETS[0])[0] == -1                                              # long A: no bid

    # the limit is raised: the event is ok again and both sides of B and C come back in one decision
    gate = after.ev.gate
    gate.limits = dataclasses.replace(gate.limits, max_event_loss=100_0000)
    assert gate.status("KXEV-26").value == "ok"
    after.proposed.clear()
    after.decide_all()
    assert {(MARKETS[1], "bid"), (MARKETS[1], "ask"), (MARKETS[2], "bid"), (MARKETS[2], "ask"),
            (MARKETS[0], "bid")} <= set(after.proposed)
    assert after.refusals() == first


@pytest.mark.parametrize("compiled", [True, False])
def test_the_refused_side_follows_fills_and_order_changes(compiled: bool) -> None:
    """A's ask fills and takes the event out of reduce-only: the next decision proposes the sides refused
    before; the new resting orders (sized by the gate) bring it to the limit, after which the places
    they leave no room for are not proposed."""
    rig = Rig(compiled, learn=True)
    rig.decide_all()                        # the event's first refusals: its markets read their rooms
    refused_first = rig.places_refused
    assert refused_first > 0
    a = rig.om.live_orders(MARKETS[0], "ask")[0]
    f = Fill("t1", a.order_id, a.client_order_id, MARKETS[0], "ask", a.price, a.remaining, 0, True, None, 0)
    rig.om.on_fill(f)
    rig.pf.apply_fill(f)                    # 13 YES left: worst -$6.5 + 5 x 0.49 gain, below reduce-only
    assert rig.ev.gate.status("KXEV-26").value == "ok"
    rig.proposed.clear()
    rig.decide_all()
    # B, refused on both sides in reduce-only, asks for both in its first decision after the fill (C
    # comes after B in the round: what B placed may leave it no room, and then it asks for nothing)
    assert {(MARKETS[1], "bid"), (MARKETS[1], "ask")} <= set(rig.proposed)
    # whatever rests now, a place the rooms leave out is refused by the gate itself at every size
    dropped = 0
    for t in MARKETS:
        rooms = rig.ev.rooms_now(t)
        for k, side in enumerate(("bid", "ask")):
            for p in range(100, 10_000, 100):
                if 100 * (p if k == 0 else 10_000 - p) > rooms[k]:
                    dropped += 1
                    assert rig.ev.gate.max_count(t, side, p, 3000, size_step=100) == 0
    assert dropped > 0
    for _ in range(3):
        rig.decide_all()
    # no maker fee here, so the rooms are exact: no place the gate refuses is asked for (B's orders, cut
    # to the room by the gate, are amended back to the strategy's size and refused once: amends are the
    # gate's to decide, and the refused amend takes the order down)
    assert rig.places_refused == refused_first
