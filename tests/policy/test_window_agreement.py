"""The calling window is read twice, in Python (CallingRules.is_open: the dispatcher's idle
decision, closes_at, retry scheduling) and in SQL (window_sql: the claim, the dry run): for any
window, zone (or two-zone contact), days, holidays, dates, laws named with the contact's
jurisdiction (policy.packs: their hours narrow the window) and instant, the two must agree."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db.due import window_sql
from dialer.policy.packs import CampaignRules, builtin_packs
from dialer.policy.window import CallingRules

ZONES = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",  # +05:45
    "America/New_York",  # DST
    "Europe/London",
    "Australia/Adelaide",  # +09:30 / +10:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Los_Angeles",
]
LATERAL, IN_WINDOW = window_sql(3, at="$1::timestamptz")
QUERY = (
    f"SELECT {IN_WINDOW} FROM (SELECT $2::text AS timezone, $13::text AS jurisdiction) c {LATERAL}"
)
PACK_SETS = [[], ["us-tcpa"], ["us-tcpa", "us-states"], ["in-trai"], ["reg-f", "us-states"]]
JURISDICTIONS = [None, "US", "US-FL", "US-OK", "US-CA", "IN", "GB", "CA-ON"]
BASE = datetime(2026, 1, 1, tzinfo=UTC)

times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
instants = st.integers(0, 366 * 24 * 4).map(lambda q: BASE + timedelta(minutes=15 * q))
days_near = st.integers(-2, 368).map(lambda d: BASE.date() + timedelta(days=d))


@st.composite
def rules_and_contacts(draw):
    start, end = sorted(draw(st.lists(times, min_size=2, max_size=2, unique=True)))
    first = draw(st.none() | days_near)
    last = draw(st.none() | days_near)
    packs = draw(st.sampled_from(PACK_SETS))
    law = CampaignRules.of([builtin_packs()[p] for p in packs]) if packs else None
    rules = CallingRules(
        timezone=draw(st.sampled_from(ZONES)),
        start=start,
        end=end,
        weekdays=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        holidays=frozenset(draw(st.sets(days_near, max_size=5))),
        start_date=first,
        end_date=last,
        law=law,
    )
    contact = draw(
        st.none()
        | st.sampled_from(ZONES)
        | st.tuples(st.sampled_from(ZONES), st.sampled_from(ZONES)).map(" ".join)
    )
    return rules, (contact, draw(st.sampled_from(JURISDICTIONS))), draw(instants)


@pytest.fixture(scope="module")
def sql_reader(database_url: str):
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database_url))

    def read(rules: CallingRules, contact: tuple[str | None, str | None], when: datetime) -> bool:
        zone, where = contact
        return loop.run_until_complete(
            conn.fetchval(QUERY, when, zone, *rules.sql_parameters()[:10], where)
        )

    yield read
    loop.run_until_complete(conn.close())
    loop.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=rules_and_contacts())
def test_python_and_sql_agree_on_the_calling_window(sql_reader, case) -> None:
    rules, contact, when = case
    zone, where = contact
    python = rules.is_open(when, zone, where)
    assert python == sql_reader(rules, contact, when), (rules, contact, when)


def test_the_sample_covers_both_answers(sql_reader) -> None:
    """A sanity check of the harness: an open and a closed instant read as such."""
    rules = CallingRules("Asia/Kolkata", time(9), time(17), frozenset(range(7)), frozenset())
    noon = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)  # 12:00 in Kolkata
    assert sql_reader(rules, (None, None), noon) and rules.is_open(noon)
    assert not sql_reader(rules, (None, None), noon + timedelta(hours=6))
    assert date(2026, 3, 2).weekday() == 0


def test_a_florida_contact_is_not_called_at_20_30_and_a_new_york_one_is(sql_reader) -> None:
    """us-tcpa and us-states: 08:00-21:00 in the US, 08:00-20:00 in Florida; a US number whose
    state is unknown gets the strictest (20:00), a number with no country too."""
    law = CampaignRules.of([builtin_packs()["us-tcpa"], builtin_packs()["us-states"]])
    rules = CallingRules(
        "America/New_York", time(0), time(23, 59), frozenset(range(7)), frozenset(), law=law
    )
    evening = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)  # 20:30 in New York (EST)
    zone = "America/New_York"
    for where, allowed in (("US-NY", True), ("US-FL", False), ("US", False), (None, False)):
        assert rules.is_open(evening, zone, where) is allowed, where
        assert sql_reader(rules, (zone, where), evening) is allowed, where
    tomorrow = rules.next_open(evening, zone, "US-FL")
    assert tomorrow == datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # 08:00 the next morning
