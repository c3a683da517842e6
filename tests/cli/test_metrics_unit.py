"""The latency histogram built at scrape time: cumulative buckets in seconds, +Inf = count, exact sum."""

from hypothesis import given
from hypothesis import strategies as st

from kmm.cli.metrics import BUCKETS_S, _hist


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=300))
def test_buckets_are_cumulative_and_count_every_sample(samples):
    buckets, total = _hist(samples)
    assert [le for le, _ in buckets] == [*(str(b) for b in BUCKETS_S), "+Inf"]
    counts = [c for _, c in buckets]
    assert counts == sorted(counts) and counts[-1] == len(samples)
    for (le, c) in buckets[:-1]:
        assert c == sum(1 for v in samples if v <= int(float(le) * 1e9))
    assert abs(total - sum(samples) / 1e9) < 1e-9 * max(1, len(samples))
