"""End-to-end: the market maker against the in-process simulator, and every failure of design
section 6 provoked through the simulator's fault injection, with the reaction asserted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kmm._core.grid import Grid
from kmm.config import load_config
from kmm.engine.live import Engine, EngineOptions, RunSummary
from kmm.kalshi import ConnectorConfig
from kmm.record import Recorder
from kmm.record.capture import read_capture
from kmm.record.store import StoreReader
from kmm.record.tape import read_tape
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import default_markets

pytestmark = pytest.mark.slow

MARKETS = ("KXSIMA-26-A", "KXSIMB-26-B")


@dataclass
class Run:
    sim: SimExchange
    key_id: str
    engine: Engine
    stop: asyncio.Event
    task: asyncio.Task[RunSummary]
    out: Path
    summary: RunSummary | None = None


async def until(cond: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def quoting(engine: Engine) -> bool:
    return engine.quoting and all(p.ready for p in engine.pipes.values()) and engine.orders_sent > 0


def resting(sim: SimExchange, key_id: str, ticker: str | None = None) -> list[dict[str, Any]]:
    return [o for o in sim.orders(key_id, status="resting") if ticker is None or o["ticker"] == ticker]


@contextlib.asynccontextmanager
async def engine_against(sim: SimExchange, key_id: str, pem: bytes, tmp_path: Path, markets: Sequence[str], *,
                         settings: dict[str, str] | None = None, options: dict[str, Any] | None = None,
                         conn_kw: dict[str, Any] | None = None, ready: Callable[[Engine], bool] | None = None,
                         ready_s: float = 15.0, stop_s: float = 40.0,
                         stop_errors: tuple[type[BaseException], ...] = ()) -> AsyncIterator[Run]:
    """The maker on ``sim`` (already running, ``key_id`` funded) as the tests run it: 5-contract quotes,
    max_position 30, records in ``tmp_path/out``. Waits for ``ready(engine)`` (None: no wait), yields the
    run, then stops it and keeps its summary (``stop_errors``: errors of the run the test expects)."""
    conn = ConnectorConfig(env="sim", **(conn_kw or {})).with_server(
        sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=pem)
    cli = {"run.markets": ",".join(markets), "strategy.quote_size": "5", "strategy.max_position": "30",
           "risk.max_order_size": "30", **(settings or {})}
    cfg = load_config(None, environ={}, cli=cli)
    out = tmp_path / "out"
    recorder = Recorder.open(out, console=False, logging_enabled=False)
    opts = EngineOptions(**{"view": "off", "reconcile_interval_s": 2.0, "status_poll_s": 0.5,
                            "order_group_limit": 0, **(options or {})})
    engine = Engine(cfg, conn, recorder=recorder, venue="sim (test)", options=opts)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run(stop))
    run = Run(sim, key_id, engine, stop, task, out)
    try:
        if ready is not None:
            await until(lambda: ready(engine) or task.done(), ready_s, "the engine to quote")
            if task.done():
                task.result()
        yield run
    finally:
        stop.set()
        with contextlib.suppress(*stop_errors):
            run.summary = await asyncio.wait_for(task, stop_s)
        recorder.close()


def sim_markets(tickers: Sequence[str]) -> list[Any]:
    """The specs of sim's default markets by ticker."""
    known = {m.ticker: m for m in default_markets()}
    return [known[t] for t in tickers]


@contextlib.asynccontextmanager
async def engine_on_sim(tmp_path: Path, *, flow: str = "busy", markets: tuple[str, ...] = MARKETS,
                        rate_tier: str = "off", settings: dict[str, str] | None = None,
                        options: dict[str, Any] | None = None, conn_kw: dict[str, Any] | None = None,
                        seed: int = 3, before_start: Callable[[SimExchange, str], None] | None = None
                        ) -> AsyncIterator[Run]:
    async with SimExchange(SimConfig(seed=seed, flow=flow, speed=2.0, rate_tier=rate_tier,
                                     markets=sim_markets(markets))) as sim:
        key_id, pem = sim.create_key()
        if before_start is not None:
            before_start(sim, key_id)
        async with engine_against(sim, key_id, pem, tmp_path, markets, settings=settings, options=options,
                                  conn_kw=conn_kw, ready=quoting, stop_s=30) as run:
            yield run


