"""Benchmarks for kmm._core.quote and kmm._core.diff against their plain-Python references.

Run: ``.venv/bin/python -m pytest bench/bench_quote.py -q -s`` (the ratios print at the end).
Each benchmark runs a batch of ``ops`` calls over pre-built inputs and asserts what it produced.
"""

import random

import pytest

from kmm._core import diff as cdiff
from kmm._core import quote as cquote
from kmm._core.fees import MAKER_RATE_E6
from kmm._core.grid import Grid
from tests.reference import diff as rdiff
from tests.reference import quote as rquote

OPS = 1000
_medians: dict[str, dict[str, float]] = {}


def _record(benchmark, group, role):
    benchmark.group = group
    benchmark.extra_info.update({"role": role, "ops": OPS})


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for group, roles in sorted(_medians.items()):
        if "kmm" in roles and "baseline" in roles:
            k, b = roles["kmm"], roles["baseline"]
            print(f"\n{group:28s} kmm {k / OPS * 1e9:9.1f} ns/op  baseline {b / OPS * 1e9:9.1f} ns/op  "
                  f"ratio {b / k:6.1f}x")


def _keep(benchmark, group, role):
    _medians.setdefault(group, {})[role] = benchmark.stats.stats.median


GRID = Grid("tapered_deci_cent")
PARAMS = dict(grid=GRID, gamma=2e-5, kappa=0.01, quote_size=1000, long_limit=5000, short_limit=5000,
              maker_fee_rate_e6=MAKER_RATE_E6, min_spread=200, min_edge=20.0, size_step=100)
_rng = random.Random(7)
CALLS = []
for _ in range(OPS):
    mid = _rng.uniform(1500, 8500)
    CALLS.append((mid, _rng.randrange(-4000, 4000, 100), _rng.uniform(0, 7200), _rng.uniform(1, 10),
                  _rng.uniform(-20, 20), _rng.uniform(-20, 20), int(mid - 150) // 100 * 100,
                  int(mid + 250) // 100 * 100))


@pytest.mark.parametrize("role", ["kmm", "baseline"])
def test_bench_quote_compute(benchmark, role):
    if role == "kmm":
        p, fn = cquote.QuoteParams(**PARAMS), cquote.compute
    else:
        p, fn = rquote.RefParams(**PARAMS), rquote.compute

    def run():
        return [fn(p, *c) for c in CALLS]

    _record(benchmark, "quote.compute", role)
    out = benchmark(run)
    _keep(benchmark, "quote.compute", role)
    assert len(out) == OPS and sum(x.bid_size > 0 for x in out) > OPS // 2
    assert all(not (x.bid_size and x.ask_size) or x.bid_price < x.ask_price for x in out)
    assert all(x.ask_size == 0 or x.ask_price > c[6] for x, c in zip(out, CALLS))


@pytest.mark.parametrize("role", ["kmm", "baseline"])
def test_bench_reservation_and_spread(benchmark, role):
    mod = cquote if role == "kmm" else rquote
    res, spr = mod.reservation_price, mod.optimal_spread
    args = [(c[0], c[1] / 100, c[2], c[3]) for c in CALLS]

    def run():
        return [res(m, q, 2e-5, s, t) + spr(2e-5, s, t, 0.01) for m, q, t, s in args]

    _record(benchmark, "quote.reservation+spread", role)
    out = benchmark(run)
    _keep(benchmark, "quote.reservation+spread", role)
    m, q, t, s = args[0]
    assert out[0] == pytest.approx(m - q * 2e-5 * s * s * t + rquote.optimal_spread(2e-5, s, t, 0.01))


# Diff inputs: the live book of one market (a bid and an ask), targets either equal (nothing to do) or
# moved by a cent (amend on one side, decrease on the other).
LIVE = [[(f"b{i}", 0, 4800 + i, 1000, 10 ** 8), (f"a{i}", 1, 5200 + i, 1000, 10 ** 8)] for i in range(OPS)]
SAME = [(4800 + i, 1000, 5200 + i, 1000) for i in range(OPS)]
MOVED = [(4900 + i, 1000, 5200 + i, 600) for i in range(OPS)]


def _diff_fn(role):
    if role == "kmm":
        differ = cdiff.Differ(price_tol=50, size_tol=100, max_age_ns=10 ** 9)
        return lambda t, live: differ.diff(t[0], t[1], t[2], t[3], live)
    return lambda t, live: rdiff.diff(((t[0], t[1]), (t[2], t[3])), live, 50, 100, 10 ** 9)


@pytest.mark.parametrize("role", ["kmm", "baseline"])
def test_bench_diff_unchanged(benchmark, role):
    fn = _diff_fn(role)

    def run():
        return [fn(t, live) for t, live in zip(SAME, LIVE)]

    _record(benchmark, "diff.unchanged", role)
    out = benchmark(run)
    _keep(benchmark, "diff.unchanged", role)
    assert len(out) == OPS and all(len(x) == 0 for x in out)


@pytest.mark.parametrize("role", ["kmm", "baseline"])
def test_bench_diff_change(benchmark, role):
    fn = _diff_fn(role)

    def run():
        return [fn(t, live) for t, live in zip(MOVED, LIVE)]

    _record(benchmark, "diff.change", role)
    out = benchmark(run)
    _keep(benchmark, "diff.change", role)
    first = [a.astuple() if role == "kmm" else a for a in out[0]]
    assert first == [(cdiff.DECREASE, cdiff.ASK, "a0", 5200, 600), (cdiff.AMEND, cdiff.BID, "b0", 4900, 1000)]
    assert all(len(x) == 2 for x in out)
