from typing import Any

from picows import WSFrame, WSListener, WSTransport

class FeedListener(WSListener):
    client: Any
    _read_ns: int
    _read_open: bool
    def __init__(self, client: Any) -> None: ...
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None: ...

def make_frame(msg_type: Any, payload: bytes, fin: bool = ..., last: bool = ...) -> WSFrame: ...
