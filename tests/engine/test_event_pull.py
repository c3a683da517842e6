"""An event going past its limit pulls every quote of the event at once (kmm sim, KXSIMWIN-26).

The figure: contracts filled, after the limit is reached, on quotes that were resting when it was. The
test lowers the event's loss limit below what the resting quotes could lose and, in the same step,
fills one of our bids from another account (so the fill arrives as the trigger); 300 ms later it sweeps
every price where one of our quotes rested. With the event-level pull nothing of those quotes is left to
fill; with the pull off (the per-order checks only) the quotes in the other markets stay and fill."""

from __future__ import annotations

import asyncio

import pytest

from kmm.engine.events import EventLimits
from kmm.sim import SimExchange
from tests.engine.test_event_wiring import WIN
from tests.engine.test_live import engine_on_sim, resting, until

pytestmark = pytest.mark.slow

SETTINGS = {"strategy.quote_size": "5", "strategy.max_position": "30", "risk.max_order_size": "30",
            "risk.max_event_loss": "1000", "strategy.gamma": "0.01"}


def sweep(sim: SimExchange, other: str, orders: list[dict]) -> None:
    """Take every price level down to each of ``orders``' prices, IOC, from ``other``."""
    for o in orders:
        book = sim.book(o["ticker"])
        if o["side"] == "bid":      # sell YES into every YES bid at or above its price
            size = sum(s for p, s in book["yes"] if p >= o["price"])
            if size:
                sim.place_direct(other, o["ticker"], "ask", o["price"], size, tif="immediate_or_cancel")
        else:                       # buy YES from every NO bid at or above its NO price
            size = sum(s for p, s in book["no"] if p >= 10_000 - o["price"])
            if size:
                sim.place_direct(other, o["ticker"], "bid", o["price"], size, tif="immediate_or_cancel")


async def filled_after_limit(tmp_path, pull: bool) -> tuple[int, list[str]]:
    async with engine_on_sim(tmp_path / str(pull), markets=WIN, settings=SETTINGS, seed=5, flow="calm",
                             options={"event_pull": pull}) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        await until(lambda: {o["ticker"] for o in resting(sim, key) if o["side"] == "bid"} == set(WIN), 20,
                    "our bids in every market of the event")
        sim.flow_running = False             # the book stands still: nothing but the test trades
        await until(lambda: all(o.actionable for t in WIN for o in eng.om.live_orders(t)), 5, "no request open")
        await asyncio.sleep(0.3)
        before = resting(sim, key)
        trigger = next(o for o in before if o["ticker"] == WIN[0] and o["side"] == "bid")
        others = [o for o in before if o["order_id"] != trigger["order_id"]]
        assert {o["ticker"] for o in others} >= set(WIN[1:])
        other_key, _ = sim.create_key()
        book = eng.event_risk.gate.event_of(WIN[0])
        # the limit: what the positions lose once the trigger bid fills, with 5 % to spare (reduce-only
        # band: positions alone are past 90 % of it, not past it, so the kill switch stays out of it)
        loss_after = -min(v - trigger["remaining"] * (trigger["price"] - (10_000 if WIN[0] in o else 0)) // 100
                          for o, v in book.outcome_pnl().items())
        assert loss_after > 0
        eng.event_risk.gate.limits = EventLimits(max_event_loss=loss_after * 100 // 95,
                                                 max_event_exposure=10_000)
        sim.place_direct(other_key, WIN[0], "ask", trigger["price"], trigger["remaining"], tif="immediate_or_cancel")
        await asyncio.sleep(0.3)
        sweep(sim, other_key, others)
        await asyncio.sleep(0.2)
        ids = {o["order_id"] for o in others}
        filled = sum(f["count"] for f in sim.fills(key) if f["order_id"] in ids)
        pulls = [e[2] for e in eng.events_of("event_pull")]
        assert eng.gate.kill_state.value == "armed"
    assert run.summary is not None and run.summary.resting_after_stop == 0
    return filled, pulls


async def test_an_event_past_its_limit_pulls_every_quote_of_the_event_at_once(tmp_path):
    filled, pulls = await filled_after_limit(tmp_path, pull=True)
    assert pulls and pulls[0].startswith("KXSIMWIN-26")
    # contracts filled, after the limit was reached, on the quotes resting then: none
    assert filled == 0, filled


async def test_without_the_event_pull_the_other_markets_quotes_fill_after_the_limit(tmp_path):
    # the same run with the event-level pull off: the figure the pull brings to 0 is not 0
    filled, pulls = await filled_after_limit(tmp_path, pull=False)
    assert not pulls and filled > 0, filled
