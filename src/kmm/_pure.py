"""kmm's Python modules that the build also compiles, from their own source, with Cython.

The modules in :data:`MODULES` (the order manager, the portfolio, the risk gate, the quote planner) are
plain Python: no Cython syntax, no C types taken from their annotations, Python's own division and
indexing. ``setup.py`` compiles each one beside its source and ``import`` finds the compiled copy first.
What they compute is the source's; compiling removes the interpreter's per-bytecode and per-call work.

Why these four: the backtester's replay calls them for every decision and every fill (the rest of its
loop is compiled in ``kmm._core``), and compiling them made the replay of a busy ``kmm run`` capture
~12 % faster (docs/benchmarks.md, session 14). The live engine runs the same code once per frame from a
cold cache, where the compiled copies measured the same as the interpreter (a cold call of create, ack,
fill and P&L: ~50 us either way); other engine modules measured no gain in the replay and stay source.

``KMM_INTERPRETED=1`` makes ``import kmm`` load all of them from their ``.py`` source instead, or
``KMM_INTERPRETED=kmm.engine.risk,...`` only those named (for a debugger, a line profiler or coverage,
and for the tests that compare the two: tests/engine/test_pure_compiled.py). In a source checkout the
test suite refuses a compiled copy older than its source (rebuild: ``python setup.py build_ext
--inplace``).

This module imports nothing from the rest of kmm (``setup.py`` reads it before kmm is built)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

MODULES: tuple[str, ...] = (
    "kmm.engine.orders",
    "kmm.engine.portfolio",
    "kmm.engine.risk",
    "kmm.engine.quoting",
)
ENV = "KMM_INTERPRETED"

# the Cython directives that keep plain-Python semantics (setup.py adds them to the core's own)
DIRECTIVES = {
    "annotation_typing": False,     # an annotation is documentation, never a C type or a runtime check
    "cdivision": False,
    "boundscheck": True,
    "wraparound": True,
    "initializedcheck": True,
    "binding": True,                # functions keep their Python introspection (signature, __wrapped__)
}


def source_path(src_root: str | os.PathLike[str], name: str) -> Path:
    """The ``.py`` file of module ``name`` under ``src_root`` (the directory that holds ``kmm``)."""
    return Path(src_root, *name.split(".")).with_suffix(".py")


def is_compiled(module: object) -> bool:
    """True when ``module`` was loaded from an extension module (its compiled copy)."""
    f = getattr(module, "__file__", None) or ""
    return f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def interpreted() -> frozenset[str]:
    """The modules ``KMM_INTERPRETED`` asks to run from source: ``1`` all of :data:`MODULES`, or a
    comma-separated list of their names (one module from source, the others compiled)."""
    raw = os.environ.get(ENV, "").strip()
    if raw in ("", "0"):
        return frozenset()
    if raw == "1":
        return frozenset(MODULES)
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - set(MODULES)
    if unknown:     # a debugging switch: say so and go on with the names it knows
        warnings.warn(f"{ENV}={raw!r}: {', '.join(sorted(unknown))} ignored (not compiled from source); "
                      f"use 1 (all) or names from {', '.join(MODULES)}", stacklevel=2)
    return names & frozenset(MODULES)


def interpreted_requested() -> bool:
    return bool(interpreted())


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the modules named as their ``.py`` source, ahead of their compiled copy."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in self.names:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for entry in path or ():         # the package's __path__
            src = Path(entry, leaf)
            if src.is_file():
                return importlib.util.spec_from_file_location(fullname, src)
        return None


def install() -> None:
    """With ``KMM_INTERPRETED`` set, load :data:`MODULES` from source (called by ``import kmm``)."""
    names = interpreted()
    if names and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(names))
