"""``kmm sim`` with stamps taken by the exchange itself, for the wire-to-wire benchmark.

Run as ``python bench/stamped_sim.py STAMPS.json <kmm sim args...>``. Before the simulator starts, two
of its functions are wrapped (nothing in src/ changes):

* the WebSocket writer's frame batching (``kmm.sim.server._frame_batch``): for every frame in a batch
  that names a market (book, trade, ticker, fill, user order), ``(monotonic ns, ticker)``, stamped when
  the batch's bytes are ready and handed to ``transport.write`` (the next statement);
* the REST middleware (``Api.middleware``): for every create (``POST .../portfolio/events/orders``) and
  amend, ``(monotonic ns, ticker, kind)``, stamped when aiohttp hands the parsed request to the
  application, before the simulator verifies its signature.

CLOCK_MONOTONIC is one clock for every process on the machine, so these stamps compare with the
client's. The stamps are written to STAMPS.json when the simulator exits (SIGTERM stops it cleanly).
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from typing import Any


def main() -> int:
    out = sys.argv[1]
    frames: list[tuple[int, str]] = []
    book_frames = [0]
    creates: list[tuple[int, str]] = []
    from aiohttp import web

    from kmm.sim import server

    orig_batch = server._frame_batch
    clock = time.monotonic_ns

    def frame_batch(batch: list[str]) -> bytes:
        data = orig_batch(batch)
        t = clock()
        for f in batch:
            if '"type":"orderbook_' in f:
                book_frames[0] += 1
            if '"market_ticker":' in f:
                i = f.find('"market_ticker":')
                if i >= 0:
                    j = f.find('"', i + 16)
                    k = f.find('"', j + 1)
                    frames.append((t, f[j + 1:k]))
        return data

    server._frame_batch = frame_batch  # type: ignore[assignment]
    orig_mw = server.Api.middleware

    @web.middleware
    async def middleware(self: Any, req: web.Request, handler: Any) -> web.StreamResponse:
        if req.method == "POST" and (req.path.endswith("/portfolio/events/orders") or req.path.endswith("/amend")):
            t = clock()
            body = await req.read()
            i = body.find(b'"ticker":')
            j = body.find(b'"', i + 9)
            k = body.find(b'"', j + 1)
            creates.append((t, body[j + 1:k].decode(), "amend" if req.path.endswith("/amend") else "create"))
        return await orig_mw(self, req, handler)

    server.Api.middleware = middleware  # type: ignore[method-assign,assignment]

    def dump() -> None:
        with open(out, "w") as f:
            json.dump({"frames": frames, "creates": creates, "book_frames": book_frames[0]}, f)

    atexit.register(dump)
    from kmm.cli import main as kmm_main
    return kmm_main(["sim", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
