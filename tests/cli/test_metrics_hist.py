"""The metrics' latency histograms (kmm.cli.metrics._hist, numpy) against the plain loop they replaced:
the same cumulative counts per bucket and the same sum, for any samples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.cli.metrics import BUCKETS_S, _hist


def _hist_reference(samples_ns: list[int]) -> tuple[list[tuple[str, float]], float]:
    counts = [0] * (len(BUCKETS_S) + 1)
    bounds = [int(b * 1e9) for b in BUCKETS_S]
    for v in samples_ns:
        for i, b in enumerate(bounds):
            if v <= b:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
    out, acc = [], 0
    for le, c in zip((*(str(b) for b in BUCKETS_S), "+Inf"), counts, strict=True):
        acc += c
        out.append((le, float(acc)))
    return out, sum(samples_ns) / 1e9


edges = [int(b * 1e9) + d for b in BUCKETS_S for d in (-1, 0, 1)]     # each bound, and either side of it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(edges), st.integers(0, 10**9)), max_size=400))
def test_the_histogram_counts_every_sample_in_the_bucket_the_plain_loop_puts_it_in(samples):
    got, total = _hist(samples)
    want, want_total = _hist_reference(samples)
    assert got == want
    assert abs(total - want_total) < 1e-9


def test_an_empty_window_has_empty_buckets():
    got, total = _hist([])
    assert [c for _, c in got] == [0.0] * (len(BUCKETS_S) + 1) and total == 0.0


@settings(max_examples=200, deadline=None)
@given(n_samples=st.integers(0, 300), n=st.integers(1, 120))
def test_a_scrape_reads_the_newest_samples_of_a_window_oldest_first(n_samples, n):
    from collections import deque

    from kmm.cli.metrics import newest
    window = deque(range(n_samples), maxlen=250)
    assert newest(window, n) == list(window)[-n:]


def test_a_full_window_is_read_as_its_newest_WINDOW_samples():
    from collections import deque

    from kmm.cli.metrics import WINDOW, newest
    window = deque(range(200_000), maxlen=200_000)
    got = newest(window)
    assert len(got) == WINDOW == 20_000 and got[0] == 180_000 and got[-1] == 199_999