async def test_market_maker_gets_fills_on_both_sides_and_records_agree_with_the_exchange(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        await until(lambda: run.engine.fills_by_side["bid"] >= 2 and run.engine.fills_by_side["ask"] >= 2,
                    30, "fills on both sides")
        await asyncio.sleep(1.0)
    s, sim, key = run.summary, run.sim, run.key_id
    assert s is not None
    # nothing of ours rests after the stop, and the engine verified it over REST
    assert s.verified_flat_orders and s.resting_after_stop == 0 and resting(sim, key) == []
    # every fill the exchange made for us is counted once, and the portfolio equals the exchange's
    sim_fills = sim.fills(key)
    assert s.fills == len(sim_fills) and s.fills_by_side["bid"] >= 2 and s.fills_by_side["ask"] >= 2
    for t in MARKETS:
        pos = sim.position(key, t)
        assert run.engine.pf.position(t) == pos["position"] == s.positions[t]
        assert run.engine.pf.fees_paid(t) == pos["fees_paid"]
        assert abs(run.engine.pf.position(t)) <= 3000  # max_position 30 contracts
    assert s.portfolio_agrees
    assert run.engine.pf.cash == sim.balance(key)
    # the database holds exactly the exchange's fills, and the tape one fill row per fill
    db_fills = StoreReader(run.out / "kmm.sqlite").fills()
    assert sorted(f.trade_id for f in db_fills) == sorted(f["trade_id"] for f in sim_fills)
    tape = list(read_tape(run.out / "tape.csv"))
    assert sorted(r.trade_id for r in tape if r.event == "fill") == sorted(f["trade_id"] for f in sim_fills)
    # quotes: every order on its market's grid, and our bid always below our ask
    grids = {t: Grid(m.price_level_structure) for t, m in
             ((m.ticker, m) for m in default_markets()) if t in MARKETS}
    for o in sim.orders(key):
        assert grids[o["ticker"]].is_valid(o["price"]), o
        assert o["post_only"]
    for r in tape:
        assert abs(r.inventory) <= 3000
        if r.my_bid is not None and r.my_ask is not None:
            assert r.my_bid < r.my_ask, r
    decisions = [r for r in tape if r.event == "decision"]
    assert decisions and all(r.latency_ns is not None and r.latency_ns > 0 for r in decisions)
    # the raw capture holds the frames, in receive order, and contains our fills
    frames = list(read_capture(next(run.out.glob("capture*.bin.gz"))))
    assert len(frames) > 100 and all(a.recv_ns <= b.recv_ns for a, b in zip(frames, frames[1:]))
    assert sum(b'"type":"fill"' in f.frame for f in frames) >= len(sim_fills)


async def test_seq_gap_pulls_the_quotes_resnapshots_and_resumes(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) > 0, 10, "resting quotes")
        run.sim.flow_running = False          # freeze the book so the quotes stay put until the gap
        await until(lambda: all(o.actionable for p in run.engine.pipes for o in run.engine.om.live_orders(p)),
                    5, "no request in flight")
        quoted = {o["ticker"] for o in resting(run.sim, run.key_id)}
        run.sim.flow_running = True
        run.sim.faults.skip_seq(1)
        await until(lambda: run.engine.events_of("book_stale"), 10, "a stale book after the gap")
        stale_at = run.engine.events_of("book_stale")[0][0]
        t = next(t for t in quoted if run.engine.events_of("book_stale", t))
        await until(lambda: [e for e in run.engine.events_of("book_ready", t) if e[0] > stale_at], 10,
                    "the fresh snapshot")
        assert any(e[0] >= stale_at for e in run.engine.events_of("pull", t)), "quotes were not pulled"
        await until(lambda: run.engine.pipes[t].state == "quoting" and resting(run.sim, run.key_id, t), 10,
                    "quoting to resume")


