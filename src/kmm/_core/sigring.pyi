from typing import Any

HDR_KEY: str
HDR_TIMESTAMP: str
HDR_SIGNATURE: str

class PoolStats:
    hits: int
    misses: int
    expired: int
    refreshed: int
    made: int
    unpooled: int
    skipped: int
    waited: int
    wait_timeouts: int
    unpooled_reads: int
    miss_kinds: dict[str, int]
    @property
    def discards(self) -> int: ...
    @property
    def fallbacks(self) -> int: ...
    @property
    def write_fallbacks(self) -> int: ...

class SigRing:
    kid: Any
    stats: PoolStats
    kicked: bool
    noted: bool
    takes: int
    def __init__(self, kid: Any = ..., stats: PoolStats | None = ...) -> None: ...
    def push(self, made_ns: int, ts: str, sig: str, with_key: bool = ...) -> None: ...
    def append(self, item: tuple[int, dict[str, str]]) -> None: ...
    def popleft(self) -> tuple[int, dict[str, str]]: ...
    def __getitem__(self, i: int) -> tuple[int, dict[str, str]]: ...
    def __len__(self) -> int: ...
    def clear(self) -> None: ...
    def take_lines(self, now_ns: int, max_age_ns: int) -> bytes | None: ...
