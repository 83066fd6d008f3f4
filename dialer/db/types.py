"""The connection every query function takes: one of its own, or one lent by a pool (asyncpg
hands out a proxy: the same methods, another type)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.Connection  # at run time only annotations name it


def one(row: asyncpg.Record | None, what: str) -> asyncpg.Record:
    """The row a query that always returns one (an aggregate, an upsert) returned."""
    if row is None:
        raise LookupError(f"{what}: the query returned no row")
    return row


STREAM_PREFETCH = 500  # rows a cursor brings at a time (a contact row may be wide)


@dataclass(frozen=True)
class Stream:
    """A query's column names and its rows, read from a server-side cursor a batch at a time,
    so that a listing of millions (a registry copy, a campaign's contacts) never sits in memory.
    Read it inside the transaction it was opened in."""

    names: list[str]
    rows: AsyncIterator[asyncpg.Record]


async def stream(conn: Connection, sql: str, *args: object) -> Stream:
    """`sql`'s rows as a Stream; the caller holds a transaction open while it reads them."""
    statement = await conn.prepare(sql)
    names = [attribute.name for attribute in statement.get_attributes()]
    return Stream(names, statement.cursor(*args, prefetch=STREAM_PREFETCH).__aiter__())
