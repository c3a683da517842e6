"""Execution quality, computed from an algorithm's event history alone (seed 001 "Performance Metrics").

Prices are YES prices (1e-4 $). Slippage is signed so that **positive is worse for the user**
(paid more or received less) and measured against the arrival best take-side price and against the
limit; percentages are of the user's own price (a NO buyer's price is 10000 - YES).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from kmm._core.fixed import format_count
from kmm.execution.algo import Algo
from kmm.execution.intents import Event
from kmm.execution.request import Action

__all__ = ["ExecutionMetrics", "compute_metrics", "metrics_for"]


@dataclass(slots=True, frozen=True)
class ExecutionMetrics:
    execution_id: str
    algo: str
    action: Action
    target_size: int                    # 1e-2 contracts
    filled_size: int
    fill_rate: float                    # filled / target
    limit: int                          # YES
    target_price: int                   # YES posting price of the request
    arrival_price: int | None           # best take-side YES price at start
    avg_fill_price: float | None        # YES
    slippage_vs_arrival: float | None   # price units, + = worse for the user
    slippage_vs_arrival_pct: float | None
    slippage_vs_limit: float | None     # <= 0 when the limit held
    slippage_vs_limit_pct: float | None
    fees: int                           # 1e-4 $
    time_to_first_fill_ns: int | None
    time_to_full_fill_ns: int | None
    duration_ns: int | None
    walks: int
    splits: int
    child_orders: int
    rejects: int
    api_calls: dict[str, int] = field(default_factory=dict)
    end_reason: str = ""

    @property
    def api_calls_total(self) -> int:
        return sum(self.api_calls.values())

    def as_row(self) -> dict[str, Any]:
        """A flat dict for a store or a CSV (``api_calls`` spread as ``api_<kind>``)."""
        row: dict[str, Any] = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "api_calls"}
        row["action"] = self.action.value
        for kind in ("place", "amend", "decrease", "cancel"):
            row[f"api_{kind}"] = self.api_calls.get(kind, 0)
        return row

    def summary(self) -> str:
        avg = "-" if self.avg_fill_price is None else f"{self.action.from_yes(self.avg_fill_price) / 10000:.4f}"
        slip = "-" if self.slippage_vs_arrival_pct is None else f"{self.slippage_vs_arrival_pct:+.2f} %"
        return (f"{self.execution_id} {self.algo}: filled {format_count(self.filled_size)}/"
                f"{format_count(self.target_size)} ({self.fill_rate:.0%}) avg {avg} slippage {slip} "
                f"fees ${self.fees / 10000:.4f} walks {self.walks} calls {self.api_calls_total} [{self.end_reason}]")


def _user_px(action: Action, yes: float) -> float:
    return yes if action.outcome == "yes" else 10000 - yes


def _worse(action: Action, price: float, ref: float) -> float:
    """How much worse ``price`` is than ``ref`` for the user, in price units (+ = worse)."""
    return price - ref if action.side == "bid" else ref - price


def compute_metrics(history: Iterable[Event], *, execution_id: str, algo: str, action: Action, target_size: int,
                    limit: int, target_price: int) -> ExecutionMetrics:
    """Metrics of one execution from its events (see :class:`kmm.execution.intents.Event`)."""
    start_ns: int | None = None
    end_ns: int | None = None
    arrival: int | None = None
    filled = notional = fees = walks = splits = rejects = 0
    first_fill: int | None = None
    full_fill: int | None = None
    calls: dict[str, int] = {}
    end_reason = ""
    last_ns: int | None = None
    for ev in history:
        last_ns = ev.ts_ns
        if ev.kind == "start":
            start_ns, arrival = ev.ts_ns, ev.price
        elif ev.kind == "intent" and ev.intent is not None:
            calls[ev.intent.kind] = calls.get(ev.intent.kind, 0) + 1
        elif ev.kind == "fill":
            filled += ev.size
            notional += ev.size * (ev.price or 0)
            fees += ev.fee
            if first_fill is None:
                first_fill = ev.ts_ns
            if full_fill is None and filled >= target_size:
                full_fill = ev.ts_ns
        elif ev.kind == "walk":
            walks += 1
        elif ev.kind == "split":
            splits += 1
        elif ev.kind == "update" and ev.status == "rejected":
            rejects += 1
        elif ev.kind == "end":
            end_ns, end_reason = ev.ts_ns, ev.text
    avg = notional / filled if filled else None
    s_arr = s_arr_pct = s_lim = s_lim_pct = None
    if avg is not None:
        if arrival is not None:
            s_arr = _worse(action, avg, arrival)
            s_arr_pct = 100.0 * s_arr / _user_px(action, arrival)
        s_lim = _worse(action, avg, limit)
        s_lim_pct = 100.0 * s_lim / _user_px(action, limit)

    def since(t: int | None) -> int | None:
        return None if t is None or start_ns is None else t - start_ns

    return ExecutionMetrics(
        execution_id=execution_id, algo=algo, action=action, target_size=target_size, filled_size=filled,
        fill_rate=filled / target_size if target_size else 0.0, limit=limit, target_price=target_price,
        arrival_price=arrival, avg_fill_price=avg, slippage_vs_arrival=s_arr, slippage_vs_arrival_pct=s_arr_pct,
        slippage_vs_limit=s_lim, slippage_vs_limit_pct=s_lim_pct, fees=fees, time_to_first_fill_ns=since(first_fill),
        time_to_full_fill_ns=since(full_fill), duration_ns=since(end_ns if end_ns is not None else last_ns),
        walks=walks, splits=splits, child_orders=calls.get("place", 0), rejects=rejects, api_calls=calls,
        end_reason=end_reason)


def metrics_for(algo: Algo) -> ExecutionMetrics:
    """Metrics of ``algo`` so far (call again after late fills to include them)."""
    r = algo.request
    return compute_metrics(algo.history, execution_id=algo.execution_id, algo=algo.name, action=r.action,
                           target_size=algo.target_size, limit=algo.limit, target_price=r.target)
