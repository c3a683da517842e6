"""Batched creates when a requote of every market places in more than three markets (kmm sim)."""

from __future__ import annotations

import pytest

from tests.engine.test_live import _static_book, engine_on_sim, resting, until

pytestmark = pytest.mark.slow

FIVE = ("KXSIMA-26-A", "KXSIMB-26-B", "KXSIMC-26-C", "KXSIMM-26-M", "KXSIMH-26-H")


def quoted_everywhere(sim, key) -> bool:
    on = {o["ticker"] for o in resting(sim, key)}
    return on == set(FIVE)


async def _trip_and_resume(run) -> None:
    eng = run.engine
    eng.operator_trip("test: take everything down")
    await until(lambda: not resting(run.sim, run.key_id) and not eng._kill_sweep_running, 10, "every quote pulled")
    eng.operator_resume()


async def test_a_kill_switch_resume_across_five_markets_places_in_batched_creates(tmp_path):
    async with engine_on_sim(tmp_path, flow="off", markets=FIVE, before_start=_static_book) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        await until(lambda: quoted_everywhere(sim, key), 10, "quotes in all five markets")
        batches, sent = eng.session.batches_sent, eng.orders_sent
        await _trip_and_resume(run)
        await until(lambda: quoted_everywhere(sim, key), 10, "quotes again in all five markets")
        assert eng.session.batches_sent == batches + 1            # ten orders: one batch of <= 20
        assert eng.orders_sent - sent == len(resting(sim, key)) == 10
        coids = [o["client_order_id"] for o in sim.orders(key)]
        assert len(coids) == len(set(coids))


async def test_a_batch_whose_answer_is_lost_is_looked_up_item_by_item_never_re_sent(tmp_path):
    async with engine_on_sim(tmp_path, flow="off", markets=FIVE, before_start=_static_book) as run:
        eng, sim, key = run.engine, run.sim, run.key_id
        await until(lambda: quoted_everywhere(sim, key), 10, "quotes in all five markets")
        real = eng.rest.create_orders
        lost: list[int] = []

        async def answer_lost(reqs):
            await real(reqs)                              # the exchange takes every order ...
            lost.append(len(reqs))
            raise OSError("connection reset after the batch was written")   # ... and the answer is lost
        eng.rest.create_orders = answer_lost
        before = len(sim.orders(key))
        await _trip_and_resume(run)
        await until(lambda: lost and quoted_everywhere(sim, key) and not eng.om.unknown(), 10,
                    "the unknown creates resolved")
        assert lost == [10]
        placed = sim.orders(key)[before:]
        assert len(placed) == 10 and len({o["client_order_id"] for o in placed}) == 10   # never re-sent
        for o in resting(sim, key):                       # each one found by its client_order_id and ours
            mine = eng.om.by_order_id(o["order_id"])
            assert mine is not None and mine.is_live and mine.client_order_id == o["client_order_id"]
    assert run.summary is not None and run.summary.resting_after_stop == 0 and run.summary.verified_flat_orders
