"""``Recorder``: the four records of one run under one output directory, opened and closed together.

Layout of ``out_dir``::

    ops.log            human log (appended across runs)
    tape.csv           decisions and fills (appended across runs, header checked)
    kmm.sqlite         orders, fills, P&L, executions, metrics, book snapshots (kept across runs)
    capture.bin.gz     raw frames of this run; later runs get capture.1.bin.gz, capture.2.bin.gz, ...

Open and close it off the event loop (both touch the disk and close joins threads); in between, the
writers' ``write``/``record_*`` methods are safe on the loop.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from kmm.record._worker import RecordError
from kmm.record.capture import CaptureWriter
from kmm.record.oplog import LogHandle, setup_logging
from kmm.record.store import Store
from kmm.record.tape import TapeWriter

log = logging.getLogger("kmm.record")

OPS_LOG = "ops.log"
TAPE = "tape.csv"
STORE = "kmm.sqlite"
CAPTURE = "capture.bin.gz"


def next_capture_path(out_dir: Path) -> Path:
    """``capture.bin.gz``, or the first free ``capture.N.bin.gz`` when earlier runs left theirs."""
    p = out_dir / CAPTURE
    n = 0
    while p.exists():
        n += 1
        p = out_dir / f"capture.{n}.bin.gz"
    return p


class Recorder:
    """Bundles ops log, tape, store and capture. Use :meth:`open`; ``close()`` is idempotent."""

    def __init__(self, out_dir: Path, log_handle: LogHandle | None, tape: TapeWriter, store: Store,
                 capture: CaptureWriter | None) -> None:
        self.out_dir = out_dir
        self.log = log_handle
        self.tape = tape
        self.store = store
        self.capture = capture
        self._closed = False

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str], *, log_level: int | str = "INFO",
             console: bool | Literal["plain"] = False, logging_enabled: bool = True,
             capture: bool = True, logger: str = "kmm", cpus: frozenset[int] = frozenset()) -> Recorder:
        """Create ``out_dir`` and open every record in it. If one fails to open, the ones already
        opened are closed again and the error is raised. ``cpus``: the CPUs of the writer threads
        (``[run] records_cpus``, checked by the caller); empty: the caller's."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordError(f"{out}: cannot create the output directory: {exc}") from exc
        opened: list[object] = []
        try:
            handle = setup_logging(out, log_level, console, logger=logger, cpus=cpus) if logging_enabled else None
            opened.append(handle)
            tape = TapeWriter(out / TAPE, cpus=cpus)
            opened.append(tape)
            store = Store(out / STORE, cpus=cpus)
            opened.append(store)
            cap = CaptureWriter(next_capture_path(out), cpus=cpus) if capture else None
        except BaseException:
            for thing in reversed(opened):
                if isinstance(thing, LogHandle):
                    thing.stop()
                elif thing is not None:
                    thing.close(raise_errors=False)  # type: ignore[attr-defined]
            raise
        log.info("recording to %s", out)
        return cls(out, handle, tape, store, cap)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close capture, tape and store (each drains its queue), then the log last so that their
        errors are logged. Raises the first error after everything is closed."""
        if self._closed:
            return
        self._closed = True
        first: BaseException | None = None
        for writer in (self.capture, self.tape, self.store):
            if writer is None:
                continue
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then raise
                log.error("closing %s failed: %s", writer.name, exc)
                first = first or exc
        if self.log is not None:
            self.log.stop()
        if first is not None:
            raise first

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
