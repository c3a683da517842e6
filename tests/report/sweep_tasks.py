"""A small but real task function for the sweep tests and the sweep benchmark: a toy market maker
replayed over a capture (the real frames of a kmm capture file), with the signature of
``kmm.research.backtest.run_backtest``. It writes ``tape.csv`` and ``summary.json`` like a backtest.

It is built by :func:`make_task` as a closure, so Ray ships it to workers by value (no test module
needs to be importable there)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any


def write_capture(path: Path, *, ticker: str = "KXTOY-26-A", n: int = 400, seed: int = 7) -> Path:
    """A capture in kmm's format (``KMMCAP1`` records) holding a snapshot and ``n`` random-walk deltas."""
    import json
    import random
    rng = random.Random(seed)
    t0 = 1_800_000_000_000_000_000
    frames = []
    yes = {4800: 1000, 4700: 2000}
    no = {5000: 1000, 4900: 2000}                       # best ask 0.50
    frames.append({"type": "orderbook_snapshot", "sid": 1, "seq": 1, "msg": {
        "market_ticker": ticker, "market_id": "x",
        "yes_dollars_fp": [[f"{p / 1e4:.4f}", f"{s / 100:.2f}"] for p, s in yes.items()],
        "no_dollars_fp": [[f"{p / 1e4:.4f}", f"{s / 100:.2f}"] for p, s in no.items()]}})
    for i in range(n):
        side = rng.choice(("yes", "no"))
        book = yes if side == "yes" else no
        best = max(book)
        px = best + rng.choice((-100, 0, 100))
        other = no if side == "yes" else yes
        if px + max(other) >= 10_000:                  # would cross: stay a tick behind
            px = 10_000 - max(other) - 100
        cur = book.get(px, 0)
        delta = rng.choice((500, 1000, -cur)) if cur else rng.choice((500, 1000))
        if len(book) == 1 and cur and delta == -cur:
            delta = 500
        book[px] = cur + delta
        if book[px] <= 0:
            del book[px]
        frames.append({"type": "orderbook_delta", "sid": 1, "seq": i + 2, "msg": {
            "market_ticker": ticker, "market_id": "x", "price_dollars": f"{px / 1e4:.4f}",
            "delta_fp": f"{delta / 100:.2f}", "side": side, "ts_ms": (t0 // 1_000_000) + i * 100}})
    with gzip.open(path, "wb") as f:
        f.write(b"KMMCAP1\n")
        for i, fr in enumerate(frames):
            b = json.dumps(fr).encode()
            f.write(struct.pack("<IIqq", len(b), zlib.crc32(b), i * 100_000_000, t0 + i * 100_000_000) + b)
    return path


def make_task(*, fail_when: dict[str, Any] | None = None, sleep_s: float = 0.0,
              calls_dir: str | None = None) -> Any:
    """The task: quote mid +- gamma dollars, fill when the market trades through, cap |position| at
    max_position (fills happen when the mid moves through a quote).
    ``fail_when={"gamma": 0.1, "max_position": 5000}`` raises for that cell;
    ``calls_dir`` gets one file per call (to count executions across processes)."""

    def toy_backtest(captures: list[Path], cfg: Any, out: Path, *, seed: int = 0,
                     progress: Any = None) -> dict[str, Any]:
        import json
        import os
        import time
        import uuid

        from kmm.record.capture import read_capture
        from kmm.record.tape import TapeRow, TapeWriter
        from kmm.report.data import replay_bbo
        if calls_dir is not None:
            Path(calls_dir, f"{os.getpid()}-{uuid.uuid4().hex}").write_text(json.dumps(
                {"gamma": cfg.strategy.gamma, "max_position": cfg.strategy.max_position}))
        if sleep_s:
            time.sleep(sleep_s)
        p = cfg.strategy
        if fail_when and p.gamma == fail_when["gamma"] and p.max_position == fail_when["max_position"]:
            raise ValueError(f"toy backtest refuses gamma={p.gamma} with max_position={p.max_position}")
        frames = [(r.wall_ns, r.frame) for c in captures for r in read_capture(c)]
        (ticker, pts), = replay_bbo(frames).items()
        half = int(round(p.gamma * 10_000 / 2))
        size = p.quote_size
        pos = cash = fills = bought = sold = 0
        tape = TapeWriter(out / "tape.csv", fsync_on_close=False)
        prev = None
        for ts, bid, ask in pts:
            if bid is None or ask is None:
                continue
            mid = (bid + ask) / 2
            if prev is not None:
                my_bid, my_ask = int(prev - half), int(prev + half)
                # the mid trading through our quote fills it (a toy rule, not a queue model)
                if mid <= my_bid and pos + size <= p.max_position:
                    pos += size
                    cash -= size * my_bid // 100
                    fills += 1
                    bought += size
                if mid >= my_ask and pos - size >= -p.max_position:
                    pos -= size
                    cash += size * my_ask // 100
                    fills += 1
                    sold += size
            prev = mid
            tape.write(TapeRow(ts_ns=ts, ticker=ticker, event="decision", mid=mid, inventory=pos,
                               unrealized_pnl=int(cash + pos * mid // 100)))
        tape.close()
        net = int(cash + pos * prev // 100) if prev is not None else 0
        summary = {"schema": 1, "mode": "backtest", "venue": "toy", "markets": [ticker],
                   "start_ns": pts[0][0], "end_ns": pts[-1][0], "fills": fills,
                   "contracts_bought": f"{bought / 100:.2f}", "contracts_sold": f"{sold / 100:.2f}",
                   "fees": "0.0000", "realized_pnl": "0.0000", "unrealized_pnl": f"{net / 1e4:.4f}",
                   "net_pnl": f"{net / 1e4:.4f}", "positions": {ticker: f"{pos / 100:.2f}"},
                   "book_messages": len(frames), "orders_sent": 0, "messages_per_s": 0.0, "pid": os.getpid(),
                   "capture_read": str(captures[0])}
        (out / "summary.json").write_text(json.dumps(summary))
        return summary

    return toy_backtest
