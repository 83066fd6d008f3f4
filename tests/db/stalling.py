"""A TCP proxy in front of the test PostgreSQL that can stop passing the client's bytes, as
a stopped process or a cut network stops them, and reset the client's connection."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from dialer.campaign_spec import CampaignFile
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


@asynccontextmanager
async def load_stopped_mid_copy(url: str, campaign: CampaignFile) -> AsyncIterator[asyncio.Task]:
    """A load of `campaign` into the database at `url` through a StallingProxy, stopped once
    PostgreSQL is mid-COPY into contacts waiting for its bytes (as when its process stops or
    its network is cut); the load's task. Its rows must be wide enough (2,000 characters) for
    a segment's COPY to outgrow the socket buffers. The bytes flow again on the way out."""
    from dialer.db.connect import connect
    from dialer.loading import loader
    from tests.conftest import database_name
    from tests.processes import until

    connect_up, login = server_address()
    proxy = StallingProxy(connect_up)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    name = database_name(url)
    secret = f":{login['password']}" if "password" in login else ""
    loading_conn = await connect(f"postgresql://{login['user']}{secret}@127.0.0.1:{port}/{name}")
    watcher = await connect(url)
    load = asyncio.ensure_future(loader.load_campaign(loading_conn, campaign))
    try:

        async def copying(waiting_for_client: bool) -> bool:
            return await watcher.fetchval(
                """SELECT count(*) > 0 FROM pg_stat_activity
                   WHERE query LIKE 'COPY "contacts"%' AND state = 'active'
                     AND datname = current_database()
                     AND (NOT $1 OR wait_event = 'ClientRead')""",
                waiting_for_client,
            )

        await until(lambda: copying(False), "the load's COPY into contacts", every=0.01)
        proxy.stall()
        await until(lambda: copying(True), "PostgreSQL waiting mid-COPY for the load's bytes")
        yield load
    finally:
        proxy.taking.set()
        if not load.done():
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
        loading_conn.terminate()
        await watcher.close()
        server.close()


def wide_load(
    folder: Path, monkeypatch: pytest.MonkeyPatch, name: str, prefix: str
) -> CampaignFile:
    """A campaign `name` of 30,000 contacts (numbers `+91` + `prefix` + 8 digits) whose rows
    of 2,000 characters make a segment's COPY outgrow the socket buffers (one segment for the
    whole file), with loads counted stalled after 1 s and waiters looking every 0.2 s."""
    from dialer.campaign_spec import load_campaign_file
    from dialer.db import stalled
    from dialer.loading import loader
    from tests.conftest import TEST_CONFIG
    from tests.loading.helpers import campaign_file, csv_file

    monkeypatch.setattr(stalled, "STALLED_LOAD_S", 1.0)
    monkeypatch.setattr(stalled, "LOCK_WAIT_STEP_MS", 200)
    monkeypatch.setattr(loader, "SEGMENT_CHARS", 256 << 20)
    monkeypatch.chdir(folder)
    (folder / "dialer.toml").write_text(TEST_CONFIG)
    monkeypatch.setenv("DIALER_CONFIG", str(folder / "dialer.toml"))
    rows = [f"+91{prefix}{i:08d},{chr(97 + i % 26) * 2000}" for i in range(30_000)]
    csv_file(folder, rows)
    return load_campaign_file(campaign_file(folder, name))
