"""``kmm sim``: an embedded Kalshi-compatible exchange (REST + WebSocket on loopback).

It shares nothing with kmm's client side except ``kmm.protocol`` (plain constants) and
``kmm._core.fees`` (the fee function), so a misreading of the protocol cannot hide by being made twice.
"""

from kmm.sim.config import MarketSpec, SimConfig
from kmm.sim.exchange import SimExchange

__all__ = ["MarketSpec", "SimConfig", "SimExchange"]
