"""Benchmarks run with ``pytest bench``; they are kept out of the default test run (testpaths = tests).

Convention (read by bench/report.py): every benchmark sets ``benchmark.group`` to the operation
measured and ``benchmark.extra_info`` to ``{"role": "kmm" | "baseline", "ops": N}``, where ``ops`` is
the number of operations one call performs, so the report prints ns per operation and the ratio of
the baseline's median to kmm's. Every benchmark asserts the state it produced.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so benchmarks can import tests.reference
