"""Kalshi's incentive programs: which quoted markets have one, and whether kmm's quotes score.

``GET /incentive_programs`` (kalshi-api.md section 11) lists programs per market. Items are decoded
here into :class:`IncentiveProgram` in kmm units (money 1e-4 $: ``period_reward`` is in centi-cents,
which is 1e-4 $ already; sizes 1e-2 contracts; times wall-clock ns).

The Liquidity Incentive Program scores random one-second snapshots of the book: on each side, only
resting size that helps fill the period's Target Size counts, walking from the best price outward,
and each qualifying order scores ``size x distance multiplier`` (1.0 at the best price, less further
out per the program's Discount Factor); the pool is shared pro rata to summed scores.

[U] What the help page does not say, and :class:`LipScoring` makes configurable:

* the distance multiplier: ``"geometric"`` (default) is ``discount ** (distance / unit)``;
  ``"linear"`` is ``max(0, 1 - (1 - discount) x distance / unit)``; ``unit`` is $0.01 by default;
* the order of our size inside the price level where the target size is reached: ``"pro_rata"``
  (default), ``"first"`` or ``"last"`` (the careful choice);
* the reference best price: the best of the whole book, ours included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmm._core.fixed import parse_count

NS_PER_S = 1_000_000_000
CONTRACT = 100                      # 1e-2 contracts
LIQUIDITY = "liquidity"
DISTANCE_MODELS = ("geometric", "linear")
QUEUE_MODELS = ("pro_rata", "first", "last")


def _time_ns(text: Any, name: str) -> int:
    if not isinstance(text, str) or not text:
        raise ValueError(f"incentive program: {name} {text!r} is not an RFC 3339 time")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"incentive program: {name} {text!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"incentive program: {name} {text!r} has no time zone")
    return int(dt.timestamp()) * NS_PER_S + dt.microsecond * 1000


@dataclass(slots=True, frozen=True)
class IncentiveProgram:
    """One program in kmm units."""

    id: str
    market_ticker: str
    incentive_type: str                  # "liquidity" | "volume" | ...
    start_ns: int                        # wall clock
    end_ns: int
    period_reward: int                   # 1e-4 $ (the wire's centi-cents)
    paid_out: bool
    market_id: str = ""
    description: str = ""
    discount_factor_bps: int | None = None   # 10 000 = 1.00
    target_size: int | None = None       # 1e-2 contracts
    max_reward_per_account: int | None = None  # [U] assumed centi-cents like period_reward: 1e-4 $

    @property
    def discount(self) -> float:
        """The discount factor as a number (1.0 when the program gives none)."""
        return 1.0 if self.discount_factor_bps is None else self.discount_factor_bps / 10_000

    def active_at(self, now_ns: int) -> bool:
        return self.start_ns <= now_ns < self.end_ns and not self.paid_out


def decode_incentive_program(obj: Mapping[str, Any]) -> IncentiveProgram:
    """One item of ``incentive_programs``. ``target_size_fp`` wins over the legacy ``target_size``."""
    try:
        ticker = str(obj["market_ticker"])
        pid = str(obj["id"])
        itype = str(obj["incentive_type"])
        reward = int(obj["period_reward"])
    except KeyError as e:
        raise ValueError(f"incentive program {obj.get('id')!r}: required field {e.args[0]!r} is missing") from None
    target: int | None = None
    if obj.get("target_size_fp") is not None:
        target = parse_count(str(obj["target_size_fp"]))
    elif obj.get("target_size") is not None:
        target = int(obj["target_size"]) * CONTRACT
    dfb = obj.get("discount_factor_bps")
    mra = obj.get("max_reward_per_account")
    return IncentiveProgram(
        id=pid, market_ticker=ticker, incentive_type=itype,
        start_ns=_time_ns(obj.get("start_date"), "start_date"), end_ns=_time_ns(obj.get("end_date"), "end_date"),
        period_reward=reward, paid_out=bool(obj.get("paid_out", False)),
        market_id=str(obj.get("market_id", "")), description=str(obj.get("incentive_description", "")),
        discount_factor_bps=None if dfb is None else int(dfb), target_size=target,
        max_reward_per_account=None if mra is None else int(mra))


def decode_incentive_page(body: Mapping[str, Any]) -> tuple[list[IncentiveProgram], str | None]:
    """A page of ``GET /incentive_programs``: the programs and the next cursor (None on the last page)."""
    items = body.get("incentive_programs") or []
    cursor = body.get("next_cursor") or None
    return [decode_incentive_program(x) for x in items], cursor


@dataclass(slots=True, frozen=True)
class LipScoring:
    """How a snapshot is scored where the rules are [U] (see the module doc)."""

    distance: str = "geometric"
    unit: int = 100                      # 1e-4 $: distance is counted in these ($0.01)
    queue: str = "pro_rata"

    def __post_init__(self) -> None:
        if self.distance not in DISTANCE_MODELS:
            raise ValueError(f"LipScoring: distance {self.distance!r} is not one of {DISTANCE_MODELS}")
        if self.queue not in QUEUE_MODELS:
            raise ValueError(f"LipScoring: queue {self.queue!r} is not one of {QUEUE_MODELS}")
        if self.unit <= 0:
            raise ValueError(f"LipScoring: unit {self.unit} must be > 0 (1e-4 $)")

    def multiplier(self, distance: int, discount: float) -> float:
        """The score multiplier of size ``distance`` (1e-4 $, >= 0) away from the best price."""
        steps = max(0, distance) / self.unit
        if self.distance == "geometric":
            return discount ** steps if steps else 1.0
        return max(0.0, 1.0 - (1.0 - discount) * steps)

    def ours_in(self, ours: int, level: int, take: int) -> int:
        """How much of our ``ours`` in a level of ``level`` size counts when ``take`` of it qualifies."""
        if take >= level:
            return ours
        if self.queue == "first":
            return min(ours, take)
        if self.queue == "last":
            return max(0, take - (level - ours))
        return ours * take // level if level else 0


@dataclass(slots=True, frozen=True)
class SideScore:
    ours: float                          # our score, contracts x multiplier
    total: float                         # everyone's qualifying score on this side
    our_qualifying: int                  # our size that counts, 1e-2 contracts
    our_resting: int                     # our size on this side, 1e-2 contracts


def score_side(levels: Sequence[tuple[int, int]], ours: Mapping[int, int], *, best_first: bool = True,
               side: str, target: int | None, discount: float, scoring: LipScoring) -> SideScore:
    """Score one side of a snapshot. ``levels``: (price 1e-4 $, total size 1e-2 contracts incl. ours),
    best first (bids descending, asks ascending). ``ours``: our resting size by price. ``target``:
    the Target Size (None: every level counts)."""
    if not best_first:
        levels = list(reversed(levels))
    left = math.inf if target is None else target
    our_score = total = 0.0
    qual = 0
    if not levels:
        return SideScore(0.0, 0.0, 0, sum(ours.values()))
    best = levels[0][0]
    for price, size in levels:
        if left <= 0:
            break
        if size <= 0:
            continue
        take = int(min(size, left))
        dist = (best - price) if side == "bid" else (price - best)
        mult = scoring.multiplier(dist, discount)
        mine = scoring.ours_in(min(ours.get(price, 0), size), size, take)
        our_score += mine * mult / CONTRACT
        total += take * mult / CONTRACT
        qual += mine
        left -= take
    return SideScore(our_score, total, qual, sum(ours.values()))


@dataclass(slots=True, frozen=True)
class Qualification:
    """Whether a program applies to a market now, whether our quotes score, and how much."""

    ticker: str
    program_id: str | None
    applies: bool
    qualifies: bool
    score: float                         # our snapshot score (both sides), contracts x multiplier
    share: float | None                  # our score / everyone's, None when nobody scores
    bid: SideScore | None = None
    ask: SideScore | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def expected_reward_per_snapshot(self, program: IncentiveProgram, snapshots: int) -> float:
        """period_reward x share / snapshots in the period, 1e-4 $ (an estimate: others' scores move)."""
        if not self.share or snapshots <= 0:
            return 0.0
        return program.period_reward * self.share / snapshots


class IncentiveBook:
    """Programs by market, and the per-snapshot assessment of our quotes."""

    def __init__(self, programs: Iterable[IncentiveProgram] = (), scoring: LipScoring | None = None) -> None:
        self.scoring = scoring or LipScoring()
        self._by_ticker: dict[str, list[IncentiveProgram]] = {}
        self.load(programs)

    def load(self, programs: Iterable[IncentiveProgram]) -> None:
        """Replace the programs (e.g. after a re-read of every page)."""
        self._by_ticker = {}
        for p in programs:
            self._by_ticker.setdefault(p.market_ticker, []).append(p)

    def program_for(self, ticker: str, now_ns: int) -> IncentiveProgram | None:
        """The active liquidity program of ``ticker`` at ``now_ns`` (wall ns), if any (the largest
        reward when several overlap)."""
        live = [p for p in self._by_ticker.get(ticker, ()) if p.incentive_type == LIQUIDITY and p.active_at(now_ns)]
        return max(live, key=lambda p: p.period_reward) if live else None

    def assess(self, ticker: str, now_ns: int, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]],
               our_orders: Iterable[tuple[str, int, int]]) -> Qualification:
        """Score one snapshot. ``bids`` descending and ``asks`` ascending as (YES price, size incl. ours);
        ``our_orders``: (side, price, remaining) of our resting orders."""
        program = self.program_for(ticker, now_ns)
        if program is None:
            return Qualification(ticker, None, False, False, 0.0, None, reasons=("no active liquidity program",))
        mine: dict[str, dict[int, int]] = {"bid": {}, "ask": {}}
        for side, price, rem in our_orders:
            if side not in mine:
                raise ValueError(f"assess {ticker}: side {side!r} must be 'bid' or 'ask'")
            if rem > 0:
                mine[side][price] = mine[side].get(price, 0) + rem
        target, discount, sc = program.target_size, program.discount, self.scoring
        b = score_side(bids, mine["bid"], side="bid", target=target, discount=discount, scoring=sc)
        a = score_side(asks, mine["ask"], side="ask", target=target, discount=discount, scoring=sc)
        reasons = []
        for name, s in (("bid", b), ("ask", a)):
            if s.our_resting == 0:
                reasons.append(f"no resting {name}")
            elif s.our_qualifying == 0:
                reasons.append(f"{name} outside the target size of {_contracts(program.target_size)} "
                               "from the best price")
            elif s.our_qualifying < s.our_resting:
                reasons.append(f"{name}: {s.our_qualifying / CONTRACT:.2f} of {s.our_resting / CONTRACT:.2f} "
                               "contracts within the target size")
        score = b.ours + a.ours
        total = b.total + a.total
        return Qualification(ticker, program.id, True, score > 0, score, (score / total) if total else None,
                             b, a, tuple(reasons))


def _contracts(size: int | None) -> str:
    return "all" if size is None else f"{size / CONTRACT:.2f} contracts"
