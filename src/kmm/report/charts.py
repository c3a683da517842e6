"""The report's charts (matplotlib, Agg backend, no display). Each chart function returns a
:class:`Chart`: PNG bytes, or the reason the records do not allow it (never an invented figure).

Conventions: the x axis of a time chart is seconds since the run's start; money is in dollars,
prices in cents (YES terms), sizes in contracts; titles say what is shown in words.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kmm.errors import KmmError
from kmm.report.data import RunData
from kmm.report.figures import MARKOUT_HORIZONS_S, RunFigures, percentile

__all__ = ["Chart", "CHARTS", "ChartError", "comparison_equity", "run_charts"]


class ChartError(KmmError, ImportError):
    """matplotlib, which draws the charts, is missing (the message names the extra to install)."""


@dataclass(slots=True)
class Chart:
    name: str                 # file stem, e.g. "equity"
    title: str
    png: bytes | None = None
    missing: str | None = None    # why it could not be drawn


def _plt() -> Any:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ChartError("kmm report draws its charts with matplotlib, which is not installed: "
                         "pip install 'kmm[plot]'") from None
    return plt


def _png(fig: Any) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _finish_over_time(c: Chart, fig: Any, ax: Any, ylabel: str, xlabel: str = "time since start (s)") -> Chart:
    """The ending the charts over time share: a zero line, the chart's title, axis labels with units, the
    legend outside the plot (never over the lines), and the PNG."""
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_title(c.title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    c.png = _png(fig)
    return c


def _t(ts_ns: int, fig: RunFigures) -> float:
    return (ts_ns - (fig.start_ns or 0)) / 1e9


def _event_lines(ax: Any, run: RunData, figs: RunFigures) -> None:
    colors = {"kill": "red", "rearm": "green", "pull": "orange", "stale": "purple", "disconnect": "black",
              "pause": "brown", "rate_limit": "magenta", "stop": "grey"}
    seen: set[str] = set()
    for ev in run.log_events:
        ax.axvline(_t(ev.ts_ns, figs), color=colors.get(ev.kind, "grey"), linestyle=":", linewidth=1,
                   label=None if ev.kind in seen else f"{ev.kind} event")
        seen.add(ev.kind)


def equity(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("equity", "Net P&L over time, with realized, unrealized and fees")
    if not run.tape:
        c.missing = "no tape.csv rows: the P&L over time is not recorded"
        return c
    plt = _plt()
    latest: dict[str, tuple[int, int, int]] = {}
    xs, net, real, unreal, fees = [], [], [], [], []
    for r in run.tape:
        latest[r.ticker] = (r.realized_pnl + r.fees, r.unrealized_pnl, r.fees)   # tape realized is net of fees
        g = sum(v[0] for v in latest.values())
        u = sum(v[1] for v in latest.values())
        f = sum(v[2] for v in latest.values())
        xs.append(_t(r.ts_ns, figs))
        real.append(g / 1e4)
        unreal.append(u / 1e4)
        fees.append(-f / 1e4)
        net.append((g + u - f) / 1e4)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.step(xs, net, where="post", color="black", linewidth=2, label="net P&L (realized + unrealized - fees)")
    ax.step(xs, real, where="post", color="tab:blue", label="realized, before fees")
    ax.step(xs, unreal, where="post", color="tab:orange", label="unrealized (marked)")
    ax.step(xs, fees, where="post", color="tab:red", label="fees paid (negative)")
    _event_lines(ax, run, figs)
    return _finish_over_time(c, fig, ax, "P&L ($)")


def inventory(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("inventory", "Inventory per market (signed net position)")
    if not run.tape:
        c.missing = "no tape.csv rows: the position over time is not recorded"
        return c
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for t in run.tickers:
        rows = [r for r in run.tape if r.ticker == t]
        if rows:
            ax.step([_t(r.ts_ns, figs) for r in rows], [r.inventory / 100 for r in rows], where="post", label=t)
    return _finish_over_time(c, fig, ax, "position (contracts, + = long YES)")


def quotes(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("quotes", "Our quotes against the market's best bid and ask, with our fills")
    tickers = [t for t in run.tickers if any(r.ticker == t for r in run.tape)]
    if not tickers:
        c.missing = "no tape.csv rows: our quotes over time are not recorded"
        return c
    plt = _plt()
    fig, axes = plt.subplots(len(tickers), 1, figsize=(10, 3.2 * len(tickers)), squeeze=False)
    for ax, t in zip(axes[:, 0], tickers):
        rows = [r for r in run.tape if r.ticker == t]
        xs = [_t(r.ts_ns, figs) for r in rows]
        bbo = run.bbo.get(t, [])
        if bbo:
            bx = [_t(ts, figs) for ts, _, _ in bbo]
            ax.step(bx, [b / 100 if b is not None else float("nan") for _, b, _ in bbo], where="post",
                    color="tab:green", alpha=0.5, label="market best bid")
            ax.step(bx, [a / 100 if a is not None else float("nan") for _, _, a in bbo], where="post",
                    color="tab:red", alpha=0.5, label="market best ask")
        ax.step(xs, [r.my_bid / 100 if r.my_bid is not None else float("nan") for r in rows], where="post",
                color="darkgreen", linewidth=1.5, label="our bid")
        ax.step(xs, [r.my_ask / 100 if r.my_ask is not None else float("nan") for r in rows], where="post",
                color="darkred", linewidth=1.5, label="our ask")
        fb = [v for v in figs.fills if v.ticker == t and v.side == "bid"]
        fa = [v for v in figs.fills if v.ticker == t and v.side == "ask"]
        if fb:
            ax.scatter([_t(v.ts_ns, figs) for v in fb], [v.price / 100 for v in fb], marker="^", color="green",
                       edgecolor="black", zorder=5, label="we bought")
        if fa:
            ax.scatter([_t(v.ts_ns, figs) for v in fa], [v.price / 100 for v in fa], marker="v", color="red",
                       edgecolor="black", zorder=5, label="we sold")
        ax.set_title(f"{t}: quotes, market and fills" + ("" if bbo else " (market best bid/ask: no capture)"))
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("YES price (cents)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    c.png = _png(fig)
    return c


def spread_captured(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("spread_captured", "Spread captured per fill (against the mid at the fill)")
    pts = [v for v in figs.fills if v.spread_captured is not None]
    if not pts:
        c.missing = "no fill with a recorded mid" if figs.fills else "no fills in this run"
        return c
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for side, color, label in (("bid", "green", "buys"), ("ask", "red", "sells")):
        s = [v for v in pts if v.side == side]
        if s:
            ax.scatter([_t(v.ts_ns, figs) for v in s], [v.spread_captured / 100 for v in s],  # type: ignore[operator]
                       color=color, s=14, label=label)
    return _finish_over_time(c, fig, ax, "captured (cents per contract)")


def markouts(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("markouts", "Markouts: mid move after each fill, in our favour, by side")
    if not figs.fills:
        c.missing = "no fills in this run"
        return c
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.38
    any_bar = False
    for k, (side, color, label) in enumerate((("bid", "tab:green", "after buys"), ("ask", "tab:red", "after sells"))):
        for j, h in enumerate(MARKOUT_HORIZONS_S):
            vals = [x / 100 for v in figs.fills if v.side == side and (x := v.markouts.get(h)) is not None]
            x = j + (k - 0.5) * width
            if not vals:      # no bar for a value that does not exist
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color=color,
                        transform=ax.get_xaxis_transform())
                continue
            any_bar = True
            avg = sum(vals) / len(vals)
            ax.bar(x, avg, width, color=color, label=label)
            ax.text(x, avg, f"n={len(vals)}", ha="center", va="bottom" if avg >= 0 else "top", fontsize=7)
    ax.set_xticks(range(len(MARKOUT_HORIZONS_S)))
    ax.set_xticklabels([f"{h} s" for h in MARKOUT_HORIZONS_S])
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_title(c.title + ("" if any_bar else " (no fill had that much tape after it)"))
    ax.set_xlabel("horizon after the fill")
    ax.set_ylabel("mean mid move (cents per contract)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    c.png = _png(fig)
    return c


def attribution(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("attribution", "Where the net P&L came from")
    a = figs.attribution
    if a is None:
        c.missing = "attribution needs tape mids and the final P&L of every traded market"
        return c
    plt = _plt()
    items = a.items()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    labels = [n for n, _ in items] + ["net P&L"]
    vals = [v / 1e4 for _, v in items] + [a.total / 1e4]
    colors = ["tab:green" if v >= 0 else "tab:red" for v in vals[:-1]] + ["black"]
    ax.bar(range(len(vals)), vals, color=colors)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:+.4f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, rotation=15)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_title(c.title + " (terms sum to the net P&L)")
    ax.set_ylabel("$")
    c.png = _png(fig)
    return c


def latency(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("latency", "Latency from book frame received to order request sent")
    if not figs.latency_ms:
        c.missing = "no decision row of the tape carries a latency (no request was sent)"
        return c
    plt = _plt()
    us = [v * 1000 for v in figs.latency_ms]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.hist(us, bins=min(50, max(5, len(us) // 3)), color="tab:blue")
    for q, style in ((0.5, "--"), (0.99, ":")):
        v = percentile(us, q)
        ax.axvline(v, color="black", linestyle=style, label=f"p{int(q * 100)} = {v:,.0f} us")
    ax.set_title(c.title + f" ({len(us)} requests)")
    ax.set_xlabel("frame -> request (microseconds)")
    ax.set_ylabel("requests")
    ax.legend(loc="upper right", fontsize=8)
    c.png = _png(fig)
    return c


def fill_queue(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("fill_queue", "Fill rate per market and time in the queue before a fill")
    rates = [(t, m.orders_filled / m.orders) for t, m in figs.markets.items() if m.orders]
    if not rates and not figs.queue_s:
        c.missing = "no orders or order history in kmm.sqlite"
        return c
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    if rates:
        a1.bar(range(len(rates)), [100 * r for _, r in rates], color="tab:blue")
        a1.set_xticks(range(len(rates)))
        a1.set_xticklabels([t for t, _ in rates], rotation=15, fontsize=8)
        a1.set_ylim(0, 100)
    else:
        a1.text(0.5, 0.5, "no orders recorded", ha="center", transform=a1.transAxes)
    a1.set_title("orders that got at least one fill")
    a1.set_ylabel("orders (%)")
    if figs.queue_s:
        a2.hist(figs.queue_s, bins=min(40, max(5, len(figs.queue_s) // 3)), color="tab:purple")
    else:
        a2.text(0.5, 0.5, "no fill could be matched to its order's placement", ha="center", transform=a2.transAxes)
    a2.set_title("time from placement (or last reprice) to fill")
    a2.set_xlabel("seconds")
    a2.set_ylabel("fills")
    c.png = _png(fig)
    return c


def pressure(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("rate_limit", "Rate-limit pressure: share of the write budget in use")
    if not run.pressure:
        c.missing = ("not recorded: ops.log holds write-pressure samples only from the plain status lines "
                     "(kmm run --view plain)" if run.has_log else "no ops.log")
        return c
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.step([_t(t, figs) for t, _ in run.pressure], [100 * p for _, p in run.pressure], where="post")
    rl = [e for e in run.log_events if e.kind == "rate_limit"]
    for e in rl:
        ax.axvline(_t(e.ts_ns, figs), color="magenta", linestyle=":")
    ax.set_ylim(0, 105)
    ax.set_title(c.title + (f" ({len(rl)} rate-limit refusals)" if rl else ""))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("write tokens in use (%)")
    c.png = _png(fig)
    return c


def timeline(run: RunData, figs: RunFigures) -> Chart:
    c = Chart("events", "Kill-switch, quote pulls and other events on the timeline")
    evs = run.log_events
    if not run.has_log:
        c.missing = "no ops.log"
        return c
    if not evs:
        c.missing = "no kill-switch, pull, stale-book, disconnect, pause or rate-limit event in ops.log"
        return c
    plt = _plt()
    kinds = sorted({e.kind for e in evs})
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(kinds) + 1.5))
    for i, k in enumerate(kinds):
        xs = [_t(e.ts_ns, figs) for e in evs if e.kind == k]
        ax.scatter(xs, [i] * len(xs), marker="|", s=300)
    ax.set_yticks(range(len(kinds)))
    ax.set_yticklabels(kinds)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
    ax.set_title(c.title)
    ax.set_xlabel("time since start (s)")
    c.png = _png(fig)
    return c


CHARTS: Sequence[Callable[[RunData, RunFigures], Chart]] = (
    equity, inventory, quotes, spread_captured, markouts, attribution, latency, fill_queue, pressure, timeline)


def run_charts(run: RunData, figs: RunFigures) -> list[Chart]:
    return [f(run, figs) for f in CHARTS]


def comparison_equity(runs: Sequence[tuple[RunData, RunFigures]]) -> Chart:
    c = Chart("compare_equity", "Net P&L over time, runs side by side")
    if not any(r.tape for r, _ in runs):
        c.missing = "no run has tape rows"
        return c
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4))
    for run, figs in runs:
        if not run.tape:
            continue
        latest: dict[str, int] = {}
        xs, ys = [], []
        for r in run.tape:
            latest[r.ticker] = r.realized_pnl + r.unrealized_pnl      # net of fees (tape convention)
            xs.append(_t(r.ts_ns, figs))
            ys.append(sum(latest.values()) / 1e4)
        ax.step(xs, ys, where="post", label=run.label)
    return _finish_over_time(c, fig, ax, "net P&L ($)", xlabel="time since each run's start (s)")
