"""Calling windows and retry delays: pure functions, many cases."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from dialer.campaign_spec import RetryPolicy
from dialer.policy.retry import next_step, retry_delay
from dialer.policy.states import moves_forward
from dialer.policy.window import CallingRules

RULES = CallingRules(
    timezone="Asia/Kolkata",
    start=time(9, 30),
    end=time(19, 30),
    weekdays=frozenset(range(6)),  # Monday..Saturday
    holidays=frozenset({date(2026, 12, 25)}),
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "zone", "open_"),
    [
        (utc(2026, 11, 23, 4, 0), None, True),  # Monday 09:30 IST
        (utc(2026, 11, 23, 3, 59), None, False),  # 09:29 IST
        (utc(2026, 11, 23, 14, 0), None, False),  # 19:30 IST: end is exclusive
        (utc(2026, 11, 22, 6, 0), None, False),  # Sunday
        (utc(2026, 12, 25, 6, 0), None, False),  # holiday
        (utc(2026, 11, 23, 15, 0), "America/New_York", True),  # 10:00 in New York
        (utc(2026, 11, 23, 4, 0), "America/New_York", False),  # 23:00 in New York
    ],
)
def test_is_open(when: datetime, zone: str | None, open_: bool) -> None:
    assert RULES.is_open(when, zone) is open_


def test_next_open_skips_closed_days_and_hours() -> None:
    friday_night = utc(2026, 12, 24, 15, 0)  # Thursday 20:30 IST, next day is a holiday
    assert RULES.next_open(friday_night) == datetime(2026, 12, 26, 4, 0, tzinfo=UTC)
    inside = utc(2026, 11, 23, 5, 0)
    assert RULES.next_open(inside) == inside
    assert RULES.closes_at(inside) == utc(2026, 11, 23, 14, 0)


def test_no_window_after_end_date() -> None:
    rules = CallingRules(
        "UTC", time(9), time(17), frozenset(range(7)), frozenset(), None, date(2026, 1, 1)
    )
    assert rules.next_open(utc(2026, 1, 2, 10)) is None


def test_retry_delays_per_attempt_and_into_the_window() -> None:
    policy = RetryPolicy.model_validate(
        {"max_attempts": 4, "no-answer": ["30m", "2h"], "busy": "20m"}
    )
    assert retry_delay(policy, "no-answer", 1) == timedelta(minutes=30)
    assert retry_delay(policy, "no-answer", 2) == timedelta(hours=2)
    assert retry_delay(policy, "no-answer", 3) == timedelta(hours=2)  # the last one repeats
    late = utc(2026, 11, 23, 13, 50)  # 19:20 IST: +30 min falls after closing
    step = next_step(policy, RULES, "no-answer", 1, late, None)
    assert (step.state, step.next_attempt_at) == ("pending", utc(2026, 11, 24, 4, 0))
    assert next_step(policy, RULES, "completed", 1, late, None).state == "done"
    assert next_step(policy, RULES, "busy", 4, late, None).state == "exhausted"
    assert next_step(policy, RULES, "rejected", 1, late, None).state == "failed"
    never = RetryPolicy.model_validate({"failed": "never"})
    assert next_step(never, RULES, "failed", 1, late, None).state == "failed"


def test_states_only_move_forward() -> None:
    assert moves_forward("dialing", "ringing")
    assert moves_forward("ringing", "completed")
    assert not moves_forward("in-progress", "ringing")
    assert not moves_forward("completed", "busy")
    assert not moves_forward("unknown", "completed")
