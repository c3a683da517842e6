"""Configuration of the simulated exchange: markets and the run."""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from kmm import protocol
from kmm.sim.ratelimit import TIERS
from kmm.sim.wire import GRIDS, STRUCTURES


@dataclass(slots=True)
class MarketSpec:
    """One market. ``fair_value`` (0..1) seeds the synthetic flow; ``close_time`` is Unix seconds.

    ``exchange_index`` is the shard (matching engine) the market lives on; every market of one event must
    share it, and ``mutually_exclusive`` (the event's ``collateral_return_type`` MECNET) must agree too.
    Counts are in 0.01 steps on every market (Kalshi removed ``fractional_trading_enabled`` in 2026).
    """

    ticker: str
    event_ticker: str = ""
    series_ticker: str = ""
    title: str = ""
    price_level_structure: str = "linear_cent"
    fee_type: str = "quadratic"
    fee_multiplier: float | str = 1
    close_time: int | None = None
    fair_value: float = 0.5
    exchange_index: int = 0
    mutually_exclusive: bool = False
    category: str = "Simulated"

    def __post_init__(self) -> None:
        if not self.ticker:
            raise ValueError("MarketSpec.ticker is empty")
        if self.price_level_structure not in GRIDS:
            raise ValueError(f"MarketSpec {self.ticker}: price_level_structure {self.price_level_structure!r} "
                             f"is not one of {', '.join(STRUCTURES)}")
        if isinstance(self.exchange_index, bool) or not isinstance(self.exchange_index, int) \
                or not 0 <= self.exchange_index < MAX_SHARDS:
            raise ValueError(f"MarketSpec {self.ticker}: exchange_index {self.exchange_index!r} must be an "
                             f"integer in 0..{MAX_SHARDS - 1}")
        if self.fee_type not in ("quadratic", "quadratic_with_maker_fees"):
            raise ValueError(f"MarketSpec {self.ticker}: fee_type {self.fee_type!r} is not supported")
        if not 0.0 < self.fair_value < 1.0:
            raise ValueError(f"MarketSpec {self.ticker}: fair_value {self.fair_value} must be in (0, 1)")
        if not self.series_ticker:
            self.series_ticker = self.ticker.split("-")[0]
        if not self.event_ticker:
            parts = self.ticker.split("-")
            self.event_ticker = "-".join(parts[:2]) if len(parts) > 2 else self.ticker
        if not self.title:
            self.title = f"Simulated market {self.ticker}"
        if self.close_time is None:
            self.close_time = int(time.time()) + 30 * 86400


MAX_SHARDS = 8  # shards the simulator will run (Kalshi had 0..3 in late 2026)

# The mutually exclusive event of the default set: three outcomes, at most one resolves yes.
ME_EVENT = "KXSIMWIN-26"


def default_markets(n: int | None = None) -> list[MarketSpec]:
    """Varied markets on shard 0 (the three classic grids, maker fees, a half-fee series, a mutually exclusive
    event of three markets), a combo-style market on shard 1 and a crypto-style event on shard 2."""
    base = [
        MarketSpec("KXSIMA-26-A", fair_value=0.50),
        MarketSpec("KXSIMB-26-B", price_level_structure="deci_cent", fair_value=0.35),
        MarketSpec("KXSIMC-26-C", price_level_structure="tapered_deci_cent", fair_value=0.08),
        MarketSpec("KXSIMM-26-M", fee_type="quadratic_with_maker_fees", fair_value=0.62),
        MarketSpec("KXSIMF-26-F", price_level_structure="deci_cent", fair_value=0.45),
        MarketSpec("KXSIMH-26-H", fee_multiplier="0.5", fair_value=0.25),
        MarketSpec(f"{ME_EVENT}-RED", event_ticker=ME_EVENT, mutually_exclusive=True, fair_value=0.50),
        MarketSpec(f"{ME_EVENT}-GREEN", event_ticker=ME_EVENT, mutually_exclusive=True, fair_value=0.30),
        MarketSpec(f"{ME_EVENT}-BLUE", event_ticker=ME_EVENT, mutually_exclusive=True, fair_value=0.20),
        MarketSpec("KXMVESIM-26-C1", price_level_structure="center_deci_edge_centi_cent", exchange_index=1,
                   category="Exotics", fair_value=0.30),
        MarketSpec("KXBTCSIM-26-T1", price_level_structure="center_half_edge_deci_cent", exchange_index=2,
                   category="Crypto", fair_value=0.55),
        MarketSpec("KXBTCSIM-26-T2", price_level_structure="center_half_edge_deci_cent", exchange_index=2,
                   event_ticker="KXBTCSIM-26", category="Crypto", fair_value=0.40),
    ]
    if n is None:
        return base
    if n <= len(base):
        return base[:n]
    extra = [MarketSpec(f"KXSIMX-26-X{i}", price_level_structure=STRUCTURES[i % 3],
                        fair_value=0.2 + 0.6 * ((i * 37) % 100) / 100) for i in range(n - len(base))]
    return base + extra


