"""The limiter's pure arithmetic: whatever the pattern of claims, batch sizes, process clocks,
late asks, 429s and network delays, no window of the provider's unit carries more requests
than its figure."""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.dispatch.limiter import (
    BACKOFF_CAP_S,
    DERATE,
    FLOOR,
    JITTER_S,
    QUIET,
    RECOVERY,
    RETRY_AFTER_CAP_S,
    SLOWDOWN,
    AccountLimits,
    DepartureSpacing,
    LimiterState,
    after_429,
    after_sends,
    ask_ahead_s,
    backoff_s,
    booked_lookup,
    breaker_trips,
    leave_after,
    on_slot,
    recovered,
    slots_within,
    wait_for_slot,
)

FIGURES = st.sampled_from([(1, 1), (2, 1), (5, 1), (20, 1), (50, 1), (200, 60), (10, 60)])


T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _state(limits: AccountLimits, **changes) -> LimiterState:
    start = LimiterState(limits.aimed_rate_per_s, 1.0, limits.channels, T0, None, 0, T0)
    return replace(start, **changes)


def _dispatched(limits: AccountLimits, horizon: float, events: list, delayed: bool) -> list[float]:
    """When each request leaves, dispatched as `dialer run` does, in the limiter's arithmetic
    alone (seconds from T0). A claim takes the clock's next slots within `horizon` (at most as
    many as it wants) and advances the clock past them; each request asks to be committed
    `ask_ahead_s` and the senders' lead before its slot, plus a lateness of its own (a stalled
    process); on its slot (not passed, within `early_s` and the lead, not covered by a 429's
    hold) it is committed and leaves
    `early_s` before its slot at the soonest, after its commit came back (`delayed`: up to half
    a unit later); otherwise it is given the clock's next slot and asks again. A 429 pushes
    the clock out and holds every slot before it."""
    unit = limits.window_s
    early = limits.early_s
    state = _state(limits)
    held_until = -math.inf
    asks: list[tuple[float, int, float, float, float]] = []  # (at, order, slot, delay, lead)
    leaves: list[float] = []

    def seconds(moment: datetime) -> float:
        return (moment - T0).total_seconds()

    def ask(at: float, slot: float, delay: float, lead: float) -> None:
        nonlocal state
        if slot >= held_until and on_slot(slot - at, early + lead):
            leaves.append(at + delay + leave_after(slot - at, early))
            return
        now = replace(state, now=T0 + timedelta(seconds=at))  # under the account's lock
        new = seconds(now.start)
        state = after_sends(now, 1)
        if on_slot(new - at, early + lead):
            leaves.append(at + delay + leave_after(new - at, early))
        else:
            again = at + wait_for_slot(now, 0, early) - lead
            heapq.heappush(asks, (max(at, again), len(leaves), new, delay, lead))

    t = 0.0
    for gap, kind, wanted, lateness, delays, retry_after, jitter, lead in events:
        t += gap * unit / 10
        while asks and asks[0][0] <= t:
            ask(*_without_order(heapq.heappop(asks)))
        state = replace(state, now=T0 + timedelta(seconds=t))
        if kind == "429":
            state = after_429(state, retry_after, jitter)
            held_until = max(held_until, seconds(state.tat))
            continue
        taken = min(wanted, slots_within(state, horizon))
        start = seconds(state.start)
        for k in range(taken):
            slot = start + k * state.interval_s
            late = (lateness[k] if k < len(lateness) else 0.0) * unit / 5
            delay = (delays[k] if delayed and k < len(delays) else 0.0) * unit / 2
            asked = max(t, slot - ask_ahead_s(early) - lead + late)  # not before the claim
            heapq.heappush(asks, (asked, -1 - k, slot, delay, lead))
        state = recovered(after_sends(state, taken))
        assert FLOOR <= state.rate_factor <= 1.0
        assert state.paced_rate_per_s <= limits.aimed_rate_per_s + 1e-9
        assert state.paced_rate_per_s <= limits.rate_per_s * DERATE + 1e-9
    while asks:
        ask(*_without_order(heapq.heappop(asks)))
    return sorted(leaves)


