"""The compiled decoders of our order updates and fills (kmm._core.userdecode) against the reference
decoders in kmm.kalshi.decode: the same record (every field, with its type) or the same WireError for
any message, and the compiled path taken for the messages Kalshi and kmm sim send."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm._core import userdecode
from kmm.kalshi import decode
from kmm.kalshi.decode import WireError
from kmm.sim import SimExchange
from kmm.sim.engine import order_wire
from tests.sim.client import SimClient
from tests.sim.conftest import DECI, LIN, alice, bob, sim  # noqa: F401  (fixtures)


def _outcome(fn: Any, msg: Any, recv_ns: int) -> tuple[Any, ...]:
    try:
        rec = fn(msg, recv_ns)
    except WireError as exc:
        return ("error", str(exc))
    return ("record", type(rec).__name__,
            tuple((f.name, type(getattr(rec, f.name)).__name__, getattr(rec, f.name)) for f in dataclasses.fields(rec)))


def _same(kind: str, msg: Any, recv_ns: int = 0) -> tuple[Any, ...]:
    fast, ref = (decode.decode_user_order, decode.decode_user_order_py) if kind == "order" else \
        (decode.decode_fill, decode.decode_fill_py)
    got, want = _outcome(fast, msg, recv_ns), _outcome(ref, msg, recv_ns)
    assert got == want
    return got


def _fallbacks() -> int:
    return userdecode.counts()[2]


# ---- messages of the shape Kalshi sends (kalshi-api.md 3.7, 3.8), with random values
ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=40)
prices = st.integers(1, 9_999).map(lambda p: f"{p // 10_000}.{p % 10_000:04d}")
counts = st.integers(0, 10**9).map(lambda c: f"{c // 100}.{c % 100:02d}")
positive_counts = st.integers(1, 10**9).map(lambda c: f"{c // 100}.{c % 100:02d}")
fees = st.integers(0, 10**8).map(lambda m: f"{m // 10_000}.{m % 10_000:04d}")
times = st.integers(1, 2**53)


@st.composite
def user_orders(draw: Any) -> dict[str, Any]:
    side = draw(st.sampled_from(["bid", "ask"]))
    m = {"order_id": draw(ids), "user_id": "u", "ticker": draw(ids),
         "status": draw(st.sampled_from(["resting", "canceled", "executed"])),
         "outcome_side": "yes", "book_side": side, "side": "yes", "is_yes": True,
         "yes_price_dollars": draw(prices), "no_price_dollars": "0.5000",
         "fill_count_fp": draw(counts), "remaining_count_fp": draw(counts), "initial_count_fp": draw(counts),
         "taker_fees_dollars": draw(fees), "maker_fees_dollars": draw(fees),
         "client_order_id": draw(st.one_of(ids, st.just(""), st.none())),
         "created_ts_ms": draw(times), "last_updated_ts_ms": draw(times),
         "subaccount_number": draw(st.integers(0, 2**31)), "exchange_index": draw(st.integers(0, 1023))}
    if draw(st.booleans()):
        m["order_group_id"] = draw(ids)
    if draw(st.booleans()):
        m["last_update_reason"] = draw(st.sampled_from(["PostOnlyCrossCancel", "UserCanceled", "Amended"]))
    return m


@st.composite
def fills(draw: Any) -> dict[str, Any]:
    m = {"trade_id": draw(ids), "fill_id": "f", "order_id": draw(ids),
         "client_order_id": draw(st.one_of(ids, st.just(""), st.none())), "market_ticker": draw(ids),
         "ticker": "x", "exchange_index": draw(st.integers(0, 1023)), "is_taker": draw(st.booleans()),
         "side": "yes", "book_side": draw(st.sampled_from(["bid", "ask"])), "yes_price_dollars": draw(prices),
         "count_fp": draw(positive_counts), "fee_cost": draw(fees), "action": "buy", "outcome_side": "yes",
         "ts": 1, "ts_ms": draw(times), "created_time": "2026-11-28T00:00:00Z"}
    if draw(st.booleans()):
        c = draw(st.integers(-10**9, 10**9))
        m["post_position_fp"] = f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}"
    return m


@settings(max_examples=400, deadline=None)
@given(user_orders(), st.integers(0, 2**62))
def test_order_updates_kalshi_sends_take_the_compiled_path(msg: dict[str, Any], recv_ns: int) -> None:
    before = _fallbacks()
    assert _same("order", msg, recv_ns)[0] == "record"
    assert _fallbacks() == before


@settings(max_examples=400, deadline=None)
@given(fills(), st.integers(0, 2**62))
def test_fills_kalshi_sends_take_the_compiled_path(msg: dict[str, Any], recv_ns: int) -> None:
    before = _fallbacks()
    assert _same("fill", msg, recv_ns)[0] == "record"
    assert _fallbacks() == before


# ---- anything else: a field dropped, set to a value of any JSON type, legacy names
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
              st.text(max_size=12), st.sampled_from(["", "0", "1.00", "-1.00", "0.5000", "1.0000", "0.00001",
                                                      "bid", "ask", "yes", "no", "resting", "buy", "sell",
                                                      "\ud800", "1e3", " 1.00", "0.50000", "+0.5"])),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4)
ORDER_KEYS = ["order_id", "ticker", "market_ticker", "status", "book_side", "side", "outcome_side", "action",
              "is_yes", "yes_price_dollars", "price_dollars", "price", "initial_count_fp", "initial_count",
              "fill_count_fp", "fill_count", "remaining_count_fp", "remaining_count", "taker_fees_dollars",
              "maker_fees_dollars", "client_order_id", "order_group_id", "created_ts_ms", "last_updated_ts_ms",
              "exchange_index", "last_update_reason", "subaccount_number", "subaccount"]
FILL_KEYS = ["trade_id", "fill_id", "order_id", "client_order_id", "market_ticker", "ticker", "book_side", "side",
             "outcome_side", "action", "is_yes", "yes_price_dollars", "yes_price_fixed", "count_fp", "fee_cost",
             "fee_cost_dollars", "fees_dollars", "is_taker", "post_position_fp", "ts_ms", "ts", "created_time_ms",
             "exchange_index"]


def _mutate(draw: Any, base: dict[str, Any], keys: list[str]) -> Any:
    msg = dict(base)
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            msg.pop(key, None)
        else:
            msg[key] = draw(json_values)
    return msg


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_any_order_update_decodes_as_the_reference_does(data: Any) -> None:
    msg = _mutate(data.draw, data.draw(user_orders()), ORDER_KEYS)
    _same("order", msg, data.draw(st.integers(0, 2**62)))


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_any_fill_decodes_as_the_reference_does(data: Any) -> None:
    msg = _mutate(data.draw, data.draw(fills()), FILL_KEYS)
    _same("fill", msg, data.draw(st.integers(0, 2**62)))


@pytest.mark.parametrize("msg", [None, [], "x", 1, {}, {"status": "resting"}])
def test_not_a_message_is_the_references_error(msg: Any) -> None:
    assert _same("order", msg)[0] == "error"
    assert _same("fill", msg)[0] == "error"


def test_a_mapping_that_is_not_a_dict_goes_to_the_reference() -> None:
    import types
    base = {"trade_id": "t", "order_id": "o", "market_ticker": "T", "book_side": "bid", "yes_price_dollars": "0.5000",
            "count_fp": "1.00", "ts_ms": 5}
    before = _fallbacks()
    assert _same("fill", types.MappingProxyType(base))[0] == "record"
    assert _fallbacks() == before + 1
    assert _same("fill", base, 2**70)[0] == "record"          # the receive stamp is kept as given
    assert _fallbacks() == before + 1


# ---- the simulator's own messages, from a session that fills, partially fills and cancels
async def test_the_simulators_messages_take_the_compiled_path(sim: SimExchange, alice: SimClient,  # noqa: F811
                                                              bob: SimClient) -> None:  # noqa: F811
    await bob.place(LIN, "ask", "0.5000", "3.00")
    await bob.place(DECI, "ask", "0.4210", "2.50")
    await alice.place(LIN, "bid", "0.5000", "2.00")                  # partial fill of bob's ask
    await alice.place(DECI, "bid", "0.4500", "4.00")                 # fills 2.50, rests 1.50
    await alice.place(LIN, "bid", "0.5000", "1.00", post_only=True)  # would cross: PostOnlyCrossCancel
    before = _fallbacks()
    n_orders = n_fills = 0
    for a in sim.engine.accounts.values():
        for f in a.fills:
            _same("fill", f["wire"], 123)
            n_fills += 1
        for o in a.orders.values():
            _same("order", order_wire(o, user=True), 456)
            n_orders += 1
    assert n_fills >= 4 and n_orders >= 5
    assert _fallbacks() == before
