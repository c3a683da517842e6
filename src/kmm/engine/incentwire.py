"""Kalshi's maker programs on the live loop: the glue between :mod:`kmm.engine.incentives` and the maker.

* At start, and every ``[run] incentive_refresh_s`` after (default 300 s), ``GET /incentive_programs
  ?status=active`` (kalshi-api.md 11; a read of 10 tokens a page of up to 1 000 programs: one page every
  5 minutes is 0.03 tokens/s, nothing next to Basic's 200) is read and the programs of the quoted
  markets kept. A failed read keeps the programs known and is retried on the next period.
* Every ``[run] incentive_sample_s`` (default 1 s, the program's own snapshot period) each quoted market
  with an active liquidity program is scored as the program scores a snapshot: our resting orders and
  the book (ours included) from the best price outward until the Target Size is filled, each order
  weighted by its distance multiplier (:class:`kmm.engine.incentives.LipScoring` holds the [U] choices).
  The last assessment is shown in the view and the status line; every sample goes to the store
  (``incentive_samples``); the run's totals per market (snapshots, share of them that qualified, mean
  score and share) go to the run summary and ``summary.json`` (``details.incentives``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from kmm.engine.incentives import (CONTRACT, IncentiveBook, IncentiveProgram, LipScoring, Qualification,
                                   decode_incentive_page)
from kmm.errors import KmmError

log = logging.getLogger("kmm.incentives")

PATH = "/incentive_programs"
MAX_PAGES = 20


@dataclass(slots=True)
class _Tally:
    samples: int = 0
    qualified: int = 0
    score_sum: float = 0.0
    share_sum: float = 0.0
    share_n: int = 0


class IncentiveWiring:
    """Programs of the quoted markets and how our quotes score under them."""

    def __init__(self, tickers: Iterable[str], scoring: LipScoring | None = None) -> None:
        self.tickers = set(tickers)
        self.book = IncentiveBook((), scoring)
        self.programs: dict[str, list[IncentiveProgram]] = {}
        self.last: dict[str, Qualification] = {}
        self.tally: dict[str, _Tally] = {}
        self.reads = 0
        self.read_error = ""                 # the last read's failure ("" after a success)
        self.read_ok = False

    # ------------------------------------------------------------------ reading
    async def refresh(self, rest: Any) -> int:
        """Read every active program (all pages) and keep those of our markets. Returns how many of
        ours. Never raises: a failure is logged and kept in :attr:`read_error`."""
        found: list[IncentiveProgram] = []
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                params: dict[str, Any] = {"status": "active", "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                body = await rest.request("GET", PATH, params=params)
                self.reads += 1
                items, cursor = decode_incentive_page(body)
                found.extend(p for p in items if p.market_ticker in self.tickers)
                if not cursor:
                    break
        except (KmmError, ValueError, AttributeError) as exc:   # AttributeError: paper mode's client
            self.read_error = str(exc)
            log.warning("incentive programs not readable (%s); keeping the %d known", exc,
                        sum(len(v) for v in self.programs.values()))
            return sum(len(v) for v in self.programs.values())
        before = set(self.programs)
        self.programs = {}
        for p in found:
            self.programs.setdefault(p.market_ticker, []).append(p)
        self.book.load(found)
        self.read_error, self.read_ok = "", True
        if set(self.programs) != before:
            log.info("incentive programs on %d quoted markets: %s", len(self.programs),
                     ", ".join(f"{t} ({', '.join(p.incentive_type for p in ps)})"
                               for t, ps in sorted(self.programs.items())) or "none")
        return len(found)

    # ------------------------------------------------------------------ scoring
    def assess(self, ticker: str, now_ns: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]],
               ours: Iterable[tuple[str, int, int]]) -> Qualification | None:
        """Score one snapshot of ``ticker`` (None: no active liquidity program there). ``bids`` best
        first (descending), ``asks`` ascending, both YES prices and including our own size."""
        if ticker not in self.programs:
            return None
        q = self.book.assess(ticker, now_ns, bids, asks, ours)
        if not q.applies:
            self.last.pop(ticker, None)
            return None
        self.last[ticker] = q
        t = self.tally.setdefault(ticker, _Tally())
        t.samples += 1
        t.qualified += q.qualifies
        t.score_sum += q.score
        if q.share is not None:
            t.share_sum += q.share
            t.share_n += 1
        return q

    # ------------------------------------------------------------------ views
    def label(self, ticker: str) -> str:
        """A few words for the market's row: ``""`` with no program; otherwise each side with a resting
        quote, ``ok`` when some of it scores and ``no`` when none does, then our share of the snapshot's
        score, e.g. ``bid ok ask no 35%``; ``LIP ?`` before the first snapshot."""
        q = self.last.get(ticker)
        if q is None:
            return "LIP ?" if ticker in self.programs else ""
        sides = [f"{name} {'ok' if s.our_qualifying > 0 else 'no'}"
                 for name, s in (("bid", q.bid), ("ask", q.ask)) if s is not None and s.our_resting > 0]
        share = f" {q.share:.0%}" if q.qualifies and q.share is not None else ""
        return (" ".join(sides) or "no quotes") + share

    def brief(self) -> str:
        """For the status line: ``LIP 2 mkts, 1 qualifies``; "" without programs."""
        if not self.programs:
            return "" if self.read_ok or not self.read_error else "LIP: programs not readable"
        ok = sum(1 for t in self.programs if t in self.last and self.last[t].qualifies)
        return f"LIP {len(self.programs)} mkts, {ok} qualify"

    def event_label(self, markets: Collection[str]) -> str:
        mine = [t for t in markets if t in self.programs]
        if not mine:
            return ""
        ok = sum(1 for t in mine if t in self.last and self.last[t].qualifies)
        return f"LIP {ok}/{len(mine)} ok"

    def summary(self) -> dict[str, Any]:
        """Per market with a program: the program and how our quotes fared over the run."""
        out: dict[str, Any] = {}
        for t, ps in sorted(self.programs.items()):
            p = max(ps, key=lambda x: x.period_reward)
            tl = self.tally.get(t, _Tally())
            q = self.last.get(t)
            out[t] = {
                "program_id": p.id, "incentive_type": p.incentive_type,
                "period_reward_usd": p.period_reward / 10_000,
                "target_size": None if p.target_size is None else p.target_size / CONTRACT,
                "discount_factor": p.discount,
                "snapshots": tl.samples, "qualified": tl.qualified,
                "qualified_fraction": (tl.qualified / tl.samples) if tl.samples else None,
                "mean_score": (tl.score_sum / tl.samples) if tl.samples else None,
                "mean_share": (tl.share_sum / tl.share_n) if tl.share_n else None,
                "last": None if q is None else {"qualifies": q.qualifies, "score": q.score, "share": q.share,
                                                 "reasons": list(q.reasons)},
            }
        return out


def sample_engine(inc: IncentiveWiring, engine: Any) -> int:
    """One snapshot of every quoted market with a program (the housekeeping tick calls this every
    ``incentive_sample_s``): assess, remember, and write each to the store. Returns how many."""
    if not inc.programs:
        return 0
    now = engine.clock.time_ns()
    store = engine.recorder.store if engine.recorder is not None else None
    n = 0
    for t in inc.programs:
        pipe = engine.pipes.get(t)
        if pipe is None or not pipe.ready or pipe.book is None:
            continue
        ours = [(o.side, o.price, o.remaining) for o in engine.om.live_in(t)
                if o.is_live and o.order_id is not None and o.remaining > 0]
        q = inc.assess(t, now, list(pipe.book.bids()), list(pipe.book.asks()), ours)
        if q is None:
            continue
        n += 1
        if store is not None:
            store.record_incentive(ticker=t, program_id=q.program_id or "", qualifies=q.qualifies, score=q.score,
                                   share=q.share, bid_qualifying=q.bid.our_qualifying if q.bid else 0,
                                   ask_qualifying=q.ask.our_qualifying if q.ask else 0,
                                   reasons="; ".join(q.reasons))
    return n
