"""A TCP proxy in front of the test PostgreSQL that can stop passing the client's bytes, as
a stopped process or a cut network stops them, and reset the client's connection."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from tests.conftest import SERVER_URL


class StallingProxy:
    """Forwards PostgreSQL connections. `stall()` stops taking the client's bytes, so its
    socket fills and asyncpg waits to write; `cut()` then resets the client's connection, as
    a backend that ends with the client's data unread does (a restart, a failover)."""

    def __init__(self, connect: Callable[[], Awaitable[tuple]]) -> None:
        self.connect = connect
        self.taking = asyncio.Event()
        self.taking.set()
        self.clients: list[asyncio.StreamWriter] = []

    def stall(self) -> None:
        self.taking.clear()

    def cut(self) -> None:
        for client in self.clients:
            sock = client.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.transport.abort()
        self.taking.set()  # let the proxy see the end and close its side

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        up_reader, up_writer = await self.connect()

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, gate: bool):
            while True:
                if gate:
                    await self.taking.wait()
                chunk = await source.read(65536)
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()
            sink.close()

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            up_writer.close()


def server_address() -> tuple[Callable[[], Awaitable[tuple]], dict[str, str]]:
    """How to reach the test server (TCP or its Unix socket), and the connect arguments."""
    url = urlsplit(SERVER_URL)
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    host = query.get("host", url.hostname or "127.0.0.1")
    port = url.port or int(query.get("port", 5432))
    path = f"{host}/.s.PGSQL.{port}"

    def connect() -> Awaitable[tuple]:
        if host.startswith("/"):
            return asyncio.open_unix_connection(path)
        return asyncio.open_connection(host, port)

    login = {"user": url.username or "postgres", "database": url.path.lstrip("/") or "postgres"}
    if url.password:
        login["password"] = url.password
    return connect, login
