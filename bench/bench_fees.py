"""Fee function: compiled vs the exact-fraction reference."""

import random

import pytest

from kmm._core import fees
from tests.reference import fees as ref

N = 2000
rng = random.Random(7)
CASES = [(rng.randrange(1, 100_000), rng.randrange(1, 10_000)) for _ in range(N)]


def _run(fn):
    total = 0
    for c, p in CASES:
        total += fn(c, p, 70_000)
    return total


@pytest.mark.benchmark(group="fees.trade_fee")
def test_bench_trade_fee_kmm(benchmark):
    benchmark.extra_info.update(role="kmm", ops=N)
    total = benchmark(_run, fees.trade_fee)
    assert total == _run(ref.trade_fee)


@pytest.mark.benchmark(group="fees.trade_fee")
def test_bench_trade_fee_reference(benchmark):
    benchmark.extra_info.update(role="baseline", ops=N)
    total = benchmark(_run, ref.trade_fee)
    assert total > 0
