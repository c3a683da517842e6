"""Plain-Python reference for the risk gate's fat-finger verdict: the checks in order, each with its
message, as :meth:`kmm.engine.risk.RiskGate._fat_finger` made them before its pass was decided apart
(the wording lives on, unchanged, in ``RiskGate._fat_finger_denial``)."""

from __future__ import annotations

from typing import Any

from kmm.engine.risk import ALLOW, ONE_DOLLAR, Decision


def fat_finger(gate: Any, ticker: str, side: str, price: int, count: int) -> Decision:
    lim = gate.limits
    where = f"{side} {count} @ {price} on {ticker}"
    if side not in ("bid", "ask"):
        return gate._deny("bad_side", f"{where}: side must be 'bid' or 'ask'", fat_finger=True)
    if count <= 0:
        return gate._deny("bad_size", f"{where}: size must be > 0 (1e-2 contracts)", fat_finger=True)
    if count > lim.max_order_size:
        return gate._deny("max_order_size", f"{where}: size {count} exceeds max_order_size "
                          f"{lim.max_order_size} (1e-2 contracts); lower the quote size or raise "
                          "[risk] max_order_size", fat_finger=True)
    m = gate.markets.get(ticker)
    if m is not None and not m.fractional and count % 100:
        return gate._deny("fractional_size", f"{where}: {ticker} trades whole contracts only", fat_finger=True)
    if not lim.price_min <= price <= lim.price_max:
        return gate._deny("price_range", f"{where}: price outside [{lim.price_min}, {lim.price_max}] "
                          "(1e-4 $); see [risk] price_min/price_max", fat_finger=True)
    if m is not None and not m.grid.is_valid(price):
        return gate._deny("off_grid", f"{where}: price is not on the market's grid "
                          f"(tick {m.grid.tick_size(price)}); quantize before sending", fat_finger=True)
    notional = count * (price if side == "bid" else ONE_DOLLAR - price) // 100
    if notional > lim.max_order_notional:
        return gate._deny("max_order_notional", f"{where}: notional {notional} exceeds "
                          f"max_order_notional {lim.max_order_notional} (1e-4 $)", fat_finger=True)
    return ALLOW
