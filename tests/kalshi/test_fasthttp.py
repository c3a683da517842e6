"""The order-path HTTP/1.1 client against raw loopback servers that answer in awkward ways."""

from __future__ import annotations

import asyncio

import pytest

from kmm.errors import RequestTimeout
from kmm.kalshi.fasthttp import FastHttp, HttpConnectionError


class Scripted(asyncio.Protocol):
    """Answers each complete request head with the next scripted response (bytes, split in pieces)."""

    def __init__(self, script, seen) -> None:
        self.script, self.seen, self.buf = script, seen, b""

    def connection_made(self, transport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = next((int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                           if ln.lower().startswith(b"content-length")), 0)
            if len(rest) < length:
                return
            self.seen.append(head + b"\r\n\r\n" + rest[:length])
            self.buf = rest[length:]
            action = self.script.pop(0)
            if action == "hang":
                continue
            if action == "close":
                self.t.close()
                return
            if action == "echo":  # body = the request target
                target = head.split(b" ")[1]
                action = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(target), target)]
            for piece in action:
                self.t.write(piece)


async def serve(script):
    seen: list[bytes] = []
    server = await asyncio.get_running_loop().create_server(lambda: Scripted(script, seen), "127.0.0.1", 0)
    return server, seen, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_request_bytes_and_content_length_response_on_one_keepalive_connection():
    ok = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
    server, seen, url = await serve([[ok[:10], ok[10:30], ok[30:]], [ok]])
    client = FastHttp(url, connections=1)
    assert await client.request("POST", "/trade-api/v2/x", {"A": "b"}, b'{"k":1}') == (201, b"{}")
    assert await client.request("DELETE", "/trade-api/v2/y?t=1", {}, None) == (201, b"{}")
    assert seen[0].startswith(b"POST /trade-api/v2/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nA: b\r\nContent-Length: 7\r\n" in seen[0] and seen[0].endswith(b'{"k":1}')
    assert seen[1].startswith(b"DELETE /trade-api/v2/y?t=1 HTTP/1.1\r\n")
    assert client.opened == 1 and client.last_write_ns > 0
    await client.close()
    server.close()


async def test_chunked_response_is_reassembled():
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"
    server, _, url = await serve([[resp[:50], resp[50:]]])
    client = FastHttp(url)
    assert await client.request("GET", "/x", {}, None) == (200, b'{"a":1}')
    await client.close()
    server.close()


async def test_timeout_raises_request_timeout_and_retires_the_connection():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    server, _, url = await serve(["hang", [ok]])
    client = FastHttp(url, connections=1)
    with pytest.raises(RequestTimeout):
        await client.request("POST", "/x", {}, b"{}", timeout_s=0.05)
    assert await client.request("POST", "/x", {}, b"{}") == (200, b"")  # on a fresh connection
    assert client.opened == 2
    await client.close()
    server.close()


async def test_connection_closed_mid_request_raises_connection_error():
    server, _, url = await serve(["close"])
    client = FastHttp(url)
    with pytest.raises(HttpConnectionError):
        await client.request("POST", "/x", {}, b"{}")
    await client.close()
    server.close()


async def test_concurrent_requests_share_the_pool_without_mixing_responses():
    server, seen, url = await serve(["echo"] * 6)
    client = FastHttp(url, connections=2)
    out = await asyncio.gather(*(client.request("GET", f"/r{i}", {}, None) for i in range(6)))
    assert [body for _, body in out] == [b"/r%d" % i for i in range(6)]
    assert client.opened == 2
    await client.close()
    server.close()


async def test_a_request_waiting_for_a_connection_gets_one_when_the_busy_one_dies():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server, seen, url = await serve(["close", [ok]])
    client = FastHttp(url, connections=1, timeout_s=2.0)
    first = asyncio.ensure_future(client.request("POST", "/a", {}, b"1"))
    await asyncio.sleep(0)                     # the first request holds the only connection
    second = asyncio.ensure_future(client.request("DELETE", "/b", {}, None))
    with pytest.raises(HttpConnectionError):
        await first
    assert await asyncio.wait_for(second, 2.0) == (200, b"{}")   # not stranded behind the dead one
    assert client.opened == 2
    server.close()


async def test_a_priority_request_opens_one_more_connection_instead_of_waiting():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server, seen, url = await serve(["hang", [ok]])
    client = FastHttp(url, connections=1, timeout_s=2.0)
    slow = asyncio.ensure_future(client.request("POST", "/place", {}, b"1"))
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(client.request("DELETE", "/cancel", {}, None, priority=True), 1.0) == (200, b"{}")
    assert client.opened == 2
    slow.cancel()
    server.close()


async def test_waiting_for_a_connection_counts_against_the_request_timeout():
    server, seen, url = await serve(["hang"])
    client = FastHttp(url, connections=1, timeout_s=2.0)
    slow = asyncio.ensure_future(client.request("POST", "/place", {}, b"1"))
    await asyncio.sleep(0.05)
    with pytest.raises(RequestTimeout, match="no connection free"):
        await client.request("POST", "/place2", {}, b"2", timeout_s=0.3)
    assert len(seen) == 1                      # the second request was never written
    slow.cancel()
    server.close()


async def test_an_answer_nobody_asked_for_closes_the_connection_instead_of_pairing_it_later():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    stray = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    server, seen, url = await serve([[ok, stray], [ok]])
    client = FastHttp(url, connections=1, timeout_s=2.0)
    assert await client.request("POST", "/a", {}, b"1") == (200, b"{}")
    await asyncio.sleep(0.05)                  # the unsolicited 408 arrives on the idle connection
    assert await client.request("POST", "/b", {}, b"2") == (200, b"{}")
    assert client.opened == 2                  # the connection that carried it was not reused
    server.close()


async def test_an_interim_1xx_answer_is_skipped_and_the_real_answer_returned():
    answer = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
    server, seen, url = await serve([[answer]])
    client = FastHttp(url, connections=1, timeout_s=2.0)
    assert await client.request("POST", "/a", {}, b"1") == (201, b"{}")
    server.close()


async def test_a_body_without_length_that_runs_to_the_end_of_the_connection_is_returned():
    class AnswerThenClose(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.t = transport

        def data_received(self, data: bytes) -> None:
            self.t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b'{"a":1}')
            self.t.close()

    server = await asyncio.get_running_loop().create_server(AnswerThenClose, "127.0.0.1", 0)
    client = FastHttp(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections=1, timeout_s=2.0)
    assert await client.request("GET", "/a", {}, None) == (200, b'{"a":1}')
    server.close()


async def test_a_request_on_a_warm_connection_is_written_before_the_coroutine_first_yields():
    # the engine starts requests eagerly inside the frame callback: the bytes must leave synchronously
    from kmm.engine.eager import start_eager

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server, seen, url = await serve([[ok], [ok]])
    client = FastHttp(url, connections=1, timeout_s=2.0)
    await client.warm()
    fut = start_eager(asyncio.get_running_loop(), client.request("POST", "/a", {}, b"1"))
    assert client.requests == 1 and client.last_write_ns > 0 and not fut.done()
    assert await fut == (200, b"{}")
    server.close()
