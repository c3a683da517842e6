"""Fixtures: an in-process simulator on an ephemeral loopback port and a signed test client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kmm.sim import MarketSpec, SimConfig, SimExchange
from tests.sim.client import SimClient

MARKETS = [
    MarketSpec("KXT-26-LIN", price_level_structure="linear_cent"),
    MarketSpec("KXT-26-DECI", price_level_structure="deci_cent"),
    MarketSpec("KXT-26-TAPER", price_level_structure="tapered_deci_cent"),
    MarketSpec("KXM-26-MAKER", fee_type="quadratic_with_maker_fees"),
    MarketSpec("KXT-26-FRAC", price_level_structure="deci_cent"),
]
LIN, DECI, TAPER, MAKER, FRAC = (m.ticker for m in MARKETS)


@pytest.fixture
async def sim() -> AsyncIterator[SimExchange]:
    cfg = SimConfig(seed=1, flow="off", rate_tier="off", balance="1000.00",
                    markets=[MarketSpec(m.ticker, price_level_structure=m.price_level_structure,
                                        fee_type=m.fee_type)
                             for m in MARKETS])
    async with SimExchange(cfg) as s:
        yield s


@pytest.fixture
async def alice(sim: SimExchange) -> AsyncIterator[SimClient]:
    key_id, pem = sim.create_key()
    async with SimClient(sim.rest_url, sim.ws_url, key_id, pem) as c:
        yield c


@pytest.fixture
async def bob(sim: SimExchange) -> AsyncIterator[SimClient]:
    key_id, pem = sim.create_key()
    async with SimClient(sim.rest_url, sim.ws_url, key_id, pem) as c:
        yield c
