"""Riding out a database that is away for a while: which errors mean "try again", and for how long.

`dialer run` must not die on a PostgreSQL restart, a failover, a read-only minute, a statement
or lock timeout: it stops claiming, keeps what it must record in memory, retries with backoff,
and goes on when the database is back. Only an outage longer than the limit (default 5
minutes, `database_outage_limit` in dialer.toml) ends it, with exit 1 and one line naming the
cause. Any other database error is a bug or a broken schema, and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from dialer.errors import DialerError
from dialer.redaction import redact

log = logging.getLogger("dialer.db")

TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connecting took too long
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.InternalClientError,  # a pooled connection left confused by one cut mid-statement
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, crash, restart, canceled
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, or read-only for a while
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout: someone holds it (paused?)
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
)
# Any failure of the database: the transient ones, and any error a statement can meet.
DATABASE_FAILURES: tuple[type[BaseException], ...] = (*TRANSIENT, asyncpg.PostgresError)

# The database went away under a command: the connection closed, reset or cut off, the server
# shut down or restarted. `dialer run` rides these out; any other command ends with one line
# (connection_lost), its transaction in progress rolled back by the server.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    ConnectionError,  # reset, refused, broken pipe
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, crash, restart
)

# The database is there but will not do what a command asks for now. `dialer run` waits these
# out (they are TRANSIENT); any other command ends with one line (database_refused) saying
# which, its transaction in progress rolled back by the server.
REFUSED_FOR_NOW: dict[type[BaseException], str] = {
    asyncpg.exceptions.ReadOnlySQLTransactionError: "the database is read-only (a standby, or"
    " default_transaction_read_only is on): point database_url at the primary, or wait until"
    " it takes writes again",
    asyncpg.exceptions.InsufficientResourcesError: "the database server is out of room (disk,"
    " memory or connections)",
    asyncpg.exceptions.LockNotAvailableError: "a row or table it needs is locked by another"
    " session for longer than lock_timeout",
    asyncpg.exceptions.QueryCanceledError: "a statement was canceled (statement_timeout, or an"
    " operator canceled it)",
    asyncpg.exceptions.TransactionRollbackError: "it met another session's changes (a"
    " serialization failure or a deadlock)",
}
REFUSED = tuple(REFUSED_FOR_NOW)

DEFAULT_LIMIT_S = 300.0
BACKOFF_FIRST_S = 0.2
BACKOFF_CAP_S = 5.0

Result = TypeVar("Result")


class DatabaseGone(DialerError):
    """The database stayed away longer than the outage limit."""


class DatabaseLost(DialerError):
    """The database connection was lost under a command (CONNECTION_LOST)."""


class DatabaseRefused(DialerError):
    """The database would not do what a command asked for now (REFUSED_FOR_NOW)."""


def connection_lost(error: BaseException) -> DatabaseLost:
    """The one line a command ends with when the database went away under it, saying the
    first failure of the chain (a shutdown, say, rather than the closed connection after it)."""
    for _ in range(10):  # a chain is short; never follow a cycle
        if not isinstance(error.__context__, CONNECTION_LOST):
            break
        error = error.__context__
    return DatabaseLost(
        f"the database connection was lost ({_named(error)}); the transaction in progress was"
        " rolled back, so nothing of it was written: run the command again once the database is"
        " back"
    )


@dataclass
class Outage:
    """One process's view of the database's health, shared by all its tasks."""

    limit_s: float = DEFAULT_LIMIT_S
    pool: asyncpg.Pool | None = None  # its connections are replaced after a failure
    started: float | None = None
    failures: int = 0
    cause: str = ""
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def ongoing(self) -> bool:
        return self.started is not None

    def failed(self, error: BaseException, doing: str) -> float:
        """Note a transient failure; the seconds to wait before trying again. Raises
        DatabaseGone once the outage has lasted longer than the limit."""
        now = self._clock()
        self.cause = f"{doing}: {type(error).__name__}: {str(error)[:200]}".rstrip(": ")
        if self.started is None:
            self.started = now
            log.warning("database unavailable; retrying", extra={"cause": self.cause})
        self.failures += 1
        if now - self.started > self.limit_s:
            raise DatabaseGone(
                f"the database was unavailable for {now - self.started:.0f} s, over the"
                f" {self.limit_s:.0f} s outage limit (last error: {self.cause})"
            )
        backoff = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2 ** min(self.failures, 10))
        return backoff * (0.5 + random.random() / 2)

    async def wait_after(self, error: BaseException, doing: str) -> None:
        """Note a transient failure (raising DatabaseGone past the limit), have the pool
        replace its connections (one cut mid-statement can be left unusable: asyncpg issue
        #1069), and wait the backoff."""
        delay = self.failed(error, doing)
        if self.pool is not None:
            await self.pool.expire_connections()
        await asyncio.sleep(delay)

    def recovered(self) -> None:
        if self.started is not None:
            log.warning(
                "database back",
                extra={"after_s": round(self._clock() - self.started, 1), "cause": self.cause},
            )
        self.started, self.failures = None, 0

    async def retrying(self, doing: str, operation: Callable[[], Awaitable[Result]]) -> Result:
        """Run `operation` until it succeeds, waiting out transient failures."""
        while True:
            try:
                result = await operation()
            except TRANSIENT as exc:
                await self.wait_after(exc, doing)
                continue
            self.recovered()
            return result


def database_refused(error: BaseException) -> DatabaseRefused:
    """The one line a command ends with when the database refused it for now (REFUSED)."""
    meaning = next(said for kind, said in REFUSED_FOR_NOW.items() if isinstance(error, kind))
    return DatabaseRefused(
        f"the database refused the command: {meaning} ({_named(error)}); the transaction in"
        " progress was rolled back, so nothing of it was written"
    )


def _named(error: BaseException) -> str:
    """An error as its type and the first line of its message, any secret in it redacted."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {redact(first)}" if first else type(error).__name__
