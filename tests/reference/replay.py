"""Plain-Python reference for the compiled replay loop's two pre-checks (kmm._core.replay): whether a
public trade, or the queue upkeep after a book delta, can change any of our virtual orders. Each is
written the long way, straight from what ``FillSimulator.on_trade`` and ``on_book_change`` do to an
order, so the property tests compare the compiled predicate with this reading of the simulator and
with the simulator itself."""

from __future__ import annotations

from typing import Any


def trade_reaches(orders: dict[str, Any], maker_ask: bool, price: int) -> bool:
    maker_side = "ask" if maker_ask else "bid"
    touched = []
    for o in orders.values():
        if o.side != maker_side or o.remaining <= 0:
            continue                    # on_trade looks only at the maker side's orders with size left
        expires = len(o.pend) > 0       # their pending decreases are expired first, whatever the price
        at_level = o.price == price
        through = price > o.price if maker_side == "ask" else price < o.price
        touched.append(expires or at_level or through)
    return any(touched)


def upkeep_moves(orders: dict[str, Any], level: int) -> bool:
    if level < 0:
        return True                     # the level is unknown: every order of ours is looked at
    side, price = divmod(level, 1 << 16)
    if any(o.bside == side and o.bprice == price for o in orders.values()):
        return True                     # the delta moved a level where we rest
    # the time-driven part: pending decreases may expire; the front is capped at what is visible
    return any(len(o.pend) > 0 or o.ahead > o.seen for o in orders.values())
