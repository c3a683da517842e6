"""Liquidity-aware taker execution: requests, book decisions, algorithms and their metrics.

- :mod:`kmm.execution.request`: what the user asks (buy/sell YES/NO), mapped onto the V2 YES book.
- :mod:`kmm.execution.decision`: pure decision rules over level lists, and ``format_decision``.
- :mod:`kmm.execution.intents`: Place / Amend / Decrease / Cancel, the BookView protocol, events.
- :mod:`kmm.execution.algo`: the algorithm interface and shared bookkeeping (the invariants).
- :mod:`kmm.execution.algos`: simple, capped, slice, twap, adaptive, vwslice, walker.
- :mod:`kmm.execution.metrics`: ``ExecutionMetrics`` from an algorithm's history.
- :mod:`kmm.execution.driver`: ``ExecutionService`` runs them on the connector (imported lazily:
  ``from kmm.execution import ExecutionService`` works without loading the connector up front).
"""

from typing import TYPE_CHECKING, Any

from kmm.execution.algo import Algo, AlgoParams, Child, InvariantViolation
from kmm.execution.algos import (ALGORITHMS, AdaptiveAlgo, AdaptiveParams, CappedAlgo, CappedParams, SimpleAlgo,
                                 SimpleParams, SliceAlgo, SliceParams, TwapAlgo, TwapParams, VwsliceAlgo,
                                 VwsliceParams, WalkerAlgo, WalkerParams, build_algo, make_params)
from kmm.execution.decision import (DEFAULT_POLICY, Aggression, CapReason, Decision, EffectivePrice, LiquidityPolicy,
                                    aggression, best_level_cap, decide, effective_price, format_decision,
                                    liquidity_cap, next_level_too_far, within_limit)
from kmm.execution.intents import Amend, BookView, Cancel, Decrease, Event, Intent, Place
from kmm.execution.metrics import ExecutionMetrics, compute_metrics, metrics_for
from kmm.execution.request import (Action, ExecutionRequest, MarketInfo, RequestError, edge_from_cents,
                                   edge_from_probability, lot_size, parse_action, parse_edge, parse_price_arg,
                                   parse_size_arg)

if TYPE_CHECKING:  # type checkers see the real classes; at runtime __getattr__ loads them on first use
    from kmm.execution.driver import ExecutionHandle as ExecutionHandle
    from kmm.execution.driver import ExecutionService as ExecutionService

__all__ = [
    "Action", "ExecutionRequest", "MarketInfo", "RequestError", "edge_from_cents", "edge_from_probability",
    "lot_size", "parse_action", "parse_edge", "parse_price_arg", "parse_size_arg",
    "Aggression", "CapReason", "Decision", "EffectivePrice", "LiquidityPolicy", "DEFAULT_POLICY", "aggression",
    "best_level_cap", "decide", "effective_price", "format_decision", "liquidity_cap", "next_level_too_far",
    "within_limit",
    "Place", "Amend", "Decrease", "Cancel", "Intent", "BookView", "Event",
    "Algo", "AlgoParams", "Child", "InvariantViolation",
    "ALGORITHMS", "build_algo", "make_params",
    "SimpleAlgo", "SimpleParams", "CappedAlgo", "CappedParams", "SliceAlgo", "SliceParams", "TwapAlgo",
    "TwapParams", "AdaptiveAlgo", "AdaptiveParams", "VwsliceAlgo", "VwsliceParams", "WalkerAlgo", "WalkerParams",
    "ExecutionMetrics", "compute_metrics", "metrics_for",
]


def __getattr__(name: str) -> Any:  # lazy: the driver pulls in the connector
    if name in ("ExecutionService", "ExecutionHandle"):
        from kmm.execution import driver
        return getattr(driver, name)
    raise AttributeError(f"module 'kmm.execution' has no attribute {name!r}")
