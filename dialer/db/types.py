"""The connection every query function takes: one of its own, or one lent by a pool (asyncpg
hands out a proxy: the same methods, another type)."""

from __future__ import annotations

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
