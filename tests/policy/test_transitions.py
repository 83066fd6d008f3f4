"""The state machine as data: every compare-and-set of db.attempts matches an attempt in exactly
the source states TRANSITIONS declares for it, and the declared machine hangs together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dialer.calls import CallEvent
from dialer.db import attempts
from dialer.policy.states import (
    ATTEMPT_STATES,
    LIVE,
    OUTCOMES,
    TERMINAL,
    TRANSITIONS,
    moves_forward,
)
from dialer.providers.send_deadline import SEND_WINDOW
from tests.callbacks.test_callbacks import new_attempt


def test_the_declared_machine_hangs_together() -> None:
    for name, transition in TRANSITIONS.items():
        assert set(transition.sources) <= set(ATTEMPT_STATES), name
        assert transition.targets and set(transition.targets) <= set(ATTEMPT_STATES), name
        # Out of a terminal state only where a fact reaches an attempt closed `unknown`.
        assert set(transition.sources) & set(TERMINAL) <= {"unknown"}, name
    reached = {t for transition in TRANSITIONS.values() for t in transition.targets}
    assert reached == set(ATTEMPT_STATES)  # every state is reachable, none is declared idle
    assert TRANSITIONS["reserve"].sources == ()  # the one way in


async def _put_in(db, attempt_id: int, state: str) -> None:
    """Force the attempt into `state`, its reservation fresh (a re-opened attempt holds no slot
    in any state, which every CHECK allows), last changed long ago: a statement that matches
    it sets `updated_at`."""
    await db.execute(
        """UPDATE attempts SET state = $2, slot = NULL, reopened_at = now(), outcome = NULL,
               lease_expires_at = now() + interval '1 minute', dial_before = NULL,
               provider_call_id = NULL, held_outcome = NULL, updated_at = '2000-01-01'
           WHERE id = $1""",
        attempt_id,
        state,
    )


async def _begin_dial(db, attempt_id: int) -> None:
    await attempts.begin_dialing(
        db,
        [(attempt_id, "+918047112233", 20, 60)],
        SEND_WINDOW,
        account="no-such-account",  # no clock to set
        tat_if_all_sent=datetime.now(UTC),
    )


def _close(name: str, outcome: str):
    async def run(db, attempt_id: int) -> None:
        await attempts.close(
            db,
            attempt_id,
            outcome,
            TRANSITIONS[name].sources,
            error=None,
            duration_s=None,
            ended_at=None,
            provider_call_id=None,
            answered_by=None,
            completed_if_answered=False,
            cost=None,
            cost_unit=None,
        )

    return run


async def _reopen(db, attempt_id: int) -> None:
    await attempts.reopen(db, attempt_id, "accepted", None, timedelta(minutes=1))


async def _correct(db, attempt_id: int) -> None:
    await attempts.correct_unknown(db, attempt_id, "busy", None, None)


async def _hold_final(db, attempt_id: int) -> None:
    await attempts.hold_final(db, attempt_id, CallEvent("completed", ""), timedelta(seconds=10))


async def _advance(db, attempt_id: int) -> None:
    lower = [s for s in LIVE if moves_forward(s, "in-progress")]
    await attempts.advance(
        db,
        attempt_id,
        "in-progress",
        lower,
        provider_call_id=None,
        occurred_at=None,
        answered_by=None,
    )


CASES = {
    "begin_dial": _begin_dial,
    "release": None,  # a close: built from the transition's name and its outcome
    "not_placed": None,
    "settle": None,
    "reopen": _reopen,
    "correct_unknown": _correct,
    "advance": _advance,
    "hold_final": _hold_final,
}
EXPECTED_TARGET = {
    "begin_dial": "dialing",
    "release": "not_dialed",
    "not_placed": "not_dialed",
    "settle": "busy",
    "reopen": "accepted",
    "correct_unknown": "busy",
    "advance": "in-progress",
    "hold_final": "in-progress",
}


@pytest.mark.parametrize("name", list(CASES))
async def test_each_compare_and_set_matches_exactly_its_sources(db, tmp_path: Path, name: str):
    run = CASES[name] or _close(name, EXPECTED_TARGET[name])
    attempt_id = await new_attempt(db, tmp_path)
    sources = TRANSITIONS[name].sources
    if name == "advance":  # an event moves an attempt only upward, so only from lower states
        sources = tuple(s for s in sources if moves_forward(s, "in-progress"))
    matched = []
    for state in ATTEMPT_STATES:
        await _put_in(db, attempt_id, state)
        await run(db, attempt_id)
        now, changed = await db.fetchrow(
            "SELECT state, updated_at > '2000-01-01' FROM attempts WHERE id = $1", attempt_id
        )
        if changed:
            assert now == EXPECTED_TARGET[name], (state, now)
            assert now in TRANSITIONS[name].targets
            matched.append(state)
        else:
            assert now == state
    assert matched == list(sources)


def test_outcomes_are_the_providers_final_words() -> None:
    assert set(OUTCOMES) <= set(TRANSITIONS["settle"].targets)
    assert set(TRANSITIONS["correct_unknown"].targets) == set(OUTCOMES)
