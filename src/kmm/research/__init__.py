"""Research: record feeds, replay them through the engine against a fill simulator, compare with live.

- :mod:`kmm.research.queue`: where cancels at our price come from (queue-position models)
- :mod:`kmm.research.fills`: the fill simulator (virtual orders in a recorded book, Kalshi's rules, fees)
- :mod:`kmm.research.latency`: feed / entry / response latency, constant, distributed or fitted
- :mod:`kmm.research.backtest`: ``kmm backtest`` and :func:`run_backtest`
- :mod:`kmm.research.record`: ``kmm record``
- :mod:`kmm.research.compare`: live vs replay reconciliation (``kmm backtest --compare``)

See docs/research.md.
"""
