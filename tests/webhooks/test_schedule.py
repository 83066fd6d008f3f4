"""The retry schedule of webhook deliveries: short steps first, an hour at most, none after
24 hours from the event or its replay."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dialer.webhooks.schedule import DELAYS_S, GIVE_UP_AFTER, retry_at

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=0, max_value=90_000))
def test_each_retry_is_on_schedule_and_none_after_a_day(tries: int, age_s: int) -> None:
    now = T0 + timedelta(seconds=age_s)
    when = retry_at(tries, T0, now, random.Random(tries))
    step = DELAYS_S[min(tries, len(DELAYS_S)) - 1]
    if when is None:
        assert now + timedelta(seconds=0.8 * step) > T0 + GIVE_UP_AFTER
    else:
        assert 0.8 * step <= (when - now).total_seconds() <= 1.2 * step
        assert when <= T0 + GIVE_UP_AFTER


def test_a_receiver_down_for_a_minute_is_tried_again_within_two() -> None:
    """The tries of one event while its receiver is down from 0 s to 60 s."""
    now, tries = T0, 0
    while now < T0 + timedelta(seconds=60):
        tries += 1
        when = retry_at(tries, T0, now, random.Random(tries))
        assert when is not None
        now = when
    assert now - T0 < timedelta(seconds=120)


def test_retries_go_on_for_a_day() -> None:
    now, tries = T0, 0
    while (when := retry_at(tries + 1, T0, now, random.Random(0))) is not None:
        now, tries = when, tries + 1
    assert T0 + GIVE_UP_AFTER - timedelta(hours=1.2) <= now <= T0 + GIVE_UP_AFTER
    assert 30 <= tries <= 45
