"""The README opens with the two quickstart commands, and CI runs exactly the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None and text.index("```bash") < 20, "the README must open with the quickstart block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_quickstart_is_two_commands_run_then_test():
    run, test = _quickstart()
    assert "kmm run" in run and "pip install ." in run
    assert "pytest" in test and ".[test]" in test


def test_ci_runs_exactly_the_readme_test_command():
    _, test = _quickstart()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, f".ci/run must contain the README's test command verbatim: {test}"
