"""Shared test settings: hypothesis profiles sized for a shared 2-core CI machine."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("KMM_HYPOTHESIS_PROFILE", "default"))


def _stale_compiled_copies() -> list[str]:
    """In a source checkout, the compiled copies of kmm's pure-Python modules (kmm._pure) older than
    their source: the replays (`kmm backtest`) and the tests that hold the copies to the source would
    run old code. A module's ``.pxd`` (its typed declarations) counts as its source too."""
    import importlib.machinery
    from pathlib import Path

    import kmm
    from kmm import _pure
    src = Path(kmm.__file__).resolve().parents[1]
    if src.name in ("site-packages", "dist-packages"):
        return []                           # an installed kmm, built whole
    stale = []
    for name in _pure.MODULES:
        py = _pure.source_path(src, name)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            so = py.with_suffix(suffix)
            if not so.exists():
                continue
            for source in (py, py.with_suffix(".pxd")):
                if source.exists() and so.stat().st_mtime < source.stat().st_mtime:
                    stale.append(f"{so.name} is older than {source.name}")
    return stale


def pytest_sessionstart(session):
    import pytest
    stale = _stale_compiled_copies()
    if stale:
        pytest.exit("compiled copies older than their source (" + "; ".join(stale) + "): rebuild with "
                    "`python setup.py build_ext --inplace`", returncode=4)
