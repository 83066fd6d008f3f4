"""The state words live in one place: the database's CHECK constraints list exactly the states
that policy.states declares, so a state added on one side only fails here."""

from __future__ import annotations

import re

from dialer.policy.states import CONTACT_STATES, LIVE, TERMINAL


async def checked_words(conn, table: str, column: str) -> set[str]:
    definitions = await conn.fetch(
        """SELECT pg_get_constraintdef(oid) AS text FROM pg_constraint
           WHERE conrelid = $1::regclass AND contype = 'c'""",
        table,
    )
    for row in definitions:
        text = row["text"]
        if re.match(rf"^CHECK \(\({column} = ANY", text):
            return set(re.findall(r"'([^']+)'::text", text))
    raise AssertionError(f"no CHECK on {table}.{column}")


async def test_the_database_knows_exactly_the_declared_states(db) -> None:
    assert await checked_words(db, "attempts", "state") == set(LIVE) | set(TERMINAL)
    assert await checked_words(db, "attempts", "outcome") == set(TERMINAL)
    assert await checked_words(db, "contacts", "state") == set(CONTACT_STATES)


async def test_the_database_counts_exactly_the_live_states_as_live(db) -> None:
    """attempts.live (migration 0031), which the partial indexes and the live look-ups read, is
    computed from exactly policy.states.LIVE: a state added to LIVE on one side only fails
    here."""
    expression = await db.fetchval(
        """SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
           JOIN pg_attribute c ON c.attrelid = d.adrelid AND c.attnum = d.adnum
           WHERE d.adrelid = 'attempts'::regclass AND c.attname = 'live'"""
    )
    assert re.match(r"^\(state = ANY \(ARRAY\[", expression), expression
    assert set(re.findall(r"'([^']+)'::text", expression)) == set(LIVE), expression
