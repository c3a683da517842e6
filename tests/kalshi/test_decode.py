from __future__ import annotations

import pytest

from kmm.kalshi import decode as wire
from kmm.kalshi.types import OrderRequest


def test_decode_fill_parses_dollars_and_counts_once():
    msg = {"trade_id": "t1", "order_id": "o1", "client_order_id": "abc", "market_ticker": "KXA-1",
           "is_taker": False, "side": "yes", "yes_price_dollars": "0.4100", "count_fp": "5.00",
           "fee_cost": "0.0175", "action": "buy", "outcome_side": "yes", "book_side": "bid",
           "post_position_fp": "-15.00", "ts": 1767225600, "ts_ms": 1767225600190}
    f = wire.decode_fill(msg, recv_ns=42)
    assert (f.trade_id, f.order_id, f.client_order_id, f.ticker) == ("t1", "o1", "abc", "KXA-1")
    assert (f.side, f.price, f.count, f.fee, f.is_taker) == ("bid", 4100, 500, 175, False)
    assert (f.post_position, f.ts_ms, f.recv_ns) == (-1500, 1767225600190, 42)


@pytest.mark.parametrize("fields, side", [
    ({"side": "yes", "action": "buy"}, "bid"), ({"side": "yes", "action": "sell"}, "ask"),
    ({"side": "no", "action": "buy"}, "ask"), ({"side": "no", "action": "sell"}, "bid"),
    ({"outcome_side": "no"}, "ask"), ({"book_side": "ask", "side": "yes", "action": "buy"}, "ask"),
])
def test_book_side_from_current_and_legacy_fields(fields, side):
    assert wire.book_side(fields) == side


def test_decode_user_order():
    msg = {"order_id": "o1", "user_id": "u", "ticker": "KXA-1", "status": "resting", "outcome_side": "yes",
           "book_side": "bid", "yes_price_dollars": "0.5600", "fill_count_fp": "2.00",
           "remaining_count_fp": "8.00", "initial_count_fp": "10.00", "taker_fill_cost_dollars": "1.1200",
           "maker_fill_cost_dollars": "0.0000", "taker_fees_dollars": "0.0300", "maker_fees_dollars": "0.0000",
           "client_order_id": "c1", "order_group_id": "g1", "created_ts_ms": 5, "last_updated_ts_ms": 6}
    o = wire.decode_user_order(msg, 9)
    assert (o.status, o.side, o.price, o.initial_count, o.fill_count, o.remaining_count) == \
        ("resting", "bid", 5600, 1000, 200, 800)
    assert (o.taker_fees, o.order_group_id, o.created_ts_ms, o.last_updated_ts_ms, o.recv_ns) == (300, "g1", 5, 6, 9)


def test_decode_market_position_signed():
    p = wire.decode_market_position({"user_id": "u", "market_ticker": "KXA-1", "position_fp": "-3.50",
                                     "position_cost_dollars": "1.2000", "realized_pnl_dollars": "-0.5000",
                                     "fees_paid_dollars": "0.0100", "volume_fp": "12.00"}, 1)
    assert (p.ticker, p.position, p.position_cost, p.realized_pnl, p.fees_paid, p.volume) == \
        ("KXA-1", -350, 12000, -5000, 100, 1200)


def test_decode_trade_and_ticker():
    t = wire.decode_trade({"trade_id": "t", "market_ticker": "M", "yes_price_dollars": "0.3300",
                           "no_price_dollars": "0.6700", "count_fp": "1.00", "taker_side": "no",
                           "taker_outcome_side": "no", "ts_ms": 7})
    assert (t.price, t.count, t.taker_side, t.ts_ms) == (3300, 100, "ask", 7)
    k = wire.decode_ticker({"market_ticker": "M", "price_dollars": "0.5000", "yes_bid_dollars": "0.4900",
                            "yes_ask_dollars": "0.5100", "volume_fp": "100.00", "open_interest_fp": "20.00",
                            "ts": 3})
    assert (k.price, k.yes_bid, k.yes_ask, k.volume, k.open_interest, k.ts_ms) == (5000, 4900, 5100, 10000, 2000, 3000)


