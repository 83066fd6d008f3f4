from datetime import timedelta

import pytest

from dialer.durations import parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30), ("20m", 1200), ("2h", 7200), ("1d", 86400), ("500ms", 0.5), (" 1.5h ", 5400)],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "20", "20 minutes", "-1h", "h"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "per_second", "shown"),
    [("200/min", 200 / 60, "200/min"), ("50/s", 50, "50/s"), ("3600/h", 1, "3600/h")],
)
def test_rates(text: str, per_second: float, shown: str) -> None:
    rate = parse_rate(text)
    assert rate.per_second == pytest.approx(per_second)
    assert rate.interval_s == pytest.approx(1 / per_second)
    assert str(rate) == shown


@pytest.mark.parametrize("text", ["200", "0/min", "200 per minute", "x/s"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)
