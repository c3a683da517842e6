"""Reproduction of Avellaneda & Stoikov (2008), section 4, driving kmm's reservation_price/optimal_spread.

Setup from the paper: s0 = 100, T = 1, sigma = 2, dt = 0.005 (200 steps), k = 1.5, A = 140, 1000 paths.
Each step the agent quotes from the current mid, the mid then moves +/- sigma * sqrt(dt) with probability
1/2, and each quote is hit with probability A * exp(-k * delta) * dt, delta being its distance from the
mid at the moment of the fill check; one unit per fill. Profit = cash + q * s_T.

Two readings of "the spread":
- ``table``: the spread column of the published table (1.29 / 1.33 / 1.15) equals the closed form at
  tau = 0, i.e. (2 / gamma) ln(1 + gamma / k), so the paper's runs used that constant spread. With this
  reading (and the fill checked after the mid step) our means and standard deviations agree with the
  published numbers within sampling error, except two numbers listed in ``DISAGREE`` (see the report
  in docs/core-quote.md): they are kept as strict xfails, not hidden by wider tolerances.
- ``closed_form``: spread = gamma sigma^2 (T - t) + (2 / gamma) ln(1 + gamma / k) at every step; its time
  average (1.49 / 1.35 / 2.15) is checked against the closed form, and the qualitative results hold.

Tolerances: the published numbers are themselves 1000-path estimates, so a difference is judged against
sqrt(se_ours^2 + se_paper^2), with se(mean) = std / sqrt(n) and se(std) = std / sqrt(2 (n - 1)), at
Z = 3.5 (about 30 comparisons; a 1 % family-wise false-alarm rate for a correct simulation).
"""

import math

import numpy as np
import pytest

from kmm._core.quote import optimal_spread, reservation_price

S0, T, SIGMA, DT, K, A, N = 100.0, 1.0, 2.0, 0.005, 1.5, 140.0, 1000
STEPS = int(round(T / DT))
SEED = 2008
Z = 3.5

# Published table (as remembered in the brief): gamma -> strategy -> field -> value.
PAPER = {
    0.1: {"inventory": {"spread": 1.29, "profit": 62.94, "profit_std": 5.89, "q": 0.10, "q_std": 2.80},
          "symmetric": {"spread": 1.29, "profit": 67.21, "profit_std": 13.43, "q": -0.018, "q_std": 8.66}},
    0.01: {"inventory": {"spread": 1.33, "profit": 66.78, "profit_std": 8.76, "q_std": 4.70},
           "symmetric": {"spread": 1.33, "profit": 67.36, "profit_std": 13.40, "q_std": 8.65}},
    0.5: {"inventory": {"spread": 1.15, "profit": 33.92, "profit_std": 4.72, "q_std": 1.88},
          "symmetric": {"spread": 1.15, "profit": 66.20, "profit_std": 14.53, "q_std": 8.53}},
}
# Published numbers our simulation does not reproduce within sampling error (reported, not fudged).
DISAGREE = {(0.5, "inventory", "profit")}

_cache: dict = {}


def simulate(gamma: float, mode: str) -> dict:
    """Run both strategies on common random numbers; returns per-strategy arrays and the mean spread."""
    key = (gamma, mode)
    if key in _cache:
        return _cache[key]
    rng = np.random.default_rng(SEED)
    moves = SIGMA * math.sqrt(DT) * np.where(rng.random((STEPS, N)) < 0.5, 1.0, -1.0)
    u_bid = rng.random((STEPS, N))
    u_ask = rng.random((STEPS, N))
    spreads = [optimal_spread(gamma, SIGMA, (T - i * DT) if mode == "closed_form" else 0.0, K)
               for i in range(STEPS)]
    out = {"mean_spread": float(np.mean(spreads))}
    for strategy in ("inventory", "symmetric"):
        s = np.full(N, S0)
        q = np.zeros(N)
        cash = np.zeros(N)
        for i in range(STEPS):
            tau = T - i * DT
            if strategy == "inventory":
                centre = np.array([reservation_price(si, qi, gamma, SIGMA, tau)
                                   for si, qi in zip(s.tolist(), q.tolist())])
            else:
                centre = s
            bid = centre - spreads[i] / 2
            ask = centre + spreads[i] / 2
            s = s + moves[i]
            hit_bid = u_bid[i] < A * np.exp(-K * (s - bid)) * DT
            hit_ask = u_ask[i] < A * np.exp(-K * (ask - s)) * DT
            q += hit_bid
            q -= hit_ask
            cash += np.where(hit_ask, ask, 0.0) - np.where(hit_bid, bid, 0.0)
        out[strategy] = {"profit": cash + q * s, "q": q}
    _cache[key] = out
    return out


