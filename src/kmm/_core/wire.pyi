"""WebSocket frames -> compiled order books (orderbook_snapshot / orderbook_delta)."""

from typing import Any, final

from kmm._core.book import OrderBook

NOT_BOOK: int  # 0: valid JSON, not a book message (decode it with orjson)
SNAPSHOT: int  # 1
DELTA: int  # 2
GAP: int  # 3: seq gap on the sid; its markets are now stale
STALE_SKIPPED: int  # 4: delta for a stale market, not applied
UNKNOWN_MARKET: int  # 5
MALFORMED: int  # 6: see last_error
OTHER_TICKER_FRAME: int  # BookRouter.last_other of a ticker frame
OTHER_TRADE_FRAME: int  # ... of a trade frame
RESULT_NAMES: tuple[str, ...]
MAX_DEPTH: int  # deepest JSON nesting accepted (128)

@final
class BookRouter:
    @property
    def last_type(self) -> str | None: ...  # "orderbook_snapshot" | "orderbook_delta" | None (not a book frame)
    @property
    def last_ticker(self) -> str | None: ...
    @property
    def last_sid(self) -> int: ...  # 0 when absent
    @property
    def last_seq(self) -> int: ...  # 0 when absent
    @property
    def last_ts_ms(self) -> int: ...  # msg.ts_ms of a delta, 0 when absent
    @property
    def last_sending_ts_ms(self) -> int: ...  # top-level sending_ts_ms, 0 when absent
    @property
    def last_client_order_id(self) -> str | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_recv_ns(self) -> int: ...
    @property
    def last_other(self) -> int: ...  # a NOT_BOOK frame's type: OTHER_TICKER_FRAME, OTHER_TRADE_FRAME or 0
    @property
    def frames(self) -> int: ...
    @property
    def snapshots(self) -> int: ...
    @property
    def deltas(self) -> int: ...
    @property
    def gaps(self) -> int: ...
    @property
    def stale_skipped(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def unknown(self) -> int: ...
    @property
    def not_book(self) -> int: ...
    def __init__(self) -> None: ...
    def feed(self, frame: bytes, recv_ns: int = 0) -> int:
        """Scan one text frame, apply it if it is a book message; returns a result constant. Never
        raises on frame content."""
    def add(self, ticker: str, book: OrderBook) -> None:
        """Route ticker to book (replaces an earlier one). Stale until its first snapshot."""
    def regrid(self, ticker: str, price_ranges: Any) -> OrderBook:
        """Move the market's book to a new grid in place (emptied) and mark it stale until a snapshot."""
    def remove(self, ticker: str) -> None: ...
    def book(self, ticker: str) -> OrderBook: ...
    def tickers(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, ticker: object, /) -> bool: ...
    def is_stale(self, ticker: str) -> bool: ...
    def stale_tickers(self) -> list[str]: ...
    def mark_stale(self, ticker: str) -> None: ...
    def mark_all_stale(self) -> None:
        """Every market stale; seq bases and sid links kept."""
    def sid_of(self, ticker: str) -> int | None: ...
    def last_seq_of(self, sid: int) -> int | None: ...
    def forget_sid(self, sid: int) -> None:
        """Drop the sid's seq base; its markets become stale and unlinked."""
    def reset(self) -> None:
        """Forget every sid; every market stale and unlinked (on reconnect)."""
    def note_seq(self, sid: int, seq: int) -> None:
        """A non-book frame of ``sid`` carried ``seq``: move the sid's sequence up to it (never back)."""
    def counters(self) -> dict[str, int]: ...

def scan_fields(frame: bytes) -> dict[str, tuple[int, bytes]]:
    """Debug helper: the router's fields found in frame as {name: (kind, raw bytes)}."""
