"""The execution algorithms: simple, capped, slice, twap, adaptive, vwslice and walker.

Each is a small state machine on top of :class:`~kmm.execution.algo.Algo`, which owns the child
bookkeeping and the invariants (never more than the target, never past the limit, every child
cancelled at the end). Times are monotonic ns passed in by the driver; parameters in seconds are
named ``*_s`` / ``*_seconds``. Parameters come from the original design (seeds 000-002).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping

from kmm.execution.algo import NS, TIF_GTC, TIF_IOC, Algo, AlgoParams, Child
from kmm.execution.decision import (DEFAULT_POLICY, Aggression, CapReason, Decision, LiquidityPolicy, decide,
                                    format_decision, within_limit)
from kmm.execution.intents import BookView
from kmm.execution.request import ExecutionRequest, MarketInfo, RequestError

__all__ = [
    "SimpleParams", "CappedParams", "SliceParams", "TwapParams", "AdaptiveParams", "VwsliceParams",
    "WalkerParams", "SimpleAlgo", "CappedAlgo", "SliceAlgo", "TwapAlgo", "AdaptiveAlgo", "VwsliceAlgo",
    "WalkerAlgo", "ALGORITHMS", "build_algo", "make_params",
]


def _frac(x: float) -> Fraction:
    return Fraction(repr(float(x)))


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise RequestError(msg)


class _Base(Algo):
    """Shared helpers of the concrete algorithms."""

    def _on_start_checked(self, now_ns: int, book: BookView) -> bool:
        if self.aggression is Aggression.SKIP:
            self._note(now_ns, f"edge {self.request.edge} is below min_edge {self.policy.min_edge}: nothing sent")
            self._finish(now_ns, CapReason.EDGE_BELOW_MINIMUM.value)
            return False
        return True

    def _less_aggressive(self, a: int, b: int) -> int:
        return min(a, b) if self.side == "bid" else max(a, b)

    def _slip_price(self, best: int, max_slippage: float) -> int:
        """The price ``max_slippage`` worse than ``best`` for the user, on the grid, inside the limit."""
        action = self.request.action
        user = Fraction(action.from_yes(best))
        f = _frac(max_slippage)
        user = user * (1 + f) if action.buys else user * (1 - f)
        yes = user if action.outcome == "yes" else 10000 - user
        price = math.floor(yes) if self.side == "bid" else math.ceil(yes)
        return self._clamp(min(max(price, 1), 9999))

    def _behind(self, price: int, other: int) -> bool:
        """True when ``price`` is strictly on our side of ``other`` (below it for a bid)."""
        return price < other if self.side == "bid" else price > other


# ---------------------------------------------------------------------------------------- simple
@dataclass(slots=True)
class SimpleParams(AlgoParams):
    """One limit order. ``max_slippage``: never post more than this share worse than the arrival best
    (user terms). ``ioc_edge``: with an edge of at least this (1e-4 $), send an immediate-or-cancel at
    the slippage cap instead of resting (None = never)."""

    timeout_s: float | None = 30.0
    max_slippage: float = 0.02
    ioc_edge: int | None = 800

    def check(self) -> None:
        _require(0.0 <= self.max_slippage <= 1.0, f"max_slippage {self.max_slippage!r} must be in [0, 1] (0.02 = 2 %)")
        _require(self.ioc_edge is None or self.ioc_edge >= 0, f"ioc_edge {self.ioc_edge!r} must be >= 0 or None")


class SimpleAlgo(_Base):
    name = "simple"
    params_type = SimpleParams
    params: SimpleParams

    def _on_start(self, now_ns: int, book: BookView) -> None:
        if not self._on_start_checked(now_ns, book):
            return
        p, best, edge = self.params, self.arrival_price, self.request.edge
        if best is not None and p.ioc_edge is not None and edge is not None and edge >= p.ioc_edge:
            self._tif = TIF_IOC
            self._price = self._slip_price(best, p.max_slippage)
            self._note(now_ns, f"edge {edge} >= ioc_edge {p.ioc_edge}: immediate-or-cancel at {self._price}")
        else:
            self._tif = TIF_GTC
            self._price = self.request.target
            if best is not None:
                self._price = self._less_aggressive(self._price, self._slip_price(best, p.max_slippage))
        self._place(now_ns, self._price, self.target_size, tif=self._tif, tag="simple")

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        if child.status == "rejected":
            self._place(now_ns, self._price, self.target_size, tif=self._tif, tag="simple")
        elif not self.live_children:
            self._finish(now_ns, "ioc_done" if self._tif == TIF_IOC else f"order_{child.status}")


# ---------------------------------------------------------------------------------------- capped
@dataclass(slots=True)
class CappedParams(AlgoParams):
    """The decision rules, then one immediate-or-cancel order for the decided size. ``remainder``:
    ``"drop"`` ends there; ``"rest"`` then rests what is left at the best level (inside the limit)
    until filled or ``timeout_s``. Conservative mode (``policy.conservative``) always drops."""

    remainder: str = "drop"
    depth_levels: int = 10

    def check(self) -> None:
        _require(self.remainder in ("drop", "rest"), f"remainder {self.remainder!r} must be 'drop' or 'rest'")
        _require(self.depth_levels >= 1, f"depth_levels {self.depth_levels} must be >= 1")


class CappedAlgo(_Base):
    name = "capped"
    params_type = CappedParams
    params: CappedParams
    decision: Decision | None = None

    def _on_start(self, now_ns: int, book: BookView) -> None:
        d = decide(self._take_levels(book, self.params.depth_levels), self.request.action, self.target_size,
                   self.limit, policy=self.policy, grid=self.grid, lot=self.lot, edge=self.request.edge,
                   confidence=self.request.confidence, opposite_best=self._own_best(book),
                   fee_rate_e6=self.market.taker_fee_rate_e6)
        self.decision = d
        self._note(now_ns, format_decision(d, self.request.ticker, dry_run=False))
        if d.exec_size > 0 and d.order_price is not None:
            self._place(now_ns, d.order_price, d.exec_size, tif=TIF_IOC, tag="take")
        else:
            self._after_take(now_ns)

    def _after_take(self, now_ns: int) -> None:
        d = self.decision
        assert d is not None
        blocked = d.liquidity_cap_reason in (CapReason.EDGE_BELOW_MINIMUM, CapReason.SPREAD_TOO_WIDE,
                                             CapReason.SPREAD_UNKNOWN)
        if self.params.remainder == "rest" and not self.policy.conservative and not blocked and self.headroom > 0:
            best = self._take_best(self.book) if self.book is not None else None
            price = self._clamp(best) if best is not None else self.limit
            if self._place(now_ns, price, self.headroom, tag="rest") is not None:
                return
        self._finish(now_ns, "decision_done" if self.filled else f"decision_{d.liquidity_cap_reason.value}")

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        if child.tag == "take":
            self._after_take(now_ns)
        elif child.status == "rejected" and self.headroom > 0:
            self._place(now_ns, child.price, self.headroom, tag="rest")
        elif not self.live_children:
            self._finish(now_ns, f"rest_{child.status}")


# ---------------------------------------------------------------------------------------- slice
@dataclass(slots=True)
class SliceParams(AlgoParams):
    """Child orders of ``child_size`` (1e-2 contracts) at the best price, one at a time. After
    ``patience_s`` without filling, ``mode="patient"`` leaves the child resting; ``"aggressive"``
    cancels it and reposts the rest at the new best."""

    child_size: int = 1000
    patience_s: float = 10.0
    mode: str = "aggressive"

    def check(self) -> None:
        _require(self.child_size > 0, f"child_size {self.child_size} must be > 0 (1e-2 contracts)")
        _require(self.patience_s > 0, f"patience_s {self.patience_s!r} must be > 0")
        _require(self.mode in ("patient", "aggressive"), f"mode {self.mode!r} must be 'patient' or 'aggressive'")


class SliceAlgo(_Base):
    name = "slice"
    params_type = SliceParams
    params: SliceParams
    _active: Child | None = None
    _deadline: int | None = None
    _waiting_book = False

    def _on_start(self, now_ns: int, book: BookView) -> None:
        if self._on_start_checked(now_ns, book):
            if self.params.child_size < self.lot:
                raise RequestError(f"child_size {self.params.child_size} is below the market's lot {self.lot}")
            self._next(now_ns)

    def _next(self, now_ns: int) -> None:
        if self.finished or (self._active is not None and self._active.live):
            return
        best = self._take_best(self.book) if self.book is not None else None
        if best is None:
            self._waiting_book = True
            return
        self._waiting_book = False
        self._active = self._place(now_ns, self._clamp(best), self.params.child_size, tag="slice")
        self._deadline = now_ns + int(self.params.patience_s * self.patience * NS) if self._active else None

    def _on_book(self, now_ns: int, book: BookView) -> None:
        if self._waiting_book:
            self._next(now_ns)

    def _on_timer(self, now_ns: int) -> None:
        c = self._active
        if c is not None and c.live and self._deadline is not None and now_ns >= self._deadline:
            self._deadline = None
            if self.params.mode == "aggressive" and c.open_size > 0:
                self._note(now_ns, f"{c.child_id} unfilled after {self.params.patience_s}s: cancel and repost")
                self._cancel(now_ns, c)

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        if child is self._active:
            self._active = None
            self._next(now_ns)

    def _timer_ns(self) -> int | None:
        return self._deadline if self._active is not None and self._active.live else None


# ---------------------------------------------------------------------------------------- twap
@dataclass(slots=True)
class TwapParams(AlgoParams):
    """The target split into ``slices`` child orders at the best price, evenly over ``duration_s``.
    With ``carry_over``, each new slice cancels the unfilled previous child and takes over its
    remainder. The execution ends ``final_wait_s`` after the last slice."""

    timeout_s: float | None = None
    slices: int = 5
    duration_s: float = 60.0
    carry_over: bool = True
    final_wait_s: float = 10.0

    def check(self) -> None:
        _require(self.slices >= 1, f"slices {self.slices} must be >= 1")
        _require(self.duration_s > 0, f"duration_s {self.duration_s!r} must be > 0")
        _require(self.final_wait_s >= 0, f"final_wait_s {self.final_wait_s!r} must be >= 0")


class TwapAlgo(_Base):
    name = "twap"
    params_type = TwapParams
    params: TwapParams

    def _on_start(self, now_ns: int, book: BookView) -> None:
        self._k = 0
        self._due = 0
        self._t0 = now_ns
        self._end_ns: int | None = None
        if self._on_start_checked(now_ns, book):
            self._on_timer(now_ns)

    def _slice_time(self, i: int) -> int:
        return self._t0 + int(self.params.duration_s * NS) * i // self.params.slices

    def _due_for(self, i: int) -> int:
        n = self.params.slices
        return self.target_size if i == n - 1 else self._floor_lot(self.target_size * (i + 1) // n)

    def _on_timer(self, now_ns: int) -> None:
        advanced = False
        while self._k < self.params.slices and now_ns >= self._slice_time(self._k):
            self._due = self._due_for(self._k)
            self._k += 1
            advanced = True
        if advanced and self.params.carry_over:
            for c in self.live_children:
                if c.open_size > 0:
                    self._cancel(now_ns, c)
        if self._k >= self.params.slices and self._end_ns is None:
            self._end_ns = self._slice_time(self.params.slices - 1) + int(self.params.final_wait_s * NS)
        if self._end_ns is not None and now_ns >= self._end_ns:
            self._finish(now_ns, "schedule_complete")
            return
        self._top_up(now_ns)

    def _top_up(self, now_ns: int) -> None:
        want = self._due - self.committed
        if want < self.lot or self.finished:
            return
        best = self._take_best(self.book) if self.book is not None else None
        if best is None:
            return
        self._place(now_ns, self._clamp(best), want, tag=f"slice{self._k}")

    def _on_book(self, now_ns: int, book: BookView) -> None:
        self._top_up(now_ns)

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        self._top_up(now_ns)

    def _timer_ns(self) -> int | None:
        if self._k < self.params.slices:
            return self._slice_time(self._k)
        return self._end_ns


# ---------------------------------------------------------------------------------------- adaptive
@dataclass(slots=True)
class AdaptiveParams(AlgoParams):
    """Post one limit order (at the request's price, else joining our side's best); every
    ``step_timeout_s`` without a full fill, improve it one grid tick toward the market (an amend),
    at most ``max_improvements`` times and never past the limit. Then ``final="rest"`` keeps it
    resting until ``timeout_s``; ``"cancel"`` ends one more step later."""

    step_timeout_s: float = 30.0
    max_improvements: int = 5
    final: str = "rest"

    def check(self) -> None:
        _require(self.step_timeout_s > 0, f"step_timeout_s {self.step_timeout_s!r} must be > 0")
        _require(self.max_improvements >= 0, f"max_improvements {self.max_improvements} must be >= 0")
        _require(self.final in ("rest", "cancel"), f"final {self.final!r} must be 'rest' or 'cancel'")


class AdaptiveAlgo(_Base):
    name = "adaptive"
    params_type = AdaptiveParams
    params: AdaptiveParams
    _child: Child | None = None
    _step_at: int | None = None
    improvements = 0

    def _step_ns(self) -> int:
        return int(self.params.step_timeout_s * self.patience * NS)

    def _on_start(self, now_ns: int, book: BookView) -> None:
        if not self._on_start_checked(now_ns, book):
            return
        if self.request.price is not None:
            price = self.request.target
        else:
            own = self._own_best(book)
            price = self._clamp(own) if own is not None else self.limit
        self._child = self._place(now_ns, price, self.target_size, tag="adaptive")
        self._step_at = now_ns + self._step_ns()

    def _on_timer(self, now_ns: int) -> None:
        c = self._child
        if self._step_at is None or now_ns < self._step_at or c is None:
            return
        if not c.live or c.open_size == 0:
            self._step_at = None
            return
        if self.improvements >= self.params.max_improvements:
            self._step_at = None
            if self.params.final == "cancel":
                self._finish(now_ns, "max_improvements")
            return
        nxt = self._toward_market(c.price)
        if nxt is None:
            self._note(now_ns, f"{c.child_id} is at the limit {self.limit}: no further improvement")
            self._step_at = None
            if self.params.final == "cancel":
                self._finish(now_ns, "at_limit")
            return
        if self._amend(now_ns, c, nxt):
            self.improvements += 1
            self._record(now_ns, "walk", c.child_id, price=nxt)
            self._step_at = now_ns + self._step_ns()
        else:
            self._step_at = now_ns + NS  # an operation is in flight: look again shortly

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        if child is not self._child:
            return
        if child.status == "rejected":
            self._child = self._place(now_ns, child.price, self.target_size, tag="adaptive")
            self._step_at = now_ns + self._step_ns()
        else:
            self._finish(now_ns, f"order_{child.status}")

    def _timer_ns(self) -> int | None:
        return self._step_at


# ---------------------------------------------------------------------------------------- vwslice
@dataclass(slots=True)
class VwsliceParams(AlgoParams):
    """Read the book once; split the target in proportion to the visible size of each level within
    the limit (at most ``max_levels``); place every split at its level's price at once."""

    max_levels: int = 5

    def check(self) -> None:
        _require(self.max_levels >= 1, f"max_levels {self.max_levels} must be >= 1")


