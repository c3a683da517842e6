"""Plain-Python reference for the compiled pick-off step (kmm._core.replay.PickoffHazard), written the
long way from kmm.research.adverse's description rather than copied from the simulator's inlined
loop: the others' mid from the book's level lists less our own orders, each order's staleness and
bucket through ``FillSimulator.staleness`` and ``adverse.bucket_of``, its rate through
``PickoffModel.rate``. It acts on a ``FillSimulator`` exactly as ``FillSimulator.after_event`` does
in a replay without a fitting pass (the same draws from ``sim.rng`` in the same order)."""

from __future__ import annotations

from typing import Any

from kmm.research.adverse import bucket_of
from kmm.research.fills import NO, ONE, YES, FillSimulator


def others_mid(sim: FillSimulator, ticker: str) -> float | None:
    m = sim.markets[ticker]
    book = m.book

    def own(bside: int, bprice: int) -> int:
        return sum(o.remaining for o in m.orders.values() if o.bside == bside and o.bprice == bprice)

    bids = book.bids()
    asks = book.asks()
    bid = ask = None
    if bids:
        p, size = bids[0]
        if size > own(YES, p):
            bid = p                         # someone else is at the best bid
        else:                               # all ours: the first of the next levels where others rest
            bid = next((q for q, s in bids[:8] if s - own(YES, q) > 0), None)
    if asks:
        p, size = asks[0]
        if size > own(NO, ONE - p):
            ask = p
        else:
            ask = next((q for q, s in asks[:8] if s - own(NO, ONE - q) > 0), None)
    if bid is None or ask is None:
        return None
    return (bid + ask) / 2


def after_event(sim: FillSimulator, now: int, wall_ms: int, ticker: str) -> list[Any]:
    po = sim.pickoff
    assert po is not None and po.active and sim.fit is None
    m = sim.markets[ticker]
    if not m.orders:
        return []
    mid = others_mid(sim, ticker)
    fills = []
    for o in list(m.orders.values()):
        # the hazard clock: the first check draws the order's threshold; later ones add rate x time
        if o.hz_t < 0:
            o.hz_t = now
            o.hz_need = sim.rng.expovariate(1.0)
        elif now > o.hz_t:
            elapsed = now - o.hz_t
            o.hz_acc += o.hz_rate * elapsed
            if o.hz_rate > 0 or po.kind == "always":
                sim.stats.stale_ns += elapsed
            o.hz_t = now
        bucket = -1 if mid is None else bucket_of(FillSimulator.staleness(o.side, o.price, mid), po.min_cents)
        if po.kind == "always":
            fire, size = bucket >= 0, o.remaining
        elif o.hz_acc >= o.hz_need and o.hz_rate > 0:     # a stale interval only
            pool = po.size_pool(ticker)
            fire, size = True, pool[sim.rng.randrange(len(pool))]
        else:
            fire, size = False, 0
        if fire and o.remaining > 0:
            o.hz_acc = 0.0 if po.kind == "always" else o.hz_acc - o.hz_need   # the excess carries over
            o.hz_need = sim.rng.expovariate(1.0)
            q = min(o.remaining, size)
            sim.stats.pickoff_fills += 1
            sim.pickoff_by_ticker[ticker] = sim.pickoff_by_ticker.get(ticker, 0) + 1
            sim.stats.pickoff_contracts += q
            fills.append(sim._maker_fill(o, q, now, wall_ms))
            if o.remaining <= 0:
                continue
        o.hz_rate = po.rate(ticker, bucket) / 1e9
    return fills
