"""Fees, balances, netting and settlement: worked examples exact to the cent (docs/sim.md repeats them)."""

from kmm.sim import SimExchange
from tests.sim.client import SimClient
from tests.sim.conftest import LIN, MAKER

START = 1000_0000  # $1000.00 in 1e-4 $


async def test_taker_buying_ten_at_fifty_cents_pays_cost_plus_fee_rounded_up_to_the_cent(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    st, _ = await bob.place(LIN, "ask", "0.5000", "10.00")
    assert st == 201
    st, body = await alice.place(LIN, "bid", "0.5000", "10.00", tif="immediate_or_cancel")
    assert st == 201 and body["fill_count"] == "10.00" and body["remaining_count"] == "0.00"
    assert body["average_fill_price"] == "0.5000"
    # fee = 0.07 * 10 * 0.5 * 0.5 = $0.175 -> charged $0.18; cost $5.00
    assert sim.balance(alice.key_id) == START - 5_0000 - 1800
    pos = sim.position(alice.key_id, LIN)
    assert pos == {"position": 1000, "cost": 5_0000, "realized_pnl": 0, "fees_paid": 1800}
    # the maker on a quadratic series pays no fee; selling YES at 0.50 holds 10 x 0.50 for the NO side
    assert sim.position(bob.key_id, LIN) == {"position": -1000, "cost": 5_0000, "realized_pnl": 0, "fees_paid": 0}
    assert sim.balance(bob.key_id) == START - 5_0000
    st, bal = await alice.get("/portfolio/balance")
    assert st == 200 and bal["balance"] == 99482 and bal["balance_dollars"] == "994.8200"


async def test_fee_carry_refunds_whole_cents_across_fills_of_one_order(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    for _ in range(4):
        await bob.place(LIN, "ask", "0.5000", "1.00")
    st, body = await alice.place(LIN, "bid", "0.5000", "4.00", tif="immediate_or_cancel")
    assert body["fill_count"] == "4.00"
    fees = [f["fee"] for f in sim.fills(alice.key_id)]
    # each fill's exact fee is $0.0175: charged 0.02, 0.02, 0.02, then 0.01 once the carry reaches a cent
    assert fees == [200, 200, 200, 100]
    assert sim.position(alice.key_id, LIN)["fees_paid"] == 700
    st, fills = await alice.get("/portfolio/fills")
    assert [f["fee_cost"] for f in fills["fills"]] == ["0.0100", "0.0200", "0.0200", "0.0200"]


async def test_maker_pays_maker_fee_only_on_quadratic_with_maker_fees_series(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(MAKER, "ask", "0.5000", "10.00")
    await alice.place(MAKER, "bid", "0.5000", "10.00", tif="immediate_or_cancel")
    # maker fee 0.0175 * 10 * 0.25 = $0.04375 -> $0.0438 -> charged $0.05
    assert sim.position(bob.key_id, MAKER)["fees_paid"] == 500
    assert sim.position(alice.key_id, MAKER)["fees_paid"] == 1800
    st, s = await alice.get(f"/series/{MAKER.split('-')[0]}")
    assert st == 200 and s["series"]["fee_type"] == "quadratic_with_maker_fees"


async def test_buying_no_while_long_yes_closes_the_position_and_realizes_pnl(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(LIN, "ask", "0.4000", "10.00")
    await alice.place(LIN, "bid", "0.4000", "10.00", tif="immediate_or_cancel")  # long 10 YES for $4.00
    fee1 = sim.position(alice.key_id, LIN)["fees_paid"]
    assert fee1 == 1700  # 0.07*10*0.4*0.6 = 0.168 -> 0.17
    await bob.place(LIN, "bid", "0.5500", "10.00")
    await alice.place(LIN, "ask", "0.5500", "10.00", tif="immediate_or_cancel")  # sell YES = buy NO at 0.45
    pos = sim.position(alice.key_id, LIN)
    # closes: receives 10 x 0.55 = $5.50, realized 5.50 - 4.00 = $1.50; fee 0.07*10*.55*.45 = .17325 -> .18
    assert pos == {"position": 0, "cost": 0, "realized_pnl": 1_5000, "fees_paid": 1700 + 1800}
    assert sim.balance(alice.key_id) == START + 1_5000 - 3500
    st, body = await alice.get("/portfolio/positions", params={"ticker": LIN})
    row = body["market_positions"][0]
    assert row["position_fp"] == "0.00" and row["realized_pnl_dollars"] == "1.5000"
    assert row["fees_paid_dollars"] == "0.3500"


async def test_selling_more_than_held_flips_to_a_no_position_with_the_excess_as_cost(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(LIN, "ask", "0.4000", "5.00")
    await alice.place(LIN, "bid", "0.4000", "5.00", tif="immediate_or_cancel")  # +5 YES, cost 2.00
    await bob.place(LIN, "bid", "0.3000", "8.00")
    await alice.place(LIN, "ask", "0.3000", "8.00", tif="immediate_or_cancel")  # close 5, open 3 NO at 0.70
    pos = sim.position(alice.key_id, LIN)
    assert pos["position"] == -300
    assert pos["cost"] == 2_1000  # 3 x 0.70
    assert pos["realized_pnl"] == 5 * 3000 - 2_0000  # 5 x 0.30 - 2.00 = -0.50


async def test_settlement_pays_one_dollar_per_winning_net_contract(
        sim: SimExchange, alice: SimClient, bob: SimClient):
    await bob.place(LIN, "ask", "0.4000", "10.00")
    await alice.place(LIN, "bid", "0.4000", "10.00", tif="immediate_or_cancel")
    await bob.place(LIN, "ask", "0.9000", "3.00")  # resting order: cancelled at settlement
    a0, b0 = sim.balance(alice.key_id), sim.balance(bob.key_id)
    await sim.settle(LIN, "yes")
    assert sim.balance(alice.key_id) == a0 + 10_0000
    assert sim.position(alice.key_id, LIN)["realized_pnl"] == 6_0000
    assert sim.position(bob.key_id, LIN)["realized_pnl"] == -6_0000
    assert sim.position(bob.key_id, LIN)["position"] == 0
    # bob's resting ask released its hold (3 x 0.10) and his NO contracts paid nothing
    assert sim.balance(bob.key_id) == b0 + 3000
    st, m = await alice.get(f"/markets/{LIN}")
    assert m["market"]["result"] == "yes" and m["market"]["status"] in ("determined", "finalized")
    st, body = await alice.place(LIN, "bid", "0.4000", "1.00")
    assert st == 400 and body["error"]["code"] == "market_inactive"


async def test_order_that_cannot_be_paid_for_is_rejected_and_leaves_no_trace(sim: SimExchange):
    key, pem = sim.create_key(balance="5.00")
    async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
        st, body = await c.place(LIN, "bid", "0.5000", "10.00")  # needs 5.00 + fee estimate 0.18
        assert st == 400 and body["error"]["code"] == "insufficient_balance"
        assert sim.orders(key) == []
        st, body = await c.place(LIN, "bid", "0.5000", "9.00")  # 4.50 + 0.16 fits
        assert st == 201
        assert sim.balance(key) == 5_0000 - 4_5000  # the resting bid holds its cost
        st, body = await c.place(LIN, "bid", "0.1000", "6.00")  # 0.60 > 0.50 left
        assert st == 400 and body["error"]["code"] == "insufficient_balance"
