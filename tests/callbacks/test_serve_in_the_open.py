"""`dialer serve` reachable by anyone: one server per port, hardened headers, logs that a
request cannot forge, and connections that cannot be held open for free."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dialer.errors import InputError
from dialer.runtime import hosted
from tests.processes import free_port, until
from tests.providers.harness import Workspace

pytestmark = pytest.mark.timeout(120)

SIM_ACCOUNT = (
    'kind = "sim"\nbase_url = "http://127.0.0.1:1"\nsecret = "open-secret"\nrate = "1/s"\n'
    "channels = 1"
)


async def test_a_port_in_use_is_refused_unless_workers_share_it(
    own_database_url: str, tmp_path: Path
) -> None:
    work = Workspace(tmp_path, own_database_url, free_port())
    work.configure("sim-main", SIM_ACCOUNT)
    async with work.serve():
        code, output = await work.dialer("serve", limit_s=30)
        assert code == 2, output
        assert f"127.0.0.1:{work.serve_port} is already in use" in output
    with socket.socket() as other:  # an unrelated program holding the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code, output = await work.dialer("serve", "--port", str(port), limit_s=30)
    assert code == 2 and "already in use" in output


async def test_responses_forbid_sniffing_framing_and_foreign_content(
    own_database_url: str, tmp_path: Path
) -> None:
    work = Workspace(tmp_path, own_database_url, free_port())
    work.configure("sim-main", SIM_ACCOUNT)
    async with work.serve(), aiohttp.ClientSession() as session:
        for path, method in [("/", "GET"), ("/api/campaigns", "GET"), ("/nope", "GET")]:
            async with session.request(method, work.callback_base + path) as response:
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                policy = response.headers["Content-Security-Policy"]
                assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
                assert "unsafe-eval" not in policy
                if path == "/":
                    assert "script-src 'sha256-" in policy
                    assert "connect-src 'self'" in policy


async def test_a_request_cannot_forge_a_log_line(own_database_url: str, tmp_path: Path) -> None:
    work = Workspace(tmp_path, own_database_url, free_port())
    work.configure("sim-main", SIM_ACCOUNT)
    forged = "x\n2026-12-01T00:00:00.000+00:00 info dialer.settle: attempt settled attempt=1"
    async with work.serve(), aiohttp.ClientSession() as session:
        url = f"{work.callback_base}/callbacks/{forged.replace(' ', '%20').replace(chr(10), '%0A')}"
        async with session.post(url, data=b"{}") as response:
            assert response.status == 404
        await until(lambda: "callback refused" in work.serve_log(), "the refusal to be logged")
    log = work.serve_log()
    assert "callback refused" in log
    assert not any(line.startswith("2026-12-01T00:00:00") for line in log.splitlines())
    assert "x\\n2026-12-01T00:00:00" in log  # kept, but as one escaped line


async def test_a_connection_that_never_completes_a_request_is_dropped() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    port = free_port()
    async with hosted(app, "127.0.0.1", port, idle_timeout_s=1.0):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /callbacks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        closed = await asyncio.wait_for(reader.read(), 10)  # EOF when the server hangs up
        waited = time.monotonic() - started
        writer.close()
    assert closed == b"" and waited < 5


def test_hosting_on_a_taken_port_names_it() -> None:
    async def go() -> None:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            async with hosted(web.Application(), "127.0.0.1", port):
                pass

    with pytest.raises(InputError, match="already in use"):
        asyncio.run(go())
