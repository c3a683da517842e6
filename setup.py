"""Declares kmm's compiled extensions and their Cython directives; metadata lives in pyproject.toml.

KMM_DEBUG=1 builds with bounds/wraparound/initialized checks on and line tracing (for coverage);
the default build is the release build with those checks off.
"""
import os
import runpy
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KMM_DEBUG", "") not in ("", "0")
CORE = Path("src/kmm/_core")

directives = {
    "language_level": 3,
    "embedsignature": True,
    "cdivision": True,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "linetrace": DEBUG,
    "profile": False,
}
macros: list[tuple[str, str]] = []
if DEBUG:
    macros += [("KMM_DEBUG_BUILD", "1"), ("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
cflags = ["-O0", "-g"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        f"kmm._core.{pyx.stem}",
        [str(pyx)],
        define_macros=macros,
        extra_compile_args=cflags,
    )
    for pyx in sorted(CORE.glob("*.pyx"))
]

# kmm's plain-Python modules compiled from their own source, beside it (src/kmm/_pure.py says which
# and why); their directives keep Python's semantics
pure = runpy.run_path("src/kmm/_pure.py")
pure_extensions = [
    Extension(name, [str(pure["source_path"]("src", name))], define_macros=macros, extra_compile_args=cflags)
    for name in pure["MODULES"]
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["src"],
        build_dir="build/cython-debug" if DEBUG else "build/cython",
        nthreads=os.cpu_count() or 1,
    ) + cythonize(
        pure_extensions,
        compiler_directives={**directives, **pure["DIRECTIVES"]},
        build_dir="build/cython-pure-debug" if DEBUG else "build/cython-pure",
        nthreads=os.cpu_count() or 1,
    ),
)
