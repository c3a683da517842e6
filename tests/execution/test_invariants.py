"""Property tests: every algorithm keeps the hard rules whatever the exchange does.

Hypothesis drives the harness exchange with random partial fills across children, random rejects
of every intent kind, unsolicited exchange cancels, fills delivered late (after the cancel or the
replacement of their order), random book moves and random clock jumps. The harness checks after
every step that the exchange's own fill total never exceeds the target and that no Place or Amend
crosses the limit, leaves the grid, reuses a child id or follows the end; at the end, every child is
cancelled and the algorithm's accounting equals the exchange's.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmm._core.grid import Grid
from kmm.execution import Action, ExecutionRequest, MarketInfo, build_algo, metrics_for

from tests.execution.book import PlainBook
from tests.execution.harness import Exchange

PARAMS = {
    "simple": lambda r: {"timeout_s": r.choice((None, 5.0, 30.0)), "ioc_edge": r.choice((None, 0, 800)),
                         "max_slippage": r.choice((0.0, 0.02, 0.2))},
    "capped": lambda r: {"remainder": r.choice(("drop", "rest")), "timeout_s": r.choice((None, 20.0)),
                         "max_take_fraction": r.choice((1.0, 0.5, 0.25)), "conservative": r.random() < 0.2},
    "slice": lambda r: {"child_size": r.choice((100, 300, 1000)), "patience_s": r.choice((0.5, 2.0)),
                        "mode": r.choice(("patient", "aggressive")), "timeout_s": r.choice((None, 30.0))},
    "twap": lambda r: {"slices": r.randint(1, 6), "duration_s": r.choice((3.0, 10.0)),
                       "carry_over": r.random() < 0.5, "final_wait_s": r.choice((0.0, 2.0))},
    "adaptive": lambda r: {"step_timeout_s": r.choice((0.5, 2.0)), "max_improvements": r.randint(0, 6),
                           "final": r.choice(("rest", "cancel")), "timeout_s": r.choice((None, 30.0))},
    "vwslice": lambda r: {"max_levels": r.randint(1, 5), "timeout_s": r.choice((None, 20.0))},
    "walker": lambda r: {"walk_interval_seconds": r.choice((0.5, 1.0)), "max_walks_per_order": r.randint(0, 5),
                         "min_cumulative_depth": r.choice((0, 500, 100000)),
                         "split_weights": r.choice(((0.6, 0.4), (0.5, 0.3, 0.2), (1.0,))),
                         "momentum_threshold": r.choice((0.0, 0.1, 5.0)), "ema_alpha": r.choice((0.3, 1.0)),
                         "depth_dry_up_threshold": r.choice((0.01, 0.5)), "walk_via": r.choice(("amend", "replace")),
                         "momentum_window_seconds": 5.0, "timeout_s": r.choice((None, 30.0))},
}


def random_setup(algo: str, r: random.Random):
    grid_name = r.choice(("linear_cent", "deci_cent", "tapered_deci_cent"))
    grid = Grid(grid_name)
    fractional = r.random() < 0.3
    market = MarketInfo("KXTEST-1", grid, fractional)
    mid = grid.snap_down(r.randint(500, 9500))
    book = PlainBook()
    p = mid
    for _ in range(r.randint(0, 5)):
        p = grid.tick_up(p) if p is not None else None
        if p is None:
            break
        book.set_ask(p, r.choice((100, 300, 1000, 5000)))
    p = mid
    for _ in range(r.randint(0, 5)):
        p = grid.tick_down(p) if p is not None else None
        if p is None:
            break
        book.set_bid(p, r.choice((100, 300, 1000, 5000)))
    action = r.choice(list(Action))
    yes_limit = grid.snap_down(max(1, min(9999, mid + r.randint(-600, 600)))) or grid.min_price
    lot = 1 if fractional else 100
    size = r.randint(1, 40) * (r.choice((1, 7, 100)) if fractional else 100)
    req = ExecutionRequest(
        "KXTEST-1", action, size, action.from_yes(yes_limit),
        algo=algo, params=PARAMS[algo](r), fractional=fractional,
        edge=r.choice((None, None, None, 50, 400, 1200)), confidence=r.choice((None, 0.3, 0.9)), execution_id="e")
    assert req.size % lot == 0
    return req, market, book


@pytest.mark.parametrize("algo", sorted(PARAMS))
@given(rng=st.randoms(use_true_random=False), reject_p=st.sampled_from((0.0, 0.1, 0.3)),
       steps=st.integers(0, 250))
def test_algorithm_never_overfills_never_crosses_and_cancels_everything_under_random_exchange(algo, rng, reject_p,
                                                                                              steps):
    req, market, book = random_setup(algo, rng)
    a = build_algo(req, market)
    ex = Exchange(a, book, rng, reject_p=reject_p)
    ex.start()
    for _ in range(steps):
        ex.random_step()
        if a.done:
            break
    ex.drain()
    # every child is gone at the exchange, and the algorithm knows it
    assert all(o.done for o in ex.orders.values())
    assert a.done
    # nothing lost: every fill the exchange made reached the algorithm exactly once
    assert a.filled == ex.exchange_filled <= req.size
    assert a.unsettled == 0
    m = metrics_for(a)
    assert m.filled_size == ex.exchange_filled
    assert m.api_calls.get("place", 0) == sum(1 for i in ex.intents if i.kind == "place")
    if m.filled_size:
        assert m.slippage_vs_limit is not None and m.slippage_vs_limit <= 0  # never worse than the limit


@given(rng=st.randoms(use_true_random=False), walk_via=st.sampled_from(("amend", "replace")),
       steps=st.integers(20, 150))
def test_walker_walks_keep_total_within_target_when_fills_arrive_after_replacement(rng, walk_via, steps):
    """Walk-heavy setting: every evaluation walks, so amends and cancel/replace chains with late fills
    on the replaced children are the common case rather than the exception."""
    req, market, book = random_setup("walker", rng)
    req = ExecutionRequest(req.ticker, req.action, req.size, req.limit_price, algo="walker",
                           fractional=req.fractional, execution_id="w",
                           params={"walk_interval_seconds": 0.5, "max_walks_per_order": 8, "min_cumulative_depth": 0,
                                   "momentum_threshold": 0.0, "walk_via": walk_via, "timeout_s": None,
                                   "split_weights": (0.5, 0.3, 0.2)})
    a = build_algo(req, market)
    ex = Exchange(a, book, rng, reject_p=0.1)
    ex.start()
    for _ in range(steps):
        ex.random_step()
        if a.done:
            break
    ex.drain()
    assert all(o.done for o in ex.orders.values())
    assert a.done and a.unsettled == 0
    assert a.filled == ex.exchange_filled <= req.size
    walks = sum(s.walks for s in a.splits)
    assert metrics_for(a).walks == walks
