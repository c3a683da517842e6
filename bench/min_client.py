"""The wire-to-wire floor: a client that does nothing but answer each book frame with a pre-built create.

``python bench/min_client.py [--answered PATH] WS_URL REST_URL KEY_ID PRIVATE_KEY.pem SECONDS TICKER [TICKER...]``,
in its own process on uvloop. It opens one picows WebSocket (signed upgrade) and one keep-alive TCP
connection to the REST port, subscribes to the tickers' order books and, for every ``orderbook_delta``
frame of a ticker, writes that ticker's create request, built and signed before the run (a post-only
bid for one contract at $0.01, far from the market), unless a request is still unanswered (one in
flight, like kmm per market). The deltas of its own orders (at $0.01) are not answered: they arrive
while the client is awake for its create's answer, and answering them timed a warm client (38 us
from the exchange's write to the client's read, against ~200 us for the market's flow reaching an
idle loop on this machine); kmm answers the market's flow. It parses nothing but the frame's type,
ticker and (for its own level) price before the write. After the write it notes which frame the
request answered (``[client_order_id, sid, seq, receive stamp, write stamp]``, written to ``--answered PATH`` at the end), so the
exchange's stamps can be matched frame by frame. It prints a JSON line with its counts when done.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import orjson
from picows import WSListener, WSMsgType, ws_connect

from kmm import protocol
from kmm.kalshi.signing import Signer


OWN_PRICE = "0.0100"          # every create: a post-only bid for one contract here, far from the market
OWN_LEVEL = f'"price_dollars":"{OWN_PRICE}"'.encode()


class Http(asyncio.Protocol):
    """Counts answers on the keep-alive connection (status lines); one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.busy = False
        self.answers = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        n = data.count(b"HTTP/1.1 ")
        if n:
            self.answers += n
            self.busy = False


class Feed(WSListener):
    def __init__(self, http: Http, requests: dict[bytes, list[bytes]], coids: dict[bytes, list[str]]) -> None:
        super().__init__()
        self.http, self.requests, self.coids, self.frames, self.sent, self.own = http, requests, coids, 0, 0, 0
        self.next = dict.fromkeys(requests, 0)
        self.answered: list[tuple[str, bytes, int, int]] = []  # (client_order_id, the frame, its receive
                                                                 # stamp, the write stamp), after each write
        self._read_ns = 0       # the receive stamp of the socket read being handed over (as kmm stamps)
        self._read_open = False

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if not self._read_open:
            self._read_ns = time.monotonic_ns()
        self._read_open = not frame.last_in_buffer
        if frame.msg_type is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        data = frame.get_payload_as_bytes()
        if b'"orderbook_delta"' not in data:
            return
        if OWN_LEVEL in data:
            # the delta of one of our own creates (every create rests at OWN_PRICE): it comes while
            # the client is awake for the create's answer, so answering it would time a warm client
            # against kmm, whose frames are the market's flow, arriving at an idle loop
            self.own += 1
            return
        self.frames += 1
        http = self.http
        if http.busy:
            return
        i = data.find(b'"market_ticker":"')
        tk = data[i + 17:data.find(b'"', i + 17)]
        reqs = self.requests.get(tk)
        if reqs is None:
            return
        k = self.next[tk]
        self.next[tk] = k + 1
        http.busy = True
        http.transport.write(reqs[k % len(reqs)])
        written = time.monotonic_ns()
        self.sent += 1
        self.answered.append((self.coids[tk][k % len(reqs)], data[:96], self._read_ns, written))


def build_requests(signer: Signer, host: str, tickers: list[str], n: int
                   ) -> tuple[dict[bytes, list[bytes]], dict[bytes, list[str]]]:
    path = protocol.API_PREFIX + protocol.PATH_ORDERS_V2
    out: dict[bytes, list[bytes]] = {}
    coids: dict[bytes, list[str]] = {}
    for tk in tickers:
        reqs = []
        ids = coids.setdefault(tk.encode(), [])
        for _ in range(n):
            ids.append(str(uuid.uuid4()))
            body = orjson.dumps({"ticker": tk, "client_order_id": ids[-1], "side": "bid",
                                 "count": "1.00", "price": OWN_PRICE, "time_in_force": "good_till_canceled",
                                 "self_trade_prevention_type": "taker_at_cross", "post_only": True})
            h = signer.headers("POST", path)
            head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n")
            reqs.append(head.encode() + body)
        out[tk.encode()] = reqs
    return out, coids


async def run(ws_url: str, rest_url: str, key_id: str, pem: bytes, seconds: float, tickers: list[str],
              answered: str | None = None, spin: bool = False) -> dict[str, Any]:
    from urllib.parse import urlsplit
    signer = Signer.from_pem(key_id, pem)
    u = urlsplit(rest_url)
    requests, coids = build_requests(signer, u.netloc, tickers, 2000)
    loop = asyncio.get_running_loop()
    _, http = await loop.create_connection(Http, u.hostname, u.port)
    transport, feed = await ws_connect(lambda: Feed(http, requests, coids), ws_url,
                                       extra_headers=signer.ws_headers(urlsplit(ws_url).path),
                                       enable_auto_pong=False)
    transport.send(WSMsgType.TEXT, orjson.dumps({"id": 1, "cmd": "subscribe", "params": {
        "channels": ["orderbook_delta"], "market_tickers": tickers}}))
    spinning = [spin]

    def turn() -> None:        # --spin: the loop polls without sleeping, as kmm's run.busy_poll
        if spinning[0]:
            loop.call_soon(turn)
    if spin:
        loop.call_soon(turn)
    await asyncio.sleep(seconds)
    spinning[0] = False
    transport.disconnect()
    http.transport.close()
    if answered is not None:
        import re
        sid_seq = re.compile(rb'"sid":(\d+),"seq":(\d+)')
        rows = []
        for coid, head, recv, written in feed.answered:
            m = sid_seq.search(head)
            if m is not None:
                rows.append([coid, int(m.group(1)), int(m.group(2)), recv, written])
        with open(answered, "w") as f:
            json.dump(rows, f)
    return {"frames": feed.frames, "sent": feed.sent, "answers": http.answers, "own_deltas_skipped": feed.own}


def main() -> int:
    argv = sys.argv[1:]
    answered = None
    spin = False
    if argv and argv[0] == "--spin":
        spin, argv = True, argv[1:]
    if argv and argv[0] == "--answered":
        answered, argv = argv[1], argv[2:]
    ws_url, rest_url, key_id, key_path, seconds, *tickers = argv
    import uvloop
    with open(key_path, "rb") as f:
        pem = f.read()
    res = uvloop.run(run(ws_url, rest_url, key_id, pem, float(seconds), tickers, answered, spin))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    t0 = time.monotonic()
    sys.exit(main())
