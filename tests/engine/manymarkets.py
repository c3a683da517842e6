"""Many markets at once: run the maker on N simulated markets and measure how the write budget is shared.

Used by ``tests/engine/test_many_markets.py`` (bounded, asserts no market starves) and by
``bench/bench_fair.py`` (the numbers). The markets come in events of ``per_event`` (every other event
mutually exclusive), so the event limits and the per-event roll-up see realistic groups.

What is measured, per market, from the engine's own write calls (the session's ``place``,
``place_batch``, ``amend``, ``cancel``, ``decrease``, wrapped here; times on the loop's monotonic clock):

* writes: every write request issued for the market (creates, amends, cancels, decreases);
* first quote: from the moment the engine starts quoting (``engine.quoting``) to the answer of the
  market's first create (None: never quoted);
* longest wait of a write: call -> answer of one request (limiter queue + round trip);
* longest gap between writes: the longest time between two consecutive write answers of a market
  after its first quote (with synthetic flow every market keeps wanting to requote).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from kmm.config import load_config
from kmm.engine.maker import Engine, EngineOptions
from kmm.kalshi import ConnectorConfig
from kmm.record import Recorder
from kmm.sim import SimConfig, SimExchange
from kmm.sim.config import MarketSpec


def market_specs(n: int, per_event: int = 5) -> list[MarketSpec]:
    """``n`` markets in events of ``per_event``; odd events mutually exclusive (fair values summing < 1)."""
    out = []
    for i in range(n):
        e, k = divmod(i, per_event)
        me = e % 2 == 1
        ev = f"KXMANY-{e:03d}"
        fv = (0.9 / per_event) * (0.6 + 0.8 * k / max(1, per_event - 1)) if me else 0.15 + 0.7 * ((i * 37) % 100) / 100
        out.append(MarketSpec(f"{ev}-M{k}", event_ticker=ev, series_ticker="KXMANY", mutually_exclusive=me,
                              fair_value=round(min(0.95, max(0.05, fv)), 3)))
    return out


class WriteLog:
    """Per-market (call ns, answer ns, kind) of every write the session makes."""

    def __init__(self) -> None:
        self.writes: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self.outcomes: Counter[Any] = Counter()
        self.sides: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)   # placed creates' sides

    def wrap(self, engine: Engine) -> None:
        s = engine.session
        om = s.om

        def timed(name: str, ticker_of: Any) -> None:
            orig = getattr(s, name)

            async def wrapper(*a: Any, **kw: Any) -> Any:
                t0 = time.monotonic_ns()
                res: Any = None
                try:
                    res = await orig(*a, **kw)
                    return res
                finally:
                    t1 = time.monotonic_ns()
                    tickers = ticker_of(*a, **kw)
                    # a create counts when the exchange took it (placed); one dropped from the limiter's
                    # queue at the stop, or refused, is not a quote
                    if name == "place":
                        outs = [res]
                        if res == "placed":
                            self.sides[a[1].ticker].append((t0, t1, name, a[1].side))
                    elif name == "place_batch":
                        outs = [r for r, _ in res] if res else [None] * len(tickers)
                        for (_, req), out in zip(a[0], outs):
                            if out == "placed":
                                self.sides[req.ticker].append((t0, t1, name, req.side))
                    else:
                        outs = ["placed"] * len(tickers)
                    for t, out in zip(tickers, outs):
                        self.writes[t].append((t0, t1, name if out == "placed" else "failed"))
                        self.outcomes[out] += 1
            setattr(s, name, wrapper)

        def by_oid(order_id: str, *a: Any, **kw: Any) -> list[str]:
            o = om.by_order_id(order_id)
            return [o.ticker] if o is not None else []

        timed("place", lambda o, req, *a, **kw: [req.ticker])
        timed("place_batch", lambda items, *a, **kw: [req.ticker for _, req in items])
        timed("amend", lambda o, price, *a, **kw: [o.ticker])
        timed("cancel", lambda order_id, ticker="", *a, **kw: [ticker] if ticker else by_oid(order_id))
        timed("decrease", by_oid)


def fairness(log: WriteLog, tickers: list[str], quoting_ns: int, end_ns: int) -> dict[str, Any]:
    counts = [sum(x[2] != "failed" for x in log.writes.get(t, ())) for t in tickers]
    firsts: list[float | None] = []
    waits: list[float] = []
    gaps: list[float] = []
    for t in tickers:
        w = sorted((x for x in log.writes.get(t, ()) if x[2] != "failed"), key=lambda x: x[1])
        creates = [x for x in w if x[2] in ("place", "place_batch")]
        firsts.append((creates[0][1] - quoting_ns) / 1e9 if creates else None)
        waits.append(max(((b - a) / 1e9 for a, b, _ in w), default=0.0))
        if creates:
            done = [b for _, b, _ in w if b >= creates[0][1]] + [end_ns]
            gaps.append(max((y - x) / 1e9 for x, y in zip(done, done[1:])) if len(done) > 1 else 0.0)
    quoted = [f for f in firsts if f is not None]
    mean = statistics.fmean(counts) if counts else 0.0
    jain = (sum(counts) ** 2 / (len(counts) * sum(c * c for c in counts))) if any(counts) else 0.0
    sides = {t: {x[3] for x in log.sides.get(t, ())} for t in tickers}
    return {
        "markets": len(tickers), "never_quoted": sum(f is None for f in firsts),
        "one_sided": sorted(t for t in tickers if len(sides[t]) == 1),
        "writes_total": sum(counts), "writes_min": min(counts, default=0),
        "writes_median": statistics.median(counts) if counts else 0,
        "writes_max": max(counts, default=0), "writes_mean": round(mean, 2), "jain_index": round(jain, 3),
        "first_quote_median_s": round(statistics.median(quoted), 3) if quoted else None,
        "first_quote_max_s": round(max(quoted), 3) if quoted else None,
        "write_wait_max_s": round(max(waits, default=0.0), 3),
        "write_wait_median_of_max_s": round(statistics.median(waits), 3) if waits else None,
        "gap_between_writes_max_s": round(max(gaps, default=0.0), 3),
        "gap_between_writes_median_of_max_s": round(statistics.median(gaps), 3) if gaps else None,
    }


async def measure(tmp: Path, n: int, tier: str, seconds: float, *, flow: str = "calm", seed: int = 7,
                  settings: dict[str, str] | None = None, start_timeout_s: float = 120.0,
                  speed: float = 1.0) -> dict[str, Any]:
    """Quote ``n`` simulated markets for ``seconds`` on rate tier ``tier`` (the sim enforces it and the
    client's limiter mirrors it). Returns the fairness figures, the start time and engine counters."""
    specs = market_specs(n)
    tickers = [m.ticker for m in specs]
    async with SimExchange(SimConfig(seed=seed, flow=flow, speed=speed, rate_tier=tier, markets=specs)) as sim:
        key_id, pem = sim.create_key()
        conn = ConnectorConfig(env="sim", rate_tier=tier).with_server(sim.rest_url, sim.ws_url, api_key_id=key_id,
                                                                      private_key_pem=pem)
        cli = {"run.markets": ",".join(tickers), "strategy.quote_size": "1", "strategy.max_position": "20",
               "risk.max_order_size": "20", "risk.max_open_orders_total": str(4 * n + 10),
               "risk.max_total_position": str(40 * n), "risk.max_loss": "100000", "risk.max_event_loss": "1000",
               "risk.max_event_exposure": "1000", "risk.order_group_limit": "0", **(settings or {})}
        cfg = load_config(None, environ={}, cli=cli)
        recorder = Recorder.open(tmp / "out", console=False, logging_enabled=False)
        engine = Engine(cfg, conn, recorder=recorder, venue=f"sim {tier}",
                        options=EngineOptions(view="off", reconcile_interval_s=5.0, status_poll_s=5.0,
                                              order_group_limit=0, gc_freeze=False))
        log = WriteLog()
        log.wrap(engine)
        stop = asyncio.Event()
        t_start = time.monotonic_ns()
        task = asyncio.ensure_future(engine.run(stop))
        try:
            deadline = time.monotonic() + start_timeout_s
            while not engine.quoting:
                if task.done():
                    task.result()
                    raise AssertionError("engine.run returned before quoting")
                if time.monotonic() > deadline:
                    raise AssertionError(f"the engine did not start quoting {n} markets in {start_timeout_s} s")
                await asyncio.sleep(0.01)
            quoting_ns = time.monotonic_ns()
            await asyncio.sleep(seconds)
            end_ns = time.monotonic_ns()
            sim_empty = sum(1 for t in tickers if not any(sim.book(t).values()))
            rest_sides: dict[str, set[str]] = defaultdict(set)
            for o in sim.orders(key_id, status="resting"):
                rest_sides[o["ticker"]].add(o["side"])
            resting_two = sum(1 for t in tickers if len(rest_sides[t]) == 2)
            statuses = Counter(o["status"] for o in sim.orders(key_id))
            our_fills = len(sim.fills(key_id))
            resting_none = sum(1 for t in tickers if not rest_sides[t])
            eng_empty = sum(1 for t in tickers if engine.pipes[t].book is None
                            or not (engine.pipes[t].book.bids(1) or engine.pipes[t].book.asks(1)))
            view_line_chars = len(engine.snapshot_line()) if hasattr(engine, "snapshot_line") else None
        finally:
            stop.set()
            summary = await asyncio.wait_for(task, 120)
            recorder.close()
        out = fairness(log, tickers, quoting_ns, end_ns)
        out.update({"tier": tier, "seconds": seconds, "start_s": round((quoting_ns - t_start) / 1e9, 2),
                    "orders_sent": summary.orders_sent, "amends_sent": summary.amends_sent,
                    "cancels_sent": summary.cancels_sent, "resting_after_stop": summary.resting_after_stop,
                    "verified_flat": summary.verified_flat_orders, "sim_429": sim.stats_rest.get("429", 0),
                    "skipped_reprices": summary.skipped_reprices})
        if view_line_chars is not None:
            out["view_line_chars"] = view_line_chars
        out["outcomes"] = dict(log.outcomes)
        out["books_empty_sim"], out["books_empty_engine"] = sim_empty, eng_empty
        out["resting_two_sided_at_end"], out["resting_none_at_end"] = resting_two, resting_none
        out["sim_order_statuses"], out["sim_fills"] = dict(statuses), our_fills
        out["engine"] = engine
        out["summary"] = summary
        return out
