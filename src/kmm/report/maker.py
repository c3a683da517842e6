"""The report's maker sections: maker metrics, the per-event roll-up and the incentive programs.

Read from the run's records: ``summary.json`` ``details.maker_metrics`` (the engine's
:class:`kmm.engine.makerstats.MakerStats`), ``details.events`` and ``details.incentives``; what the
store holds is computed again from it (resting orders placed, maker and taker contracts, the maker fill
rate, the incentive snapshots) and shown beside, so a figure that only one record has says where it
came from, and a figure no record has says so instead of showing 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kmm.record.store import StoreReader
from kmm.report.data import RunData
from kmm.report.html import e, table, usd

CONTRACT = 100


def maker_figures(run: RunData) -> dict[str, Any]:
    """Maker metrics from the records: ``{"summary": {...} | None, "records": {...}}``."""
    details = (run.summary or {}).get("details") or {}
    rec: dict[str, Any] = {}
    orders = [o for o in run.orders if o.execution_id is None]
    rested = {o.client_order_id for o in orders if o.status not in ("rejected", "pending")}
    rested |= {coid for coid, _oid, status, *_ in run.order_events if coid and status == "resting"}
    offered = sum(o.count or 0 for o in orders if o.client_order_id in rested)
    maker = sum(f.count for f in run.fills if not f.is_taker)
    taker = sum(f.count for f in run.fills if f.is_taker)
    if run.has_store:
        rec = {"resting_orders_placed": len(rested), "contracts_offered": offered / CONTRACT,
               "maker_contracts": maker / CONTRACT, "taker_contracts": taker / CONTRACT,
               "maker_fill_rate": (maker / offered) if offered else None,
               "maker_taker_ratio": (maker / taker) if taker else None}
    return {"summary": details.get("maker_metrics"), "records": rec}


def _num(v: Any, fmt: str = "{:,.2f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{v:.1%}"


ROWS: tuple[tuple[str, str, Any], ...] = (
    ("resting orders placed", "resting_orders_placed", "{:,}".format),
    ("contracts offered by resting orders", "contracts_offered", _num),
    ("liquidity at the best: contract-seconds", "contract_seconds_near_best", _num),
    ("liquidity at the best: dollar-seconds", "dollar_seconds_near_best", _num),
    ("liquidity resting anywhere: contract-seconds", "contract_seconds_resting", _num),
    ("liquidity resting anywhere: dollar-seconds", "dollar_seconds_resting", _num),
    ("average spread improvement (cents per quote price)", "spread_improvement_avg",
     lambda v: _num(None if v is None else v / 100, "{:.2f}c")),
    ("maker fill rate (maker contracts / offered)", "maker_fill_rate", _pct),
    ("orders with a maker fill / resting orders", "maker_order_fill_rate", _pct),
    ("maker contracts", "maker_contracts", _num),
    ("taker contracts", "taker_contracts", _num),
    ("maker / taker ratio", "maker_taker_ratio", lambda v: _num(v, "{:.2f}")),
    ("30-day volume: contracts", "volume_30d_contracts", _num),
    ("30-day volume: dollars (YES notional)", "volume_30d_dollars", lambda v: _num(v, "${:,.2f}")),
)


def maker_html(run: RunData) -> str:
    figs = maker_figures(run)
    sm, rec = figs["summary"], figs["records"]
    if not sm and not rec:
        return ('<h3>Maker metrics</h3><p class="missing">Not computed: no summary.json maker metrics and no '
                'store in this run.</p>')
    rows = []
    for name, key, fmt in ROWS:
        a = "n/a (not in summary.json)" if not sm or key not in sm else (
            fmt(sm[key]) if sm[key] is not None else "n/a")
        b = fmt(rec[key]) if key in rec and rec[key] is not None else ("n/a" if key in rec else "-")
        rows.append([e(name), f'<span data-maker="{e(key)}">{a}</span>', f'<span data-makerrec="{e(key)}">{b}</span>'])
    out = ["<h3>Maker metrics</h3>", table(["metric", "summary.json (engine)", "from the store"], rows)]
    notes = []
    if sm:
        near = sm.get("near", 0)
        notes.append(f"'At the best' means within {near / 100:g} cents of the best price of its side.")
        if sm.get("volume_30d_source"):
            notes.append(f"30-day volume: {sm['volume_30d_source']}.")
    else:
        notes.append("Liquidity, spread improvement and 30-day volume need the engine's live figures "
                     "(summary.json details.maker_metrics); this run's records do not hold them.")
    out.append('<p class="note">' + " ".join(e(n) for n in notes) + "</p>")
    return "".join(out)


def events_html(run: RunData) -> str:
    evs = ((run.summary or {}).get("details") or {}).get("events")
    if not evs:
        return ""
    rows = [[f'<span data-event="{e(v["event"])}">{e(v["event"])}</span>',
             "yes" if v["mutually_exclusive"] else "no", f'{v["quoted"]}/{v["markets"]}',
             f'{v["positions"] / CONTRACT:g}', f'{v["inventory"] / CONTRACT:+g}', usd(v["worst_now"]),
             usd(v["worst_resting"]), usd(v["max_event_loss"]), usd(v["pnl"]), e(v["status"]),
             e(v.get("incentive", ""))] for v in evs]
    return ("<h3>Per event (at the end of the run, worst first)</h3>" + table(
        ["event", "mutually exclusive", "quoted/markets", "|positions|", "event inventory", "worst case now",
         "worst case with resting orders", "max_event_loss", "session net P&L", "status", "programs"], rows) +
        '<p class="note">Worst case: the event\'s P&amp;L in its worst outcome from the positions, and with '
        'every resting order that hurts there filling (docs/event-risk.md).</p>')


def incentives_html(run: RunData) -> str:
    inc = ((run.summary or {}).get("details") or {}).get("incentives") or {}
    samples: list[tuple[Any, ...]] = []
    db = Path(run.path) / "kmm.sqlite"
    if run.has_store and db.exists():
        samples = StoreReader(db).incentive_samples()
    if not inc and not samples:
        return ""
    by: dict[str, list[tuple[Any, ...]]] = {}
    for r in samples:
        by.setdefault(r[1], []).append(r)
    rows = []
    for t in sorted(set(inc) | set(by)):
        v = inc.get(t, {})
        rs = by.get(t, [])
        q = sum(1 for r in rs if r[3])
        rows.append([e(t), e(v.get("program_id", rs[0][2] if rs else "?")),
                     usd(round(v["period_reward_usd"] * 10_000)) if "period_reward_usd" in v else "n/a",
                     _num(v.get("target_size")), _num(v.get("discount_factor")),
                     f'<span data-lip="{e(t)}">{q}/{len(rs)}</span>' if rs else "n/a (no samples stored)",
                     _pct(sum(r[5] for r in rs if r[5] is not None) / len(rs)) if rs else _pct(v.get("mean_share")),
                     e("; ".join(sorted({r[8] for r in rs if r[8]}))[:200])])
    return ("<h3>Incentive programs</h3>" + table(
        ["market", "program", "period reward", "target size", "discount factor",
         "snapshots where our quotes scored", "mean share of the score", "why not (when not)"], rows) +
        '<p class="note">Scored as the Liquidity Incentive Program scores a book snapshot; the distance '
        'multiplier and the queue order inside a level are assumptions (kmm.engine.incentives).</p>')
