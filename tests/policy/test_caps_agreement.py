"""Caps and quiet times are read twice: in SQL when a contact is claimed (db.contacts'
check_numbers, exact under any number of processes) and in Python to explain a decision
(policy.packs.holds, `dialer explain`). For any laws named, campaign caps, quiet time,
jurisdiction and history of calls on the subject (and on others), the two agree on until when
a number is held."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db import contacts
from dialer.policy.packs import CampaignRules, builtin_packs, holds, parse_cap

PACK_SETS = [[], ["us-tcpa", "us-states"], ["reg-f"], ["fcc-20-186", "us-states"], ["in-trai"]]
CAPS = ["2/1h", "3/24h", "7/7d", "1/30m"]
JURISDICTIONS = [None, "US", "US-FL", "US-OK", "US-CA", "IN"]
STATES = ["completed", "busy", "no-answer", "not_dialed", "unknown", "failed"]
SUBJECT = "renewals"
numbers = itertools.count(1)

histories = st.lists(
    st.tuples(
        st.integers(0, 40 * 24 * 60),  # minutes ago
        st.sampled_from(STATES),
        st.sampled_from([SUBJECT, SUBJECT, "other"]),
    ),
    max_size=12,
)


@st.composite
def cases(draw):
    packs = [builtin_packs()[p] for p in draw(st.sampled_from(PACK_SETS))]
    caps = [parse_cap(c) for c in draw(st.lists(st.sampled_from(CAPS), max_size=2, unique=True))]
    quiet = draw(st.sampled_from([None, timedelta(days=7), timedelta(hours=2)]))
    law = CampaignRules.of(packs, caps, quiet)
    return law, draw(st.sampled_from(JURISDICTIONS)), draw(histories)


@pytest.fixture(scope="module")
def harness(database_url: str):
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database_url))
    campaign = loop.run_until_complete(
        conn.fetchval(
            "INSERT INTO campaigns (name, account, spec) VALUES ('caps', 'x', '{}') RETURNING id"
        )
    )

    async def both(law, where, history):
        phone = f"+1305555{next(numbers):04d}"
        contact = await conn.fetchval(
            """INSERT INTO contacts (campaign_id, row_no, phone_e164, jurisdiction)
               VALUES ($1, 1, $2, $3) RETURNING id""",
            campaign,
            phone,
            where,
        )
        now = await conn.fetchval("SELECT now()")
        calls, talks = [], []
        for number, (ago, state, subject) in enumerate(history, 1):
            at = now - timedelta(minutes=ago, seconds=30)  # never on a window's very edge
            await conn.execute(
                """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                         outcome, phone_e164, requested_at, ended_at, subject)
                   VALUES ($1, $2, 'x', $3, $4, $4, $5, $6::timestamptz,
                           $6::timestamptz + interval '1 minute', $7)""",
                contact,
                campaign,
                number,
                state,
                phone,
                at,
                subject,
            )
            if subject == SUBJECT and state != "not_dialed":
                calls.append(at)
                if state == "completed":
                    talks.append(at + timedelta(minutes=1))
        rows = await contacts.check_numbers(conn, [contact], [phone], 100, SUBJECT, law)
        sql = rows[0]["held_until"]
        limits = law.for_jurisdiction(where)
        found = holds(limits, calls, talks, now)
        return sql, max((h.until for h in found), default=None), rows[0]["law_key"]

    yield lambda *args: loop.run_until_complete(both(*args))
    loop.run_until_complete(conn.close())
    loop.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=cases())
def test_sql_and_python_agree_on_caps_and_quiet_times(harness, case) -> None:
    law, where, history = case
    sql, python, key = harness(law, where, history)
    assert key == law.key_for(where)
    assert sql == python, (where, history, law.for_jurisdiction(where))


def test_a_fourth_call_in_florida_waits_for_the_first_to_age(harness) -> None:
    law = CampaignRules.of([builtin_packs()["us-tcpa"], builtin_packs()["us-states"]])
    three = [(60 * 20, "busy", SUBJECT), (60 * 10, "no-answer", SUBJECT), (60, "busy", SUBJECT)]
    sql, python, _ = harness(law, "US-FL", three)
    assert sql is not None and sql == python  # held until the call 20 h ago is 24 h old
    sql, python, _ = harness(law, "US-CA", three)
    assert sql is None and python is None  # California has no such cap
    other = [(60, "busy", "other")] * 3
    sql, _, _ = harness(law, "US-FL", other)
    assert sql is None  # calls on another subject do not count
