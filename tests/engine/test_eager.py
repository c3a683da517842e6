import asyncio

import pytest

from kmm.engine.eager import start_eager


async def test_start_eager_runs_the_coroutine_up_to_its_first_suspension_before_returning():
    trace = []

    async def work():
        trace.append("before")
        await asyncio.sleep(0)
        trace.append("after")
        return 42

    fut = start_eager(asyncio.get_running_loop(), work())
    assert trace == ["before"]
    assert await fut == 42 and trace == ["before", "after"]


async def test_start_eager_completes_immediately_when_nothing_suspends():
    async def quick():
        return "done"

    fut = start_eager(asyncio.get_running_loop(), quick())
    assert fut.done() and fut.result() == "done"


async def test_start_eager_resumes_on_a_future_result_and_keeps_its_value():
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[int] = loop.create_future()

    async def waits():
        value = await gate
        await asyncio.sleep(0)
        return value * 2

    fut = start_eager(loop, waits())
    loop.call_soon(gate.set_result, 21)
    assert await fut == 42


async def test_start_eager_puts_early_and_late_exceptions_in_the_future():
    async def early():
        raise ValueError("early")

    async def late():
        await asyncio.sleep(0)
        raise KeyError("late")

    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError, match="early"):
        await start_eager(loop, early())
    with pytest.raises(KeyError, match="late"):
        await start_eager(loop, late())


async def test_start_eager_task_cancellation_reaches_the_coroutine():
    seen = []

    async def sleeper():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    fut = start_eager(asyncio.get_running_loop(), sleeper())
    await asyncio.sleep(0)
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert seen == ["cancelled"]
