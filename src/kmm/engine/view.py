"""What the operator sees while kmm runs: a live terminal table, or plain status lines for logs.

Rendering is pure (a snapshot in, text out), so it is tested without a terminal; the engine decides how
often to draw. Prices are shown in cents, sizes in contracts, money in dollars.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class MarketRow:
    ticker: str
    best_bid: int | None = None      # 1e-4 $
    best_ask: int | None = None
    my_bid: int | None = None
    my_ask: int | None = None
    my_bid_size: int = 0             # 1e-2 contracts
    my_ask_size: int = 0
    position: int = 0                # 1e-2 contracts, signed
    realized: int = 0                # 1e-4 $
    unrealized: int = 0
    fills: int = 0
    state: str = "quoting"           # quoting | stale | paused | reduce-only | killed | closed


@dataclass(slots=True)
class Snapshot:
    elapsed_s: float
    venue: str
    markets: list[MarketRow] = field(default_factory=list)
    cash: int = 0                    # 1e-4 $
    fees: int = 0
    fills: int = 0
    orders_sent: int = 0
    write_pressure: float = 0.0      # 0..1 of the write bucket in use
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    note: str = ""


def _c(px: int | None) -> str:
    return "  -  " if px is None else f"{px / 100:5.1f}"


def _n(qty: int) -> str:
    return f"{qty / 100:g}"


def _usd(m: int) -> str:
    return f"{'-' if m < 0 else ''}${abs(m) / 10000:,.2f}"


def _lat(us: float | None) -> str:
    return "-" if us is None else f"{us:,.0f}us"


def render_table(s: Snapshot) -> str:
    total_real = sum(m.realized for m in s.markets)
    total_unreal = sum(m.unrealized for m in s.markets)
    lines = [
        f"kmm  {s.venue}  t={s.elapsed_s:,.0f}s  fills={s.fills}  orders={s.orders_sent}  "
        f"write-bucket={s.write_pressure:4.0%}  latency p50={_lat(s.latency_p50_us)} p99={_lat(s.latency_p99_us)}",
        f"{'market':<22} {'bid':>5} {'ask':>5} | {'my bid':>6} {'x':>5} {'my ask':>6} {'x':>5} | "
        f"{'pos':>7} {'realized':>10} {'unreal':>10} {'fills':>5}  state",
    ]
    for m in s.markets:
        lines.append(
            f"{m.ticker[:22]:<22} {_c(m.best_bid)} {_c(m.best_ask)} | {_c(m.my_bid):>6} "
            f"{_n(m.my_bid_size):>5} {_c(m.my_ask):>6} {_n(m.my_ask_size):>5} | {_n(m.position):>7} "
            f"{_usd(m.realized):>10} {_usd(m.unrealized):>10} {m.fills:>5}  {m.state}")
    lines.append(f"P&L realized {_usd(total_real)}  unrealized {_usd(total_unreal)}  "
                 f"fees {_usd(s.fees)}  cash {_usd(s.cash)}" + (f"  | {s.note}" if s.note else ""))
    return "\n".join(lines)


def render_line(s: Snapshot) -> str:
    """One log line: the plain mode for non-interactive use."""
    parts = [f"t={s.elapsed_s:.0f}s fills={s.fills} orders={s.orders_sent} "
             f"pressure={s.write_pressure:.0%} p50={_lat(s.latency_p50_us)} p99={_lat(s.latency_p99_us)}"]
    for m in s.markets:
        parts.append(f"{m.ticker} {_c(m.my_bid).strip()}/{_c(m.my_ask).strip()} pos={_n(m.position)} "
                     f"pnl={_usd(m.realized + m.unrealized)} {m.state}")
    return " | ".join(parts)


CLEAR = "\x1b[H\x1b[2J"
