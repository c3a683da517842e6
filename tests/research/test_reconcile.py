"""Live vs replay: a 60 s busy kmm run against the embedded exchange, replayed from its own capture
with the latency and the pick-off model fitted from it, must agree within the tolerance
docs/research.md states and explains. The replay's figures are the mean of four replays (seeds 0-3:
latency and pick-off draws), as a quant would read a replay whose path depends on random draws. Each
bound is about twice the largest difference measured over such runs, or less (the fill count in all):

- fills: in all within 20 % of the live count; per market within 50 % (tightened to 35 % on Nov 28 and
  set back the same day: see the end of this paragraph).
  Eight runs of Nov 28 (docs/research.md, "Loaded runs, second look"; seven beside three CPU hogs, the
  live runs filling 543 to 629) on the code as it is gave -5.4 % to +17.1 % per market and -1.0 % to
  +12.1 % in all; 35 % is about twice +17.1 %, the 20 % in all stays (twice +12.1 % would be more).
  What made the loaded runs' replays fill up to +27.6 % per market, +16 % in all, before: the replay
  quoted during the live run's start-up (0.6-3.1 s of the capture, longer on a loaded machine, before
  kmm's first quote: now the replay quotes in the recorded run's own window), and the pick-off hazard
  drew ~15 % under its fitted rate. Not the engine's own decision delay (measured live: frames handled
  within 0.5-5.5 ms p99, decisions within 10 % of the replay's, request cycles as long). Earlier runs
  on older code gave up to +31 % (a full-suite run) and +38 % (the first CI run); their captures are
  gone. What is left in every run: live quotes stand stale longer than the replay's, so the replay
  draws fewer pick-offs than live had reactions and fills more recorded trades (nearly cancelling in
  the count). The test prints each market's decisions, pulls and blocked states, and where the live
  and the replay's quotes stood against the others' best (kmm.research.placement), what a failing
  case needs to be understood. A ninth run, on a machine loaded by a second kmm run beside it (its own
  simulator and signer), gave +48.7 % in the deci-cent market (live 135 fills, replays 201 on average;
  -6.4 % and +5.4 % in the others, +11.2 % in all): its live quotes stood 3+ ticks behind the others'
  best for 489 contract-s against 280 in the replay, the unexplained gap above at its largest. 35 %
  is not what the evidence supports on a shared machine; the bound is 50 % again, and that run is
  within it by little;
- net P&L (same marks, exact fees): in all within 0.45 cent per contract the live run traded plus
  $0.50; per market within 1.1 cent per contract that market traded plus $0.50.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import kmm
from kmm.config import load_config
from kmm.record.summary import parse_contracts, parse_money, read_summary, validate_summary
from kmm.research.compare import compare_run, render
from kmm.research.placement import measure_placement, render_placement

pytestmark = pytest.mark.slow

RUN_S = 60
SEEDS = (0, 1, 2, 3)
FILL_TOL = 0.20
# per market: the replay's first-come-first-served write queue, its quoting during the live run's
# start-up and a pick-off hazard under its fitted rate were causes of the per-market gap (fixed); eight
# runs since: -5.4 % to +17.1 %, but a ninth on a heavily loaded machine +48.7 % (docstring)
FILL_TOL_MARKET = 0.50
PNL_PER_CONTRACT = 45          # 1e-4 $ = 0.45 cent
PNL_PER_CONTRACT_MARKET = 110  # 1e-4 $ = 1.1 cent
PNL_FLOOR = 5_000              # 1e-4 $ = $0.50


def _diagnosis(run: Path, replays: list[Path], ticker: str) -> str:
    """What a failing per-market bound needs to be understood (the run directory is gone with tmp_path):
    decisions live and per replay (tape rows), and the live run's pulls and blocked states (ops.log)."""
    from kmm.record.tape import read_tape

    def decisions(d: Path) -> int:
        return sum(1 for r in read_tape(d / "tape.csv") if r.ticker == ticker and r.event == "decision")
    ops = (run / "ops.log").read_text(errors="replace").splitlines() if (run / "ops.log").exists() else []
    pulls = sum(1 for line in ops if f"{ticker}: pulling" in line)
    blocked = [line.split("cannot: ", 1)[1] for line in ops if f"{ticker}: wants to quote but cannot" in line]
    return (f"decisions live {decisions(run)}, replays {[decisions(d) for d in replays]}; live pulls {pulls}, "
            f"blocked {blocked}")


