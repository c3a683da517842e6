"""The plain-Python reference of kmm's modules compiled from their own source (``kmm._pure.MODULES``):
the same ``.py`` file, run by the interpreter. ``load(name)`` executes the module's source as a separate
module (``kmm_interpreted.<name>``) beside the compiled one that ``import`` gives, so one test can drive
both with the same inputs and compare every answer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import kmm
from kmm import _pure

SRC = Path(kmm.__file__).resolve().parents[1]


def load(name: str) -> ModuleType:
    """Module ``name`` (one of ``kmm._pure.MODULES``) interpreted from its source, loaded once."""
    if name not in _pure.MODULES:
        raise ValueError(f"{name} is not one of kmm._pure.MODULES: {_pure.MODULES}")
    alias = "kmm_interpreted." + name
    mod = sys.modules.get(alias)
    if mod is None:
        spec = importlib.util.spec_from_file_location(alias, _pure.source_path(SRC, name))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[alias] = mod            # dataclasses look their module up while the class is made
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[alias]
            raise
    assert not _pure.is_compiled(mod)
    return mod
