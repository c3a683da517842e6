"""``ops.log``: the human log, through a queue so the event loop never waits on the disk or terminal.

``setup_logging`` puts one ``QueueHandler`` on a logger (``kmm`` by default, or the root logger) and
starts a ``QueueListener`` thread that owns the real handlers: ``ops.log`` in the output directory and,
optionally, the console. On the caller's thread (the event loop) the queue handler only enqueues the
record: when every argument is immutable (numbers, strings, bytes, None: what kmm logs) the message is
merged with its arguments on the listener thread, with formatting, redaction and writing; a record with
a mutable argument (which could change before the listener reads it) or a traceback is merged at once.

Redaction is defence in depth: kmm never logs key material or signatures on purpose, but if a PEM
private key block or a ``KALSHI-ACCESS-SIGNATURE`` header value reaches a log line anyway (a request
repr in an exception, a config dump), it is masked before it is written anywhere.
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import os
import queue
import re
import sys
import time
from pathlib import Path
from typing import Any, IO, Literal

REDACTED = "[REDACTED]"

_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL)
_SIG = re.compile(
    r"(KALSHI-ACCESS-SIGNATURE['\"]?\s*[:=]\s*(?:b?['\"])?)[A-Za-z0-9+/=_\-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Mask PEM private key blocks (also a block cut short) and signature header values."""
    if "PRIVATE KEY" in text:
        text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}PRIVATE KEY-----{REDACTED}", text)
    if "SIGNATURE" in text.upper():
        text = _SIG.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrites a record's message (and any formatted traceback) through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class UtcFormatter(logging.Formatter):
    """``2026-03-01T12:00:00.123Z INFO    kmm.engine: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + \
            f".{int(record.msecs):03d}Z"


class PlainFormatter(logging.Formatter):
    """Console text for people at a terminal: the message, with the level for warnings and worse."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


_IMMUTABLE = (int, float, str, bytes, bool, type(None))


class _Handoff(logging.handlers.QueueHandler):
    """QueueHandler that leaves building the line to the listener thread whenever that is safe."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        args = record.args
        if not record.exc_info and (not args or (type(args) is tuple
                                                 and all(type(a) in _IMMUTABLE for a in args))):
            return record            # raw: message, arguments and the formatting stay for the listener
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            # format the traceback now: the frames may be gone by the time the listener runs
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


LISTENER_POLL_S = 0.02


class _Listener(logging.handlers.QueueListener):
    """Works on its own copy of each record: the redaction filter rewrites the message, and the caller
    may still be handing the original to other handlers (propagation) on its own thread.

    It polls the queue every ``LISTENER_POLL_S`` instead of blocking on it: a blocked ``get`` is woken
    by every log call and asks for the GIL at once, which takes it from the event loop in the middle
    of a decision at the next switch interval; polled, the lines go out in batches."""

    cpus: frozenset[int] = frozenset()     # the listener thread's CPUs ([run] records_cpus)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return copy.copy(record)

    def _monitor(self) -> None:               # the thread's body (QueueListener.start)
        from kmm.record._worker import pin_writer_thread
        pin_writer_thread(self.cpus, "ops.log")
        super()._monitor()  # type: ignore[misc]

    def dequeue(self, block: bool) -> logging.LogRecord:
        q: Any = self.queue
        get = q.get_nowait
        while True:
            try:
                record: logging.LogRecord = get()
                return record
            except queue.Empty:
                if not block:
                    raise
                time.sleep(LISTENER_POLL_S)


class LogHandle:
    """What ``setup_logging`` returns; ``stop()`` drains the queue, flushes and detaches. Idempotent."""

    def __init__(self, logger: logging.Logger, handler: logging.Handler,
                 listener: logging.handlers.QueueListener, outputs: list[logging.Handler],
                 path: Path | None, previous_level: int) -> None:
        self.logger = logger
        self.path = path
        self._handler = handler
        self._listener = listener
        self._outputs = outputs
        self._previous_level = previous_level
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.logger.removeHandler(self._handler)
        self._listener.stop()            # processes everything queued, then joins
        for h in self._outputs:
            h.flush()
            if isinstance(h, logging.FileHandler) and h.stream is not None:
                try:
                    os.fsync(h.stream.fileno())
                except OSError:
                    pass
                h.close()
        self.logger.setLevel(self._previous_level)


def setup_logging(out_dir: Path | str | None, level: int | str = "INFO",
                  console: bool | Literal["plain"] = True, *, logger: str = "kmm",
                  filename: str = "ops.log", stream: IO[str] | None = None,
                  cpus: frozenset[int] = frozenset()) -> LogHandle:
    """Route ``logger`` (``"kmm"``; ``""`` for the root logger) through a queue to ``out_dir/ops.log``
    (appended; skipped when ``out_dir`` is None) and, if ``console``, to ``stream`` (stderr):
    ``True`` with the full timestamped format, ``"plain"`` with the message only.

    A handler left by an earlier ``setup_logging`` on the same logger is stopped first, so calling it
    twice does not double every line. Call ``LogHandle.stop()`` at exit to flush. ``cpus``: the
    listener thread's CPUs (``[run] records_cpus``; empty: the caller's).
    """
    if isinstance(level, str):
        lvl = logging.getLevelName(level.upper())
        if not isinstance(lvl, int):
            raise ValueError(f"setup_logging: unknown log level {level!r}; use DEBUG, INFO, WARNING, "
                             "ERROR or CRITICAL")
        level = lvl
    if console not in (True, False, "plain"):
        raise ValueError(f"setup_logging: console must be True, False or 'plain', got {console!r}")
    target = logging.getLogger(logger or None)
    for h in list(target.handlers):
        owner = getattr(h, "_kmm_handle", None)
        if owner is not None:
            owner.stop()

    outputs: list[logging.Handler] = []
    path: Path | None = None
    redact_filter = RedactFilter()
    if out_dir is not None:
        path = Path(out_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, mode="a", encoding="utf-8")
        fh.setFormatter(UtcFormatter())
        outputs.append(fh)
    if console:
        ch = logging.StreamHandler(stream if stream is not None else sys.stderr)
        ch.setFormatter(PlainFormatter() if console == "plain" else UtcFormatter())
        outputs.append(ch)
    for h in outputs:
        h.addFilter(redact_filter)

    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handoff = _Handoff(q)
    listener = _Listener(q, *outputs, respect_handler_level=True)
    listener.cpus = cpus
    previous = target.level
    target.setLevel(level)
    listener.start()
    target.addHandler(handoff)
    handle = LogHandle(target, handoff, listener, outputs, path, previous)
    handoff._kmm_handle = handle  # type: ignore[attr-defined]
    return handle


__all__ = ["LogHandle", "PlainFormatter", "REDACTED", "RedactFilter", "UtcFormatter", "redact",
           "setup_logging"]
