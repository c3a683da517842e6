"""Adverse selection: the takers who trade *because* a quote of ours is stale.

A recording holds the trades that happened with the recorded run's quotes where they were. Some of
those trades were a reaction to those quotes: an informed taker (on Kalshi, anyone watching a price
that has just moved; in ``kmm sim``, its informed flow) hits a quote left on the wrong side of the
market, and it does so only because that quote was there. A replay puts its quotes somewhere else at
other moments: it finds those trades where its quotes are not (so it misses losses it would have had)
and never meets the takers its own stale quotes would have drawn (so it misses losses again). Replays
that only use the recorded trades are therefore optimistic; measured on ``kmm sim`` busy runs, by
0.6 cent per contract traded (docs/research.md).

The pick-off model replaces those reaction trades with a hazard:

- **staleness** of a resting order: how far it stands beyond the others' mid (the mid of the replay
  book without our own virtual orders), toward the side that loses: ``(bid - mid) / tick`` for a bid,
  ``(mid - ask) / tick`` for an ask, in ticks (multiples of 0.5);
- a recorded trade that filled the recorded run's own order while that order was stale by at least
  ``min_ticks`` is a **reaction trade**: the replay leaves it out of the tape;
- instead, each virtual order that is stale by ``d >= min_ticks`` is picked off at a rate
  ``rate(d)`` per second (a Poisson process, checked at every book message and trade of its market
  and at the replay's housekeeping ticks (every 0.25 s), the rate held from one check to the next),
  by a taker whose size is drawn from the reaction trades' sizes (capped at what rests); the fill is
  at our price with the maker fee.

``rate(d)`` is fitted from the recording itself (``fitted``): the number of reaction trades per
second the recorded run's best quote on a side spent at that staleness (half-tick buckets from
``min_ticks`` up, the last open-ended; a bucket with under a second of exposure uses the rate of all
stale buckets together). So a replay whose quotes are exactly the recorded ones draws, in
expectation, the reaction trades it left out. Draws use the replay's seed: a replay stays
deterministic per seed.

Kinds (``--set backtest.pickoff=...``):

=========== ==========================================================================================
``none``    recorded trades only, reaction trades kept (the optimistic extreme: the replay meets only
            the takers the recorded quotes drew)
``fitted``  the hazard above, fitted from the recorded run's own fills (default; a capture without
            them, e.g. ``kmm record``, has nothing to fit and replays as ``none``, logged)
``rate:X``  reaction trades left out, every stale order picked off at X per second (any staleness)
``always``  reaction trades left out, a stale order is picked off whole at the first check (the
            pessimistic extreme: a stale quote never survives)
=========== ==========================================================================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("kmm.research.adverse")

NS_PER_S = 1_000_000_000
PICKOFF_KINDS = ("none", "fitted", "rate", "always")
BUCKETS = 6                       # half-tick buckets from min_ticks; the last is open-ended
MIN_EXPOSURE_NS = NS_PER_S        # a bucket with less exposure uses the pooled rate


def bucket_of(d: float, min_ticks: float) -> int:
    """The bucket of staleness ``d`` ticks (-1: not stale)."""
    if d < min_ticks:
        return -1
    return min(int((d - min_ticks) * 2 + 1e-9), BUCKETS - 1)


@dataclass(slots=True)
class PickoffModel:
    kind: str = "fitted"
    min_ticks: float = 0.5
    rates: tuple[float, ...] = ()          # per bucket, per second
    sizes: tuple[int, ...] = (100,)       # reaction trades' sizes, 1e-2 contracts
    reaction_ids: frozenset[str] = frozenset()   # recorded trades the replay leaves out
    fitted_from: str = ""
    live_stale_s: float = 0.0              # fitted: seconds the recorded run's best quotes stood stale

    @classmethod
    def parse(cls, text: str, min_ticks: float) -> PickoffModel:
        t = text.strip().lower()
        if t.startswith("rate:"):
            try:
                r = float(t[5:])
            except ValueError:
                r = -1.0
            if r < 0:
                raise ValueError(f"pickoff {text!r}: rate:X needs a rate >= 0 per second, e.g. rate:2")
            return cls("rate", min_ticks, (r,) * BUCKETS)
        if t not in PICKOFF_KINDS or t == "rate":
            raise ValueError(f"pickoff {text!r} is not one of none, fitted, rate:X, always")
        return cls(t, min_ticks)

    @property
    def active(self) -> bool:
        """Reaction trades are left out and stale orders are picked off."""
        return self.kind != "none"

    def rate(self, bucket: int) -> float:
        if bucket < 0 or not self.rates:
            return 0.0
        return self.rates[bucket]

    def describe(self) -> str:
        if self.kind == "none":
            return "none (recorded trades only)"
        if self.kind == "always":
            return f"always (stale by >= {self.min_ticks:g} ticks: picked off at once)"
        rates = ", ".join(f"{r:.2f}" for r in self.rates)
        extra = (f", fitted on {len(self.reaction_ids)} reaction trades in {self.live_stale_s:.1f} s of stale "
                 "recorded quotes" if self.kind == "fitted" else "")
        return f"{self.kind} (stale by >= {self.min_ticks:g} ticks; per s by half-tick bucket: {rates}{extra})"


@dataclass(slots=True)
class PickoffFit:
    """What a fitting pass measures on the recorded run's own quotes."""

    min_ticks: float = 0.5
    exposure_ns: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    candidates: list[tuple[str, int, int]] = field(default_factory=list)   # (trade_id, bucket, size)
    fill_ids: set[str] = field(default_factory=set)       # trade_ids of the recorded run's fills
    # per market and side (0 bid, 1 ask): (bucket of the best own quote, since ns)
    state: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def expose(self, ticker: str, side: int, bucket: int, now: int) -> None:
        key = (ticker, side)
        prev = self.state.get(key)
        if prev is not None and prev[0] >= 0 and now > prev[1]:
            self.exposure_ns[prev[0]] += now - prev[1]
        self.state[key] = (bucket, now)

    def model(self, kind: str, source: str) -> PickoffModel:
        reactions = [(tid, b, s) for tid, b, s in self.candidates if tid in self.fill_ids]
        counts = [0] * BUCKETS
        for _, b, _ in reactions:
            counts[b] += 1
        total_n, total_t = sum(counts), sum(self.exposure_ns)
        pooled = total_n / (total_t / NS_PER_S) if total_t > 0 else 0.0
        rates = tuple(counts[b] / (self.exposure_ns[b] / NS_PER_S) if self.exposure_ns[b] >= MIN_EXPOSURE_NS
                      else pooled for b in range(BUCKETS))
        sizes = tuple(s for _, _, s in reactions) or (100,)
        m = PickoffModel(kind, self.min_ticks, rates, sizes, frozenset(t for t, _, _ in reactions), source,
                         total_t / NS_PER_S)
        log.info("pick-off model fitted from %s: %d reaction trades in %.1f s of stale quotes; %s", source,
                 total_n, total_t / NS_PER_S, m.describe())
        return m
