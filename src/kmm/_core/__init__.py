"""kmm's compiled hot path: book, order-flow imbalance, quoting, diffing and fees. No I/O, no asyncio.

This package imports nothing from the rest of kmm.
"""

from kmm._core._build import BUILD, COMPILED

__all__ = ["BUILD", "COMPILED", "compiled"]


def compiled() -> bool:
    """True when the extension modules are Cython-compiled (always, for an installed kmm)."""
    return bool(COMPILED)
