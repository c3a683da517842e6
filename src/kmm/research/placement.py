"""Where the quotes stood: the replay's and the recorded live run's, side by side, against the others' book.

A live-vs-replay fill gap per market is a gap in where the two sets of quotes stood when the takers
came. :func:`measure_placement` replays a ``kmm run`` directory (as ``compare_run`` does: latency and
pick-off model fitted from the run) on the reference path and, after every recorded frame and every
request's arrival at the simulated exchange, weighs by time, per market:

- the size resting at each distance from the others' best on its side (the replay book without our
  virtual orders; the recorded run's own orders are never in it): ``front`` (alone at a better price),
  ``0`` (at the others' best), ``1``, ``2`` and ``3+`` grid ticks behind it, in contract-seconds, for
  the replay's orders and for the live run's (its own deltas in the capture, ``client_order_id``);
- the seconds each side had any order resting (uptime), for both;
- for every replay fill from a recorded trade, where the live run's order on that side stood when
  the trade came: it was filled by that very trade (``live_filled``), stood through or at the trade's
  price and was not filled (``live_through``, ``live_at_level``), stood behind it (``live_behind``),
  or the live run had no order on that side (``live_none``).

A diagnosis, not a model: it changes nothing in the replay (the same fills as ``compare_run`` with the
same seed; the reference path is the fast path's twin). Plain Python; a replay of a 60 s busy run takes
a couple of seconds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from kmm.config import KmmConfig
from kmm.research.backtest import Backtest, BacktestOptions
from kmm.research.fills import NO, ONE, YES

BUCKETS = ("front", "0", "1", "2", "3+")
WHERE = ("live_filled", "live_through", "live_at_level", "live_behind", "live_none")


def bucket(ticks: float) -> str:
    """The bucket of an order ``ticks`` behind the others' best (< 0: better than it)."""
    if ticks < 0:
        return "front"
    k = round(ticks)
    return "3+" if k >= 3 else str(k)


class PlacementReplay(Backtest):
    """A reference-path replay that measures placement (module docstring). ``live_fill_ids``: the
    trade ids of the recorded run's own fills."""

    def __init__(self, *args: Any, live_fill_ids: set[str] | None = None, **kwargs: Any) -> None:
        kwargs["fast"] = False
        super().__init__(*args, **kwargs)
        self.live_fill_ids = live_fill_ids or set()
        self.contract_s: dict[str, dict[str, dict[str, float]]] = {
            t: {w: dict.fromkeys(BUCKETS, 0.0) for w in ("live", "replay")} for t in self.sim.markets}
        self.uptime_s: dict[str, dict[str, dict[str, float]]] = {
            t: {w: {"bid": 0.0, "ask": 0.0} for w in ("live", "replay")} for t in self.sim.markets}
        self.trade_fills: dict[str, dict[str, int]] = {t: dict.fromkeys(WHERE, 0) for t in self.sim.markets}
        self._state: dict[str, list[tuple[str, str, str, float]]] = {}
        self._last = -1
        on_trade = self.sim.on_trade

        def watched(now: int, wall_ms: int, ticker: str, price: int, count: int, taker_side: str,
                    trade_id: str = "") -> list[Any]:
            where = self._live_where(ticker, "ask" if taker_side == "bid" else "bid", price, trade_id)
            fills = on_trade(now, wall_ms, ticker, price, count, taker_side, trade_id)
            if fills and ticker in self.trade_fills and not self.fit_pass:
                self.trade_fills[ticker][where] += 1
            return fills
        self.sim.on_trade = watched  # type: ignore[method-assign]

    # ---- what the live run's order on the maker side did with a trade
    def _live_where(self, ticker: str, maker: str, price: int, trade_id: str) -> str:
        if trade_id and trade_id in self.live_fill_ids:
            return "live_filled"
        m = self.sim.markets.get(ticker)
        if m is None:
            return "live_none"
        prices = [bp if bs == YES else ONE - bp for (bs, bp), size in m.live_own.items()
                  if size > 0 and (bs == YES) == (maker == "bid")]
        if not prices:
            return "live_none"
        if any((p < price) if maker == "ask" else (p > price) for p in prices):
            return "live_through"
        if price in prices:
            return "live_at_level"
        return "live_behind"

    # ---- time weighting
    def _others_best(self, m: Any) -> tuple[int | None, int | None]:
        sim = self.sim
        book = m.book
        bid = next((p for p, sz in book.bids(64) if sz - sim._own_at(m, YES, p) > 0), None)  # noqa: SLF001
        ask = next((p for p, sz in book.asks(64) if sz - sim._own_at(m, NO, ONE - p) > 0), None)  # noqa: SLF001
        return bid, ask

    def _snapshot(self) -> None:
        self._state.clear()
        for t, m in self.sim.markets.items():
            if m.book is None:
                continue
            best = self._others_best(m)
            rows: list[tuple[str, str, str, float]] = []
            for o in m.orders.values():
                if o.remaining > 0:
                    rows.append(("replay", o.side, self._bucket(m, best, o.side, o.price), o.remaining / 100))
            for (bs, bp), size in m.live_own.items():
                if size > 0:
                    side, price = ("bid", bp) if bs == YES else ("ask", ONE - bp)
                    rows.append(("live", side, self._bucket(m, best, side, price), size / 100))
            self._state[t] = rows

    @staticmethod
    def _bucket(m: Any, best: tuple[int | None, int | None], side: str, price: int) -> str:
        """The bucket of an order at ``price`` on ``side`` against the others' best (bid, ask); alone
        on its side is in front."""
        ref = best[0] if side == "bid" else best[1]
        if ref is None:
            return "front"
        d = (ref - price) if side == "bid" else (price - ref)
        return bucket(d / m.grid.tick_size(min(price, ref)) if d >= 0 else -1)

    def _sample(self, now: int) -> None:
        if self.fit_pass:
            return
        if self._last >= 0 and now > self._last:
            dt = (now - self._last) / 1e9
            for t, rows in self._state.items():
                cs, up = self.contract_s[t], self.uptime_s[t]
                sides: set[tuple[str, str]] = set()
                for who, side, b, size in rows:
                    cs[who][b] += size * dt
                    sides.add((who, side))
                for who, side in sides:
                    up[who][side] += dt
        self._last = max(self._last, now)
        self._snapshot()

    def _frame(self, frame: bytes, recv: int) -> None:
        super()._frame(frame, recv)
        self._sample(recv)

    def _arrive(self, pipe: Any, answer: int, act: Any, args: tuple[Any, ...]) -> None:
        super()._arrive(pipe, answer, act, args)
        self._sample(self.clock.mono)

    def placement(self) -> dict[str, Any]:
        return {t: {"contract_s": self.contract_s[t], "uptime_s": self.uptime_s[t],
                    "replay_trade_fills": self.trade_fills[t]} for t in self.sim.markets}


