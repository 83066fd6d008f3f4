"""`dialer explain --at` and `--since` of the reports: a moment outside what can be judged or
stored is named, never a traceback from the database or the calendar."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import write_campaign


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "1901-01-01T00:00:00Z",  # no dial could have been made then
    ],
)
def test_an_instant_out_of_range_is_named(run_cli, tmp_path: Path, at: str) -> None:
    path = write_campaign(tmp_path, "explained", 1)
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    number = (tmp_path / "explained.csv").read_text().splitlines()[1].split(",")[0]
    result = run_cli("explain", number, "--at", at)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"--at: {at!r} is outside the years 1990-2200" in result.stderr
    fine = run_cli("explain", number, "--at", "2026-11-20T10:00:00+05:30")
    assert fine.exit_code == 0, fine.stderr


@pytest.mark.parametrize("since", ["0001-01-01", "0001-01-01T00:00:00+14:00", "1999-12-31"])
def test_a_since_before_2000_is_named_as_such(run_cli, since: str) -> None:
    result = run_cli("report", "--view", "attempts", "--since", since)
    assert result.exit_code == 2 and f"--since: {since!r} is before 2000" in result.stderr
