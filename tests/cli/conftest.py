"""The CLI tests run ``python -m kmm`` in subprocesses: point them at the package under test (the
shared virtualenv may hold another checkout), without the user's Kalshi/kmm environment."""

from __future__ import annotations

import os
from pathlib import Path

import kmm

SRC = str(Path(kmm.__file__).resolve().parent.parent)


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "KMM_"))}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
