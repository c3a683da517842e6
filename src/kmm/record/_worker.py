"""The background writer every record shares: the caller enqueues, one thread touches the disk.

The event loop only calls ``_put`` (a ``SimpleQueue.put``: O(1), never blocks, no I/O). A single
daemon thread polls the queue every ``poll_s`` (a put never wakes it, so it never asks the loop for the
GIL mid-decision; ``flush`` and ``close`` do) and drains it in batches, hands each batch to ``_sink``
and calls ``_flush`` when the batch policy says so (``flush_rows`` items or ``flush_interval_s`` since the
first unflushed item) and always before a barrier or stop is acknowledged. ``close()`` stops intake,
drains everything enqueued before it, flushes, closes the sink and joins the thread; it is idempotent and
also runs at interpreter exit for writers that were not closed.

The queue is unbounded on purpose: a bound would force a choice between blocking the loop and dropping
records, and both are worse than memory growth that ``pending`` makes visible.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from typing import Any

from kmm.errors import KmmError

log = logging.getLogger("kmm.record")

_STOP = object()

#: how often a writer thread looks at its queue (capped by its flush interval). Each look takes the GIL
#: and runs on the loop's core, so the loop finds less of its own code and data in the caches after it:
#: 100 ms against 10 ms, seven alternated pairs of bench_kmm_run's ``kmm`` variant (Nov 29, the
#: seventeenth session): decided -> first request written p50 lower in all seven (median 200 against
#: 218 us), frame -> decided p50 in six. A crash can lose this much more of what was queued.
POLL_S = 0.1
#: ... but a look that found a batch of at least BUSY_BATCH items is followed by the next after
#: BUSY_POLL_S: a busy run (100 markets) would otherwise hand the writer 100 ms of records at a time,
#: and its batch holds the GIL long enough to show in the loop's frame -> decided tail.
BUSY_BATCH = 64
BUSY_POLL_S = 0.01


def pin_writer_thread(cpus: frozenset[int], name: str) -> None:
    """Put the calling writer thread on ``cpus`` (``[run] records_cpus``, checked before the run
    started); empty: it stays on the CPUs it inherited (the loop's). A refusal now is logged, never
    raised: the records go on being written wherever the thread runs."""
    if not cpus:
        return
    from kmm.cpus import pin_thread
    try:
        pin_thread(cpus, "run.records_cpus")
    except KmmError as exc:
        log.warning("%s: writer thread left on its CPUs: %s", name, exc)


class RecordError(KmmError):
    """A record writer could not accept or persist data (closed writer, disk error, bad file)."""


class _Barrier:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class BackgroundWriter:
    """Base class: subclasses implement ``_open_sink`` / ``_sink`` / ``_flush`` / ``_close_sink``.

    ``_open_sink`` runs in the constructor's thread so that a bad path fails at once with a clear
    error; everything else runs on the writer thread.
    """

    def __init__(self, name: str, *, flush_interval_s: float, flush_rows: int,
                 max_batch: int = 4096, poll_s: float = POLL_S, cpus: frozenset[int] = frozenset()) -> None:
        if flush_interval_s <= 0 or flush_rows <= 0 or max_batch <= 0:
            raise ValueError(f"{name}: flush_interval_s, flush_rows and max_batch must be > 0, got "
                             f"{flush_interval_s}, {flush_rows}, {max_batch}")
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._flush_interval_s = flush_interval_s
        self._flush_rows = flush_rows
        self._max_batch = max_batch
        self._poll_s = min(poll_s, flush_interval_s)
        self._busy_poll_s = min(BUSY_POLL_S, self._poll_s)
        # set by flush() and close() (never by a put): the writer looks at once instead of at its poll
        self._wake = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._written = 0          # items handed to the sink (writer thread only)
        self._errors = 0
        self._lost = 0
        self._first_error: BaseException | None = None
        self._cpus = cpus            # the writer thread's CPUs ([run] records_cpus); empty: inherited
        self._open_sink()
        self._thread = threading.Thread(target=self._run, name=f"kmm-record-{name}", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            writer = ref()
            if writer is not None:
                writer.close(raise_errors=False)

        self._atexit = close_at_exit
        atexit.register(close_at_exit)

    # ---- loop side -------------------------------------------------------------------------------

    def _put(self, item: Any) -> None:
        if self._closed:
            raise RecordError(f"{self.name}: write after close(); the record was not written. "
                              "Write records before closing the recorder.")
        self._queue.put(item)

    @property
    def pending(self) -> int:
        """Items enqueued and not yet taken by the writer thread (approximate while it runs)."""
        return self._queue.qsize()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def written(self) -> int:
        """Items handed to the sink so far."""
        return self._written

    @property
    def errors(self) -> int:
        """Sink failures so far; each one is logged, and ``close()`` raises if any happened."""
        return self._errors

    # ---- control (never from the event loop: these wait on the writer thread) --------------------

    def flush(self, timeout_s: float | None = 10.0) -> None:
        """Block until everything enqueued before this call is written and flushed."""
        if self._closed:
            return
        barrier = _Barrier()
        self._queue.put(barrier)
        self._wake.set()
        if not barrier.done.wait(timeout_s):
            raise RecordError(f"{self.name}: flush did not complete in {timeout_s} s "
                              f"({self.pending} items still queued)")

    def close(self, *, raise_errors: bool = True) -> None:
        """Stop intake, drain and write everything queued, flush, close the file. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
                self._wake.set()
                self._thread.join()
                atexit.unregister(self._atexit)
        if raise_errors and self._first_error is not None:
            err, self._first_error = self._first_error, None
            raise RecordError(f"{self.name}: {self._errors} write error(s), {self._lost} item(s) not "
                              f"persisted; first error: {err!r}") from err

    # ---- writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        pin_writer_thread(self._cpus, self.name)
        get_nowait, empty = self._queue.get_nowait, queue.Empty
        unflushed = 0
        deadline = 0.0
        stopping = False
        poll_s = self._poll_s
        while True:
            if stopping:
                try:
                    item = get_nowait()   # items that raced in after close(): write them too
                except empty:
                    break
            else:
                # Poll, do not block on the queue: a blocked get is woken by every put and asks for the
                # GIL at once, in the middle of the loop's decision; polled, records go out in batches.
                try:
                    item = get_nowait()
                except empty:
                    if unflushed and time.monotonic() >= deadline:
                        unflushed = self._safe_flush(unflushed)
                    if self._wake.wait(poll_s):
                        self._wake.clear()
                    continue
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    batch.append(get_nowait())
                except empty:
                    break
            # the next look: sooner while the batches are large (a busy run), else at the poll
            poll_s = self._busy_poll_s if len(batch) >= BUSY_BATCH else self._poll_s
            data: list[Any] = []
            for it in batch:
                if it is _STOP:
                    stopping = True
                elif type(it) is _Barrier:
                    if data:
                        self._safe_sink(data)
                        unflushed += len(data)
                        data = []
                    unflushed = self._safe_flush(unflushed, force=True)
                    it.done.set()
                else:
                    data.append(it)
            if data:
                if not unflushed:
                    deadline = time.monotonic() + self._flush_interval_s
                self._safe_sink(data)
                unflushed += len(data)
            if unflushed >= self._flush_rows or (unflushed and time.monotonic() >= deadline):
                unflushed = self._safe_flush(unflushed)
        self._safe_flush(unflushed, force=True)
        try:
            self._close_sink()
        except Exception as exc:  # noqa: BLE001 - reported through close()
            self._note_error(exc, 0, "closing")

    def _safe_sink(self, data: list[Any]) -> None:
        try:
            self._sink(data)
            self._written += len(data)
        except Exception as exc:  # noqa: BLE001 - a disk error must not kill the writer thread
            self._note_error(exc, len(data), "writing")

    def _safe_flush(self, unflushed: int, force: bool = False) -> int:
        if not unflushed and not force:
            return 0
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001
            self._note_error(exc, 0, "flushing")
        return 0

    def _note_error(self, exc: BaseException, lost: int, what: str) -> None:
        self._errors += 1
        self._lost += lost
        if self._first_error is None:
            self._first_error = exc
        log.error("%s: error %s (%d item(s) not persisted): %r", self.name, what, lost, exc)

    # ---- subclass hooks --------------------------------------------------------------------------

    def _open_sink(self) -> None:
        raise NotImplementedError

    def _sink(self, items: list[Any]) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _close_sink(self) -> None:
        raise NotImplementedError
