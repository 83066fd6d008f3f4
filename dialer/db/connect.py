"""Opening connections: resolve the URL (or the embedded server), check the schema is current."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from dialer import redaction
from dialer.db import embedded
from dialer.db.migrations import migrate
from dialer.db.outage import DATABASE_FAILURES, TRANSIENT
from dialer.db.types import Connection
from dialer.errors import ConfigError, DialerError
from dialer.redaction import describe_url, url_secrets

log = logging.getLogger("dialer.db")


def resolve_database_url(configured: str | None) -> str:
    """The configured URL (config.database_url_from), else the embedded server's (started on
    demand). Its password is registered for masking."""
    url = configured or embedded.start_embedded()
    redaction.remember(*url_secrets(url))
    return url


async def _init_connection(conn: Connection) -> None:
    """jsonb in and out as Python objects, so callers never hand-encode JSON."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: Connection) -> None:
    """Skip asyncpg's reset round trip on release: dialer keeps no session state (locks and
    settings are transaction-scoped), and at thousands of callbacks a second it matters."""


# A URL that asyncpg cannot use as it is written (no scheme, a port past 65535, sslmode=bogus):
# a setting to fix, not a database that went away (asyncpg's own error is an InterfaceError,
# which would read as a lost connection, and a long-running process would wait it out)
UNUSABLE_URL = (asyncpg.ClientConfigurationError, ValueError, OverflowError)


def unusable_url(url: str, error: BaseException) -> ConfigError:
    return ConfigError(
        f"the database URL {describe_url(url)} cannot be used: {error} (it comes from"
        " $DIALER_DATABASE_URL, else database_url in dialer.toml)"
    )


async def connect(url: str) -> Connection:
    """One connection with dialer's codecs; a failure names the server, never the password."""
    try:
        conn = await asyncpg.connect(url)
    except UNUSABLE_URL as exc:
        raise unusable_url(url, exc) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise DialerError(f"cannot connect to PostgreSQL at {describe_url(url)}: {exc}") from None
    await _init_connection(conn)
    return conn


# Long-running processes (run, serve, demo) keep every transaction short. One that sits idle
# inside a transaction is a paused or partitioned process (SIGSTOP, a VM suspend): PostgreSQL
# ends its session, so the locks it held (an account's limiter row) go to the other processes
# instead of freezing the account until it resumes. The paused process finds its connection
# gone when it wakes.
# Nor does any statement wait long for a lock another process holds (that one may be paused
# inside its transaction until the timeout above ends it): it fails with lock_timeout, and
# the caller retries (db.outage).
IDLE_IN_TRANSACTION_S = 10
LOCK_TIMEOUT_S = 5
CONNECT_TIMEOUT_S = 10  # a server that does not answer a connect within this is away
POOL_SETTINGS = {
    "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_S * 1000),
    "lock_timeout": str(LOCK_TIMEOUT_S * 1000),
    "application_name": "dialer",
    # No JIT compilation: every statement of a run or a server reads a few rows by index, and
    # an estimate above jit_above_cost (the claim's pick over many zones) would spend ~50 ms
    # compiling a statement that runs in a millisecond (bench/RESULTS.md).
    "jit": "off",
}
# A statement up to this size keeps its server-side prepared statement (asyncpg's default
# is 15 KB): the claim's pick is about 30 KB, and planned anew at each claim it cost 8 ms of
# PostgreSQL's time where running it costs 2 (db.contacts.lock_due).
STATEMENT_CACHE_BYTES = 64 * 1024


@asynccontextmanager
async def open_pool(
    url: str, *, size: int = 4, migrate_first: bool = True, patience_s: float = 0.0
) -> AsyncIterator[asyncpg.Pool]:
    """A pool for long-running processes; migrations are applied first (under their lock),
    unless `migrate_first` is False (another pool of the process did it). A server that
    cannot be reached is tried again for `patience_s` (a process started while PostgreSQL
    restarts rides it out, as it would once running) before the error names it."""
    try:
        # No floor of idle connections: asyncpg would keep re-opening it through an outage
        # (printing a traceback each time); connections are opened when needed.
        pool = await asyncpg.create_pool(
            url,
            min_size=0,
            max_size=size,
            init=_init_connection,
            reset=_keep_session,
            server_settings=POOL_SETTINGS,
            max_cacheable_statement_size=STATEMENT_CACHE_BYTES,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DialerError(f"cannot connect to PostgreSQL at {describe_url(url)}: {exc}") from None
    try:
        await _first_use(pool, url, patience_s, migrate_first)
        yield pool
    finally:
        await pool.close()


# A server that is not there yet, or restarting: worth trying again (a refused password is not).
AWAY = (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError)


async def _first_use(pool: asyncpg.Pool, url: str, patience_s: float, migrate_first: bool) -> None:
    """The pool's first connection, and the migrations on it (`migrate_first`); a server that
    is unreachable or restarting, or that cuts the connection while they run, is tried again,
    with backoff, for `patience_s`."""
    deadline = time.monotonic() + patience_s
    delay = 0.2
    while True:
        connected = False
        try:
            try:
                conn = await pool.acquire()
            except UNUSABLE_URL as exc:
                raise unusable_url(url, exc) from None
            connected = True
            try:
                if migrate_first:
                    await migrate(conn)
            finally:
                with contextlib.suppress(*TRANSIENT):  # a cut connection is closed, not reused
                    await pool.release(conn)
            return
        except DATABASE_FAILURES as exc:
            away = isinstance(exc, (AWAY, TRANSIENT))
            if connected and not away:
                raise  # the migrations' own error (db.migrations names it)
            if not away or time.monotonic() + delay > deadline:
                raise DialerError(
                    f"cannot connect to PostgreSQL at {describe_url(url)}: {exc}"
                ) from None
            if delay == 0.2:
                log.warning(
                    "database not reachable yet; trying again",
                    extra={"for_s": patience_s, "error": f"{type(exc).__name__}: {exc}"},
                )
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


@asynccontextmanager
async def session(url: str) -> AsyncIterator[Connection]:
    """One connection for a short command, with the schema brought up to date first."""
    conn = await connect(url)
    try:
        await migrate(conn)
        yield conn
    finally:
        await conn.close()
