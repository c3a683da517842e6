"""Event risk wired into the live maker, against ``kmm sim``'s mutually exclusive event KXSIMWIN-26.

The worst case is computed here from the exchange's own state (our fills and our resting orders as the
sim holds them), independently of kmm's portfolio and event book."""

from __future__ import annotations

import asyncio
import time

import pytest

from kmm.engine.risk import KillState
from kmm.sim import SimExchange
from kmm.sim.config import ME_EVENT
from tests.engine.test_live import engine_on_sim, resting, until

pytestmark = pytest.mark.slow

WIN = tuple(f"{ME_EVENT}-{c}" for c in ("RED", "GREEN", "BLUE"))
ONE = 10_000


def exchange_outcomes(sim: SimExchange, key: str, *, with_resting: bool = True) -> dict[str, int]:
    """P&L (1e-4 $, rounded down) of this account's fills and resting orders in KXSIMWIN-26 for each
    outcome: one market YES and the others NO, or none YES. A resting order counts only where it hurts
    (it may fill alone, in full). Maker fees on these markets are 0; fills carry their charged fee."""
    fills = [f for f in sim.fills(key) if f["ticker"] in WIN]
    orders = [o for o in resting(sim, key) if o["ticker"] in WIN] if with_resting else []
    out = {}
    for winner in (*WIN, ""):
        e6 = 0
        for f in fills:
            v = ONE if f["ticker"] == winner else 0
            e6 += f["count"] * (v - f["price"]) if f["side"] == "bid" else f["count"] * (f["price"] - v)
            e6 -= f["fee"] * 100
        for o in orders:
            v = ONE if o["ticker"] == winner else 0
            ch = o["remaining"] * (v - o["price"]) if o["side"] == "bid" else o["remaining"] * (o["price"] - v)
            e6 += min(0, ch)
        out[winner or "none"] = e6 // 100
    return out


async def sample_worst(sim: SimExchange, key: str, seconds: float, every_s: float = 0.02) -> tuple[int, int]:
    """The lowest worst case seen over ``seconds`` and how many samples had resting orders."""
    lowest, with_orders = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lowest = min(lowest, min(exchange_outcomes(sim, key).values()))
        with_orders += bool(resting(sim, key))
        await asyncio.sleep(every_s)
    return lowest, with_orders


SETTINGS = {"strategy.quote_size": "5", "strategy.max_position": "30", "risk.max_order_size": "30",
            "risk.max_event_loss": "3", "strategy.gamma": "0.01"}


async def test_worst_case_event_loss_with_resting_quotes_never_passes_max_event_loss(tmp_path):
    limit = 3 * ONE
    async with engine_on_sim(tmp_path, markets=WIN, settings=SETTINGS, seed=5) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        book = eng.event_risk.gate.event_of(WIN[0])
        assert book is not None and book.spec.mutually_exclusive and set(WIN) <= set(book.markets)
        lowest, with_orders = await sample_worst(sim, key, 6.0)
        await until(lambda: eng.fills >= 3, 30, "fills in the event")
        more, more_orders = await sample_worst(sim, key, 4.0)
        lowest, with_orders = min(lowest, more), with_orders + more_orders
        bound = eng.event_risk.resized + eng.event_risk.denials.get("event_max_loss", 0)
        over_limit_pulls = sum(1 for _, st in eng.event_risk.pulls if st == "over_limit")
    s = run.summary
    # an amend in flight counts once at its larger size and worse price (docs/event-risk.md): the event
    # guard no longer pulls every quote for a worst case that cannot happen (7-15 such pulls in 10 s
    # when it counted both; 0-2 in 24 seeded runs since)
    assert over_limit_pulls <= 3, eng.event_risk.pulls
    assert s is not None and s.verified_flat_orders and s.resting_after_stop == 0
    # the limit was binding (the unlimited quotes would risk 3 x 5 contracts of bids in "none"), quotes
    # rested across the run, fills happened, and the worst case never went past $3
    assert bound > 0 and with_orders > 50 and s.fills >= 3
    assert -limit <= lowest < 0, lowest
    after = exchange_outcomes(sim, key, with_resting=False)
    assert min(after.values()) >= -limit, after
    # kmm's event book agrees with the exchange's fills in every outcome (to the 1e-4 $: exact sizes)
    kmm_outcomes = {("none" if not o else o[0]): v for o, v in book.outcome_pnl().items()}
    assert kmm_outcomes == after
    assert s.risk_denials.get("event_max_loss", 0) == eng.event_risk.denials.get("event_max_loss", 0)


