"""Helpers for end-to-end execution tests against the in-process simulator."""

from __future__ import annotations

from dataclasses import dataclass

from kmm.kalshi import ConnectorConfig
from kmm.sim import SimExchange

# (price, size) ladders on the side an execution takes from, best first (YES prices, 1e-2 contracts)
THICK_ASKS = [(5000, 20000), (5100, 20000), (5200, 20000), (5300, 20000), (5400, 20000)]
THIN_ASKS = [(5000, 500), (5600, 300), (5700, 300)]
THICK_BIDS = [(4800, 20000), (4700, 20000), (4600, 20000), (4500, 20000)]
THIN_BIDS = [(4800, 500), (4200, 300), (4100, 300)]


def connector(sim: SimExchange, key_id: str, pem: bytes) -> ConnectorConfig:
    conn = ConnectorConfig.resolve({}, {"env": "sim", "rest_url": sim.rest_url, "ws_url": sim.ws_url}, {})
    return conn.with_server(sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=pem)


def build_book(sim: SimExchange, maker: str, ticker: str, asks, bids) -> None:
    """Rest a ladder from another account (the counterparty of our takes)."""
    for p, s in asks:
        sim.place_direct(maker, ticker, "ask", p, s)
    for p, s in bids:
        sim.place_direct(maker, ticker, "bid", p, s)


@dataclass
class Truth:
    """What the simulator says one execution did (its fills and orders, by client_order_id prefix)."""

    filled: int
    notional: int
    fees: int
    prices: list[int]
    resting: int
    orders: int

    @property
    def avg(self) -> float | None:
        return self.notional / self.filled if self.filled else None


def truth(sim: SimExchange, key_id: str, execution_id: str) -> Truth:
    pre = execution_id + "-"
    fills = [f for f in sim.fills(key_id) if (f["client_order_id"] or "").startswith(pre)]
    orders = [o for o in sim.orders(key_id) if (o["client_order_id"] or "").startswith(pre)]
    return Truth(filled=sum(f["count"] for f in fills), notional=sum(f["count"] * f["price"] for f in fills),
                 fees=sum(f["fee"] for f in fills), prices=[f["price"] for f in fills],
                 resting=sum(1 for o in orders if o["status"] == "resting"), orders=len(orders))
