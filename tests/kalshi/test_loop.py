from __future__ import annotations

import asyncio

from kmm.kalshi import loop


async def _which() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_when_available_and_wanted():
    assert loop.uvloop_available()
    assert loop.run(_which()).startswith("uvloop")


def test_run_without_uvloop_uses_the_default_loop():
    assert loop.run(_which(), use_uvloop=False).startswith("asyncio")


def test_install_sets_the_uvloop_policy_for_entry_points():
    old = asyncio.get_event_loop_policy()
    try:
        assert loop.install() is True
        assert type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
    finally:
        asyncio.set_event_loop_policy(old)
