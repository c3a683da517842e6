"""Fault injection, synthetic flow, and `kmm sim` as a subprocess."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp

from kmm.sim import MarketSpec, SimConfig, SimExchange
from kmm.sim.engine import Engine
from kmm.sim.flow import PROFILES, MarketFlow
from tests.sim.client import SimClient, WsBook
from tests.sim.conftest import LIN


async def test_http_error_burst_answers_the_next_n_requests_then_recovers(sim: SimExchange, alice: SimClient):
    sim.faults.http_error_burst(status=429, count=2)
    assert [(await alice.get("/exchange/status"))[0] for _ in range(3)] == [429, 429, 200]
    sim.faults.http_error_burst(status=500, count=1)
    st, body = await alice.place(LIN, "bid", "0.4000", "1.00")
    assert st == 500 and body["error"]["code"] == "internal_error"
    assert sim.orders(alice.key_id) == []  # the failed request did nothing


async def test_delay_rest_slows_the_next_replies_only(sim: SimExchange, alice: SimClient):
    sim.faults.delay_rest(0.3, count=1)
    t0 = time.monotonic()
    await alice.get("/exchange/status")
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    await alice.get("/exchange/status")
    fast = time.monotonic() - t0
    assert slow >= 0.3 and fast < 0.3


async def test_drop_ws_connections_cuts_every_socket(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["fill"]})
    await ws.recv()
    assert sim.faults.drop_ws_connections() == 1
    msg = await ws.ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert sim.stats["ws_connections"] == 0


async def test_skip_seq_makes_the_next_delta_jump(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": LIN})
    await ws.recv()
    snap = await ws.recv()
    sim.faults.skip_seq(n=3)
    await alice.place(LIN, "bid", "0.4000", "1.00")
    d = await ws.recv()
    assert d["seq"] == snap["seq"] + 1 + 3
    book = WsBook()
    book.apply(snap)
    try:
        book.apply(d)
        raise AssertionError("the gap went unnoticed")
    except AssertionError as e:
        assert "seq gap" in str(e)


async def test_stall_feed_holds_frames_then_delivers_them(sim: SimExchange, alice: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": LIN})
    await ws.drain(0.1)
    sim.faults.stall_feed(0.4)
    t0 = time.monotonic()
    await alice.place(LIN, "bid", "0.4000", "1.00")
    d = await ws.recv(timeout=2)
    assert time.monotonic() - t0 >= 0.3 and d["type"] == "orderbook_delta"


async def test_duplicate_next_fill_sends_the_same_trade_id_twice(sim: SimExchange, alice: SimClient,
                                                                bob: SimClient):
    ws = await alice.ws()
    await ws.send("subscribe", {"channels": ["fill"]})
    await ws.recv()
    await bob.place(LIN, "ask", "0.4000", "2.00")
    sim.faults.duplicate_next_fill()
    await alice.place(LIN, "bid", "0.4000", "1.00")
    await alice.place(LIN, "bid", "0.4000", "1.00")
    fills = [f for f in await ws.drain(0.2) if f["type"] == "fill"]
    ids = [f["msg"]["trade_id"] for f in fills]
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2]
    assert len(sim.fills(alice.key_id)) == 2  # the ledger holds it once


def test_flow_is_deterministic_by_seed():
    def run(seed: int) -> list:
        eng = Engine([MarketSpec("KXD-1", fair_value=0.4)], wall_ms=lambda: 1_700_000_000_000)
        lp = eng.add_account("lp", 10**15, True)
        nz = eng.add_account("nz", 10**15, True)
        inf = eng.add_account("inf", 10**15, True)
        f = MarketFlow(eng, eng.markets["KXD-1"], seed, PROFILES["busy"], lp, nz, inf)
        for _ in range(300):
            f.step(0.05)
        return [(x["price"], x["count"], x["side"]) for a in (nz, inf) for x in a.fills]
    a, b, c = run(5), run(5), run(6)
    assert a == b and len(a) > 10 and a != c


async def test_a_maker_quoting_around_the_mid_gets_fills_on_both_sides():
    # cancel-all is the re-quote tool here, so its "may cancel orders placed in the next minute" tail is off
    async with SimExchange(SimConfig(seed=2, flow="busy", speed=3.0, markets=1, cancel_all_tail_s=0)) as sim:
        key, pem = sim.create_key(balance="10000.00")
        t = sim.tickers[0]
        async with SimClient(sim.rest_url, sim.ws_url, key, pem) as c:
            sides = set()
            for _ in range(40):
                _, ob = await c.get(f"/markets/{t}/orderbook")
                yes, no = ob["orderbook_fp"]["yes_dollars"], ob["orderbook_fp"]["no_dollars"]
                if yes and no:
                    bb = int(yes[-1][0].replace(".", ""))
                    ba = 10000 - int(no[-1][0].replace(".", ""))
                    if ba - bb >= 200:  # quote one tick inside each side
                        await c.req("DELETE", "/portfolio/events/orders")
                        await c.place(t, "bid", f"0.{bb + 100:04d}", "5.00", post_only=True)
                        await c.place(t, "ask", f"0.{ba - 100:04d}", "5.00", post_only=True)
                await asyncio.sleep(0.1)
                sides = {f["side"] for f in sim.fills(key)}
                if sides == {"bid", "ask"}:
                    break
            assert sides == {"bid", "ask"}


def test_kmm_sim_subprocess_writes_ready_file_serves_and_exits_zero_on_sigint(tmp_path):
    ready = tmp_path / "ready.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "kmm", "sim", "--port", "0", "--ready-file", str(ready),
                             "--flow", "off", "--state-dir", str(tmp_path / "state"), "--markets", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        for _ in range(150):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no ready file"
        urls = json.loads(ready.read_text())
        assert urls["ws_url"].startswith("ws://127.0.0.1:") and urls["ws_url"].endswith("/trade-api/ws/v2")

        async def probe() -> dict:
            async with aiohttp.ClientSession() as s, s.get(urls["rest_url"] + "/exchange/status") as r:
                assert r.status == 200
                return await r.json()
        assert asyncio.run(probe())["trading_active"] is True
        key_file = tmp_path / "state" / "private_key.pem"
        assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
        assert (tmp_path / "state" / "api_key_id").read_text().strip()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert b"private key" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kmm_sim_subprocess_registers_a_callers_public_key(tmp_path):
    from kmm.sim.auth import new_key_pair
    priv, pub = new_key_pair()
    (tmp_path / "pub.pem").write_bytes(pub)
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "kmm", "sim", "--ready-file", str(ready), "--flow", "off",
                             "--api-key-id", "caller-key", "--public-key", str(tmp_path / "pub.pem"),
                             "--balance", "250.00", "--rate-tier", "off", "--state-dir", str(tmp_path / "st")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(150):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        urls = json.loads(ready.read_text())

        async def balance() -> tuple[int, dict]:
            async with SimClient(urls["rest_url"], urls["ws_url"], "caller-key", priv) as c:
                return await c.get("/portfolio/balance")
        st, body = asyncio.run(balance())
        assert st == 200 and body["balance_dollars"] == "250.0000"
        assert not (tmp_path / "st").exists()  # no generated key when the caller brings one
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
