"""A background task that dies is never quiet: it is reported, /healthz turns 503, and the
process is asked to stop (to exit non-zero)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer

from dialer.callbacks.app import Receiver
from dialer.db.connect import open_pool
from dialer.supervise import watch
from dialer.web import create_app


async def _run(coroutine, *, ends: bool) -> list[BaseException]:
    """The deaths `watch` reports of a task that ends by itself (`ends`) or is cancelled at
    shutdown once it runs."""
    deaths: list[BaseException] = []
    started = asyncio.Event()

    async def running():
        started.set()
        return await coroutine

    task = asyncio.create_task(running(), name="loop")
    watch(task, deaths.append)
    if ends:
        await asyncio.wait({task})
    else:
        await started.wait()
        task.cancel()
        await asyncio.wait({task})
    await asyncio.sleep(0)  # the done-callbacks run
    return deaths


async def test_a_raising_or_returning_loop_is_a_death_and_a_cancelled_one_is_not() -> None:
    async def raises() -> None:
        raise ValueError("a retry delay that overflows")

    async def returns() -> None:
        return None

    async def forever() -> None:
        await asyncio.sleep(3600)

    (error,) = await _run(raises(), ends=True)
    assert isinstance(error, ValueError)
    (error,) = await _run(returns(), ends=True)
    assert "loop returned" in str(error)
    assert await _run(forever(), ends=False) == []  # cancelled at shutdown: not a death


async def test_a_dead_reconciler_makes_healthz_503_and_stops_the_process(
    database_url: str,
) -> None:
    stopped = asyncio.Event()
    async with open_pool(database_url, size=2) as pool:
        receiver = Receiver(pool, {}, public_url="", on_failure=stopped.set)
        server = TestServer(create_app(receiver))
        await server.start_server()
        try:
            url = f"http://127.0.0.1:{server.port}/healthz"
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as response:
                    assert response.status == 200
                receiver.fail(RuntimeError("reconciler crashed"))
                async with session.get(url) as response:
                    assert response.status == 503
                    assert "reconciler crashed" in (await response.json())["reconciler"]
        finally:
            await server.close()
    assert stopped.is_set()
