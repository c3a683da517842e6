"""Fault injection: the failures kmm must survive, switched on from tests, the Python API or the CLI."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmm.sim.exchange import SimExchange


class Faults:
    def __init__(self, sim: SimExchange) -> None:
        self._sim = sim
        self.error_burst_left = 0
        self.error_burst_status = 500
        self.delay_left = 0
        self.delay_s = 0.0
        self.storm_until = 0.0          # monotonic s: a 429 storm lasts until then
        self.storm_every = 0            # ... letting one request in this many through (0: none)
        self._storm_n = 0
        self.pause_until = 0.0          # monotonic s: creates (and amends) refused until then
        self.pause_code = ""            # "trading_paused" (cancels pass) | "exchange_paused" (cancels refused)
        self.refused_in_pause = 0

    # -- faults the middleware consults on every REST request (Faults.intercept) ----------------
    def rate_limit_storm(self, seconds: float, let_through_every: int = 4) -> None:
        """For ``seconds``, every REST request answers 429 except one in ``let_through_every`` (the
        exchange is overloaded; it lasts through a stop if the stop comes within it)."""
        self.storm_until = time.monotonic() + seconds
        self.storm_every = max(0, let_through_every)
        self._storm_n = 0

    def pause_refusing_creates(self, seconds: float, kind: str = "trading") -> None:
        """For ``seconds``, creates and amends are refused with ``trading_paused`` (cancels pass) or,
        with ``kind="exchange"``, ``exchange_paused`` (cancels refused too). The status endpoint and the
        lifecycle channel say nothing: only the answers tell."""
        if kind not in ("trading", "exchange"):
            raise ValueError(f"pause_refusing_creates: kind {kind!r} must be 'trading' or 'exchange'")
        self.pause_until = time.monotonic() + seconds
        self.pause_code = f"{kind}_paused"

    def intercept(self, method: str, path: str) -> tuple[int, dict[str, object]] | None:
        """(status, body) to answer instead of the handler, or None. Called by the REST middleware."""
        now = time.monotonic()
        if now < self.storm_until:
            self._storm_n += 1
            if not self.storm_every or self._storm_n % self.storm_every:
                self._sim.stats_rest["fault_429_storm"] += 1
                return 429, {"error": "too many requests"}
        if now < self.pause_until and "/portfolio/events/orders" in path:
            is_cancel = method == "DELETE"
            if not is_cancel or self.pause_code == "exchange_paused":
                self.refused_in_pause += 1
                msg = "trading is paused" if self.pause_code == "trading_paused" else "the exchange is paused"
                return 409, {"error": {"code": self.pause_code, "message": msg}}
        return None

    def drop_ws_connections(self) -> int:
        """Cut every WebSocket connection at the transport (no close handshake). Returns how many."""
        n = 0
        for conn in list(self._sim.hub.conns):
            req = getattr(conn.ws, "_req", None)
            transport = req.transport if req is not None else None
            self._sim.hub.drop_conn(conn)
            if transport is not None:
                transport.abort()
            n += 1
        self._sim.stats_ws["dropped_by_fault"] += n
        return n

    def skip_seq(self, n: int = 1) -> None:
        """The next seq-bearing frame of every current subscription jumps ``n`` numbers ahead."""
        if n < 1:
            raise ValueError(f"skip_seq: n={n} must be >= 1")
        self._sim.hub.skip_seq(n)

    def stall_feed(self, seconds: float) -> None:
        """Hold every outgoing WebSocket frame for ``seconds``; they are delivered afterwards."""
        self._sim.hub.stall_until = time.monotonic() + seconds

    def stall_data(self, seconds: float) -> None:
        """A data stall with the connection alive: every data frame (books, fills, command answers
        such as snapshot requests) is held for ``seconds`` while WebSocket pings go on at the sim's
        ``ping_interval_s`` (the pinger writes control frames directly, past the held queue)."""
        self.stall_feed(seconds)

    def http_error_burst(self, status: int = 500, count: int = 1) -> None:
        """The next ``count`` REST requests answer ``status`` (429 with Kalshi's body, or a 5xx)."""
        if status != 429 and not 500 <= status <= 599:
            raise ValueError(f"http_error_burst: status {status} must be 429 or 5xx")
        self.error_burst_status = status
        self.error_burst_left = count

    def delay_rest(self, seconds: float, count: int = 1) -> None:
        """Delay the next ``count`` REST replies by ``seconds`` each."""
        self.delay_s = seconds
        self.delay_left = count

    def duplicate_next_fill(self, n: int = 1) -> None:
        """The next ``n`` fill messages are sent twice (same trade_id)."""
        self._sim.hub.duplicate_fills += n

    def pause_exchange(self, shard: int | None = None) -> None:
        """An exchange pause: no place, amend or cancel (``sim.resume_exchange()`` ends it)."""
        self._sim.pause_exchange(shard)

    def pause_trading(self, shard: int | None = None) -> None:
        """A trading pause (the Thursday window): cancels still work."""
        self._sim.pause_trading(shard)

    def change_grid(self, ticker: str, structure: str) -> None:
        """Move a live market to another price structure (lifecycle ``price_level_structure_updated``)."""
        self._sim.set_price_structure(ticker, structure)
