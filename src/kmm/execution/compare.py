"""``kmm execute compare``: the algorithms side by side on identical simulated markets.

Every (scenario, run) starts one in-process simulator **per algorithm**, all with the same seed, the
same market and the same synthetic flow (the flow's random stream is seeded by seed and ticker), and
runs one execution in each at the same time. Two scenarios:

- ``thin``: only the synthetic liquidity provider's ladder (5-30 contracts per level);
- ``thick``: the same plus a deep ladder (200 contracts per level, 1 cent apart) on the take side.

The simulators' flow and the algorithms' clocks both run ``scale`` times faster than the wall
(``SimConfig.speed`` and ``ExecutionService(time_scale=)``), so a 60 s execution takes 3 s at 20x.
Times in the table are simulated seconds. The PNG needs matplotlib (``pip install 'kmm[plot]'``);
without it the table is still printed and the chart step fails with that instruction.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kmm.errors import KmmError
from kmm.execution.algos import ALGORITHMS
from kmm.execution.metrics import ExecutionMetrics
from kmm.execution.request import Action, ExecutionRequest, RequestError

__all__ = ["CompareError", "RunResult", "Scenario", "SCENARIOS", "run_compare", "summarize", "format_table",
           "write_chart", "write_csv", "run_compare_cli", "Bar", "PANELS", "chart_bars"]

TICKER = "KXCMP-26-A"
FAIR = 0.50


class CompareError(KmmError):
    """The comparison could not be made (bad arguments, or the chart library is missing)."""


@dataclass(slots=True, frozen=True)
class Scenario:
    name: str
    extra_asks: tuple[tuple[int, int], ...]    # (YES price, size 1e-2) rested by a counterparty


SCENARIOS = (
    Scenario("thin", ()),
    Scenario("thick", tuple((p, 20000) for p in (5000, 5100, 5200, 5300, 5400))),
)


@dataclass(slots=True, frozen=True)
class RunResult:
    scenario: str
    algo: str
    run: int
    metrics: ExecutionMetrics
    api_calls: int


async def _one(algo: str, scenario: Scenario, seed: int, run: int, size: int, limit: int, scale: float,
               sim_seconds: float, key: tuple[str, tuple[bytes, bytes]]) -> RunResult:
    from kmm.engine.risk import RiskLimits
    from kmm.execution.driver import ExecutionService
    from kmm.kalshi import ConnectorConfig
    from kmm.sim import MarketSpec, SimConfig, SimExchange
    cfg = SimConfig(seed=seed, flow="calm", speed=scale, rate_tier="off",
                    markets=[MarketSpec(TICKER, fair_value=FAIR)])
    async with SimExchange(cfg) as sim:
        key_id, (pub, priv) = key
        sim.add_key(key_id, pub)
        if scenario.extra_asks:
            maker, _ = sim.create_key(balance="1000000")
            for p, s in scenario.extra_asks:
                sim.place_direct(maker, TICKER, "ask", p, s)
        conn = ConnectorConfig.resolve({}, {"env": "sim", "rest_url": sim.rest_url, "ws_url": sim.ws_url}, {})
        conn = conn.with_server(sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=priv)
        limits = RiskLimits(max_position=10_000_000, max_total_position=10_000_000, max_order_size=10_000_000,
                            max_order_notional=10**12, max_open_orders_per_market=1000, max_open_orders_total=1000)
        async with ExecutionService(conn, limits=limits, time_scale=scale, settle_s=1.0, recover=False) as svc:
            req = ExecutionRequest(TICKER, Action.BUY_YES, size, limit, algo=algo,
                                   params={"timeout_s": sim_seconds})
            h = await svc.submit(req, execution_id=f"cmp{run}{algo[:3]}{scenario.name[:2]}")
            m = await h.wait(sim_seconds / scale + 30)
            calls = sum(v for k, v in svc.calls.items() if k != "cancel_batches")
    return RunResult(scenario.name, algo, run, m, calls)


async def run_compare(algos: Sequence[str], *, runs: int = 3, seed: int = 1, size: int = 5000,
                      limit: int = 5400, scale: float = 20.0, sim_seconds: float = 60.0,
                      scenarios: Sequence[Scenario] = SCENARIOS) -> list[RunResult]:
    """Run every algorithm ``runs`` times in every scenario; seeds ``seed .. seed + runs - 1``."""
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise RequestError(f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(ALGORITHMS)}")
    if not algos or runs < 1:
        raise RequestError("compare needs at least one algorithm and --runs >= 1")
    from kmm.sim.auth import new_key_id, new_key_pair
    priv, pub = new_key_pair()     # one account key for every simulator (key generation is slow)
    key = (new_key_id(), (pub, priv))
    out: list[RunResult] = []
    for sc in scenarios:
        for r in range(runs):
            out.extend(await asyncio.gather(*(_one(a, sc, seed + r, r, size, limit, scale, sim_seconds, key)
                                              for a in algos)))
    return out


def _ms(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


COLUMNS = (
    ("fill rate %", lambda m, c: 100.0 * m.fill_rate),
    ("slip arr c", lambda m, c: None if m.slippage_vs_arrival is None else m.slippage_vs_arrival / 100),
    ("slip lim c", lambda m, c: None if m.slippage_vs_limit is None else m.slippage_vs_limit / 100),
    ("fees $", lambda m, c: m.fees / 10000),
    ("1st fill s", lambda m, c: None if m.time_to_first_fill_ns is None else m.time_to_first_fill_ns / 1e9),
    ("full fill s", lambda m, c: None if m.time_to_full_fill_ns is None else m.time_to_full_fill_ns / 1e9),
    ("API calls", lambda m, c: float(c)),
)


def summarize(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[str, tuple[float, float] | None]]:
    """(scenario, algo) -> column -> (mean, sample stdev) over runs (None when no run had a value)."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.algo), []).append(r)
    out = {}
    for k, rs in groups.items():
        row = {}
        for name, f in COLUMNS:
            vals = [v for v in (f(r.metrics, r.api_calls) for r in rs) if v is not None and math.isfinite(v)]
            row[name] = _ms(vals)
        out[k] = row
    return out


