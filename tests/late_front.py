"""A provider front that takes a create-call request and places it late.

It stands where a proxy, a load balancer or a provider's own queue stands: the dialer's request
reaches it, it answers nothing (the dialer's client times out and aborts its connection), and a
while later it hands the request on to the provider (the sim), which places the call then. Every
other request (the call list, a call's status, requests it is not told to hold) passes straight
through. A held request may be deaf: its status callbacks go nowhere (a callback URL that refuses
connections): only the provider's list can tell the dialer the call was placed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.processes import free_port

# A create request's JSON body -> (seconds it is held, whether its callbacks go nowhere), or
# None: passed on at once. Only a number's first request is ever held.
HeldFor = Callable[[dict], tuple[float, bool] | None]


@dataclass
class LateFront:
    upstream: str
    held_for: HeldFor
    creates: int = 0
    held_numbers: set[str] = field(default_factory=set)
    placed_late: list[dict] = field(default_factory=list)  # what the provider answered each
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.creates += 1
        body = await request.read()
        document = json.loads(body)
        hold = None if document.get("to") in self.held_numbers else self.held_for(document)
        if hold is None:
            return await self.forward(request, body)
        self.held_numbers.add(document.get("to"))
        task = asyncio.create_task(self._place_later(request, body, *hold))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.sleep(3600)  # never answers: the dialer gives up and aborts
        raise web.HTTPGatewayTimeout()

    async def _place_later(
        self, request: web.Request, body: bytes, hold: float, deaf: bool
    ) -> None:
        await asyncio.sleep(hold)
        if deaf:
            document = json.loads(body)
            document["status_callback"] = f"http://127.0.0.1:{free_port()}/gone"
            body = json.dumps(document).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() in _KEPT}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream + request.path_qs, data=body, headers=headers) as answer,
        ):
            self.placed_late.append({**(await answer.json()), "http": answer.status})

    async def forward(self, request: web.Request, body: bytes | None = None) -> web.Response:
        body = await request.read() if body is None else body
        headers = {k: v for k, v in request.headers.items() if k.lower() in _KEPT}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
                headers={k: v for k, v in answer.headers.items() if k == "Retry-After"},
            )

    async def passthrough(self, request: web.Request) -> web.Response:
        return await self.forward(request)


_KEPT = {"authorization", "content-type"}


@asynccontextmanager
async def late_front(upstream: str, held_for: HeldFor) -> AsyncIterator[tuple[str, LateFront]]:
    """The front on a free local port, in this event loop; yields (its URL, the front)."""
    front = LateFront(upstream, held_for)
    app = web.Application()
    app.router.add_post("/v1/calls", front.create)
    app.router.add_route("*", "/{tail:.*}", front.passthrough)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", front
    finally:
        for task in list(front._tasks):
            task.cancel()
        await runner.cleanup()
