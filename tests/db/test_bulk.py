"""A COPY ends when its connection is lost, even with the socket full (dialer.db.bulk)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dialer.db.bulk import until_lost
from tests.conftest import SERVER_URL
from tests.db.stalling import StallingProxy, server_address


async def _endless_copy_data() -> AsyncIterator[bytes]:
    line = b"x" * 99 + b"\n"
    while True:
        yield line * 2000


async def test_a_copy_waiting_on_a_full_socket_ends_when_the_connection_is_lost() -> None:
    """asyncpg alone waits for ever here (the socket never drains once the connection is
    gone); the write ends with ConnectionDoesNotExistError."""
    connect, login = server_address()
    proxy = StallingProxy(connect)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await asyncpg.connect(host="127.0.0.1", port=port, ssl=False, **login)
    try:
        await conn.execute("CREATE TEMP TABLE bulk_t (line text)")
        proxy.stall()
        copy = conn.copy_to_table("bulk_t", source=_endless_copy_data())
        write = asyncio.ensure_future(until_lost(conn, copy, "the test COPY"))
        # The precondition of the defect: asyncpg has paused its writing (the socket is full).
        while conn._protocol.writing_allowed.is_set():  # type: ignore[attr-defined]
            assert not write.done(), write
            await asyncio.sleep(0.01)
        proxy.cut()
        with pytest.raises(asyncpg.ConnectionDoesNotExistError, match="during the test COPY"):
            await asyncio.wait_for(write, 60)  # never waits for ever
    finally:
        conn.terminate()
        server.close()


async def test_a_write_that_ends_gives_its_result() -> None:
    conn = await asyncpg.connect(SERVER_URL)
    try:
        await conn.execute("CREATE TEMP TABLE bulk_t (line text)")

        async def rows() -> AsyncIterator[bytes]:
            yield b"a\nb\n"

        status = await until_lost(conn, conn.copy_to_table("bulk_t", source=rows()), "a copy")
        assert status == "COPY 2"
        assert await conn.fetchval("SELECT count(*) FROM bulk_t") == 2
    finally:
        await conn.close()


async def test_an_interrupted_copy_is_ended_before_the_interruption_goes_on() -> None:
    """Ctrl-C mid-COPY: the COPY is ended (CopyFail) before the caller unwinds, so the
    connection is free again, not busy with a COPY nobody feeds."""
    conn = await asyncpg.connect(SERVER_URL)
    started = asyncio.Event()

    async def data() -> AsyncIterator[bytes]:
        started.set()
        async for piece in _endless_copy_data():
            yield piece

    try:
        await conn.execute("CREATE TEMP TABLE bulk_t (line text)")
        copy = conn.copy_to_table("bulk_t", source=data())
        write = asyncio.ensure_future(until_lost(conn, copy, "the test COPY"))
        await started.wait()
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        assert await conn.fetchval("SELECT count(*) FROM bulk_t") == 0
    finally:
        await conn.close()
