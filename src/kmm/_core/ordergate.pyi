"""The risk gate's place and amend checks for the common case, in C (kmm.engine.risk.RiskGate's
place_allowed / amend_size on a market that is not reduce-only): the frame entry's first request."""

from typing import Any, final

from kmm._core.grid import Grid

@final
class OrderLimits:
    limits: Any
    def __init__(self, limits: Any) -> None: ...
    def check_amend(self, ticker: str, bid: bool, price: int, size: int, old_remaining: int, q: int,
                    open_side: int, total_abs: int, last_pnl: int, fractional: bool, grid: Grid,
                    close_ns: int | None, wall_ns: int) -> int: ...
    def check_place(self, ticker: str, bid: bool, price: int, size: int, open_market: int, open_total: int,
                    q: int, open_side: int, total_abs: int, last_pnl: int, fractional: bool, grid: Grid,
                    close_ns: int | None, wall_ns: int) -> int: ...
