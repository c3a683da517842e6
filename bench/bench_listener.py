"""picows' listener call per frame: the compiled listener (``kmm._core.listener.FeedListener``, kmm)
against the Python one (``kmm.kalshi.ws._Listener``, baseline), warm, no I/O.

Each round hands 64 text frames of one socket read (the last flagged ``last_in_buffer``) to
``on_ws_frame`` as picows does, through a stand-in client whose ``_feed`` only counts: the figure is
the listener's own cost per frame (the read stamp, the flags, the payload copy, the call into the
client), not the frame entry's. picows calls a compiled listener through its C vtable; here the
benchmark calls both from Python, which adds the same call cost to each.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from picows import WSMsgType

from kmm._core.listener import FeedListener, make_frame
from kmm.kalshi.ws import _Listener

GROUP = "websocket listener: one frame handed to the client (warm, no I/O)"
FRAMES = 64
PAYLOAD = (b'{"type":"orderbook_delta","sid":1,"seq":7,"msg":{"market_ticker":"KXSIMA-26-A",'
           b'"price_dollars":"0.4400","delta_fp":"5.00","side":"yes","ts":"2026-11-28T12:00:00Z"}}')


class _Client:
    """What a listener reads of ``KalshiWs``: the clock, the frame entry (none), ``_feed``."""

    def __init__(self) -> None:
        self._clock = time.monotonic_ns
        self.entry = None
        self.fed = 0

    def _feed(self, data: bytes, recv_ns: int, last: bool) -> int:
        self.fed += 1
        return 0

    def _other_frame(self, transport: Any, frame: Any, recv_ns: int, last: bool) -> None:
        raise AssertionError("only text frames here")


def _run(listener_cls: Any, benchmark: Any, role: str) -> None:
    client = _Client()
    lis = listener_cls(client)
    frames = [make_frame(WSMsgType.TEXT, PAYLOAD, True, i == FRAMES - 1) for i in range(FRAMES)]
    on = lis.on_ws_frame

    def read() -> None:
        for f in frames:
            on(None, f)
    benchmark.group = GROUP
    benchmark.extra_info.update({"role": role, "ops": FRAMES})
    benchmark(read)
    assert client.fed > 0 and client.fed % FRAMES == 0 and not lis._read_open


def test_listener_compiled(benchmark: Any) -> None:
    _run(FeedListener, benchmark, "kmm")


def test_listener_python(benchmark: Any) -> None:
    _run(_Listener, benchmark, "baseline")


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
