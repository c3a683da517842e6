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
