"""kmm's typed configuration: TOML file, then environment, then command line.

Precedence (later wins): built-in defaults < the TOML file < ``KMM_<SECTION>_<KEY>`` environment
variables < command-line overrides (``{"risk.max_loss": "25"}``, e.g. from ``--set risk.max_loss=25``).

Sections: ``[run]``, ``[kalshi]``, ``[strategy]``, ``[markets.TICKER]`` (per-market strategy
overrides), ``[risk]``, ``[records]``, ``[sim]``. Every key has a default and a doc string (the field
metadata below); ``examples/kmm.toml`` and ``docs/configuration.md`` are rendered from them
(``kmm config example`` / ``kmm config markdown``) and a test keeps them in step.

Values in the file are in human units, named in each key's doc: contracts, dollars, seconds. The
typed config holds kmm units (sizes 1e-2 contracts, money and prices 1e-4 $); seconds stay seconds
in ``*_s`` fields. Unknown sections and keys are errors naming the key and the file; a bad value
says what, where and what to do.

``[kalshi]`` is handed as a plain dict to the connector (``ConnectorConfig.resolve(section, cli,
environ)``), which validates it and reads its own environment; its known keys are listed here only so
the example and the docs show them.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from kmm.errors import ConfigError

ENV_PREFIX = "KMM_"
_SCALE = {"contracts": 100, "dollars": 10_000}


def opt(default: Any, doc: str, *, unit: str | None = None, choices: tuple[Any, ...] | None = None,
        lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """A config field: its default (in kmm units), doc string, unit in the file and valid range."""
    meta = {"doc": doc, "unit": unit, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open}
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable; use a tuple")
    return field(default=default, metadata=meta)



@dataclass(slots=True, frozen=True)
class RiskLimits:
    """The gate's limits in kmm units (sizes 1e-2 contracts, money and prices 1e-4 $, times s).
    :meth:`KmmConfig.risk_limits` builds one from the config; :class:`kmm.engine.risk.RiskGate`
    applies them. (They live here so that the config never imports the engine.)"""

    max_order_size: int = 10_000            # 100 contracts
    max_order_notional: int = 1_000_000     # $100
    price_min: int = 100                    # $0.01
    price_max: int = 9_900                  # $0.99
    max_open_orders_per_market: int = 10
    max_open_orders_total: int = 100
    max_position: int = 10_000              # default per market; see per_market_max_position
    max_total_position: int = 100_000
    reduce_only_at: float = 0.9
    max_loss: int = 500_000                 # $50
    loss_reduce_only_at: float = 0.8
    resume_recovery: int = 100_000          # $10
    cooldown_s: float = 300.0
    auto_resume: bool = False
    stale_after_s: float = 5.0
    stop_before_close_s: float = 60.0
    reduce_only_before_close_s: float = 600.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    per_market_max_position: dict[str, int] = field(default_factory=dict)

    def max_position_for(self, ticker: str) -> int:
        return self.per_market_max_position.get(ticker, self.max_position)


@dataclass(slots=True, frozen=True)
class RunConfig:
    """What to run, where, and where the output goes."""

    env: str = opt("sim", "Where to trade: sim (the embedded exchange, no account needed), demo or "
                   "prod.", choices=("sim", "demo", "prod"))
    allow_prod: bool = opt(False, "Must be true for env = prod: a second, deliberate switch.")
    markets: tuple[str, ...] = opt((), "Market tickers to quote. Empty with env = sim: the [sim] "
                                   "markets.")
    strategy: str = opt("stoikov", "Quoting strategy: stoikov (Avellaneda-Stoikov) or inside "
                        "(join/improve the inside spread).", choices=("stoikov", "inside"))
    duration_s: float = opt(0.0, "Stop after this many seconds; 0 runs until SIGINT/SIGTERM.", lo=0)
    out_dir: str = opt("kmm-out", "Directory for ops.log, tape.csv, the SQLite store and captures.")
    log_mode: str = opt("text", "ops.log format: text (human) or json (one object per line).",
                        choices=("text", "json"))
    log_level: str = opt("INFO", "Lowest level written to ops.log.",
                         choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    leave_orders_on_exit: bool = opt(False, "Leave resting orders at the exchange on exit; by default "
                                     "kmm cancels everything and verifies it.")
    verify_interval_s: float = opt(5.0, "Verify open orders, fills and positions over REST this often "
                                   "(GET fills + orders + positions: 3 reads of 10 tokens, more with pages; "
                                   "30 tokens every 5 s is 3% of Basic's 200 read tokens/s). A desync "
                                   "cancels the quotes and rebuilds from the exchange.", lo=0.5)
    latency_warn_us: float = opt(20_000.0, "Warn (log and status) when the frame -> request p99 over the "
                                 "last latency_window_s passes this; 0: never.", lo=0)
    latency_window_s: float = opt(10.0, "Window of that p99.", lo=1)
    incentive_refresh_s: float = opt(300.0, "Read GET /incentive_programs (active programs, 10 read tokens a "
                                     "page of 1000) at start and this often after.", lo=10)
    incentive_sample_s: float = opt(1.0, "Score our resting quotes against each quoted market's liquidity "
                                    "program this often (the program samples the book every second).",
                                    lo=0.1)
    cpus: str = opt("", "CPUs the engine's event loop (and the threads it starts) may run on, as "
                    "taskset -c writes them: \"0\", \"0,2\", \"1-3\" (Linux). Empty: wherever the "
                    "operating system puts it. Give the loop a core of its own (docs/benchmarks.md).")
    signer_cpus: str = opt("", "CPUs for the signer process (the signature pool), same syntax. Empty: "
                           "the engine's (cpus). With cpus = \"0\", \"1\" keeps signing off the loop's core.")
    records_cpus: str = opt("", "CPUs for the recorder's writer threads (ops.log, tape.csv, kmm.sqlite, the "
                            "frame capture), same syntax. Empty: the engine's (cpus). With cpus = \"0\" "
                            "and signer_cpus = \"1\", \"1\" keeps compression, SQLite and formatting "
                            "off the loop's core (docs/operations.md).")
    signer_nice: int = opt(10, "Niceness the signer process adds to its own (0-19; higher yields the CPU "
                           "sooner). It signs ahead of need, so on a core it shares it should give way to "
                           "the event loop and to anything else that is waiting on a wake-up "
                           "(docs/operations.md). 0: the engine's priority.",
                           lo=0, hi=19)
    busy_poll: bool = opt(False, "Keep the event loop polling its sockets instead of sleeping between "
                          "messages: a frame is read as it arrives, not after the kernel wakes the loop, "
                          "at the price of one CPU kept at 100%. Only with cpus giving the loop a core of "
                          "its own (docs/operations.md, docs/benchmarks.md has the measurement).")
    coalesce_reads: str = opt("deltas", "Decide each market once per run of book deltas: deltas (the deltas "
                              "of a socket read are applied as they come, and each market they changed is "
                              "decided on its latest book when the read ends or before a frame that takes the "
                              "Python path: a fill, an order update, a trade, a snapshot), read (only when the "
                              "read ends: one decision per market per read, after the read's Python frames), or "
                              "off (a decision per delta, as before). docs/benchmarks.md has the measurements.",
                              choices=("deltas", "read", "off"))
    volume_backfill_days: float = opt(30.0, "At start, read this many days of the account's fills "
                                      "(GET /portfolio/fills, 10 read tokens a page of 200, at most 20 "
                                      "pages) for the 30-day volume; 0: this session's fills only.",
                                      lo=0, hi=30)


# The connector owns [kalshi]; these are the keys it documents (kept in step with its
# ConnectorConfig by the integrator). Values pass through untouched.
KALSHI_KEYS: dict[str, tuple[Any, str]] = {
    "rest_url": ("", "REST base URL; empty: the env's default (`ENVIRONMENTS` in src/kmm/protocol.py)."),
    "ws_url": ("", "WebSocket URL; empty: the env's default."),
    "api_key_id": ("", "API key id (UUID); empty: the connector reads it from its environment."),
    "private_key_path": ("", "Path to the RSA private key file (PEM); empty: from the environment. "
                         "The key is never logged."),
    "rate_tier": ("basic", "Rate-limit tier: basic, advanced, premier, paragon or prime."),
}


@dataclass(slots=True, frozen=True)
class StrategyParams:
    """Quoting parameters; [strategy] sets them for every market, [markets.TICKER] per market."""

    gamma: float = opt(0.1, "Risk aversion of the Avellaneda-Stoikov model (inventory skew), per "
                       "(dollar x contract): the reservation price moves by inventory x gamma x "
                       "sigma^2 x tau.",
                       lo=0, lo_open=True)
    kappa: float = opt(100.0, "Order-arrival decay, per dollar of distance from mid (spread ~ 2/kappa "
                       "for small gamma). The prior when kappa_estimate is on.", lo=0, lo_open=True)
    kappa_estimate: bool = opt(False, "Estimate kappa online from the market's trades.")
    sigma_halflife_s: float = opt(60.0, "Half-life of the EWMA volatility of the mid.", lo=0,
                                  lo_open=True)
    horizon_s: float = opt(3600.0, "Horizon T - t of the model; 0: the time left to the market's "
                           "close_time.", lo=0)
    quote_size: int = opt(1000, "Size of each quote.", unit="contracts", lo=0, lo_open=True)
    min_spread_ticks: int = opt(1, "Narrowest quoted spread, in ticks of the market's grid.", lo=1)
    min_edge: int = opt(0, "Least edge over fees per contract a quote must keep.", unit="dollars", lo=0)
    ofi_weight: float = opt(0.0, "Skew of the reservation price per unit of normalized order-flow "
                            "imbalance, in dollars.")
    max_position: int = opt(10_000, "Position limit in this market (either side); also the inventory "
                            "scale of the skew.", unit="contracts", lo=0, lo_open=True)
    price_tolerance_ticks: int = opt(1, "Leave a live quote alone while it is within this many ticks "
                                     "of its target.", lo=0)
    min_price_tolerance: int = opt(50, "Floor of that tolerance in money, whatever the grid: on a deci-cent "
                                   "market one tick is $0.001, and re-pricing for every tick burns the "
                                   "write budget.", unit="dollars", lo=0)
    size_tolerance: int = opt(0, "Leave a live quote alone while its size is within this of the "
                              "target.", unit="contracts", lo=0)
    max_order_age_s: float = opt(0.0, "Refresh a quote older than this; 0: never for age alone.", lo=0)
    event_inventory_weight: float = opt(0.0, "Inventory the quotes skew on: (1 - w) x this market's "
                                        "position + w x its event's inventory (the sum of the YES-equivalent "
                                        "positions of the event's open markets); 1 stops kmm buying YES "
                                        "across every outcome of one event.", lo=0, hi=1)


@dataclass(slots=True, frozen=True)
class RiskConfig:
    """The risk gate, the kill switch and the order/portfolio policies."""

    max_order_size: int = opt(10_000, "Largest single order.", unit="contracts", lo=0, lo_open=True)
    max_order_notional: int = opt(1_000_000, "Most one order may cost (count x price; count x "
                                  "(1 - price) for an ask).", unit="dollars", lo=0, lo_open=True)
    price_min: int = opt(100, "Lowest YES price an order may have.", unit="dollars", lo=0, hi=1)
    price_max: int = opt(9_900, "Highest YES price an order may have.", unit="dollars", lo=0, hi=1)
    max_open_orders_per_market: int = opt(10, "Most open orders in one market.", lo=1)
    max_open_orders_total: int = opt(100, "Most open orders in all markets.", lo=1)
    max_total_position: int = opt(100_000, "Sum of |position| over all markets.", unit="contracts",
                                  lo=0, lo_open=True)
    reduce_only_at: float = opt(0.9, "Reduce-only once |position| reaches this fraction of the "
                                "market's max_position.", lo=0, hi=1, lo_open=True)
    max_loss: int = opt(500_000, "Loss (realized + unrealized - fees) that trips the kill switch.",
                        unit="dollars", lo=0, lo_open=True)
    loss_reduce_only_at: float = opt(0.8, "Reduce-only once the loss reaches this fraction of "
                                     "max_loss.", lo=0, hi=1, lo_open=True)
    resume_recovery: int = opt(100_000, "After a trip, the loss must come back at least this far "
                               "inside max_loss before an automatic resume.", unit="dollars", lo=0)
    cooldown_s: float = opt(300.0, "After a trip, the least time before an automatic resume.", lo=0)
    auto_resume: bool = opt(False, "Resume by hysteresis (recovery and cool-down); otherwise only the "
                            "operator resumes.")
    stale_after_s: float = opt(5.0, "A book with no book data this long (pings do not count) is re-checked "
                               "with a snapshot; its quotes stay while the snapshot answers, and are pulled "
                               "if it does not within min(1 s, half of this) (then resubscribe, reconnect).",
                               lo=0, lo_open=True)
    pull_on_silence: bool = opt(False, "Also pull a market's quotes when only that market is silent for "
                                "stale_after_s (its sequence numbers prove nothing was missed, so by default "
                                "a quiet market keeps its quotes).")
    stop_before_close_s: float = opt(60.0, "Stop quoting a market this long before its close_time.",
                                     lo=0)
    reduce_only_before_close_s: float = opt(600.0, "Reduce-only this long before close_time.", lo=0)
    backoff_base_s: float = opt(0.25, "First pause of places and amends after a 429 (the connector's rate "
                                "limiter owns the back-off); doubles on each 429 after a pause ended, "
                                "resets on the first success.", lo=0, lo_open=True)
    backoff_max_s: float = opt(1.0, "Longest pause of places after 429s (the bucket refills in well under "
                               "a second; a long pause only keeps quotes away).", lo=0, lo_open=True)
    unknown_order_policy: str = opt("cancel", "Orders found at the exchange that this session did not "
                                    "create: cancel them, or adopt them as ours.",
                                    choices=("cancel", "adopt"))
    pnl_mark: str = opt("conservative", "Unrealized P&L marks: conservative (long at the bid, short "
                        "at the ask) or mid.", choices=("conservative", "mid"))
    cash_rounding: str = opt("cent", "Fees charged to cash: cent (rounded up per fill with a "
                             "per-order carry) or exact (direct members).", choices=("cent", "exact"))
    max_event_loss: int = opt(250_000, "Worst-case loss of one event (this session's P&L in its worst "
                              "outcome, with every resting order that hurts there filling) that no order may "
                              "pass; positions alone past it trip the kill switch.", unit="dollars",
                              lo=0, lo_open=True)
    max_event_exposure: int = opt(10_000, "Most |event inventory| (sum of the YES-equivalent positions of "
                                  "an event's markets, with every resting order on one side filling).",
                                  unit="contracts", lo=0, lo_open=True)
    order_group_limit: int = opt(100_000, "Contracts limit of the session's order group: when more than "
                                 "this matches within Kalshi's rolling 15 s window, the exchange cancels "
                                 "every order of the group (an exchange-side circuit breaker); 0: no group.",
                                 unit="contracts", lo=0)


@dataclass(slots=True, frozen=True)
class RecordsConfig:
    """What kmm writes under [run] out_dir besides tape.csv and kmm.sqlite (always written)."""

    ops_log: bool = opt(True, "Write ops.log (human log, through a queue).")
    raw_capture: bool = opt(True, "Capture every received frame with its receive time, for replay.")
    book_snapshot_interval_s: float = opt(0.0, "Store a book snapshot this often; 0: never.", lo=0)


@dataclass(slots=True, frozen=True)
class SimConfig:
    """The embedded exchange used when [run] env = sim."""

    seed: int = opt(1, "Random seed of the synthetic participants.")
    flow: str = opt("calm", "Synthetic order flow: off (no other traders), calm or busy.",
                    choices=("off", "calm", "busy"))
    speed: float = opt(1.0, "Scales the synthetic flow's message rate.", lo=0, lo_open=True)
    rate_tier: str = opt("basic", "Rate-limit tier the sim enforces (off: no limits).",
                         choices=("off", "basic", "advanced", "premier", "paragon", "prime"))
    balance: int = opt(10_000_000, "Starting balance of the account kmm trades with.", unit="dollars",
                       lo=0)
    markets: tuple[str, ...] = opt(("KXSIMA-26-A", "KXSIMB-26-B", "KXSIMM-26-M"),
                                   "Markets the sim lists and kmm quotes by default (the sim knows "
                                   "KXSIMA-26-A linear_cent, KXSIMB-26-B deci_cent, KXSIMC-26-C "
                                   "tapered_deci_cent, KXSIMM-26-M maker fees, KXSIMF-26-F fractional, "
                                   "KXSIMH-26-H half fees; other tickers get linear_cent).")


SECTIONS: dict[str, type] = {"run": RunConfig, "strategy": StrategyParams, "risk": RiskConfig,
                             "records": RecordsConfig, "sim": SimConfig}


@dataclass(slots=True, frozen=True)
class KmmConfig:
    run: RunConfig = field(default_factory=RunConfig)
    kalshi: Mapping[str, Any] = field(default_factory=dict)
    strategy: StrategyParams = field(default_factory=StrategyParams)
    markets: Mapping[str, StrategyParams] = field(default_factory=dict)
    risk: RiskConfig = field(default_factory=RiskConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    source: str | None = None                 # the file read, if any
    kalshi_cli: Mapping[str, Any] = field(default_factory=dict)   # "kalshi.*" command-line overrides

    def strategy_for(self, ticker: str) -> StrategyParams:
        """The market's parameters: [markets.TICKER] over [strategy]."""
        return self.markets.get(ticker, self.strategy)

    def tickers(self) -> tuple[str, ...]:
        """Markets to quote: [run] markets, or the sim's markets when env = sim and none are given."""
        if self.run.markets:
            return self.run.markets
        return self.sim.markets if self.run.env == "sim" else ()

    def risk_limits(self) -> RiskLimits:
        """The risk gate's limits (per-market position limits from the strategy parameters)."""
        r = self.risk
        return RiskLimits(
            max_order_size=r.max_order_size, max_order_notional=r.max_order_notional,
            price_min=r.price_min, price_max=r.price_max,
            max_open_orders_per_market=r.max_open_orders_per_market,
            max_open_orders_total=r.max_open_orders_total,
            max_position=self.strategy.max_position, max_total_position=r.max_total_position,
            reduce_only_at=r.reduce_only_at, max_loss=r.max_loss,
            loss_reduce_only_at=r.loss_reduce_only_at, resume_recovery=r.resume_recovery,
            cooldown_s=r.cooldown_s, auto_resume=r.auto_resume, stale_after_s=r.stale_after_s,
            stop_before_close_s=r.stop_before_close_s,
            reduce_only_before_close_s=r.reduce_only_before_close_s,
            backoff_base_s=r.backoff_base_s, backoff_max_s=r.backoff_max_s,
            per_market_max_position={t: p.max_position for t, p in self.markets.items()})

    def event_limits(self) -> Any:
        """The event gate's :class:`kmm.engine.events.EventLimits`; reduce-only at the same fraction
        as a market's."""
        from kmm.engine.events import EventLimits   # the engine imports config: import at call time
        r = self.risk
        return EventLimits(max_event_loss=r.max_event_loss, max_event_exposure=r.max_event_exposure,
                           reduce_only_at=r.reduce_only_at)


