"""The fill simulator: queue position, Kalshi's priority rules, takers, fees to the cent."""

from __future__ import annotations

import pytest

from kmm._core.book import OrderBook
from kmm._core.fees import cent_fee, trade_fee
from kmm._core.grid import Grid
from kmm.research.fills import LINEAR_CENT, FillSimulator, MarketDef
from kmm.research.queue import QueueModel

T = "KXQ-26-A"
MS = 1_000_000


def make(kind: str = "proportional", maker: int = 17_500, taker: int = 70_000,
         bids=((4000, 1000),), asks=((6000, 1000),)) -> FillSimulator:
    sim = FillSimulator({T: MarketDef(T, LINEAR_CENT, maker, taker)}, QueueModel(kind), trade_window_ns=5 * MS)
    book = OrderBook(Grid(list(LINEAR_CENT)))
    book.apply_snapshot([[f"{p / 1e4:.4f}", f"{s / 100:.2f}"] for p, s in bids],
                        [[f"{(10000 - p) / 1e4:.4f}", f"{s / 100:.2f}"] for p, s in asks])
    sim.attach_book(T, book)
    return sim


def recorded(sim: FillSimulator, now: int, side: str, yes_price: int, delta: int) -> None:
    """A recorded delta as the router would apply it, then the simulator looks at our levels."""
    book = sim.markets[T].book
    if side == "bid":
        book.apply_level_delta(0, yes_price, delta)
    else:
        book.apply_level_delta(1, 10000 - yes_price, delta)
    sim.on_book_change(now, T)


# ------------------------------------------------------------------------------ queue models
@pytest.mark.parametrize("kind, expected", [("pessimistic", 1000.0), ("optimistic", 500.0),
                                            ("proportional", 750.0), ("power", 750.0)])
def test_queue_model_moves_us_forward_by_the_cancels_share_in_front(kind, expected):
    # 1000 ahead, 1000 behind (1e-2 contracts), 500 cancelled: proportional takes half from the front;
    # power (n=2) the same when both sides are equal
    assert QueueModel(kind).after_cancel(1000.0, 1000.0, 500.0) == pytest.approx(expected)


def test_power_model_takes_more_from_the_bigger_side_than_proportional():
    prop, power = QueueModel("proportional"), QueueModel("power", 2.0)
    # 300 ahead, 900 behind: the queue behind is bigger, so a cancel is likelier to be behind
    assert power.after_cancel(300.0, 900.0, 100.0) > prop.after_cancel(300.0, 900.0, 100.0)


def test_a_cancel_bigger_than_the_size_behind_comes_partly_from_the_front_even_pessimistic():
    assert QueueModel("pessimistic").after_cancel(1000.0, 200.0, 500.0) == pytest.approx(700.0)


def test_unknown_queue_model_is_refused():
    with pytest.raises(ValueError, match="queue model"):
        QueueModel("magic")


# ------------------------------------------------------------------------------ priority rules
def test_a_new_order_joins_the_back_of_its_level():
    sim = make()
    ack, o, fills = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    assert ack.remaining_count == 500 and not fills
    assert o.ahead == 1000                      # the 10 contracts visible at 0.40 are in front
    assert sim.markets[T].book.size_at("yes", 4000) == 1500   # and the order is in the replay book


def test_trade_at_our_price_eats_the_front_first_then_fills_us_at_the_maker_fee():
    sim = make()
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    fills = sim.on_trade(1 * MS, 1, T, 4000, 1200, "ask", "tr1")     # a seller takes 12 at 0.40
    assert [(f.count, f.price, f.is_taker) for f in fills] == [(200, 4000, False)]
    assert fills[0].fee == cent_fee(trade_fee(200, 4000, 17_500), 0)[0]
    assert o.remaining == 300 and o.ahead == 0
    assert sim.trade_outcomes == {}            # outcomes are kept only when asked for


def test_a_trade_smaller_than_the_queue_in_front_only_moves_us_forward():
    sim = make()
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    assert sim.on_trade(1 * MS, 1, T, 4000, 400, "ask") == []
    assert o.ahead == 600 and o.remaining == 500


def test_a_trade_through_our_price_means_our_level_was_swept():
    sim = make()
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    fills = sim.on_trade(1 * MS, 1, T, 3900, 300, "ask")             # a seller printed below our bid
    assert [f.count for f in fills] == [300]


def test_decrease_keeps_the_queue_position():
    sim = make()
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    sim.on_trade(1 * MS, 1, T, 4000, 400, "ask")
    sim.decrease(2 * MS, 2, o.order_id, 200)
    assert o.ahead == 600 and o.remaining == 200


def test_amend_that_only_lowers_size_keeps_priority_price_change_or_size_up_loses_it():
    sim = make(bids=((4000, 1000), (3900, 700)))
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    sim.on_trade(1 * MS, 1, T, 4000, 400, "ask")                       # ahead 600
    recorded(sim, 1 * MS, "bid", 4000, -400)                            # ... and the trade's book delta
    recorded(sim, 2 * MS, "bid", 4000, 300)                             # 3 contracts join behind us
    sim.amend(3 * MS, 3, o.order_id, 4000, 300)
    assert o.ahead == 600                                              # smaller: same place
    sim.amend(4 * MS, 4, o.order_id, 4000, 800)
    assert o.ahead == 900                                              # bigger: behind the 3 that came later
    sim.amend(5 * MS, 5, o.order_id, 3900, 800)
    assert o.price == 3900 and o.ahead == 700                          # new price: back of the new level
    assert sim.markets[T].book.size_at("yes", 4000) == 900 and sim.markets[T].book.size_at("yes", 3900) == 1500


