"""The Python shell stays mypy-clean (style guide: "plain, typed Python ... mypy-clean").

Runs mypy with the ``[tool.mypy]`` settings of pyproject.toml on ``src/kmm`` when mypy is installed
(it is not part of the test extra); skips otherwise. Three engine files are being reworked by the
integrator: their errors are tolerated here until that lands, every other file must be clean.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PENDING = {"src/kmm/engine/live.py", "src/kmm/engine/app.py", "src/kmm/engine/market.py"}
ERROR_LINE = re.compile(r"^(?P<path>[^:\n]+\.pyi?):\d+(?::\d+)?: error: ", re.MULTILINE)


@pytest.mark.slow
def test_mypy_reports_no_errors_outside_the_engine_files_pending_integration(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (not in the test extra): pip install mypy to run this check")
    if not (ROOT / "src" / "kmm").is_dir() or not (ROOT / "pyproject.toml").is_file():
        pytest.skip("needs the source tree (src/kmm and pyproject.toml), not an installed copy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--cache-dir", str(tmp_path),
         "--no-error-summary", "--no-color-output", "src/kmm"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), f"mypy did not run (exit {proc.returncode}):\n{output}"
    errors = [m.group(0) + output[m.end():].split("\n", 1)[0] for m in ERROR_LINE.finditer(output)]
    if proc.returncode == 1:
        assert errors, f"mypy failed without reporting an error line:\n{output}"
    blocking = [e for e in errors if Path(e.split(":", 1)[0]).as_posix() not in PENDING]
    assert not blocking, "mypy errors outside the pending engine files:\n" + "\n".join(blocking)
