from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kmm.record import redact, setup_logging
from kmm.record.oplog import REDACTED

log = logging.getLogger("kmm.test.oplog")


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def kmm_logger_restored() -> Iterator[None]:
    kmm = logging.getLogger("kmm")
    handlers, level = list(kmm.handlers), kmm.level
    yield
    for h in list(kmm.handlers):
        if h not in handlers:
            kmm.removeHandler(h)
    kmm.setLevel(level)


def _key_body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_redact_masks_a_pem_private_key_block(pem: str) -> None:
    out = redact(f"loaded key {pem} from file")
    assert REDACTED in out and out.startswith("loaded key ") and out.endswith(" from file")
    assert not any(line in out for line in _key_body_lines(pem))


def test_redact_masks_a_pem_block_cut_short(pem: str) -> None:
    out = redact("partial: " + pem[:200])
    assert not any(line in out for line in _key_body_lines(pem)[:2])
    assert REDACTED in out


@pytest.mark.parametrize("text", [
    "KALSHI-ACCESS-SIGNATURE: c2lnbmF0dXJlK3Zh/bHVl==",
    "headers={'KALSHI-ACCESS-KEY': 'k', 'KALSHI-ACCESS-SIGNATURE': 'c2lnbmF0dXJlK3Zh/bHVl=='}",
    '{"kalshi-access-signature":"c2lnbmF0dXJlK3Zh/bHVl=="}',
    "KALSHI-ACCESS-SIGNATURE=c2lnbmF0dXJlK3Zh/bHVl==",
])
def test_redact_masks_the_signature_header_value_in_common_shapes(text: str) -> None:
    out = redact(text)
    assert "c2lnbmF0dXJlK3Zh" not in out and REDACTED in out


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "placed order c1 at 0.4275 x 10.00 (KALSHI-ACCESS-KEY k-123)"
    assert redact(text) == text


def test_ops_log_has_timestamp_level_logger_and_message(tmp_path: Path, kmm_logger_restored: None) -> None:
    h = setup_logging(tmp_path, "DEBUG", console=False)
    log.debug("debug %d", 1)
    log.warning("seq gap on %s: %d -> %d", "MKT", 5, 7)
    h.stop()
    lines = (tmp_path / "ops.log").read_text().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("WARNING kmm.test.oplog: seq gap on MKT: 5 -> 7")
    ts = lines[1].split(" ")[0]
    assert len(ts) == len("2026-01-01T00:00:00.000Z") and ts.endswith("Z") and ts[10] == "T"


def test_secrets_in_messages_args_and_tracebacks_never_reach_the_file_or_console(
        tmp_path: Path, pem: str, kmm_logger_restored: None) -> None:
    console = io.StringIO()
    h = setup_logging(tmp_path, "INFO", console=True, stream=console)
    log.info("config: %s", {"private_key": pem})
    try:
        raise RuntimeError(f"bad header KALSHI-ACCESS-SIGNATURE: AAAAsecretBBBB while signing with {pem}")
    except RuntimeError:
        log.exception("request failed")
    h.stop()
    for text in ((tmp_path / "ops.log").read_text(), console.getvalue()):
        assert "request failed" in text and "Traceback" in text
        assert "AAAAsecretBBBB" not in text
        assert not any(line in text for line in _key_body_lines(pem))
        assert text.count(REDACTED) >= 3


def test_stop_drains_every_queued_line(tmp_path: Path, kmm_logger_restored: None) -> None:
    h = setup_logging(tmp_path, console=False)
    for i in range(5_000):
        log.info("line %d", i)
    h.stop()
    h.stop()                                  # idempotent
    lines = (tmp_path / "ops.log").read_text().splitlines()
    assert len(lines) == 5_000 and lines[-1].endswith("line 4999")
    log.info("after stop")                    # no handler left: nothing more is written
    assert len((tmp_path / "ops.log").read_text().splitlines()) == 5_000


def test_calling_setup_twice_does_not_duplicate_lines(tmp_path: Path, kmm_logger_restored: None) -> None:
    first = setup_logging(tmp_path, console=False)
    second = setup_logging(tmp_path, console=False)
    log.info("once")
    second.stop()
    assert first.stopped
    assert (tmp_path / "ops.log").read_text().count("once") == 1


def test_plain_console_shows_the_message_and_level_only_for_warnings(kmm_logger_restored: None) -> None:
    out = io.StringIO()
    h = setup_logging(None, console="plain", stream=out)
    log.info("quoting MKT")
    log.error("kill switch")
    h.stop()
    assert out.getvalue().splitlines() == ["quoting MKT", "ERROR: kill switch"]
    assert h.path is None


def test_logging_call_returns_while_the_file_write_is_blocked(tmp_path: Path, kmm_logger_restored: None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    h = setup_logging(tmp_path, console=False)
    (fh,) = h._outputs
    entered, release = threading.Event(), threading.Event()
    real_emit = fh.emit

    def blocked_emit(record: logging.LogRecord) -> None:
        entered.set()
        release.wait(30)
        real_emit(record)

    monkeypatch.setattr(fh, "emit", blocked_emit)
    log.info("first")
    assert entered.wait(10)
    for i in range(200):
        log.info("queued %d", i)
    assert h._listener.queue.qsize() == 200          # the listener holds "first"; the rest wait
    release.set()
    h.stop()
    assert len((tmp_path / "ops.log").read_text().splitlines()) == 201


def test_bad_level_and_console_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging(None, "LOUD")
    with pytest.raises(ValueError, match="console must be"):
        setup_logging(None, console="fancy")  # type: ignore[arg-type]