async def test_websocket_loss_cancels_everything_then_reconciles_before_quoting_again(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) >= 2, 10, "resting quotes")
        before = {o["order_id"] for o in resting(run.sim, run.key_id)}
        assert run.sim.faults.drop_ws_connections() >= 1
        await until(lambda: run.engine.events_of("resumed"), 20, "resume after reconnect")
        kinds = [e[1] for e in run.engine.events]
        i = kinds.index("disconnected")
        assert "cancel_all" in kinds[i:] and "reconciled" in kinds[i:]
        assert kinds.index("reconciled", i) < kinds.index("resumed", i)
        # every order that rested before the loss was cancelled (or filled) at the exchange
        still = {o["order_id"] for o in resting(run.sim, run.key_id)} & before
        assert not still, f"orders from before the disconnect still rest: {still}"
        await until(lambda: resting(run.sim, run.key_id), 10, "new quotes after the reconnect")


async def test_stalled_feed_marks_books_stale_and_quoting_resumes_after(tmp_path):
    async with engine_on_sim(tmp_path, settings={"risk.stale_after_s": "1"}, options={"feed_silent_s": 1.0}) as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        run.sim.faults.stall_feed(2.5)
        await until(lambda: run.engine.events_of("book_stale"), 10, "stale books during the stall")
        stale_at = run.engine.events_of("book_stale")[0][0]
        await until(lambda: [e for e in run.engine.events_of("book_ready") if e[0] > stale_at], 15,
                    "fresh snapshots after the stall")
        await until(lambda: all(p.state == "quoting" for p in run.engine.pipes.values()), 10, "quoting again")


