"""Connections of long-running processes: what PostgreSQL enforces on them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import asyncpg
import pytest

from dialer.db.connect import (
    IDLE_IN_TRANSACTION_S,
    POOL_SETTINGS,
    STATEMENT_CACHE_BYTES,
    open_pool,
)
from tests.conftest import database_name


async def test_a_paused_process_cannot_hold_an_account_lock(database_url: str) -> None:
    """A process stopped inside a transaction (here: one that simply stops talking) loses its
    session after IDLE_IN_TRANSACTION_S, and with it the account row lock it held, so the
    other processes dial on instead of waiting until it resumes."""
    async with open_pool(database_url, size=2) as pool:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO accounts (name, kind, rate_per_s, channels)"
                " VALUES ('held', 'sim', 1, 1) ON CONFLICT DO NOTHING"
            )
        # A session with the pool's own settings, on a connection of its own: a pooled one
        # whose server ends it is detached by asyncpg at a moment of its choosing, and the
        # pool's close then waited on it (seen twice in CI as a 120 s hang).
        paused = await asyncpg.connect(database_url, server_settings=POOL_SETTINGS)
        transaction = paused.transaction()
        await transaction.start()
        await paused.execute("SELECT * FROM accounts WHERE name = 'held' FOR UPDATE")
        other = await asyncpg.connect(database_url)
        try:
            started = time.monotonic()
            await other.execute("SELECT * FROM accounts WHERE name = 'held' FOR UPDATE")
            waited = time.monotonic() - started
        finally:
            await other.close()
        assert IDLE_IN_TRANSACTION_S - 1 < waited < IDLE_IN_TRANSACTION_S + 5
        # however asyncpg meets the session's end (InternalClientError: it noticed mid-call)
        ended = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
        with pytest.raises((*ended, OSError)):
            await paused.execute("SELECT 1")  # the paused one finds its session gone
        paused.terminate()


def test_no_server_is_one_line_naming_it_without_its_password(tmp_path) -> None:
    env = os.environ | {"DIALER_DATABASE_URL": "postgresql://postgres:s3cr3t-pw@127.0.0.1:1/x"}
    env.pop("DIALER_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "dialer", "run", "any"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (  # after trying for a while (a server restarting is waited for)
        "dialer: error: cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/x:"
        " [Errno 111] Connect call failed ('127.0.0.1', 1)"
    )
    assert "Traceback" not in result.stderr and "s3cr3t-pw" not in result.stderr


@pytest.mark.parametrize(
    "url, said",
    [
        ("not-a-url", "the database URL (unreadable database URL) cannot be used: invalid DSN"),
        ("postgresql://u:s3cr3t-pw@127.0.0.1:99999/x", "127.0.0.1:99999/x cannot be used: "),
        ("postgresql://u:s3cr3t-pw@127.0.0.1:5432/x?sslmode=sure", "`sslmode` parameter must"),
    ],
)
@pytest.mark.parametrize("command", [["run", "any"], ["campaign", "list"]])
def test_a_database_url_that_cannot_be_used_is_a_setting_to_fix(
    tmp_path, url: str, said: str, command: list[str]
) -> None:
    """Not a lost connection to wait out or retry (asyncpg calls it an InterfaceError), nor a
    traceback (a port past 65535): exit 2 at once, naming the URL without its password."""
    env = os.environ | {"DIALER_DATABASE_URL": url}
    env.pop("DIALER_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "dialer", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("dialer: error: the database URL") and said in last, last
    assert "Traceback" not in result.stderr and "s3cr3t-pw" not in result.stderr


async def test_a_process_whose_connection_is_cut_while_it_migrates_tries_again(
    empty_database_url: str,
) -> None:
    """A process starting while connections are cut (a failover, a pooler's restart): its
    connection is ended while it waits to migrate; it tries again within its patience
    instead of dying with a traceback, and starts once it can."""
    import asyncio

    from dialer.db.migrations import MIGRATION_LOCK_KEY
    from tests.db.lock_cuts import cut_one_and_see_it_wait_again

    database = database_name(empty_database_url)
    admin = await asyncpg.connect(empty_database_url)
    holding = admin.transaction()
    await holding.start()
    await admin.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)

    async def start() -> int:
        async with open_pool(empty_database_url, size=1, patience_s=60) as pool:
            return await pool.fetchval("SELECT count(*) FROM schema_migrations")

    watch = await asyncpg.connect(empty_database_url)  # out of the lock's transaction

    try:
        starting = asyncio.create_task(start())

        def still_starting() -> None:
            assert not starting.done(), starting

        await cut_one_and_see_it_wait_again(watch, database, still_starting)
        await holding.rollback()
        assert await asyncio.wait_for(starting, 60) > 0
    finally:
        await watch.close()
        await admin.close()  # ends the lock's transaction if the test failed before


async def test_a_pools_connections_keep_the_claims_statement(database_url: str) -> None:
    """The claim's pick (about 30 KB) is kept as a prepared statement on a pool's connection,
    so it is planned once per connection (db.contacts.lock_due), not at every claim."""
    big = "SELECT 1 AS one -- " + "x" * (STATEMENT_CACHE_BYTES // 2)
    async with open_pool(database_url, size=1) as pool, pool.acquire() as conn:
        await conn.fetchval(big)
        kept = await conn.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", big
        )
    assert kept == 1
