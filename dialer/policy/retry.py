"""What happens to a contact after an attempt ends: done, retry later, or no more attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dialer.campaign_spec import RetryPolicy
from dialer.durations import parse_duration
from dialer.policy.states import CALL_OUTCOMES, AttemptState
from dialer.policy.window import CallingRules

# A call that ended any other way than answered by a person may be tried again.
RETRYABLE = frozenset(CALL_OUTCOMES) - {AttemptState.COMPLETED}


@dataclass(frozen=True)
class NextStep:
    state: str  # contacts.state: done | pending | exhausted | failed
    next_attempt_at: datetime | None = None


def retry_delay(policy: RetryPolicy, outcome: str, attempt_no: int) -> timedelta | None:
    """The wait before the next attempt after `outcome` on attempt `attempt_no`; None: never."""
    setting = {
        AttemptState.BUSY: policy.busy,
        AttemptState.NO_ANSWER: policy.no_answer,
        AttemptState.FAILED: policy.failed,
        AttemptState.UNKNOWN: policy.unknown,
        AttemptState.CANCELED: policy.no_answer,
        AttemptState.MACHINE: policy.machine,
    }[AttemptState(outcome)]
    if setting == "never":
        return None
    if isinstance(setting, list):
        setting = setting[min(attempt_no, len(setting)) - 1]
    return parse_duration(setting)


def next_step(
    policy: RetryPolicy,
    rules: CallingRules,
    outcome: str,
    attempts_made: int,
    now: datetime,
    timezone: str | None,
    not_before: datetime | None = None,
    jurisdiction: str | None = None,
) -> NextStep:
    """Decide the contact's state after an attempt with `outcome` (attempts_made includes it);
    a retry is never due before `not_before` (policy.late, for an `unknown` outcome)."""
    if outcome == "completed" or (outcome == "machine" and policy.machine == "done"):
        return NextStep("done")
    if outcome == "rejected":
        return NextStep("failed")
    if outcome not in RETRYABLE:
        raise ValueError(f"not a final outcome: {outcome}")
    if attempts_made >= policy.max_attempts:
        return NextStep("exhausted")
    delay = retry_delay(policy, outcome, attempts_made)
    if delay is None:
        return NextStep("failed" if outcome == "failed" else "exhausted")
    earliest = now + delay
    if not_before is not None and not_before > earliest:
        earliest = not_before
    due = rules.next_open(earliest, timezone, jurisdiction)
    if due is None:
        return NextStep("exhausted")
    return NextStep("pending", due)
