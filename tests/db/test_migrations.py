"""`dialer migrate`: ordered, recorded, idempotent, and safe from two processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db.connect import connect
from dialer.db.migrations import Migration, discover, migrate
from dialer.db.outage import database_refused
from dialer.errors import DialerError
from tests.conftest import database_name, database_url_for

TABLES = {"accounts", "campaigns", "contacts", "attempts", "call_events", "dnc", "load_rejects"}


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_applies_once_then_nothing(empty_database_url: str) -> None:
    conn = await connect(empty_database_url)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert first == [m.name for m in discover()]
    assert second == []
    assert [r["version"] for r in recorded] == [m.version for m in discover()]
    assert await tables(empty_database_url) >= TABLES


def test_two_processes_at_once(empty_database_url: str) -> None:
    env = os.environ | {"DIALER_DATABASE_URL": empty_database_url}
    command = [sys.executable, "-m", "dialer", "migrate"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    processes = [subprocess.Popen(command, env=env, **pipes) for _ in range(2)]
    results = [(*p.communicate(timeout=60), p.returncode) for p in processes]
    assert [code for _, _, code in results] == [0, 0], results
    outputs = sorted(out for out, _, _ in results)
    assert outputs[0].startswith("applied 0001_schema")
    assert outputs[1] == "schema is up to date\n"
    assert asyncio.run(tables(empty_database_url)) >= TABLES


async def test_an_edited_migration_is_refused(empty_database_url: str) -> None:
    conn = await connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = '0001'")
        with pytest.raises(Exception, match="changed after it was applied"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_a_migration_applied_before_an_edit_of_its_comments_is_current(
    empty_database_url: str,
) -> None:
    """0023 was applied somewhere with its first comment (64f2e9c); only the comment changed
    since: that database is current, and any other checksum is still refused."""
    from dialer.db.migrations import EARLIER_TEXTS

    (earlier,) = EARLIER_TEXTS["0023"]
    conn = await connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute(
            "UPDATE schema_migrations SET checksum = $1 WHERE version = '0023'", earlier
        )
        assert await migrate(conn) == []
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = '0023'")
        with pytest.raises(DialerError, match="0023_slot_cursor was changed after it was applied"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_a_refused_migration_is_one_clear_error_and_changes_nothing(
    empty_database_url: str, monkeypatch
) -> None:
    """A view of the user's own over a column that 0024 changes stops the migration: the
    error names the migration and the view, and the schema stays as it was (0023)."""
    every = discover()
    before_0024 = [m for m in every if m.version < "0024"]
    conn = await connect(empty_database_url)
    try:
        monkeypatch.setattr("dialer.db.migrations.discover", lambda: before_0024)
        await migrate(conn)
        await conn.execute("CREATE VIEW my_numbers AS SELECT phone_e164 FROM contacts")
        monkeypatch.setattr("dialer.db.migrations.discover", lambda: every)
        with pytest.raises(DialerError) as refused:
            await migrate(conn)
        said = str(refused.value)
        assert "0024_numbers_compared_bytewise" in said and "my_numbers" in said, said
        recorded = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        collation = await conn.fetchval(
            """SELECT collation_name FROM information_schema.columns
               WHERE table_name = 'contacts' AND column_name = 'phone_e164'"""
        )
        views = await conn.fetchval(
            "SELECT count(*) FROM pg_views WHERE viewname IN ('attempt_log', 'contact_results')"
        )
    finally:
        await conn.close()
    assert (recorded, collation, views) == ("0023", None, 2)


@pytest.mark.parametrize(
    ("sqlstate", "kind", "said"),
    [
        ("40001", asyncpg.exceptions.SerializationError, "serialization failure or a deadlock"),
        ("40P01", asyncpg.exceptions.DeadlockDetectedError, "serialization failure or a deadlock"),
        ("55P03", asyncpg.exceptions.LockNotAvailableError, "locked by another session"),
        ("57014", asyncpg.exceptions.QueryCanceledError, "statement was canceled"),
    ],
)
async def test_a_migration_the_server_refused_for_now_is_not_blamed_on_its_sql(
    empty_database_url: str, monkeypatch, sqlstate: str, kind: type, said: str
) -> None:
    """A deadlock, lock or statement timeout or serialization failure met
    while migrating is the server's state, not the migration's SQL: it is raised as it is, for
    the command's one line saying which refusal it is (db.outage), and nothing is applied."""
    every = discover()
    meeting = Migration(
        "9999",
        "9999_meets_the_server",
        f"DO $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '{sqlstate}'; END $$",
    )
    monkeypatch.setattr("dialer.db.migrations.discover", lambda: [*every, meeting])
    conn = await connect(empty_database_url)
    try:
        with pytest.raises(kind) as refused:
            await migrate(conn)
        applied = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    finally:
        await conn.close()
    assert not applied  # one transaction: nothing before the refusal was kept either
    line = str(database_refused(refused.value))
    assert said in line and "rolled back" in line, line


