"""The REST verification cadence ([run] verify_interval_s) and the "high latency" warning."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import pytest

from kmm.config import KmmConfig, load_config
from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.live import Engine, EngineOptions
from kmm.engine.view import render_line
from kmm.kalshi import ConnectorConfig
from tests.engine.test_live import engine_on_sim

READ_TOKENS_BASIC = 200     # tokens/s (kalshi-api.md: Basic 200 read / 100 write)
READ_COST = 10              # tokens per read
READS_PER_VERIFY = 3        # GET fills, GET orders, GET positions (one page each)


def test_default_verification_cadence_uses_a_few_percent_of_the_basic_read_budget():
    every = KmmConfig().run.verify_interval_s
    assert every == 5.0                                  # the seed's cadence
    share = READS_PER_VERIFY * READ_COST / every / READ_TOKENS_BASIC
    assert share == pytest.approx(0.03)                  # the figure docs/operations.md gives


def _engine(**run: str) -> tuple[Engine, ManualClock]:
    cfg = load_config(None, environ={}, cli={"run.markets": "KXSIMA-26-A", **{f"run.{k}": v for k, v in run.items()}})
    clock = ManualClock(monotonic_ns=100 * NS_PER_S)
    return Engine(cfg, ConnectorConfig(env="sim"), clock=clock, options=EngineOptions(view="off")), clock


def test_engine_takes_the_verification_period_from_the_config_unless_options_set_it():
    eng, _ = _engine(verify_interval_s="2.5")
    assert eng.opt.reconcile_interval_s == 2.5
    cfg = load_config(None, environ={}, cli={"run.markets": "KXSIMA-26-A"})
    assert Engine(cfg, ConnectorConfig(env="sim"), options=EngineOptions(reconcile_interval_s=7.0)).opt \
        .reconcile_interval_s == 7.0


def test_high_latency_warning_names_the_p99_over_the_window_and_clears(caplog):
    eng, clock = _engine(latency_warn_us="1000", latency_window_s="5")
    now = clock.monotonic_ns()
    for i in range(200):                                  # 500 us, inside the window
        eng._latency_at.append((now - i * 10_000_000, 500_000))
    assert eng.check_latency(now) == "" and eng.high_latency == ""
    for i in range(5):                                    # 2.5 % of decisions at 8 ms: p99 8 ms
        eng._latency_at.append((now - i, 8_000_000))
    with caplog.at_level(logging.WARNING, logger="kmm.engine"):
        warn = eng.check_latency(now)
    assert "high latency: frame -> request p99 8,000 us over the last 5 s" in warn and "threshold 1,000 us" in warn
    assert any("p99 8,000 us" in r.getMessage() for r in caplog.records)
    assert warn in render_line(eng.snapshot())            # the status line shows it
    assert eng.events_of("high_latency")
    # old samples leave the window: p99 is over the last 5 s only
    for i in range(200):
        eng._latency_at.append((now + 6 * NS_PER_S + i, 400_000))
    clock.advance_ns(6 * NS_PER_S + 1_000)
    assert eng.check_latency(clock.monotonic_ns()) == "" and eng.high_latency == ""
    assert "high latency" not in render_line(eng.snapshot())


@pytest.mark.slow
async def test_verification_runs_at_the_configured_cadence_on_the_sim(tmp_path):
    async with engine_on_sim(tmp_path, options={"reconcile_interval_s": None},
                             settings={"run.verify_interval_s": "1"}) as run:
        assert run.engine.opt.reconcile_interval_s == 1.0
        before = len([e for e in run.engine.events_of("reconciled") if "periodic" in e[3]])
        await asyncio.sleep(4.5)
        n = len([e for e in run.engine.events_of("reconciled") if "periodic" in e[3]]) - before
    assert 3 <= n <= 6, n


class Counted(deque):
    """A deque that counts the samples read newest first (reset ``visited`` before use)."""
    visited = 0

    def __reversed__(self):
        for x in super().__reversed__():
            Counted.visited += 1
            yield x


def test_the_latency_check_reads_only_the_window_not_the_whole_run():
    """check_latency runs once a second on the loop: it reads the samples of its window, newest first,
    and stops at the first older one, however long the run (an hour of busy quoting fills the 200,000
    samples the engine keeps)."""
    eng, clock = _engine(latency_warn_us="1000", latency_window_s="5")
    now = clock.monotonic_ns()

    old = [(now - 3600 * NS_PER_S + i * 1_000_000, 30_000_000) for i in range(100_000)]   # an hour ago, slow
    recent = [(now - 4 * NS_PER_S + i * 10_000_000, 500_000) for i in range(300)]           # the window
    Counted.visited = 0
    eng._latency_at = Counted(old + recent, maxlen=200_000)
    assert eng.check_latency(now) == ""            # the old slow samples are outside the window
    assert Counted.visited == len(recent) + 1      # the window, and the one sample that ends it


def test_the_console_and_status_line_show_the_latency_of_the_last_decisions_and_the_summary_the_runs():
    """snapshot() (the console twice a second, the status line) takes the percentiles of the newest
    VIEW_LATENCY_SAMPLES decisions, reading only those; latency_percentiles() with no window (the run
    summary) takes the whole run's."""
    from kmm.engine.maker import VIEW_LATENCY_SAMPLES

    eng, clock = _engine()

    slow = [9_000_000] * 100_000                              # the first part of the run: 9 ms
    fast = [300_000] * VIEW_LATENCY_SAMPLES                   # the newest decisions: 300 us
    Counted.visited = 0
    eng._latency_ns = Counted(slow + fast, maxlen=200_000)
    snap = eng.snapshot()
    assert (snap.latency_p50_us, snap.latency_p99_us) == (300.0, 300.0)
    assert Counted.visited == VIEW_LATENCY_SAMPLES
    assert eng.latency_percentiles()[:2] == (9000.0, 9000.0)  # the run's: mostly the slow part
