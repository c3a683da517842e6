"""Wire objects (decoded JSON dicts) -> the typed records of ``kmm.kalshi.types``, and back.

Every field is checked once, here, at the edge: its JSON type (a string id is a string, never a list
turned into ``'[]'``; a flag is a JSON ``true``/``false``, never the string ``"false"``), its format
(dollar and ``_fp`` strings parsed strictly into kmm's integer units) and its range (a fill's price is
strictly inside $0..$1, its count above 0, its fee not negative; times are finite and inside int64).
Anything else raises ``WireError`` naming the message, the field and the value; the caller logs,
counts and skips the message. Decoders raise nothing but ``WireError`` whatever the input (the fuzz
test in tests/kalshi/test_fuzz_frames.py holds them to that). Legacy fields (``side``/``action``/
``is_yes``, ``taker_side``) are read only when the current ones are absent (kalshi-api.md section 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from kmm._core import userdecode as _userdecode
from kmm._core.fixed import format_count, format_price, parse_count, parse_money, parse_price, parse_signed_count
from kmm.errors import KmmError
from kmm.kalshi.types import (AccountLimits, Balance, BookSnapshot, BucketLimit, CancelAck, DecreaseAck,
                              EndpointCosts, Event, EventPosition, ExchangeSchedule, ExchangeStatus, Fill,
                              Grant, HistoricalCutoff, Lifecycle, Market, MarketPosition, OrderAck,
                              OrderGroupUpdate, OrderRequest, Series, Settlement, ShardStatus, Ticker, Trade,
                              TradingHours, UserOrder)

ONE_DOLLAR = 10_000
MAX_ID_LEN = 256               # longest id/ticker string accepted (uuids are 36)
MAX_TS_MS = 2**53              # larger "times" are nonsense (year 285,000)
MAX_EXCHANGE_INDEX = 1023      # shards are small integers
POST_ONLY_CROSS = "PostOnlyCrossCancel"


class WireError(KmmError, ValueError):
    """A wire object lacks a field or carries one kmm cannot accept (type, format or range)."""


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _get(obj: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    """The first present, non-null field among ``names``: (name, value), or (names[0], None)."""
    for name in names:
        v = obj.get(name)
        if v is not None:
            return name, v
    return names[0], None


def _missing(names: tuple[str, ...]) -> WireError:
    return WireError(f"missing field {' / '.join(names)}")


def _req(obj: Mapping[str, Any], *names: str) -> Any:
    name, v = _get(obj, names)
    if v is None:
        raise _missing(names)
    return v


def _id(obj: Mapping[str, Any], *names: str) -> str:
    """A required id or ticker: a non-empty string of at most MAX_ID_LEN characters."""
    name, v = _get(obj, names)
    if v is None:
        raise _missing(names)
    if not isinstance(v, str) or not v or len(v) > MAX_ID_LEN:
        raise WireError(f"field {name}: {_show(v)} is not an id (a non-empty string)")
    return v


def _opt_id(obj: Mapping[str, Any], *names: str) -> str | None:
    """An optional id: absent, null or "" -> None; otherwise as ``_id``."""
    name, v = _get(obj, names)
    if v is None or v == "":
        return None
    if not isinstance(v, str) or len(v) > MAX_ID_LEN:
        raise WireError(f"field {name}: {_show(v)} is not an id (a string)")
    return v


def _text(obj: Mapping[str, Any], *names: str, default: str | None = "") -> str:
    """A free-text field (title, status, RFC 3339 time): a string; absent/null -> ``default``."""
    name, v = _get(obj, names)
    if v is None:
        if default is None:
            raise _missing(names)
        return default
    if not isinstance(v, str):
        raise WireError(f"field {name}: {_show(v)} is not a string")
    return v


def _bool(obj: Mapping[str, Any], name: str, default: bool | None = None) -> bool:
    v = obj.get(name)
    if v is None:
        if default is None:
            raise _missing((name,))
        return default
    if not isinstance(v, bool):
        raise WireError(f"field {name}: {_show(v)} is not a JSON true/false")
    return v


def _opt_bool(obj: Mapping[str, Any], name: str) -> bool | None:
    return None if obj.get(name) is None else _bool(obj, name)


def _price(obj: Mapping[str, Any], *names: str, inside: bool = True) -> int:
    """A dollar-string price; ``inside``: strictly between $0 and $1 (an order or fill price)."""
    name, v = _get(obj, names)
    if v is None:
        raise _missing(names)
    try:
        p = parse_price(v)
    except (ValueError, TypeError):
        raise WireError(f"field {name}: {_show(v)} is not a dollar string with <= 4 decimals") from None
    if (inside and not 0 < p < ONE_DOLLAR) or p > ONE_DOLLAR:
        raise WireError(f"field {name}: {_show(v)} is outside {'(0, 1)' if inside else '[0, 1]'} dollars")
    return p


def _opt_price(obj: Mapping[str, Any], *names: str) -> int | None:
    """An optional quote price in [$0, $1]; absent, null or "" -> None."""
    name, v = _get(obj, names)
    if v is None or v == "":
        return None
    return _price(obj, name, inside=False)


def _count(obj: Mapping[str, Any], *names: str, default: int | None = None, signed: bool = False,
           positive: bool = False) -> int:
    name, v = _get(obj, names)
    if v is None:
        if default is None:
            raise _missing(names)
        return default
    try:
        c = parse_signed_count(v) if signed else parse_count(v)
    except (ValueError, TypeError):
        raise WireError(f"field {name}: {_show(v)} is not a contract count string with <= 2 decimals") from None
    if positive and c <= 0:
        raise WireError(f"field {name}: {_show(v)} must be above 0 contracts")
    return c


def _money(obj: Mapping[str, Any], *names: str, default: int | None = 0, nonneg: bool = False) -> int:
    name, v = _get(obj, names)
    if v is None:
        if default is None:
            raise _missing(names)
        return default
    if isinstance(v, bool):
        raise WireError(f"field {name}: boolean {v} where a dollar string was expected")
    if isinstance(v, int):
        # an integer may be a legacy cent field: refuse rather than guess the unit
        raise WireError(f"field {name}: integer {v} where a dollar string was expected")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise WireError(f"field {name}: {_show(v)} is not a dollar amount")
        v = repr(v)   # a JSON number with a decimal point is dollars: "0.0044"
    try:
        m = parse_money(v)
    except (ValueError, TypeError):
        raise WireError(f"field {name}: {_show(v)} is not a dollar string with <= 4 decimals") from None
    if nonneg and m < 0:
        raise WireError(f"field {name}: {_show(v)} must not be negative")
    return m


def _int(obj: Mapping[str, Any], *names: str, default: int | None = 0, lo: int = -(2**63),
         hi: int = 2**63 - 1) -> int:
    """A JSON integer (not a bool, not a string) in [lo, hi]."""
    name, v = _get(obj, names)
    if v is None:
        if default is None:
            raise _missing(names)
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise WireError(f"field {name}: {_show(v)} is not an integer")
    if not lo <= v <= hi:
        raise WireError(f"field {name}: {_show(v)} is outside [{lo}, {hi}]")
    return v


def _opt_int(obj: Mapping[str, Any], name: str, lo: int = -(2**63), hi: int = 2**63 - 1) -> int | None:
    return None if obj.get(name) is None else _int(obj, name, lo=lo, hi=hi)


def _shard(obj: Mapping[str, Any], required: bool = False) -> int | None:
    if obj.get("exchange_index") is None:
        if required:
            raise _missing(("exchange_index",))
        return None
    return _int(obj, "exchange_index", lo=0, hi=MAX_EXCHANGE_INDEX)


def _ts_ms(obj: Mapping[str, Any]) -> int:
    """``ts_ms`` (int ms), else the legacy ``ts`` (Unix s, int or float), else 0."""
    if obj.get("ts_ms") is not None:
        return _int(obj, "ts_ms", lo=0, hi=MAX_TS_MS)
    ts = obj.get("ts")
    if ts is None or isinstance(ts, str):   # a string "ts" is RFC 3339 (deprecated): not read
        return 0
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not (0 <= ts < MAX_TS_MS / 1000):
        raise WireError(f"field ts: {_show(ts)} is not a Unix time in seconds")
    return int(ts * 1000)


def _msg(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise WireError(f"{what}: {_show(obj)} is not a JSON object")
    return obj


def _list(obj: Mapping[str, Any], name: str, *, required: bool = False) -> list[Any]:
    v = obj.get(name)
    if v is None:
        if required:
            raise _missing((name,))
        return []
    if not isinstance(v, list):
        raise WireError(f"field {name}: {_show(v)} is not a list")
    return v


def book_side(obj: Mapping[str, Any]) -> str:
    """The V2 book side ("bid" buys YES, "ask" sells YES) from current or legacy fields."""
    bs = obj.get("book_side")
    if bs is not None:
        if bs in ("bid", "ask"):
            return str(bs)
        raise WireError(f"field book_side: {_show(bs)} is not 'bid' or 'ask'")
    side = obj.get("side")
    if side in ("bid", "ask"):
        return str(side)
    outcome = obj.get("outcome_side")
    action = obj.get("action")
    if action is not None and action not in ("buy", "sell"):
        raise WireError(f"field action: {_show(action)} is not 'buy' or 'sell'")
    if outcome in ("yes", "no") and action is None:
        return "bid" if outcome == "yes" else "ask"
    legacy = side if side in ("yes", "no") else outcome
    if legacy is None and "is_yes" in obj:
        legacy = "yes" if _bool(obj, "is_yes") else "no"
    if legacy in ("yes", "no"):
        selling = action == "sell"
        return "bid" if (legacy == "yes") != selling else "ask"
    raise WireError("missing field book_side / side / outcome_side")


# -- WS user messages and REST objects ---------------------------------------------------------------

ORDER_STATUSES = ("resting", "canceled", "executed")


def decode_fill_py(msg: Mapping[str, Any], recv_ns: int = 0) -> Fill:
    """The reference decoder of a fill (:data:`decode_fill` is its compiled form)."""
    msg = _msg(msg, "fill")
    post = msg.get("post_position_fp")
    ts = _ts_ms(msg)
    return Fill(
        trade_id=_id(msg, "trade_id", "fill_id"),
        order_id=_id(msg, "order_id"),
        client_order_id=_opt_id(msg, "client_order_id"),
        ticker=_id(msg, "market_ticker", "ticker"),
        side=book_side(msg),
        price=_price(msg, "yes_price_dollars", "yes_price_fixed"),
        count=_count(msg, "count_fp", positive=True),
        fee=_money(msg, "fee_cost", "fee_cost_dollars", "fees_dollars", nonneg=True),
        is_taker=_bool(msg, "is_taker", default=False),
        post_position=_count(msg, "post_position_fp", signed=True) if post is not None else None,
        ts_ms=ts or _int(msg, "created_time_ms", lo=0, hi=MAX_TS_MS),
        recv_ns=recv_ns,
        exchange_index=_shard(msg),
    )


def decode_user_order_py(msg: Mapping[str, Any], recv_ns: int = 0) -> UserOrder:
    """The reference decoder of an order update (:data:`decode_user_order` is its compiled form)."""
    msg = _msg(msg, "order")
    status = _text(msg, "status", default=None)
    if status not in ORDER_STATUSES:
        raise WireError(f"field status: {_show(status)} is not one of {', '.join(ORDER_STATUSES)}")
    # no cross-check of the three counts: how an amend that raises the size shows in initial_count is
    # not documented, and refusing a true order update would hide it from the engine
    initial = _count(msg, "initial_count_fp", "initial_count", default=0)
    filled = _count(msg, "fill_count_fp", "fill_count", default=0)
    remaining = _count(msg, "remaining_count_fp", "remaining_count", default=0)
    return UserOrder(
        order_id=_id(msg, "order_id"),
        client_order_id=_opt_id(msg, "client_order_id"),
        ticker=_id(msg, "ticker", "market_ticker"),
        status=status,
        side=book_side(msg),
        price=_price(msg, "yes_price_dollars", "price_dollars", "price"),
        initial_count=initial,
        fill_count=filled,
        remaining_count=remaining,
        taker_fees=_money(msg, "taker_fees_dollars", nonneg=True),
        maker_fees=_money(msg, "maker_fees_dollars", nonneg=True),
        order_group_id=_opt_id(msg, "order_group_id"),
        created_ts_ms=_int(msg, "created_ts_ms", lo=0, hi=MAX_TS_MS),
        last_updated_ts_ms=_int(msg, "last_updated_ts_ms", lo=0, hi=MAX_TS_MS),
        recv_ns=recv_ns,
        exchange_index=_shard(msg),
        last_update_reason=_opt_id(msg, "last_update_reason"),
        subaccount=_opt_int(msg, "subaccount_number", lo=0, hi=2**31) if msg.get("subaccount_number") is not None
        else _opt_int(msg, "subaccount", lo=0, hi=2**31),
    )



# The WebSocket's own order updates and fills come before a read's book decision: they are decoded in C
# (kmm._core.userdecode) when they have the shape Kalshi sends, and by the reference decoders above
# otherwise, which the compiled ones call; the result, or the WireError, is always the reference's.
_userdecode.bind(UserOrder, Fill, decode_user_order_py, decode_fill_py)
decode_user_order: Callable[..., UserOrder] = _userdecode.decode_user_order
decode_fill: Callable[..., Fill] = _userdecode.decode_fill

def decode_market_position(msg: Mapping[str, Any], recv_ns: int = 0) -> MarketPosition:
    msg = _msg(msg, "market_position")
    return MarketPosition(
        ticker=_id(msg, "market_ticker", "ticker"),
        position=_count(msg, "position_fp", signed=True),
        position_cost=_money(msg, "position_cost_dollars", "market_exposure_dollars"),
        realized_pnl=_money(msg, "realized_pnl_dollars"),
        fees_paid=_money(msg, "fees_paid_dollars"),   # an aggregate after refunds: sign not policed
        volume=_count(msg, "volume_fp", default=0),
        recv_ns=recv_ns,
        exchange_index=_shard(msg),
        last_updated_ts=_rfc3339(msg, "last_updated_ts"),
    )


def _rfc3339(obj: Mapping[str, Any], name: str) -> str | None:
    """An RFC 3339 time string. The pre-Aug 2026 integer (Unix s) is still read and converted, as it
    carries the same fact; anything else is refused."""
    v = obj.get(name)
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    if type(v) is int and 0 <= v < MAX_TS_MS // 1000:
        import datetime as _dt
        try:
            return _dt.datetime.fromtimestamp(v, _dt.UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, ValueError, OSError):
            pass
    raise WireError(f"field {name}: {_show(v)} is not an RFC 3339 time")


def decode_event_position(msg: Mapping[str, Any]) -> EventPosition:
    msg = _msg(msg, "event_position")
    return EventPosition(
        event_ticker=_id(msg, "event_ticker"),
        total_cost=_money(msg, "total_cost_dollars"),
        total_cost_shares=_count(msg, "total_cost_shares_fp", signed=True, default=0),
        event_exposure=_money(msg, "event_exposure_dollars"),
        realized_pnl=_money(msg, "realized_pnl_dollars"),
        fees_paid=_money(msg, "fees_paid_dollars"),   # an aggregate after refunds: sign not policed
    )


def decode_trade(msg: Mapping[str, Any], recv_ns: int = 0) -> Trade:
    msg = _msg(msg, "trade")
    taker = msg.get("taker_book_side")
    if taker not in ("bid", "ask"):
        outcome = msg.get("taker_outcome_side") or msg.get("taker_side")
        if outcome not in ("yes", "no"):
            raise WireError("missing field taker_book_side / taker_outcome_side / taker_side")
        taker = "bid" if outcome == "yes" else "ask"
    if msg.get("yes_price_dollars") is not None:
        price = _price(msg, "yes_price_dollars")
    else:
        price = ONE_DOLLAR - _price(msg, "no_price_dollars")
    return Trade(
        trade_id=_id(msg, "trade_id"),
        ticker=_id(msg, "market_ticker", "ticker"),
        price=price,
        count=_count(msg, "count_fp", positive=True),
        taker_side=str(taker),
        ts_ms=_ts_ms(msg),
        recv_ns=recv_ns,
    )


def decode_ticker(msg: Mapping[str, Any], recv_ns: int = 0) -> Ticker:
    msg = _msg(msg, "ticker")
    return Ticker(
        ticker=_id(msg, "market_ticker"),
        price=_opt_price(msg, "price_dollars", "last_price_dollars"),
        yes_bid=_opt_price(msg, "yes_bid_dollars"),
        yes_ask=_opt_price(msg, "yes_ask_dollars"),
        volume=_count(msg, "volume_fp", default=0),
        open_interest=_count(msg, "open_interest_fp", default=0),
        ts_ms=_ts_ms(msg),
        recv_ns=recv_ns,
    )


_METADATA_FIELDS = ("floor_strike", "cap_strike", "strike_type", "custom_strike", "yes_sub_title",
                    "no_sub_title", "title", "name", "rules_primary", "rules_secondary", "can_close_early",
                    "event_ticker", "expected_expiration_ts")


def _unix_s(obj: Mapping[str, Any], name: str) -> int | None:
    return _opt_int(obj, name, lo=0, hi=MAX_TS_MS // 1000)


def decode_lifecycle(msg: Mapping[str, Any], recv_ns: int = 0) -> Lifecycle:
    """A ``market_lifecycle_v2`` message. The fields of its event type are checked; a
    ``price_level_structure_updated`` must carry valid ``price_ranges`` and a ``close_date_updated``
    a ``close_ts``."""
    msg = _msg(msg, "market_lifecycle_v2")
    event_type = _id(msg, "event_type")
    ranges: tuple[tuple[int, int, int], ...] | None = None
    if msg.get("price_ranges") is not None or event_type == "price_level_structure_updated":
        ranges = decode_price_ranges(_req(msg, "price_ranges"), check=True)
        if not ranges:
            raise WireError("field price_ranges: empty")
    close_ts = _unix_s(msg, "close_ts")
    if event_type == "close_date_updated" and close_ts is None:
        raise _missing(("close_ts",))
    meta_src = msg.get("additional_metadata")
    meta: dict[str, Any] = {}
    if meta_src is not None:
        meta.update(_msg(meta_src, "field additional_metadata"))
    for k in _METADATA_FIELDS:
        if k in msg:
            meta[k] = msg[k]
    sv = msg.get("settlement_value")
    return Lifecycle(
        ticker=_id(msg, "market_ticker", "ticker"),
        event_type=event_type,
        result=_text(msg, "result") or None,
        ts_ms=_ts_ms(msg),
        recv_ns=recv_ns,
        close_ts=close_ts,
        open_ts=_unix_s(msg, "open_ts"),
        price_level_structure=_text(msg, "price_level_structure") or None,
        price_ranges=ranges,
        exchange_index=_shard(msg),
        is_deactivated=_opt_bool(msg, "is_deactivated"),
        settlement_value=None if sv is None else _price(msg, "settlement_value", inside=False),
        metadata=meta,
    )


ORDER_GROUP_EVENTS = ("created", "triggered", "reset", "deleted", "limit_updated")


def decode_order_group_update(obj: Mapping[str, Any], msg: Mapping[str, Any], recv_ns: int = 0) -> OrderGroupUpdate:
    """An ``order_group_updates`` frame (``obj`` the whole frame for sid/seq, ``msg`` its body)."""
    msg = _msg(msg, "order_group_updates")
    event_type = _id(msg, "event_type")
    if event_type not in ORDER_GROUP_EVENTS:
        raise WireError(f"field event_type: {_show(event_type)} is not one of {', '.join(ORDER_GROUP_EVENTS)}")
    limit = msg.get("contracts_limit_fp")
    return OrderGroupUpdate(
        order_group_id=_id(msg, "order_group_id"),
        event_type=event_type,
        contracts_limit=None if limit is None else _count(msg, "contracts_limit_fp"),
        ts_ms=_ts_ms(msg),
        sid=_int(obj, "sid", lo=0),
        seq=_int(obj, "seq", lo=0),
        recv_ns=recv_ns,
    )


# -- REST responses ----------------------------------------------------------------------------------

def decode_order_ack(body: Mapping[str, Any]) -> OrderAck:
    body = _msg(body, "order response")
    return OrderAck(
        order_id=_id(body, "order_id"),
        client_order_id=_opt_id(body, "client_order_id"),
        fill_count=_count(body, "fill_count", "fill_count_fp", default=0),
        remaining_count=_count(body, "remaining_count", "remaining_count_fp", default=0),
        average_fill_price=_opt_price(body, "average_fill_price"),
        average_fee_paid=_money(body, "average_fee_paid", default=None, nonneg=True)
        if body.get("average_fee_paid") is not None else None,
        ts_ms=_int(body, "ts_ms", lo=0, hi=MAX_TS_MS),
    )


def order_ack_from_order(order: UserOrder, *, mismatch: bool = False) -> OrderAck:
    """What a create would have answered, rebuilt from the order as the exchange holds it."""
    return OrderAck(order_id=order.order_id, client_order_id=order.client_order_id,
                    fill_count=order.fill_count, remaining_count=order.remaining_count,
                    ts_ms=order.created_ts_ms, mismatch=mismatch,
                    post_only_cross=order.post_only_crossed)


def decode_cancel_ack(body: Mapping[str, Any]) -> CancelAck:
    body = _msg(body, "cancel response")
    known = "reduced_by" in body or "reduced_by_fp" in body
    return CancelAck(
        order_id=_id(body, "order_id"),
        client_order_id=_opt_id(body, "client_order_id"),
        reduced_by=_count(body, "reduced_by", "reduced_by_fp", default=0),
        ts_ms=_int(body, "ts_ms", lo=0, hi=MAX_TS_MS),
        reduced_known=known,
    )


def decode_decrease_ack(body: Mapping[str, Any]) -> DecreaseAck:
    body = _msg(body, "decrease response")
    return DecreaseAck(
        order_id=_id(body, "order_id"),
        client_order_id=_opt_id(body, "client_order_id"),
        remaining_count=_count(body, "remaining_count", "remaining_count_fp"),
    )


def _levels(raw: Any, name: str) -> list[tuple[int, int]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise WireError(f"field {name}: expected a list of [price, count] pairs")
    out = []
    for level in raw:
        if not isinstance(level, list) or len(level) != 2:
            raise WireError(f"field {name}: bad level {_show(level)}: not a [price, count] pair")
        try:
            price, count = parse_price(level[0]), parse_count(level[1])
        except (ValueError, TypeError) as exc:
            raise WireError(f"field {name}: bad level {_show(level)}: {exc}") from None
        if not 0 < price < ONE_DOLLAR:
            raise WireError(f"field {name}: bad level {_show(level)}: price outside (0, 1)")
        out.append((price, count))
    return out


def decode_rest_orderbook(ticker: str, body: Mapping[str, Any]) -> BookSnapshot:
    """``{"orderbook_fp": {"yes_dollars": [...], "no_dollars": [...]}}`` -> BookSnapshot in YES terms."""
    book = _msg(body, "orderbook response").get("orderbook_fp")
    if not isinstance(book, Mapping):
        raise WireError("missing field orderbook_fp")
    yes = _levels(book.get("yes_dollars"), "yes_dollars")
    no = _levels(book.get("no_dollars"), "no_dollars")
    bids = tuple(sorted(yes))
    asks = tuple(sorted((ONE_DOLLAR - p, s) for p, s in no))
    return BookSnapshot(ticker=ticker, bids=bids, asks=asks)


def decode_orderbooks(body: Mapping[str, Any]) -> dict[str, BookSnapshot]:
    """``GET /markets/orderbooks`` -> {ticker: BookSnapshot}."""
    out = {}
    for i, item in enumerate(_list(_msg(body, "orderbooks response"), "orderbooks", required=True)):
        item = _msg(item, f"orderbooks[{i}]")
        t = _id(item, "ticker", "market_ticker")
        out[t] = decode_rest_orderbook(t, item)
    return out


def decode_price_ranges(raw: Any, *, check: bool = False) -> tuple[tuple[int, int, int], ...]:
    """``[{start, end, step}]`` -> ((start, end, step), ...) in 1e-4 $. ``check``: also build the grid
    (steps divide their ranges, something lies strictly inside $0..$1) so a bad one is refused here."""
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise WireError(f"field price_ranges: {_show(raw)} is not a list")
    out = []
    for r in raw:
        if not isinstance(r, Mapping):
            raise WireError(f"field price_ranges: bad range {_show(r)}")
        try:
            a, b, c = parse_price(r["start"]), parse_price(r["end"]), parse_price(r["step"])
        except (KeyError, ValueError, TypeError) as exc:
            raise WireError(f"field price_ranges: bad range {_show(r)}: {exc}") from None
        if not (0 <= a < b <= ONE_DOLLAR and 0 < c and (b - a) % c == 0):
            raise WireError(f"field price_ranges: bad range {_show(r)}: need 0 <= start < end <= 1 and a "
                            "step that divides end - start")
        out.append((a, b, c))
    ranges = tuple(out)
    if check:
        from kmm._core.grid import Grid
        try:
            Grid(price_ranges_for_book(ranges))
        except ValueError as exc:
            raise WireError(f"field price_ranges: {exc}") from None
    return ranges


def price_ranges_for_book(ranges: Any) -> Any:
    """What ``OrderBook(price_ranges)`` takes: a Market's int ranges become dollar-string triples;
    wire dicts, strings (a price_level_structure) and None pass through. A market's ranges always win
    over its structure name (kalshi-api.md 2.2: the name is a label)."""
    if isinstance(ranges, Market):
        ranges = ranges.price_ranges or ranges.price_level_structure or None
    if isinstance(ranges, (tuple, list)) and ranges and all(
            isinstance(r, (tuple, list)) and len(r) == 3 and all(isinstance(x, int) for x in r) for r in ranges):
        return tuple((format_price(a), format_price(b), format_price(c)) for a, b, c in ranges)
    return ranges


def decode_market(m: Mapping[str, Any]) -> Market:
    """A Market. ``fractional_trading_enabled`` is not read (gone; every market takes 0.01 counts)."""
    m = _msg(m, "market")
    return Market(
        ticker=_id(m, "ticker"),
        event_ticker=_text(m, "event_ticker"),
        status=_text(m, "status"),
        price_ranges=decode_price_ranges(m.get("price_ranges"), check=True),
        price_level_structure=_text(m, "price_level_structure"),
        yes_bid=_opt_price(m, "yes_bid_dollars"),
        yes_ask=_opt_price(m, "yes_ask_dollars"),
        last_price=_opt_price(m, "last_price_dollars"),
        volume=_count(m, "volume_fp", default=0),
        open_interest=_count(m, "open_interest_fp", default=0),
        close_time=_text(m, "close_time"),
        result=_text(m, "result"),
        exchange_index=_shard(m),
        market_type=_text(m, "market_type", default="binary"),
        created_time=_text(m, "created_time"),
        updated_time=_text(m, "updated_time"),
        open_time=_text(m, "open_time"),
        settlement_bounds_type=_text(m, "settlement_bounds_type"),
        expiration_value=_text(m, "expiration_value"),
        can_close_early=_opt_bool(m, "can_close_early"),
    )


def _str_list(obj: Mapping[str, Any], name: str, *, nullable: bool) -> tuple[str, ...] | None:
    v = obj.get(name)
    if v is None:
        if nullable:
            return None
        raise _missing((name,))
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise WireError(f"field {name}: {_show(v)} is not a list of strings")
    return tuple(v)


def decode_series(s: Mapping[str, Any]) -> Series:
    s = _msg(s, "series")
    srcs = s.get("settlement_sources")
    sources = None
    if srcs is not None:
        if not isinstance(srcs, list):
            raise WireError(f"field settlement_sources: {_show(srcs)} is not a list")
        sources = tuple((_text(_msg(x, "settlement_sources[]"), "name"), _text(x, "url")) for x in srcs)
    fm = s.get("fee_multiplier", 1)
    if isinstance(fm, str):   # a decimal string is the same number ("0.5")
        try:
            fm = float(fm) if fm.strip() == fm and fm.replace(".", "", 1).isdigit() else fm
        except ValueError:
            pass
    if isinstance(fm, bool) or not isinstance(fm, (int, float)) or not math.isfinite(fm) or fm < 0:
        raise WireError(f"field fee_multiplier: {_show(fm)} is not a non-negative number")
    return Series(
        ticker=_id(s, "ticker"),
        title=_text(s, "title"),
        category=_text(s, "category"),
        categories=_str_list(s, "categories", nullable=True) or (),
        frequency=_text(s, "frequency"),
        contract_url=_text(s, "contract_url"),
        contract_terms_url=_text(s, "contract_terms_url"),
        fee_type=_text(s, "fee_type"),
        fee_multiplier=float(fm),
        tags=_str_list(s, "tags", nullable=True),
        settlement_sources=sources,
        exchange_index=_shard(s),
    )


def decode_event(e: Mapping[str, Any], markets: Any = None) -> Event:
    """An Event; its markets from ``event.markets`` or, for ``GET /events/{t}``, the sibling list."""
    e = _msg(e, "event")
    crt = _text(e, "collateral_return_type")
    raw_markets = e.get("markets") if e.get("markets") is not None else markets
    if raw_markets is not None and not isinstance(raw_markets, list):
        raise WireError(f"field markets: {_show(raw_markets)} is not a list")
    return Event(
        event_ticker=_id(e, "event_ticker"),
        series_ticker=_text(e, "series_ticker"),
        title=_text(e, "title"),
        sub_title=_text(e, "sub_title"),
        collateral_return_type=crt,
        mutually_exclusive=_bool(e, "mutually_exclusive", default=crt == "MECNET"),
        markets=tuple(decode_market(m) for m in raw_markets or ()),
        exchange_index=_shard(e),
    )


def decode_settlement(s: Mapping[str, Any]) -> Settlement:
    s = _msg(s, "settlement")
    result = _text(s, "market_result")
    if result not in ("yes", "no", "scalar", "void", ""):
        raise WireError(f"field market_result: {_show(result)} is not yes, no or scalar")
    value = s.get("value")
    return Settlement(
        ticker=_id(s, "ticker"),
        event_ticker=_text(s, "event_ticker"),
        exchange_index=_shard(s, required=True) or 0,
        market_result=result,
        yes_count=_count(s, "yes_count_fp", default=0),
        yes_total_cost=_money(s, "yes_total_cost_dollars"),
        no_count=_count(s, "no_count_fp", default=0),
        no_total_cost=_money(s, "no_total_cost_dollars"),
        revenue=_int(s, "revenue", lo=0, hi=2**62) * 100,   # int cents on the wire
        fee_cost=_money(s, "fee_cost", nonneg=True),
        settled_time=_text(s, "settled_time"),
        value=None if value is None else _int(s, "value", lo=0, hi=100) * 100,
    )


def decode_historical_cutoff(body: Mapping[str, Any]) -> HistoricalCutoff:
    body = _msg(body, "historical cutoff")
    return HistoricalCutoff(
        market_settled_ts=_text(body, "market_settled_ts", default=None),
        trades_created_ts=_text(body, "trades_created_ts", default=None),
        orders_updated_ts=_text(body, "orders_updated_ts", default=None),
        market_positions_last_updated_ts=_text(body, "market_positions_last_updated_ts") or None,
    )


def decode_balance(body: Mapping[str, Any]) -> Balance:
    body = _msg(body, "balance")
    if body.get("balance_dollars") is not None:
        balance = _money(body, "balance_dollars")
    else:
        balance = _int(body, "balance", default=None, lo=-(2**60), hi=2**60) * 100  # cents -> 1e-4 $
    pv: int | None = None
    if body.get("portfolio_value_dollars") is not None:
        pv = _money(body, "portfolio_value_dollars")
    elif body.get("portfolio_value") is not None:
        pv = _int(body, "portfolio_value", lo=-(2**60), hi=2**60) * 100
    breakdown = []
    for i, item in enumerate(_list(body, "balance_breakdown")):
        item = _msg(item, f"balance_breakdown[{i}]")
        breakdown.append((_shard(item, required=True) or 0, _money(item, "balance", "balance_dollars", default=None)))
    return Balance(balance=balance, portfolio_value=pv, updated_ts=_int(body, "updated_ts", lo=0),
                   breakdown=tuple(breakdown))


def _shard_status(d: Mapping[str, Any]) -> ShardStatus:
    d = _msg(d, "exchange_index_statuses[]")
    return ShardStatus(exchange_index=_shard(d, required=True) or 0,
                       exchange_active=_bool(d, "exchange_active"), trading_active=_bool(d, "trading_active"),
                       intra_exchange_transfers_active=_opt_bool(d, "intra_exchange_transfers_active"),
                       description=_text(d, "description"))


def decode_exchange_status(body: Mapping[str, Any]) -> ExchangeStatus:
    body = _msg(body, "exchange status")
    return ExchangeStatus(exchange_active=_bool(body, "exchange_active"),
                          trading_active=_bool(body, "trading_active"),
                          estimated_resume_time=_text(body, "exchange_estimated_resume_time") or None,
                          intra_exchange_transfers_active=_opt_bool(body, "intra_exchange_transfers_active"),
                          shards=tuple(_shard_status(d) for d in _list(body, "exchange_index_statuses")))


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def decode_schedule(body: Mapping[str, Any]) -> ExchangeSchedule:
    """``GET /exchange/schedule`` (times ET, as sent)."""
    sched = _msg(_req(_msg(body, "schedule response"), "schedule"), "field schedule")
    hours = []
    for i, h in enumerate(_list(sched, "standard_hours")):
        h = _msg(h, f"standard_hours[{i}]")
        days = {}
        for day in WEEKDAYS:
            days[day] = tuple((_text(_msg(w, day), "open_time", default=None), _text(w, "close_time", default=None))
                              for w in _list(h, day))
        hours.append(TradingHours(_text(h, "start_time"), _text(h, "end_time"), days))
    windows = tuple((_text(_msg(w, "maintenance_windows[]"), "start_datetime", default=None),
                     _text(w, "end_datetime", default=None)) for w in _list(sched, "maintenance_windows"))
    return ExchangeSchedule(tuple(hours), windows)


def _bucket(body: Mapping[str, Any], name: str) -> BucketLimit:
    b = _msg(_req(body, name), f"field {name}")
    out = []
    for k in ("refill_rate", "bucket_capacity"):
        v = b.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise WireError(f"field {name}.{k}: {_show(v)} is not a positive number")
        out.append(float(v))
    return BucketLimit(out[0], out[1])


def decode_account_limits(body: Mapping[str, Any]) -> AccountLimits:
    """``GET /account/limits``: ``usage_tier``, ``read``/``write`` {refill_rate, bucket_capacity} and
    ``grants`` (all four required by the spec)."""
    body = _msg(body, "account limits")
    grants = []
    for i, g in enumerate(_list(body, "grants", required=True)):
        g = _msg(g, f"grants[{i}]")
        grants.append(Grant(exchange_instance=_text(g, "exchange_instance"), level=_text(g, "level"),
                            source=_text(g, "source"), expires_ts=_unix_s(g, "expires_ts")))
    return AccountLimits(usage_tier=_text(body, "usage_tier", default=None), read=_bucket(body, "read"),
                         write=_bucket(body, "write"), grants=tuple(grants))


def decode_endpoint_costs(body: Mapping[str, Any]) -> EndpointCosts:
    body = _msg(body, "endpoint costs")
    costs = {}
    for i, c in enumerate(_list(body, "endpoint_costs")):
        c = _msg(c, f"endpoint_costs[{i}]")
        costs[(_text(c, "method", default=None).upper(), _text(c, "path", default=None))] = \
            _int(c, "cost", default=None, lo=0, hi=1_000_000)
    return EndpointCosts(default_cost=_int(body, "default_cost", default=10, lo=0, hi=1_000_000), costs=costs)


# -- encoding ----------------------------------------------------------------------------------------

def encode_order(req: OrderRequest) -> dict[str, Any]:
    """The V2 create body. Validates what the exchange would reject for shape (not for the grid)."""
    if req.side not in ("bid", "ask"):
        raise ValueError(f"order side {req.side!r} must be 'bid' (buy YES) or 'ask' (sell YES)")
    if not 0 < req.price < ONE_DOLLAR:
        raise ValueError(f"order price {req.price} is outside (0, 10000) in 1e-4 $")
    if req.count <= 0:
        raise ValueError(f"order count {req.count} must be > 0 (1e-2 contracts)")
    if not req.client_order_id:
        raise ValueError("order client_order_id is required")
    body: dict[str, Any] = {
        "ticker": req.ticker,
        "client_order_id": req.client_order_id,
        "side": req.side,
        "count": format_count(req.count),
        "price": format_price(req.price),
        "time_in_force": req.time_in_force,
        "self_trade_prevention_type": req.self_trade_prevention,
    }
    if req.post_only:
        body["post_only"] = True
    if req.reduce_only:
        body["reduce_only"] = True
    if req.cancel_order_on_pause is not None:
        body["cancel_order_on_pause"] = req.cancel_order_on_pause
    if req.expiration_time_s is not None:
        body["expiration_time"] = req.expiration_time_s
    if req.order_group_id is not None:
        body["order_group_id"] = req.order_group_id
    if req.subaccount is not None:
        body["subaccount"] = req.subaccount
    if req.exchange_index is not None:
        body["exchange_index"] = req.exchange_index
    return body
