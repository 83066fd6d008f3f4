"""A background task that dies is never quiet: the Supervisor keeps the first death with the
task's name, /healthz turns 503 naming it, and whoever stops the process is told (exit 1)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer

from dialer.callbacks.app import Receiver
from dialer.db.connect import open_pool
from dialer.supervise import Death, Supervisor
from dialer.web import create_app


async def _run(coroutine, *, ends: bool) -> list[Death]:
    """The deaths a Supervisor reports of a task that ends by itself (`ends`) or is cancelled
    at shutdown once it runs."""
    supervisor = Supervisor()
    deaths: list[Death] = []
    supervisor.on_death(deaths.append)
    started = asyncio.Event()

    async def running():
        started.set()
        return await coroutine

    task = asyncio.create_task(running(), name="reconciler")
    supervisor.watch(task)
    if ends:
        await asyncio.wait({task})
    else:
        await started.wait()
        task.cancel()
        await asyncio.wait({task})
    await asyncio.sleep(0)  # the done-callbacks run
    assert supervisor.healthy == (not deaths)
    return deaths


async def test_a_raising_or_returning_loop_is_a_death_and_a_cancelled_one_is_not() -> None:
    async def raises() -> None:
        raise ValueError("a retry delay that overflows")

    async def returns() -> None:
        return None

    async def forever() -> None:
        await asyncio.sleep(3600)

    (death,) = await _run(raises(), ends=True)
    assert death.task == "reconciler" and isinstance(death.error, ValueError)
    assert death.said() == "reconciler died: ValueError('a retry delay that overflows')"
    (death,) = await _run(returns(), ends=True)
    assert "reconciler returned" in str(death.error)
    assert await _run(forever(), ends=False) == []  # cancelled at shutdown: not a death


async def test_the_first_death_is_kept_and_told_once() -> None:
    supervisor = Supervisor()
    told: list[Death] = []
    supervisor.on_death(told.append)
    supervisor.died("webhooks crm", RuntimeError("first"))
    supervisor.died("reconciler", RuntimeError("second"))
    assert supervisor.death is not None and supervisor.death.task == "webhooks crm"
    assert [d.task for d in told] == ["webhooks crm"]


async def test_a_dead_task_makes_healthz_503_naming_it(database_url: str) -> None:
    supervisor = Supervisor()
    stopped = asyncio.Event()
    supervisor.on_death(lambda death: stopped.set())
    async with open_pool(database_url, size=2) as pool:
        receiver = Receiver(pool, {}, public_url="")
        server = TestServer(create_app(receiver, supervisor=supervisor))
        await server.start_server()
        try:
            url = f"http://127.0.0.1:{server.port}/healthz"
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as response:
                    assert response.status == 200
                supervisor.died("webhooks crm", RuntimeError("deliverer crashed"))
                async with session.get(url) as response:
                    assert response.status == 503
                    died = (await response.json())["died"]
                    assert died["task"] == "webhooks crm" and "deliverer crashed" in died["error"]
        finally:
            await server.close()
    assert stopped.is_set()
