"""Incentive programs: decoding ``GET /incentive_programs`` items, which program applies, and the
per-snapshot score of our quotes under each configurable [U] scoring rule (hand-computed)."""

from __future__ import annotations

import pytest

from kmm.engine.clock import NS_PER_S, ManualClock
from kmm.engine.incentives import (
    IncentiveBook,
    LipScoring,
    decode_incentive_page,
    decode_incentive_program,
    score_side,
)

T = "KXINC-26-A"
NOW = ManualClock().time_ns()          # 2026-01-01T00:00:00Z

ITEM = {"id": "prog-1", "market_id": "m-1", "market_ticker": T, "incentive_type": "liquidity",
        "incentive_description": "LIP", "start_date": "2025-12-15T00:00:00Z",
        "end_date": "2026-02-01T00:00:00Z", "period_reward": 1_000_000, "paid_out": False,
        "discount_factor_bps": 5000, "target_size_fp": "100.00"}

BIDS = [(5000, 6000), (4900, 3000), (4800, 5000)]          # descending, sizes incl. ours
ASKS = [(5200, 2000), (5300, 10000)]                          # ascending
OURS = [("bid", 5000, 2000), ("bid", 4900, 1000), ("bid", 4800, 5000), ("ask", 5300, 1000)]


def test_decode_item_converts_units_at_the_edge():
    p = decode_incentive_program(ITEM)
    assert (p.id, p.market_ticker, p.incentive_type, p.market_id, p.description) == \
        ("prog-1", T, "liquidity", "m-1", "LIP")
    assert p.period_reward == 1_000_000                        # centi-cents are 1e-4 $: $100
    assert p.target_size == 10_000 and p.discount_factor_bps == 5000 and p.discount == 0.5
    assert p.start_ns == NOW - 17 * 86_400 * NS_PER_S
    assert p.end_ns == NOW + 31 * 86_400 * NS_PER_S
    assert p.active_at(NOW) and not p.active_at(p.end_ns)
    legacy = decode_incentive_program({**ITEM, "target_size_fp": None, "target_size": 250,
                                       "discount_factor_bps": None})
    assert legacy.target_size == 25_000 and legacy.discount == 1.0


@pytest.mark.parametrize("change", [{"market_ticker": None}, {"start_date": "yesterday"},
                                    {"end_date": "2026-02-01T00:00:00"}])
def test_decode_rejects_missing_fields_and_bad_times(change):
    item = {k: v for k, v in {**ITEM, **change}.items() if v is not None}
    with pytest.raises(ValueError):
        decode_incentive_program(item)


def test_decode_page_reads_the_cursor():
    progs, cursor = decode_incentive_page({"incentive_programs": [ITEM], "next_cursor": "abc"})
    assert [p.id for p in progs] == ["prog-1"] and cursor == "abc"
    assert decode_incentive_page({"incentive_programs": [], "next_cursor": ""}) == ([], None)


def test_which_program_applies():
    live = decode_incentive_program(ITEM)
    rich = decode_incentive_program({**ITEM, "id": "prog-2", "period_reward": 2_000_000})
    volume = decode_incentive_program({**ITEM, "id": "v", "incentive_type": "volume", "period_reward": 9_000_000})
    paid = decode_incentive_program({**ITEM, "id": "p", "paid_out": True, "period_reward": 9_000_000})
    other = decode_incentive_program({**ITEM, "id": "o", "market_ticker": "KXOTHER"})
    book = IncentiveBook([live, rich, volume, paid, other])
    assert book.program_for(T, NOW) is rich                     # the largest active liquidity program
    assert book.program_for(T, live.end_ns) is None
    q = book.assess("KXNONE", NOW, BIDS, ASKS, OURS)
    assert not q.applies and not q.qualifies and q.reasons == ("no active liquidity program",)


def test_snapshot_score_geometric_pro_rata_by_hand():
    book = IncentiveBook([decode_incentive_program(ITEM)])
    q = book.assess(T, NOW, BIDS, ASKS, OURS)
    # bids, target 100: 60 @ best (ours 20, x1) + 30 @ -1c (ours 10, x0.5) + 10 of 50 @ -2c (ours 10, x0.25)
    assert q.bid is not None and q.ask is not None
    assert (q.bid.ours, q.bid.total, q.bid.our_qualifying) == (27.5, 77.5, 4000)
    # asks: 20 @ best (x1) + 80 of 100 @ +1c (x0.5), ours 10 pro rata -> 8
    assert (q.ask.ours, q.ask.total, q.ask.our_qualifying) == (4.0, 60.0, 800)
    assert q.applies and q.qualifies and q.score == 31.5
    assert q.share == pytest.approx(31.5 / 137.5)
    assert q.reasons == ("bid: 40.00 of 80.00 contracts within the target size",
                         "ask: 8.00 of 10.00 contracts within the target size")
    prog = decode_incentive_program(ITEM)
    assert q.expected_reward_per_snapshot(prog, 1000) == pytest.approx(1_000_000 * 31.5 / 137.5 / 1000)


def test_queue_and_distance_models_change_the_score_as_configured():
    prog = decode_incentive_program(ITEM)
    last = IncentiveBook([prog], LipScoring(queue="last")).assess(T, NOW, BIDS, ASKS, OURS)
    assert last.ask is not None and last.ask.ours == 0.0        # behind 90 others in a level cut at 80
    first = IncentiveBook([prog], LipScoring(queue="first")).assess(T, NOW, BIDS, ASKS, OURS)
    assert first.ask is not None and first.ask.ours == 5.0
    linear = IncentiveBook([prog], LipScoring(distance="linear")).assess(T, NOW, BIDS, ASKS, OURS)
    assert linear.bid is not None and linear.bid.ours == 25.0   # x0.5 at 1c, x0 at 2c
    tick = IncentiveBook([prog], LipScoring(unit=50)).assess(T, NOW, BIDS, ASKS, OURS)
    assert tick.bid is not None and tick.bid.ours == 20 + 10 * 0.25 + 10 * 0.0625
    with pytest.raises(ValueError):
        LipScoring(distance="cubic")
    with pytest.raises(ValueError):
        LipScoring(queue="random")


def test_quotes_outside_the_target_size_do_not_qualify():
    book = IncentiveBook([decode_incentive_program(ITEM)])
    bids = [(5000, 10_000), (4700, 500)]
    q = book.assess(T, NOW, bids, [], [("bid", 4700, 500)])
    assert q.applies and not q.qualifies and q.score == 0.0
    assert q.reasons == ("bid outside the target size of 100.00 contracts from the best price", "no resting ask")
    # a thin book: everything helps reach the target, even far from the best
    thin = book.assess(T, NOW, [(5000, 1000), (4700, 500)], [], [("bid", 4700, 500)])
    assert thin.qualifies and thin.score == pytest.approx(5 * 0.5 ** 3)


def test_score_side_takes_ascending_bids_when_told():
    s = score_side(list(reversed(BIDS)), {5000: 2000}, best_first=False, side="bid", target=None,
                   discount=0.5, scoring=LipScoring())
    assert s.ours == 20.0 and s.total == 60 + 15 + 12.5
