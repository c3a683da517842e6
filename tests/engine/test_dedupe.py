"""Fill dedupe that forgets (kmm.engine.dedupe): trade ids are dropped only when no resync can offer
their fill again, a fill offered again after a forget is still a duplicate to the cent, and the maker
metrics' per-order memory stays bounded with the same fill rate."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.engine.clock import ManualClock
from kmm.engine.dedupe import KEEP_MS, forget_before, watermark_ms
from kmm.engine.makerstats import MakerStats
from kmm.engine.orders import OrderManager
from kmm.engine.portfolio import Portfolio
from kmm.kalshi.types import Fill


def fill(tid: str, ts_ms: int, side: str = "bid", price: int = 4000, count: int = 100, taker: bool = False) -> Fill:
    return Fill(trade_id=tid, order_id="o1", client_order_id="c1", ticker="KXT-0", side=side, price=price,
                count=count, fee=7, is_taker=taker, post_position=None, ts_ms=ts_ms)


@settings(max_examples=300, deadline=None)
@given(stamps=st.lists(st.one_of(st.just(0), st.integers(1, 10_000)), max_size=60), cut=st.integers(0, 11_000))
def test_forget_drops_only_old_timed_ids_and_clears_the_oldest_run(stamps, cut):
    seen: OrderedDict[str, int] = OrderedDict((f"t{i}", ts) for i, ts in enumerate(stamps))
    before = dict(seen)
    dropped = forget_before(seen, cut)
    gone = set(before) - set(seen)
    assert dropped == len(gone)
    assert all(0 < before[t] < cut for t in gone)                       # never an id that may come again
    assert all(t in seen for t, ts in before.items() if ts == 0 or ts >= cut)
    # arrival order: every timed id before the first one kept at or after the cut is gone
    timed = [t for t in before if before[t] != 0]
    first_new = next((i for i, t in enumerate(timed) if before[t] >= cut), len(timed))
    assert not any(t in seen for t in timed[:first_new])


@settings(max_examples=200, deadline=None)
@given(backfill_from_ms=st.integers(10**12, 2 * 10**12), late_ms=st.integers(0, 10**6))
def test_no_fill_a_resync_can_offer_is_ever_forgotten(backfill_from_ms, late_ms):
    """Session.session_fills asks for fills from min_ts = backfill_from_ms // 1000 - 1 (seconds): each
    fill it can return is at or after that, and stays remembered by a forget at the watermark."""
    min_ts_ms = (backfill_from_ms // 1000 - 1) * 1000
    assert watermark_ms(backfill_from_ms) == min_ts_ms - KEEP_MS
    seen = OrderedDict([("old", min_ts_ms - KEEP_MS - 1), ("offered", min_ts_ms + late_ms)])
    forget_before(seen, watermark_ms(backfill_from_ms))
    assert list(seen) == ["offered"]


def test_a_fill_offered_again_after_a_forget_is_still_a_duplicate_to_the_cent():
    pf = Portfolio(cash=1_000_000)
    om = OrderManager(ManualClock())
    t0 = 1_700_000_000_000
    for k in range(1000):                        # a fill a second over 1000 s
        f = fill(f"tr{k}", t0 + k * 1000, side="bid" if k % 3 else "ask")
        assert pf.apply_fill(f)
        om.on_fill(f)
    cash, pos = pf.cash, pf.position("KXT-0")
    backfill_from = t0 + 1000 * 1000                       # the last good reconcile: at the end
    pf.forget_fills_before(watermark_ms(backfill_from))
    om.forget_trades_before(watermark_ms(backfill_from))
    # what a resync from that watermark can offer: the fills of the last KEEP_MS + 1 s
    offerable = [k for k in range(1000) if t0 + k * 1000 >= (backfill_from // 1000 - 1) * 1000 - KEEP_MS]
    assert offerable and len(pf._seen) == len(offerable) + 0 and len(om._seen_trades) == len(pf._seen)
    for k in offerable:
        f = fill(f"tr{k}", t0 + k * 1000, side="bid" if k % 3 else "ask")
        assert not pf.apply_fill(f) and not om.on_fill(f)
    assert (pf.cash, pf.position("KXT-0")) == (cash, pos)
    assert pf.duplicate_fills == len(offerable)


def test_ids_without_a_time_are_kept():
    pf = Portfolio(cash=0)
    pf.apply_fill(fill("untimed", 0))
    pf.apply_fill(fill("old", 5))
    pf.apply_fill(fill("new", 10**13))
    assert pf.forget_fills_before(10**12) == 1
    assert set(pf._seen) == {"untimed", "new"}
    assert not pf.apply_fill(fill("untimed", 0))


def test_the_maker_metrics_remember_a_bounded_number_of_orders_with_the_same_fill_rate(monkeypatch):
    monkeypatch.setattr(MakerStats, "MAX_KEYS", 50)
    ms = MakerStats(ManualClock())
    filled = 0
    ms.on_resting("kept", "KXT-0", "bid", 4000, 100)     # rests all along: never forgotten
    for k in range(500):
        key = f"c{k}"
        ms.on_resting(key, "KXT-0", "bid", 4000, 100)
        if k % 4 == 0:                                    # a maker fill soon after it rests
            ms.on_fill(fill(f"t{k}", 1_000 + k), key=key)
            filled += 1
        ms.on_done(key)
    ms.on_fill(fill("t-kept", 5_000), key="kept")
    m = ms.snapshot()
    assert m.resting_orders_placed == 501
    assert m.maker_order_fill_rate == (filled + 1) / 501
    assert len(ms._seen_keys) <= 51 and "kept" in ms._seen_keys
    assert ms.forget_trades_before(2_000) == filled and list(ms._trades) == ["t-kept"]
