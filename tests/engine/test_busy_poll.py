"""``run.busy_poll``: the engine keeps its loop turning (no sleep in the poll) while it quotes, trades
as without it, and stops turning when the run ends; nothing of ours rests after the stop."""

from __future__ import annotations

import asyncio

import pytest

from tests.engine.test_live import engine_on_sim, resting, until

pytestmark = pytest.mark.slow


async def test_busy_poll_keeps_the_loop_turning_while_quoting_and_stops_with_the_run(tmp_path):
    async with engine_on_sim(tmp_path, settings={"run.busy_poll": "true"}) as run:
        e = run.engine
        await until(lambda: e.fills_by_side["bid"] + e.fills_by_side["ask"] >= 2, 30, "fills")
        before = e.spins
        await asyncio.sleep(0.5)
        turned = e.spins - before
    s = run.summary
    assert s is not None and s.verified_flat_orders and s.resting_after_stop == 0
    assert resting(run.sim, run.key_id) == []
    # an idle loop would sleep in its poll between messages; a polling one turns thousands of times
    # in half a second (each turn is one callback and a zero-timeout poll)
    assert turned > 1_000, turned
    after = e.spins
    await asyncio.sleep(0.2)
    assert e.spins == after, "the loop still turns after the run ended"


async def test_without_busy_poll_the_loop_is_not_kept_turning(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        await asyncio.sleep(0.5)
        assert run.engine.spins == 0
