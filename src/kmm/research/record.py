"""``kmm record``: capture the public feed of some markets without trading.

Subscribes to the book (``orderbook_delta``), ``trade``, ``ticker`` and ``market_lifecycle_v2`` of the
markets (no user channels, no orders) and writes every received frame, with its receive times, into
the capture format of ``kmm.record.capture``; ``markets.json`` beside it holds each market's grid, fee
rates and close time, so the capture replays on its own. Long recordings rotate files
(``--rotate-mb``/``--rotate-s``); a lost connection is written into the capture as a gap frame, and the
connector reconnects, resubscribes and resnapshots as it does for ``kmm run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kmm._core.grid import Grid
from kmm.engine.market import read_fee_rates
from kmm.errors import ConfigError, KmmError
from kmm.kalshi.ws import MARKET_CHANNELS, FeedHandler

log = logging.getLogger("kmm.research.record")


class RecordHandler(FeedHandler):
    """Every frame to the capture; a lost connection as a gap frame."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.frames = 0
        self.gaps = 0
        self.closing = False

    def on_raw_frame(self, recv_ns: int, data: bytes) -> None:
        self.frames += 1
        self.writer.write(recv_ns, data)

    def on_disconnected(self, reason: str) -> None:
        from kmm.record.capture import gap_frame
        if self.closing:
            return
        self.gaps += 1
        log.warning("connection lost (%s): recorded as a gap; reconnecting", reason)
        self.writer.write(time.monotonic_ns(), gap_frame(reason, time.time_ns()), time.time_ns())

    def on_book_stale(self, ticker: str, reason: str) -> None:
        log.warning("%s: book stale (%s); the connector asks for a snapshot", ticker, reason)


async def market_def(rest: Any, ticker: str) -> tuple[dict[str, Any], Any]:
    """A market's ``markets.json`` entry, read over REST (fee rates from its series, as kmm run does)."""
    from kmm.engine.live import _iso_to_ns
    raw = await rest.get_market_raw(ticker)
    grid = Grid(raw.get("price_ranges") or raw.get("price_level_structure") or None)
    fee_type, mult, maker, taker = await read_fee_rates(rest, ticker, raw)
    fmt = lambda p: f"{p // 10000}.{p % 10000:04d}"  # noqa: E731
    d = {"price_ranges": [{"start": fmt(a), "end": fmt(b), "step": fmt(st)} for a, b, st in grid.ranges],
         "maker_rate_e6": maker, "taker_rate_e6": taker, "close_time_ns": _iso_to_ns(raw.get("close_time")),
         "fractional": True,  # 0.01 counts on every market (kalshi-api.md 2.2)
         "status": str(raw.get("status", "active")),
         "fee_type": fee_type, "fee_multiplier": str(mult), "raw": raw}
    return d, raw.get("price_ranges") or d["price_ranges"]


async def record(cfg: Any, args: argparse.Namespace, explicit: bool, out: Path, *, duration_s: float,
                 rotate_bytes: int, rotate_s: float, stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Record until ``duration_s`` passes (0: until ``stop``/SIGINT). Returns counts."""
    from kmm.engine.app import open_venue
    from kmm.kalshi import KalshiRest, KalshiWs
    from kmm.record.capture import RotatingCaptureWriter, write_market_defs
    from kmm.record.recorder import next_capture_path
    stop = stop or asyncio.Event()
    async with open_venue(cfg, args, explicit) as venue:
        markets = list(cfg.run.markets) or (list(venue.sim.tickers[:len(cfg.sim.markets)]) if venue.sim else [])
        if not markets:
            raise ConfigError("kmm record needs markets: --markets T1,T2")
        out.mkdir(parents=True, exist_ok=True)
        rest = KalshiRest(venue.conn)
        await rest.start()
        try:
            defs, ranges = {}, {}
            for t in markets:
                defs[t], ranges[t] = await market_def(rest, t)
        finally:
            await rest.close()
        write_market_defs(out, defs, venue=venue.label)
        writer = RotatingCaptureWriter(next_capture_path(out), rotate_bytes=rotate_bytes, rotate_s=rotate_s)
        handler = RecordHandler(writer)
        ws = KalshiWs(venue.conn, handler=handler, channels=MARKET_CHANNELS, lifecycle=True)
        ws.add_markets(ranges)
        t0 = time.monotonic()
        try:
            await ws.start()
            log.info("recording %s from %s into %s", ", ".join(markets), venue.label, out)
            try:
                await asyncio.wait_for(stop.wait(), timeout=duration_s if duration_s > 0 else None)
            except asyncio.TimeoutError:
                pass
        finally:
            handler.closing = True
            await ws.close()
            writer.close()
        return {"markets": markets, "frames": handler.frames, "gaps": handler.gaps,
                "files": [str(p) for p in writer.parts], "seconds": round(time.monotonic() - t0, 1),
                "venue": venue.label}


def record_command(args: argparse.Namespace) -> int:
    from kmm.engine.app import EXIT_CONFIG, EXIT_ERROR, load
    from kmm.kalshi import loop as kloop
    from kmm.record.oplog import setup_logging
    try:
        cfg, explicit = load(args)
    except ConfigError as exc:
        print(f"kmm record: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    out = Path(args.out) if args.out else Path(cfg.run.out_dir) / ("record-" + time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    handle = setup_logging(out, cfg.run.log_level, "plain")

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await record(cfg, args, explicit, out, duration_s=args.duration or 0.0,
                            rotate_bytes=int(args.rotate_mb * (1 << 20)), rotate_s=args.rotate_s, stop=stop)
    try:
        res = kloop.run(main())
    except ConfigError as exc:
        print(f"kmm record: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KmmError as exc:
        print(f"kmm record: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        handle.stop()
    print(f"kmm record: {res['frames']} frames of {', '.join(res['markets'])} from {res['venue']} in "
          f"{res['seconds']} s, {res['gaps']} gap(s), into {', '.join(res['files'])} (+ markets.json)")
    return 0
