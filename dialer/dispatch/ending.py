"""When a claim loop that found nothing to claim waits, and when it ends with which exit code:
pure decisions over what the store read (dispatch.store.IdleFacts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum

from dialer.dispatch.store import IdleFacts
from dialer.policy.due import next_due
from dialer.policy.window import CallingRules
from dialer.waiting import iso

IDLE_POLL_S = 0.5  # an idle loop looks again at least this often
SENDING_POLL_S = 0.05  # while this process's own claims are being sent
# --wait, with calls in flight and nothing to claim: look again as one ends (its channel frees,
# dialer.wakeups), or after this if no notice comes
LIVE_POLL_S = 1.0
# A wait this long or longer may be decided on a reused look-up of the first waiting contacts
# (decided_on_reused)
REUSED_FROM_S = 0.2
# An idle loop's look-up of the first waiting contact per zone (IdleFacts.firsts) reads every
# waiting contact of its campaigns (a million: about 0.3 s, bench/due_walk.py), and the loop
# asks every IDLE_POLL_S: it is reused until reading it has taken at most this share of the
# time (dialer.shared_answers), for the decisions decided_on_reused allows.
FIRSTS_BUSY_SHARE = 0.05


class ExitCode(IntEnum):
    """`dialer run`'s exit codes, for cron."""

    DONE = 0  # all work done
    ERROR = 1  # a failure (the database gone past its limit, a task that died)
    BAD_CONFIG = 2  # bad configuration or input, or the provider refused the account
    WORK_LEFT = 3  # stopped by the window, a deadline or a signal, with work left


@dataclass(frozen=True)
class Wait:
    """Look again after `seconds`; `next_due_at`, when the waiting contacts were read, is when
    the first of them is due (the claim need not be asked before: dispatcher)."""

    seconds: float
    next_due_at: datetime | None = field(default=None, compare=False)
    # for calls in flight to end: a channel of the account freed ends the wait (wakeups)
    for_calls: bool = False


@dataclass(frozen=True)
class Finish:
    """No contact waits to be dialed: end once the campaigns are judged (finish())."""

    complete_first: bool  # nothing is live: mark finished campaigns `completed` first


@dataclass(frozen=True)
class End:
    """End this account's loop with `code`, saying `why` in the run's closing lines."""

    code: ExitCode
    why: str


def when_idle(
    facts: IdleFacts,
    rules: Mapping[int, CallingRules],
    *,
    sending_here: bool,
    wait_for_calls: bool,
    deadline: datetime | None,
    idle_s: float,
) -> Wait | Finish | End:
    """What an account's claim loop does when its round claimed nothing.

    - This process's own claims are still being sent: wait a moment.
    - No contact waits: with --wait and calls in flight, wait; else Finish.
    - The next contact is due after the run's limit (its deadline, else `idle_s` from now),
      or never: with --wait and calls in flight, wait; else end with work left.
    - Otherwise wait until it is due (at most IDLE_POLL_S).
    """
    if sending_here:
        return Wait(SENDING_POLL_S)
    if not facts.firsts:
        if wait_for_calls and facts.live:
            return Wait(LIVE_POLL_S, for_calls=True)
        return Finish(complete_first=not facts.live)
    due = next_due(facts.firsts, rules, facts.now)
    next_due_at = due[0] if due else None
    limit = deadline or (facts.now + timedelta(seconds=idle_s))
    if next_due_at is None or next_due_at > limit:
        if wait_for_calls and facts.live:
            return Wait(LIVE_POLL_S, next_due_at, for_calls=True)
        if next_due_at is None:
            return End(ExitCode.WORK_LEFT, "no waiting contact's calling window opens again")
        why = f"the next contact is due at {iso(next_due_at)}, after this run's limit"
        why += f" ({iso(limit)})"
        return End(ExitCode.WORK_LEFT, why)
    due_in_s = (next_due_at - facts.now).total_seconds()
    return Wait(min(IDLE_POLL_S, max(SENDING_POLL_S, due_in_s)), next_due_at)


def decided_on_reused(step: Wait | Finish | End) -> bool:
    """Whether a step decided on a reused look-up of the first waiting contacts stands: only a
    wait of REUSED_FROM_S or more, which at worst leaves a contact that became due meanwhile (a
    load, a sooner retry) until the look-up is read again, 20 times what reading it took. An
    end, or the short wait of a contact due now (stale, when the claim found none), is decided
    again on a fresh look-up."""
    return isinstance(step, Wait) and step.seconds >= REUSED_FROM_S


def finish(*, work_left: bool, live: bool) -> End:
    """How a loop with no contact waiting ends: all done, or work only a change can move."""
    if not work_left:
        return End(ExitCode.DONE, "every contact is final")
    why = "no contact may be dialed again without a change"
    if live:
        why += " (calls in flight settle without this run; --wait waits)"
    return End(ExitCode.WORK_LEFT, why)
