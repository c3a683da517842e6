"""The compiled frame entry: a WebSocket text frame's bytes -> router -> the market's decision, with
no Python frame for an orderbook delta of a market on a compiled pipeline in the common state; the
engine's ``_act`` is entered only with actions to send, ``_marks`` only when the top of book moved,
and every other frame (or state) goes to the connector's Python path (``after_feed``). With
``coalesce`` each market changed in a socket read is decided once, when the read ends."""

from typing import Any, Callable, final

from kmm._core.pipeline import Pipeline
from kmm._core.wire import BookRouter

FAST_DECIDED: int   # actions decided here and handed to the engine's _act
FAST_NOTHING: int   # decided nothing to send, or kept for later
HANDED: int         # handed to the Python path
PENDING: int        # applied; decided when the read ends (coalesce on)
IGNORE_TICKER: int  # FrameEntry.ignore: ticker frames are captured, not handed to the Python path
IGNORE_TRADE: int   # ... trade frames

@final
class FrameEntry:
    decided: int
    nothing: int
    handed: int
    synced: int
    asked: int
    reads: int
    read_deltas: int
    coalesced: int
    deferred: int
    dropped: int
    coalesce: bool
    flush_python: bool
    open: bool
    last: int
    ignore: int      # IGNORE_TICKER | IGNORE_TRADE: frame types captured only (their handlers do nothing)
    ignored: int     # frames captured only
    first_written: int   # decisions whose first create or amend was written here (first_request)
    first_declined: int  # ... a create or an amend first, left to the engine's Python path
    def __init__(self, router: BookRouter, stats: Any, after_feed: Callable[..., int],
                 raw: Callable[[int, bytes], None] | None, log: Any, engine: Any, session: Any, clock: Any,
                 sys_clock: bool, capture: Any = None, coalesce: bool = False,
                 flush_python: bool = False) -> None: ...
    @property
    def handed_by(self) -> dict[str, int]: ...
    @property
    def reads_by_deltas(self) -> dict[int, int]: ...
    @property
    def pending(self) -> list[str]: ...
    def end_read(self) -> None: ...
    def defer(self, ticker: str, trigger_ns: int) -> bool: ...
    def discard(self, ticker: str) -> None: ...
    def drop(self) -> None: ...
    def add(self, ticker: str, core: Pipeline, pipe: Any, fresh: Any) -> None: ...
    def remove(self, ticker: str) -> None: ...
    @property
    def markets(self) -> list[str]: ...
    def inventory(self, ticker: str) -> int: ...
    hot: dict[str, int] | None
    def open_rooms(self, hot: dict[str, int], open_step: tuple[int, int, int]) -> None: ...
    def first_request(self, qw: Any, rest: Any = None, planner: Any = None, reprice_pressure: float = 0.0,
                      resting: Any = None, partial: Any = None) -> None: ...
    @property
    def first_on(self) -> bool: ...
    def feed(self, data: bytes, recv_ns: int, last: bool = True) -> int: ...