async def test_429_burst_pauses_places_but_the_engine_recovers(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        sent = run.engine.orders_sent + run.engine.amends_sent
        run.sim.faults.http_error_burst(429, 6)
        await until(lambda: run.engine.gate.backoff_level > 0 or run.engine.rest.limiter.paused, 10,
                    "the 429 to be seen")
        await until(lambda: run.engine.orders_sent + run.engine.amends_sent > sent + 3, 20,
                    "orders to flow again after the back-off")
        # a back-off pauses places and amends; it never pulls the quotes that rest
        assert not [e for e in run.engine.events_of("pull") if "rate" in e[3]]
    assert run.summary is not None and run.summary.verified_flat_orders


async def test_create_timeout_is_never_blindly_retried(tmp_path):
    async with engine_on_sim(tmp_path, flow="calm", conn_kw={"request_timeout_s": 0.3}) as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        run.sim.faults.delay_rest(0.8, count=2)
        n = run.engine.orders_sent
        await until(lambda: run.engine.orders_sent > n + 2, 20, "more creates after the delays")
    coids = [o["client_order_id"] for o in run.sim.orders(run.key_id)]
    assert len(coids) == len(set(coids)), "a client_order_id reached the exchange twice"
    assert run.summary is not None and run.summary.verified_flat_orders


async def test_loss_limit_trips_the_kill_switch_and_cancels_everything(tmp_path):
    settings = {"risk.max_loss": "0.01", "risk.resume_recovery": "0.01", "risk.loss_reduce_only_at": "1"}
    async with engine_on_sim(tmp_path, settings=settings) as run:
        await until(lambda: run.engine.events_of("kill_switch"), 40, "the kill switch")
        await until(lambda: not resting(run.sim, run.key_id), 10, "every order cancelled")
        await asyncio.sleep(0.5)
        assert not resting(run.sim, run.key_id), "an order was placed while the kill switch was tripped"
        assert run.engine.gate.kill_state.value in ("tripped", "paused")


async def test_exchange_pause_stops_quoting_and_resume_restarts_it(tmp_path):
    async with engine_on_sim(tmp_path, flow="calm") as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        run.sim.pause_exchange()
        await until(lambda: run.engine.events_of("exchange_paused"), 10, "the pause to be seen")
        assert not resting(run.sim, run.key_id)  # cancel_order_on_pause on every order
        run.sim.resume_exchange()
        await until(lambda: run.engine.events_of("exchange_resumed"), 10, "the resume to be seen")
        await until(lambda: resting(run.sim, run.key_id), 10, "quotes after the resume")


async def test_duplicate_fill_messages_are_counted_once(tmp_path):
    async with engine_on_sim(tmp_path) as run:
        run.sim.faults.duplicate_next_fill(5)
        await until(lambda: run.engine.fills >= 6, 30, "fills")
    assert run.summary is not None
    assert run.summary.fills == len(run.sim.fills(run.key_id))


async def test_orders_left_from_before_are_cancelled_at_start(tmp_path):
    left: list[str] = []

    def leftover(sim: SimExchange, key: str) -> None:
        left.append(sim.place_direct(key, "KXSIMA-26-A", "bid", 200, 100, coid="old-session-1"))

    async with engine_on_sim(tmp_path, flow="calm", before_start=leftover) as run:
        assert left and left[0] not in {o["order_id"] for o in resting(run.sim, run.key_id)}


async def test_orders_left_from_before_are_adopted_when_configured(tmp_path):
    left: list[str] = []

    def leftover(sim: SimExchange, key: str) -> None:
        left.append(sim.place_direct(key, "KXSIMA-26-A", "bid", 200, 100, coid="old-session-2"))

    async with engine_on_sim(tmp_path, flow="calm", before_start=leftover,
                             settings={"risk.unknown_order_policy": "adopt"}) as run:
        adopted = run.engine.om.by_order_id(left[0])
        assert adopted is not None and adopted.adopted
    assert run.summary is not None and run.summary.verified_flat_orders  # and cancelled at stop
    assert not resting(run.sim, run.key_id)


async def test_operator_can_trip_the_kill_switch_and_re_arm_it(tmp_path):
    async with engine_on_sim(tmp_path, flow="calm") as run:
        await until(lambda: resting(run.sim, run.key_id), 10, "resting quotes")
        run.engine.operator_trip("test: operator")
        await until(lambda: not resting(run.sim, run.key_id), 10, "every order cancelled")
        await until(lambda: run.engine.gate.kill_state.value == "paused", 5, "the pause after the sweep")
        run.engine.operator_resume()
        await until(lambda: resting(run.sim, run.key_id), 10, "quotes after the operator re-armed")


def _static_book(sim: SimExchange, _key: str) -> None:
    other, _ = sim.create_key()
    for t in sim.tickers:
        sim.place_direct(other, t, "bid", 4000, 5000)
        sim.place_direct(other, t, "ask", 6000, 5000)


async def test_a_quiet_market_keeps_its_quotes_and_is_rechecked_with_a_snapshot(tmp_path):
    async with engine_on_sim(tmp_path, flow="off", before_start=_static_book,
                             settings={"risk.stale_after_s": "0.5"}) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) == 4, 10, "quotes on both markets")
        quoted = {o["order_id"] for o in resting(run.sim, run.key_id)}
        await until(lambda: len(run.engine.events_of("quiet_check")) >= 2, 10, "quiet re-checks")
        assert not run.engine.events_of("book_stale") and not run.engine.events_of("pull")
        assert {o["order_id"] for o in resting(run.sim, run.key_id)} == quoted


async def test_pull_on_silence_pulls_the_quotes_of_a_quiet_market(tmp_path):
    async with engine_on_sim(tmp_path, flow="off", before_start=_static_book,
                             settings={"risk.stale_after_s": "0.5", "risk.pull_on_silence": "true"}) as run:
        await until(lambda: run.engine.events_of("pull"), 10, "quotes pulled on silence")
        assert run.engine.events_of("book_stale")


