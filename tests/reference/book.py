"""Plain-Python reference for kmm._core.book, with the fixed-point parser and price grid it needs.

Written from the spec (docs/core-book.md): dicts of price -> size per side, asks implied by NO bids,
no attention to speed. The compiled book must answer every query exactly like this one.
"""

from __future__ import annotations

import re
from typing import Any

QTY_MAX = 10**14
_DECIMAL = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?", re.ASCII)


def _bands(edge: str, centre: str, lo: str = "0.1000", hi: str = "0.9000") -> tuple[tuple[str, str, str], ...]:
    return (("0.0000", lo, edge), (lo, hi, centre), (hi, "1.0000", edge))


# kalshi-api.md section 2.2, one line per row of its table: "center_{c}_edge_{e}_cent" with whole
# $0.01, half $0.005, quint $0.002, deci $0.001, centi $0.0001; edges below $0.10 and above $0.90.
STRUCTURES = {
    "linear_cent": (("0.0000", "1.0000", "0.0100"),),
    "deci_cent": (("0.0000", "1.0000", "0.0010"),),
    "tapered_deci_cent": _bands("0.0010", "0.0100"),
    "center_whole_edge_half_cent": _bands("0.0050", "0.0100"),
    "center_whole_edge_quint_cent": _bands("0.0020", "0.0100"),
    "center_half_edge_half_cent": (("0.0000", "1.0000", "0.0050"),),
    "center_half_edge_quint_cent": _bands("0.0020", "0.0050"),
    "center_half_edge_deci_cent": _bands("0.0010", "0.0050"),
    "center_quint_edge_quint_cent": (("0.0000", "1.0000", "0.0020"),),
    "center_quint_edge_deci_cent": _bands("0.0010", "0.0020"),
    "center_centi_edge_centi_cent": (("0.0000", "1.0000", "0.0001"),),
    "center_deci_edge_centi_cent": _bands("0.0001", "0.0010", "0.0100", "0.9900"),
}


class BookError(ValueError):
    pass


