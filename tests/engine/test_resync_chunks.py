"""The periodic resync offers the fills it reads back to the engine in chunks, with a turn of the event
loop between them (kmm.engine.recovery.Recovery.resync): in a busy run most of them are known already
(dropped by trade id), and offering a few hundred in one step held book frames for 1-2 ms every 5 s."""

from __future__ import annotations

from types import SimpleNamespace

from kmm.engine.recovery import Recovery
from kmm.kalshi.rest import PAGE_CHUNK
from tests.loopturns import record_turns


class _Stop(Exception):
    pass


async def test_the_resync_offers_its_fills_in_chunks_with_the_loop_turning_between_them():
    offered: list[int] = []
    fills = [SimpleNamespace(ts_ms=130 - i, trade_id=f"t{i}") for i in range(130)]   # read newest first

    async def session_fills():
        return list(fills)

    async def get_orders(**kw):
        raise _Stop("the fills are the part under test")      # resync logs it and returns

    session = SimpleNamespace(rest=SimpleNamespace(get_orders=get_orders), session_fills=session_fills, fills=0)

    def on_fill(f):
        offered.append(f.ts_ms)
        session.fills += 1                  # each one new here: counted as backfilled

    events: list[tuple] = []
    clock = SimpleNamespace(monotonic_ns=lambda: 1, time_ns=lambda: 1_000_000_000)
    maker = SimpleNamespace(session=session, clock=clock, on_fill=on_fill, pipes={},
                            _event=lambda kind, *a, **k: events.append((kind, k.get("detail", ""))))
    turns = record_turns(lambda: len(offered))
    await Recovery(maker).resync("periodic")   # type: ignore[arg-type]
    assert offered == sorted(offered) == list(range(1, 131))          # every fill, oldest first
    assert events == [("backfill", "periodic: 130 fills")]
    # the scripted read never suspends: the queued callback first runs after the first full chunk, then
    # after the second (the loop turned between chunks); the last 30 need no turn of their own
    assert PAGE_CHUNK == 50 and turns[:2] == [PAGE_CHUNK, 2 * PAGE_CHUNK]
