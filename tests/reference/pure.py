"""Both copies of kmm's modules compiled from their own source (``kmm._pure.MODULES``) in one process.

``import`` gives each process one copy (the source by default; the compiled copy after
``kmm._pure.use_compiled()``). For tests that drive both with the same inputs, ``compiled(name)`` loads
the compiled copy and ``interpreted(name)`` executes the ``.py`` source, each as a separate module
(``kmm_compiled.<name>``, ``kmm_interpreted.<name>``), whatever ``import`` chose."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import kmm
from kmm import _pure

SRC = Path(kmm.__file__).resolve().parents[1]


def _load(alias: str, path: Path) -> ModuleType:
    mod = sys.modules.get(alias)
    if mod is not None:
        return mod
    spec = importlib.util.spec_from_file_location(alias, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[alias] = mod            # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[alias]
        raise
    return mod


def _check(name: str) -> Path:
    if name not in _pure.MODULES:
        raise ValueError(f"{name} is not one of kmm._pure.MODULES: {_pure.MODULES}")
    return _pure.source_path(SRC, name)


def interpreted(name: str) -> ModuleType:
    """Module ``name`` executed from its ``.py`` source."""
    mod = _load("kmm_interpreted." + name, _check(name))
    assert not _pure.is_compiled(mod)
    return mod


def compiled_path(name: str) -> Path | None:
    """The compiled copy of ``name`` beside its source, or None (an unbuilt tree)."""
    py = _check(name)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if py.with_suffix(suffix).exists():
            return py.with_suffix(suffix)
    return None


def compiled(name: str) -> ModuleType:
    """Module ``name``'s compiled copy."""
    path = compiled_path(name)
    if path is None:
        raise FileNotFoundError(f"{name} has no compiled copy beside {_check(name)}: run "
                                "`python setup.py build_ext --inplace`")
    mod = _load("kmm_compiled." + name, path)
    assert _pure.is_compiled(mod)
    return mod
