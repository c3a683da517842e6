"""Build small captures frame by frame for replay tests."""

from __future__ import annotations

from pathlib import Path

import orjson

from kmm.record.capture import CaptureWriter, write_market_defs

T = "KXTEST-26-A"
MS = 1_000_000
WALL0 = 1_795_000_000_000_000_000
LINEAR = [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}]


def px(p: int) -> str:
    return f"{p // 10000}.{p % 10000:04d}"


def cnt(c: int) -> str:
    sign = "-" if c < 0 else ""
    c = abs(c)
    return f"{sign}{c // 100}.{c % 100:02d}"


class Cap:
    """Frames with times; ``write(dir)`` makes capture.bin.gz + markets.json there."""

    def __init__(self, ticker: str = T, maker_rate_e6: int = 0, taker_rate_e6: int = 70_000) -> None:
        self.t = ticker
        self.frames: list[tuple[int, bytes]] = []
        self.seq = 0
        self.maker = maker_rate_e6
        self.taker = taker_rate_e6

    def _add(self, at_ms: float, obj: dict) -> None:
        self.frames.append((int(at_ms * MS), orjson.dumps(obj)))

    def snapshot(self, at_ms: float, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> Cap:
        """bids: YES (price, size); asks: YES (price, size) -> NO levels at 1 - price."""
        self.seq += 1
        msg = {"market_ticker": self.t, "market_id": "m1",
               "yes_dollars_fp": [[px(p), cnt(s)] for p, s in bids],
               "no_dollars_fp": [[px(10000 - p), cnt(s)] for p, s in asks]}
        self._add(at_ms, {"type": "orderbook_snapshot", "sid": 1, "seq": self.seq, "msg": msg})
        return self

    def delta(self, at_ms: float, side: str, yes_price: int, delta: int, coid: str | None = None) -> Cap:
        """side 'bid' changes the YES bid level at yes_price; 'ask' the NO level at 1 - yes_price."""
        self.seq += 1
        p = yes_price if side == "bid" else 10000 - yes_price
        msg = {"market_ticker": self.t, "market_id": "m1", "price_dollars": px(p), "delta_fp": cnt(delta),
               "side": "yes" if side == "bid" else "no", "ts_ms": (WALL0 + int(at_ms * MS)) // MS}
        if coid:
            msg["client_order_id"] = coid
            msg["subaccount"] = 0
        self._add(at_ms, {"type": "orderbook_delta", "sid": 1, "seq": self.seq, "msg": msg})
        return self

    def trade(self, at_ms: float, yes_price: int, count: int, taker: str, trade_id: str) -> Cap:
        msg = {"trade_id": trade_id, "market_ticker": self.t, "yes_price_dollars": px(yes_price),
               "no_price_dollars": px(10000 - yes_price), "count_fp": cnt(count),
               "taker_book_side": taker, "ts_ms": (WALL0 + int(at_ms * MS)) // MS}
        self._add(at_ms, {"type": "trade", "sid": 2, "msg": msg})
        return self

    def lifecycle(self, at_ms: float, event: str, result: str | None = None) -> Cap:
        msg = {"market_ticker": self.t, "event_type": event, "ts_ms": (WALL0 + int(at_ms * MS)) // MS}
        if result:
            msg["result"] = result
        self._add(at_ms, {"type": "market_lifecycle_v2", "sid": 3, "msg": msg})
        return self

    def raw(self, at_ms: float, frame: bytes) -> Cap:
        self.frames.append((int(at_ms * MS), frame))
        return self

    def write(self, d: Path, name: str = "capture.bin.gz") -> Path:
        d.mkdir(parents=True, exist_ok=True)
        w = CaptureWriter(d / name)
        for t, f in self.frames:
            w.write(t, f, WALL0 + t)
        w.close()
        write_market_defs(d, {self.t: {"price_ranges": LINEAR, "maker_rate_e6": self.maker,
                                      "taker_rate_e6": self.taker, "close_time_ns": None,
                                      "fractional": False, "status": "active"}})
        return d


class FixedQuotes:
    """A strategy that always wants the same quotes (for tests that control where orders go)."""

    name = "fixed"

    def __init__(self, bid: int = 0, ask: int = 0, size: int = 1000) -> None:
        self.bid, self.ask, self.size = bid, ask, size

    def target(self, inp, out):
        out.bid_price, out.bid_size = (self.bid, self.size) if self.bid else (0, 0)
        out.ask_price, out.ask_size = (self.ask, self.size) if self.ask else (0, 0)
        return out
