"""The Python shell stays mypy-clean (style guide: "plain, typed Python ... mypy-clean").

Runs mypy with the ``[tool.mypy]`` settings of pyproject.toml on ``src/kmm`` (mypy is in the test extra).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_reports_no_errors_in_the_package(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install '.[test]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--cache-dir", str(tmp_path),
         "--no-color-output", "src/kmm"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"mypy found problems (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
