"""kmm: low-latency market making and liquidity-aware execution for Kalshi.

Units everywhere inside kmm (design section 2): prices are ints in 1/10,000 dollar in YES terms,
sizes are ints in 1/100 contract, money and fees are ints in 1/10,000 dollar, times are int ns.
"""

from kmm import _pure

_pure.install()     # the engine modules kmm also compiles run from source unless chosen otherwise (kmm._pure)

__version__ = "0.1.0"
__all__ = ["__version__"]
