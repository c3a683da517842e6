"""Configuration of the simulated exchange: markets and the run."""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass, field

from kmm import protocol


@dataclass(slots=True)
class MarketSpec:
    """One market. ``fair_value`` (0..1) seeds the synthetic flow; ``close_time`` is Unix seconds."""

    ticker: str
    event_ticker: str = ""
    series_ticker: str = ""
    title: str = ""
    price_level_structure: str = "linear_cent"
    fee_type: str = "quadratic"
    fee_multiplier: float | str = 1
    close_time: int | None = None
    fractional_trading_enabled: bool = False
    fair_value: float = 0.5

    def __post_init__(self) -> None:
        if not self.ticker:
            raise ValueError("MarketSpec.ticker is empty")
        if self.price_level_structure not in protocol.PRICE_LEVEL_STRUCTURES:
            raise ValueError(f"MarketSpec {self.ticker}: price_level_structure {self.price_level_structure!r} "
                             f"is not one of {protocol.PRICE_LEVEL_STRUCTURES}")
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


def default_markets(n: int | None = None) -> list[MarketSpec]:
    """A handful of varied markets: every grid, maker fees on one, a fractional one, a half-fee series."""
    base = [
        MarketSpec("KXSIMA-26-A", fair_value=0.50),
        MarketSpec("KXSIMB-26-B", price_level_structure="deci_cent", fair_value=0.35),
        MarketSpec("KXSIMC-26-C", price_level_structure="tapered_deci_cent", fair_value=0.08),
        MarketSpec("KXSIMM-26-M", fee_type="quadratic_with_maker_fees", fair_value=0.62),
        MarketSpec("KXSIMF-26-F", price_level_structure="deci_cent", fractional_trading_enabled=True,
                   fair_value=0.45),
        MarketSpec("KXSIMH-26-H", fee_multiplier="0.5", fair_value=0.25),
    ]
    if n is None:
        return base
    if n <= len(base):
        return base[:n]
    structures = protocol.PRICE_LEVEL_STRUCTURES
    extra = [MarketSpec(f"KXSIMX-26-X{i}", price_level_structure=structures[i % 3],
                        fair_value=0.2 + 0.6 * ((i * 37) % 100) / 100) for i in range(n - len(base))]
    return base + extra


@dataclass(slots=True)
class SimConfig:
    """How the simulator runs. ``balance`` is dollars (string like "1000.00", or an int of dollars)."""

    seed: int = 1
    flow: str = "off"  # off | calm | busy
    speed: float = 1.0
    rate_tier: str = "off"  # basic | advanced | premier | paragon | prime | off
    balance: str | int = "1000.00"
    markets: None | int | list[MarketSpec] = None
    host: str = "127.0.0.1"
    port: int = 0
    ping_interval_s: float = protocol.WS_PING_INTERVAL_S
    pong_timeout_s: float = 20.0  # [U] Kalshi documents no pong timeout
    auth_window_s: float = 60.0  # [U] Kalshi documents no skew window
    v1_gone: bool = True  # V1 order paths answer 410
    require_ws_auth: bool = True
    expiry_check_s: float = 0.05
    extra_keys: list[tuple[str, bytes]] = field(default_factory=list)
    # TLS: a PEM certificate chain and its key (or a ready server context) serve https:// and wss://.
    # Default: plain http:// and ws://.
    tls_cert: str | None = None
    tls_key: str | None = None
    ssl_context: ssl.SSLContext | None = None

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
        if self.rate_tier != "off" and self.rate_tier not in protocol.RATE_TIERS:
            raise ValueError(f"SimConfig.rate_tier {self.rate_tier!r}: expected off or one of "
                             f"{', '.join(protocol.RATE_TIERS)}")
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
