"""The rate limiter's arithmetic, apart from the database that stores its state.

An account's limiter state is one row (db.accounts), loaded under a lock, changed here, stored.
A GCRA clock: request k of a batch has its slot `ahead + k * interval` seconds from now (`ahead`
is how far the account's theoretical arrival time `tat` lies past now), and may leave at most
`early` seconds before its slot. A 429 pushes `tat` out (Retry-After, else an exponential
backoff) and slows the paced rate by SLOWDOWN; 30 quiet seconds let it recover by RECOVERY per
claim. Pure functions, so every guarantee is tested without a database (tests/dispatch): over
any window of the provider's unit, no more requests leave than its figure.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

DERATE = 0.95  # aim under the provider's figure, so a provider counting calendar windows agrees
# Requests that leave on their slots may reach the provider this much closer together (network,
# a busy machine, a paused process): every window keeps at least this much headroom in time,
# which for providers counting per second lowers the aim below DERATE (policy: 429s are rare,
# never routine).
JITTER_S = 0.05
SLOWDOWN = 0.8  # the paced rate after a 429 episode, as a factor of the one before
RECOVERY = 1.05  # per claim once 429s have stopped for QUIET
FLOOR = 0.2  # the paced rate never falls below this share of the aimed rate
QUIET = timedelta(seconds=30)  # no 429 for this long: the rate recovers, the streak ends
EPISODE = timedelta(seconds=1)  # 429s closer together than this are one episode
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
RETRY_AFTER_CAP_S = 600.0  # a Retry-After beyond this is taken as this (a provider's typo)


@dataclass(frozen=True)
class AccountLimits:
    """An account's limits as configured: the provider's figure and its channels."""

    name: str
    kind: str
    rate_per_s: float  # as configured (the provider's figure)
    window_s: float  # the unit the provider counts in (1 for N/s, 60 for N/min)
    channels: int
    late_placement_s: float = 300.0  # policy.late: how late a call may still be placed

    @property
    def derate(self) -> float:
        """The share of the figure aimed at: DERATE, lower when that leaves less than JITTER_S
        of headroom in a window (the headroom in time is half of `window * (1/derate - 1)`,
        the other half being a request's early leave)."""
        return min(DERATE, 1 / (1 + 2 * JITTER_S / self.window_s))

    @property
    def aimed_rate_per_s(self) -> float:
        """The rate the limiter paces at when no 429 slowed it: `derate` under the figure."""
        return self.rate_per_s * self.derate

    @property
    def early_s(self) -> float:
        """How far ahead of its slot a request may leave and still keep every window of the
        provider's unit within its figure: half the headroom, the other half left for jitter
        (at least JITTER_S)."""
        return 0.5 * self.window_s * (1 / self.derate - 1)

    @property
    def jitter_allowed_s(self) -> float:
        """How much closer together than their send times requests may arrive and still keep
        every window within the figure."""
        return 0.5 * self.window_s * (1 / self.derate - 1)


@dataclass
class DepartureSpacing:
    """One process's own create-call requests to one account, as they leave: a request waits
    until the figure's worth of requests before it left at least a window plus
    `jitter_allowed_s` ago. Requests sent on their slots always do (the slots are that far
    apart), so this waits only when a commit came back late and bunched requests that the
    slots had spread: their wait in a busy database never spends the headroom kept for the
    network. Across processes, the slots alone keep the figure."""

    limits: AccountLimits
    left: deque[float] = field(default_factory=deque)
    written: deque[float] = field(default_factory=deque)  # when requests were really written

    @property
    def figure(self) -> tuple[int, float]:
        """The provider's figure as (requests, seconds); under one a window, one per 1/rate."""
        count = math.floor(self.limits.rate_per_s * self.limits.window_s + 1e-9)
        if count >= 1:
            return count, self.limits.window_s
        return 1, 1 / self.limits.rate_per_s

    def reserve(self, now: float) -> float:
        """Book the next request's departure: the seconds it waits from `now` (0 mostly)."""
        count, window = self.figure
        leaves = now
        if len(self.left) >= count:
            leaves = self.left[-count] + window + self.limits.jitter_allowed_s
            leaves = now if leaves - now < 1e-9 else leaves  # float noise is not a wait
        self.left.append(leaves)
        while len(self.left) > count:
            self.left.popleft()
        return leaves - now

    def admit(self, now: float) -> float:
        """At the moment a request is written: 0 if it may go now (and it is counted as gone),
        else the seconds to wait before asking again. Booking (reserve) spaces requests as
        they are planned; this spaces them as they really leave, so that a process that
        stalls between the two (a busy or paused event loop) does not let the requests that
        piled up meanwhile out together. Called with nothing awaited between it and the write."""
        count, window = self.figure
        if len(self.written) >= count:
            opens = self.written[-count] + window + self.limits.jitter_allowed_s
            if opens - now > 1e-9:
                return opens - now
        self.written.append(now)
        while len(self.written) > count:
            self.written.popleft()
        return 0.0


@dataclass(frozen=True)
class LimiterState:
    """An account's shared limiter row, as read at the database's `now`."""

    aimed_rate_per_s: float
    rate_factor: float
    channels: int
    tat: datetime
    last_429_at: datetime | None
    throttle_streak: int
    now: datetime
    # Whether the account may send now: no operator's pause, no rest after its API failed
    # (dispatch.account_health). Not the limiter's: read with its row, under the same lock.
    sendable: bool = True
    # Where the account's next claim starts looking for a free channel slot: after the last
    # one given (free_channel_slots). Read and written with the row, under the same lock.
    next_slot: int = 0

    @property
    def paced_rate_per_s(self) -> float:
        return self.aimed_rate_per_s * self.rate_factor

    @property
    def interval_s(self) -> float:
        """Seconds between two request slots."""
        return 1.0 / self.paced_rate_per_s

    @property
    def start(self) -> datetime:
        """When the next request slot opens: `tat`, or now if the clock is idle."""
        return max(self.tat, self.now)

    @property
    def ahead_s(self) -> float:
        return (self.start - self.now).total_seconds()


def slots_within(state: LimiterState, horizon_s: float) -> int:
    """How many request slots open within the next `horizon_s` seconds."""
    ahead = horizon_s - state.ahead_s
    return math.floor(ahead / state.interval_s) + 1 if ahead >= 0 else 0


def claimable(tokens: int, waiting: int, max_batch: int, channels: int, live: int) -> int:
    """How many attempts a claim may reserve: the request slots opening within its horizon
    (`tokens`, slots_within) less those the attempts `waiting` to be sent will take, at most
    `max_batch`, and no more than the `channels` the `live` attempts leave free."""
    return max(0, min(tokens - waiting, max_batch, channels - live))


def free_channel_slots(
    channels: int, cursor: int, held: set[int | None], live: int, wanted: int
) -> list[int]:
    """The channel slots a claim gives, in order: the slots no live attempt holds, in ring order
    from `cursor` (the slot after the last one given), at most `wanted` and at most `channels`
    less the `live` attempts (each holds a channel, those holding no slot of the ring too: a
    re-opened one, or one holding a slot past a lowered `channels`). The ring is walked only
    until they are found: calls end in about the order they began, so the slots after the
    cursor are mostly free."""
    allowed = max(0, min(wanted, channels - live))
    free: list[int] = []
    slot = cursor % channels if channels > 0 else 0
    for _ in range(channels):
        if len(free) >= allowed:
            break
        if slot not in held:
            free.append(slot)
        slot = slot + 1 if slot + 1 < channels else 0
    return free


def next_slot_after(channels: int, given: list[int]) -> int:
    """Where the next claim starts looking: after the last slot given."""
    return (given[-1] + 1) % channels


def ready_slots(ahead_s: float, early_s: float, interval_s: float, waiting: int) -> int:
    """How many of `waiting` requests may be sent now: those whose slot opens within `early_s`.

    Rounded down, never toward zero: a slot even a little past `early_s` waits (the old
    `int()` let one leave up to a whole interval early, one request too many in a window).
    """
    if waiting <= 0 or ahead_s > early_s:
        return 0
    return min(waiting, math.floor((early_s - ahead_s) / interval_s) + 1)


def leave_in(state: LimiterState, position: int, early_s: float) -> float:
    """Seconds until the request `position` slots from the next one may leave: `early_s`
    before its slot, at once if that has come (0 for every slot within `early_s`)."""
    return max(0.0, state.ahead_s + position * state.interval_s - early_s)


def after_sends(state: LimiterState, sent: int) -> LimiterState:
    """The clock once `sent` requests took the next slots."""
    return replace(state, tat=state.start + timedelta(seconds=state.interval_s * sent))


def wait_for_slot(state: LimiterState, position: int, early_s: float) -> float:
    """Seconds until the request `position` slots from the next one may ask again (at least
    1 ms): half of `early_s` before its slot, so it is ready when it asks."""
    return max(0.001, state.ahead_s + position * state.interval_s - early_s / 2)


def recovered(state: LimiterState) -> LimiterState:
    """After a successful claim: once 429s stopped for QUIET, the rate creeps back up (never
    past the aimed rate) and the streak of 429 episodes ends."""
    quiet = state.last_429_at is None or state.last_429_at < state.now - QUIET
    ended = state.last_429_at is not None and state.last_429_at < state.now - QUIET
    return replace(
        state,
        rate_factor=min(1.0, state.rate_factor * RECOVERY) if quiet else state.rate_factor,
        throttle_streak=0 if ended else state.throttle_streak,
    )


def backoff_s(state: LimiterState, retry_after_s: float | None, jitter: float) -> float:
    """How long every worker on the account waits after a 429: the provider's Retry-After if it
    gave one (capped), else an exponential backoff on the streak of 429 episodes, capped, of
    which `jitter` (0..1) picks between half and all."""
    if retry_after_s is not None:
        return min(retry_after_s, RETRY_AFTER_CAP_S)
    full = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(state.throttle_streak, 16))
    return full * (0.5 + jitter * 0.5)