def _without_order(
    entry: tuple[float, int, float, float, float],
) -> tuple[float, float, float, float]:
    at, _, slot, delay, lead = entry
    return at, slot, delay, lead


EVENTS = st.lists(
    st.tuples(
        st.floats(0, 2),  # time since the previous event, x unit / 10
        st.sampled_from(["claim", "claim", "claim", "claim", "429"]),
        st.integers(1, 40),  # requests the claim wants
        st.lists(st.floats(0, 1), max_size=40),  # each one's lateness in asking, x unit / 5
        st.lists(st.floats(0, 1), max_size=40),  # each one's commit time, x unit / 2
        st.one_of(st.none(), st.floats(0, 30)),  # Retry-After (429)
        st.floats(0, 1),  # backoff jitter (429)
        st.floats(0, 0.5),  # the claim's senders' lead: the last commit's length (LEAD_CAP_S)
    ),
    min_size=1,
    max_size=60,
)


def _fullest_window(arrivals: list[float], unit: float) -> int:
    """The most arrivals any window of `unit` seconds holds (one ending a float's rounding
    after an arrival does not count it: exact boundaries are not a thing of the real world)."""
    arrivals = sorted(arrivals)
    return max(
        (
            sum(1 for t in arrivals[i:] if t < first + unit - 1e-9)
            for i, first in enumerate(arrivals)
        ),
        default=0,
    )


@settings(max_examples=300, deadline=None)
@given(
    figure=FIGURES,
    horizon=st.sampled_from([0.5, 5.0]),
    events=EVENTS,
    ways=st.lists(st.floats(0, 1), max_size=200),  # each one's way to the provider, x jitter
)
def test_slots_given_at_claim_keep_every_window_within_the_figure(
    figure, horizon, events, ways
) -> None:
    """Slots given once by the claims, asks late or on time, 429s, any number of processes
    (the slots are shared, nothing else is): requests leave between `early_s` before their
    slots and the slots themselves, and arriving up to JITTER_S apart from their leave, no
    window of the provider's unit holds more than the figure. Every claimed request leaves."""
    count, unit = figure
    limits = AccountLimits("a", "sim", count / unit, unit, 1)
    leaves = _dispatched(limits, horizon, events, delayed=False)
    assert all(math.isfinite(t) for t in leaves)
    arrivals = [t + (ways[i] if i < len(ways) else 0.0) * JITTER_S for i, t in enumerate(leaves)]
    assert _fullest_window(arrivals, unit) <= count


@settings(max_examples=200, deadline=None)
@given(
    figure=FIGURES,
    horizon=st.sampled_from([0.5, 5.0]),
    events=EVENTS,
    ways=st.lists(st.floats(0, 1), max_size=200),
)
def test_late_commits_are_spaced_again_before_they_leave(figure, horizon, events, ways) -> None:
    """Commits come back up to half a window late, bunching requests the slots had spread;
    DepartureSpacing holds them back in the process, so that arriving up to JITTER_S apart
    from their leave, no window of the provider's unit holds more than the figure."""
    count, unit = figure
    limits = AccountLimits("a", "sim", count / unit, unit, 1)
    spacing = DepartureSpacing(limits)
    spaced = [back + spacing.reserve(back) for back in _dispatched(limits, horizon, events, True)]
    arrivals = [t + (ways[i] if i < len(ways) else 0.0) * JITTER_S for i, t in enumerate(spaced)]
    assert _fullest_window(arrivals, unit) <= count


