"""Decisions from the book: how much to take now, at what price, and why.

Pure functions over plain level lists: ``Sequence[tuple[price, size]]``, **best first**, holding the
side we take from (YES asks when our V2 side is ``bid``, YES bids when it is ``ask``). Prices are YES
prices (1e-4 $), sizes 1e-2 contracts. Percentages are measured against the price in the user's own
terms (a NO buyer's cost is 10000 - YES price), so "10 % worse" means 10 % more paid or received by
the user, whichever contract they trade.

Thresholds are given as fractions (0.10 = 10 %) and compared exactly: each float is read through its
shortest decimal repr into a :class:`~fractions.Fraction`, so a hand-computed boundary in a test
lands where the arithmetic says.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

from kmm._core.fees import TAKER_RATE_E6, trade_fee
from kmm._core.fixed import format_count, format_price
from kmm._core.grid import Grid

from kmm.execution.request import Action, RequestError

__all__ = [
    "Level", "Aggression", "CapReason", "LiquidityPolicy", "EffectivePrice", "Decision",
    "within_limit", "effective_price", "best_level_cap", "next_level_too_far", "liquidity_cap",
    "aggression", "decide", "format_decision", "DEFAULT_POLICY",
]

Level = tuple[int, int]
_LINEAR = Grid()


def _frac(x: float) -> Fraction:
    return Fraction(repr(float(x)))


def _floor_lot(n: int, lot: int) -> int:
    return (n // lot) * lot if n > 0 else 0


def _within(side: str, price: int, limit: int) -> bool:
    return price <= limit if side == "bid" else price >= limit


def _outcome_px(action: Action, yes_price: int) -> int:
    """The user's price for one contract at this YES price (what they pay or receive)."""
    return yes_price if action.outcome == "yes" else 10000 - yes_price


class Aggression(enum.Enum):
    """How hard to lean on the book, from edge and confidence (seed 000 section 4E)."""

    SKIP = "skip"              # edge below the minimum: take nothing
    BEST_ONLY = "best_only"    # low edge or low confidence: best level only
    NORMAL = "normal"          # the configured rules as they are
    AGGRESSIVE = "aggressive"  # high edge and high confidence: more depth, next level, shorter patience


class CapReason(str, enum.Enum):
    """Why the size taken now is below the target (``NONE`` when it is not)."""

    NONE = "none"
    NO_LIQUIDITY = "no_liquidity_within_limit"
    EDGE_BELOW_MINIMUM = "edge_below_minimum"
    SPREAD_TOO_WIDE = "spread_too_wide"
    SPREAD_UNKNOWN = "spread_unknown"
    BEST_LEVEL_ONLY = "best_level_only"
    BEST_LEVEL_FRACTION = "best_level_fraction"
    NEXT_LEVEL_TOO_FAR = "next_level_too_far"
    IMPACT_BUDGET = "impact_budget"
    MAX_LEVELS = "max_levels"
    DEPTH_WITHIN_LIMIT = "depth_within_limit"
    BELOW_LOT = "below_lot"


