from typing import Any, Callable

class QuoteWire:
    places: int
    amends: int
    def __init__(self, rest: Any, fast: Any, pool: Any, limiter: Any, *, create_key: tuple[str, str],
                 create_full: str, create_head: str, quote_fixed: str, json_str: Callable[[str], str | None],
                 quote_tail: Callable[[Any, Any], str | None], quote_answer: Any, amend_answer: Any,
                 place_lane: int, amend_lane: int, cost: float, one_dollar: int) -> None: ...
    def place(self, ticker: str, side: str, price: int, count: int, client_order_id: str,
              order_group_id: str | None, done: Any, ctx: Any, spawn: Any, max_pressure: float = 2.0,
              key: Any = None) -> int: ...
    def amend(self, order_id: str, ticker: str, side: str, price: int, count: int, client_order_id: str | None,
              done: Any, ctx: Any, spawn: Any, max_pressure: float = 2.0, key: Any = None) -> int: ...