def parse_fixed(text: Any, scale: int, signed: bool) -> int | None:
    """"0.4275" -> 4275 at scale 4; None when malformed (the rules of kmm._core.fixed.parse_fixed)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not isinstance(text, str):
        return None
    m = _DECIMAL.fullmatch(text)
    if m is None:
        return None
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if sign and not signed:
        return None
    if not whole and not frac:
        return None
    if len(frac) > scale or len(whole) + len(frac) > 17 or len(whole) + scale > 18:
        return None
    value = int(whole or "0") * 10**scale + int(frac.ljust(scale, "0") or "0")
    return -value if sign == "-" else value


class RefGrid:
    """The set of valid prices of a market."""

    def __init__(self, price_ranges: Any = None) -> None:
        if price_ranges is None:
            price_ranges = STRUCTURES["linear_cent"]
        elif isinstance(price_ranges, str):
            price_ranges = STRUCTURES[price_ranges]
        self.valid: set[int] = set()
        steps = []
        for r in price_ranges:
            if isinstance(r, dict):
                r = (r["start"], r["end"], r["step"])
            start, end, step = (parse_fixed(x, 4, False) for x in r)
            assert start is not None and end is not None and step
            steps.append(step)
            self.valid.update(p for p in range(start, end + 1, step) if 0 < p < 10000)
        self.step_min = min(steps)
        self.prices = sorted(self.valid)

    def snap_down(self, price: int) -> int | None:
        below = [p for p in self.prices if p <= price]
        return below[-1] if below else None

    def snap_up(self, price: int) -> int | None:
        above = [p for p in self.prices if p >= price]
        return above[0] if above else None

    def ticks_px(self, n: int, price: int = 5000, min_px: int = 0) -> int:
        """n valid prices up from the valid price at or below price (down when the grid ends)."""
        if n == 0:
            return max(min_px, 0)
        lo = self.snap_down(price)
        if lo is None:
            lo = self.prices[0]
        i = self.prices.index(lo)
        if i + n < len(self.prices):
            return max(self.prices[i + n] - lo, min_px)
        return max(lo - self.prices[max(i - n, 0)], min_px)


SIDES = ("yes", "no")


class RefBook:
    def __init__(self, price_ranges: Any = None) -> None:
        self.grid = RefGrid(price_ranges)
        self.side: list[dict[int, int]] = [{}, {}]  # 0 = YES bids, 1 = NO bids, own terms
        self.version = 0

    def on_grid(self, side: int, price: int) -> bool:
        """A YES bid at p must be a valid price; a NO bid at p is a YES ask at 10000 - p."""
        return (price if side == 0 else 10000 - price) in self.grid.valid

    # ---- updates ----
    def regrid(self, price_ranges: Any) -> None:
        self.grid = RefGrid(price_ranges)
        self.side = [{}, {}]
        self.version += 1

    def _check(self, side: Any, price: int, amount: int) -> None:
        if side not in (0, 1):
            raise BookError(f"unknown side {side!r}")
        if not 0 < price < 10000 or not self.on_grid(side, price):
            raise BookError(f"{side} price {price} off the grid")
        if abs(amount) > QTY_MAX:
            raise BookError(f"{side} size {amount} out of range")

    def apply_level_delta(self, side: int, price: int, delta: int) -> None:
        self._check(side, price, delta)
        new = self.side[side].get(price, 0) + delta
        if new < 0:
            raise BookError(f"{SIDES[side]} level at price {price}: delta {delta} desync")
        if new > QTY_MAX:
            raise BookError("size out of range")
        if new == 0:
            self.side[side].pop(price, None)
        else:
            self.side[side][price] = new
        self.version += 1

    def apply_delta(self, side: Any, price: Any, delta: Any) -> None:
        if side not in SIDES:
            raise BookError(f"unknown side {side!r}")
        p = parse_fixed(price, 4, False)
        d = parse_fixed(delta, 2, True)
        if p is None or d is None:
            raise BookError(f"{side} level at price {price!r}: unparseable {delta!r}")
        self.apply_level_delta(SIDES.index(side), p, d)

    def apply_deltas(self, sides: Any, prices: Any, deltas: Any) -> int:
        if not len(sides) == len(prices) == len(deltas):
            raise BookError("lengths differ")
        saved = ([dict(s) for s in self.side], self.version)
        try:
            for s, p, d in zip(sides, prices, deltas):
                self.apply_level_delta(int(s), int(p), int(d))
        except BookError:
            self.side, self.version = saved
            raise
        return len(sides)

    def apply_snapshot(self, yes: Any, no: Any) -> None:
        staged: list[dict[int, int]] = [{}, {}]
        for side, levels in enumerate((yes, no)):
            if levels is None:
                continue
            if not isinstance(levels, (list, tuple)):
                raise BookError("side is not a list")
            for level in levels:
                if not isinstance(level, (list, tuple)) or len(level) != 2:
                    raise BookError(f"{level!r} is not a pair")
                price = parse_fixed(level[0], 4, False)
                size = parse_fixed(level[1], 2, False)
                if price is None or size is None:
                    raise BookError(f"{SIDES[side]} level {level!r} unparseable")
                if not 0 < price < 10000 or not self.on_grid(side, price):
                    raise BookError(f"{SIDES[side]} price {price} off the grid")
                if size > QTY_MAX:
                    raise BookError("size out of range")
                if size == 0:
                    continue
                if price in staged[side]:
                    raise BookError("duplicate level")
                staged[side][price] = size
        self.side = staged
        self.version += 1

    def clear(self) -> None:
        self.side = [{}, {}]
        self.version += 1

    # ---- queries ----
    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        out = sorted(self.side[0].items(), reverse=True)
        return out if n is None else out[:n]

    def no_bids(self, n: int | None = None) -> list[tuple[int, int]]:
        out = sorted(self.side[1].items(), reverse=True)
        return out if n is None else out[:n]

    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        out = [(10000 - p, s) for p, s in sorted(self.side[1].items(), reverse=True)]
        return out if n is None else out[:n]

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sorted(self.side[0].items()), sorted(self.side[1].items())

    def best_bid(self) -> int | None:
        return max(self.side[0]) if self.side[0] else None

    def best_no_bid(self) -> int | None:
        return max(self.side[1]) if self.side[1] else None

    def best_ask(self) -> int | None:
        return 10000 - max(self.side[1]) if self.side[1] else None

    def best_bid_size(self) -> int:
        return self.side[0][max(self.side[0])] if self.side[0] else 0

    def best_ask_size(self) -> int:
        return self.side[1][max(self.side[1])] if self.side[1] else 0

    def spread(self) -> int | None:
        b, a = self.best_bid(), self.best_ask()
        return None if b is None or a is None else a - b

    def mid(self) -> float | None:
        b, a = self.best_bid(), self.best_ask()
        return None if b is None or a is None else (b + a) / 2

    def microprice(self) -> float | None:
        b, a = self.best_bid(), self.best_ask()
        if b is None or a is None:
            return None
        bs, as_ = self.best_bid_size(), self.best_ask_size()
        return (b * as_ + a * bs) / (bs + as_)

    def is_crossed(self) -> bool:
        b, a = self.best_bid(), self.best_ask()
        return b is not None and a is not None and b >= a

    def is_empty(self) -> bool:
        return not self.side[0] and not self.side[1]

    def size_at(self, side: str, price: int) -> int:
        return self.side[SIDES.index(side)].get(price, 0)

    def _taker_levels(self, side: str) -> list[tuple[int, int]]:
        if side == "buy":
            return self.asks()
        if side == "sell":
            return self.bids()
        raise BookError(f"unknown taker side {side!r}")

    def levels_within(self, side: str, limit: int) -> list[tuple[int, int]]:
        ok = (lambda p: p <= limit) if side == "buy" else (lambda p: p >= limit)
        out = []
        for p, s in self._taker_levels(side):
            if not ok(p):
                break
            out.append((p, s))
        return out

    def depth_within(self, side: str, limit: int) -> int:
        return sum(s for _, s in self.levels_within(side, limit))

    def cum_depth(self, side: str, n: int) -> list[int]:
        out, total = [], 0
        for _, s in self._taker_levels(side)[:n]:
            total += s
            out.append(total)
        return out

    def _sweep(self, side: str, size: int) -> tuple[int, int] | None:
        if not 0 < size <= QTY_MAX:
            raise BookError("size out of range")
        left, cost, px = size, 0, 0
        for px, s in self._taker_levels(side):
            take = min(s, left)
            cost += px * take
            left -= take
            if left == 0:
                return cost, px
        return None

    def buy_vwap(self, size: int) -> float | None:
        r = self._sweep("buy", size)
        return None if r is None else r[0] / size

    def sell_vwap(self, size: int) -> float | None:
        r = self._sweep("sell", size)
        return None if r is None else r[0] / size

    def sweep_price(self, side: str, size: int) -> int | None:
        r = self._sweep(side, size)
        return None if r is None else r[1]