async def test_constraints_protect_users(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        campaign = await conn.fetchval(
            "INSERT INTO campaigns (name, account, spec) VALUES ('k', 'a', '{}') RETURNING id"
        )
        contact = await conn.fetchval(
            """INSERT INTO contacts (campaign_id, row_no, phone_e164)
               VALUES ($1, 2, '+919845012345') RETURNING id""",
            campaign,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                """INSERT INTO contacts (campaign_id, row_no, phone_e164)
                   VALUES ($1, 3, '+919845012345')""",
                campaign,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE contacts SET state = 'dialling' WHERE id = $1", contact)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE campaigns SET status = 'running' WHERE id = $1", campaign)

        insert = """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                          phone_e164, slot)
                    VALUES ($1, $2, 'a', $3, $4, '+919845012345', $5)"""
        await conn.execute(insert, contact, campaign, 1, "dialing", 0)
        with pytest.raises(asyncpg.UniqueViolationError):  # same attempt number twice
            await conn.execute(insert, contact, campaign, 1, "busy", None)
        with pytest.raises(asyncpg.UniqueViolationError):  # a second live attempt
            await conn.execute(insert, contact, campaign, 2, "reserved", 1)
        with pytest.raises(asyncpg.CheckViolationError):  # live without a channel slot
            await conn.execute(insert, contact, campaign, 2, "accepted", None)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, contact, campaign, 2, "ringing-ish", None)
    finally:
        await conn.close()


def dialer_migrate(url: str) -> subprocess.CompletedProcess:
    env = os.environ | {"DIALER_DATABASE_URL": url}
    env.pop("DIALER_CONFIG", None)
    command = [sys.executable, "-m", "dialer", "migrate"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


async def set_read_only(url: str, on: bool) -> None:
    name = database_name(url)
    admin = await asyncpg.connect(database_url_for("postgres"))
    try:
        action = "SET default_transaction_read_only = on" if on else "RESET ALL"
        await admin.execute(f'ALTER DATABASE "{name}" {action}')
    finally:
        await admin.close()


async def test_a_read_only_database_is_one_clear_line_and_a_current_one_needs_nothing(
    empty_database_url: str, own_database_url: str
) -> None:
    await set_read_only(empty_database_url, True)
    await set_read_only(own_database_url, True)
    try:
        pending = dialer_migrate(empty_database_url)
        current = dialer_migrate(own_database_url)
    finally:
        await set_read_only(empty_database_url, False)
        await set_read_only(own_database_url, False)
    assert pending.returncode == 1
    assert pending.stderr.strip().count("\n") == 0, pending.stderr  # one line, no traceback
    assert "read-only" in pending.stderr and "primary" in pending.stderr
    assert current.returncode == 0, current.stderr  # already current: nothing to write


digits = st.sampled_from("0123456789")
# Every length around the rule's, after each kind of first digit, and the odd ones
EDGES = [f"+{first}{'5' * more}" for first in "019" for more in range(17)] + [
    "",
    "+",
    "++1234567",
    "+1234567\n",
    " +1234567",
    "+12345678a",
    "+1\u0663\u0663\u0663\u0663\u0663\u0663",
    "1234567",
    # read as bytes (0025): escapes that a cast to bytea would decode, the bytes just
    # beside '0'-'9' and '+', and characters beyond ASCII (bytes above 0x7f)
    "+1\\0601234567",
    "\\x2b3931323334353637",
    "+1234\\x35",
    "+:1234567",
    "+/1234567",
    "+12345:7",
    "+12345/7",
    "*1234567",
    ",1234567",
    "+1234567\u00b9",
    "+\u0661234567",
    "+1234567\u200b",
]
phone_like = st.one_of(
    # '+', a first digit, then every length around the rule's 5 to 14 more digits
    st.integers(min_value=0, max_value=17).flatmap(
        lambda more: st.builds(
            lambda first, rest: f"+{first}{rest}",
            digits,
            st.text(digits, min_size=more, max_size=more),
        )
    ),
    st.text(st.sampled_from("+0123456789 a-\n\u0663\uff11\\:/*,x"), max_size=18),
    st.text(max_size=18).map(lambda s: s.replace("\x00", "")),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(phone_like, min_size=1, max_size=40))
def test_the_number_check_is_the_e164_pattern(database_url: str, values: list[str]) -> None:
    """contacts' number check (migration 0025: on the number's bytes, without a regular
    expression) accepts exactly what '^\\+[1-9][0-9]{5,14}$' accepts: read from the catalog
    and run on the same values."""

    async def go() -> list[asyncpg.Record]:
        conn = await connect(database_url)
        try:
            check = await conn.fetchval(
                """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE conname = 'contacts_phone_e164_check'"""
            )
            expression = check.removeprefix("CHECK ")
            return await conn.fetch(
                f"""SELECT phone_e164, ({expression}) AS by_check,
                           phone_e164 ~ '^\\+[1-9][0-9]{{5,14}}$' AS by_pattern
                    FROM unnest($1::text[]) AS t(phone_e164)""",
                [*EDGES, *values],
            )
        finally:
            await conn.close()

    for row in asyncio.run(go()):
        assert row["by_check"] == row["by_pattern"], row["phone_e164"]


async def test_numbers_are_compared_bytewise_everywhere(db) -> None:
    """Every column that holds a phone number, in a table or a view, is in the "C" collation
    (migration 0024): a load's unique-number index compares bytes, and a join of one such
    column with another compares in one collation, so either side's index serves it."""
    columns = await db.fetch(
        """SELECT c.relname AS relation, a.attname AS name, co.collname AS collation
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
           LEFT JOIN pg_collation co ON co.oid = a.attcollation
           WHERE a.attname = 'phone_e164' AND c.relkind IN ('r', 'v') AND a.attnum > 0"""
    )
    assert {r["relation"] for r in columns} >= {"contacts", "attempts", "dnc", "consent_events"}
    assert {(r["relation"], r["collation"]) for r in columns} == {
        (r["relation"], "C") for r in columns
    }
