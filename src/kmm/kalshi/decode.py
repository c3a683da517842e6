"""Wire objects (decoded JSON dicts) -> the typed records of ``kmm.kalshi.types``, and back.

Dollar and ``_fp`` strings are parsed once here into kmm's integer units. Each ``decode_*`` raises
``WireError`` (a ValueError) naming the field when a required field is missing or unparseable; the
caller logs and counts it. Legacy fields (``side``/``action``/``is_yes``, ``taker_side``) are read only
when the current ones are absent (kalshi-api.md section 0, May 2026).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kmm._core.fixed import format_count, format_price, parse_count, parse_money, parse_price, parse_signed_count
from kmm.errors import KmmError
from kmm.kalshi.types import (Balance, BookSnapshot, CancelAck, DecreaseAck, ExchangeStatus, Fill, Lifecycle,
                              Market, MarketPosition, OrderAck, OrderRequest, Ticker, Trade, UserOrder)

ONE_DOLLAR = 10_000


class WireError(KmmError, ValueError):
    """A wire object lacks a field or carries one kmm cannot parse."""


def _req(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        v = obj.get(name)
        if v is not None:
            return v
    raise WireError(f"missing field {' / '.join(names)}")


def _price(obj: Mapping[str, Any], *names: str) -> int:
    v = _req(obj, *names)
    try:
        return parse_price(v)
    except (ValueError, TypeError) as exc:
        raise WireError(f"field {names[0]}: {exc}") from None


def _opt_price(obj: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        v = obj.get(name)
        if v is not None and v != "":
            try:
                return parse_price(v)
            except (ValueError, TypeError) as exc:
                raise WireError(f"field {name}: {exc}") from None
    return None


def _count(obj: Mapping[str, Any], *names: str, default: int | None = None, signed: bool = False) -> int:
    for name in names:
        v = obj.get(name)
        if v is not None:
            try:
                return parse_signed_count(v) if signed else parse_count(v)
            except (ValueError, TypeError) as exc:
                raise WireError(f"field {name}: {exc}") from None
    if default is None:
        raise WireError(f"missing field {' / '.join(names)}")
    return default


def _money(obj: Mapping[str, Any], *names: str, default: int | None = 0) -> int:
    for name in names:
        v = obj.get(name)
        if v is not None:
            try:
                if isinstance(v, int) and not isinstance(v, bool):
                    # an integer may be a legacy cent field: refuse rather than guess the unit
                    raise WireError(f"field {name}: integer {v} where a dollar string was expected")
                if isinstance(v, float):
                    v = repr(v)   # a JSON number with a decimal point is dollars: "0.0044"
                return parse_money(v)
            except (ValueError, TypeError) as exc:
                raise WireError(f"field {name}: {exc}") from None
    if default is None:
        raise WireError(f"missing field {' / '.join(names)}")
    return default


def _int(obj: Mapping[str, Any], *names: str, default: int = 0) -> int:
    for name in names:
        v = obj.get(name)
        if v is not None:
            try:
                return int(v)
            except (ValueError, TypeError):
                raise WireError(f"field {name}: {v!r} is not an integer") from None
    return default


def _ts_ms(obj: Mapping[str, Any]) -> int:
    if obj.get("ts_ms") is not None:
        return _int(obj, "ts_ms")
    ts = obj.get("ts")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return int(ts * 1000)
    return 0


def book_side(obj: Mapping[str, Any]) -> str:
    """The V2 book side ("bid" buys YES, "ask" sells YES) from current or legacy fields."""
    bs = obj.get("book_side")
    if bs in ("bid", "ask"):
        return str(bs)
    side = obj.get("side")
    if side in ("bid", "ask"):
        return str(side)
    outcome = obj.get("outcome_side")
    if outcome in ("yes", "no") and obj.get("action") is None:
        return "bid" if outcome == "yes" else "ask"
    legacy = side if side in ("yes", "no") else outcome
    if legacy is None and "is_yes" in obj:
        legacy = "yes" if obj["is_yes"] else "no"
    if legacy in ("yes", "no"):
        selling = obj.get("action") == "sell"
        return "bid" if (legacy == "yes") != selling else "ask"
    raise WireError("missing field book_side / side / outcome_side")


# -- WS user messages and REST objects ---------------------------------------------------------------

def decode_fill(msg: Mapping[str, Any], recv_ns: int = 0) -> Fill:
    post = msg.get("post_position_fp")
    return Fill(
        trade_id=str(_req(msg, "trade_id", "fill_id")),
        order_id=str(_req(msg, "order_id")),
        client_order_id=msg.get("client_order_id") or None,
        ticker=str(_req(msg, "market_ticker", "ticker")),
        side=book_side(msg),
        price=_price(msg, "yes_price_dollars", "yes_price_fixed"),
        count=_count(msg, "count_fp"),
        fee=_money(msg, "fee_cost", "fee_cost_dollars", "fees_dollars"),
        is_taker=bool(msg.get("is_taker", False)),
        post_position=_count(msg, "post_position_fp", signed=True) if post is not None else None,
        ts_ms=_ts_ms(msg) or _int(msg, "created_time_ms"),
        recv_ns=recv_ns,
    )


def decode_user_order(msg: Mapping[str, Any], recv_ns: int = 0) -> UserOrder:
    return UserOrder(
        order_id=str(_req(msg, "order_id")),
        client_order_id=msg.get("client_order_id") or None,
        ticker=str(_req(msg, "ticker", "market_ticker")),
        status=str(_req(msg, "status")),
        side=book_side(msg),
        price=_price(msg, "yes_price_dollars", "price_dollars", "price"),
        initial_count=_count(msg, "initial_count_fp", "initial_count", default=0),
        fill_count=_count(msg, "fill_count_fp", "fill_count", default=0),
        remaining_count=_count(msg, "remaining_count_fp", "remaining_count", default=0),
        taker_fees=_money(msg, "taker_fees_dollars"),
        maker_fees=_money(msg, "maker_fees_dollars"),
        order_group_id=msg.get("order_group_id") or None,
        created_ts_ms=_int(msg, "created_ts_ms"),
        last_updated_ts_ms=_int(msg, "last_updated_ts_ms"),
        recv_ns=recv_ns,
    )


def decode_market_position(msg: Mapping[str, Any], recv_ns: int = 0) -> MarketPosition:
    return MarketPosition(
        ticker=str(_req(msg, "market_ticker", "ticker")),
        position=_count(msg, "position_fp", signed=True),
        position_cost=_money(msg, "position_cost_dollars", "market_exposure_dollars"),
        realized_pnl=_money(msg, "realized_pnl_dollars"),
        fees_paid=_money(msg, "fees_paid_dollars"),
        volume=_count(msg, "volume_fp", default=0),
        recv_ns=recv_ns,
    )


def decode_trade(msg: Mapping[str, Any], recv_ns: int = 0) -> Trade:
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
        trade_id=str(_req(msg, "trade_id")),
        ticker=str(_req(msg, "market_ticker", "ticker")),
        price=price,
        count=_count(msg, "count_fp"),
        taker_side=taker,
        ts_ms=_ts_ms(msg),
        recv_ns=recv_ns,
    )


def decode_ticker(msg: Mapping[str, Any], recv_ns: int = 0) -> Ticker:
    return Ticker(
        ticker=str(_req(msg, "market_ticker")),
        price=_opt_price(msg, "price_dollars", "last_price_dollars"),
        yes_bid=_opt_price(msg, "yes_bid_dollars"),
        yes_ask=_opt_price(msg, "yes_ask_dollars"),
        volume=_count(msg, "volume_fp", default=0),
        open_interest=_count(msg, "open_interest_fp", default=0),
        ts_ms=_ts_ms(msg),
        recv_ns=recv_ns,
    )


def decode_lifecycle(msg: Mapping[str, Any], recv_ns: int = 0) -> Lifecycle:
    return Lifecycle(
        ticker=str(_req(msg, "market_ticker", "ticker")),
        event_type=str(_req(msg, "event_type")),
        result=msg.get("result") or None,
        ts_ms=_ts_ms(msg),
        recv_ns=recv_ns,
    )


# -- REST responses ----------------------------------------------------------------------------------

def decode_order_ack(body: Mapping[str, Any]) -> OrderAck:
    return OrderAck(
        order_id=str(_req(body, "order_id")),
        client_order_id=body.get("client_order_id") or None,
        fill_count=_count(body, "fill_count", "fill_count_fp", default=0),
        remaining_count=_count(body, "remaining_count", "remaining_count_fp", default=0),
        average_fill_price=_opt_price(body, "average_fill_price"),
        average_fee_paid=_money(body, "average_fee_paid", default=None) if body.get("average_fee_paid") is not None
        else None,
        ts_ms=_int(body, "ts_ms"),
    )


def order_ack_from_order(order: UserOrder) -> OrderAck:
    """What a create would have answered, rebuilt from the order as the exchange holds it."""
    return OrderAck(order_id=order.order_id, client_order_id=order.client_order_id,
                    fill_count=order.fill_count, remaining_count=order.remaining_count,
                    ts_ms=order.created_ts_ms)


def decode_cancel_ack(body: Mapping[str, Any]) -> CancelAck:
    known = "reduced_by" in body or "reduced_by_fp" in body
    return CancelAck(
        order_id=str(_req(body, "order_id")),
        client_order_id=body.get("client_order_id") or None,
        reduced_by=_count(body, "reduced_by", "reduced_by_fp", default=0),
        ts_ms=_int(body, "ts_ms"),
        reduced_known=known,
    )


def decode_decrease_ack(body: Mapping[str, Any]) -> DecreaseAck:
    return DecreaseAck(
        order_id=str(_req(body, "order_id")),
        client_order_id=body.get("client_order_id") or None,
        remaining_count=_count(body, "remaining_count", "remaining_count_fp"),
    )


def _levels(raw: Any, name: str) -> list[tuple[int, int]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise WireError(f"field {name}: expected a list of [price, count] pairs")
    out = []
    for level in raw:
        try:
            price, count = level
            out.append((parse_price(price), parse_count(count)))
        except (ValueError, TypeError) as exc:
            raise WireError(f"field {name}: bad level {level!r}: {exc}") from None
    return out


def decode_rest_orderbook(ticker: str, body: Mapping[str, Any]) -> BookSnapshot:
    """``{"orderbook_fp": {"yes_dollars": [...], "no_dollars": [...]}}`` -> BookSnapshot in YES terms."""
    book = body.get("orderbook_fp")
    if not isinstance(book, Mapping):
        raise WireError("missing field orderbook_fp")
    yes = _levels(book.get("yes_dollars"), "yes_dollars")
    no = _levels(book.get("no_dollars"), "no_dollars")
    bids = tuple(sorted(yes))
    asks = tuple(sorted((ONE_DOLLAR - p, s) for p, s in no))
    return BookSnapshot(ticker=ticker, bids=bids, asks=asks)


def decode_price_ranges(raw: Any) -> tuple[tuple[int, int, int], ...]:
    if not raw:
        return ()
    out = []
    for r in raw:
        try:
            out.append((parse_price(r["start"]), parse_price(r["end"]), parse_price(r["step"])))
        except (KeyError, ValueError, TypeError) as exc:
            raise WireError(f"field price_ranges: bad range {r!r}: {exc}") from None
    return tuple(out)


def price_ranges_for_book(ranges: Any) -> Any:
    """What ``OrderBook(price_ranges)`` takes: a Market's int ranges become dollar-string triples;
    wire dicts, strings (a price_level_structure) and None pass through."""
    if isinstance(ranges, Market):
        ranges = ranges.price_ranges or ranges.price_level_structure or None
    if isinstance(ranges, (tuple, list)) and ranges and all(
            isinstance(r, (tuple, list)) and len(r) == 3 and all(isinstance(x, int) for x in r) for r in ranges):
        return tuple((format_price(a), format_price(b), format_price(c)) for a, b, c in ranges)
    return ranges


def decode_market(m: Mapping[str, Any]) -> Market:
    return Market(
        ticker=str(_req(m, "ticker")),
        event_ticker=str(m.get("event_ticker") or ""),
        status=str(m.get("status") or ""),
        price_ranges=decode_price_ranges(m.get("price_ranges")),
        price_level_structure=str(m.get("price_level_structure") or ""),
        yes_bid=_opt_price(m, "yes_bid_dollars"),
        yes_ask=_opt_price(m, "yes_ask_dollars"),
        last_price=_opt_price(m, "last_price_dollars"),
        volume=_count(m, "volume_fp", default=0),
        open_interest=_count(m, "open_interest_fp", default=0),
        close_time=str(m.get("close_time") or ""),
        fractional_trading_enabled=bool(m.get("fractional_trading_enabled", False)),
        result=str(m.get("result") or ""),
    )


def decode_balance(body: Mapping[str, Any]) -> Balance:
    if body.get("balance_dollars") is not None:
        balance = _money(body, "balance_dollars")
    else:
        balance = _int(body, "balance") * 100  # cents -> 1e-4 $
    pv: int | None = None
    if body.get("portfolio_value_dollars") is not None:
        pv = _money(body, "portfolio_value_dollars")
    elif body.get("portfolio_value") is not None:
        pv = _int(body, "portfolio_value") * 100
    return Balance(balance=balance, portfolio_value=pv, updated_ts=_int(body, "updated_ts"))


def decode_exchange_status(body: Mapping[str, Any]) -> ExchangeStatus:
    return ExchangeStatus(exchange_active=bool(_req(body, "exchange_active")),
                          trading_active=bool(_req(body, "trading_active")),
                          estimated_resume_time=body.get("exchange_estimated_resume_time") or None)


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
    return body