def stats(run: dict, strategy: str) -> dict:
    profit, q = run[strategy]["profit"], run[strategy]["q"]
    return {"profit": profit.mean(), "profit_std": profit.std(ddof=1), "q": q.mean(), "q_std": q.std(ddof=1)}


def tolerance(field: str, ours: dict, paper: dict) -> float:
    if field in ("profit", "q"):
        sd = field + "_std"
        paper_sd = paper.get(sd, ours[sd])
        return Z * math.sqrt((ours[sd] ** 2 + paper_sd ** 2) / N)
    return Z * math.sqrt((ours[field] ** 2 + paper[field] ** 2) / (2 * (N - 1)))


CASES = [(g, st, f) for g, d in PAPER.items() for st, fields in d.items() for f in fields if f != "spread"]


@pytest.mark.parametrize("gamma", sorted(PAPER))
def test_as_table_spread_column_equals_closed_form_at_the_close(gamma):
    # The table's spread is (2/gamma) ln(1 + gamma/k): the closed form with tau = 0.
    assert round(optimal_spread(gamma, SIGMA, 0.0, K), 2) == PAPER[gamma]["inventory"]["spread"]
    assert simulate(gamma, "table")["mean_spread"] == pytest.approx(optimal_spread(gamma, SIGMA, 0.0, K))


@pytest.mark.parametrize("gamma,expected", [(0.1, 1.49), (0.01, 1.35), (0.5, 2.15)])
def test_as_closed_form_mean_spread_equals_time_average_of_closed_form(gamma, expected):
    run = simulate(gamma, "closed_form")
    # gamma sigma^2 (T - t) averaged over the left-point grid t = 0, dt, ..., T - dt, plus the ln term.
    avg = gamma * SIGMA ** 2 * (T + DT) / 2 + (2 / gamma) * math.log(1 + gamma / K)
    assert run["mean_spread"] == pytest.approx(avg, rel=1e-12)
    # Over continuous time the average is gamma sigma^2 T / 2 + ln term: the paper's closed form.
    assert round(gamma * SIGMA ** 2 * T / 2 + optimal_spread(gamma, SIGMA, 0.0, K), 2) == expected


@pytest.mark.parametrize("gamma,strategy,field", [c for c in CASES if c not in DISAGREE])
def test_as_simulation_matches_published_number_within_sampling_error(gamma, strategy, field):
    ours = stats(simulate(gamma, "table"), strategy)
    paper = PAPER[gamma][strategy]
    assert abs(ours[field] - paper[field]) <= tolerance(field, ours, paper), (ours[field], paper[field])


@pytest.mark.xfail(strict=True, reason="published inventory-strategy profit for gamma=0.5 (33.92) is not "
                                       "reproduced: ~21 with the table's spread, ~47 with the closed form")
@pytest.mark.parametrize("gamma,strategy,field", sorted(DISAGREE))
def test_as_simulation_disagrees_with_published_number(gamma, strategy, field):
    paper = PAPER[gamma][strategy]
    for mode in ("table", "closed_form"):
        ours = stats(simulate(gamma, mode), strategy)
        assert abs(ours[field] - paper[field]) <= tolerance(field, ours, paper), (mode, ours[field])


@pytest.mark.parametrize("mode", ["table", "closed_form"])
@pytest.mark.parametrize("gamma", sorted(PAPER))
def test_as_inventory_strategy_has_much_lower_dispersion_than_symmetric(gamma, mode):
    run = simulate(gamma, mode)
    inv, sym = stats(run, "inventory"), stats(run, "symmetric")
    assert inv["q_std"] < 0.65 * sym["q_std"]
    assert inv["profit_std"] < 0.7 * sym["profit_std"]
    # ... and pays for it with a lower mean profit (the symmetric strategy earns the full spread).
    assert inv["profit"] < sym["profit"]
    # Final inventory is centred on zero for both.
    for st in (inv, sym):
        assert abs(st["q"]) < Z * st["q_std"] / math.sqrt(N)


def test_as_higher_risk_aversion_tightens_inventory_and_lowers_profit_dispersion():
    qs = [stats(simulate(g, "table"), "inventory")["q_std"] for g in (0.01, 0.1, 0.5)]
    ps = [stats(simulate(g, "table"), "inventory")["profit_std"] for g in (0.01, 0.1, 0.5)]
    assert qs[0] > qs[1] > qs[2]
    assert ps[0] > ps[1] > ps[2]
