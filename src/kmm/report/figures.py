"""The numbers of a report, computed from the records of one run (see ``docs/report.md``).

Sign convention: ``s = +1`` for a bid fill (we bought YES), ``-1`` for an ask fill (we sold YES); ``q``
is the fill size in contracts, ``p`` its YES price. Mids come from the tape (the mid the engine saw).
Money is in 1e-4 $ (floats where an average or a product with a mid is involved).

P&L attribution of a market over the session, for a run that starts flat (every term per fill ``i``):

- spread capture      = sum s_i q_i (m_i - p_i)             m_i: mid at the fill
- adverse selection   = sum s_i q_i (m_i+ - m_i)            m_i+: mid 5 s later (or the last mid)
- inventory carry     = sum s_i q_i (M - m_i+)              M: the last mid of the session
- settlement and mark = net - the other four                = position_end x (V - M) when flat at start,
                                                              V: settlement value or the engine's mark
- fees                = - fees paid

so the five sum to the recorded net P&L of the market.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from kmm.report.data import RunData

__all__ = ["MARKOUT_HORIZONS_S", "ADVERSE_HORIZON_S", "Attribution", "FillView", "MarketFigures",
           "RunFigures", "compute"]

MARKOUT_HORIZONS_S = (1, 5, 30)
ADVERSE_HORIZON_S = 5
NS = 1_000_000_000


@dataclass(slots=True)
class FillView:
    """One fill with what the report derives for it."""

    ts_ns: int               # wall ns when the engine saw it (tape row), else exchange time
    ticker: str
    side: str                # bid | ask
    price: int               # 1e-4 $ YES
    count: int               # 1e-2 contracts
    fee: int                 # 1e-4 $
    mid: float | None        # mid at the fill, 1e-4 $ (tape)
    markouts: dict[int, float | None] = field(default_factory=dict)   # horizon s -> mid move for us, 1e-4 $/contract
    queue_ns: int | None = None     # since the order was placed or last repriced

    @property
    def sign(self) -> int:
        return 1 if self.side == "bid" else -1

    @property
    def spread_captured(self) -> float | None:
        """Per contract, 1e-4 $: positive when we bought under (sold over) the mid."""
        return None if self.mid is None else self.sign * (self.mid - self.price)


@dataclass(slots=True)
class Attribution:
    spread_capture: float = 0.0
    adverse_selection: float = 0.0
    inventory_carry: float = 0.0
    settlement_and_mark: float = 0.0
    fees: float = 0.0                 # negative: money paid
    complete: bool = True             # False when a fill had no mid (the terms then miss it)

    def items(self) -> list[tuple[str, float]]:
        return [("spread capture", self.spread_capture), ("adverse selection", self.adverse_selection),
                ("inventory carry", self.inventory_carry), ("settlement and mark", self.settlement_and_mark),
                ("fees", self.fees)]

    @property
    def total(self) -> float:
        return sum(v for _, v in self.items())

    def add(self, o: Attribution) -> None:
        self.spread_capture += o.spread_capture
        self.adverse_selection += o.adverse_selection
        self.inventory_carry += o.inventory_carry
        self.settlement_and_mark += o.settlement_and_mark
        self.fees += o.fees
        self.complete = self.complete and o.complete


@dataclass(slots=True)
class MarketFigures:
    ticker: str
    fills: int = 0
    bought: int = 0           # 1e-2 contracts
    sold: int = 0
    position: int | None = None      # 1e-2, end of session
    fees: int | None = None          # 1e-4 $ (recorded fees paid, incl. settlement fees)
    fill_fees: int = 0               # sum of the fills' fees
    realized: int | None = None      # gross of fees
    unrealized: int | None = None
    net: int | None = None           # realized + unrealized - fees
    attribution: Attribution | None = None
    avg_spread_captured: float | None = None   # 1e-4 $ per contract
    markout_5s: float | None = None
    orders: int = 0
    orders_filled: int = 0


@dataclass(slots=True)
class RunFigures:
    label: str
    mode: str
    markets: dict[str, MarketFigures]
    fills: list[FillView]
    totals: dict[str, Any]                    # fills, bought, sold, fees, realized, unrealized, net (ints)
    sources: dict[str, str]                   # figure -> where it came from
    checks: list[tuple[str, Any, Any, bool]]  # (figure, report value, other record's value, agree)
    latency_ms: list[float]
    attribution: Attribution | None
    fill_rate: float | None                   # orders with a fill / orders that reached the book
    queue_s: list[float]
    duration_s: float | None
    start_ns: int | None
    notes: list[str]


def _d4(text: Any) -> int:
    """A "-0.1826" dollar string (summary.json) -> 1e-4 $ int."""
    from decimal import Decimal
    return int(Decimal(str(text)) * 10_000)


def _c2(text: Any) -> int:
    from decimal import Decimal
    return int(Decimal(str(text)) * 100)


class _Mids:
    """Tape mids of one ticker for lookups by time."""

    def __init__(self, pts: list[tuple[int, float]]) -> None:
        self.ts = [t for t, _ in pts]
        self.mid = [m for _, m in pts]

    def at(self, ts_ns: int) -> float | None:
        """The last mid at or before ``ts_ns``."""
        i = bisect.bisect_right(self.ts, ts_ns) - 1
        return self.mid[i] if i >= 0 else None

    @property
    def last(self) -> tuple[int, float] | None:
        return (self.ts[-1], self.mid[-1]) if self.ts else None


def _final_pnl(run: RunData, ticker: str) -> tuple[int, int, int, int] | None:
    """(position, realized gross, unrealized, fees) at the end: the last P&L snapshot, else the tape."""
    snaps = [p for p in run.pnl if p.ticker == ticker]
    if snaps:
        s = max(snaps, key=lambda p: p.ts_ns)
        return s.position, s.realized, s.unrealized, s.fees
    rows = [r for r in run.tape if r.ticker == ticker]
    if rows:
        r = rows[-1]
        return r.inventory, r.realized_pnl + r.fees, r.unrealized_pnl, r.fees
    return None


def compute(run: RunData) -> RunFigures:
    notes: list[str] = list(run.notes)
    sources: dict[str, str] = {}
    tickers = run.tickers
    mids: dict[str, _Mids] = {}
    for t in tickers:
        # the tape prints mids with 5 dp: round off the float noise of the decimal -> binary conversion
        mids[t] = _Mids([(r.ts_ns, round(r.mid, 1)) for r in run.tape if r.ticker == t and r.mid is not None])
    fill_rows = {r.trade_id: r for r in run.tape if r.event == "fill" and r.trade_id}

    # order placements and reprices, for queue time: coid -> [(ts_ns, price)]
    placed: dict[str, list[tuple[int, int]]] = {}
    for coid, _oid, status, price, _count, _fc, _reason, ts in run.order_events:
        if coid and price is not None and status in ("pending", "resting"):
            lst = placed.setdefault(coid, [])
            if not lst or lst[-1][1] != price:
                lst.append((ts, price))

    fills: list[FillView] = []
    for f in run.fills:
        row = fill_rows.get(f.trade_id)
        ts = row.ts_ns if row is not None else f.ts_ms * 1_000_000
        if row is not None and row.mid is not None:
            mid: float | None = round(row.mid, 1)
        else:
            mid = mids[f.ticker].at(ts) if f.ticker in mids else None
        fv = FillView(ts, f.ticker, f.side, f.price, f.count, f.fee, mid)
        m = mids.get(f.ticker)
        if m is not None and mid is not None and m.last is not None:
            for h in MARKOUT_HORIZONS_S:
                later = ts + h * NS
                # only when the tape runs past the horizon: a move we did not see is not a move of 0
                fv.markouts[h] = fv.sign * (m.at(later) - mid) if m.last[0] >= later else None  # type: ignore[operator]
        hist = placed.get(f.client_order_id or "")
        if hist:
            before = [t for t, p in hist if t <= ts and p == f.price]
            if before:
                fv.queue_ns = ts - before[-1]
        fills.append(fv)
    fills.sort(key=lambda v: v.ts_ns)

    markets: dict[str, MarketFigures] = {t: MarketFigures(t) for t in tickers}
    for fv in fills:
        mf = markets.setdefault(fv.ticker, MarketFigures(fv.ticker))
        mf.fills += 1
        mf.fill_fees += fv.fee
        if fv.side == "bid":
            mf.bought += fv.count
        else:
            mf.sold += fv.count
    for o in run.orders:
        if o.ticker in markets and o.status != "rejected" and o.execution_id is None:
            markets[o.ticker].orders += 1
            if o.fill_count:
                markets[o.ticker].orders_filled += 1

    summary = run.summary or {}
    sum_pos = summary.get("positions") or {}
    total_attr: Attribution | None = Attribution()
    for t, mf in markets.items():
        fin = _final_pnl(run, t)
        if fin is not None:
            mf.position, mf.realized, mf.unrealized, mf.fees = fin
            mf.net = mf.realized + mf.unrealized - mf.fees
        elif t in sum_pos:
            mf.position = _c2(sum_pos[t])
        else:
            # no P&L record (kmm execute): the session's position and fees from its fills alone
            mf.position = mf.bought - mf.sold
            mf.fees = mf.fill_fees
        mfills = [v for v in fills if v.ticker == t]
        caps = [(c, v.count) for v in mfills if (c := v.spread_captured) is not None]
        if caps:      # size-weighted, per contract
            mf.avg_spread_captured = sum(c * n for c, n in caps) / sum(n for _, n in caps)
        m5 = [(x, v.count) for v in mfills if (x := v.markouts.get(5)) is not None]
        if m5:
            mf.markout_5s = sum(x * n for x, n in m5) / sum(n for _, n in m5)
        m = mids.get(t)
        if mf.net is not None and m is not None and m.last is not None:
            a = Attribution()
            end_mid = m.last[1]
            for v in mfills:
                if v.mid is None:
                    a.complete = False
                    continue
                q = v.count / 100
                seen = m.at(min(v.ts_ns + ADVERSE_HORIZON_S * NS, m.last[0]))
                mid_later = v.mid if seen is None else seen
                a.spread_capture += v.sign * q * (v.mid - v.price)
                a.adverse_selection += v.sign * q * (mid_later - v.mid)
                a.inventory_carry += v.sign * q * (end_mid - mid_later)
            a.fees = -float(mf.fees or 0)
            a.settlement_and_mark = mf.net - (a.spread_capture + a.adverse_selection + a.inventory_carry + a.fees)
            mf.attribution = a
            if total_attr is not None:
                total_attr.add(a)
        elif mfills:
            total_attr = None
    if total_attr is not None and not any(mf.attribution for mf in markets.values()):
        total_attr = None
    if total_attr is None and fills:
        notes.append("P&L attribution needs the tape's mids and the final P&L of every traded market; "
                     "they are not all in the records")

    totals: dict[str, Any] = {
        "fills": len(fills),
        "bought": sum(mf.bought for mf in markets.values()),
        "sold": sum(mf.sold for mf in markets.values()),
        "fill_fees": sum(mf.fill_fees for mf in markets.values()),
    }
    if not run.has_store:
        # no fills table: the counts are unknown here (not zero); summary.json may have them
        totals["fills"] = summary.get("fills")
        totals["bought"] = _c2(summary["contracts_bought"]) if summary.get("contracts_bought") else None
        totals["sold"] = _c2(summary["contracts_sold"]) if summary.get("contracts_sold") else None
        totals["fill_fees"] = None
        if summary.get("fills") is not None:
            sources["fills"] = "summary.json"
    if all(mf.fees is not None for mf in markets.values()):
        totals["fees"] = sum(mf.fees or 0 for mf in markets.values())
    have = [mf for mf in markets.values() if mf.net is not None]
    if have:
        totals.update(fees=sum(mf.fees or 0 for mf in have), realized=sum(mf.realized or 0 for mf in have),
                      unrealized=sum(mf.unrealized or 0 for mf in have), net=sum(mf.net or 0 for mf in have))
        sources["P&L"] = "kmm.sqlite pnl (last snapshot per market)" if run.pnl else "tape.csv (last row per market)"
    sources.setdefault("fills", "kmm.sqlite fills" if run.has_store else "none")
    checks: list[tuple[str, Any, Any, bool]] = []
    if summary:
        sv: dict[str, int | None] = {"fills": summary.get("fills")}
        for k in ("fees", "realized_pnl", "unrealized_pnl", "net_pnl"):
            if summary.get(k) is not None:
                sv[k] = _d4(summary[k])
        mine = {"fills": totals["fills"] if run.has_store else None, "fees": totals.get("fees"),
                "realized_pnl": totals.get("realized"), "unrealized_pnl": totals.get("unrealized"),
                "net_pnl": totals.get("net")}
        for k, val in sv.items():
            if val is None:
                continue
            ours = mine.get(k)
            if ours is None:                 # nothing in the other records: take summary.json's figure
                key = {"realized_pnl": "realized", "unrealized_pnl": "unrealized", "net_pnl": "net"}.get(k, k)
                totals[key] = val
                sources[k] = "summary.json"
            else:
                # 1e-4 $ rounding of per-market sums may differ from the portfolio total by a unit per market
                # (each market's figure is rounded on its own; the portfolio rounds the total once)
                tol = 0 if k == "fills" else len(markets)
                agree = abs(ours - val) <= tol
                checks.append((k, ours, val, agree))
                if agree and k != "fills":
                    # the headline shows the run's own total (exact); past the rounding the records'
                    # sum stays on the page beside the failed check
                    totals[{"realized_pnl": "realized", "unrealized_pnl": "unrealized",
                            "net_pnl": "net"}.get(k, k)] = val
                    sources["P&L totals"] = "summary.json (the per-market rows sum to them within $0.0001 a market)"

    lat = [r.latency_ns / 1e6 for r in run.tape if r.event == "decision" and r.latency_ns is not None]
    placed_orders = sum(mf.orders for mf in markets.values())
    fill_rate = (sum(mf.orders_filled for mf in markets.values()) / placed_orders) if placed_orders else None
    queue_s = [v.queue_ns / 1e9 for v in fills if v.queue_ns is not None]
    times = [r.ts_ns for r in run.tape] + [v.ts_ns for v in fills]
    start = summary.get("start_ns") or (min(times) if times else None)
    end = summary.get("end_ns") or (max(times) if times else None)
    duration = (end - start) / 1e9 if start and end else None
    return RunFigures(run.label, run.mode, markets, fills, totals, sources, checks, lat, total_attr, fill_rate,
                      queue_s, duration, start, notes)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None
