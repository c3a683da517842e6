"""The fields Kalshi's late-2026 spec marks required, as data, read off /work/shared/kalshi-api.md.

Each schema maps a field to a type word: ``str``, ``int``, ``bool``, ``num`` (int or float), ``list``, ``obj``,
``dollars`` (a dollar string with 2-6 decimals), ``fp`` (a fixed-point count with 2 decimals), ``time`` (an RFC
3339 string), ``enum:a|b`` (one of those strings; an empty alternative allows ""), ``list:NAME`` / ``obj:NAME``
(items checked against schema NAME). A trailing ``?`` allows null. ``FORBIDDEN`` lists fields Kalshi removed.
The section each schema comes from is named beside it; `check` reports every mismatch at once.
"""

from __future__ import annotations

import re
from typing import Any

DOLLARS = re.compile(r"^-?\d+\.\d{2,6}$")
FP = re.compile(r"^-?\d+\.\d{2}$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

SCHEMAS: dict[str, dict[str, str]] = {
    # 2.2 Market (SDK required)
    "market": {
        "ticker": "str", "event_ticker": "str", "market_type": "enum:binary|scalar", "yes_sub_title": "str",
        "no_sub_title": "str", "created_time": "time", "updated_time": "time", "open_time": "time",
        "close_time": "time", "latest_expiration_time": "time", "settlement_timer_seconds": "int",
        "status": "enum:initialized|inactive|active|closed|determined|disputed|amended|finalized",
        "result": "enum:yes|no|scalar|", "can_close_early": "bool", "yes_bid_dollars": "dollars",
        "yes_bid_size_fp": "fp", "yes_ask_dollars": "dollars", "yes_ask_size_fp": "fp", "no_bid_dollars": "dollars",
        "no_ask_dollars": "dollars", "last_price_dollars": "dollars", "previous_yes_bid_dollars": "dollars",
        "previous_yes_ask_dollars": "dollars", "previous_price_dollars": "dollars", "volume_fp": "fp",
        "volume_24h_fp": "fp", "open_interest_fp": "fp", "notional_value_dollars": "dollars",
        "settlement_bounds_type": "enum:default|floor", "expiration_value": "str", "rules_primary": "str",
        "rules_secondary": "str", "price_level_structure": "str", "price_ranges": "list:price_range",
        "exchange_index": "int",  # optional in the SDK; kmm's sim always sends it (section 10)
    },
    "price_range": {"start": "dollars", "end": "dollars", "step": "dollars"},
    # 2.3 Series and Event
    "series": {
        "ticker": "str", "frequency": "str", "title": "str", "category": "str", "categories": "list",
        "tags": "list?", "settlement_sources": "list:source?", "contract_url": "str", "contract_terms_url": "str",
        "fee_type": "str", "fee_multiplier": "num", "additional_prohibitions": "list?",
    },
    "source": {"name": "str", "url": "str"},
    "event": {
        "event_ticker": "str", "series_ticker": "str", "sub_title": "str", "title": "str",
        "collateral_return_type": "enum:MECNET|DIRECNET|", "mutually_exclusive": "bool",
        "settlement_sources": "list:source", "exchange_index": "int",
    },
    # 2.1 many books
    "orderbooks_item": {"ticker": "str", "orderbook_fp": "obj:orderbook_fp"},
    "orderbook_fp": {"yes_dollars": "list", "no_dollars": "list"},
    # 4.1 write answers
    "create_answer": {"order_id": "str", "client_order_id": "str", "fill_count": "fp", "remaining_count": "fp",
                      "ts_ms": "int"},
    "cancel_answer": {"order_id": "str", "client_order_id": "str", "reduced_by": "fp", "ts_ms": "int"},
    "decrease_answer": {"order_id": "str", "remaining_count": "fp", "client_order_id": "str", "ts_ms": "int"},
    "amend_answer": {"order_id": "str", "client_order_id": "str", "ts_ms": "int"},
    "batch_cancel_failed": {"order_id": "str", "reduced_by": "fp", "error": "obj:error"},
    "error": {"code": "str", "message": "str", "details": "str"},
    # 4.3 Order: the user_order fields plus type and no_price_dollars
    "order": {
        "order_id": "str", "user_id": "str", "ticker": "str", "status": "enum:resting|canceled|executed",
        "outcome_side": "enum:yes|no", "book_side": "enum:bid|ask", "yes_price_dollars": "dollars",
        "no_price_dollars": "dollars", "fill_count_fp": "fp", "remaining_count_fp": "fp", "initial_count_fp": "fp",
        "taker_fill_cost_dollars": "dollars", "maker_fill_cost_dollars": "dollars", "taker_fees_dollars": "dollars",
        "maker_fees_dollars": "dollars", "client_order_id": "str", "type": "str", "exchange_index": "int",
        "created_time": "time",
    },
    # 3.6 user_order (WS)
    "user_order": {
        "order_id": "str", "user_id": "str", "ticker": "str", "status": "enum:resting|canceled|executed",
        "outcome_side": "enum:yes|no", "book_side": "enum:bid|ask", "yes_price_dollars": "dollars",
        "fill_count_fp": "fp", "remaining_count_fp": "fp", "initial_count_fp": "fp",
        "taker_fill_cost_dollars": "dollars", "maker_fill_cost_dollars": "dollars", "taker_fees_dollars": "dollars",
        "maker_fees_dollars": "dollars", "client_order_id": "str", "created_ts_ms": "int", "exchange_index": "int",
    },
    # 4.3 Fill (REST) and 3.6 fill (WS)
    "fill": {
        "fill_id": "str", "trade_id": "str", "order_id": "str", "ticker": "str", "market_ticker": "str",
        "outcome_side": "enum:yes|no", "book_side": "enum:bid|ask", "count_fp": "fp", "yes_price_dollars": "dollars",
        "no_price_dollars": "dollars", "is_taker": "bool", "fee_cost": "dollars", "exchange_index": "int",
    },
    "ws_fill": {
        "trade_id": "str", "order_id": "str", "client_order_id": "str", "market_ticker": "str",
        "exchange_index": "int", "is_taker": "bool", "yes_price_dollars": "dollars", "count_fp": "fp",
        "fee_cost": "dollars", "outcome_side": "enum:yes|no", "book_side": "enum:bid|ask",
        "post_position_fp": "fp", "ts_ms": "int",
    },
    # 3.6 market_position, trade, ticker (WS)
    "ws_position": {
        "user_id": "str", "market_ticker": "str", "position_fp": "fp", "position_cost_dollars": "dollars",
        "realized_pnl_dollars": "dollars", "fees_paid_dollars": "dollars", "position_fee_cost_dollars": "dollars",
        "volume_fp": "fp",
    },
    "ws_trade": {
        "trade_id": "str", "market_ticker": "str", "yes_price_dollars": "dollars", "no_price_dollars": "dollars",
        "count_fp": "fp", "taker_outcome_side": "enum:yes|no", "taker_book_side": "enum:bid|ask",
        "is_block_trade": "bool", "ts_ms": "int",
    },
    "ws_ticker": {
        "market_ticker": "str", "market_id": "str", "price_dollars": "dollars", "yes_bid_dollars": "dollars",
        "yes_ask_dollars": "dollars", "yes_bid_size_fp": "fp", "yes_ask_size_fp": "fp", "last_trade_size_fp": "fp",
        "volume_fp": "fp", "open_interest_fp": "fp", "ts_ms": "int",
    },
    # 4.3 positions
    "market_position": {
        "ticker": "str", "exchange_index": "int", "position_fp": "fp", "market_exposure_dollars": "dollars",
        "realized_pnl_dollars": "dollars", "fees_paid_dollars": "dollars", "total_traded_dollars": "dollars",
        "last_updated_ts": "time",
    },
    "event_position": {
        "event_ticker": "str", "total_cost_dollars": "dollars", "total_cost_shares_fp": "fp",
        "event_exposure_dollars": "dollars", "realized_pnl_dollars": "dollars", "fees_paid_dollars": "dollars",
    },
    # 4.3 settlements
    "settlement": {
        "ticker": "str", "exchange_index": "int", "event_ticker": "str", "market_result": "enum:yes|no|scalar",
        "yes_count_fp": "fp", "yes_total_cost_dollars": "dollars", "no_count_fp": "fp",
        "no_total_cost_dollars": "dollars", "revenue": "int", "settled_time": "time", "fee_cost": "dollars",
    },
    # 4.3 balance
    "balance": {"balance": "int", "balance_dollars": "dollars", "portfolio_value": "int", "updated_ts": "int",
                "balance_breakdown": "list:balance_row"},
    "balance_row": {"exchange_index": "int", "balance": "dollars"},
    # 4.3 historical cutoff
    "cutoff": {"market_settled_ts": "time", "trades_created_ts": "time", "orders_updated_ts": "time"},
    # 4.4 order groups
    "group_create": {"order_group_id": "str", "subaccount": "int"},
    "group_get": {"is_auto_cancel_enabled": "bool", "orders": "list"},
    "group_update": {"event_type": "enum:created|triggered|reset|deleted|limit_updated", "order_group_id": "str",
                     "ts_ms": "int"},
    # 4.7 exchange status and schedule
    "exchange_status": {"exchange_active": "bool", "trading_active": "bool",
                        "exchange_index_statuses": "list:shard_status"},
    "shard_status": {"exchange_index": "int", "description": "str", "exchange_active": "bool",
                     "trading_active": "bool", "intra_exchange_transfers_active": "bool"},
    "schedule": {"standard_hours": "list:standard_hours", "maintenance_windows": "list:window"},
    "standard_hours": {"start_time": "time", "end_time": "time", **{d: "list:session" for d in (
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}},
    "session": {"open_time": "str", "close_time": "str"},
    "window": {"start_datetime": "time", "end_datetime": "time"},
    # 5 rate limits
    "limits": {"usage_tier": "str", "read": "obj:bucket", "write": "obj:bucket", "grants": "list:grant"},
    "bucket": {"refill_rate": "int", "bucket_capacity": "int"},
    "grant": {"exchange_instance": "enum:event_contract|margined", "level": "str", "source": "enum:volume|manual"},
    "endpoint_costs": {"default_cost": "int", "endpoint_costs": "list:endpoint_cost"},
    "endpoint_cost": {"method": "str", "path": "str", "cost": "int"},
    # 10 transfers
    "transfer_answer": {"transfer_id": "str"},
    "transfer": {"transfer_id": "str", "amount": "int", "source_exchange_shard": "int",
                 "destination_exchange_shard": "int", "status": "enum:pending|complete"},
    # 3.7 lifecycle
    "lifecycle_grid": {"market_ticker": "str", "event_type": "str", "price_level_structure": "str",
                       "price_ranges": "list:price_range"},
}

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "market": ("fractional_trading_enabled", "tick_size", "response_price_units", "yes_bid", "volume"),
    "market_position": ("resting_orders_count",),
    "fill": ("client_order_id",),
    "batch_cancel_failed": ("ts_ms",),
    "error": ("service",),
}


def _type_ok(v: Any, t: str) -> bool:
    if t == "str":
        return isinstance(v, str)
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "bool":
        return isinstance(v, bool)
    if t == "num":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "list":
        return isinstance(v, list)
    if t == "obj":
        return isinstance(v, dict)
    if t == "dollars":
        return isinstance(v, str) and bool(DOLLARS.match(v))
    if t == "fp":
        return isinstance(v, str) and bool(FP.match(v))
    if t == "time":
        return isinstance(v, str) and bool(TIME.match(v))
    if t.startswith("enum:"):
        return isinstance(v, str) and v in t[5:].split("|")
    raise AssertionError(f"unknown type word {t!r}")


def problems(obj: Any, schema: str, where: str = "") -> list[str]:
    """Every way ``obj`` misses schema ``schema``: missing fields, wrong types, forbidden fields."""
    where = where or schema
    if not isinstance(obj, dict):
        return [f"{where}: expected an object, got {type(obj).__name__}"]
    out = []
    for field, t in SCHEMAS[schema].items():
        if field not in obj:
            out.append(f"{where}.{field}: missing")
            continue
        v = obj[field]
        nullable = t.endswith("?")
        t = t.rstrip("?")
        if v is None:
            if not nullable:
                out.append(f"{where}.{field}: null")
            continue
        if t.startswith(("list:", "obj:")):
            kind, sub = t.split(":", 1)
            if kind == "list":
                if not isinstance(v, list):
                    out.append(f"{where}.{field}: expected a list")
                    continue
                for i, item in enumerate(v):
                    out += problems(item, sub, f"{where}.{field}[{i}]")
            else:
                out += problems(v, sub, f"{where}.{field}")
        elif not _type_ok(v, t):
            out.append(f"{where}.{field}: {v!r} is not {t}")
    for field in FORBIDDEN.get(schema, ()):
        if field in obj:
            out.append(f"{where}.{field}: present but removed from the protocol")
    return out


def check(obj: Any, schema: str, where: str = "") -> None:
    found = problems(obj, schema, where)
    assert not found, "\n".join(found)