def liquidity_program(ticker: str, *, target_size: str = "100.00", discount_factor_bps: int = 5000,
                      period_reward: int = 1_000_000, start_s: float | None = None, days: float = 30.0,
                      program_id: str | None = None, paid_out: bool = False) -> dict[str, Any]:
    """A Liquidity Incentive Program item as ``GET /incentive_programs`` lists it (kalshi-api.md 11):
    ``period_reward`` in centi-cents ($100 by default), ``target_size_fp`` contracts, running from
    ``start_s`` (Unix seconds; default: a day ago) for ``days``."""
    start = time.time() - 86400 if start_s is None else start_s

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return {"id": program_id or f"lip-{ticker}", "market_id": f"mkt-{ticker}", "market_ticker": ticker,
            "incentive_type": "liquidity", "incentive_description": f"Liquidity incentive on {ticker}",
            "start_date": iso(start), "end_date": iso(start + days * 86400), "period_reward": period_reward,
            "paid_out": paid_out, "discount_factor_bps": discount_factor_bps, "target_size_fp": target_size}


def grid_markets(exchange_index: int = 0) -> list[MarketSpec]:
    """One market on each of the twelve price structures (``--markets all-grids``), on one shard."""
    return [MarketSpec(f"KXGRID-26-G{i:02d}", event_ticker=f"KXGRID-26G{i:02d}", price_level_structure=s,
                       exchange_index=exchange_index, fair_value=0.15 + 0.7 * i / len(STRUCTURES),
                       title=f"Grid market on {s}")
            for i, s in enumerate(STRUCTURES)]