def format_table(summary: dict[tuple[str, str], dict[str, tuple[float, float] | None]], runs: int) -> str:
    head = ["scenario", "algo"] + [c for c, _ in COLUMNS]
    rows = [head]
    for (sc, algo), cols in summary.items():
        rows.append([sc, algo] + ["-" if cols[c] is None else f"{cols[c][0]:.2f}±{cols[c][1]:.2f}"  # type: ignore[index]
                                  for c, _ in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"mean±stdev over {runs} run(s); slippage in cents per contract (+ = worse); "
                 "times in simulated seconds")
    return "\n".join(lines)


def write_csv(results: Sequence[RunResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "algo", "run"] + [c for c, _ in COLUMNS] + ["end_reason"])
        for r in results:
            w.writerow([r.scenario, r.algo, r.run] + [f(r.metrics, r.api_calls) for _, f in COLUMNS]
                       + [r.metrics.end_reason])


#: panel column -> (title in words, axis label with unit, (lowest, highest) value the measure can take)
PANELS: dict[str, tuple[str, str, tuple[float | None, float | None]]] = {
    "fill rate %": ("Share of the order filled", "filled (% of target)", (0.0, 100.0)),
    "slip arr c": ("Slippage against the arrival price", "cents per contract (+ = worse)", (None, None)),
    "fees $": ("Fees paid", "$ per execution", (0.0, None)),
    "full fill s": ("Time to fill the whole order", "simulated seconds", (0.0, None)),
    "API calls": ("Exchange API calls", "calls per execution", (0.0, None)),
    "slip lim c": ("Slippage against the limit price", "cents per contract (+ = worse)", (None, None)),
}


@dataclass(slots=True, frozen=True)
class Bar:
    """One bar of the chart: mean with an error bar of one stdev, cut to what the measure can take."""

    x: float
    height: float
    err_low: float
    err_high: float


def chart_bars(summary: dict[tuple[str, str], dict[str, tuple[float, float] | None]]
               ) -> tuple[list[str], list[str], dict[str, dict[str, list[Bar | None]]]]:
    """(scenarios, algos, panel -> scenario -> one entry per algo). An entry is None when no run of
    that algorithm had a value (e.g. never filled: no time to fill), so nothing is drawn for it."""
    scenarios = sorted({s for s, _ in summary})
    algos = sorted({a for _, a in summary})
    width = 0.8 / max(1, len(scenarios))
    out: dict[str, dict[str, list[Bar | None]]] = {}
    for col, (_, _, (lo, hi)) in PANELS.items():
        per: dict[str, list[Bar | None]] = {}
        for i, sc in enumerate(scenarios):
            bars: list[Bar | None] = []
            for j, a in enumerate(algos):
                v = summary.get((sc, a), {}).get(col)
                if v is None:
                    bars.append(None)
                    continue
                mean, sd = v
                low = sd if lo is None else max(0.0, min(sd, mean - lo))
                high = sd if hi is None else max(0.0, min(sd, hi - mean))
                bars.append(Bar(j + i * width, mean, low, high))
            per[sc] = bars
        out[col] = per
    return scenarios, algos, out


def write_chart(summary: dict[tuple[str, str], dict[str, tuple[float, float] | None]], path: Path) -> Path:
    """A PNG with one panel per measure, bars per algorithm grouped by scenario, one stdev as error bars
    (cut at the measure's bounds: no fill rate above 100 %, no time below 0). An algorithm with no value
    (never filled) gets no bar but an "n/a" mark; the legend sits outside the panels."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CompareError("the PNG chart needs matplotlib, which is not installed: "
                           "pip install 'kmm[plot]' (or matplotlib>=3.8); the table above is complete") from None
    scenarios, algos, bars = chart_bars(summary)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    width = 0.8 / max(1, len(scenarios))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (col, (title, ylabel, (lo, hi))) in zip(axes.flat, PANELS.items()):
        for i, sc in enumerate(scenarios):
            drawn = [b for b in bars[col][sc] if b is not None]
            if drawn:
                ax.bar([b.x for b in drawn], [b.height for b in drawn], width,
                       yerr=[[b.err_low for b in drawn], [b.err_high for b in drawn]], capsize=3,
                       color=colors[i % len(colors)], label=f"{sc} book")
            for j, b in enumerate(bars[col][sc]):
                if b is None:     # at the panel's foot, whatever the scale
                    ax.text(j + i * width, 0.02, "n/a", ha="center", va="bottom", fontsize=8,
                            color=colors[i % len(colors)], transform=ax.get_xaxis_transform())
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if lo is not None:
            ax.set_ylim(bottom=lo)
        if hi is not None:
            ax.set_ylim(top=hi * 1.05)
        ax.set_xticks([j + width * (len(scenarios) - 1) / 2 for j in range(len(algos))])
        ax.set_xticklabels(algos, rotation=30)
        ax.axhline(0, color="grey", linewidth=0.5)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle("kmm execution algorithms on identical simulated markets "
                 "(mean over runs, error bar = one stdev; n/a = no run had a value)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


async def run_compare_cli(args: argparse.Namespace, out: TextIO) -> int:
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not args.size > 0 or round(args.size * 100) % 100:
        raise RequestError(f"--size {args.size} must be a positive whole number of contracts")
    print(f"kmm execute compare: {', '.join(algos)} x {len(SCENARIOS)} scenarios x {args.runs} runs "
          f"(seed {args.seed}, {args.size:g} contracts, {args.sim_seconds:g} simulated s at {args.scale:g}x)",
          file=out)
    results = await run_compare(algos, runs=args.runs, seed=args.seed, size=round(args.size * 100),
                                scale=args.scale, sim_seconds=args.sim_seconds)
    summary = summarize(results)
    print(format_table(summary, args.runs), file=out)
    outdir = Path(args.out)
    write_csv(results, outdir / "compare.csv")
    print(f"runs written to {outdir / 'compare.csv'}", file=out)
    png = write_chart(summary, outdir / "compare.png")   # raises CompareError without matplotlib
    print(f"chart written to {png}", file=out)
    return 0