@dataclass(slots=True, frozen=True)
class LiquidityPolicy:
    """Parameters of the decision rules. Fractions are 0..1; prices and edges in 1e-4 $.

    - ``max_take_fraction``: take at most this share of the displayed best size (1.0; 0.25-0.5 is
      conservative). Below 1.0 the deeper levels are never touched (reaching them takes all of level 1).
    - ``next_level_max_worse``: if level 2 is worse than level 1 by more than this share of the
      user's price, stop at level 1 (the two-level rule).
    - ``impact_budget``: otherwise consume further levels while the average price stays within this
      share of the best price; with an edge, also within ``max_edge_spent`` of the edge.
    - ``max_levels``: never consume more levels than this.
    - ``conservative``: fallback mode: best level only, and only when the spread is at most ``max_spread``.
    - ``min_edge`` / ``low_edge`` / ``high_edge`` and ``low_confidence`` / ``high_confidence``: the
      aggressiveness bands (see :func:`aggression`). Aggressive mode takes ``aggressive_take_fraction``
      of the best level, multiplies the next-level threshold and the impact budget by
      ``aggressive_widen`` and patience by ``aggressive_patience``; best-only mode multiplies patience
      by ``cautious_patience``.
    """

    max_take_fraction: float = 1.0
    next_level_max_worse: float = 0.10
    impact_budget: float = 0.03
    max_levels: int = 5
    max_edge_spent: float = 0.5
    conservative: bool = False
    max_spread: int = 600
    min_edge: int = 100
    low_edge: int = 300
    high_edge: int = 800
    low_confidence: float = 0.5
    high_confidence: float = 0.8
    aggressive_take_fraction: float = 1.0
    aggressive_widen: float = 2.0
    aggressive_patience: float = 0.5
    cautious_patience: float = 1.5

    def __post_init__(self) -> None:
        for name in ("max_take_fraction", "aggressive_take_fraction"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise RequestError(f"{name} {v!r} must be in (0, 1]; 1.0 takes the whole best level")
        for name in ("next_level_max_worse", "impact_budget", "max_edge_spent", "low_confidence",
                     "high_confidence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise RequestError(f"{name} {v!r} must be a fraction in [0, 1] (0.10 = 10 %)")
        for name in ("aggressive_widen", "aggressive_patience", "cautious_patience"):
            if not getattr(self, name) > 0:
                raise RequestError(f"{name} {getattr(self, name)!r} must be > 0")
        if self.max_levels < 1:
            raise RequestError(f"max_levels {self.max_levels} must be >= 1")
        if not 0 <= self.max_spread <= 10000:
            raise RequestError(f"max_spread {self.max_spread} must be in 0..10000 (1e-4 $)")
        if not self.min_edge <= self.low_edge <= self.high_edge:
            raise RequestError(f"edges must satisfy min_edge <= low_edge <= high_edge, got "
                               f"{self.min_edge}, {self.low_edge}, {self.high_edge}")
        if self.low_confidence > self.high_confidence:
            raise RequestError("low_confidence must not exceed high_confidence")

    def patience_multiplier(self, aggr: Aggression) -> float:
        """Scale for an algorithm's waiting times under ``aggr``."""
        if aggr is Aggression.AGGRESSIVE:
            return self.aggressive_patience
        if aggr is Aggression.BEST_ONLY:
            return self.cautious_patience
        return 1.0


DEFAULT_POLICY = LiquidityPolicy()


@dataclass(slots=True, frozen=True)
class EffectivePrice:
    """What taking ``requested`` from the levels right now would do.

    ``size`` is what fills (at most the depth within the limit); ``notional`` is sum(q * p) in
    1e-2 contracts x 1e-4 $; ``worst_price`` is the last level touched, the price an order needs to
    sweep them; impact is the average against the best, in YES price units, in ticks of the grid at
    the best price and in percent of the user's price.
    """

    requested: int
    size: int
    notional: int
    levels_used: int
    best_price: int | None
    worst_price: int | None
    depth_within_limit: int
    impact_px: float
    impact_ticks: float
    impact_pct: float
    fee: int

    @property
    def avg_price(self) -> float | None:
        """Depth-weighted average YES price of ``size``, or None when nothing fills."""
        return self.notional / self.size if self.size else None

    @property
    def cost(self) -> int:
        """Money moved at YES prices for ``size``, 1e-4 $ (rounded to the nearest unit)."""
        return (self.notional + 50) // 100


def within_limit(levels: Sequence[Level], side: str, limit: int) -> list[Level]:
    """The leading levels a ``side`` order limited at ``limit`` (YES) may take; empty levels skipped."""
    if side not in ("bid", "ask"):
        raise ValueError(f"side {side!r} must be 'bid' or 'ask'")
    out: list[Level] = []
    for price, size in levels:
        if size <= 0:
            continue
        if not _within(side, price, limit):
            break
        out.append((price, size))
    return out


def effective_price(levels: Sequence[Level], action: Action, size: int, limit: int | None = None, *,
                    grid: Grid | None = None, fee_rate_e6: int = TAKER_RATE_E6) -> EffectivePrice:
    """Depth-weighted average price of taking ``size`` now (seed 000 section 4C).

    ``levels`` is the take side, best first; with ``limit`` (YES) only the levels within it count.
    """
    if size < 0:
        raise ValueError(f"size {size} must be >= 0 (1e-2 contracts)")
    side = action.side
    lv = within_limit(levels, side, limit) if limit is not None else [(p, s) for p, s in levels if s > 0]
    depth = sum(s for _, s in lv)
    left, notional, used, fee = size, 0, 0, 0
    worst: int | None = None
    for price, avail in lv:
        if left <= 0:
            break
        q = min(left, avail)
        notional += q * price
        fee += trade_fee(q, price, fee_rate_e6)
        left -= q
        used += 1
        worst = price
    filled = size - left
    best = lv[0][0] if lv else None
    impact_px = impact_ticks = impact_pct = 0.0
    if filled and best is not None:
        impact_px = abs(notional / filled - best)
        impact_ticks = impact_px / (grid or _LINEAR).tick_size(best)
        impact_pct = 100.0 * impact_px / _outcome_px(action, best)
    return EffectivePrice(size, filled, notional, used, best, worst, depth, impact_px, impact_ticks,
                          impact_pct, fee)


def best_level_cap(best_size: int, target: int, max_take_fraction: float, lot: int) -> int:
    """Liquidity cap at the best level: ``min(target, floor(best_size * fraction))`` in whole lots."""
    cap = int(_frac(max_take_fraction) * best_size)  # floor (both non-negative)
    return _floor_lot(min(target, cap), lot)


def next_level_too_far(action: Action, best: int, nxt: int, threshold: float) -> bool:
    """True when level 2 (``nxt``) is worse than ``best`` by more than ``threshold`` of the user's price."""
    return Fraction(abs(nxt - best), _outcome_px(action, best)) > _frac(threshold)


def liquidity_cap(levels: Sequence[Level], action: Action, target: int, *, max_take_fraction: float = 1.0,
                  next_level_max_worse: float = 0.10, impact_budget_px: Fraction | float | None = None,
                  max_levels: int = 5, lot: int = 100) -> tuple[int, CapReason]:
    """How much of ``target`` to take now from ``levels`` (already cut at the limit, best first).

    Rules (seed 000 sections 4A, 4B, 5): below a full take fraction, cap at that share of the best
    level. Otherwise, if the target exceeds the best level and level 2 is more than
    ``next_level_max_worse`` worse, cap at the best level's size. Otherwise consume further levels
    (partially if needed) while the average price stays within ``impact_budget_px`` (YES price
    units; None = no budget) of the best, for at most ``max_levels`` levels.
    Returns (size in whole lots, reason); the reason is :attr:`CapReason.NONE` when the target fits.
    """
    lv = [(p, s) for p, s in levels if s > 0]
    if not lv:
        return 0, CapReason.NO_LIQUIDITY
    best, best_size = lv[0]
    if _frac(max_take_fraction) < 1:
        cap = best_level_cap(best_size, target, max_take_fraction, lot)
        return cap, (CapReason.NONE if cap >= target else CapReason.BEST_LEVEL_FRACTION)
    if target <= best_size:
        return _floor_lot(target, lot), CapReason.NONE
    if len(lv) < 2:
        return _floor_lot(best_size, lot), CapReason.DEPTH_WITHIN_LIMIT
    if max_levels < 2:
        return _floor_lot(best_size, lot), CapReason.MAX_LEVELS
    if next_level_too_far(action, best, lv[1][0], next_level_max_worse):
        return _floor_lot(best_size, lot), CapReason.NEXT_LEVEL_TOO_FAR
    budget = None if impact_budget_px is None else Fraction(impact_budget_px)
    taken, dsum = best_size, Fraction(0)  # dsum = sum q * |p - best|
    for k, (price, avail) in enumerate(lv[1:], start=1):
        if k >= max_levels:
            return _floor_lot(taken, lot), CapReason.MAX_LEVELS
        want = target - taken
        d = abs(price - best)
        q = min(want, avail)
        if budget is not None and d > budget:
            # sum q (d_k - B) <= 0  =>  q <= (B * taken - dsum) / (d - B)
            room = (budget * taken - dsum) / (d - budget)
            q_max = max(0, int(room))
            if q_max < q:
                taken += q_max
                return _floor_lot(taken, lot), CapReason.IMPACT_BUDGET
        taken += q
        dsum += q * d
        if taken >= target:
            return _floor_lot(target, lot), CapReason.NONE
    return _floor_lot(taken, lot), CapReason.DEPTH_WITHIN_LIMIT


def aggression(edge: int | None, confidence: float | None, policy: LiquidityPolicy = DEFAULT_POLICY) -> Aggression:
    """Aggressiveness from the user's edge (1e-4 $ per contract) and confidence (0..1).

    Neither given: NORMAL. Edge below ``min_edge``: SKIP. Edge below ``low_edge`` or confidence below
    ``low_confidence``: BEST_ONLY. Edge at least ``high_edge`` and confidence at least
    ``high_confidence`` (both given): AGGRESSIVE. Anything else: NORMAL.
    """
    if edge is None and confidence is None:
        return Aggression.NORMAL
    if edge is not None and edge < policy.min_edge:
        return Aggression.SKIP
    if (edge is not None and edge < policy.low_edge) or (confidence is not None and confidence < policy.low_confidence):
        return Aggression.BEST_ONLY
    if (edge is not None and confidence is not None and edge >= policy.high_edge
            and confidence >= policy.high_confidence):
        return Aggression.AGGRESSIVE
    return Aggression.NORMAL


@dataclass(slots=True, frozen=True)
class Decision:
    """One decision, with everything needed to explain it (seed 000 section 6: effective price,
    levels used, impact, liquidity cap reason, target vs executed size)."""

    action: Action
    target_size: int
    exec_size: int
    limit: int                      # YES
    order_price: int | None         # YES price that sweeps the levels used; None when exec_size is 0
    effective: EffectivePrice
    liquidity_cap_reason: CapReason
    aggression: Aggression
    policy: LiquidityPolicy = field(default=DEFAULT_POLICY, repr=False)
    spread: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def side(self) -> str:
        return self.action.side

    @property
    def effective_price(self) -> float | None:
        return self.effective.avg_price

    @property
    def levels_used(self) -> int:
        return self.effective.levels_used

    @property
    def impact_pct(self) -> float:
        return self.effective.impact_pct

    @property
    def impact_ticks(self) -> float:
        return self.effective.impact_ticks

    @property
    def depth_within_limit(self) -> int:
        return self.effective.depth_within_limit

    @property
    def remainder(self) -> int:
        return self.target_size - self.exec_size


def decide(levels: Sequence[Level], action: Action, target: int, limit: int, *,
           policy: LiquidityPolicy = DEFAULT_POLICY, grid: Grid | None = None, lot: int = 100,
           edge: int | None = None, confidence: float | None = None, opposite_best: int | None = None,
           fee_rate_e6: int = TAKER_RATE_E6) -> Decision:
    """Apply every rule to the take-side ``levels`` and say how much to take now and why.

    ``limit`` is the YES limit; ``opposite_best`` the best YES price on our own side (for the spread,
    needed in conservative mode). ``edge``/``confidence`` choose the :class:`Aggression`.
    """
    if target <= 0:
        raise ValueError(f"target {target} must be > 0 (1e-2 contracts)")
    side = action.side
    lv = within_limit(levels, side, limit)
    aggr = aggression(edge, confidence, policy)
    notes: list[str] = []
    spread = abs(levels[0][0] - opposite_best) if levels and opposite_best is not None else None

    def done(size: int, reason: CapReason) -> Decision:
        if 0 < size < lot:
            size, reason = 0, CapReason.BELOW_LOT
        eff = effective_price(lv, action, size, grid=grid, fee_rate_e6=fee_rate_e6)
        if size == 0:
            eff = EffectivePrice(0, 0, 0, 0, eff.best_price, None, eff.depth_within_limit, 0.0, 0.0, 0.0, 0)
        return Decision(action, target, size, limit, eff.worst_price if size else None, eff, reason, aggr,
                        policy, spread, tuple(notes))

    if not lv:
        return done(0, CapReason.NO_LIQUIDITY)
    if aggr is Aggression.SKIP:
        notes.append(f"edge {edge} < min_edge {policy.min_edge}")
        return done(0, CapReason.EDGE_BELOW_MINIMUM)
    best, best_size = lv[0]
    if policy.conservative:
        if spread is None:
            notes.append("conservative mode needs both sides of the book to check the spread")
            return done(0, CapReason.SPREAD_UNKNOWN)
        if spread > policy.max_spread:
            notes.append(f"spread {spread} > max_spread {policy.max_spread}")
            return done(0, CapReason.SPREAD_TOO_WIDE)
        notes.append("conservative fallback: best level only, one order, no repricing")
        cap = best_level_cap(best_size, target, policy.max_take_fraction, lot)
        return done(cap, CapReason.NONE if cap >= target else CapReason.BEST_LEVEL_ONLY)
    if aggr is Aggression.BEST_ONLY:
        notes.append("low edge or low confidence: best level only")
        cap = best_level_cap(best_size, target, policy.max_take_fraction, lot)
        return done(cap, CapReason.NONE if cap >= target else CapReason.BEST_LEVEL_ONLY)
    take_fraction = policy.max_take_fraction
    threshold = _frac(policy.next_level_max_worse)
    budget = _frac(policy.impact_budget) * _outcome_px(action, best)
    if aggr is Aggression.AGGRESSIVE:
        take_fraction = max(take_fraction, policy.aggressive_take_fraction)
        threshold *= _frac(policy.aggressive_widen)
        budget *= _frac(policy.aggressive_widen)
        notes.append("high edge and confidence: aggressive")
    if edge is not None:
        edge_cap = _frac(policy.max_edge_spent) * edge
        if edge_cap < budget:
            budget = edge_cap
            notes.append(f"impact budget capped at {float(edge_cap):.0f} by the edge")
    size, reason = liquidity_cap(lv, action, target, max_take_fraction=take_fraction,
                                 next_level_max_worse=float(threshold), impact_budget_px=budget,
                                 max_levels=policy.max_levels, lot=lot)
    return done(size, reason)


def _px(action: Action, yes: float | None) -> str:
    if yes is None:
        return "-"
    user = action.from_yes(yes)
    if float(user).is_integer() and float(yes).is_integer():
        return f"{format_price(int(user))} (YES {format_price(int(yes))})"
    return f"{user / 10000:.6f} (YES {yes / 10000:.6f})"


def format_decision(d: Decision, ticker: str = "", *, dry_run: bool = True) -> str:
    """A human summary of ``d`` for the CLI; with ``dry_run`` it says that nothing is sent."""
    a = d.action
    head = f"{'DRY RUN: ' if dry_run else ''}{a.value} {format_count(d.target_size)}"
    if ticker:
        head += f" {ticker}"
    lines = [
        head,
        f"  V2 order side      {d.side} on the YES book, limit {_px(a, d.limit)}",
        f"  aggression         {d.aggression.value}",
        f"  depth within limit {format_count(d.depth_within_limit)}",
        f"  target size        {format_count(d.target_size)}",
        f"  executed size      {format_count(d.exec_size)}  (remainder {format_count(d.remainder)})",
        f"  order price        {_px(a, d.order_price)}",
        f"  effective price    {_px(a, d.effective_price)}",
        f"  levels used        {d.levels_used}",
        f"  impact             {d.impact_pct:.2f} % ({d.impact_ticks:.2f} ticks)",
        f"  est. taker fee     ${d.effective.fee / 10000:.4f}",
        f"  cap reason         {d.liquidity_cap_reason.value}",
    ]
    if d.spread is not None:
        lines.append(f"  spread             {format_price(d.spread)}")
    lines.extend(f"  note               {n}" for n in d.notes)
    if dry_run:
        lines.append("  nothing was sent (dry run)")
    return "\n".join(lines)
