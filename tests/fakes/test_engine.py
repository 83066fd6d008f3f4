"""The fakes' own rate accounting: a 429 is the dialer's doing unless the fake itself stalled
across the window's start (then a request may have been timed late, after it arrived)."""

from __future__ import annotations

import time

from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.vonage import VonageDialect


def fake(rate: tuple[int, float]) -> FakeProvider:
    return FakeProvider(VonageDialect("app", "key", "s" * 32), FakeSettings(rate=rate))


def test_one_request_too_many_in_a_window_is_the_dialers_429() -> None:
    provider = fake((2, 10.0))
    assert provider.admit() is None and provider.admit() is None
    assert provider.admit() is not None
    assert provider.counts["rate_429"] == 1 and not provider.counts["rate_429_fake_stalled"]
    assert len(provider.rate_429_seen[0]["window_s"]) == 2


def test_a_429_over_a_stall_of_the_fakes_own_at_the_window_start_is_counted_apart() -> None:
    provider = fake((2, 10.0))
    assert provider.admit() is None and provider.admit() is None
    now = time.monotonic()
    provider.stalls.append((now - 10.1, now - 9.9))  # the loop held up across the window's edge
    assert provider.admit() is not None
    assert provider.counts["rate_429_fake_stalled"] == 1 and not provider.counts["rate_429"]
    provider.stalls.clear()
    provider.stalls.append((now - 5.0, now - 4.9))  # inside the window: it bunched nothing out
    assert provider.admit() is not None
    assert provider.counts["rate_429"] == 1
