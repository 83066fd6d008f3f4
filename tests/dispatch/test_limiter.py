"""The limiter's pure arithmetic: whatever the pattern of claims, batch sizes, process clocks
and network delays, no window of the provider's unit carries more requests than its figure."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.dispatch.claim import DERATE, AccountLimits
from dialer.dispatch.limiter import ready_slots


@given(
    ahead=st.floats(-10, 10),
    early=st.floats(0, 5),
    interval=st.floats(0.001, 10),
    waiting=st.integers(0, 60),
)
def test_exactly_the_slots_within_early_are_ready(
    ahead: float, early: float, interval: float, waiting: int
) -> None:
    ready = ready_slots(ahead, early, interval, waiting)
    assert 0 <= ready <= waiting
    assert all(ahead + k * interval <= early + 1e-9 for k in range(ready))
    if ready < waiting:  # the next one is not ready yet
        assert ahead + ready * interval > early - 1e-9


def test_a_slot_a_little_past_early_waits() -> None:
    """The case `int()` got wrong: (early - ahead) / interval in (-1, 0) gave one slot."""
    assert ready_slots(ahead_s=0.30, early_s=0.25, interval_s=0.1, waiting=5) == 0
    assert ready_slots(ahead_s=0.25, early_s=0.25, interval_s=0.1, waiting=5) == 1


FIGURES = st.sampled_from([(1, 1), (2, 1), (5, 1), (20, 1), (50, 1), (200, 60), (10, 60)])


@settings(max_examples=300, deadline=None)
@given(
    figure=FIGURES,
    factor=st.sampled_from([1.0, 0.8, 0.64, 0.2]),
    calls=st.lists(
        st.tuples(
            st.floats(0, 2),  # seconds since the previous claim, in true time (any clocks)
            st.integers(1, 40),  # requests waiting in that process
            st.lists(st.floats(0, 0.9), max_size=40),  # each send's network delay, x early
        ),
        min_size=1,
        max_size=80,
    ),
)
def test_no_window_holds_more_than_the_figure(figure, factor, calls) -> None:
    count, unit = figure
    limits = AccountLimits("a", "sim", count / unit, unit, 1)
    interval = 1 / (limits.rate_per_s * DERATE * factor)  # as begin_dial reads the account row
    early = limits.early_s
    now = tat = 0.0
    sends: list[float] = []
    for gap, waiting, delays in calls:
        now += gap * unit / 10
        start = max(tat, now)
        ready = ready_slots(start - now, early, interval, waiting)
        for k in range(ready):
            delay = delays[k] if k < len(delays) else 0.0
            sends.append(now + delay * early)
        tat = start + ready * interval
    sends.sort()
    for i, first in enumerate(sends):
        in_window = sum(1 for t in sends[i:] if t < first + unit)
        assert in_window <= count, (in_window, count, unit)
    assert math.isfinite(tat)
