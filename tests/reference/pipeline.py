"""Plain-Python reference of one market's whole decision (kmm._core.pipeline.Pipeline), written from
the rules of kmm.engine.market, kmm.strategy.{signals,stoikov,inside} and docs/core-quote.md.

Built only from the other references (book, OFI, quote, diff): the book's best prices with our own
acknowledged orders taken out, the mid and microprice, the volatility EWMA sampled on a 1 s grid, the
OFI skew, the model horizon, then the Avellaneda-Stoikov quote or the inside maker, then the diff.
Floats follow the documented formulas in the same order, so decisions compare exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tests.reference import diff as ref_diff
from tests.reference import quote as ref_quote
from tests.reference.book import RefGrid
from tests.reference.ofi import RefOFI

NS_PER_S = 1_000_000_000


@dataclass
class RefConfig:
    strategy: str                      # "stoikov" | "inside"
    gamma: float = 0.1 / 10_000        # per (1e-4 $ x contract)
    kappa: float = 100 / 10_000        # per 1e-4 $
    quote_size: int = 1000
    max_position: int = 10_000
    maker_fee_rate_e6: int = 0
    min_spread: int = 100
    min_edge: float = 0.0
    size_step: int = 100
    use_microprice: bool = True
    ofi_weight: float = 0.0
    horizon_s: float = 3600.0
    close_time_ns: int | None = None
    sigma_halflife_s: float = 60.0
    price_tol: int = 100
    size_tol: int = 0
    max_age_ns: int | None = None


class PipelineGrid(RefGrid):
    """The reference grid with the next-price steps the reference quote walks with."""

    def tick_up(self, price: int) -> int | None:
        return self.snap_up(price + 1)

    def tick_down(self, price: int) -> int | None:
        return self.snap_down(price - 1)


class RefVol:
    """EWMA of dm^2/dt sampled at most once a second, prior 5.0 until 5 samples."""

    def __init__(self, halflife_s: float, prior: float = 5.0, min_samples: int = 5) -> None:
        self.halflife_s, self.prior, self.min_samples = halflife_s, prior, min_samples
        self.var = prior * prior
        self.last: tuple[float, int] | None = None
        self.samples = 0

    def update(self, mid: float | None, now_ns: int) -> None:
        if mid is None:
            return
        if self.last is None:
            self.last = (mid, now_ns)
            return
        if now_ns - self.last[1] < NS_PER_S:
            return
        dt = (now_ns - self.last[1]) / 1e9
        w = 1.0 - math.exp(-math.log(2.0) * dt / self.halflife_s)
        self.var += w * ((mid - self.last[0]) ** 2 / dt - self.var)
        self.samples += 1
        self.last = (mid, now_ns)

    @property
    def sigma(self) -> float:
        return self.prior if self.samples < self.min_samples else math.sqrt(max(self.var, 0.0))


class RefKappa:
    """kappa = 1 / EWMA(|trade - mid|, floored at 10), alpha 0.05; the prior until 20 trades."""

    def __init__(self, prior: float) -> None:
        self.prior, self.mean, self.samples = prior, 1.0 / prior, 0

    def observe(self, price: int, mid: float | None) -> None:
        if mid is not None:
            self.mean += 0.05 * (max(abs(price - mid), 10.0) - self.mean)
            self.samples += 1

    @property
    def kappa(self) -> float:
        return self.prior if self.samples < 20 else 1.0 / self.mean


def best_ex_own(levels: list[tuple[int, int]], own: dict[int, int]) -> tuple[int, int]:
    for price, size in levels:
        if size - own.get(price, 0) > 0:
            return price, size - own.get(price, 0)
    return 0, 0


class RefPipeline:
    def __init__(self, cfg: RefConfig, grid: Any, ofi: RefOFI | None = None) -> None:
        self.cfg, self.grid, self.ofi = cfg, grid, ofi
        self.params = ref_quote.RefParams(grid, cfg.gamma, cfg.kappa, cfg.quote_size, cfg.max_position,
                                          cfg.max_position, cfg.maker_fee_rate_e6, cfg.min_spread,
                                          cfg.min_edge, cfg.size_step)
        self.vol = RefVol(cfg.sigma_halflife_s)
        self.kappa_est = RefKappa(cfg.kappa)
        self.kappa = cfg.kappa
        self.ofi_skew = 0.0
        self.best = (0, 0)
        self.mid: float | None = None
        self.micro: float | None = None
        self.sigma = 0.0
        self.tau = 0.0
        self.target = (0, 0, 0, 0)

    def on_book(self, book: Any, now_ns: int, wall_ns: int, live: list[Any]) -> None:
        own: tuple[dict[int, int], dict[int, int]] = ({}, {})
        for o in live:      # LiveOrder(order_id, side, price, remaining, age_ns, coid, actionable)
            if o[0] is not None and o[3] > 0:
                d = own[0 if o[1] == "bid" else 1]
                d[o[2]] = d.get(o[2], 0) + o[3]
        bids, asks = book.bids(), book.asks()
        bb, bbs = best_ex_own(bids, own[0])
        ba, bas = best_ex_own(asks, own[1])
        self.best = (bb, ba)
        if bb and ba:
            self.mid = (bb + ba) / 2
            self.micro = (bb * bas + ba * bbs) / (bbs + bas) if bbs + bas else self.mid
        else:
            self.mid = self.micro = None
        self.vol.update(self.mid, now_ns)
        self.sigma = self.vol.sigma
        if self.ofi is not None:
            self.ofi.update(book, now_ns)
            if self.cfg.ofi_weight:
                depth = sum(r[2][0] for r in self.ofi.ring)
                # the compiled formula: float(sum_e) * 2.0 * count / float(depth), left to right
                norm = 0.0 if depth == 0 else float(self.ofi.window_sum) * 2.0 * len(self.ofi.ring) / float(depth)
                self.ofi_skew = self.cfg.ofi_weight * 10_000.0 * norm
        close = self.cfg.close_time_ns
        left = None if close is None else max(0.0, (close - wall_ns) / NS_PER_S)
        h = self.cfg.horizon_s
        if h > 0:
            self.tau = h if left is None else min(h, left)
        else:
            self.tau = 3600.0 if left is None else left

    def on_trade(self, price: int) -> None:
        """A trade in the market (kappa is estimated from where trades print)."""
        self.kappa_est.observe(price, self.mid)
        self.kappa = self.kappa_est.kappa

    def decide(self, inventory: int, live: list[Any], alpha: float = 0.0, rooms: tuple[int, int] | None = None,
               step: int = 100) -> list[tuple[Any, ...]]:
        """The actions. ``rooms``: how far a place may lower its event's P&L on each side (1e-6 $,
        EventRiskGate.place_rooms); a place whose least size (``step``, or 1 for a size that is no whole
        number of contracts) at its price goes past it (a bid
        lowers it by ``step * price``, an ask by ``step * (1$ - price)``) is left out, every other
        action stays."""
        cfg = self.cfg
        bb, ba = self.best
        if cfg.strategy == "stoikov":
            ref = self.micro if cfg.use_microprice else self.mid
            if ref is None:
                t = (0, 0, 0, 0)
            else:
                if self.kappa > 0 and abs(self.kappa - self.params.kappa) > 0.01 * self.params.kappa:
                    self.params = replace(self.params, kappa=self.kappa)
                q = ref_quote.compute(self.params, ref, inventory, self.tau, self.sigma, self.ofi_skew, alpha,
                                      bb, ba)
                t = (q.bid_price, q.bid_size, q.ask_price, q.ask_size)
        else:
            t = (0, 0, 0, 0)
            if bb and ba and ba > bb:
                bid, ask = self.grid.snap_up(bb + 1), self.grid.snap_down(ba - 1)
                if bid is not None and ask is not None and bid <= ask:
                    bs = max(0, min(cfg.quote_size, cfg.max_position - inventory))
                    asz = max(0, min(cfg.quote_size, cfg.max_position + inventory))
                    if bid == ask:
                        if inventory > 0:
                            bs = 0
                        else:
                            asz = 0
                    t = (bid if bs else 0, bs, ask if asz else 0, asz)
        self.target = t
        view = [(o[5], 0 if o[1] == "bid" else 1, o[2], o[3], o[4]) for o in live]
        acts = ref_diff.diff(((t[0], t[1]), (t[2], t[3])), view, cfg.price_tol, cfg.size_tol, cfg.max_age_ns)
        if rooms is None:
            return acts
        return [a for a in acts
                if not (a[0] == ref_diff.PLACE and (step if a[4] % 100 == 0 else 1)
                        * (a[3] if a[1] == 0 else 10_000 - a[3]) > rooms[a[1]])]
