"""Builds the compiled core with KMM_DEBUG=1 (bounds/wraparound checks, line tracing) into a scratch
copy of the sources and runs the core tests against that build once, so an out-of-bounds access that
the release build would silently allow fails the suite."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.debugbuild
@pytest.mark.slow
def test_core_tests_pass_against_the_debug_build(tmp_path):
    pytest.importorskip("Cython", reason="the test extra installs Cython, which this check needs")
    work = tmp_path / "kmm-debug"
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    shutil.copy(ROOT / "setup.py", work / "setup.py")
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    shutil.copy(ROOT / "README.md", work / "README.md")
    env = {**os.environ, "KMM_DEBUG": "1", "PYTHONPATH": str(work / "src")}
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"debug build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    which = subprocess.run([sys.executable, "-c", "import kmm._core as c; print(c.BUILD, c.__file__)"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert which.returncode == 0, which.stderr
    build_kind, where = which.stdout.split()
    assert build_kind == "debug" and where.startswith(str(work)), which.stdout
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/core"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, f"core tests failed on the debug build:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
