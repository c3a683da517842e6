"""The money-losing failures of issue 14, each provoked against ``kmm sim`` through its faults API,
each asserting the figure that matters: seconds to pull, contracts filled after the signal, orders
resting after stop (0, read from the exchange in every market), exit code, cash and positions to the
cent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kmm.cli import exits
from kmm.config import load_config
from kmm.engine.maker import Engine, EngineOptions
from kmm.kalshi import ConnectorConfig, KalshiRest
from kmm.record.store import StoreReader
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import default_markets

from .test_live import MARKETS, Run, engine_against, resting, until
from .test_live import sim_markets as specs_of

pytestmark = pytest.mark.slow


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def contracts_filled_since(sim: SimExchange, key: str, since_ms: int) -> int:
    return sum(f["count"] for f in sim.fills(key) if f["ts_ms"] > since_ms)


async def wait_flat(sim: SimExchange, key: str, t0: float, timeout_s: float) -> float:
    """Seconds from ``t0`` (monotonic) until no order of ``key`` rests in any market."""
    await until(lambda: not resting(sim, key), timeout_s, "nothing of ours resting")
    return time.monotonic() - t0


@contextlib.asynccontextmanager
async def maker_on_sim(tmp_path: Path, *, flow: str = "busy", markets: tuple[str, ...] = MARKETS,
                       settings: dict[str, str] | None = None, options: dict[str, Any] | None = None,
                       sim_kw: dict[str, Any] | None = None, seed: int = 3, wait_quoting: bool = True,
                       before_start: Callable[[SimExchange, str], None] | None = None,
                       sim_markets: tuple[str, ...] | None = None) -> AsyncIterator[Run]:
    async with SimExchange(SimConfig(seed=seed, flow=flow, speed=2.0, rate_tier="off",
                                     markets=specs_of(sim_markets or markets), **(sim_kw or {}))) as sim:
        key_id, pem = sim.create_key()
        if before_start is not None:
            before_start(sim, key_id)
        ready = (lambda e: e.quoting and e.orders_sent > 0) if wait_quoting else None
        async with engine_against(sim, key_id, pem, tmp_path, markets, options=options, ready=ready,
                                  settings={"run.out_dir": str(tmp_path / "runs"), **(settings or {})}) as run:
            yield run


def run_exit_code(summary: Any) -> int:
    """What ``kmm run`` exits with for this summary (kmm.engine.app.run_command)."""
    return exits.OK if summary.verified_flat_orders else exits.ORDERS_LEFT


def assert_clean_stop(run: Run) -> None:
    s = run.summary
    assert s is not None
    assert resting(run.sim, run.key_id) == [], "an order of ours rests at the exchange after the stop"
    assert s.verified_flat_orders and s.resting_after_stop == 0
    assert run_exit_code(s) == exits.OK


def assert_money_agrees(run: Run) -> None:
    s = run.summary
    assert s is not None and s.portfolio_agrees
    assert run.engine.pf.cash == run.sim.balance(run.key_id)          # to the cent (1e-4 $ exactly)
    for t in run.engine.tickers:
        assert run.engine.pf.position(t) == run.sim.position(run.key_id, t)["position"]


# ------------------------------------------------------------------------- 1. frozen book, pings go on
async def test_1_frozen_book_with_pings_pulls_quotes_within_the_stale_window(tmp_path):
    stale_s = 1.5
    async with maker_on_sim(tmp_path, flow="calm", settings={"risk.stale_after_s": str(stale_s)},
                            sim_kw={"ping_interval_s": 0.3}) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) >= 2, 10, "resting quotes")
        connects = run.engine.ws.stats.connects
        pongs = run.engine.ws.stats.frames
        t0, t0_ms = time.monotonic(), now_ms()
        run.sim.faults.stall_data(15.0)
        await until(lambda: run.engine.events_of("book_stale"), 10, "the frozen book to be seen")
        signal_s = run.engine.events_of("book_stale")[0][0] / 1e9 - t0
        pulled_s = await wait_flat(run.sim, run.key_id, t0, 10)
        flat_ms = now_ms()
        await asyncio.sleep(1.0)
        # the connection stayed up (pings answered): it was the book data that stopped
        assert run.engine.ws.stats.connects == connects and not run.engine.events_of("disconnected")
        assert not resting(run.sim, run.key_id), "quotes came back on a frozen book"
        filled_after = contracts_filled_since(run.sim, run.key_id, flat_ms)
        stall_fills = contracts_filled_since(run.sim, run.key_id, t0_ms)
        print(f"frozen book: seen {signal_s:.2f} s, quotes gone {pulled_s:.2f} s after the stall began "
              f"(stale_after_s {stale_s}); contracts filled during it {stall_fills / 100:.2f}")
        del pongs
    # silence (stale_after_s) + one unanswered snapshot window + a cancel round trip
    assert pulled_s <= stale_s + 1.0 + 1.0
    assert filled_after == 0
    assert_clean_stop(run)


# ------------------------------------------------------------------------- 2. SIGTERM in a 429 storm
async def test_2_stop_during_a_429_storm_leaves_nothing_resting_within_10_s(tmp_path):
    async with maker_on_sim(tmp_path) as run:
        await until(lambda: {o["ticker"] for o in resting(run.sim, run.key_id)} == set(MARKETS), 10,
                    "quotes in both markets")
        run.sim.faults.rate_limit_storm(60.0, let_through_every=5)   # 4 of 5 requests answer 429
        t0, t0_ms = time.monotonic(), now_ms()
        run.stop.set()                                                # what SIGTERM does in kmm run
        flat_s = await wait_flat(run.sim, run.key_id, t0, 10)
        flat_ms = now_ms()
        summary = await asyncio.wait_for(asyncio.shield(run.task), 40)
    print(f"429 storm: flat {flat_s:.2f} s after the stop; contracts filled after the signal "
          f"{contracts_filled_since(run.sim, run.key_id, t0_ms) / 100:.2f}; stop took {summary.stop_s:.2f} s")
    assert flat_s <= 10.0
    assert contracts_filled_since(run.sim, run.key_id, flat_ms) == 0
    assert run.sim.stats.get("rest_fault_429_storm", 0) > 0, "the storm never hit"
    assert_clean_stop(run)


# ------------------------------------------------------------------------- 3. orders outside --markets
async def test_3_orders_outside_the_sessions_markets_are_cancelled_and_reported(tmp_path):
    outside: list[str] = []

    def leftover(sim: SimExchange, key: str) -> None:
        outside.append(sim.place_direct(key, "KXSIMB-26-B", "bid", 200, 300, coid="old-outside-1"))

    async with maker_on_sim(tmp_path, flow="calm", markets=("KXSIMA-26-A",), sim_markets=MARKETS,
                            before_start=leftover) as run:
        assert outside[0] not in {o["order_id"] for o in resting(run.sim, run.key_id)}
        assert [e for e in run.engine.events_of("outside_cancelled", "KXSIMB-26-B") if e[3] == outside[0]]
        # and while we run, a new one appears outside our markets (another tool on the same key)
        late = run.sim.place_direct(run.key_id, "KXSIMB-26-B", "ask", 9800, 100, coid="late-outside")
        await asyncio.sleep(0.3)
    assert late not in {o["order_id"] for o in resting(run.sim, run.key_id)}
    assert_clean_stop(run)
    assert_money_agrees(run)


# ------------------------------------------------------------------------- 4. reduce-only deadlock
def _long_two(sim: SimExchange, key: str) -> None:
    other, _ = sim.create_key()
    sim.place_direct(other, "KXSIMA-26-A", "ask", 5000, 200)
    sim.place_direct(key, "KXSIMA-26-A", "bid", 5000, 200, tif="immediate_or_cancel")   # we are long 2
    # a book to quote against that nobody trades (flow off): the position stays 2 for the whole test
    sim.place_direct(other, "KXSIMA-26-A", "bid", 4600, 1000)
    sim.place_direct(other, "KXSIMA-26-A", "ask", 5400, 1000)


async def test_4_reduce_only_sizes_the_reducing_quote_to_the_position(tmp_path):
    # quotes are 10 contracts; the position is 2 and at reduce-only (5 % of max_position 30 = 1.5)
    settings = {"strategy.quote_size": "10", "risk.reduce_only_at": "0.05"}
    # flow off: with synthetic takers a buyer can lift part of our ask, the position falls below the
    # reduce-only threshold (1.5) and a full 10-contract quote is then right, not a defect
    async with maker_on_sim(tmp_path, flow="off", markets=("KXSIMA-26-A",), settings=settings,
                            before_start=_long_two, wait_quoting=False) as run:
        await until(lambda: run.engine.quoting, 15, "the start")
        assert run.engine.pf.position("KXSIMA-26-A") == 200
        await until(lambda: [o for o in resting(run.sim, run.key_id) if o["side"] == "ask"], 10,
                    "a reducing ask")
        asks = [o for o in resting(run.sim, run.key_id) if o["side"] == "ask"]
        assert all(o["remaining"] <= 200 for o in asks), asks             # sized to the position
        assert not [o for o in resting(run.sim, run.key_id) if o["side"] == "bid"]
        await asyncio.sleep(1.0)
        assert run.sim.position(run.key_id, "KXSIMA-26-A")["position"] == 200    # nothing traded meanwhile
        denials = run.engine.gate.denials.get("reduce_only", 0)
    assert denials < 50, f"{denials} reduce-only denials: the maker keeps asking for what cannot pass"
    assert_clean_stop(run)


async def test_4b_wanting_to_quote_but_unable_is_visible(tmp_path):
    # flat and reduce-only (the close is "near": within reduce_only_before_close_s): nothing can
    # pass; it must say so, not "quoting"
    settings = {"risk.reduce_only_before_close_s": "1000000000"}
    async with maker_on_sim(tmp_path, flow="calm", markets=("KXSIMA-26-A",), settings=settings,
                            wait_quoting=False) as run:
        await until(lambda: run.engine.events_of("blocked", "KXSIMA-26-A"), 10, "the blocked signal")
        row = run.engine.snapshot().markets[0]
        assert row.state.startswith("blocked"), row
        assert not resting(run.sim, run.key_id)
        assert len(run.engine.events_of("blocked")) == 1                  # said once, not per book


# ------------------------------------------------------------------------- 5. housekeeping never waits
async def test_5_timers_tick_on_time_while_rest_is_slow(tmp_path):
    async with maker_on_sim(tmp_path, options={"status_poll_s": 0.3, "reconcile_interval_s": 0.5}) as run:
        hk = run.engine.housekeeping
        run.sim.faults.delay_rest(2.0, count=30)
        await asyncio.sleep(0.5)
        n0, t0 = hk.ticks, time.monotonic()
        await asyncio.sleep(3.0)
        ticks, elapsed = hk.ticks - n0, time.monotonic() - t0
        slow = run.sim.faults.delay_left < 30          # the slow answers were really being served
        age_s = (run.engine.clock.monotonic_ns() - hk.last_tick_ns) / 1e9
        run.sim.faults.delay_left = 0
    assert slow
    expected = elapsed / run.engine.opt.tick_s
    assert ticks >= 0.7 * expected, f"{ticks} ticks in {elapsed:.1f} s (expected ~{expected:.0f})"
    assert age_s < 0.6


# ------------------------------------------------------------------------- 6. 429 recovery
async def test_6_quotes_come_back_as_soon_as_the_bucket_allows_after_a_429_burst(tmp_path):
    async with maker_on_sim(tmp_path) as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        run.sim.faults.http_error_burst(429, 40)
        await until(lambda: run.sim.faults.error_burst_left == 0, 20, "the burst to be used up")
        t_end = time.monotonic()
        sent = run.engine.orders_sent + run.engine.amends_sent
        await until(lambda: run.engine.orders_sent + run.engine.amends_sent > sent, 10, "a quote after the burst")
        back_s = time.monotonic() - t_end
        assert run.engine.rest.limiter.backoff_max_ns <= 1_000_000_000
    print(f"429 burst of 40: first quote {back_s:.2f} s after the last 429")
    assert back_s <= 1.5
    assert_clean_stop(run)


# ------------------------------------------------------------------------- 7. pause seen at once
@pytest.mark.parametrize("kind", ["trading", "exchange"])
async def test_7_a_paused_answer_stops_creates_at_once(tmp_path, kind):
    async with maker_on_sim(tmp_path, options={"status_poll_s": 30.0}) as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        faults = run.sim.faults
        faults.pause_refusing_creates(4.0, kind=kind)
        await until(lambda: faults.refused_in_pause > 0, 10, "a refused create")
        await until(lambda: run.engine.events_of("exchange_paused"), 1.0, "the pause signal")
        assert run.engine.session.pause == kind
        seen = faults.refused_in_pause
        await asyncio.sleep(2.0)
        extra = faults.refused_in_pause - seen
        if kind == "trading":
            # cancels are allowed in a trading pause: quotes are pulled
            assert not resting(run.sim, run.key_id)
        await asyncio.sleep(2.5)                       # the pause is over
        faults.pause_until = 0.0
    print(f"{kind} pause: requests refused after the signal: {extra}")
    # in flight when the signal came, at most: one request per market and side
    assert extra <= 2 * len(MARKETS)
    assert_clean_stop(run)


# ------------------------------------------------------------------------- 8. cash with resting holds
async def test_8_adopted_orders_holds_are_counted_and_cash_agrees_to_the_cent(tmp_path):
    def leftover(sim: SimExchange, key: str) -> None:
        sim.place_direct(key, "KXSIMA-26-A", "bid", 200, 500, coid="old-session-hold")   # holds $0.10

    async with maker_on_sim(tmp_path, flow="calm", before_start=leftover,
                            settings={"risk.unknown_order_policy": "adopt"}) as run:
        assert run.engine.session.start_holds == 1000
        await asyncio.sleep(1.0)
    assert_clean_stop(run)
    assert_money_agrees(run)


# ------------------------------------------------------------------------- 10. records after a sweep
async def test_10_orders_cancelled_in_the_disconnect_sweep_are_recorded_cancelled(tmp_path):
    async with maker_on_sim(tmp_path, flow="calm") as run:
        await until(lambda: len(resting(run.sim, run.key_id)) >= 2, 10, "resting quotes")
        before = {o["order_id"] for o in resting(run.sim, run.key_id)}
        run.sim.faults.drop_ws_connections()
        await until(lambda: run.engine.events_of("resumed"), 20, "resume after reconnect")
    assert_clean_stop(run)
    exch = {o["order_id"]: o["status"] for o in run.sim.orders(run.key_id)}
    rows = {r.order_id: r.status for r in StoreReader(run.out / "kmm.sqlite").orders() if r.order_id}
    swept = [oid for oid in before if exch.get(oid) == "canceled"]
    assert swept, "no order was cancelled by the sweep"
    for oid in swept:
        assert rows.get(oid) in ("canceled", "cancelled"), (oid, rows.get(oid))
    assert not [oid for oid, st in rows.items() if st == "resting" and exch.get(oid) != "resting"]


# ------------------------------------------------------------------------- 11. groups of earlier sessions
async def test_11_the_order_group_of_a_crashed_session_is_deleted_at_the_next_start(tmp_path):
    state = tmp_path / "runs" / "order_groups.json"
    crashed: list[str] = []

    async def crash_with_a_group(sim: SimExchange, key: str, pem: bytes) -> None:
        conn = ConnectorConfig(env="sim").with_server(sim.rest_url, sim.ws_url, api_key_id=key,
                                                      private_key_pem=pem)
        async with KalshiRest(conn) as rest:
            crashed.append(await rest.create_order_group(1000))
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({key: crashed}))   # what the crashed session had written

    known = {m.ticker: m for m in default_markets()}
    async with SimExchange(SimConfig(seed=3, flow="calm", rate_tier="off",
                                     markets=[known["KXSIMA-26-A"]])) as sim:
        key, pem = sim.create_key()
        await crash_with_a_group(sim, key, pem)
        acct = sim.engine.accounts[key]
        groups = getattr(acct, "groups", None) or getattr(sim.engine, "groups", {})
        assert crashed[0] in groups
        conn = ConnectorConfig(env="sim").with_server(sim.rest_url, sim.ws_url, api_key_id=key, private_key_pem=pem)
        cfg = load_config(None, environ={}, cli={"run.markets": "KXSIMA-26-A", "run.out_dir": str(tmp_path / "runs")})
        engine = Engine(cfg, conn, options=EngineOptions(view="off", order_group_limit=1000))
        stop = asyncio.Event()
        task = asyncio.ensure_future(engine.run(stop))
        await until(lambda: engine.quoting or task.done(), 15, "the start")
        assert engine.events_of("old_group_deleted")
        own = engine.group_id
        stop.set()
        summary = await asyncio.wait_for(task, 30)
        async with KalshiRest(conn) as rest:
            listed = {str(g.get("order_group_id") or g.get("id")) for g in await rest.list_order_groups()}
    assert crashed[0] not in listed and own not in listed
    assert json.loads(state.read_text()).get(key, []) == []
    assert summary.verified_flat_orders


# ------------------------------------------------------------------------- 12. quiet book at start
async def test_12_quoting_starts_on_the_book_already_there(tmp_path):
    def static_book(sim: SimExchange, _key: str) -> None:
        other, _ = sim.create_key()
        for t in sim.tickers:
            sim.place_direct(other, t, "bid", 4000, 5000)
            sim.place_direct(other, t, "ask", 6000, 5000)

    async with maker_on_sim(tmp_path, flow="off", before_start=static_book, wait_quoting=False) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) == 4, 15, "quotes on both markets")
        quoted = time.monotonic_ns()
        ready = max(e[0] for e in run.engine.events_of("book_ready"))
        first_s = (quoted - ready) / 1e9
        assert len(run.engine.events_of("book_ready")) == 2     # no re-snapshot was needed to start
    print(f"quiet book: all quotes rest {first_s:.3f} s after the last book was ready")
    assert first_s < 1.0
    assert_clean_stop(run)


# ------------------------------------------------------------------------- 2b. the same, as kmm run
async def test_2b_kmm_run_sigterm_in_a_429_storm_exits_0_with_nothing_resting(tmp_path):
    """``kmm run`` as an operator runs it (a subprocess), against kmm sim in this process; SIGTERM
    lands in a 429 storm that lasts through the stop."""
    import os
    import signal
    import sys

    import kmm
    known = {m.ticker: m for m in default_markets()}
    async with SimExchange(SimConfig(seed=5, flow="busy", speed=2.0, rate_tier="off",
                                     markets=[known[t] for t in MARKETS])) as sim:
        key_id, pem = sim.create_key()
        key = tmp_path / "key.pem"
        key.write_bytes(pem)
        key.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
        env["HOME"] = str(tmp_path)
        env["PYTHONPATH"] = str(Path(kmm.__file__).resolve().parent.parent)   # this checkout's kmm
        out = tmp_path / "out"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kmm", "run", "--rest-url", sim.rest_url, "--ws-url", sim.ws_url,
            "--api-key-id", key_id, "--private-key", str(key), "--markets", ",".join(MARKETS),
            "--out", str(out), "--view", "off", "--set", "strategy.quote_size=5",
            "--set", f"run.out_dir={tmp_path / 'runs'}",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await until(lambda: {o["ticker"] for o in resting(sim, key_id)} == set(MARKETS), 40,
                        "kmm run quoting both markets")
            sim.faults.rate_limit_storm(120.0, let_through_every=5)
            t0, t0_ms = time.monotonic(), now_ms()
            proc.send_signal(signal.SIGTERM)
            flat_s = await wait_flat(sim, key_id, t0, 10)
            flat_ms = now_ms()
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            exit_s = time.monotonic() - t0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        storm_hits = sim.stats.get("rest_fault_429_storm", 0)
        assert not resting(sim, key_id)
        late = contracts_filled_since(sim, key_id, flat_ms)
    print(f"kmm run + SIGTERM in a 429 storm: flat {flat_s:.2f} s, exit {proc.returncode} after {exit_s:.1f} s, "
          f"contracts filled after the signal {contracts_filled_since(sim, key_id, t0_ms) / 100:.2f}, "
          f"429s served {storm_hits}")
    text = stdout.decode()
    assert proc.returncode == exits.OK, text + stderr.decode()
    assert flat_s <= 10.0 and late == 0 and storm_hits > 0
    assert "orders resting after stop: 0 (verified over REST)" in text


# ------------------------------------------------------------------------- a market changes its grid
async def test_a_new_price_grid_moves_the_gate_and_the_strategy_before_quoting_resumes(tmp_path):
    from kmm.kalshi.types import Lifecycle
    t = "KXSIMB-26-B"                                   # deci_cent at the sim: $0.001 ticks

    def static_book(sim: SimExchange, _key: str) -> None:
        other, _ = sim.create_key()
        sim.place_direct(other, t, "bid", 4000, 5000)
        sim.place_direct(other, t, "ask", 6000, 5000)

    async with maker_on_sim(tmp_path, flow="off", markets=(t,), before_start=static_book) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) == 2, 10, "both quotes")
        before = {o["order_id"] for o in resting(run.sim, run.key_id)}
        cent = ((0, 10_000, 100),)                      # the exchange moves it to whole cents
        run.engine.ws.regrid(t, cent)                   # what the connector does on the lifecycle message
        run.engine.on_lifecycle(Lifecycle(t, "price_level_structure_updated", None, 0,
                                          price_level_structure="linear_cent", price_ranges=cent))
        await until(lambda: run.engine.events_of("regrid", t), 5, "the regrid")
        await until(lambda: len(resting(run.sim, run.key_id)) == 2
                    and not before & {o["order_id"] for o in resting(run.sim, run.key_id)}, 10,
                    "quotes on the new grid")
        now = resting(run.sim, run.key_id)
        assert all(o["price"] % 100 == 0 for o in now), now
        assert run.engine.gate.markets[t].grid.tick_size(5000) == 100
        assert run.engine.pipes[t].info.grid.tick_size(5000) == 100
    assert_clean_stop(run)


# ------------------------------------------------------------------------- the group triggers
async def test_an_order_group_trigger_message_trips_the_kill_switch_at_once(tmp_path):
    from kmm.kalshi.types import OrderGroupUpdate
    async with maker_on_sim(tmp_path, flow="calm", options={"order_group_limit": 100_000}) as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        gid = run.engine.group_id
        assert gid is not None
        await run.engine.rest.trigger_order_group(gid)          # the exchange's circuit breaker fires
        sent = run.engine.orders_sent
        run.engine.on_order_group(OrderGroupUpdate(gid, "triggered", None, 0))
        assert run.engine.gate.kill_state.value == "tripped"
        assert run.engine.events_of("group_triggered")
        await asyncio.sleep(1.0)
        assert run.engine.orders_sent == sent, "a create was sent after the group triggered"
        assert not resting(run.sim, run.key_id)
    assert_clean_stop(run)


async def test_the_exchange_moving_a_market_to_another_grid_is_followed_end_to_end(tmp_path):
    """kmm sim moves the market (lifecycle price_level_structure_updated over the wire): the connector
    regrids the book, the maker moves its gate and pipeline, and quotes come back on the new grid."""
    t = "KXSIMB-26-B"                                   # deci_cent at start

    def static_book(sim: SimExchange, _key: str) -> None:
        other, _ = sim.create_key()
        sim.place_direct(other, t, "bid", 4000, 5000)
        sim.place_direct(other, t, "ask", 6000, 5000)

    async with maker_on_sim(tmp_path, flow="off", markets=(t,), before_start=static_book) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) == 2, 10, "both quotes")
        run.sim.faults.change_grid(t, "linear_cent")
        await until(lambda: run.engine.events_of("regrid", t), 10, "the regrid")
        await until(lambda: len(resting(run.sim, run.key_id)) == 2
                    and run.engine.pipes[t].state == "quoting", 10, "quotes on the new grid")
        assert all(o["price"] % 100 == 0 for o in resting(run.sim, run.key_id))
        assert run.engine.gate.markets[t].grid.tick_size(5000) == 100
    assert_clean_stop(run)