@pytest.mark.parametrize("figure", [(10, 1), (1000, 1), (200, 60)])
def test_claims_on_time_keep_the_clock_busy(figure: tuple[int, int]) -> None:
    """Claims every half horizon, asks on time: no slot is lost or given twice, so over the
    run requests leave at the paced rate (per-second figures: one interval apart)."""
    count, unit = figure
    limits = AccountLimits("a", "sim", count / unit, unit, 10_000)
    horizon = 0.5
    claims = [(horizon / 2 * 10 / unit, "claim", 10_000, [], [], None, 0.0, 0.0)] * 400
    leaves = _dispatched(limits, horizon, claims, delayed=False)
    span = 400 * horizon / 2
    assert len(leaves) == pytest.approx(span * limits.aimed_rate_per_s, abs=horizon * count + 1)
    if unit == 1:
        interval = 1 / limits.aimed_rate_per_s
        steady = [t for t in leaves if t >= horizon]  # the first claim's may leave at once
        gaps = [b - a for a, b in itertools.pairwise(steady)]
        assert all(g == pytest.approx(interval) for g in gaps)


def test_a_slot_is_on_time_until_it_passes_and_leaves_early_s_before_it() -> None:
    assert on_slot(0.0, 0.05) and on_slot(0.05, 0.05)
    assert not on_slot(-0.001, 0.05)  # passed: given a new one
    assert not on_slot(0.051, 0.05)  # too far ahead: asked again
    assert leave_after(0.03, 0.05) == 0.0
    assert leave_after(0.2, 0.05) == pytest.approx(0.15)
    assert ask_ahead_s(0.05) < 0.05


def test_a_429_waits_retry_after_or_backs_off_and_one_burst_is_one_episode() -> None:
    limits = AccountLimits("a", "exotel", 200 / 60, 60, 10)
    state = _state(limits)
    throttled = after_429(state, 5.0, jitter=0.0)
    assert throttled.tat == T0 + timedelta(seconds=5)
    assert throttled.rate_factor == SLOWDOWN and throttled.throttle_streak == 1
    burst = after_429(replace(throttled, now=T0 + timedelta(seconds=0.5)), None, jitter=1.0)
    assert burst.throttle_streak == 1  # within EPISODE of the last one: the same episode
    later = after_429(replace(burst, now=T0 + timedelta(seconds=3)), None, jitter=1.0)
    assert later.throttle_streak == 2
    assert after_429(state, 10_000.0, 0.0).tat == T0 + timedelta(seconds=RETRY_AFTER_CAP_S)
    long_streak = replace(state, throttle_streak=40)
    assert backoff_s(long_streak, None, 1.0) == BACKOFF_CAP_S
    assert backoff_s(long_streak, None, 0.0) == BACKOFF_CAP_S / 2


def test_the_rate_recovers_only_after_quiet_and_never_past_the_aim() -> None:
    limits = AccountLimits("a", "sim", 10, 1, 1)
    slowed = replace(_state(limits), rate_factor=0.5, throttle_streak=3, last_429_at=T0)
    soon = recovered(replace(slowed, now=T0 + QUIET / 2))
    assert soon.rate_factor == 0.5 and soon.throttle_streak == 3
    quiet = recovered(replace(slowed, now=T0 + QUIET * 2))
    assert quiet.rate_factor == 0.5 * RECOVERY and quiet.throttle_streak == 0
    assert recovered(_state(limits)).rate_factor == 1.0


def test_a_lookup_books_one_slot_and_waits_for_it() -> None:
    limits = AccountLimits("a", "sim", 10, 1, 1)
    state = _state(limits, tat=T0 + timedelta(seconds=2))
    booked, wait = booked_lookup(state)
    assert wait == 2.0 and booked.tat == state.tat + timedelta(seconds=state.interval_s)
    idle, wait = booked_lookup(_state(limits, tat=T0 - timedelta(hours=1)))
    assert wait == 0.0 and idle.tat == T0 + timedelta(seconds=idle.interval_s)