@dataclass(slots=True)
class SimConfig:
    """How the simulator runs. ``balance`` is dollars (string like "1000.00", or an int of dollars)."""

    seed: int = 1
    flow: str = "off"  # off | calm | busy
    speed: float = 1.0
    rate_tier: str = "off"  # basic | advanced | expert | premier | paragon | prime | prestige | off
    # Bucket depth in seconds of budget for every bucket; None = Kalshi's per-tier bursts (kalshi-api.md 5:
    # Basic write 1 s, write above Basic 2 s, read 2 s at Basic/Advanced and 1 s above). A fixed value is
    # for clients that predate sizing their buckets from GET /account/limits.
    burst_s: float | None = None
    balance: str | int = "1000.00"
    markets: None | int | str | list[MarketSpec] = None  # None | count | "all-grids" | specs
    host: str = "127.0.0.1"
    port: int = 0
    ping_interval_s: float = protocol.WS_PING_INTERVAL_S
    pong_timeout_s: float = 20.0  # [U] Kalshi documents no pong timeout
    auth_window_s: float = 60.0  # [U] Kalshi documents no skew window
    v1_gone: bool = True  # V1 order paths answer 410
    require_ws_auth: bool = True
    expiry_check_s: float = 0.05
    extra_keys: list[tuple[str, bytes]] = field(default_factory=list)
    # Shards the exchange runs beyond those its markets use (each has its own balances and write buckets).
    shards: int = 4
    # Cancel-all (DELETE /portfolio/events/orders). Kalshi: "orders placed in the minute after the request
    # may also be cancelled" (kalshi-api.md 4.1) without saying which. [U] The simulator takes the worst
    # case: every order the caller (that subaccount, or all of them) places within ``cancel_all_tail_s``
    # after the request is cancelled as soon as it is accepted. 0 turns the tail off.
    cancel_all_tail_s: float = 60.0
    # The pre-Aug-2026 simulator answered cancel-all 200 with the cancelled orders and honoured ?ticker=.
    # Kalshi answers 204, has no ticker filter and covers every shard; True restores the old behaviour.
    legacy_cancel_all: bool = False
    # Kalshi pauses trading every Thursday 03:00-05:00 ET (kalshi-api.md 4.7). Off by default so runs that
    # happen to cross the window behave the same any day; True follows the wall clock.
    weekly_trading_pause: bool = False
    # Auto-rebalance of accounts that posted a target balance allocation (Kalshi: every 10 s).
    rebalance_interval_s: float = 10.0
    # WebSocket sanity limits (CL Jun 18): commands per second per connection (error 27) and markets per
    # subscription (error 26). [U] Kalshi states 500k market subscriptions per *session*; the simulator
    # counts them per subscription, the granularity of error 26's name.
    ws_max_commands_per_s: int = 10_000
    ws_max_markets_per_sub: int = 500_000
    # TLS: a PEM certificate chain and its key (or a ready server context) serve https:// and wss://.
    # Default: plain http:// and ws://.
    tls_cert: str | None = None
    tls_key: str | None = None
    ssl_context: ssl.SSLContext | None = None
    # GET /incentive_programs (kalshi-api.md 11): the programs served, as wire items (see
    # liquidity_program); none by default.
    incentive_programs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("SimConfig: give both tls_cert and tls_key (PEM files), or neither")
        if self.tls_cert is not None and self.ssl_context is not None:
            raise ValueError("SimConfig: give either tls_cert/tls_key or ssl_context, not both")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"SimConfig.{name} {path!r} is not a file; pass a PEM file")
        if self.flow not in ("off", "calm", "busy"):
            raise ValueError(f"SimConfig.flow {self.flow!r}: expected off, calm or busy")
        if self.rate_tier != "off" and self.rate_tier not in TIERS:
            raise ValueError(f"SimConfig.rate_tier {self.rate_tier!r}: expected off or one of "
                             f"{', '.join(TIERS)}")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"SimConfig.shards {self.shards} must be within 1..{MAX_SHARDS}")
        if self.rebalance_interval_s <= 0:
            raise ValueError(f"SimConfig.rebalance_interval_s {self.rebalance_interval_s} must be > 0")
        if self.cancel_all_tail_s < 0:
            raise ValueError(f"SimConfig.cancel_all_tail_s {self.cancel_all_tail_s} must be >= 0")
        if isinstance(self.markets, str) and self.markets != "all-grids":
            raise ValueError(f"SimConfig.markets {self.markets!r}: expected a count, a list of MarketSpec "
                             "or 'all-grids'")
        if self.burst_s is not None and self.burst_s <= 0:
            raise ValueError(f"SimConfig.burst_s {self.burst_s} must be > 0 (or None for Kalshi's bursts)")
        if self.speed <= 0:
            raise ValueError(f"SimConfig.speed {self.speed} must be > 0")

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or None for plain http/ws."""
        if self.ssl_context is not None:
            return self.ssl_context
        if self.tls_cert is None or self.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"SimConfig: cannot load TLS certificate {self.tls_cert!r} with key "
                             f"{self.tls_key!r}: {exc}") from None
        ctx.set_alpn_protocols(["http/1.1"])  # REST and the WebSocket upgrade are both HTTP/1.1
        return ctx

    def market_specs(self) -> list[MarketSpec]:
        if isinstance(self.markets, str):
            return grid_markets()  # "all-grids" (checked in __post_init__)
        if self.markets is None or isinstance(self.markets, int):
            return default_markets(self.markets)
        return list(self.markets)


def parse_dollars(value: str | int) -> int:
    """Dollars (``"1000.00"`` or ``1000``) in 1e-4 $."""
    if isinstance(value, bool):
        raise ValueError(f"balance {value!r} is not a dollar amount")
    if isinstance(value, int):
        return value * 10000
    if isinstance(value, float):
        return round(value * 10000)
    whole, _, frac = str(value).strip().partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 4)):
        raise ValueError(f"balance {value!r} is not a dollar amount like \"1000.00\"")
    return int(whole) * 10000 + int((frac + "0000")[:4])
