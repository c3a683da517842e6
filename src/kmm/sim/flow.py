"""Synthetic participants, deterministic by seed: they trade inside the engine as other users.

Per market, one ``random.Random`` seeded from (seed, ticker) drives a fair value that diffuses and
sometimes jumps, a liquidity provider that keeps a ladder of quotes around it, noise takers that arrive at
random, and an informed taker that hits quotes on the wrong side of the fair value.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

from kmm import protocol
from kmm.sim.engine import ASK, BID, RESTING, Account, Engine, Market, Order
from kmm.sim.rejects import Reject
from kmm.sim.wire import grid_prices


@dataclass(slots=True, frozen=True)
class FlowProfile:
    tick_s: float  # seconds between steps of one market
    sigma: float  # fair value diffusion per sqrt(second)
    jump_p: float  # jump probability per second
    noise_rate: float  # noise takers per second
    informed_rate: float  # informed checks per second
    levels: int  # ladder levels per side
    half_spread: float  # dollars


PROFILES = {
    "calm": FlowProfile(0.25, 0.004, 0.005, 0.5, 0.3, 4, 0.02),
    "busy": FlowProfile(0.02, 0.01, 0.02, 20.0, 5.0, 6, 0.015),
}


class MarketFlow:
    def __init__(self, engine: Engine, m: Market, seed: int, profile: FlowProfile,
                 lp: Account, noise: Account, informed: Account) -> None:
        self.engine = engine
        self.m = m
        self.rng = random.Random(f"{seed}:{m.ticker}")
        self.p = profile
        self.fair = m.spec.fair_value
        self.grid = grid_prices(m.structure)
        self.lp, self.noise, self.informed = lp, noise, informed
        self.quotes: dict[tuple[int, int], Order] = {}
        self.n = 0

    def regrid(self) -> None:
        """The market's grid changed: snap future quotes to the new one."""
        self.grid = grid_prices(self.m.structure)

    def snap(self, x: float, side: int) -> int:
        """The grid price at or below (bids) / at or above (asks) ``x`` dollars."""
        v = int(round(x * 10000))
        g = self.grid
        if side == BID:
            i = bisect.bisect_right(g, v) - 1
            return g[max(0, i)]
        i = bisect.bisect_left(g, v)
        return g[min(len(g) - 1, i)]

    def _order(self, a: Account, side: int, price: int, count: int, tif: str) -> Order | None:
        self.n += 1
        # the ticker keeps the coid unique per account: every market's flow counts from 1, and a
        # repeated coid is refused, which left every market but the first with an empty book at start
        coid = f"flow-{a.key_id}-{self.m.ticker}-{self.n}"
        try:
            return self.engine.place(a, self.m.ticker, side, price, count, coid=coid,
                                     tif=tif, stp=protocol.STP_MAKER)
        except Reject:
            return None

    def step(self, dt: float) -> None:
        if self.m.status != "active" or self.engine.paused[self.m.shard] is not None:
            return
        r, p = self.rng, self.p
        self.fair += p.sigma * math.sqrt(dt) * r.gauss(0.0, 1.0)
        if r.random() < p.jump_p * dt:
            self.fair += r.choice((-1, 1)) * r.uniform(0.03, 0.10)
        self.fair = min(0.95, max(0.05, self.fair))
        self._refill()
        lam = p.noise_rate * dt
        while r.random() < lam:
            lam -= 1.0
            side = r.choice((BID, ASK))
            size = r.randint(1, 10) * 100
            px = self.snap(self.fair + 0.08, ASK) if side == BID else self.snap(self.fair - 0.08, BID)
            self._order(self.noise, side, px, size, protocol.TIF_IOC)
        if r.random() < p.informed_rate * dt:
            ba, bb = self.m.best_ask(), self.m.best_bid()
            fv = int(self.fair * 10000)
            if ba and ba < fv - 100:
                self._order(self.informed, BID, ba, r.randint(1, 5) * 100, protocol.TIF_IOC)
            elif bb and bb > fv + 100:
                self._order(self.informed, ASK, bb, r.randint(1, 5) * 100, protocol.TIF_IOC)

    def _refill(self) -> None:
        p, r = self.p, self.rng
        for k in range(p.levels):
            off = p.half_spread + 0.01 * k
            for side in (BID, ASK):
                want = self.snap(self.fair - off, BID) if side == BID else self.snap(self.fair + off, ASK)
                o = self.quotes.get((side, k))
                if o is not None and o.status == RESTING and abs(o.price - want) <= 100:
                    continue
                if o is not None and o.status == RESTING:
                    self.engine._cancel_resting(o)  # noqa: SLF001 (the flow lives inside the engine)
                size = r.randint(5, 30) * 100
                # never cross: a quote that would trade is left for the next step
                if (side == BID and self.m.best_ask() and want >= self.m.best_ask()) or \
                        (side == ASK and self.m.best_bid() and want <= self.m.best_bid()):
                    self.quotes.pop((side, k), None)
                    continue
                new = self._order(self.lp, side, want, size, protocol.TIF_GTC)
                if new is not None:
                    self.quotes[(side, k)] = new
