"""The calling window is read twice, in Python (CallingRules.is_open: the dispatcher's idle
decision, closes_at, retry scheduling) and in SQL (window_sql: the claim, the dry run): for any
window, zone (or two-zone contact), days, holidays, dates and instant, the two must agree."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db.due import window_sql
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
QUERY = f"SELECT {IN_WINDOW} FROM (SELECT $2::text AS timezone) c {LATERAL}"
BASE = datetime(2026, 1, 1, tzinfo=UTC)

times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
instants = st.integers(0, 366 * 24 * 4).map(lambda q: BASE + timedelta(minutes=15 * q))
days_near = st.integers(-2, 368).map(lambda d: BASE.date() + timedelta(days=d))


@st.composite
def rules_and_contacts(draw):
    start, end = sorted(draw(st.lists(times, min_size=2, max_size=2, unique=True)))
    first = draw(st.none() | days_near)
    last = draw(st.none() | days_near)
    rules = CallingRules(
        timezone=draw(st.sampled_from(ZONES)),
        start=start,
        end=end,
        weekdays=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        holidays=frozenset(draw(st.sets(days_near, max_size=5))),
        start_date=first,
        end_date=last,
    )
    contact = draw(
        st.none()
        | st.sampled_from(ZONES)
        | st.tuples(st.sampled_from(ZONES), st.sampled_from(ZONES)).map(" ".join)
    )
    return rules, contact, draw(instants)


@pytest.fixture(scope="module")
def sql_reader(database_url: str):
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database_url))

    def read(rules: CallingRules, contact: str | None, when: datetime) -> bool:
        return loop.run_until_complete(conn.fetchval(QUERY, when, contact, *rules.sql_parameters()))

    yield read
    loop.run_until_complete(conn.close())
    loop.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=rules_and_contacts())
def test_python_and_sql_agree_on_the_calling_window(sql_reader, case) -> None:
    rules, contact, when = case
    assert rules.is_open(when, contact) == sql_reader(rules, contact, when), (rules, contact, when)


def test_the_sample_covers_both_answers(sql_reader) -> None:
    """A sanity check of the harness: an open and a closed instant read as such."""
    rules = CallingRules("Asia/Kolkata", time(9), time(17), frozenset(range(7)), frozenset())
    noon = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)  # 12:00 in Kolkata
    assert sql_reader(rules, None, noon) and rules.is_open(noon)
    assert not sql_reader(rules, None, noon + timedelta(hours=6))
    assert date(2026, 3, 2).weekday() == 0
