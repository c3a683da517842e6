"""ExecutionMetrics from hand-written event histories."""

import pytest

from kmm.execution import Action, Amend, Cancel, Event, Place, compute_metrics
from kmm.execution.algo import NS


def history_buy_yes():
    t = 100 * NS
    return [
        Event(t, "start", price=5000, size=1000),
        Event(t, "split", price=5000, size=600),
        Event(t, "split", price=5100, size=400),
        Event(t, "intent", "x-1", intent=Place("x-1", "bid", 5000, 600)),
        Event(t, "intent", "x-2", intent=Place("x-2", "bid", 5100, 400)),
        Event(t + 1 * NS, "fill", "x-1", price=5000, size=600, fee=105),
        Event(t + 2 * NS, "update", "x-2", status="rejected", text="amend"),
        Event(t + 2 * NS, "walk", "x-2", price=5200),
        Event(t + 2 * NS, "intent", "x-2", intent=Amend("x-2", 5200, 400)),
        Event(t + 3 * NS, "fill", "x-2", price=5100, size=400, fee=70),
        Event(t + 3 * NS, "end", text="filled"),
        Event(t + 4 * NS, "intent", "x-2", intent=Cancel("x-2")),
    ]


def test_metrics_buy_yes_slippage_fees_times_and_calls():
    m = compute_metrics(history_buy_yes(), execution_id="x", algo="walker", action=Action.BUY_YES,
                        target_size=1000, limit=5200, target_price=5200)
    # avg = (600*5000 + 400*5100) / 1000 = 5040: 40 worse than arrival (0.8 %), 160 better than the limit
    assert m.filled_size == 1000 and m.fill_rate == 1.0
    assert m.avg_fill_price == 5040
    assert m.slippage_vs_arrival == 40 and m.slippage_vs_arrival_pct == pytest.approx(0.8)
    assert m.slippage_vs_limit == -160 and m.slippage_vs_limit_pct == pytest.approx(-160 / 5200 * 100)
    assert m.fees == 175
    assert (m.time_to_first_fill_ns, m.time_to_full_fill_ns, m.duration_ns) == (NS, 3 * NS, 3 * NS)
    assert (m.walks, m.splits, m.child_orders, m.rejects) == (1, 2, 2, 1)
    assert m.api_calls == {"place": 2, "amend": 1, "cancel": 1} and m.api_calls_total == 4
    assert m.end_reason == "filled"
    row = m.as_row()
    assert row["api_amend"] == 1 and row["action"] == "buy-yes" and "api_calls" not in row
    assert "filled 10.00/10.00 (100%) avg 0.5040 slippage +0.80 %" in m.summary()


def test_metrics_buy_no_slippage_is_positive_when_the_yes_price_falls():
    # buy NO = ask on YES: arrival best YES bid 6000 (NO 0.40); filled at YES 5950 (NO 0.405): 50 worse, 1.25 %
    hist = [Event(0, "start", price=6000, size=500), Event(NS, "fill", "x-1", price=5950, size=500, fee=0)]
    m = compute_metrics(hist, execution_id="x", algo="simple", action=Action.BUY_NO, target_size=1000,
                        limit=5900, target_price=5900)
    assert m.slippage_vs_arrival == 50 and m.slippage_vs_arrival_pct == pytest.approx(1.25)
    assert m.slippage_vs_limit == -50  # 0.405 paid against a 0.41 limit
    assert m.fill_rate == 0.5 and m.time_to_full_fill_ns is None


def test_metrics_without_fills_leave_prices_empty():
    m = compute_metrics([Event(0, "start", price=None, size=100), Event(5, "end", text="timeout")],
                        execution_id="x", algo="simple", action=Action.SELL_YES, target_size=100, limit=4000,
                        target_price=4000)
    assert m.avg_fill_price is None and m.slippage_vs_arrival is None and m.filled_size == 0
    assert m.duration_ns == 5 and m.end_reason == "timeout"
