"""Fixtures shared by the dispatch tests' modules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest


@pytest.fixture
def restartable_postgres(tmp_path: Path):
    """A PostgreSQL cluster of this test's own (pgserver's binaries), which it may restart."""
    import pgserver
    from pgserver._commands import pg_ctl

    from dialer.db.migrations import migrate

    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    server.psql("CREATE DATABASE dialer_restart;")
    url = server.get_uri("dialer_restart")

    async def prepare() -> None:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())

    def restart(mode: str) -> None:
        """`fast` or `immediate`; `stop` stops the server, `start` starts it again (pg_ctl
        restart of a stopped server starts it with the options it last had)."""
        action = {"stop": ["-m", "fast", "stop"], "start": ["restart"]}.get(
            mode, ["-m", mode, "restart"]
        )
        pg_ctl(["-w", *action], pgdata=server.pgdata, user=server.system_user)

    try:
        yield url, restart
    finally:
        server.cleanup()
