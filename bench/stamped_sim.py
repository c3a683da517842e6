"""``kmm sim`` with stamps taken by the exchange itself, for the wire-to-wire benchmark.

Run as ``python bench/stamped_sim.py STAMPS.json <kmm sim args...>``. Before the simulator starts, two
of its functions are wrapped (nothing in src/ changes):

* the WebSocket writer's frame batching (``kmm.sim.server._frame_batch``): for every frame in a batch
  that names a market (book, trade, ticker, fill, user order), ``(monotonic ns, ticker)``, and for every
  book frame ``(monotonic ns, sid, seq)``, stamped when the batch's bytes are ready and handed to
  ``transport.write`` (the next statement);
* the REST middleware (``Api.middleware``): for every create (``POST .../portfolio/events/orders``) and
  amend, ``(monotonic ns, ticker, kind, key)``, stamped when aiohttp hands the parsed request to the
  application, before the simulator verifies its signature; ``key`` names the request as its client
  knows it: a create's ``client_order_id``, an amend's order id (from its path);
* aiohttp's ``RequestHandler.data_received``: the same ``(monotonic ns, "", kind, key)`` for every
  create and amend in the bytes the simulator's loop read from a connection, stamped as the read is
  handed to the HTTP parser: the earliest point the simulator's own code sees a request. The two
  stamps differ by the wait for the request's handler to be scheduled on the simulator's loop.

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
    books: list[tuple[int, int, int]] = []
    creates: list[tuple[int, str, str, str]] = []
    reads: list[tuple[int, str, str, str]] = []
    import re
    req_line = re.compile(rb'POST (\S+) HTTP/1\.1')
    sid_seq = re.compile(r'"sid":(\d+),"seq":(\d+)')
    coid = re.compile(rb'"client_order_id":"([^"]+)"')
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
                m = sid_seq.search(f)
                if m is not None:
                    books.append((t, int(m.group(1)), int(m.group(2))))
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
            if req.path.endswith("/amend"):
                kind, key = "amend", req.path.rsplit("/", 2)[-2]
            else:
                m = coid.search(body)
                kind, key = "create", (m.group(1).decode() if m is not None else "")
            creates.append((t, body[j + 1:k].decode(), kind, key))
        return await orig_mw(self, req, handler)

    server.Api.middleware = middleware  # type: ignore[method-assign,assignment]
    from aiohttp import web_protocol
    orig_received = web_protocol.RequestHandler.data_received

    def data_received(self: Any, data: bytes) -> None:
        t = clock()
        if b"POST " in data:
            starts = [m for m in req_line.finditer(data)]
            for n, m in enumerate(starts):
                path = m.group(1)
                if path.endswith(b"/amend"):
                    reads.append((t, "", "amend", path.rsplit(b"/", 2)[-2].decode()))
                elif path.endswith(b"/portfolio/events/orders"):
                    end = starts[n + 1].start() if n + 1 < len(starts) else len(data)
                    c = coid.search(data, m.end(), end)
                    if c is not None:
                        reads.append((t, "", "create", c.group(1).decode()))
        orig_received(self, data)

    web_protocol.RequestHandler.data_received = data_received  # type: ignore[method-assign]

    def dump() -> None:
        with open(out, "w") as f:
            json.dump({"frames": frames, "books": books, "creates": creates, "reads": reads,
                       "book_frames": book_frames[0]}, f)

    atexit.register(dump)
    from kmm.cli import main as kmm_main
    return kmm_main(["sim", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
