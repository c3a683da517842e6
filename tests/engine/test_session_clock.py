"""The session's rate limiter runs on the session's injected clock (one owner of time), so its token
buckets and 429 back-off are as deterministic as the rest of the engine."""

from __future__ import annotations

from kmm.config import RiskLimits
from kmm.engine.clock import ManualClock
from kmm.engine.session import Session
from kmm.kalshi import ConnectorConfig
from kmm.kalshi.limiter import PLACE


def test_the_session_limiter_refills_only_when_the_injected_clock_moves():
    clock = ManualClock()
    conn = ConnectorConfig(env="sim").with_server("http://127.0.0.1:9/trade-api/v2", "ws://127.0.0.1:9/trade-api/ws/v2")
    session = Session(conn, clock, RiskLimits())
    limiter = session.rest_factory(conn).limiter
    grants = 0
    while limiter.try_acquire(PLACE, 10.0) and grants < 10_000:
        grants += 1
    assert 0 < grants < 10_000                       # the write bucket ran dry
    assert not limiter.try_acquire(PLACE, 10.0)      # and stays dry while the injected clock stands still
    clock.advance(1.0)                               # one second of the session's time
    assert limiter.try_acquire(PLACE, 10.0)
