"""A webhook receiver for tests: every delivery is verified with the `standardwebhooks`
package (not the dialer's own code), and what arrived is kept in order. It can be taken down
(its port closed: connection refused) and brought back on the same port."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.processes import free_port


@dataclass
class Delivery:
    msg_id: str
    type: str
    data: dict


@dataclass
class Receiver:
    secret: str
    delay_s: float = 0.0  # how long each answer takes (at most, when `jitter`)
    jitter: bool = False  # each answer takes a random part of delay_s: arrivals interleave
    status: int = 204
    port: int = field(default_factory=free_port)
    received: list[Delivery] = field(default_factory=list)
    forged: int = 0  # deliveries whose signature did not verify
    holding: bool = False  # verified requests wait unanswered (and unrecorded) meanwhile
    held: int = 0  # requests waiting so

    def __post_init__(self) -> None:
        self.verifier = Webhook(self.secret)
        self.runner: web.AppRunner | None = None
        self._waiting: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/dialer"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.forged += 1
            return web.Response(status=400)
        envelope = json.loads(body)
        delivery = Delivery(request.headers["webhook-id"], envelope["type"], envelope["data"])
        if self.delay_s:
            await asyncio.sleep(self.delay_s * (random.random() if self.jitter else 1))
        if self.holding:
            self.held += 1
            self._waiting.add(asyncio.current_task())  # type: ignore[arg-type]
            await asyncio.Event().wait()  # until the server stops
        self.received.append(delivery)  # in the order answered: what the receiver has seen
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/dialer", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        for task in self._waiting:  # held requests end unanswered
            task.cancel()
        self._waiting.clear()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def ids(self) -> set[str]:
        return {d.msg_id for d in self.received}
