"""When an idle claim loop waits and when it ends (dispatch.ending), as pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dialer.campaign_spec import CampaignSpec
from dialer.dispatch.ending import (
    IDLE_POLL_S,
    LIVE_POLL_S,
    SENDING_POLL_S,
    End,
    ExitCode,
    Finish,
    Wait,
    decided_on_reused,
    finish,
    when_idle,
)
from dialer.dispatch.store import IdleFacts
from dialer.policy.due import FirstInLine
from dialer.policy.window import CallingRules

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SPEC = CampaignSpec.model_validate(
    {
        "name": "c",
        "account": "a",
        "caller_id": ["+918047112233"],
        "default_region": "IN",
        "timezone": "UTC",
        "window": {"start": "09:00", "end": "18:00"},
    }
)
RULES = {1: CallingRules.of(SPEC)}


def first(next_at: datetime | None) -> FirstInLine:
    return FirstInLine(1, "UTC", 7, "+919845000001", None, 1, next_at)


def idle(facts: IdleFacts, **options) -> Wait | Finish | End:
    chosen = {"sending_here": False, "wait_for_calls": False, "deadline": None, "idle_s": 60.0}
    return when_idle(facts, RULES, **(chosen | options))


def test_own_claims_being_sent_wait_a_moment() -> None:
    assert idle(IdleFacts(NOW, False, []), sending_here=True) == Wait(SENDING_POLL_S)


@pytest.mark.parametrize(("live", "wait"), [(False, False), (True, False), (True, True)])
def test_no_contact_waiting(live: bool, wait: bool) -> None:
    step = idle(IdleFacts(NOW, live, []), wait_for_calls=wait)
    if wait:
        assert step == Wait(LIVE_POLL_S, for_calls=True)  # --wait: for the calls in flight
    else:
        assert step == Finish(complete_first=not live)


def test_a_contact_due_soon_is_waited_for() -> None:
    assert idle(IdleFacts(NOW, False, [first(NOW + timedelta(seconds=0.2))])) == Wait(0.2)
    assert idle(IdleFacts(NOW, False, [first(NOW + timedelta(seconds=30))])) == Wait(IDLE_POLL_S)


def test_a_contact_due_after_the_limit_ends_the_run_with_work_left() -> None:
    later = first(NOW + timedelta(minutes=5))
    step = idle(IdleFacts(NOW, False, [later]), idle_s=60.0)
    assert isinstance(step, End) and step.code == ExitCode.WORK_LEFT
    assert "2026-12-05T12:05:00" in step.why and "after this run's limit" in step.why
    # a deadline beyond it: wait for it
    deadline = NOW + timedelta(minutes=10)
    assert idle(IdleFacts(NOW, False, [later]), deadline=deadline) == Wait(IDLE_POLL_S)
    # with --wait and calls in flight, keep waiting for them
    assert idle(IdleFacts(NOW, True, [later]), wait_for_calls=True) == Wait(
        LIVE_POLL_S, for_calls=True
    )


def test_outside_the_window_the_next_opening_decides() -> None:
    evening = NOW.replace(hour=19)
    step = idle(IdleFacts(evening, False, [first(None)]))
    assert isinstance(step, End) and "2026-12-06T09:00:00" in step.why


def test_finish() -> None:
    assert finish(work_left=False, live=False) == End(ExitCode.DONE, "every contact is final")
    left = finish(work_left=True, live=True)
    assert left.code == ExitCode.WORK_LEFT and "--wait waits" in left.why
    assert "--wait" not in finish(work_left=True, live=False).why


@pytest.mark.parametrize(
    ("step", "stands"),
    [
        (Wait(IDLE_POLL_S), True),
        (Wait(LIVE_POLL_S), True),
        (Wait(SENDING_POLL_S), False),  # a contact due now: the claim found none, so stale
        (Finish(complete_first=True), False),
        (End(ExitCode.WORK_LEFT, "the next contact is due later"), False),
    ],
)
def test_a_reused_look_up_decides_only_a_wait(step, stands: bool) -> None:
    assert decided_on_reused(step) is stands


def test_an_end_on_an_old_look_up_would_be_wrong() -> None:
    """Why an end is never decided on a reused look-up: one read before a call was settled
    busy says nobody waits (Finish), while a fresh one has the retry due in a minute (Wait)."""
    before = idle(IdleFacts(NOW, True, []))
    after = idle(IdleFacts(NOW, True, [first(NOW + timedelta(minutes=1))]))
    assert isinstance(before, Finish) and isinstance(after, Wait)
    assert not decided_on_reused(before)
