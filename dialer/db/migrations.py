"""Ordered SQL migrations from `sql/migrations/`, applied in one transaction under a lock.

The advisory lock is taken before anything else (even the CREATE of the bookkeeping table), so
two processes migrating at once serialize: the second finds the work done and does nothing.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from dialer.db.outage import CONNECTION_LOST, REFUSED
from dialer.db.types import Connection
from dialer.errors import DialerError

# A fixed key for pg_advisory_xact_lock: "dialer" migrations, chosen once, never reused elsewhere.
MIGRATION_LOCK_KEY = 0x6469616C6572
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def sql_dir() -> Path:
    """The `sql/` folder: inside the package when installed from a wheel (setup.py copies it
    there), else the checkout's top-level folder (source tree or editable install)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "sql"
    return shipped if shipped.is_dir() else package.parent / "sql"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    """Every migration file in version order; a misnamed file is an error, not silently skipped."""
    directory = directory or sql_dir() / "migrations"
    if not directory.is_dir():
        raise DialerError(f"migrations folder not found: {directory}")
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise DialerError(f"{path}: migration files are named NNNN_description.sql")
        found.append(Migration(match.group(1), path.stem, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DialerError(f"{directory}: two migrations share a version number")
    return found


async def _is_current(conn: Connection, migrations: list[Migration]) -> bool:
    """Whether every migration is applied as written: read-only, so that a database that
    needs nothing (a read-only one included) is never written to."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return False
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    applied = {row["version"]: row["checksum"] for row in rows}
    return all(_as_written(m, applied.get(m.version)) for m in migrations)


# The checksums of earlier texts of migrations whose comments alone were edited after they had
# been applied somewhere (the SQL they run is the same, checked before listing one here): a
# database that applied the earlier text has applied the migration as written.
EARLIER_TEXTS: dict[str, frozenset[str]] = {
    # 64f2e9c: its comment described a probe of each slot, replaced before the next session
    "0023": frozenset({"4f3f51aec82cc0577e205015b8ae9ce6e687dc6bcb91063ed1d744aa306aa33a"}),
}


def _as_written(migration: Migration, checksum: str | None) -> bool:
    """Whether `checksum` (recorded when it was applied) is of this migration's text, now or
    before an edit of its comments."""
    return checksum == migration.checksum or checksum in EARLIER_TEXTS.get(
        migration.version, frozenset()
    )


async def migrate(conn: Connection, *, verbose: bool = False) -> list[str]:
    """Apply the pending migrations; return the names applied (empty when already current).
    A read-only database (a standby, or one set read-only) that needs migrations is one clear
    error naming them."""
    migrations = discover()
    if await _is_current(conn, migrations):
        return []
    try:
        return await _apply(conn, migrations, verbose)
    except asyncpg.ReadOnlySQLTransactionError:
        raise DialerError(
            "the database is read-only (a standby, or default_transaction_read_only is on), and"
            " its schema needs migrating: point DIALER_DATABASE_URL at the primary, or run"
            " `dialer migrate` there"
        ) from None


async def _apply(conn: Connection, migrations: list[Migration], verbose: bool) -> list[str]:
    applied_now: list[str] = []
    async with conn.transaction():
        # Another process may be migrating a large table: wait for it however long it takes.
        await conn.execute("SET LOCAL lock_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {row["version"]: row for row in rows}
        for migration in migrations:
            done = applied.get(migration.version)
            if done is not None:
                if not _as_written(migration, done["checksum"]):
                    raise DialerError(
                        f"migration {migration.name} was changed after it was applied"
                        " (add a new migration instead of editing an applied one)"
                    )
                continue
            try:
                await conn.execute(migration.sql)
            except _THE_SERVER_NOT_THE_SQL:
                raise
            except asyncpg.PostgresError as error:
                raise _refused(migration, error) from None
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration.name)
            if verbose:
                print(f"applied {migration.name}", file=sys.stderr)
    return applied_now


# Errors about the server or its state, not the migration's SQL (a lost connection, a read-only
# or full database, a lock or statement timeout, a serialization failure): raised as they are,
# for the caller's one line saying which (db.outage), not blamed on the migration.
_THE_SERVER_NOT_THE_SQL = (*CONNECTION_LOST, *REFUSED)


def _refused(migration: Migration, error: asyncpg.PostgresError) -> DialerError:
    """A migration PostgreSQL refused, named, with what PostgreSQL said (a view of the user's
    own over a column the migration changes is named in its detail)."""
    said = "; ".join(
        str(part)
        for part in (error.args[0] if error.args else error, error.detail, error.hint)
        if part
    )
    return DialerError(
        f"migration {migration.name} failed, and nothing of it or of any migration after it"
        f" was applied: {said}. Fix what it names (a view or rule of your own over a column"
        " it changes: drop it, migrate, and create it again), then run `dialer migrate` again"
    )
