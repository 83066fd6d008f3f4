"""COPY into a table that ends when its connection is lost.

asyncpg (0.32) waits for the socket to take more before it sends each piece of a COPY, and a
connection lost while the socket is full never takes more: the COPY waits for ever. (Seen as a
load that never ended after PostgreSQL restarted under it: 9 runs in 12 on a busy machine.)
Each COPY here runs beside a watch on the connection's end; a lost connection ends it with
ConnectionDoesNotExistError, as it ends any other statement on that connection. (executemany
waits the same way, but asyncpg ends it on its own when the connection is lost: tried with the
same full socket.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg

from dialer.db.types import Connection

Result = TypeVar("Result")


async def until_lost(conn: Connection, write: Awaitable[Result], what: str) -> Result:
    """The result of `write` (a COPY into a table on `conn`, described by `what`), or
    ConnectionDoesNotExistError once `conn` is lost under it."""
    loop = asyncio.get_running_loop()
    writing = asyncio.ensure_future(write)
    lost: asyncio.Future[None] = loop.create_future()

    def ended(_: object) -> None:
        if not lost.done():
            lost.set_result(None)

    conn.add_termination_listener(ended)
    either: list[asyncio.Future[Any]] = [writing, lost]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # interrupted: asyncpg ends its COPY before we unwind
        writing.cancel()
        await asyncio.wait([writing])
        raise
    finally:
        conn.remove_termination_listener(ended)
    if not writing.done():
        writing.cancel()  # asyncpg sends CopyFail and leaves the COPY
        await asyncio.wait([writing])
    if writing.cancelled():
        raise asyncpg.ConnectionDoesNotExistError(f"the connection was lost during {what}")
    return writing.result()