def test_a_busy_live_run_replayed_agrees_within_the_stated_tolerance(tmp_path):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env["HOME"] = str(tmp_path)
    # the kmm this test imported, whatever the working directory of the subprocess
    src = str(Path(kmm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    p = subprocess.run([sys.executable, "-m", "kmm", "run", "--duration", str(RUN_S), "--out", str(run),
                        "--view", "off", "--set", "sim.flow=busy"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_S + 90)
    assert p.returncode == 0, p.stdout + p.stderr
    live = read_summary(run)
    validate_summary(live)
    assert live["mode"] == "live" and live["fills"] > 50, live
    assert (run / "markets.json").exists()

    cfg = load_config(None, environ={}, cli={})
    results = [compare_run(run, cfg, tmp_path / f"replay{seed}", seed=seed) for seed in SEEDS]
    result = results[0]
    print(render(result))
    tot = result["total"]
    assert tot["live_fills"] == live["fills"]
    traded = parse_contracts(tot["live_contracts"])
    assert traded == parse_contracts(live["contracts_bought"]) + parse_contracts(live["contracts_sold"])
    # the live side of the comparison is the live run's own accounting, to the cent
    assert tot["live_fees"] == live["fees"]
    replay_fills = statistics.mean(r["total"]["replay_fills"] for r in results)
    replay_net = statistics.mean(parse_money(r["total"]["replay_net_pnl"]) for r in results)
    print(f"mean of {len(SEEDS)} replays: fills {replay_fills:.1f} (live {tot['live_fills']}), net P&L "
          f"{replay_net / 1e4:.4f} (live {tot['live_net_pnl']}) on {traded / 100:.0f} contracts")
    for t, m in result["markets"].items():       # every market's figures first: a failure shows them all
        fills_t = statistics.mean(r["markets"][t]["replay"]["fills"] for r in results)
        lf = m["live"]["fills"]
        print(f"{t}: fills live {lf}, mean of {len(SEEDS)} replays {fills_t:.1f} "
              f"({(fills_t - lf) / max(1, lf):+.1%}; bound {FILL_TOL_MARKET:.0%}); "
              + _diagnosis(run, [tmp_path / f"replay{seed}" for seed in SEEDS], t))
    # where the quotes stood, live and in the replay (seed 0 again, on the reference path: a couple of
    # seconds); read with the per-market figures above when a bound fails
    print(render_placement(measure_placement(run, cfg, None, seed=SEEDS[0])))
    assert abs(replay_fills - tot["live_fills"]) <= FILL_TOL * tot["live_fills"], (replay_fills, tot)
    pnl_diff = abs(replay_net - parse_money(tot["live_net_pnl"]))
    assert pnl_diff <= PNL_PER_CONTRACT * traded // 100 + PNL_FLOOR, (pnl_diff, traded, tot)
    assert set(result["markets"]) == set(live["markets"])
    for t, m in result["markets"].items():
        lv = m["live"]
        assert lv["fills"] > 20, (t, lv)
        fills_t = statistics.mean(r["markets"][t]["replay"]["fills"] for r in results)
        assert abs(fills_t - lv["fills"]) <= FILL_TOL_MARKET * lv["fills"], (t, lv, fills_t)
        traded_t = parse_contracts(lv["bought"]) + parse_contracts(lv["sold"])
        net_t = statistics.mean(parse_money(r["markets"][t]["replay"]["net"]) for r in results)
        diff_t = abs(net_t - parse_money(lv["net"]))
        assert diff_t <= PNL_PER_CONTRACT_MARKET * traded_t // 100 + PNL_FLOOR, (t, diff_t, traded_t, m)
        # every live fill is put in one category of the explanation
        e = m["explained"]
        assert e["both"] + e["queue"] + e["quote_elsewhere"] + e["reaction"] + e["not_in_capture"] == lv["fills"]
    # the model is the fitted one, and it found the live run's reaction trades
    assert result["pickoff_model"].startswith("fitted"), result["pickoff_model"]
    assert sum(m["explained"]["reaction"] for m in result["markets"].values()) > 0
    replay = read_summary(tmp_path / "replay0")
    validate_summary(replay)
    assert replay["mode"] == "backtest" and replay["fills"] == tot["replay_fills"]
