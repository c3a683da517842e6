"""kmm's Python modules that the build also compiles, from their own source, with Cython; and which of
the two copies a process runs.

The modules in :data:`MODULES` (the order manager, the portfolio, the risk gate, the quote planner) are
plain Python: no Cython syntax, no C types taken from their annotations, Python's own division and
indexing. ``setup.py`` compiles each one beside its source. What they compute is the source's; the
compiled copy removes the interpreter's per-bytecode and per-call work.

Three of them have a ``.pxd`` beside the source (``orders.pxd``, ``risk.pxd``, ``quoting.pxd``) that
the build reads with it: in the compiled copy ``OrderManager``, ``RiskGate`` and ``QuotePlanner`` are
extension types, their attributes C fields (still Python objects) and their hot methods callable from
C (``cpdef``, overridable by a Python subclass). The source ignores the ``.pxd``. An instance of the
compiled classes takes no attribute its ``.pxd`` does not declare: add a new attribute there too (the
test suite's compiled-copy tests fail otherwise).

Which copy runs is chosen per process, before the engine is imported, because they measured
differently (docs/benchmarks.md, fourteenth session):

- the backtester's replay calls these modules for every decision and fill of a hot loop, and replays a
  busy ``kmm run`` capture 1.09-1.17x faster with the compiled copies: ``kmm backtest`` and ``kmm
  sweep`` (and the sweep's Ray workers) call :func:`use_compiled` first;
- the live engine runs the same code once per frame from a cold cache, where the compiled copies made
  decided -> create written ~20 us slower at the median (larger machine code, run cold): every other
  process (``kmm run``, paper mode, ``kmm execute``, the tests) runs the source, which ``import kmm``
  arranges by putting a finder for these modules' ``.py`` files first.

``KMM_INTERPRETED`` overrides the choice everywhere: ``1`` the source, ``0`` the compiled copies, or a
comma-separated list of module names (those from source, the others compiled). In a source checkout
the test suite refuses a compiled copy older than its source (rebuild: ``python setup.py build_ext
--inplace``); tests/engine/test_pure_compiled.py holds the compiled copies to the source.

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
    """The modules this process loads from source: what ``KMM_INTERPRETED`` says (``1`` all of
    :data:`MODULES`, ``0`` none, or a comma-separated list of their names), else all of them (the
    default; :func:`use_compiled` switches a research process to the compiled copies)."""
    raw = os.environ.get(ENV, "").strip()
    if raw in ("", "1"):
        return frozenset(MODULES)
    if raw == "0":
        return frozenset()
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - set(MODULES)
    if unknown:     # a debugging switch: say so and go on with the names it knows
        warnings.warn(f"{ENV}={raw!r}: {', '.join(sorted(unknown))} ignored (not compiled from source); "
                      f"use 1 (all), 0 (none) or names from {', '.join(MODULES)}", stacklevel=2)
    return names & frozenset(MODULES)


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
    """Put the finder for the modules :func:`interpreted` names ahead of their compiled copies (called
    by ``import kmm``)."""
    names = interpreted()
    if names and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(names))


def use_compiled() -> bool:
    """For a process that replays (``kmm backtest``, ``kmm sweep`` and its workers): run the compiled
    copies, unless ``KMM_INTERPRETED`` chose, and make the choice its child processes' too. Call it
    before anything imports the engine: once a module of :data:`MODULES` is loaded it stays. True when
    every module of :data:`MODULES` this process loads will be the compiled copy."""
    if os.environ.get(ENV, "").strip() == "":
        if any(name in sys.modules for name in MODULES):      # too late to choose
            return all(n in sys.modules and is_compiled(sys.modules[n]) for n in MODULES)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SourceFirst)]
        os.environ[ENV] = "0"           # the sweep's local Ray workers, a spawned process
    return not interpreted()
