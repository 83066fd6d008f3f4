"""A relay between a provider and `dialer serve` that loses, delays and repeats callbacks.

It stands where the internet stands: the provider posts each callback to the relay (the
dialer's `public_url` points at it), and the relay hands it on to `dialer serve`, except that
it drops a share of the final ones outright (the provider's retries included: a lost final is
lost), delivers a share of the others late, and a share twice. Decisions are seeded, and kept
per call, so the test can tell which calls could only have been settled by the dialer asking.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.processes import free_port

FINALS = {"completed", "busy", "no-answer", "failed", "canceled"}


@dataclass
class CallbackRelay:
    target: str  # dialer serve's base URL
    lose_final: float
    late: float = 0.0  # share of the other callbacks delivered 2-5 s late
    twice: float = 0.0
    seed: int = 19
    rng: random.Random = field(init=False)
    lost_calls: set[str] = field(default_factory=set)
    forwarded: int = 0
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def relay(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        call = str(event.get("call_id", ""))
        if event.get("status") in FINALS and (
            call in self.lost_calls or self.rng.random() < self.lose_final
        ):
            self.lost_calls.add(call)  # and every retry of it
            return web.json_response({"relayed": False}, status=200)
        delay = self.rng.uniform(2, 5) if self.rng.random() < self.late else 0.0
        copies = 2 if self.rng.random() < self.twice else 1
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "x-sim-signature")
        }
        if delay:
            task = asyncio.create_task(self._later(delay, request.path_qs, body, headers, copies))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return web.json_response({"relayed": "later"}, status=200)
        status = 502
        for _ in range(copies):
            status = await self._forward(request.path_qs, body, headers)
        return web.json_response({"relayed": True}, status=status)

    async def _later(
        self, delay: float, path: str, body: bytes, headers: dict[str, str], copies: int
    ) -> None:
        await asyncio.sleep(delay)
        for _ in range(copies):
            await self._forward(path, body, headers)

    async def _forward(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(self.target + path, data=body, headers=headers) as answer,
            ):
                self.forwarded += 1
                return answer.status
        except aiohttp.ClientError:
            return 502


@asynccontextmanager
async def callback_relay(
    target: str, *, lose_final: float, late: float = 0.0, twice: float = 0.0
) -> AsyncIterator[tuple[str, CallbackRelay]]:
    """The relay on a free local port, in this event loop; yields (its URL, the relay)."""
    relay = CallbackRelay(target, lose_final, late, twice)
    app = web.Application()
    app.router.add_post("/{tail:.*}", relay.relay)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", relay
    finally:
        for task in list(relay._tasks):
            task.cancel()
        await runner.cleanup()
