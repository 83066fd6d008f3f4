"""The tests' databases: a clone of the migrated template (conftest) is what `dialer migrate`
makes of a new database, identity of its own included, and it takes connections as any
database does."""

from __future__ import annotations

import subprocess

from dialer.db.connect import connect
from dialer.db.migrations import migrate
from tests.conftest import template_name
from tests.test_forget import pg_dump_command, server_major


def dump(url: str, major: int, *options: str) -> str:
    done = subprocess.run(
        [*pg_dump_command(major), "--no-owner", "--no-privileges", *options, "-d", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # pg_dump's \restrict and \unrestrict lines carry a random key of their own each time
    return "\n".join(
        line
        for line in done.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


async def test_a_cloned_database_is_what_migrating_a_new_one_makes(
    own_database_url: str, database_url: str, empty_database_url: str
) -> None:
    conn = await connect(empty_database_url)
    try:
        assert await migrate(conn)  # a new database: every migration applied here
        migrated = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        major = await server_major(conn)
    finally:
        await conn.close()
    clone = await connect(own_database_url)  # the clone takes connections
    try:
        cloned = await clone.fetch("SELECT version, name, checksum FROM schema_migrations")
        assert not await migrate(clone)  # nothing left to apply
    finally:
        await clone.close()
    assert sorted(map(tuple, cloned)) == sorted(map(tuple, migrated))
    schema = ["--schema-only"]
    assert dump(own_database_url, major, *schema) == dump(empty_database_url, major, *schema)
    # applied_at differs; dialer_install is each database's own identity, compared below
    data = [
        "--data-only",
        "--exclude-table-data=schema_migrations",
        "--exclude-table-data=dialer_install",
    ]
    assert dump(own_database_url, major, *data) == dump(empty_database_url, major, *data)
    identities = []  # two clones of the one template, and a database migrated anew
    for url in (own_database_url, database_url, empty_database_url):
        conn = await connect(url)
        try:
            identities.append(dict(await conn.fetchrow("SELECT * FROM dialer_install")))
        finally:
            await conn.close()
    assert identities[0].keys() == identities[1].keys() == identities[2].keys()
    for column in ("id", "privacy_key"):
        assert len({identity[column] for identity in identities}) == 3, column
    assert template_name().startswith("dialer_tpl_")
