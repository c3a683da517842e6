"""CPU placement: which cores kmm's event loop and its signer process may run on (Linux).

On a small machine the scheduler's choices show in the latency: a process woken by a write is often
placed on the writer's core and waits there until the writer's loop yields (bench/bench_wire.py
measured the exchange reading kmm's requests ~1 ms after they were written, unpinned, and ~35 us
with the exchange and kmm on separate cores). ``[run] cpus`` and ``[run] signer_cpus`` (docs/
configuration.md) give the loop and the signer process cores of their own. Lists use ``taskset -c``
syntax: ``"0"``, ``"0,2"``, ``"1-3"``; empty means wherever the operating system puts them.
"""

from __future__ import annotations

import os

from kmm.errors import ConfigError

__all__ = ["parse_cpus", "pin_thread", "pin_process"]


def parse_cpus(text: str, where: str) -> frozenset[int]:
    """The CPUs a list names (``"0,2-3"``); empty text: none (no pinning). ``where`` names the setting
    in errors. Raises ConfigError for bad syntax or a CPU this process may not use."""
    text = text.strip()
    if not text:
        return frozenset()
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo_s, dash, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
        except ValueError:
            raise ConfigError(f"{where} = {text!r}: {part!r} is not a CPU number or range; write it as "
                              "taskset -c does, e.g. \"0\", \"0,2\" or \"1-3\"") from None
        if lo < 0 or hi < lo:
            raise ConfigError(f"{where} = {text!r}: {part!r} is not a range of CPU numbers (low-high, from 0)")
        cpus.update(range(lo, hi + 1))
    allowed = _allowed()
    if allowed is not None and not cpus <= allowed:
        raise ConfigError(f"{where} = {text!r}: CPU {', '.join(map(str, sorted(cpus - allowed)))} is not "
                          f"available to kmm (it may run on {_fmt(allowed)}); choose among those or leave "
                          f"{where} empty")
    return frozenset(cpus)


def pin_thread(cpus: frozenset[int], where: str) -> None:
    """Restrict the calling thread (and the threads and processes it starts afterwards) to ``cpus``;
    nothing when ``cpus`` is empty."""
    if cpus:
        _set(0, cpus, where)


def pin_process(pid: int, cpus: frozenset[int], where: str) -> None:
    """Restrict process ``pid`` (a child kmm started) to ``cpus``; nothing when ``cpus`` is empty."""
    if cpus:
        _set(pid, cpus, where)


def _set(pid: int, cpus: frozenset[int], where: str) -> None:
    setter = getattr(os, "sched_setaffinity", None)
    if setter is None:
        raise ConfigError(f"{where}: this operating system does not let a process choose its CPUs; "
                          "leave it empty")
    try:
        setter(pid, cpus)
    except OSError as exc:
        raise ConfigError(f"{where} = {_fmt(cpus)}: the operating system refused it ({exc.strerror}); "
                          "choose CPUs kmm may use or leave it empty") from None


def _allowed() -> frozenset[int] | None:
    return _AT_IMPORT


def _affinity() -> frozenset[int] | None:
    getter = getattr(os, "sched_getaffinity", None)
    return frozenset(getter(0)) if getter is not None else None


# The CPUs the process may use, taken before kmm pins anything: once the loop's thread is pinned, its
# own affinity no longer says which CPUs the signer process may be given (kmm imports this module
# before it pins).
_AT_IMPORT = _affinity()


def _fmt(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))
