"""Live vs replay: replay a ``kmm run``'s own capture with the latency fitted from that run and put the
two side by side per market (fills, contracts, fees, P&L), with the differences explained.

Both sides are valued the same way: each side's fills go through a fresh ``Portfolio`` (exact fees as
charged) and the open position is marked at the replay book's final best bid/ask, so a difference is
a difference in trading, not in marks.

Explanation of the fill difference, trade by trade (the sim and Kalshi give a fill and its public trade
the same ``trade_id``; the replay records what each recorded trade did to our virtual orders):

- ``both``: the trade filled us live and in the replay;
- ``queue``: filled live; in the replay an order of ours was at the price but the queue model put
  others in front who took the whole trade (queue position);
- ``quote_elsewhere``: filled live; in the replay no order of ours stood at or through that price
  when the trade came (latency and the wait for write tokens shift when orders land, and once the
  replay's inventory differs from live, the strategy's skew puts its quotes elsewhere);
- ``replay_only``: the replay was filled by a trade that did not fill us live (live, the trade met
  others first or our live order stood elsewhere);
- ``not_in_capture``: a live fill whose trade is not in the capture (our own taker orders, trades on
  channels not recorded);
- ``reaction``: filled live while the live quote was stale; the replay leaves that trade out and its
  pick-off model (:mod:`kmm.research.adverse`) stands for it: ``pickoff`` counts the replay's fills
  of that model (replay only, no recorded trade).

What no recording contains is the market's reaction to the replay's own orders: participants who
trade *because* a quote is there (an informed taker picks off a stale quote; live that was ours, and
the recording shows the trade; in the replay our stale quote is elsewhere, where the recording shows
no such trade). The pick-off model stands for that reaction (fitted from the live run's own stale
quotes); liquidity others took after seeing us stays out of any replay. P&L: a second replay with zero latency gives the
latency share of the difference (``pnl_latency``), a third without the pick-off model the share of
adverse selection as modelled (``pnl_adverse``: replay - replay with recorded trades only); the rest
(``pnl_residual``) is queue position, liquidity taken by others and what the models miss.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from kmm.config import KmmConfig
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill
from kmm.record.summary import format_contracts, format_money, read_summary
from kmm.research.backtest import Backtest, BacktestOptions

log = logging.getLogger("kmm.research.compare")


def _valued(fills: list[Fill], tickers: list[str], marks: dict[str, tuple[int | None, int | None]],
            cfg: KmmConfig) -> dict[str, dict[str, Any]]:
    out = {}
    for t in tickers:
        pf = Portfolio(mark=cfg.risk.pnl_mark, cash_rounding=cfg.risk.cash_rounding)
        mine = [f for f in fills if f.ticker == t]
        for f in mine:
            pf.apply_fill(f)
        bid, ask = marks.get(t, (None, None))
        pf.set_mark(t, bid, ask)
        realized, unrealized, fees = pf.realized_pnl(t), pf.unrealized_pnl(t), pf.fees_paid(t)
        out[t] = {"fills": len(mine), "bought": sum(f.count for f in mine if f.side == "bid"),
                  "sold": sum(f.count for f in mine if f.side == "ask"), "fees": fees, "realized": realized,
                  "unrealized": unrealized, "net": realized + unrealized - fees, "position": pf.position(t)}
    return out


def live_window(run_dir: Path) -> tuple[int, int]:
    """(first, last) wall ns at which the recorded run acted on its orders: its first create (after its
    start-up: account, order connections, signatures) and its last order event (the stop's cancels).
    The live engine made no quote outside it, so a replay compared with it does not either
    (``BacktestOptions.quote_from_ns``/``quote_until_ns``); (0, 0) when the run holds no order.
    Measured Nov 28: the start-up took 0.85-3.1 s of the capture (longer on a loaded machine), in
    which the replay, quoting from the first book, made 17-44 fills the live run could not make."""
    from kmm.record.store import StoreReader
    store = Path(run_dir) / "kmm.sqlite"
    if not store.exists():
        return 0, 0
    stamps = [ev[-1] for ev in StoreReader(store).order_events() if ev[-1]]
    return (min(stamps), max(stamps)) if stamps else (0, 0)


def compare_run(run_dir: Path, cfg: KmmConfig, out: Path, *, seed: int = 0,
                options: BacktestOptions | None = None) -> dict[str, Any]:
    """Replay ``run_dir`` (a kmm run output directory) and compare. Writes the replay's records and
    ``compare.json`` into ``out``; returns the comparison."""
    import json

    from kmm.record.store import StoreReader
    run_dir = Path(run_dir)
    opt = replace(options or BacktestOptions(), latency_from=str(run_dir))
    if not (opt.quote_from_ns or opt.quote_until_ns):
        start, until = live_window(run_dir)
        opt = replace(opt, quote_from_ns=start, quote_until_ns=until)
    live_summary = read_summary(run_dir) if (run_dir / "summary.json").exists() else None
    if not cfg.run.markets and live_summary:
        cfg = replace(cfg, run=replace(cfg.run, markets=tuple(live_summary["markets"])))
    bt = Backtest([run_dir], cfg, out, seed=seed, options=opt)
    bt.sim.keep_outcomes = True
    summary = bt.run()
    tickers = list(bt.tickers)
    since_ms = (live_summary["start_ns"] // 1_000_000 - 1_000) if live_summary else 0
    live_fills = [f for f in StoreReader(run_dir / "kmm.sqlite").fills()
                  if f.ticker in tickers and (f.ts_ms == 0 or f.ts_ms >= since_ms)]
    marks = {t: (bt.pipes[t].inputs.best_bid or None, bt.pipes[t].inputs.best_ask or None) for t in tickers}
    live = _valued(live_fills, tickers, marks, cfg)
    replay = _valued(bt.fills, tickers, marks, cfg)
    # zero latency: how much of the difference latency makes
    opt0 = replace(opt, latency_from="", feed_latency="0", entry_latency="0", response_latency="0")
    bt0 = Backtest([run_dir], cfg, None, seed=seed, options=opt0)
    bt0.run()
    replay0 = _valued(bt0.fills, tickers, marks, cfg)
    # recorded trades only (no pick-off model): how much of the difference adverse selection makes
    optn = replace(opt, pickoff="none")
    btn = Backtest([run_dir], cfg, None, seed=seed, options=optn)
    btn.run()
    replayn = _valued(btn.fills, tickers, marks, cfg)
    outcomes = bt.sim.trade_outcomes
    per: dict[str, dict[str, Any]] = {}
    for t in tickers:
        cats = {"both": 0, "queue": 0, "quote_elsewhere": 0, "reaction": 0, "replay_only": 0,
                "pickoff": 0, "not_in_capture": 0}
        live_ids = set()
        for f in live_fills:
            if f.ticker != t:
                continue
            live_ids.add(f.trade_id)
            o = outcomes.get(f.trade_id, (t, None))[1]
            if o is None:
                cats["not_in_capture"] += 1
            elif o == "filled":
                cats["both"] += 1
            elif o == "queue":
                cats["queue"] += 1
            elif o == "reaction":
                cats["reaction"] += 1
            else:
                cats["quote_elsewhere"] += 1
        cats["replay_only"] = sum(1 for tid, (tt, o) in outcomes.items()
                                  if tt == t and o == "filled" and tid not in live_ids)
        cats["pickoff"] = bt.sim.pickoff_by_ticker.get(t, 0)
        lv, rp, r0, rn = live[t], replay[t], replay0[t], replayn[t]
        per[t] = {
            "live": _fmt(lv), "replay": _fmt(rp), "replay_zero_latency": _fmt(r0),
            "fill_difference": rp["fills"] - lv["fills"], "explained": cats,
            "pnl_difference": format_money(rp["net"] - lv["net"]),
            "pnl_latency": format_money(rp["net"] - r0["net"]),
            "pnl_adverse": format_money(rp["net"] - rn["net"]),
            "pnl_residual": format_money((rp["net"] - lv["net"]) - (rp["net"] - r0["net"]) - (rp["net"] - rn["net"])),
            "replay_no_pickoff": _fmt(rn),
        }
    tot_live = {k: sum(live[t][k] for t in tickers) for k in ("fills", "bought", "sold", "fees", "net")}
    tot_rep = {k: sum(replay[t][k] for t in tickers) for k in ("fills", "bought", "sold", "fees", "net")}
    result = {"run": str(run_dir), "latency": bt.latency.describe(), "queue_model": opt.queue_model,
              "pickoff_model": bt.sim.pickoff.describe() if bt.sim.pickoff is not None else "none",
              "markets": per,
              "total": {"live_fills": tot_live["fills"], "replay_fills": tot_rep["fills"],
                        "live_net_pnl": format_money(tot_live["net"]), "replay_net_pnl": format_money(tot_rep["net"]),
                        "live_fees": format_money(tot_live["fees"]), "replay_fees": format_money(tot_rep["fees"]),
                        "live_contracts": format_contracts(tot_live["bought"] + tot_live["sold"]),
                        "replay_contracts": format_contracts(tot_rep["bought"] + tot_rep["sold"])},
              "replay_summary": summary}
    (Path(out) / "compare.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _fmt(v: dict[str, Any]) -> dict[str, Any]:
    return {"fills": v["fills"], "bought": format_contracts(v["bought"]), "sold": format_contracts(v["sold"]),
            "fees": format_money(v["fees"]), "realized": format_money(v["realized"]),
            "unrealized": format_money(v["unrealized"]), "net": format_money(v["net"]),
            "position": format_contracts(v["position"])}


def render(result: dict[str, Any]) -> str:
    """The comparison as a table for the terminal."""
    lines = [f"live vs replay of {result['run']} (latency: {result['latency']}; queue: {result['queue_model']}; "
             f"pick-off: {result.get('pickoff_model', 'none')})",
             f"{'market':<16} {'':>7} {'fills':>6} {'bought':>9} {'sold':>9} {'fees':>9} {'net P&L':>10}"]
    for t, m in result["markets"].items():
        for side in ("live", "replay", "replay_zero_latency"):
            v = m[side]
            name = {"live": "live", "replay": "replay", "replay_zero_latency": "lat=0"}[side]
            lines.append(f"{t:<16} {name:>7} {v['fills']:>6} {v['bought']:>9} {v['sold']:>9} {v['fees']:>9} "
                         f"{v['net']:>10}")
        e = m["explained"]
        lines.append(f"{'':<16} fills from the same trade {e['both']}; live only: queue position {e['queue']}, "
                     f"quote elsewhere {e['quote_elsewhere']}, reaction to a stale quote {e['reaction']}, "
                     f"not in capture {e['not_in_capture']}; replay only: recorded trades {e['replay_only']}, "
                     f"pick-offs {e['pickoff']}")
        lines.append(f"{'':<16} net P&L replay - live {m['pnl_difference']} = latency {m['pnl_latency']} "
                     f"+ pick-offs {m['pnl_adverse']} + rest {m['pnl_residual']} (queue position, liquidity "
                     "others took, what the models miss)")
    tot = result["total"]
    lines.append(f"total: fills live {tot['live_fills']} / replay {tot['replay_fills']}; net P&L live "
                 f"{tot['live_net_pnl']} / replay {tot['replay_net_pnl']}; fees live {tot['live_fees']} / "
                 f"replay {tot['replay_fees']}")
    return "\n".join(lines)
