"""Opening connections: resolve the URL (or the embedded server), check the schema is current."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from dialer.config import DialerConfig, database_url_from
from dialer.db import embedded
from dialer.db.migrations import migrate
from dialer.errors import DialerError


def resolve_database_url(config: DialerConfig) -> str:
    """The configured URL, else the embedded server's (started on demand)."""
    return database_url_from(config) or embedded.start_embedded()


async def _init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python objects, so callers never hand-encode JSON."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip on release: dialer keeps no session state (locks and
    settings are transaction-scoped), and at thousands of callbacks a second it matters."""


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


async def connect(url: str) -> asyncpg.Connection:
    """One connection with dialer's codecs; a failure names the server, never the password."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DialerError(f"cannot connect to PostgreSQL at {describe_url(url)}: {exc}") from None
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def open_pool(url: str, *, size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """A pool for long-running processes; migrations are applied first (under their lock)."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=size, init=_init_connection, reset=_keep_session
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DialerError(f"cannot connect to PostgreSQL at {describe_url(url)}: {exc}") from None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def session(url: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a short command, with the schema brought up to date first."""
    conn = await connect(url)
    try:
        await migrate(conn)
        yield conn
    finally:
        await conn.close()
