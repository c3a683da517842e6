"""Kalshi's maker programs wired into the live maker, against ``kmm sim`` serving a Liquidity Incentive
Program on one market (GET /incentive_programs).

On a frozen book, with the maker's decisions paused so its two quotes stay put, the program's Target
Size is set so that our bid is within it and another account's ask wall in front of our ask fills it:
the bid qualifies, the ask does not. The maker reads the program over REST, scores every second as
the program does, and shows it in the view, the status line, the store and the summaries."""

from __future__ import annotations

import asyncio
import json

import pytest

from kmm.engine.view import render_console_text, render_line, render_table
from kmm.record.store import StoreReader
from kmm.sim.config import liquidity_program
from tests.engine.test_live import engine_on_sim, resting, until

pytestmark = pytest.mark.slow

A, B = "KXSIMA-26-A", "KXSIMB-26-B"


async def test_a_program_on_one_market_scores_our_bid_and_not_our_ask_in_view_status_and_records(tmp_path):
    async with engine_on_sim(tmp_path, markets=(A, B), flow="calm", seed=4,
                             settings={"run.incentive_sample_s": "0.2"}) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        assert eng.incentives.read_ok and eng.incentives.programs == {}      # the sim serves none yet
        await until(lambda: {o["side"] for o in resting(sim, key, A)} == {"bid", "ask"}, 20, "both quotes in A")
        sim.flow_running = False
        await until(lambda: all(o.actionable for o in eng.om.live_orders(A)), 5, "no request open")
        eng.quoting = False                   # our quotes stay where they are for the snapshot
        await asyncio.sleep(0.2)
        ours = {o["side"]: o for o in resting(sim, key, A)}
        bid, ask = ours["bid"], ours["ask"]
        book = sim.book(A)
        better_bids = sum(s for p, s in book["yes"] if p > bid["price"])
        target = better_bids + 100                      # one contract of our bid level fits in
        other, _ = sim.create_key()
        wall_px = ask["price"] - 100 if ask["price"] - 100 > max(p for p, _ in book["yes"]) else None
        assert wall_px is not None, (bid, ask, book)
        sim.place_direct(other, A, "ask", wall_px, target + 500)   # fills the ask side's target before us
        sim.cfg.incentive_programs.append(liquidity_program(A, target_size=f"{target // 100}.{target % 100:02d}",
                                                            discount_factor_bps=5000))
        assert await eng.incentives.refresh(eng.rest) == 1 and set(eng.incentives.programs) == {A}
        n0 = eng.incentives.tally.get(A).samples if A in eng.incentives.tally else 0
        await until(lambda: A in eng.incentives.tally and eng.incentives.tally[A].samples >= n0 + 3, 5,
                    "the housekeeping to score A")
        q = eng.incentives.last[A]
        assert q.applies and q.qualifies and q.program_id == f"lip-{A}"
        assert q.bid is not None and 0 < q.bid.our_qualifying <= bid["remaining"]
        assert q.ask is not None and q.ask.our_qualifying == 0 and q.ask.our_resting == ask["remaining"]
        assert any("ask outside the target size" in r for r in q.reasons)
        # the view, the status line and the console's table
        snap = eng.snapshot()
        row = {m.ticker: m for m in snap.markets}
        assert row[A].incentive.startswith("bid ok ask no") and row[B].incentive == ""
        assert snap.incentives == "LIP 1 mkts, 1 qualify"
        assert "bid ok ask no" in render_line(snap) and "LIP 1 mkts" in render_line(snap)
        assert "bid ok ask no" in render_table(snap)
        console = render_console_text(snap, 100, 30)          # the full-screen console's market table
        row_a = next(x for x in console.splitlines() if x.startswith(A[:14]))
        assert " LIP" in console and "bid ok" in row_a
        assert "bid ok" not in next(x for x in console.splitlines() if x.startswith(B[:14]))
        # summary.json: the program's run totals and the per-event roll-up under details
        from kmm.research.runrecord import write_run_outputs
        write_run_outputs(eng, eng.recorder, 1)
        details = json.loads((run.out / "summary.json").read_text())["details"]
        assert set(details["incentives"]) == {A} and details["incentives"][A]["qualified"] >= 3
        assert {e["event"] for e in details["events"]} == {"KXSIMA-26", "KXSIMB-26"}
        eng.quoting = True
    s = run.summary
    assert s is not None and set(s.incentives) == {A}
    inc = s.incentives[A]
    assert inc["snapshots"] >= 3 and inc["qualified"] == inc["snapshots"] and inc["target_size"] == target / 100
    assert "incentive program lip-KXSIMA-26-A on KXSIMA-26-A" in s.render()
    # the store: every snapshot, our bid's qualifying size and none of the ask
    rows = StoreReader(run.out / "kmm.sqlite").incentive_samples(A)
    assert len(rows) >= 3 and all(r[2] == f"lip-{A}" and r[3] == 1 and r[6] > 0 and r[7] == 0 for r in rows)
    assert StoreReader(run.out / "kmm.sqlite").incentive_samples(B) == []
