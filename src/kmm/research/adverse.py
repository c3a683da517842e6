"""Adverse selection: the takers who trade *because* a quote of ours is stale.

A recording holds the trades that happened with the recorded run's quotes where they were. Some of
those trades were a reaction to those quotes: an informed taker (on Kalshi, anyone watching a price
that has just moved; in ``kmm sim``, its informed flow) hits a quote left on the wrong side of the
market, and it does so only because that quote was there. A replay puts its quotes somewhere else at
other moments: it finds those trades where its quotes are not (so it misses losses it would have had)
and never meets the takers its own stale quotes would have drawn (so it misses losses again). Replays
that only use the recorded trades are therefore optimistic (docs/research.md: what made replays of
``kmm sim`` runs optimistic, and by how much).

The pick-off model replaces those reaction trades with a hazard:

- **staleness** of a resting order: how far it stands beyond the others' mid (the mid of the replay
  book without our own virtual orders), toward the side that loses: ``bid - mid`` for a bid,
  ``mid - ask`` for an ask, in cents (a price, not a number of ticks: on a deci-cent grid a tenth of a
  cent beyond the mid is not what a taker reacts to);
- a recorded trade that filled the recorded run's own order while that order was stale by at least
  ``min_cents`` is a **reaction trade**: the replay leaves it out of the tape;
- instead, each virtual order that is stale by ``d >= min_cents`` is picked off at a rate
  ``rate(d)`` per second (a Poisson process, checked at every book message and trade of its market
  and at the replay's housekeeping ticks (every 0.25 s), the rate held from one check to the next),
  by a taker whose size is drawn from the reaction trades' sizes (capped at what rests); the fill is
  at our price with the maker fee.

``rate(d)`` is fitted from the recording itself (``fitted``), per market: the number of reaction
trades per second the recorded run's best quote on a side spent at that staleness (half-cent
buckets from ``min_cents`` up, the last open-ended; a bucket with under a second of exposure uses the
market's rate over all its stale buckets, or every market's rate for that bucket). So a replay
whose quotes are exactly the recorded ones draws, in expectation, the reaction trades it left out.
Draws use the replay's seed: a replay stays deterministic per seed.

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
BUCKETS = 6                       # half-cent buckets from min_cents; the last is open-ended
MIN_EXPOSURE_NS = NS_PER_S        # a bucket with less exposure uses a pooled rate
ALL = ""                          # the key of the rates and sizes of all markets together


def bucket_of(d: float, min_cents: float) -> int:
    """The bucket of staleness ``d`` cents (-1: not stale)."""
    if d < min_cents:
        return -1
    return min(int((d - min_cents) * 2 + 1e-9), BUCKETS - 1)


@dataclass(slots=True)
class PickoffModel:
    kind: str = "fitted"
    min_cents: float = 0.5
    rates: dict[str, tuple[float, ...]] = field(default_factory=dict)   # ticker (or ALL) -> per bucket, /s
    sizes: dict[str, tuple[int, ...]] = field(default_factory=lambda: {ALL: (100,)})  # 1e-2 contracts
    reaction_ids: frozenset[str] = frozenset()   # recorded trades the replay leaves out
    fitted_from: str = ""
    live_stale_s: float = 0.0              # fitted: seconds the recorded run's best quotes stood stale

    @classmethod
    def parse(cls, text: str, min_cents: float) -> PickoffModel:
        t = text.strip().lower()
        if t.startswith("rate:"):
            try:
                r = float(t[5:])
            except ValueError:
                r = -1.0
            if r < 0:
                raise ValueError(f"pickoff {text!r}: rate:X needs a rate >= 0 per second, e.g. rate:2")
            return cls("rate", min_cents, {ALL: (r,) * BUCKETS})
        if t not in PICKOFF_KINDS or t == "rate":
            raise ValueError(f"pickoff {text!r} is not one of none, fitted, rate:X, always")
        return cls(t, min_cents)

    @property
    def active(self) -> bool:
        """Reaction trades are left out and stale orders are picked off."""
        return self.kind != "none"

    def to_payload(self) -> dict[str, object]:
        """The model as JSON (kept with the decoded capture: kmm.research.replaycache.store_model)."""
        return {"kind": self.kind, "min_cents": self.min_cents, "rates": {t: list(r) for t, r in self.rates.items()},
                "sizes": {t: list(s) for t, s in self.sizes.items()}, "reaction_ids": sorted(self.reaction_ids),
                "fitted_from": self.fitted_from, "live_stale_s": self.live_stale_s}

    @classmethod
    def from_payload(cls, d: dict[str, object]) -> PickoffModel:
        """The model :meth:`to_payload` wrote (floats round-trip exactly through JSON)."""
        rates = d["rates"]
        sizes = d["sizes"]
        ids = d["reaction_ids"]
        assert isinstance(rates, dict) and isinstance(sizes, dict) and isinstance(ids, list)
        return cls(str(d["kind"]), float(d["min_cents"]),  # type: ignore[arg-type]
                   {str(t): tuple(float(x) for x in r) for t, r in rates.items()},
                   {str(t): tuple(int(x) for x in s) for t, s in sizes.items()},
                   frozenset(str(i) for i in ids), str(d["fitted_from"]), float(d["live_stale_s"]))  # type: ignore[arg-type]

    def rate(self, ticker: str, bucket: int) -> float:
        if bucket < 0:
            return 0.0
        r = self.rates.get(ticker) or self.rates.get(ALL)
        return r[bucket] if r else 0.0

    def size_pool(self, ticker: str) -> tuple[int, ...]:
        return self.sizes.get(ticker) or self.sizes.get(ALL) or (100,)

    def describe(self) -> str:
        if self.kind == "none":
            return "none (recorded trades only)"
        if self.kind == "always":
            return f"always (stale by >= {self.min_cents:g} cent: picked off at once)"
        per = "; ".join(f"{t or 'all'}: " + ", ".join(f"{r:.2f}" for r in rs) for t, rs in self.rates.items())
        extra = (f", fitted on {len(self.reaction_ids)} reaction trades in {self.live_stale_s:.1f} s of stale "
                 "recorded quotes" if self.kind == "fitted" else "")
        return f"{self.kind} (stale by >= {self.min_cents:g} cent; per s by half-cent bucket: {per}{extra})"


@dataclass(slots=True)
class PickoffFit:
    """What a fitting pass measures on the recorded run's own quotes, per market."""

    min_cents: float = 0.5
    exposure_ns: dict[str, list[int]] = field(default_factory=dict)
    candidates: list[tuple[str, str, int, int]] = field(default_factory=list)   # (trade_id, ticker, bucket, size)
    fill_ids: set[str] = field(default_factory=set)       # trade_ids of the recorded run's fills
    # per market and side (0 bid, 1 ask): (bucket of the best own quote, since ns)
    state: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def expose(self, ticker: str, side: int, bucket: int, now: int) -> None:
        key = (ticker, side)
        prev = self.state.get(key)
        if prev is not None and prev[0] >= 0 and now > prev[1]:
            ex = self.exposure_ns.get(ticker)
            if ex is None:
                ex = self.exposure_ns[ticker] = [0] * BUCKETS
            ex[prev[0]] += now - prev[1]
        self.state[key] = (bucket, now)

    def model(self, kind: str, source: str) -> PickoffModel:
        """Rates per market and bucket: reactions / seconds of exposure. A bucket with under a second
        of exposure takes the market's pooled rate (all its stale buckets), or with under a second in
        all, the rate of every market's quotes in that bucket."""
        reactions = [(tid, t, b, s) for tid, t, b, s in self.candidates if tid in self.fill_ids]
        tickers = set(self.exposure_ns) | {t for _, t, _, _ in reactions}
        counts = {t: [0] * BUCKETS for t in tickers}
        for _, t, b, _ in reactions:
            counts[t][b] += 1
        expo = {t: self.exposure_ns.get(t, [0] * BUCKETS) for t in tickers}
        all_n = [sum(counts[t][b] for t in tickers) for b in range(BUCKETS)]
        all_t = [sum(expo[t][b] for t in tickers) for b in range(BUCKETS)]
        pooled = sum(all_n) / (sum(all_t) / NS_PER_S) if sum(all_t) > 0 else 0.0
        rates_all = tuple(all_n[b] / (all_t[b] / NS_PER_S) if all_t[b] >= MIN_EXPOSURE_NS else pooled
                          for b in range(BUCKETS))
        rates: dict[str, tuple[float, ...]] = {ALL: rates_all}
        sizes: dict[str, tuple[int, ...]] = {ALL: tuple(s for _, _, _, s in reactions) or (100,)}
        for t in sorted(tickers):
            n, ex = counts[t], expo[t]
            tot = sum(ex)
            own = sum(n) / (tot / NS_PER_S) if tot >= MIN_EXPOSURE_NS else None
            rates[t] = tuple(n[b] / (ex[b] / NS_PER_S) if ex[b] >= MIN_EXPOSURE_NS
                             else (own if own is not None else rates_all[b]) for b in range(BUCKETS))
            mine = tuple(s for _, tt, _, s in reactions if tt == t)
            if mine:
                sizes[t] = mine
        m = PickoffModel(kind, self.min_cents, rates, sizes, frozenset(tid for tid, _, _, _ in reactions), source,
                         sum(sum(ex) for ex in expo.values()) / NS_PER_S)
        log.info("pick-off model fitted from %s: %d reaction trades in %.1f s of stale quotes; %s", source,
                 len(reactions), m.live_stale_s, m.describe())
        return m