def after_429(state: LimiterState, retry_after_s: float | None, jitter: float) -> LimiterState:
    """A 429: the clock moves past the backoff, the rate slows (never below FLOOR), and a 429
    more than EPISODE after the last one starts a new episode of the streak."""
    new_episode = state.last_429_at is None or state.last_429_at < state.now - EPISODE
    wait = timedelta(seconds=backoff_s(state, retry_after_s, jitter))
    return replace(
        state,
        tat=max(state.tat, state.now + wait),
        rate_factor=max(FLOOR, state.rate_factor * SLOWDOWN),
        throttle_streak=state.throttle_streak + 1 if new_episode else state.throttle_streak,
        last_429_at=state.now,
    )


def booked_lookup(state: LimiterState) -> tuple[LimiterState, float]:
    """Book one non-dialing request (a status look-up) on the clock: the new state, and the
    seconds to wait before sending it (until its slot)."""
    return after_sends(state, 1), max(0.0, state.ahead_s)


def booked_if_idle(state: LimiterState) -> tuple[LimiterState, float] | None:
    """Book one look-up only if the clock is idle but for at most one request booked ahead
    (its next slot opens within one interval: no dial is waiting for one); the new state and
    the seconds to wait for the slot, else None (policy.lookups: the idle rate). A dial that
    comes meanwhile waits for one slot at most, across every process."""
    if state.ahead_s > state.interval_s:
        return None
    return booked_lookup(state)


BREAKER_WINDOW = 50  # the circuit breaker judges the last N settled attempts
BREAKER_MINIMUM = 20  # too few to judge below this


def breaker_trips(settled: int, bad: int) -> bool:
    """Whether a campaign must be paused: of its last BREAKER_WINDOW settled attempts (at least
    BREAKER_MINIMUM), more than half failed or were rejected."""
    return settled >= BREAKER_MINIMUM and bad * 2 > settled