def test_decode_order_ack_flat_v2_response():
    a = wire.decode_order_ack({"order_id": "o", "client_order_id": "abc", "fill_count": "2.00",
                               "remaining_count": "8.00", "average_fill_price": "0.5600",
                               "average_fee_paid": "0.0044", "ts_ms": 11})
    assert (a.fill_count, a.remaining_count, a.average_fill_price, a.average_fee_paid, a.ts_ms) == \
        (200, 800, 5600, 44, 11)
    b = wire.decode_order_ack({"order_id": "o", "client_order_id": "abc", "fill_count": "0.00",
                               "remaining_count": "8.00"})
    assert b.average_fill_price is None and b.average_fee_paid is None


def test_decode_rest_orderbook_converts_no_bids_to_yes_asks():
    b = wire.decode_rest_orderbook("M", {"orderbook_fp": {"yes_dollars": [["0.4100", "25.00"], ["0.4200", "13.00"]],
                                                          "no_dollars": [["0.5500", "40.00"], ["0.5700", "7.00"]]}})
    assert b.bids == ((4100, 2500), (4200, 1300))
    assert b.asks == ((4300, 700), (4500, 4000))


def test_decode_rejects_missing_and_bad_fields_with_the_field_name():
    with pytest.raises(wire.WireError, match="trade_id"):
        wire.decode_fill({"order_id": "o"})
    with pytest.raises(wire.WireError, match="yes_price_dollars"):
        wire.decode_fill({"trade_id": "t", "order_id": "o", "market_ticker": "M", "book_side": "bid",
                          "yes_price_dollars": "0.12345", "count_fp": "1.00"})
    with pytest.raises(wire.WireError, match="integer"):
        wire.decode_market_position({"market_ticker": "M", "position_fp": "1.00", "position_cost_dollars": 5})


def test_encode_order_uses_v2_strings_and_validates_shape():
    req = OrderRequest("M", "ask", 4275, 1000, "cid", post_only=True, cancel_order_on_pause=True)
    body = wire.encode_order(req)
    assert body == {"ticker": "M", "client_order_id": "cid", "side": "ask", "count": "10.00", "price": "0.4275",
                    "time_in_force": "good_till_canceled", "self_trade_prevention_type": "taker_at_cross",
                    "post_only": True, "cancel_order_on_pause": True}
    with pytest.raises(ValueError, match="side"):
        wire.encode_order(OrderRequest("M", "yes", 4275, 1000, "cid"))
    with pytest.raises(ValueError, match="price"):
        wire.encode_order(OrderRequest("M", "bid", 10000, 1000, "cid"))
    with pytest.raises(ValueError, match="count"):
        wire.encode_order(OrderRequest("M", "bid", 5000, 0, "cid"))


def test_decode_market_price_ranges_and_balance():
    m = wire.decode_market({"ticker": "M", "event_ticker": "E", "status": "active",
                            "price_level_structure": "linear_cent",
                            "price_ranges": [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}],
                            "yes_bid_dollars": "0.4000", "yes_ask_dollars": "0.4200", "volume_fp": "3.00"})
    assert m.price_ranges == ((100, 9900, 100),) and (m.yes_bid, m.yes_ask, m.volume) == (4000, 4200, 300)
    assert wire.decode_balance({"balance": 12345}).balance == 1234500
    assert wire.decode_balance({"balance": 1, "balance_dollars": "123.4567"}).balance == 1234567


def test_price_ranges_for_book_turns_int_ranges_into_dollar_strings():
    m = wire.decode_market({"ticker": "M", "price_level_structure": "tapered_deci_cent", "price_ranges": [
        {"start": "0.0000", "end": "0.1000", "step": "0.0010"}, {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
        {"start": "0.9000", "end": "1.0000", "step": "0.0010"}]})
    assert wire.price_ranges_for_book(m) == (("0.0000", "0.1000", "0.0010"), ("0.1000", "0.9000", "0.0100"),
                                             ("0.9000", "1.0000", "0.0010"))
    assert wire.price_ranges_for_book("deci_cent") == "deci_cent"
    assert wire.price_ranges_for_book(None) is None


def test_cancel_ack_says_whether_the_answer_gave_the_size_removed():
    from kmm.kalshi.decode import decode_cancel_ack
    known = decode_cancel_ack({"order_id": "o1", "reduced_by": "8.00"})
    assert known.reduced_by == 800 and known.reduced_known
    unknown = decode_cancel_ack({"order_id": "o1"})
    assert unknown.reduced_by == 0 and not unknown.reduced_known