def proportional_split(target: int, sizes: list[int], lot: int) -> list[int]:
    """``target`` split in proportion to ``sizes`` in whole lots; the rounding remainder goes to the first."""
    total = sum(sizes)
    if total <= 0 or not sizes:
        return []
    out = [(target * s // total) // lot * lot for s in sizes]
    out[0] += target - sum(out)
    return out


class VwsliceAlgo(_Base):
    name = "vwslice"
    params_type = VwsliceParams
    params: VwsliceParams

    def _on_start(self, now_ns: int, book: BookView) -> None:
        if not self._on_start_checked(now_ns, book):
            return
        n = 1 if self.aggression is Aggression.BEST_ONLY else self.params.max_levels
        lv = within_limit(self._take_levels(book, n), self.side, self.limit)[:n]
        if not lv:
            self._note(now_ns, "no visible size within the limit: one order at the target price")
            self._place(now_ns, self.request.target, self.target_size, tag="fallback")
            return
        for (price, _), q in zip(lv, proportional_split(self.target_size, [s for _, s in lv], self.lot)):
            if q > 0:
                self._record(now_ns, "split", price=price, size=q)
                self._place(now_ns, price, q, tag=f"level{price}")

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        if child.status == "rejected" and self.headroom > 0:
            self._place(now_ns, child.price, min(child.count, self.headroom), tag=child.tag)
        elif not self.live_children:
            self._finish(now_ns, "all_children_done")


# ---------------------------------------------------------------------------------------- walker
@dataclass(slots=True)
class WalkerParams(AlgoParams):
    """Dynamic depth walker (seeds 001/002). Split the target over the first levels of the take side
    within the limit (``split_weights``, at most ``max_split_levels``) when their cumulative depth is
    at least ``min_cumulative_depth`` (1e-2 contracts), else fall back to one order at the target
    price with no walking. Every ``walk_interval_seconds``, for each unfilled split: walk one tick
    toward the market when volume momentum (relative change of our side's depth against its mean over
    ``momentum_window_seconds``) reaches ``momentum_threshold``, or when the EMA (``ema_alpha``) of
    the take-side depth within the limit has fallen by ``depth_dry_up_threshold`` from arrival.
    Re-evaluation is ``aggressive_walk_multiplier`` times faster on a dry-up or a momentum spike (2x
    the threshold) and ``conservative_walk_multiplier`` times as fast with no signal. At most
    ``max_walks_per_order`` walks per split, via ``walk_via="amend"`` (one call) or ``"replace"``."""

    walk_interval_seconds: float = 4.0
    max_walks_per_order: int = 10
    min_cumulative_depth: int = 10000
    max_split_levels: int = 3
    split_weights: tuple[float, ...] = (0.6, 0.4)
    momentum_window_seconds: float = 30.0
    momentum_threshold: float = 0.10
    aggressive_walk_multiplier: float = 1.5
    conservative_walk_multiplier: float = 0.8
    ema_alpha: float = 0.3
    depth_dry_up_threshold: float = 0.5
    walk_via: str = "amend"
    depth_levels: int = 10

    def check(self) -> None:
        _require(self.walk_interval_seconds > 0, "walk_interval_seconds must be > 0")
        _require(self.max_walks_per_order >= 0, "max_walks_per_order must be >= 0")
        _require(self.min_cumulative_depth >= 0, "min_cumulative_depth must be >= 0 (1e-2 contracts)")
        _require(1 <= self.max_split_levels <= 10, "max_split_levels must be in 1..10")
        _require(len(self.split_weights) >= 1 and all(w > 0 for w in self.split_weights),
                 f"split_weights {self.split_weights!r} must be positive numbers, e.g. (0.6, 0.4)")
        _require(self.momentum_window_seconds > 0, "momentum_window_seconds must be > 0")
        _require(self.momentum_threshold >= 0, "momentum_threshold must be >= 0")
        _require(self.aggressive_walk_multiplier > 0 and self.conservative_walk_multiplier > 0,
                 "walk multipliers must be > 0")
        _require(0 < self.ema_alpha <= 1, f"ema_alpha {self.ema_alpha!r} must be in (0, 1]")
        _require(0 < self.depth_dry_up_threshold <= 1, "depth_dry_up_threshold must be in (0, 1]")
        _require(self.walk_via in ("amend", "replace"), f"walk_via {self.walk_via!r} must be 'amend' or 'replace'")
        _require(self.depth_levels >= 1, "depth_levels must be >= 1")


@dataclass(slots=True)
class Split:
    """One split of the walker: its share of the target and its current child."""

    index: int
    target: int
    price: int
    walking: bool = True
    walks: int = 0
    next_eval_ns: int | None = None
    replace_price: int | None = None
    child_ids: list[str] = field(default_factory=list)


class WalkerAlgo(_Base):
    name = "walker"
    params_type = WalkerParams
    params: WalkerParams

    def _on_start(self, now_ns: int, book: BookView) -> None:
        p = self.params
        self.splits: list[Split] = []
        self._samples: deque[tuple[int, int]] = deque()
        lv = within_limit(self._take_levels(book, p.depth_levels), self.side, self.limit)
        self.arrival_depth = sum(s for _, s in lv)
        self.ema_depth = float(self.arrival_depth)
        self._sample(now_ns, book, update_ema=False)
        if not self._on_start_checked(now_ns, book):
            return
        if not lv or self.arrival_depth < p.min_cumulative_depth:
            self._note(now_ns, f"depth within limit {self.arrival_depth} < min_cumulative_depth "
                               f"{p.min_cumulative_depth}: fall back to simple (one order, no walking)")
            plan = [(self.request.target, self.target_size, False)]
        else:
            n = min(p.max_split_levels, len(p.split_weights), len(lv))
            if self.aggression is Aggression.BEST_ONLY:
                n = 1
            weights = [_frac(w) for w in p.split_weights[:n]]
            total = sum(weights)
            sizes = [self._floor_lot(int(self.target_size * w / total)) for w in weights]
            sizes[0] += self.target_size - sum(sizes)
            plan = [(lv[k][0], sizes[k], True) for k in range(n) if sizes[k] > 0]
        interval = self._interval_ns(1.0)
        for i, (price, size, walking) in enumerate(plan):
            split = Split(i, size, price, walking, next_eval_ns=now_ns + interval if walking else None)
            self.splits.append(split)
            self._record(now_ns, "split", price=price, size=size)
            self._place_split(now_ns, split, price, size)

    # signals
    def _sample(self, now_ns: int, book: BookView, update_ema: bool = True) -> None:
        p = self.params
        own = sum(s for _, s in self._own_levels(book, p.depth_levels) if s > 0)
        self._samples.append((now_ns, own))
        horizon = now_ns - int(p.momentum_window_seconds * NS)
        while len(self._samples) > 2 and self._samples[0][0] < horizon:
            self._samples.popleft()
        if update_ema:
            depth = sum(s for _, s in within_limit(self._take_levels(book, p.depth_levels), self.side, self.limit))
            self.ema_depth = p.ema_alpha * depth + (1 - p.ema_alpha) * self.ema_depth

    def momentum(self, now_ns: int) -> float:
        """(current - mean of the earlier samples in the window) / that mean, on our side's depth."""
        horizon = now_ns - int(self.params.momentum_window_seconds * NS)
        vals = [v for t, v in self._samples if t >= horizon]
        if len(vals) < 2:
            return 0.0
        cur, prev = vals[-1], vals[:-1]
        avg = sum(prev) / len(prev)
        if avg <= 0:
            return 1.0 if cur > 0 else 0.0
        return (cur - avg) / avg

    def dry_up(self) -> float:
        """Forecast share of the arrival depth within the limit that has gone (EMA of the depth)."""
        if self.arrival_depth <= 0:
            return 0.0
        return max(0.0, 1.0 - self.ema_depth / self.arrival_depth)

    def _interval_ns(self, mult: float) -> int:
        return max(1, int(self.params.walk_interval_seconds * self.patience * NS / mult))

    # splits
    def _place_split(self, now_ns: int, split: Split, price: int, size: int) -> None:
        child = self._place(now_ns, price, size, tag=f"split{split.index}")
        if child is not None:
            split.child_ids.append(child.child_id)
            split.price = price

    def _split_of(self, child: Child) -> Split | None:
        for s in self.splits:
            if child.child_id in s.child_ids:
                return s
        return None

    def _split_committed(self, split: Split) -> int:
        return sum(self.children[c].cap for c in split.child_ids)

    def _current(self, split: Split) -> Child | None:
        if not split.child_ids:
            return None
        c = self.children[split.child_ids[-1]]
        return c if c.live else None

    def _on_book(self, now_ns: int, book: BookView) -> None:
        self._sample(now_ns, book)

    def _on_timer(self, now_ns: int) -> None:
        for split in self.splits:
            if split.next_eval_ns is not None and now_ns >= split.next_eval_ns:
                self._evaluate(now_ns, split)

    def _evaluate(self, now_ns: int, split: Split) -> None:
        p = self.params
        split.next_eval_ns = now_ns + self._interval_ns(1.0)
        child = self._current(split)
        if child is None or child.open_size == 0:
            if child is None and split.replace_price is None:
                split.next_eval_ns = None
            return
        if child.state == "pending" or child.pending or child.want_cancel:
            return
        mom, dry = self.momentum(now_ns), self.dry_up()
        drying = dry >= p.depth_dry_up_threshold
        spike = mom >= 2 * p.momentum_threshold
        walk = drying or mom >= p.momentum_threshold
        mult = p.aggressive_walk_multiplier if (drying or spike) else (
            1.0 if walk else p.conservative_walk_multiplier)
        split.next_eval_ns = now_ns + self._interval_ns(mult)
        if not walk or split.walks >= p.max_walks_per_order:
            return
        take_best = self._take_best(self.book) if self.book is not None else None
        if take_best is not None and not self._behind(child.price, take_best):
            return  # already at or through the other side: walking would not help
        nxt = self._toward_market(child.price)
        if nxt is None:
            return
        why = f"momentum {mom:.3f}, dry-up {dry:.3f}"
        if p.walk_via == "amend":
            if self._amend(now_ns, child, nxt):
                split.walks += 1
                split.price = nxt
                self._record(now_ns, "walk", child.child_id, price=nxt, text=why)
        else:
            split.walks += 1
            split.replace_price = nxt
            self._record(now_ns, "walk", child.child_id, price=nxt, text=why)
            self._cancel(now_ns, child)

    def _on_child_done(self, now_ns: int, child: Child) -> None:
        split = self._split_of(child)
        if split is None or child.child_id != split.child_ids[-1]:
            return
        rest = split.target - self._split_committed(split)
        if split.replace_price is not None:
            price, split.replace_price = split.replace_price, None
            if rest > 0:
                self._place_split(now_ns, split, price, rest)
        elif child.status == "rejected" and rest > 0:
            self._place_split(now_ns, split, child.price, rest)
        if not self.live_children and all(s.replace_price is None for s in self.splits):
            self._finish(now_ns, "all_splits_done")

    def _timer_ns(self) -> int | None:
        times = [s.next_eval_ns for s in self.splits if s.next_eval_ns is not None]
        return min(times) if times else None


# ---------------------------------------------------------------------------------------- registry
ALGORITHMS: dict[str, type[Algo]] = {
    "simple": SimpleAlgo, "capped": CappedAlgo, "slice": SliceAlgo, "twap": TwapAlgo,
    "adaptive": AdaptiveAlgo, "vwslice": VwsliceAlgo, "walker": WalkerAlgo,
}


def make_params(params_type: type[AlgoParams], values: Mapping[str, Any]) -> AlgoParams:
    """Build and check ``params_type`` from a mapping; unknown names are refused with the valid list."""
    names = {f.name for f in dataclasses.fields(params_type)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise RequestError(f"unknown parameter(s) {', '.join(unknown)} for {params_type.__name__}; "
                           f"valid: {', '.join(sorted(names))}")
    vals = dict(values)
    if "split_weights" in vals:
        vals["split_weights"] = tuple(float(w) for w in vals["split_weights"])
    try:
        return params_type(**vals)
    except TypeError as exc:
        raise RequestError(f"{params_type.__name__}: {exc}") from None


def build_algo(request: ExecutionRequest, market: MarketInfo, *, policy: LiquidityPolicy = DEFAULT_POLICY,
               execution_id: str | None = None) -> Algo:
    """The algorithm named by ``request.algo`` with ``request.params``. Parameter names that belong
    to :class:`LiquidityPolicy` (e.g. ``max_take_fraction``, ``conservative``) override ``policy``."""
    cls = ALGORITHMS.get(request.algo)
    if cls is None:
        raise RequestError(f"unknown algorithm {request.algo!r}; choose one of {', '.join(ALGORITHMS)}")
    policy_names = {f.name for f in dataclasses.fields(LiquidityPolicy)}
    pol = {k: v for k, v in request.params.items() if k in policy_names}
    rest = {k: v for k, v in request.params.items() if k not in policy_names}
    if pol:
        policy = dataclasses.replace(policy, **pol)
    params = make_params(cls.params_type, rest)
    return cls(request, market, params, policy=policy, execution_id=execution_id)
