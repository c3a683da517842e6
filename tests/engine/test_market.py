from kmm._core.book import OrderBook
from kmm._core.grid import Grid
from kmm.config import StrategyParams
from kmm.engine.market import MarketInfo, MarketPipeline, _best_ex_own
from kmm.engine.orders import LiveOrder
from kmm.strategy.alpha import AlphaSource
from kmm.strategy.stoikov import StoikovStrategy


def _pipe(book: OrderBook) -> MarketPipeline:
    grid = Grid()
    info = MarketInfo("T", grid, None)
    strat = StoikovStrategy(grid, gamma=0.1, kappa=100, quote_size=500, max_position=5000)
    return MarketPipeline(info, book, strat, StrategyParams(), AlphaSource())


def test_best_ex_own_skips_levels_that_are_only_ours_and_keeps_the_rest_of_shared_ones():
    assert _best_ex_own([(4500, 500), (4400, 300)], {4500: 500}) == (4400, 300)
    assert _best_ex_own([(4500, 800), (4400, 300)], {4500: 500}) == (4500, 300)
    assert _best_ex_own([(4500, 500)], {4500: 500}) == (0, 0)


def test_pipeline_fair_value_excludes_our_own_quotes_from_the_book():
    book = OrderBook()
    # others: YES bid 0.40 x 10, NO bid 0.40 (= YES ask 0.60) x 10; ours: bid 0.45 x 5, ask 0.55 x 5
    book.apply_snapshot([["0.4000", "10.00"], ["0.4500", "5.00"]], [["0.4000", "10.00"], ["0.4500", "5.00"]])
    pipe = _pipe(book)
    ours = [LiveOrder("o1", "bid", 4500, 500, 0, "c1", True), LiveOrder("o2", "ask", 5500, 500, 0, "c2", True)]
    pipe.on_book(1, 0, ours)
    assert (pipe.inputs.best_bid, pipe.inputs.best_ask, pipe.inputs.mid) == (4000, 6000, 5000.0)
    pipe.on_book(2, 0, [])
    assert (pipe.inputs.best_bid, pipe.inputs.best_ask) == (4500, 5500)


def test_pipeline_ignores_orders_not_yet_acknowledged_when_taking_ours_out():
    book = OrderBook()
    book.apply_snapshot([["0.4500", "5.00"]], [["0.4500", "5.00"]])
    pipe = _pipe(book)
    pending = [LiveOrder(None, "bid", 4500, 500, 0, "c1", False)]
    pipe.on_book(1, 0, pending)
    assert pipe.inputs.best_bid == 4500


def test_price_tolerance_has_a_money_floor_on_fine_grids():
    deci = Grid("deci_cent")
    info = MarketInfo("D", deci, None)
    strat = StoikovStrategy(deci, gamma=0.1, kappa=100, quote_size=500, max_position=5000)
    pipe = MarketPipeline(info, OrderBook("deci_cent"), strat, StrategyParams(), AlphaSource())
    assert pipe.differ.price_tol == 50            # 1 tick is 10 (1e-4 $); the floor is $0.005
    lin = _pipe(OrderBook())
    assert lin.differ.price_tol == 100            # 1 tick of a cent grid is above the floor
