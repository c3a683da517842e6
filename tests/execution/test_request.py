"""The request maps user terms onto the V2 YES book and refuses bad input with clear errors."""

import pytest

from kmm._core.grid import Grid
from kmm.execution import (Action, ExecutionRequest, MarketInfo, RequestError, build_algo, edge_from_cents,
                           edge_from_probability, parse_action, parse_edge, parse_price_arg, parse_size_arg)


@pytest.mark.parametrize("action, limit, side, yes_limit", [
    (Action.BUY_YES, 4000, "bid", 4000),
    (Action.SELL_YES, 4000, "ask", 4000),
    (Action.BUY_NO, 4000, "ask", 6000),   # buy NO at 0.40 = an ask never below YES 0.60
    (Action.SELL_NO, 3000, "bid", 7000),  # sell NO at 0.30 = a bid never above YES 0.70
])
def test_request_maps_action_and_limit_onto_yes_book(action, limit, side, yes_limit):
    r = ExecutionRequest("KX-1", action, 1000, limit)
    assert r.side == side
    assert r.limit == yes_limit
    assert r.target == yes_limit  # no price given: the limit


def test_request_target_price_converts_like_the_limit_for_no():
    r = ExecutionRequest("KX-1", Action.BUY_NO, 1000, 4000, price=3800)
    assert r.target == 6200


def test_request_rejects_target_price_beyond_limit():
    with pytest.raises(RequestError, match="beyond the limit"):
        ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4000, price=4100)
    with pytest.raises(RequestError, match="beyond the limit"):
        ExecutionRequest("KX-1", Action.SELL_YES, 1000, 4000, price=3900)


def test_request_rejects_partial_contracts_on_whole_contract_market():
    with pytest.raises(RequestError, match="not a whole number of contracts"):
        ExecutionRequest("KX-1", Action.BUY_YES, 250, 4000)
    assert ExecutionRequest("KX-1", Action.BUY_YES, 250, 4000, fractional=True).size == 250


@pytest.mark.parametrize("kw, msg", [
    ({"limit_price": 0}, "limit_price"),
    ({"limit_price": 10000}, "limit_price"),
    ({"size": 0}, "size"),
    ({"confidence": 1.5}, "confidence"),
    ({"edge": 20000}, "edge"),
    ({"ticker": " "}, "ticker"),
    ({"algo": ""}, "algo"),
])
def test_request_rejects_out_of_range_fields_naming_the_field(kw, msg):
    base = {"ticker": "KX-1", "action": Action.BUY_YES, "size": 1000, "limit_price": 4000}
    base.update(kw)
    with pytest.raises(RequestError, match=msg):
        ExecutionRequest(**base)


def test_check_market_rejects_off_grid_limit_and_names_nearest_prices():
    r = ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4275)
    with pytest.raises(RequestError, match=r"nearest valid: 0\.4200 / 0\.4300"):
        r.check_market(MarketInfo("KX-1", Grid("linear_cent")))
    r.check_market(MarketInfo("KX-1", Grid([("0.0000", "1.0000", "0.0025")])))  # on this grid it is valid


def test_check_market_rejects_other_ticker_and_fractional_mismatch():
    with pytest.raises(RequestError, match="KX-2"):
        ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4000).check_market(MarketInfo("KX-2"))
    with pytest.raises(RequestError, match="fractional"):
        ExecutionRequest("KX-1", Action.BUY_YES, 150, 4000, fractional=True).check_market(MarketInfo("KX-1"))


def test_parsers_read_user_terms_into_kmm_units():
    assert parse_action("Buy_No") is Action.BUY_NO
    assert parse_price_arg("0.40") == 4000
    assert parse_size_arg("2.50", fractional=True) == 250
    assert parse_edge("3.5c") == 350 == edge_from_cents(3.5)
    assert parse_edge("0.035") == 350 == edge_from_probability(0.035)
    with pytest.raises(RequestError, match="buy-yes"):
        parse_action("hold")
    with pytest.raises(RequestError, match="strictly between"):
        parse_price_arg("1.20")
    with pytest.raises(RequestError, match="whole number"):
        parse_size_arg("2.5", fractional=False)
    with pytest.raises(RequestError, match="cents"):
        parse_edge("lots")


def test_build_algo_refuses_unknown_algorithm_and_unknown_parameter():
    m = MarketInfo("KX-1")
    with pytest.raises(RequestError, match="choose one of simple"):
        build_algo(ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4000, algo="vwap"), m)
    with pytest.raises(RequestError, match=r"unknown parameter\(s\) patience .*valid: .*child_size"):
        build_algo(ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4000, algo="slice", params={"patience": 3}), m)
    with pytest.raises(RequestError, match="mode"):
        build_algo(ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4000, algo="slice", params={"mode": "fast"}), m)


def test_build_algo_routes_policy_names_to_the_liquidity_policy():
    a = build_algo(ExecutionRequest("KX-1", Action.BUY_YES, 1000, 4000, algo="capped",
                                    params={"max_take_fraction": 0.25, "remainder": "rest"}), MarketInfo("KX-1"))
    assert a.policy.max_take_fraction == 0.25
    assert a.params.remainder == "rest"