# ---------------------------------------------------------------------------------- parsing

def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _kind(f: dataclasses.Field[Any]) -> type:
    return type(f.default)


def _human(f: dataclasses.Field[Any], value: Any) -> Any:
    """A kmm-unit value back in the file's unit (for messages and the example)."""
    unit = f.metadata["unit"]
    if unit in _SCALE:
        d = Decimal(value) / _SCALE[unit]
        return int(d) if d == d.to_integral_value() and unit == "contracts" else float(d)
    return value


def _fail(where: str, section: str, key: str, raw: Any, problem: str,
          f: dataclasses.Field[Any]) -> ConfigError:
    default = _human(f, f.default)
    return ConfigError(f"{where}: [{section}] {key} = {raw!r}: {problem}. Fix the value, or remove "
                       f"it to use the default ({_toml(default)}).")


def _convert(where: str, section: str, key: str, raw: Any, f: dataclasses.Field[Any],
             from_text: bool) -> Any:
    """Check and convert one value (from TOML, or a string from the environment / command line)."""
    kind = _kind(f)
    meta = f.metadata
    unit = meta["unit"]
    if kind is bool:
        if isinstance(raw, bool):
            value: Any = raw
        elif from_text and isinstance(raw, str) and raw.strip().lower() in (
                "1", "0", "true", "false", "yes", "no", "on", "off"):
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            raise _fail(where, section, key, raw, "expected true or false", f)
    elif kind is tuple:
        if from_text and isinstance(raw, str):
            raw = [s.strip() for s in raw.split(",") if s.strip()]
        if not isinstance(raw, (list, tuple)) or not all(isinstance(s, str) and s for s in raw):
            raise _fail(where, section, key, raw, "expected a list of non-empty strings", f)
        value = tuple(raw)
    elif kind is str:
        if not isinstance(raw, str):
            raise _fail(where, section, key, raw, "expected a string", f)
        value = raw
    elif unit in _SCALE:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise _fail(where, section, key, raw, f"expected a number of {unit}", f)
        try:
            d = Decimal(str(raw).strip())
        except InvalidOperation:
            raise _fail(where, section, key, raw, f"expected a number of {unit}", f) from None
        scaled = d * _SCALE[unit]
        if not d.is_finite() or scaled != scaled.to_integral_value():
            places = 2 if unit == "contracts" else 4
            raise _fail(where, section, key, raw, f"{unit} take at most {places} decimal places", f)
        value = int(scaled)
    elif kind is int:
        if from_text and isinstance(raw, str):
            try:
                raw = int(raw.strip())
            except ValueError:
                raise _fail(where, section, key, raw, "expected a whole number", f) from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _fail(where, section, key, raw, "expected a whole number", f)
        value = raw
    elif kind is float:
        if from_text and isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise _fail(where, section, key, raw, "expected a number", f) from None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw \
                or raw in (float("inf"), float("-inf")):
            raise _fail(where, section, key, raw, "expected a finite number", f)
        value = float(raw)
    else:  # pragma: no cover - a field type this parser does not know is a programming error
        raise TypeError(f"config field {section}.{key} has unsupported type {kind}")
    choices = meta["choices"]
    if choices is not None and value not in choices:
        raise _fail(where, section, key, raw, f"expected one of {', '.join(map(str, choices))}", f)
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None or hi is not None:
        human = _human(f, value)
        if lo is not None and (human < lo or (meta["lo_open"] and human == lo)):
            raise _fail(where, section, key, raw, f"must be {'>' if meta['lo_open'] else '>='} {lo}"
                        + (f" {unit}" if unit else ""), f)
        if hi is not None and human > hi:
            raise _fail(where, section, key, raw, f"must be <= {hi}" + (f" {unit}" if unit else ""), f)
    return value