async def test_an_event_loss_past_the_limit_trips_the_kill_switch_and_pulls_every_quote(tmp_path):
    from kmm.engine.events import EventLimits
    async with engine_on_sim(tmp_path, markets=WIN, settings=SETTINGS, seed=5) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        await until(lambda: eng.fills >= 1, 30, "a fill in the event")
        worst = min(exchange_outcomes(sim, key, with_resting=False).values())
        assert worst < 0
        # the operator's limit is now below what the positions alone may lose: the next P&L change trips
        eng.event_risk.gate.limits = EventLimits(max_event_loss=max(1, -worst // 2), max_event_exposure=10_000)
        t0 = time.monotonic()
        eng._after_pnl_change()
        assert eng.gate.kill_state is not KillState.ARMED and "event loss limit" in eng.gate.kill_reason
        await until(lambda: not resting(sim, key), 5, "every quote pulled")
        pulled_s = time.monotonic() - t0
        placed = eng.orders_sent
        await asyncio.sleep(1.0)
        assert eng.orders_sent == placed and not resting(sim, key)
    assert pulled_s < 2.0


def event_inventory(sim: SimExchange, key: str) -> int:
    return sum(sim.position(key, t)["position"] for t in WIN)


def _long_red_and_green(sim: SimExchange, key: str) -> None:
    """The account holds 40 YES in RED and in GREEN from before: event inventory 80, none in BLUE."""
    other, _ = sim.create_key()
    for t, px in ((WIN[0], 5000), (WIN[1], 3000)):
        sim.place_direct(other, t, "ask", px, 4000)
        sim.place_direct(key, t, "bid", px, 4000, tif="immediate_or_cancel")


async def _blue_bids(tmp_path, weight: str) -> tuple[list[dict], int, int, int]:
    settings = {**SETTINGS, "risk.max_event_loss": "1000", "strategy.max_position": "10",
                "strategy.event_inventory_weight": weight}
    async with engine_on_sim(tmp_path / weight, markets=WIN, settings=settings, seed=5, flow="calm",
                             before_start=_long_red_and_green) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        assert eng.pf.position(WIN[2]) == 0 and sum(eng.pf.position(t) for t in WIN) == 8000
        low = event_inventory(sim, key)
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            low = min(low, event_inventory(sim, key))
            await asyncio.sleep(0.05)
        qi = eng.event_risk.quote_inventory(WIN[2])
        own = eng.pf.position(WIN[2])
    bids = [o for o in sim.orders(key) if o["ticker"] == WIN[2] and o["side"] == "bid"]
    return bids, low, qi, own


async def test_with_event_inventory_weight_1_kmm_stops_accumulating_yes_across_every_outcome(tmp_path):
    # 80 YES across the event, none in BLUE, max_position 10 per market. With weight 0, BLUE's own
    # position (0) drives its quotes and kmm bids for more YES there; with weight 1 BLUE skews on the
    # event inventory (>= 10): no bid is ever placed in BLUE while the event holds that much
    bids0, low0, qi0, own0 = await _blue_bids(tmp_path, "0")
    # weight 0: BLUE skews on its own position (a few contracts once the flow fills its quotes; since
    # every market of the sim has a book from the start, its bids do get filled), never the event's
    assert bids0 and qi0 == own0 and abs(qi0) < 1000
    bids1, low1, qi1, _ = await _blue_bids(tmp_path, "1")
    assert low1 >= 1000, "the event inventory fell below max_position: the test saw nothing"
    assert bids1 == [] and qi1 >= 1000


async def test_settling_the_whole_event_settles_every_market_and_agrees_with_the_exchange_to_the_cent(tmp_path):
    settings = {**SETTINGS, "risk.max_event_loss": "20"}
    async with engine_on_sim(tmp_path, markets=WIN, settings=settings, seed=5) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        await until(lambda: sum(1 for t in WIN if eng.pf.position(t)) >= 2, 30, "positions in two markets")
        cash0 = sim.cash(key)
        held = {t: sim.position(key, t)["position"] for t in WIN}
        await sim.settle_event(ME_EVENT, WIN[1])          # GREEN wins, RED and BLUE settle NO
        paid = sim.cash(key) - cash0
        await until(lambda: len(eng.event_risk.settled.get(ME_EVENT, {})) == 3, 10, "every market settled here")
        await until(lambda: not resting(sim, key) and all(eng.pf.position(t) == 0 for t in WIN), 10,
                    "quotes gone and positions paid")
        kmm = eng.event_risk.settled[ME_EVENT]
        assert {t: r for t, (r, _) in kmm.items()} == {WIN[0]: "no", WIN[1]: "yes", WIN[2]: "no"}
        # what kmm expected per market is what the exchange paid, in sum to the 1e-4 $, and per market
        # by Kalshi's rule for the position the exchange held
        assert sum(p for _, p in kmm.values()) == paid
        for t, (r, p) in kmm.items():
            won = held[t] if r == "yes" else -held[t]
            assert p == max(0, won) * 100, (t, r, p, held[t])     # 1e-2 contracts x $1 = x 100 (1e-4 $)
        assert eng.pf.cash == sim.balance(key)
        assert eng.event_risk.gate.event_of(WIN[0]).outcomes() == [(WIN[1],)]
    assert run.summary is not None and run.summary.portfolio_agrees and run.summary.resting_after_stop == 0
    # maker metrics of the session (MakerStats): every fill was a maker fill of a post-only quote
    m = run.summary.maker
    maker_fills = [f for f in sim.fills(key) if not f["is_taker"]]
    assert maker_fills and len(maker_fills) == len(sim.fills(key))
    assert m["maker_contracts"] == sum(f["count"] for f in maker_fills) / 100 and m["taker_contracts"] == 0
    assert 0 < m["resting_orders_placed"] <= len(sim.orders(key))
    assert m["contract_seconds_resting"] > 0 and 0 < m["maker_fill_rate"] <= 1
    assert "resting orders placed" in run.summary.render()


def _carried_long(sim: SimExchange, key: str) -> None:
    """A static book (0.40 / 0.60) and 10 YES of KXSIMA-26-A bought at 0.50 by an earlier session."""
    other, _ = sim.create_key()
    sim.place_direct(other, "KXSIMA-26-A", "ask", 5000, 1000)
    sim.place_direct(key, "KXSIMA-26-A", "bid", 5000, 1000, tif="immediate_or_cancel")
    sim.place_direct(other, "KXSIMA-26-A", "bid", 4000, 5000)
    sim.place_direct(other, "KXSIMA-26-A", "ask", 6000, 5000)


async def test_a_reused_account_with_a_carried_position_shows_session_pnl_0_at_start(tmp_path):
    import json

    from kmm.engine.view import net_pnl, render_line
    from kmm.record.summary import validate_summary
    from kmm.research.runrecord import write_run_outputs
    async with engine_on_sim(tmp_path, flow="off", markets=("KXSIMA-26-A",), before_start=_carried_long) as run:
        eng = run.engine
        await until(lambda: eng.pipes["KXSIMA-26-A"].ready and eng.pf.unrealized_pnl() != 0, 10, "a mark")
        assert eng.pf.position("KXSIMA-26-A") == 1000 and eng.fills == 0
        life = eng.lifetime_pnl()
        assert life.unrealized == -10_000           # the account: 10 YES bought at 0.50, marked at the 0.40 bid
        sp = eng.session_pnl()
        assert (sp.realized, sp.unrealized, sp.fees, sp.net) == (0, 0, 0, 0)
        snap = eng.snapshot()
        assert net_pnl(snap) == 0 and "session_pnl=$0.00" in render_line(snap)
        await until(lambda: len(resting(run.sim, run.key_id)) >= 2 and eng.mstats.placed >= 2, 10, "two quotes")
        s = write_run_outputs(eng, eng.recorder, time.time_ns() - 1)
        assert s is not None
        on_disk = json.loads((run.out / "summary.json").read_text())
        validate_summary(on_disk)
        assert (on_disk["realized_pnl"], on_disk["unrealized_pnl"], on_disk["fees"], on_disk["net_pnl"]) == \
            ("0.0000", "0.0000", "0.0000", "0.0000")
        assert on_disk["details"]["account_lifetime_1e4_usd"]["unrealized_pnl"] == -10_000
        assert "gross of fees" in on_disk["details"]["pnl_scope"]
        mm = on_disk["details"]["maker_metrics"]
        assert mm["resting_orders_placed"] >= 2 and mm["maker_contracts"] == 0     # quotes rest, no fill
    summary = run.summary
    assert summary is not None and summary.fills == 0 and summary.net == 0
    text = summary.render()
    assert "session P&L net $0.0000 (this session only" in text and "gross of fees" in text
    # the earlier session paid a $0.18 taker fee: lifetime figures, shown apart
    assert "account (not this session): lifetime P&L net -$1.1800" in text