def test_the_breaker_judges_only_enough_attempts_and_trips_past_half() -> None:
    assert not breaker_trips(settled=19, bad=19)
    assert not breaker_trips(settled=20, bad=10)
    assert breaker_trips(settled=20, bad=11)


@pytest.mark.parametrize("figure", [(1, 1), (3, 1), (20, 1), (50, 1), (200, 60), (3000, 3600)])
def test_the_worst_arrivals_still_fit_the_window(figure: tuple[int, int]) -> None:
    """The first of a window's requests arrives JITTER_S late, the one after the figure leaves
    `early_s` before its slot and arrives at once: it still falls outside the window."""
    count, unit = figure
    limits = AccountLimits("a", "sim", count / unit, unit, 1)
    interval = 1 / limits.aimed_rate_per_s
    first_arrives = JITTER_S
    one_too_many_arrives = count * interval - limits.early_s
    assert one_too_many_arrives >= first_arrives + unit - 1e-9


def test_requests_on_their_slots_are_never_held() -> None:
    """Requests that leave as their slots say, even `early_s` early, wait for nothing."""
    limits = AccountLimits("a", "sim", 3.0, 1.0, 1)
    spacing = DepartureSpacing(limits)
    interval = 1 / limits.aimed_rate_per_s
    for k in range(50):
        leave = k * interval - (limits.early_s if k % 2 else 0.0)
        assert spacing.reserve(max(0.0, leave)) == 0.0


def test_a_bunch_after_a_late_commit_leaves_a_window_apart() -> None:
    """Three requests to a 3/s account leave together, a fourth comes back 10 ms later: it
    waits until a second and the headroom have passed since the first."""
    limits = AccountLimits("a", "sim", 3.0, 1.0, 1)
    spacing = DepartureSpacing(limits)
    assert [spacing.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert spacing.reserve(0.01) == pytest.approx(1.0 + limits.jitter_allowed_s - 0.01)
    slow = DepartureSpacing(AccountLimits("b", "sim", 0.5, 1.0, 1))  # one per two seconds
    assert slow.reserve(0.0) == 0.0
    assert slow.reserve(0.5) == pytest.approx(1.5 + slow.limits.jitter_allowed_s)


@settings(max_examples=200, deadline=None)
@given(
    figure=FIGURES,
    ready=st.lists(st.floats(0, 5), min_size=1, max_size=60),  # x unit: when each may be written
    ways=st.lists(st.floats(0, 1), max_size=60),  # each one's way to the provider, x jitter
)
def test_requests_piled_up_by_a_stall_are_admitted_a_window_apart(figure, ready, ways) -> None:
    """However the requests reach the moment of writing (all at once after a stall of the
    process, in any order), admitting each just before it is written lets no window of the
    provider's unit hold more than the figure, with up to JITTER_S on the way."""
    count, unit = figure
    spacing = DepartureSpacing(AccountLimits("a", "sim", count / unit, unit, 1))
    pending = [(t * unit, k) for k, t in enumerate(ready)]
    heapq.heapify(pending)
    arrivals = []
    while pending:
        now, k = heapq.heappop(pending)
        wait = spacing.admit(now)
        if wait > 0:
            heapq.heappush(pending, (now + wait, k))
        else:
            arrivals.append(now + (ways[k] if k < len(ways) else 0.0) * JITTER_S)
    assert len(arrivals) == len(ready)
    assert _fullest_window(arrivals, unit) <= count


def test_a_stall_that_piles_requests_up_lets_them_out_a_window_apart() -> None:
    """Six requests to a 3/s account reach the write together after a stall: three go, the
    fourth waits a second and the headroom from the first."""
    limits = AccountLimits("a", "sim", 3.0, 1.0, 1)
    spacing = DepartureSpacing(limits)
    assert [spacing.admit(5.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert spacing.admit(5.0) == pytest.approx(1.0 + limits.jitter_allowed_s)
    assert spacing.admit(6.0 + limits.jitter_allowed_s) == 0.0