def test_cancels_ahead_or_behind_move_us_by_the_model_after_the_trade_window():
    sim = make("proportional")
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")              # 1000 ahead
    recorded(sim, 0, "bid", 4000, 1000)                                 # 1000 join behind us
    recorded(sim, 1 * MS, "bid", 4000, -1000)                           # 1000 leave: who?
    assert o.ahead == 1000                                              # not yet: a trade may explain it
    sim.expire_all(10 * MS)
    assert o.ahead == pytest.approx(500)                                # half in front (1000 vs 1000)
    # pessimistic: a cancel never moves us forward while the size behind covers it
    sim2 = make("pessimistic")
    _, o2, _ = sim2.place(0, 0, T, "bid", 4000, 500, "c1")
    recorded(sim2, 0, "bid", 4000, 1000)
    recorded(sim2, 1 * MS, "bid", 4000, -1000)
    sim2.expire_all(10 * MS)
    assert o2.ahead == 1000


def test_a_level_decrease_explained_by_a_trade_moves_the_queue_once_not_twice():
    for first in ("delta", "trade"):
        sim = make("optimistic")
        _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")           # 1000 ahead
        if first == "delta":
            recorded(sim, 1 * MS, "bid", 4000, -300)
            sim.on_trade(2 * MS, 2, T, 4000, 300, "ask")
        else:
            sim.on_trade(1 * MS, 1, T, 4000, 300, "ask")
            recorded(sim, 2 * MS, "bid", 4000, -300)
        sim.expire_all(50 * MS)
        assert o.ahead == 700, first                                    # 300 of trade, counted once


def test_post_only_that_would_cross_is_cancelled_not_filled():
    sim = make()
    ack, o, fills = sim.place(0, 0, T, "bid", 6000, 500, "c1", post_only=True)
    assert (ack.fill_count, ack.remaining_count, o.status, fills) == (0, 0, "canceled", [])
    assert sim.stats.post_only_cancels == 1
    assert sim.markets[T].book.size_at("no", 4000) == 1000             # the ask is untouched


def test_post_only_amend_into_the_book_is_refused_and_the_order_keeps_its_place():
    sim = make()
    _, o, _ = sim.place(0, 0, T, "bid", 4000, 500, "c1")
    sim.on_trade(1 * MS, 1, T, 4000, 400, "ask")
    got, refused, fills = sim.amend(2 * MS, 2, o.order_id, 6000, 500)
    assert refused == "post_only_cross" and not fills and o.price == 4000 and o.ahead == 600


# ------------------------------------------------------------------------------ takers and fees
def test_taker_walks_the_book_pays_exact_fees_and_never_takes_the_same_liquidity_twice():
    sim = make(asks=((5500, 500), (5600, 500)))
    _, o, fills = sim.place(0, 0, T, "bid", 5600, 800, "t1", post_only=False)
    assert [(f.price, f.count, f.is_taker) for f in fills] == [(5500, 500, True), (5600, 300, True)]
    # fees: exact fee of each fill rounded up to $0.0001, charged in whole cents with the order's carry
    f1 = trade_fee(500, 5500, 70_000)          # 0.07 * 5 * 0.55 * 0.45 = 0.086625 -> 0.0867
    assert f1 == 867
    c1, carry = cent_fee(f1, 0)
    c2, carry = cent_fee(trade_fee(300, 5600, 70_000), carry)
    assert [f.fee for f in fills] == [c1, c2] and c1 == 900
    assert o.remaining == 0 and o.status == "executed"
    # the same levels again: only what is left (2 contracts at 0.56) can be taken
    _, o2, fills2 = sim.place(1 * MS, 1, T, "bid", 5600, 1000, "t2", post_only=False)
    assert [(f.price, f.count) for f in fills2] == [(5600, 200)]
    assert o2.remaining == 800                                          # the rest rests at 0.56
    # a recorded delta at the taken level shrinks what we took first; nothing comes back
    sim.apply_recorded_delta(T, 1, 10000 - 5600, -100, own=False)
    assert sim.markets[T].book.size_at("no", 4400) == 0
    assert sim.stats.taken == 1000


def test_fees_to_the_cent_on_a_ten_contract_taker_at_fifty_cents():
    # kalshi-api.md: a taker buying 10 at $0.50 pays $0.175 -> about $0.18
    sim = make(asks=((5000, 1000),))
    _, _, fills = sim.place(0, 0, T, "bid", 5000, 1000, "t1", post_only=False)
    assert trade_fee(1000, 5000, 70_000) == 1750
    assert [f.fee for f in fills] == [1800]


def test_own_liquidity_of_the_recorded_run_is_left_out_of_the_replay_book():
    sim = make()
    sim.apply_recorded_delta(T, 0, 4100, 500, own=True)       # the recorded run's bid appears
    assert sim.markets[T].book.size_at("yes", 4100) == 0
    sim.markets[T].book.apply_snapshot([["0.4100", "5.00"], ["0.4000", "10.00"]], [["0.4000", "10.00"]])
    sim.on_snapshot(T)                                         # a snapshot still shows it: taken out
    assert sim.markets[T].book.size_at("yes", 4100) == 0 and sim.markets[T].book.size_at("yes", 4000) == 1000
    sim.apply_recorded_delta(T, 0, 4100, -500, own=True)       # and its cancel changes nothing
    assert sim.markets[T].book.size_at("yes", 4100) == 0 and sim.stats.own_deltas_removed == 2
