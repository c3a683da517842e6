"""The connector over TLS: the embedded exchange serves https:// and wss:// with a certificate from a CA
made at test time; the connector trusts it only through ``ca_file`` and refuses it otherwise."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kmm.errors import ConfigError, ExchangeError, KmmError
from kmm.kalshi.config import ConnectorConfig
from kmm.kalshi.rest import KalshiRest
from kmm.kalshi.types import OrderRequest
from kmm.kalshi.ws import FeedHandler, KalshiWs
from kmm.sim import SimConfig, SimExchange
from tests.kalshi.routers import book_levels, make_router


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("kmm test CA")).issuer_name(_name("kmm test CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                     names: list[x509.GeneralName]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for a server known by ``names``, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("kmm sim")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


LOOPBACK = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost, and one for another host."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca()
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for label, names in (("loopback", LOOPBACK), ("elsewhere", [x509.DNSName("elsewhere.invalid")])):
        cert, key = make_server_cert(ca_key, ca_cert, names)
        out[f"{label}_cert"], out[f"{label}_key"] = d / f"{label}.pem", d / f"{label}.key"
        out[f"{label}_cert"].write_bytes(cert)
        out[f"{label}_key"].write_bytes(key)
        out[f"{label}_key"].chmod(0o600)
    return out


def tls_sim(pki: dict[str, Path], label: str = "loopback") -> SimExchange:
    return SimExchange(SimConfig(seed=1, flow="off", rate_tier="off", tls_cert=str(pki[f"{label}_cert"]),
                                 tls_key=str(pki[f"{label}_key"])))


def cfg_for(sim: SimExchange, key_id: str, pem: bytes, **kw) -> ConnectorConfig:
    base = ConnectorConfig(env="sim", retry_backoff_s=0.01, reconnect_min_s=0.05, reconnect_max_s=0.2,
                           request_timeout_s=3.0, **kw)
    return base.with_server(sim.rest_url, sim.ws_url, api_key_id=key_id, private_key_pem=pem)


class Events(FeedHandler):
    def __init__(self) -> None:
        self.ready: set[str] = set()
        self.errors: list[Exception] = []

    def on_book_ready(self, ticker: str) -> None:
        self.ready.add(ticker)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)


async def _until(pred, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not pred():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(wait(), timeout)


async def test_sim_with_tls_cert_serves_https_and_wss_urls(pki):
    async with tls_sim(pki) as sim:
        assert sim.rest_url.startswith("https://127.0.0.1:") and sim.ws_url.startswith("wss://127.0.0.1:")
    async with SimExchange(SimConfig(flow="off")) as plain:  # the default stays plain
        assert plain.rest_url.startswith("http://") and plain.ws_url.startswith("ws://")


def test_sim_config_with_cert_but_no_key_is_rejected(pki):
    with pytest.raises(ValueError, match="both tls_cert and tls_key"):
        SimConfig(tls_cert=str(pki["loopback_cert"]))
    with pytest.raises(ValueError, match="not a file"):
        SimConfig(tls_cert=str(pki["loopback_cert"]), tls_key=str(pki["loopback_cert"]) + ".missing")


async def test_rest_reads_and_fasthttp_order_writes_over_tls_with_ca_file(pki):
    async with tls_sim(pki) as sim:
        key_id, pem = sim.create_key()
        t = sim.tickers[0]
        cfg = cfg_for(sim, key_id, pem, ca_file=pki["ca"])
        async with KalshiRest(cfg) as rest:
            assert rest.fast is not None and rest.fast.secure
            assert (await rest.get_exchange_status()).trading_active
            assert (await rest.get_balance()).balance == sim.balance(key_id)
            assert [m.ticker for m in await rest.get_markets()] == sim.tickers
            ack = await rest.create_order(OrderRequest(t, "bid", 4000, 200, str(uuid.uuid4()), post_only=True))
            assert [o["order_id"] for o in sim.orders(key_id, status="resting")] == [ack.order_id]
            assert (await rest.cancel_order(ack.order_id)).reduced_by == 200
            assert not sim.orders(key_id, status="resting")
            assert rest.fast.requests == 2 and rest.fast.opened >= 1  # the writes went through fasthttp


async def test_ws_over_tls_with_ca_file_keeps_book_equal_to_sim(pki):
    async with tls_sim(pki) as sim:
        key_id, pem = sim.create_key()
        maker, _ = sim.create_key()
        t = sim.tickers[0]
        router, factory = make_router()
        ev = Events()
        ws = KalshiWs(cfg_for(sim, key_id, pem, ca_file=pki["ca"]), ev, router=router, book_factory=factory)
        ws.add_markets([t])
        async with ws:
            await _until(lambda: t in ev.ready)
            sim.place_direct(maker, t, "bid", 4100, 300)
            sim.place_direct(maker, t, "ask", 5900, 500)
            await _until(lambda: book_levels(ws.book(t)) == sim.book(t) and sim.book(t)["yes"])
            assert sim.book(t)["yes"] == [(4100, 300)] and sim.book(t)["no"] == [(4100, 500)]
            assert ws.stats.connects == 1 and not ev.errors


async def test_without_ca_file_rest_reads_are_refused_with_certificate_verify_failed(pki):
    async with tls_sim(pki) as sim:
        key_id, pem = sim.create_key()
        rest = KalshiRest(cfg_for(sim, key_id, pem, fast_writes=False))
        async with rest:
            with pytest.raises(ExchangeError, match="certificate verify failed") as info:
                await rest.get_balance()
            assert info.value.code == "tls_verify_failed" and "ca_file" in str(info.value)
            assert rest.retries == 0  # an untrusted certificate is not retried


async def test_without_ca_file_fasthttp_order_write_is_refused_and_nothing_is_placed(pki):
    async with tls_sim(pki) as sim:
        key_id, pem = sim.create_key()
        async with KalshiRest(cfg_for(sim, key_id, pem)) as rest:
            with pytest.raises(ExchangeError, match="certificate verify failed") as info:
                await rest.create_order(OrderRequest(sim.tickers[0], "bid", 4000, 100, str(uuid.uuid4()),
                                                     post_only=True))
            assert info.value.code == "tls_verify_failed"
        assert sim.orders(key_id) == []


async def test_without_ca_file_ws_never_connects_and_reports_certificate_verify_failed(pki):
    async with tls_sim(pki) as sim:
        key_id, pem = sim.create_key()
        ev = Events()
        router, factory = make_router()
        ws = KalshiWs(cfg_for(sim, key_id, pem), ev, router=router, book_factory=factory)
        with pytest.raises(KmmError, match="certificate verify failed"):
            await ws.start(timeout_s=1.0)
        try:
            assert not ws.connected and ws.stats.connects == 0
            assert ev.errors and "ca_file" in str(ev.errors[0])
            assert sim.stats["ws_connections"] == 0
        finally:
            await ws.close()


async def test_certificate_for_another_host_is_refused_even_with_ca_file(pki):
    async with tls_sim(pki, "elsewhere") as sim:
        key_id, pem = sim.create_key()
        cfg = cfg_for(sim, key_id, pem, ca_file=pki["ca"])
        async with KalshiRest(cfg) as rest:
            with pytest.raises(ExchangeError, match="certificate verify failed"):
                await rest.get_balance()
            with pytest.raises(ExchangeError, match="certificate verify failed"):
                await rest.create_order(OrderRequest(sim.tickers[0], "bid", 4000, 100, str(uuid.uuid4())))
        ws = KalshiWs(cfg, Events(), router=make_router()[0], book_factory=make_router()[1])
        with pytest.raises(KmmError, match="certificate verify failed"):
            await ws.start(timeout_s=1.0)
        await ws.close()
        assert sim.orders(key_id) == []


def test_resolve_ca_file_must_exist_and_hold_a_certificate(tmp_path, pki):
    cfg = ConnectorConfig.resolve({"env": "sim", "ca_file": str(pki["ca"])}, environ={})
    assert cfg.ca_file == pki["ca"] and cfg.ssl_context().check_hostname
    with pytest.raises(ConfigError, match="ca_file .* does not exist"):
        ConnectorConfig.resolve({"env": "sim", "ca_file": str(tmp_path / "missing.pem")}, environ={})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no usable CA certificate"):
        ConnectorConfig.resolve({"env": "sim"}, cli={"ca_file": str(junk)}, environ={})


def test_kmm_sim_cli_with_tls_flags_serves_https_trusted_through_the_ca(tmp_path, pki):
    import json
    import signal
    import ssl
    import subprocess
    import sys
    import time

    import aiohttp

    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "kmm", "sim", "--ready-file", str(ready), "--flow", "off",
                             "--state-dir", str(tmp_path / "st"), "--tls-cert", str(pki["loopback_cert"]),
                             "--tls-key", str(pki["loopback_key"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(150):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no ready file"
        urls = json.loads(ready.read_text())
        assert urls["rest_url"].startswith("https://127.0.0.1:") and urls["ws_url"].startswith("wss://127.0.0.1:")

        async def status() -> dict:
            ctx = ssl.create_default_context(cafile=str(pki["ca"]))
            async with aiohttp.ClientSession() as s, s.get(urls["rest_url"] + "/exchange/status", ssl=ctx) as r:
                assert r.status == 200
                return await r.json()
        assert asyncio.run(status())["trading_active"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run([sys.executable, "-m", "kmm", "sim", "--tls-cert", str(pki["loopback_cert"])],
                         capture_output=True, timeout=30)
    assert bad.returncode == 2 and b"both tls_cert and tls_key" in bad.stderr


async def test_ws_tls_handshake_to_a_silent_server_times_out_within_connect_timeout(pki):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never answers the TLS ClientHello
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = ConnectorConfig(env="sim", ca_file=pki["ca"], connect_timeout_s=0.3, reconnect_min_s=0.05,
                          reconnect_max_s=0.1).with_server(f"https://127.0.0.1:{port}/trade-api/v2",
                                                          f"wss://127.0.0.1:{port}/trade-api/ws/v2")
    router, factory = make_router()
    ws = KalshiWs(cfg, Events(), router=router, book_factory=factory)
    try:
        with pytest.raises(KmmError, match="within 1.5 s") as info:
            await ws.start(timeout_s=1.5)
        assert "last error: none" not in str(info.value) and ws.last_disconnect_reason.startswith("connect failed")
    finally:
        await ws.close()
        server.close()
        await server.wait_closed()
