"""The parts together, as the live loop will drive them: gate -> create -> ack -> fills (WS, then
REST backfill on reconcile) -> portfolio agrees with the exchange's market_position and balance."""

from kmm._core.fees import fee_rate_e6, trade_fee
from kmm._core.grid import Grid
from kmm.engine.clock import ManualClock
from kmm.engine.orders import OrderManager, OrderState
from kmm.engine.portfolio import Portfolio
from kmm.engine.risk import RiskGate, RiskLimits
from kmm.kalshi.types import Fill, MarketPosition, OrderAck, UserOrder

T = "KXFLOW-1"


def test_quote_fill_reconcile_and_agree_with_exchange():
    clock = ManualClock()
    pf = Portfolio(cash=1_000_000)
    om = OrderManager(clock, session="flow")
    gate = RiskGate(RiskLimits(), clock, pf, om)
    gate.add_market(T, Grid("linear_cent"))
    gate.on_book_update(T)

    assert gate.check_place(T, "bid", 4000, 1000)
    bid = om.create(T, "bid", 4000, 1000)
    assert gate.check_place(T, "ask", 4300, 1000)
    ask = om.create(T, "ask", 4300, 1000)
    om.on_ack(OrderAck("B1", bid.client_order_id, 0, 1000))
    # the ask's first fill arrives before its ack
    rate = fee_rate_e6("quadratic_with_maker_fees", False)
    f1 = Fill("tr1", "A1", ask.client_order_id, T, "ask", 4300, 400, trade_fee(400, 4300, rate),
              False, -400, 0)
    for f in (f1,):
        assert om.on_fill(f) and pf.apply_fill(f)
    om.on_ack(OrderAck("A1", ask.client_order_id, 400, 600))
    f2 = Fill("tr2", "B1", bid.client_order_id, T, "bid", 4000, 1000, trade_fee(1000, 4000, rate),
              False, 600, 0)
    om.on_fill(f2)
    pf.apply_fill(f2)
    assert bid.state is OrderState.FILLED and ask.state is OrderState.PARTIALLY_FILLED
    # a missed fill comes back in the REST backfill, next to one we already have
    f3 = Fill("tr3", "A1", ask.client_order_id, T, "ask", 4300, 600, trade_fee(600, 4300, rate),
              False, None, 0)
    rep = om.reconcile([], [f1, f3])
    assert rep.new_fills == [f3]
    for f in rep.new_fills:
        pf.apply_fill(f)
    assert ask.state is OrderState.FILLED and om.open_count() == 0

    # position: -4 + 10 - 6 = 0. P&L: sold 4 NO-side at 0.43 then closed at 0.40, ...
    assert pf.position(T) == 0
    fees = f1.fee + f2.fee + f3.fee
    realized = 400 * 4300 // 100 + 600 * 4300 // 100 - 1000 * 4000 // 100  # YES-leg cash flows
    assert pf.realized_pnl(T) == realized == 3000
    exchange = MarketPosition(T, 0, 0, realized, fees, volume=2000)
    check = pf.check_against(exchange)
    assert check.ok, str(check)
    # cash: each order's fees in whole cents with its carry
    assert pf.check_balance(1_000_000 + realized - pf.fees_charged()).ok
    assert pf.identity_residual_e6() == 0


def test_user_order_stream_and_gate_follow_a_cancel():
    clock = ManualClock()
    pf = Portfolio()
    om = OrderManager(clock, session="flow")
    gate = RiskGate(RiskLimits(max_open_orders_per_market=1), clock, pf, om)
    gate.add_market(T, Grid())
    gate.on_book_update(T)
    o = om.create(T, "bid", 4000, 500)
    om.on_user_order(UserOrder("B1", o.client_order_id, T, "resting", "bid", 4000, 500, 0, 500))
    assert gate.check_place(T, "bid", 3900, 500).reason == "max_open_orders"
    assert gate.check_cancel(T, "B1")
    om.request_cancel("B1")
    assert gate.check_place(T, "bid", 3900, 500).reason == "max_open_orders"   # until confirmed
    om.on_user_order(UserOrder("B1", o.client_order_id, T, "canceled", "bid", 4000, 500, 0, 0))
    assert gate.check_place(T, "bid", 3900, 500)
