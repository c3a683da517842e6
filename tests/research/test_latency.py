"""Latency model: parsing, draws per seed, fitting from a recorded run."""

from __future__ import annotations

import random

import orjson
import pytest

from kmm.record.capture import CaptureWriter
from kmm.record.store import Store
from kmm.research.latency import Dist, fit_latency

MS = 1_000_000
WALL0 = 1_795_000_000_000_000_000


def test_parse_units_and_kinds():
    assert Dist.parse("250us").value_ns == 250_000
    assert Dist.parse("1.5ms").value_ns == 1_500_000
    assert Dist.parse("const:2ms").value_ns == 2_000_000
    d = Dist.parse("lognormal:1ms:0.5")
    assert (d.kind, d.value_ns, d.sigma) == ("lognormal", 1_000_000, 0.5)
    with pytest.raises(ValueError, match="lognormal"):
        Dist.parse("uniform:1:2")


def test_draws_are_deterministic_per_seed_and_centred_on_the_median():
    d = Dist.parse("lognormal:1ms:0.5")
    a = [d.draw(random.Random(3)) for _ in range(3)]
    b = [d.draw(random.Random(3)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    xs = sorted(d.draw(rng) for _ in range(4001))
    assert 0.9e6 < xs[2000] < 1.1e6
    assert Dist.parse("3ms").draw(rng) == 3 * MS


def test_fit_from_a_recorded_run_reads_feed_entry_and_response(tmp_path):
    w = CaptureWriter(tmp_path / "capture.bin.gz")
    for i in range(100):               # book frames received 2 ms after the exchange stamped them
        ts_ms = WALL0 // MS + i
        f = orjson.dumps({"type": "orderbook_delta", "sid": 1, "seq": i + 1, "msg": {
            "market_ticker": "A", "price_dollars": "0.4000", "delta_fp": "1.00", "side": "yes", "ts_ms": ts_ms}})
        w.write(i, f, ts_ms * MS + 2 * MS)
    for i in range(20):                # our creates: created at the exchange 3 ms after we decided
        created = WALL0 // MS + 1000 + i * 10
        f = orjson.dumps({"type": "user_order", "sid": 5, "msg": {
            "order_id": f"o{i}", "client_order_id": f"c{i}", "ticker": "A", "status": "resting",
            "created_ts_ms": created, "last_updated_ts_ms": created}})
        w.write(1000 + i, f, created * MS + 4 * MS)     # ... and their user_order arrives 4 ms later
    w.close()
    store = Store(tmp_path / "kmm.sqlite")
    for i in range(20):
        created = WALL0 // MS + 1000 + i * 10
        store.record_order(status="pending", client_order_id=f"c{i}", ticker="A", side="bid", price=4000,
                           count=100, ts_ns=created * MS - 3 * MS)
    store.close()
    m = fit_latency(tmp_path)
    assert m.feed.median_ns == 2 * MS and m.response.median_ns == 4 * MS and m.entry.median_ns == 3 * MS
    assert m.feed.kind == "empirical" and len(m.feed.samples) == 100


def test_entry_is_fitted_from_the_tape_decisions_not_from_creates_that_waited_for_tokens(tmp_path):
    """Each decision row is written when its first request has left; the exchange stamps the request's
    effect (a user_order that is not a fill) 2 ms later. The creates were recorded in the store 600 ms
    before the exchange saw them (they waited for write tokens): that wait is not entry latency."""
    from kmm.record.tape import TapeRow, TapeWriter
    w = CaptureWriter(tmp_path / "capture.bin.gz")
    tape = TapeWriter(tmp_path / "tape.csv")
    store = Store(tmp_path / "kmm.sqlite")
    for i in range(30):
        decided = WALL0 + 10_000 * MS + i * 100 * MS + 300_000        # mid-millisecond
        stamp_ms = (decided + 2 * MS) // MS                              # the exchange's floor of a ms
        tape.write(TapeRow(ts_ns=decided, ticker="A", event="decision", latency_ns=1000))
        f = orjson.dumps({"type": "user_order", "sid": 5, "msg": {
            "order_id": f"o{i}", "client_order_id": f"c{i}", "ticker": "A", "status": "resting",
            "fill_count_fp": "0.00", "created_ts_ms": stamp_ms, "last_updated_ts_ms": stamp_ms}})
        w.write(i, f, stamp_ms * MS + 3 * MS)
        store.record_order(status="pending", client_order_id=f"c{i}", ticker="A", side="bid", price=4000,
                           count=100, ts_ns=decided - 600 * MS)
    # a fill of order c0 long after: a user_order that is a fill is not the effect of a request
    f = orjson.dumps({"type": "user_order", "sid": 5, "msg": {
        "order_id": "o0", "client_order_id": "c0", "ticker": "A", "status": "resting", "fill_count_fp": "1.00",
        "created_ts_ms": WALL0 // MS, "last_updated_ts_ms": WALL0 // MS + 50_000}})
    w.write(100, f, WALL0 + 50_001 * MS)
    w.close()
    tape.close()
    store.close()
    m = fit_latency(tmp_path)
    assert m.entry.kind == "empirical" and len(m.entry.samples) == 30
    # 2 ms to the stamp's millisecond, +0.5 ms for the floor, to within the stamp's resolution
    assert 1.5 * MS <= m.entry.median_ns <= 2.7 * MS
    assert max(m.entry.samples) < 3 * MS
