"""A create-call request past its send window is never written, even when the window passes
while its connection is being made or reused; and sockets abort rather than close."""

from __future__ import annotations

import socket
import struct

from aiohttp import web

from dialer.providers.http import HttpRequest, send
from dialer.providers.send_deadline import SendDeadline, TooLate, abortive_socket
from dialer.runtime import http_session
from tests.processes import free_port


class Counting:
    def __init__(self) -> None:
        self.received = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received += 1
        return web.json_response({"ok": True})

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/calls", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}/calls"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


class ExpiresOnSecondLook(SendDeadline):
    """In time when the sender checks, past the window once the connection is ready: what a
    pause during connect looks like."""

    looks = 0

    def elapsed_s(self) -> float:
        self.looks += 1
        return 0.0 if self.looks == 1 else self.window_s + 1


async def test_a_request_past_its_window_is_not_written_on_a_new_or_reused_connection() -> None:
    server = Counting()
    async with server as url:
        request = HttpRequest("POST", url, json={"to": "+919845000001"})
        async with http_session() as session:
            assert (await send(session, request, SendDeadline())).status == 200
            await refused_late(session, request)  # on the kept-alive connection
        async with http_session() as session:
            await refused_late(session, request)  # on a connection made for it
    assert server.received == 1


async def refused_late(session, request: HttpRequest) -> None:
    late = ExpiresOnSecondLook()
    late.check()  # the sender's own look: still in time
    try:
        await send(session, request, late)
    except TooLate as exc:
        assert "send window" in exc.detail
    else:
        raise AssertionError("a late request was sent")


def test_provider_sockets_drop_unsent_data_on_close() -> None:
    sock = abortive_socket((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", 1)))
    with sock:
        linger = sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
    assert struct.unpack("ii", linger) == (1, 0)
