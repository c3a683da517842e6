"""Self-contained HTML: styles inline, charts as base64 PNG ``data:`` URIs, no script, no network."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from kmm.report.charts import Chart
from kmm.report.data import RunData
from kmm.report.figures import RunFigures, mean, percentile

__all__ = ["page", "run_section", "usd", "contracts", "cents"]

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-top:20px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#070}
.missing{color:#805;font-style:italic}.note{color:#555;font-size:13px}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
"""


def e(x: Any) -> str:
    return html.escape(str(x))


def usd(v: float | int | None) -> str:
    """1e-4 $ -> "$-0.1826"."""
    return "n/a" if v is None else f"${v / 1e4:,.4f}"


def contracts(v: int | None) -> str:
    return "n/a" if v is None else f"{v / 100:,.2f}"


def cents(v: float | None) -> str:
    """1e-4 $ per contract -> cents."""
    return "n/a" if v is None else f"{v / 100:+.2f}c"


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, cls: str = "") -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{th}</tr>{body}</table>'


def img(chart: Chart) -> str:
    if chart.png is None:
        return (f'<h3>{e(chart.title)}</h3><p class="missing" data-chart="{e(chart.name)}">'
                f'Not shown: {e(chart.missing)}</p>')
    b64 = base64.b64encode(chart.png).decode("ascii")
    return (f'<h3>{e(chart.title)}</h3><img data-chart="{e(chart.name)}" alt="{e(chart.title)}" '
            f'src="data:image/png;base64,{b64}">')


def overview_rows(figs: RunFigures) -> list[tuple[str, str]]:
    t = figs.totals
    lat = figs.latency_ms
    return [
        ("mode", e(figs.mode)),
        ("duration", "n/a" if figs.duration_s is None else f"{figs.duration_s:,.1f} s"),
        ("fills", f'<span data-fig="fills">{"n/a" if t["fills"] is None else t["fills"]}</span>'),
        ("contracts bought", f'<span data-fig="bought">{contracts(t["bought"])}</span>'),
        ("contracts sold", f'<span data-fig="sold">{contracts(t["sold"])}</span>'),
        ("fees paid", f'<span data-fig="fees">{usd(t.get("fees"))}</span>'),
        ("realized P&L (before fees)", f'<span data-fig="realized">{usd(t.get("realized"))}</span>'),
        ("unrealized P&L", f'<span data-fig="unrealized">{usd(t.get("unrealized"))}</span>'),
        ("net P&L", f'<span data-fig="net">{usd(t.get("net"))}</span>'),
        ("orders with a fill", "n/a" if figs.fill_rate is None else
         f'<span data-fig="fill_rate">{figs.fill_rate:.1%}</span>'),
        ("median queue time to fill", "n/a" if not figs.queue_s else f"{percentile(figs.queue_s, 0.5):.3f} s"),
        ("frame -> request p50 / p99", "n/a" if not lat else
         f"{percentile(lat, 0.5) * 1000:,.0f} us / {percentile(lat, 0.99) * 1000:,.0f} us"),  # type: ignore[operator]
    ]


def market_table(figs: RunFigures) -> str:
    rows = []
    for t, m in figs.markets.items():
        rows.append([f'<span data-market="{e(t)}">{e(t)}</span>', m.fills, contracts(m.bought), contracts(m.sold),
                     f'<span data-pos="{e(t)}">{contracts(m.position)}</span>', usd(m.fees), usd(m.realized),
                     usd(m.unrealized), f'<span data-net="{e(t)}">{usd(m.net)}</span>',
                     cents(m.avg_spread_captured), cents(m.markout_5s),
                     "n/a" if not m.orders else f"{m.orders_filled}/{m.orders}"])
    return table(["market", "fills", "bought", "sold", "position", "fees", "realized (before fees)", "unrealized",
                  "net P&L", "spread captured / contract", "5 s markout / contract", "orders filled/placed"], rows)


def attribution_table(figs: RunFigures) -> str:
    a = figs.attribution
    if a is None:
        return ('<p class="missing">P&amp;L attribution not computed: the records lack the tape mids or the '
                'final P&amp;L.</p>')
    rows = [[e(n), f'<span data-attr="{e(n)}">{usd(v)}</span>'] for n, v in a.items()]
    rows.append(["<b>sum = net P&amp;L</b>", f'<b data-attr="total">{usd(a.total)}</b>'])
    return table(["term", "amount"], rows)