def _unknown(where: str, what: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown {what} {name!r}.{hint} Known: {', '.join(sorted(known))}.")


def _apply(values: dict[str, dict[str, Any]], where: str, section: str, table: Mapping[str, Any],
           cls: type, from_text: bool) -> None:
    fields = _fields(cls)
    target = values.setdefault(section, {})
    for key, raw in table.items():
        f = fields.get(key)
        if f is None:
            label = f"[{section}]" if not section.startswith("markets.") else f"[{section}]"
            raise _unknown(where, f"key in {label}", key, list(fields))
        target[key] = _convert(where, section, key, raw, f, from_text)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist; give an existing file, or none for the "
                          "defaults (see examples/kmm.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}; fix the syntax") from None


def parse_set_args(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["risk.max_loss=25", ...]`` (``--set`` flags) -> ``{"risk.max_loss": "25"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"command line: --set {item!r} must look like section.key=value "
                              "(e.g. risk.max_loss=25)")
        out[key.strip()] = value.strip()
    return out


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for ``KMM_*`` variables that name no setting (a misspelled one would be ignored)."""
    env = os.environ if environ is None else environ
    known = {f"{ENV_PREFIX}{s.upper()}_{k.upper()}" for s, c in SECTIONS.items() for k in _fields(c)}
    known |= {"KMM_CONFIG", "KMM_DEBUG", "KMM_DEBUG_BUILD", "KMM_BUILD_KIND", "KMM_HYPOTHESIS_PROFILE", "KMM_QTY_MAX",
              "KMM_INTERPRETED"}    # kmm._pure: which copy of the engine modules runs
    out = []
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        out.append(f"environment variable {name} is not a kmm setting and is ignored.{hint}")
    return out


def load_config(path: str | os.PathLike[str] | None = None, *,
                environ: Mapping[str, str] | None = None,
                cli: Mapping[str, Any] | None = None) -> KmmConfig:
    """Build the config: defaults < ``path`` (or ``$KMM_CONFIG``) < environment < ``cli``.

    ``cli`` maps dotted keys to values: ``{"run.env": "demo", "markets.KXA-1.gamma": 0.2}``; string
    values are parsed like environment values, None values are skipped (unset flags), and
    ``kalshi.*`` keys are passed through in :attr:`KmmConfig.kalshi_cli`.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get("KMM_CONFIG"):
        path = env["KMM_CONFIG"]
    values: dict[str, dict[str, Any]] = {}
    kalshi: dict[str, Any] = {}      # only what the file sets: the connector applies its defaults
    source = None
    if path is not None:
        source = str(path)
        data = read_toml(path)
        for section, table in data.items():
            if section == "kalshi":
                if not isinstance(table, dict):
                    raise ConfigError(f"{source}: [kalshi] must be a table")
                kalshi.update(table)
                continue
            if section == "markets":
                if not isinstance(table, dict):
                    raise ConfigError(f"{source}: [markets] must hold [markets.TICKER] tables")
                for ticker, overrides in table.items():
                    if not isinstance(overrides, dict):
                        raise ConfigError(f"{source}: markets.{ticker} must be a table "
                                          f"[markets.{ticker}] of strategy keys")
                    _apply(values, source, f"markets.{ticker}", overrides, StrategyParams, False)
                continue
            cls = SECTIONS.get(section)
            if cls is None:
                raise _unknown(source, "section", section, [*SECTIONS, "kalshi", "markets"])
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: {section} must be a table [{section}]")
            _apply(values, source, section, table, cls, False)
    for section, cls in SECTIONS.items():
        for key in _fields(cls):
            name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if name in env:
                _apply(values, f"environment {name}", section, {key: env[name]}, cls, True)
    kalshi_cli: dict[str, Any] = {}
    for dotted, raw in (cli or {}).items():
        if raw is None:
            continue
        parts = dotted.split(".")
        where = f"command line {dotted}"
        if parts[0] == "kalshi" and len(parts) == 2:
            kalshi_cli[parts[1]] = raw
        elif parts[0] == "markets" and len(parts) == 3:
            _apply(values, where, f"markets.{parts[1]}", {parts[2]: raw}, StrategyParams,
                   isinstance(raw, str))
        elif len(parts) == 2 and parts[0] in SECTIONS:
            _apply(values, where, parts[0], {parts[1]: raw}, SECTIONS[parts[0]], isinstance(raw, str))
        else:
            raise _unknown("command line", "setting", dotted,
                           [f"{s}.{k}" for s, c in SECTIONS.items() for k in _fields(c)])
    strategy = StrategyParams(**values.get("strategy", {}))
    markets = {s.split(".", 1)[1]: dataclasses.replace(strategy, **v)
               for s, v in values.items() if s.startswith("markets.")}
    cfg = KmmConfig(run=RunConfig(**values.get("run", {})), kalshi=kalshi, strategy=strategy,
                    markets=markets, risk=RiskConfig(**values.get("risk", {})),
                    records=RecordsConfig(**values.get("records", {})),
                    sim=SimConfig(**values.get("sim", {})), source=source, kalshi_cli=kalshi_cli)
    _check(cfg)
    return cfg


def _check(cfg: KmmConfig) -> None:
    where = cfg.source or "configuration"
    if cfg.run.env == "prod" and not cfg.run.allow_prod:
        raise ConfigError(f"{where}: [run] env = \"prod\" trades real money and needs [run] "
                          "allow_prod = true as well (or KMM_RUN_ALLOW_PROD=1); set both on purpose")
    r = cfg.risk
    if r.price_min >= r.price_max:
        raise ConfigError(f"{where}: [risk] price_min ({r.price_min / 10_000}) must be below "
                          f"price_max ({r.price_max / 10_000})")
    if r.backoff_base_s > r.backoff_max_s:
        raise ConfigError(f"{where}: [risk] backoff_base_s ({r.backoff_base_s}) must not exceed "
                          f"backoff_max_s ({r.backoff_max_s})")
    if r.reduce_only_before_close_s < r.stop_before_close_s:
        raise ConfigError(f"{where}: [risk] reduce_only_before_close_s ({r.reduce_only_before_close_s})"
                          f" must be >= stop_before_close_s ({r.stop_before_close_s})")
    if r.resume_recovery > r.max_loss:
        raise ConfigError(f"{where}: [risk] resume_recovery ({r.resume_recovery / 10_000} dollars) "
                          f"cannot exceed max_loss ({r.max_loss / 10_000} dollars)")
    if cfg.run.env != "sim" and not cfg.run.markets:
        raise ConfigError(f"{where}: [run] markets is empty; list the tickers to quote for env = "
                          f"{cfg.run.env!r}")
    for ticker, params in {"[strategy]": cfg.strategy, **cfg.markets}.items():
        if params.quote_size > r.max_order_size:
            raise ConfigError(f"{where}: quote_size of {ticker} ({params.quote_size / 100} contracts) "
                              f"exceeds [risk] max_order_size ({r.max_order_size / 100}); every "
                              "quote would be rejected")


# ---------------------------------------------------------------------------------- rendering

def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _describe(f: dataclasses.Field[Any]) -> str:
    meta = f.metadata
    extra = []
    if meta["unit"]:
        extra.append(meta["unit"])
    elif f.name.endswith("_s"):
        extra.append("seconds")
    if meta["choices"]:
        extra.append(" | ".join(map(str, meta["choices"])))
    return meta["doc"] + (f" ({'; '.join(extra)})" if extra else "")


def render_example() -> str:
    """examples/kmm.toml: every key at its default, with its doc."""
    out = ["# kmm configuration: every key, at its default. Generated by `python -m kmm.config example`;",
           "# tests/test_config.py checks this file against kmm/config.py.",
           "# Precedence: defaults < this file < KMM_<SECTION>_<KEY> environment < --set section.key=value.",
           ""]

    def section(name: str, cls: type) -> None:
        out.append(f"# {(cls.__doc__ or '').strip()}")
        out.append(f"[{name}]")
        for f in dataclasses.fields(cls):
            out.append(f"# {_describe(f)}")
            out.append(f"{f.name} = {_toml(_human(f, f.default))}")
        out.append("")

    section("run", RunConfig)
    out.append("# The connector's settings, passed through to it (it validates them and reads its own")
    out.append("# environment, e.g. the key id).")
    out.append("[kalshi]")
    for name, (default, doc) in KALSHI_KEYS.items():
        out.append(f"# {doc}")
        out.append(f"{name} = {_toml(default)}")
    out.append("")
    section("strategy", StrategyParams)
    out.append("# Per-market overrides: a [markets.TICKER] table takes any [strategy] key, e.g.")
    out.append("# [markets.KXEXAMPLE-26DEC31]")
    out.append("# gamma = 0.2")
    out.append("# max_position = 50")
    out.append("")
    section("risk", RiskConfig)
    section("records", RecordsConfig)
    section("sim", SimConfig)
    return "\n".join(out).rstrip() + "\n"


def render_markdown_reference() -> str:
    """The key reference tables of docs/configuration.md."""
    out = []
    for name, cls in [("run", RunConfig), ("strategy", StrategyParams), ("risk", RiskConfig),
                      ("records", RecordsConfig), ("sim", SimConfig)]:
        out.append(f"### [{name}]\n\n{(cls.__doc__ or '').strip()}\n")
        out.append("| key | default | meaning |\n|---|---|---|")
        for f in dataclasses.fields(cls):
            out.append(f"| `{f.name}` | `{_toml(_human(f, f.default))}` | {_describe(f)} |")
        out.append(f"\nEnvironment: `{ENV_PREFIX}{name.upper()}_<KEY>`.\n")
    out.append("### [kalshi]\n\nPassed through to the connector.\n")
    out.append("| key | default | meaning |\n|---|---|---|")
    for key, (default, doc) in KALSHI_KEYS.items():
        out.append(f"| `{key}` | `{_toml(default)}` | {doc} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["example"]:
        sys.stdout.write(render_example())
        return 0
    if args == ["markdown"]:
        sys.stdout.write(render_markdown_reference())
        return 0
    if len(args) == 2 and args[0] == "check":
        try:
            cfg = load_config(args[1])
        except ConfigError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2  # as `kmm run` and `kmm config check` exit for the same file
        sys.stdout.write(f"{args[1]}: ok ({len(cfg.markets)} market overrides)\n")
        return 0
    sys.stderr.write("usage: kmm config example | markdown | check FILE\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
