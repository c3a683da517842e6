"""The connector against ``kmm sim`` for the late-2026 features the sim already has: 0.01-contract
counts with their positions and fees, cancel-all without a ticker, and grids read from price_ranges.
(Shards, the new REST answers and WS messages the sim lacks are tested on a scripted server in
test_protocol_2026.py and frame by frame in test_ws_protocol_2026.py.)"""

from __future__ import annotations

import uuid

import pytest

sim_mod = pytest.importorskip("kmm.sim", reason="kmm.sim is not importable")

from kmm._core.fees import cent_fee, fee_rate_e6, trade_fee  # noqa: E402
from kmm._core.grid import Grid  # noqa: E402
from kmm.errors import ExchangeError  # noqa: E402
from kmm.kalshi import decode as wire  # noqa: E402
from kmm.kalshi.rest import KalshiRest  # noqa: E402
from kmm.kalshi.types import OrderRequest  # noqa: E402
from tests.kalshi.test_sim_e2e import cfg_for  # noqa: E402


def coid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def sim():
    async with sim_mod.SimExchange(sim_mod.SimConfig(seed=3, flow="off", rate_tier="off")) as s:
        yield s


async def test_fractional_counts_fill_position_and_fee_to_the_cent(sim):
    t = next(t for t in sim.tickers if "FRAC" in t or t.endswith("-F"))
    maker_key, maker_pem = sim.create_key()
    taker_key, taker_pem = sim.create_key()
    async with KalshiRest(cfg_for(sim, maker_key, maker_pem)) as maker, \
            KalshiRest(cfg_for(sim, taker_key, taker_pem)) as taker:
        m = await maker.get_market(t)
        grid = Grid(wire.price_ranges_for_book(m))
        price = grid.snap_down(1500)
        ack = await maker.create_order(OrderRequest(t, "bid", price, 137, coid(), post_only=True))
        assert ack.remaining_count == 137 and not ack.post_only_cross
        hit = await taker.create_order(OrderRequest(t, "ask", price, 37, coid(),
                                                    time_in_force="immediate_or_cancel"))
        assert hit.fill_count == 37
        (fill,) = await taker.get_fills(ticker=t)
        assert (fill.count, fill.price, fill.side, fill.is_taker) == (37, price, "ask", True)
        # the 0.37-contract fee, rounded up to $0.0001, then charged in whole cents (kalshi-api.md 6)
        assert fill.fee == cent_fee(trade_fee(37, price, fee_rate_e6("quadratic", True)), 0)[0]
        (pos,) = [p for p in await taker.get_positions() if p.ticker == t]
        assert pos.position == -37
        (mpos,) = [p for p in await maker.get_positions() if p.ticker == t]
        assert mpos.position == 37
        assert (await maker.get_order(ack.order_id)).remaining_count == 100


async def test_cancel_all_takes_every_resting_order_in_every_market_without_a_ticker(sim):
    key, pem = sim.create_key()
    async with KalshiRest(cfg_for(sim, key, pem)) as rest:
        for t in sim.tickers[:3]:
            grid = Grid(wire.price_ranges_for_book(await rest.get_market(t)))
            await rest.create_order(OrderRequest(t, "bid", grid.snap_down(500), 100, coid(), post_only=True))
        assert len(sim.orders(key, status="resting")) == 3
        assert await rest.cancel_all() is None
        assert sim.orders(key, status="resting") == []
        assert [o for o in await rest.get_orders(status="resting")] == []   # verified over REST too


async def test_prices_snap_to_the_markets_price_ranges_and_the_sim_agrees(sim):
    key, pem = sim.create_key(shard_balances={1: "1000.00", 2: "1000.00"})   # markets on shards 1 and 2 need cash there
    async with KalshiRest(cfg_for(sim, key, pem)) as rest:
        for m in await rest.get_markets():
            grid = Grid(wire.price_ranges_for_book(m.price_ranges))
            assert grid.prices() == Grid(wire.price_ranges_for_book(m)).prices()
            inside = [p for p in grid.prices() if 300 <= p <= 700]
            p = inside[len(inside) // 2]
            ack = await rest.create_order(OrderRequest(m.ticker, "bid", p, 100, coid(), post_only=True))
            assert ack.remaining_count == 100
            off = p + 1 if not grid.is_valid(p + 1) else None
            if off is not None:
                with pytest.raises(ExchangeError) as exc:
                    await rest.create_order(OrderRequest(m.ticker, "bid", off, 100, coid(), post_only=True))
                assert exc.value.status == 400
        await rest.cancel_all()


async def test_series_of_each_market_decode_with_their_fee_terms(sim):
    key, pem = sim.create_key()
    async with KalshiRest(cfg_for(sim, key, pem)) as rest:
        for t in sim.tickers:
            series = t.split("-")[0]
            s = await rest.get_series_info(series)
            raw = await rest.get_series(series)
            assert s.ticker == series and s.fee_type == raw["fee_type"]
            assert s.fee_multiplier == float(raw.get("fee_multiplier", 1))
