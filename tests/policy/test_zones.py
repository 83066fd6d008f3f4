"""Timezones inferred from numbers, and the window over a contact's two extreme zones."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from dialer.campaign_spec import CampaignSpec, Window
from dialer.policy.window import CallingRules
from dialer.policy.zones import inferred_timezone

NINE_TO_EIGHT = (time(9), time(20))


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+919845012345", "Asia/Calcutta"),  # one zone for the whole country
        ("+14155550123", "America/Los_Angeles"),  # a geographic US number: its area code
        ("+442071234567", "Europe/London"),
        ("+61412345678", "Indian/Cocos Australia/Sydney"),  # a mobile: the whole country
        ("+79161234567", "Europe/Bucharest Asia/Kamchatka"),
    ],
)
def test_inferred_zones(number: str, expected: str) -> None:
    assert inferred_timezone(number, *NINE_TO_EIGHT) == expected


def test_zones_without_common_hours_are_refused() -> None:
    with pytest.raises(ValueError, match="add a timezone column"):
        inferred_timezone("+18005550199", *NINE_TO_EIGHT)  # toll-free: Samoa to Guam


def rules(start: time, end: time) -> CallingRules:
    spec = CampaignSpec(
        name="z",
        account="a",
        caller_id="+14155550100",
        default_region="US",
        timezone="UTC",
        window=Window(start=start.isoformat(), end=end.isoformat()),
    )
    return CallingRules.of(spec)


def test_window_must_be_open_in_both_extreme_zones() -> None:
    nine_to_eight = rules(*NINE_TO_EIGHT)
    both = "America/Los_Angeles America/New_York"
    # 13:00 UTC in January: 08:00 in New York, 05:00 in Los Angeles: closed in both
    assert not nine_to_eight.is_open(datetime(2026, 1, 14, 13, 0, tzinfo=UTC), both)
    # 16:00 UTC: 11:00 New York, 08:00 Los Angeles: open in New York only, so closed
    at_four = datetime(2026, 1, 14, 16, 0, tzinfo=UTC)
    assert nine_to_eight.is_open(at_four, "America/New_York")
    assert not nine_to_eight.is_open(at_four, both)
    # it opens when Los Angeles reaches 09:00 (17:00 UTC), and closes when New York reaches
    # 20:00 (01:00 UTC), the earlier of the two
    opens = nine_to_eight.next_open(at_four, both)
    assert opens == datetime(2026, 1, 14, 17, 0, tzinfo=UTC)
    assert nine_to_eight.closes_at(opens, both) == datetime(2026, 1, 15, 1, 0, tzinfo=UTC)
    for hour in range(24):  # every hour it calls is inside the window in every US zone between
        moment = datetime(2026, 1, 14, hour, 0, tzinfo=UTC)
        if nine_to_eight.is_open(moment, both):
            for zone in (
                "America/New_York",
                "America/Chicago",
                "America/Denver",
                "America/Los_Angeles",
            ):
                assert nine_to_eight.is_open(moment, zone), (hour, zone)


def test_no_common_hours_means_never() -> None:
    short = rules(time(9), time(10))
    when = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    assert short.next_open(when, "America/Los_Angeles America/New_York") is None
