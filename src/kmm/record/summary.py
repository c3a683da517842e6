"""``summary.json``: the one-object result every ``kmm run``, ``kmm run --paper`` and ``kmm backtest``
writes into its output directory. A stable contract (docs/research.md): fields are only ever added.

Fields (schema 1)::

    schema            int, 1
    mode              "live" | "paper" | "backtest"
    venue             str
    markets           [ticker, ...]
    start_ns, end_ns  int, wall clock ns (a backtest: the replayed feed's wall clock)
    fills             int
    contracts_bought, contracts_sold     str, contracts with 2 dp ("12.00")
    fees, realized_pnl, unrealized_pnl, net_pnl   str, dollars with 4 dp ("-0.1826"), this session only;
                      realized_pnl is gross of fees; net_pnl = realized + unrealized - fees
    positions         {ticker: signed contracts, 2 dp ("-3.00")}
    book_messages     int, book snapshots and deltas applied
    orders_sent       int, creates sent
    messages_per_s    float, backtest only: book messages replayed per second of wall time

Anything else a writer adds (``extra``) goes under ``"details"`` so the top level stays the contract.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = 1
SUMMARY_FILE = "summary.json"
MODES = ("live", "paper", "backtest")
MONEY_FIELDS = ("fees", "realized_pnl", "unrealized_pnl", "net_pnl")
COUNT_FIELDS = ("contracts_bought", "contracts_sold")
INT_FIELDS = ("schema", "start_ns", "end_ns", "fills", "book_messages", "orders_sent")


def format_money(amount: int) -> str:
    """1e-4 $ -> dollars with 4 dp: -1826 -> "-0.1826"."""
    sign = "-" if amount < 0 else ""
    a = -amount if amount < 0 else amount
    return f"{sign}{a // 10_000}.{a % 10_000:04d}"


def format_contracts(count: int) -> str:
    """1e-2 contracts -> contracts with 2 dp: -300 -> "-3.00"."""
    sign = "-" if count < 0 else ""
    c = -count if count < 0 else count
    return f"{sign}{c // 100}.{c % 100:02d}"


def parse_money(text: str) -> int:
    """The inverse of :func:`format_money` (exact)."""
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    v = int(whole) * 10_000 + int((frac + "0000")[:4])
    return -v if neg else v


def parse_contracts(text: str) -> int:
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    v = int(whole) * 100 + int((frac + "00")[:2])
    return -v if neg else v


def build_summary(*, mode: str, venue: str, markets: Iterable[str], start_ns: int, end_ns: int,
                  fills: Iterable[Any], realized: int, unrealized: int, fees: int,
                  positions: Mapping[str, int], book_messages: int, orders_sent: int,
                  messages_per_s: float | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary object. ``fills`` are objects with ``side`` ("bid" buys, "ask" sells) and ``count``
    (1e-2 contracts); money in 1e-4 $ (``realized`` gross of fees)."""
    if mode not in MODES:
        raise ValueError(f"summary mode {mode!r} is not one of {', '.join(MODES)}")
    bought = sold = n = 0
    for f in fills:
        n += 1
        if f.side == "bid":
            bought += f.count
        else:
            sold += f.count
    tickers = list(markets)
    out: dict[str, Any] = {
        "schema": SCHEMA, "mode": mode, "venue": venue, "markets": tickers,
        "start_ns": int(start_ns), "end_ns": int(end_ns), "fills": n,
        "contracts_bought": format_contracts(bought), "contracts_sold": format_contracts(sold),
        "fees": format_money(fees), "realized_pnl": format_money(realized),
        "unrealized_pnl": format_money(unrealized), "net_pnl": format_money(realized + unrealized - fees),
        "positions": {t: format_contracts(positions.get(t, 0)) for t in tickers},
        "book_messages": int(book_messages), "orders_sent": int(orders_sent),
    }
    if mode == "backtest":
        out["messages_per_s"] = float(messages_per_s or 0.0)
    if extra:
        out["details"] = dict(extra)
    return out


def validate_summary(s: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first field that breaks the contract."""
    for k in INT_FIELDS:
        if not isinstance(s.get(k), int) or isinstance(s.get(k), bool):
            raise ValueError(f"summary.json: {k} must be an int, got {s.get(k)!r}")
    if s["schema"] != SCHEMA:
        raise ValueError(f"summary.json: schema {s['schema']} is not {SCHEMA}")
    if s.get("mode") not in MODES:
        raise ValueError(f"summary.json: mode {s.get('mode')!r} is not one of {MODES}")
    if not isinstance(s.get("venue"), str):
        raise ValueError("summary.json: venue must be a string")
    if not isinstance(s.get("markets"), list) or not all(isinstance(t, str) for t in s["markets"]):
        raise ValueError("summary.json: markets must be a list of tickers")
    for k in MONEY_FIELDS:
        v = s.get(k)
        if not isinstance(v, str) or format_money(parse_money(v)) != v:
            raise ValueError(f"summary.json: {k} must be dollars with 4 dp as a string, got {v!r}")
    for k in COUNT_FIELDS:
        v = s.get(k)
        if not isinstance(v, str) or format_contracts(parse_contracts(v)) != v:
            raise ValueError(f"summary.json: {k} must be contracts with 2 dp as a string, got {v!r}")
    pos = s.get("positions")
    if not isinstance(pos, dict) or not all(isinstance(v, str) and format_contracts(parse_contracts(v)) == v
                                            for v in pos.values()):
        raise ValueError(f"summary.json: positions must map tickers to contracts strings, got {pos!r}")
    if parse_money(s["net_pnl"]) != (parse_money(s["realized_pnl"]) + parse_money(s["unrealized_pnl"])
                                     - parse_money(s["fees"])):
        raise ValueError("summary.json: net_pnl != realized_pnl + unrealized_pnl - fees")
    if s["mode"] == "backtest" and not isinstance(s.get("messages_per_s"), float):
        raise ValueError("summary.json: a backtest summary needs messages_per_s (float)")


def write_summary(out_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Validate and write ``summary.json`` atomically (temporary name, fsync, rename)."""
    validate_summary(summary)
    path = Path(out_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / SUMMARY_FILE
    data: dict[str, Any] = json.loads(p.read_text())
    return data