def measure_placement(run_dir: Path, cfg: KmmConfig, out: Path | None, *, seed: int = 0,
                      options: BacktestOptions | None = None) -> dict[str, Any]:
    """Replay ``run_dir`` (a ``kmm run`` directory) as ``compare_run`` does (its latency, pick-off model
    and quoting window), with ``seed``, and return
    ``{"markets": {ticker: placement}, "replay_fills": n}`` (module docstring)."""
    from kmm.record.store import StoreReader
    from kmm.record.summary import read_summary
    run_dir = Path(run_dir)
    from kmm.research.compare import live_window
    opt = replace(options or BacktestOptions(), latency_from=str(run_dir))
    if not (opt.quote_from_ns or opt.quote_until_ns):
        start, until = live_window(run_dir)
        opt = replace(opt, quote_from_ns=start, quote_until_ns=until)
    if not cfg.run.markets and (run_dir / "summary.json").exists():
        cfg = replace(cfg, run=replace(cfg.run, markets=tuple(read_summary(run_dir)["markets"])))
    store = run_dir / "kmm.sqlite"
    ids = {f.trade_id for f in StoreReader(store).fills()} if store.exists() else set()
    bt = PlacementReplay([run_dir], cfg, out, seed=seed, options=opt, live_fill_ids=ids)
    summary = bt.run()
    return {"markets": bt.placement(), "replay_fills": summary["fills"]}


def render_placement(result: dict[str, Any]) -> str:
    """The placement figures as text, a few lines per market."""
    lines = []
    for t, p in result["markets"].items():
        for who in ("live", "replay"):
            cs = p["contract_s"][who]
            up = p["uptime_s"][who]
            lines.append(f"{t} {who:6} contract-s " + " ".join(f"{b}: {cs[b]:.0f}" for b in BUCKETS)
                         + f"; uptime bid {up['bid']:.1f} s ask {up['ask']:.1f} s")
        lines.append(f"{t} replay fills from recorded trades by where the live order stood: "
                     + ", ".join(f"{k} {v}" for k, v in p["replay_trade_fills"].items()))
    return "\n".join(lines)