def _secs(ns: int | None) -> str:
    return "n/a (not filled)" if ns is None else f"{ns / 1e9:.2f} s"


def execution_table(run: RunData) -> str:
    if not run.execution_metrics:
        return ""
    by_id = {x.execution_id: x for x in run.executions}
    rows = []
    for m in run.execution_metrics:
        x = by_id.get(m.execution_id)
        rows.append([e(m.execution_id), e(x.algo if x else "?"), e(x.ticker if x else "?"),
                     e(x.side if x else "?"), contracts(m.target_size), contracts(m.filled_size),
                     f"{m.fill_rate:.1%}",
                     "n/a" if m.avg_fill_price is None else f"{m.avg_fill_price / 100:.2f}c",
                     cents(m.slippage_arrival), cents(m.slippage_limit), usd(m.fees),
                     _secs(m.time_to_first_fill_ns), _secs(m.time_to_full_fill_ns),
                     m.walks, m.splits, m.api_calls, e(x.status if x else "?")])
    return "<h3>Executions</h3>" + table(
        ["execution", "algo", "market", "side", "target", "filled", "fill rate", "avg YES price",
         "slippage vs arrival", "slippage vs limit", "fees", "first fill", "full fill", "walks", "splits",
         "API calls", "status"], rows, left=4) + \
        '<p class="note">Slippage per contract, positive = worse for us. Times from the execution start.</p>'


def checks_html(figs: RunFigures) -> str:
    if not figs.checks:
        return ""
    rows = [[e(k), e(a), e(b), '<span class="ok">agree</span>' if ok else '<span class="bad">DIFFER</span>']
            for k, a, b, ok in figs.checks]
    return "<h3>Cross-check against summary.json</h3>" + table(["figure", "from the records", "summary.json", ""], rows)


def run_section(run: RunData, figs: RunFigures, charts: Sequence[Chart]) -> str:
    parts = [f'<h2 id="{e(run.label)}">{e(run.label)}</h2><p class="note">{e(run.path)}</p>',
             table(["figure", "value"], overview_rows(figs)),
             "<h3>Per market</h3>", market_table(figs),
             "<h3>P&amp;L attribution</h3>", attribution_table(figs),
             execution_table(run), checks_html(figs)]
    from kmm.report.maker import events_html, incentives_html, maker_html   # (imports this module)
    parts += [maker_html(run), events_html(run), incentives_html(run)]
    if figs.notes:
        parts.append("<h3>What the records do not hold</h3><ul>" +
                     "".join(f'<li class="missing">{e(n)}</li>' for n in figs.notes) + "</ul>")
    parts.extend(img(c) for c in charts)
    if run.log_events:
        parts.append("<h3>Events (ops.log)</h3>" + table(
            ["time (s)", "kind", "level", "message"],
            [[f"{(ev.ts_ns - (figs.start_ns or 0)) / 1e9:.3f}", e(ev.kind), e(ev.level), e(ev.text[:200])]
             for ev in run.log_events[:200]], left=0))
    return "\n".join(parts)


def comparison_section(items: Sequence[tuple[RunData, RunFigures]], chart: Chart | None) -> str:
    names = [r.label for r, _ in items]
    keys = [k for k, _ in overview_rows(items[0][1])]
    cols = [dict(overview_rows(f)) for _, f in items]
    rows = [[e(k)] + [c.get(k, "n/a") for c in cols] for k in keys]
    out = ["<h2>Runs side by side</h2>", table(["figure"] + names, rows)]
    attrs = [dict(f.attribution.items()) for _, f in items if f.attribution is not None]
    if len(attrs) == len(items):
        out.append("<h3>P&amp;L attribution side by side</h3>" + table(
            ["term"] + names, [[e(t)] + [usd(a[t]) for a in attrs] for t in attrs[0]]))
    if chart is not None:
        out.append(img(chart))
    return "\n".join(out)


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>\n{body}\n</body></html>\n")


__all__ += ["comparison_section", "table", "mean"]
