"""``kmm execute`` argument handling (no network)."""

from __future__ import annotations

import pytest

from kmm.cli import build_parser
from kmm.execution import Action, RequestError
from kmm.execution.cli import build_request, compare_command, execute_command, parse_param


def test_execute_and_compare_are_registered_with_their_own_handlers():
    p = build_parser()
    a = p.parse_args(["execute", "--market", "KXA-1", "--action", "buy-no", "--size", "5", "--limit", "0.40",
                      "--algo", "walker", "--param", "walk_interval_seconds=2", "--dry-run"])
    assert a.func is execute_command and a.dry_run and a.algo == "walker"
    c = p.parse_args(["execute", "compare", "--algos", "simple,walker", "--runs", "2"])
    assert c.func is compare_command and c.runs == 2 and c.algos == "simple,walker"


def test_build_request_converts_user_terms_and_parameters():
    a = build_parser().parse_args(["execute", "--market", "KXA-1", "--action", "buy-no", "--size", "5",
                                   "--limit", "0.40", "--param", "split_weights=0.6,0.4", "--timeout", "9",
                                   "--edge", "3c", "--confidence", "0.7"])
    r = build_request(a, fractional=False)
    assert r.action is Action.BUY_NO and r.size == 500 and r.limit_price == 4000 and r.limit == 6000
    assert r.params == {"split_weights": [0.6, 0.4], "timeout_s": 9.0} and r.edge == 300


def test_build_request_without_market_names_the_missing_flags():
    a = build_parser().parse_args(["execute", "--action", "buy-yes"])
    with pytest.raises(RequestError, match="--market, --size, --limit"):
        build_request(a, fractional=False)


def test_parse_param_refuses_a_value_without_key():
    assert parse_param("mode=patient") == ("mode", "patient")
    assert parse_param("remainder=none") == ("remainder", None)
    with pytest.raises(RequestError, match="key=value"):
        parse_param("patience")
