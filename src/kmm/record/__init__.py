"""kmm's records: ops log, tape, SQLite store and raw feed capture (design section 8).

Every writer takes records on the caller's thread by enqueueing only; one background thread per
writer touches the disk; ``close()`` drains, commits and closes. See ``docs/records.md``.
"""

from kmm.record._worker import RecordError
from kmm.record.capture import CaptureReader, CaptureRecord, CaptureWriter, read_capture
from kmm.record.oplog import LogHandle, RedactFilter, redact, setup_logging
from kmm.record.recorder import Recorder
from kmm.record.store import (
    BookSnapshot,
    ExecutionMetrics,
    ExecutionOrderRecord,
    ExecutionRecord,
    OrderRecord,
    PnlSnapshot,
    Store,
    StoreReader,
    signed_slippage,
)
from kmm.record.tape import TapeRow, TapeWriter, equity_curve, read_tape

__all__ = [
    "BookSnapshot", "CaptureReader", "CaptureRecord", "CaptureWriter", "ExecutionMetrics",
    "ExecutionOrderRecord", "ExecutionRecord", "LogHandle", "OrderRecord", "PnlSnapshot", "Recorder",
    "RecordError", "RedactFilter", "Store", "StoreReader", "TapeRow", "TapeWriter", "equity_curve",
    "read_capture", "read_tape", "redact", "setup_logging", "signed_slippage",
]
