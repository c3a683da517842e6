"""The machine's own floor for a message between two processes: how long after one process writes
to a loopback TCP socket another process's uvloop reads it, with nothing else running.

``python bench/probe_wake.py [N]``: a child on the second CPU writes its monotonic stamp every 20 ms
(the simulator's busy-flow tick) to a parent on the first CPU (the CPU placement of bench_engine.py),
N times (default 400); the parent's reader is idle between messages, then spinning (a ``call_soon``
chain that keeps the loop from sleeping). Prints p50 / p90 / p99 for both.

On the project's 2-vCPU microVM this is ~165 us idle and ~65 us spinning at p50 (docs/benchmarks.md):
every figure that starts at the exchange's write (wire to wire, for kmm and for the minimal client
alike) carries this much before any client code runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time


def measure(n: int, spin: bool) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    pid = os.fork()
    if pid == 0:                                  # the writer
        try:
            if len(cpus) >= 2:
                os.sched_setaffinity(0, {cpus[1]})
            c = socket.create_connection(("127.0.0.1", port))
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            time.sleep(0.2)
            for _ in range(n):
                c.send(struct.pack("q", time.monotonic_ns()))
                time.sleep(0.02)
            c.close()
        finally:
            os._exit(0)
    before = os.sched_getaffinity(0) if cpus else None
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
    conn, _ = srv.accept()
    srv.close()
    lat: list[int] = []

    class Reader(asyncio.Protocol):
        def __init__(self, done: asyncio.Future[None]) -> None:
            self.done = done

        def data_received(self, data: bytes) -> None:
            t = time.monotonic_ns()
            for i in range(0, len(data) - 7, 8):
                lat.append(t - struct.unpack_from("q", data, i)[0])

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        await loop.connect_accepted_socket(lambda: Reader(done), conn)
        if spin:
            def again() -> None:
                if not done.done():
                    loop.call_soon(again)
            loop.call_soon(again)
        await asyncio.wait_for(done, n * 0.02 + 30)

    import uvloop
    try:
        uvloop.run(main())
    finally:
        os.waitpid(pid, 0)
        if before is not None:
            os.sched_setaffinity(0, before)
    return sorted(lat)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    for spin in (False, True):
        lat = measure(n, spin)
        if not lat:
            print("no messages received", file=sys.stderr)
            return 1
        p50, p90, p99 = (lat[min(len(lat) - 1, int(q * len(lat)))] / 1e3 for q in (0.5, 0.9, 0.99))
        print(f"{'spinning' if spin else 'idle':8s} reader: n {len(lat)}, p50 {p50:.1f} us, "
              f"p90 {p90:.1f} us, p99 {p99:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