async def test_book_snapshots_are_stored_at_the_configured_interval(tmp_path):
    async with engine_on_sim(tmp_path, settings={"records.book_snapshot_interval_s": "0.5"}) as run:
        await asyncio.sleep(1.5)
    snaps = StoreReader(run.out / "kmm.sqlite").book_snapshots(reason="interval")
    assert {s.ticker for s in snaps} == set(MARKETS)


async def test_loss_limit_trips_on_a_falling_mark_without_any_fill(tmp_path):
    """Long 20 contracts bought at 0.60 before the session; the market then drops to 0.20 with no
    trade of ours: the unrealized loss alone must trip the kill switch."""
    other: list[str] = []

    def setup(sim: SimExchange, key: str) -> None:
        o, _ = sim.create_key()
        other.append(o)
        sim.place_direct(o, "KXSIMA-26-A", "bid", 5800, 1000)
        sim.place_direct(o, "KXSIMA-26-A", "ask", 6000, 2000)
        sim.place_direct(key, "KXSIMA-26-A", "bid", 6000, 2000, tif="immediate_or_cancel")   # we buy 20
        sim.place_direct(o, "KXSIMA-26-A", "ask", 6200, 1000)

    settings = {"risk.max_loss": "5", "risk.resume_recovery": "1", "risk.loss_reduce_only_at": "1",
                "strategy.max_position": "30"}
    async with engine_on_sim(tmp_path, flow="off", markets=("KXSIMA-26-A",), before_start=setup,
                             settings=settings) as run:
        assert run.engine.pf.position("KXSIMA-26-A") == 2000 and run.engine.fills == 0
        assert not run.engine.events_of("kill_switch")
        o = other[0]
        for order in run.sim.orders(o, status="resting"):
            if order["side"] == "bid":
                run.sim.engine.cancel(run.sim.engine.accounts[o], order["order_id"])
        run.sim.place_direct(o, "KXSIMA-26-A", "bid", 2000, 1000)
        await until(lambda: run.engine.events_of("kill_switch"), 10, "the kill switch on the mark alone")
        assert run.engine.fills == 0
        await until(lambda: not resting(run.sim, run.key_id), 10, "every order cancelled")


async def test_settlement_pulls_the_market_and_the_portfolio_still_agrees(tmp_path):
    async with engine_on_sim(tmp_path, flow="busy") as run:
        await until(lambda: run.engine.fills >= 2, 30, "some fills")
        await run.sim.settle("KXSIMA-26-A", "yes")
        await until(lambda: [e for e in run.engine.events if e[1] == "pull" and "settled" in e[3]]
                    or run.engine.pipes["KXSIMA-26-A"].state != "quoting", 10, "the market to stop")
        await until(lambda: not resting(run.sim, run.key_id, "KXSIMA-26-A"), 10, "its quotes gone")
    assert run.summary is not None and run.summary.portfolio_agrees
    assert run.engine.pf.position("KXSIMA-26-A") == 0


async def test_an_order_closed_here_but_resting_at_the_exchange_is_cancelled(tmp_path):
    async with engine_on_sim(tmp_path, flow="off", before_start=_static_book, markets=("KXSIMA-26-A",)) as run:
        await until(lambda: len(resting(run.sim, run.key_id)) == 2, 10, "both quotes")
        bid = next(o for o in resting(run.sim, run.key_id) if o["side"] == "bid")
        # the exchange rests it as soon as it took the create; the engine knows it once the answer is read
        await until(lambda: run.engine.om.by_order_id(bid["order_id"]) is not None, 10, "the create's answer")
        run.engine.om.on_cancel_ack(bid["order_id"])       # we wrongly believe it is gone
        assert not run.engine.om.by_order_id(bid["order_id"]).is_live
        taker, _ = run.sim.create_key()
        run.sim.place_direct(taker, "KXSIMA-26-A", "ask", bid["price"], 100, tif="immediate_or_cancel")
        await until(lambda: run.engine.events_of("stray_order"), 10, "the stray order to be noticed")
        await until(lambda: bid["order_id"] not in {o["order_id"] for o in resting(run.sim, run.key_id)}, 10,
                    "the stray order to be cancelled")
