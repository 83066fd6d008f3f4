""" "Due now" has one definition (db.due) and two readers: the SQL that claims and counts, and
the Python that says when the next contact is due (policy.due over first_due_per_zone). For
random contacts (states, retry delays, zones, do-not-call) and random windows, the contacts
the SQL counts due are exactly those Python finds due, and "next due" is now exactly when
some contact is due now."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db import contacts
from dialer.policy.due import next_due
from dialer.policy.states import CONTACT_STATES
from dialer.policy.window import CallingRules
from tests.policy.test_window_agreement import ZONES, rules_and_contacts

CAMPAIGN = 990_001  # contacts have no foreign key: a campaign id of this test's own

people = st.lists(
    st.tuples(
        st.sampled_from(CONTACT_STATES),
        st.none() | st.integers(-48, 48),  # retry delay: hours from now
        st.none()
        | st.sampled_from(ZONES)
        | st.tuples(st.sampled_from(ZONES), st.sampled_from(ZONES)).map(" ".join),
        st.booleans(),  # on the do-not-call list
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def checker(database_url: str):
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database_url))

    async def check(rules: CallingRules, drawn: list) -> None:
        tx = conn.transaction()
        await tx.start()
        try:  # one transaction: now() is one instant for every statement in it
            now: datetime = await conn.fetchval("SELECT now()")
            expected = 0
            for n, (state, delay_h, zone, listed) in enumerate(drawn):
                phone = f"+9198{n:08d}"
                next_at = None if delay_h is None else now + timedelta(hours=delay_h)
                await conn.execute(
                    """INSERT INTO contacts (campaign_id, row_no, phone_e164, timezone, state,
                                             next_attempt_at)
                       VALUES ($1, $2, $3, $4, $5, $6)""",
                    CAMPAIGN,
                    n + 2,
                    phone,
                    zone,
                    state,
                    next_at,
                )
                if listed:
                    await conn.execute(
                        "INSERT INTO dnc (phone_e164) VALUES ($1) ON CONFLICT DO NOTHING", phone
                    )
                due = (
                    state == "pending"
                    and not listed
                    and (next_at is None or next_at <= now)
                    and rules.is_open(now, zone)
                )
                expected += due
            counted = await contacts.count_due(conn, CAMPAIGN, rules)
            assert counted == expected
            picked = await contacts.lock_due(conn, CAMPAIGN, 1000, rules)  # by open zone
            assert len(picked) == expected
            firsts = await contacts.first_due_per_zone(conn, [CAMPAIGN])
            soonest = next_due(firsts, {CAMPAIGN: rules}, now)
            assert (soonest is not None and soonest[0] <= now) == (expected > 0)
        finally:
            await tx.rollback()

    yield lambda rules, drawn: loop.run_until_complete(check(rules, drawn))
    loop.run_until_complete(conn.close())
    loop.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=rules_and_contacts(), drawn=people)
def test_sql_and_python_agree_on_who_is_due_now(checker, case, drawn) -> None:
    rules, _, _ = case
    checker(rules, drawn)
