"""Compatibility name: the market maker now lives in :mod:`kmm.engine.maker` (on a
:class:`kmm.engine.session.Session`); import from there in new code."""

from kmm.engine.maker import Engine, EngineOptions, Maker, RunSummary, _iso_to_ns

__all__ = ["Engine", "EngineOptions", "Maker", "RunSummary", "_iso_to_ns"]
