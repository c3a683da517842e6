"""Plain-Python reference for the event gate's verdicts: the checks as kmm made them before the fast
predicate (``kmm.engine.events._Verdicts``), i.e. every check gathers the event's legs
(:meth:`EventBook.legs`, one Leg object per market) and runs the full rule set
(:meth:`EventRiskGate._check`) on copies of them, and every size of :meth:`max_count` is a full check.
It reads the gate's registry and counts denials in the gate like the former methods did."""

from __future__ import annotations

from typing import Any

from kmm.engine.events import ALLOW, Decision, _remove_resting


def check_place(gate: Any, ticker: str, side: str, price: int, count: int, *, post_only: bool = True) -> Decision:
    book = gate._by_market.get(ticker)
    if book is None:
        return ALLOW
    legs = book.legs(with_resting=True)
    prop = gate._proposal(book, ticker, side, price, post_only)
    return gate._check(book, legs, prop, count)


def check_amend(gate: Any, ticker: str, side: str, price: int, remaining: int, old_price: int | None = None,
                old_remaining: int = 0) -> Decision:
    book = gate._by_market.get(ticker)
    if book is None:
        return ALLOW
    legs = book.legs(with_resting=True)
    if old_price is not None and old_remaining > 0:
        _remove_resting(book, legs, ticker, side, old_price, old_remaining)
    prop = gate._proposal(book, ticker, side, price, True)
    return gate._check(book, legs, prop, remaining)


def max_count(gate: Any, ticker: str, side: str, price: int, count: int, *, size_step: int = 100,
              post_only: bool = True) -> int:
    book = gate._by_market.get(ticker)
    if book is None:
        return count
    legs = book.legs(with_resting=True)
    prop = gate._proposal(book, ticker, side, price, post_only)
    lo, hi = 0, count // size_step
    if hi and gate._check(book, legs, prop, hi * size_step, count_denial=False):
        return hi * size_step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if gate._check(book, legs, prop, mid * size_step, count_denial=False):
            lo = mid
        else:
            hi = mid
    return lo * size_step


def may_fill(om: Any, ticker: str, fee_free: Any = ()) -> list[tuple[str, int, int]]:
    """What the event gate counted as able to fill in ``ticker`` (the former ``LiveResting.may_fill``);
    ``fee_free``: the markets without maker fees (``LiveResting.fee_free``)."""
    from kmm.engine.events import may_fill_from_orders
    out = may_fill_from_orders(om.live_in(ticker), fee_free)
    out.extend(om.unbooked_in(ticker))       # fills reported, not booked; orders closed on a 404
    return out
