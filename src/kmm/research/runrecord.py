"""What ``kmm run`` leaves for research besides its records: ``summary.json`` and ``markets.json``.

Called once by ``kmm.engine.app`` after the engine stopped (records still open): reads the engine's
portfolio, counters and market facts, and this session's fills from the store.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from kmm.record.capture import write_market_defs
from kmm.record.summary import build_summary, write_summary

log = logging.getLogger("kmm.research")


def _fmt_price(p: int) -> str:
    return f"{p // 10000}.{p % 10000:04d}"


def market_defs(engine: Any) -> dict[str, dict[str, Any]]:
    """The engine's markets as ``markets.json`` entries (grid in the wire's dollar strings)."""
    out: dict[str, dict[str, Any]] = {}
    for t, pipe in engine.pipes.items():
        info = pipe.info
        out[t] = {"price_ranges": [{"start": _fmt_price(a), "end": _fmt_price(b), "step": _fmt_price(s)}
                                   for a, b, s in info.grid.ranges],
                  "maker_rate_e6": info.maker_rate_e6, "taker_rate_e6": info.taker_rate_e6,
                  "close_time_ns": info.close_time_ns, "fractional": info.fractional, "status": info.status}
    return out


def write_run_outputs(engine: Any, recorder: Any, start_ns: int, *, mode: str = "live") -> dict[str, Any] | None:
    """Write ``markets.json`` and ``summary.json`` for a finished engine. Never raises: a failure here
    is logged and must not change kmm run's exit."""
    try:
        out = Path(recorder.out_dir)
        write_market_defs(out, market_defs(engine), venue=str(engine.venue))
        store = recorder.store
        store.flush()
        since = getattr(engine, "_session_start_ms", 0)
        fills = [f for f in store.fills() if f.ticker in engine.pipes and (f.ts_ms == 0 or f.ts_ms >= since)]
        pf = engine.pf
        tickers = list(engine.tickers)
        router = engine.router
        # this session only: positions loaded at start carry the account's past realized P&L and fees,
        # which the risk gate's baseline holds (net); the session's fees are its own fills' fees
        fees = sum(f.fee for f in fills)
        unrealized = pf.unrealized_pnl()
        realized = pf.total_pnl() - engine.gate.pnl_baseline - unrealized + fees
        lifetime = None
        if callable(getattr(engine, "session_pnl", None)):
            # the maker's SessionPnl: carried positions re-based at their first mark of the session,
            # so a reused account starts at exactly 0 (the baseline above still moves with their marks)
            sp = engine.session_pnl()
            realized, unrealized, fees = sp.realized, sp.unrealized, sp.fees
            lt = engine.lifetime_pnl()
            lifetime = {"scope": "lifetime (the account, not this session)", "realized_pnl": lt.realized,
                        "unrealized_pnl": lt.unrealized, "fees": lt.fees}
        s = build_summary(mode=mode, venue=str(engine.venue), markets=tickers, start_ns=start_ns,
                          end_ns=time.time_ns(), fills=fills, realized=realized,
                          unrealized=unrealized, fees=fees,
                          positions={t: pf.position(t) for t in tickers},
                          book_messages=int(router.snapshots + router.deltas), orders_sent=int(engine.orders_sent),
                          extra={"engine_fills": engine.fills, "cancels_sent": engine.cancels_sent,
                                 "amends_sent": engine.amends_sent,
                                 "pnl_scope": "session: net_pnl is this session's net P&L; realized_pnl is "
                                              "gross of fees (net_pnl = realized + unrealized - fees)",
                                 **({"account_lifetime_1e4_usd": lifetime} if lifetime else {}),
                                 **({"maker_metrics": engine.mstats.snapshot().as_dict()}
                                    if hasattr(engine, "mstats") else {}),
                                 **({"events": [v.as_dict() for v in engine.event_views()]}
                                    if hasattr(engine, "event_views") else {}),
                                 **({"incentives": engine.incentives.summary()}
                                    if hasattr(engine, "incentives") else {}),
                                 "signatures": getattr(engine, "signature_stats", lambda: None)(),
                                 "latency": getattr(engine, "latency_stats", lambda: None)()})
        write_summary(out, s)
        return s
    except Exception as exc:  # noqa: BLE001 - the run itself is over and fine
        log.error("could not write summary.json / markets.json: %s", exc, exc_info=True)
        return None
