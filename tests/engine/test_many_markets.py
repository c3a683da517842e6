"""Many markets at once on ``kmm sim``: every market gets its quotes, the write budget is shared (no
market starves), the stop leaves nothing resting, and the view and records stay readable.

The figures come from :mod:`tests.engine.manymarkets` (the engine's own write calls, timed). Basic's
budget is 10 creates a second, so 300 two-sided markets need a minute for their first quotes: that run
is in ``bench/bench_fair.py``; here Basic gets 60 markets and a high tier gets 300."""

from __future__ import annotations

import pytest

from kmm.engine.view import render_console_text, render_line, render_table
from tests.engine.manymarkets import measure

pytestmark = pytest.mark.slow


async def test_300_markets_on_a_high_tier_all_quote_at_once_and_stay_readable(tmp_path):
    r = await measure(tmp_path, 300, "prestige", 4.0)
    eng, s = r["engine"], r["summary"]
    # every market quoted both sides, within a second of the start of quoting
    assert r["never_quoted"] == 0 and r["writes_min"] >= 2, r
    assert r["first_quote_max_s"] < 2.0, r
    assert r["start_s"] < 10.0, r               # 300 market reads would be 15 s at Basic; batched: a few reads
    assert s.verified_flat_orders and s.resting_after_stop == 0
    # the view stays usable: the status line and the table are bounded, the console fits its screen
    snap = eng.snapshot()
    assert len(snap.markets) == 300 and len(snap.events) == 60
    line = render_line(snap)
    assert len(line) < 1500 and "+295 markets" in line and "events=60" in line
    table = render_table(snap)
    assert len(table.splitlines()) <= 30 and "... 290 more markets" in table
    text = render_console_text(snap, 100, 40)
    assert len(text.rstrip("\n").split("\n")) <= 40 and "more markets" in text and "KXMANY-" in text
    # the records: one roll-up row per event in the summary, worst first
    assert len(s.events) == 60 and s.events == sorted(s.events, key=lambda e: (e["worst_resting"], e["event"]))
    assert sum(e["quoted"] for e in s.events) == 300
    assert "events: 60" in s.render() and "... 50 more events" in s.render()   # five markets each


async def test_on_basic_the_write_budget_is_shared_and_no_market_starves(tmp_path):
    # 60 markets, 120 first quotes at Basic's 10 creates/s: about 12 s of budget after the 1 s burst,
    # shared with the requotes of the markets already quoted
    r = await measure(tmp_path, 60, "basic", 14.0)
    eng, s = r["engine"], r["summary"]
    assert r["never_quoted"] == 0, r            # every market got a quote: the least-served market goes first
    assert r["first_quote_max_s"] < 12.0, r
    # no write waited past the limiter's max_queue_s (4 s) plus its round trip: a stale decision is
    # dropped, never sent late
    assert r["write_wait_max_s"] < 5.0, r
    # ... so the create watchdog never looked up (and closed) a create still waiting to be sent, which
    # then rested as a stray order
    assert eng.events_of("stray_order") == []
    assert r["sim_429"] <= 3, r                 # the limiter keeps to the budget (batches fit the bucket)
    assert s.verified_flat_orders and s.resting_after_stop == 0
