"""One exception hierarchy: every error class kmm defines is a kmm.errors.KmmError, the compiled
core's included, and the core still imports nothing from the rest of kmm."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import kmm
from kmm.errors import BookError, KmmError

# the embedded exchange is a separate server (its errors never reach a kmm user as kmm errors), and
# transport-level exceptions are caught and re-raised as ExchangeError inside the connector
EXEMPT_PACKAGES = ("kmm.sim",)
EXEMPT = {"kmm.kalshi.fasthttp.HttpConnectionError", "kmm.kalshi.fasthttp.TlsVerifyError"}


def _modules():
    for info in pkgutil.walk_packages(kmm.__path__, "kmm."):
        if info.name.startswith(EXEMPT_PACKAGES) or info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def test_every_error_class_kmm_defines_is_a_kmm_error():
    found, bad = [], []
    for mod in _modules():
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__
                    and f"{mod.__name__}.{name}" not in EXEMPT):
                found.append(f"{mod.__name__}.{name}")
                if not issubclass(obj, KmmError):
                    bad.append(f"{mod.__name__}.{name}")
    assert "kmm.kalshi.decode.WireError" in found and "kmm.execution.request.RequestError" in found
    assert not bad, f"not rooted in kmm.errors.KmmError: {bad}"


def test_the_compiled_books_error_is_kmm_errors_book_error():
    from kmm._core.book import BookError as CoreBookError
    from kmm._core.book import OrderBook
    from kmm._core.grid import Grid
    assert CoreBookError is BookError and issubclass(BookError, (KmmError, ValueError))
    with pytest.raises(KmmError):
        OrderBook(Grid()).apply_snapshot([[5000, "-1.00"]], [])


def test_the_core_imports_nothing_from_the_rest_of_kmm():
    # the package's own __init__ loads kmm._pure (the compiled-modules switch, standard library only):
    # the core may add nothing to what `import kmm` alone loads
    code = ("import sys, kmm; base = set(sys.modules); "
            "import kmm._core.book, kmm._core.quote, kmm._core.wire, kmm._core.diff; "
            "print(sorted(m for m in sys.modules if m.startswith('kmm') and not m.startswith('kmm._core') "
            "and m not in base), sorted(m for m in base if m.startswith('kmm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['kmm', 'kmm._pure']", out
