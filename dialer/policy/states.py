"""The attempt state machine, as data: the states, their order, which ones hold a channel, and
every transition with what it does to the channel and to the contact.

Attempt transitions only move forward (RANK), and out of a terminal state only when a fact
re-opens or corrects an attempt closed `unknown` (a lack of facts, never one). Each
compare-and-set in db.attempts takes its source states from TRANSITIONS; tests/policy checks
that every one matches exactly those states, and that the migrations' CHECK constraints list
exactly ATTEMPT_STATES and CONTACT_STATES.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AttemptState(StrEnum):
    """Where an attempt is; each value is the word stored in attempts.state."""

    RESERVED = "reserved"
    DIALING = "dialing"
    ACCEPTED = "accepted"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    MACHINE = "machine"  # answered, by a machine, voicemail or fax (policy.answers)
    NOT_DIALED = "not_dialed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class ContactState(StrEnum):
    """Where a contact is; each value is the word stored in contacts.state."""

    PENDING = "pending"
    DIALING = "dialing"
    DONE = "done"
    EXHAUSTED = "exhausted"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELED = "canceled"


class TransitionName(StrEnum):
    """The changes an attempt's state may go through (TRANSITIONS)."""

    RESERVE = "reserve"
    BEGIN_DIAL = "begin_dial"
    ADVANCE = "advance"
    HOLD_FINAL = "hold_final"
    RELEASE = "release"
    NOT_PLACED = "not_placed"
    SETTLE = "settle"
    REOPEN = "reopen"
    CORRECT_UNKNOWN = "correct_unknown"


A = AttemptState
LIVE: tuple[AttemptState, ...] = (A.RESERVED, A.DIALING, A.ACCEPTED, A.RINGING, A.IN_PROGRESS)
SENT = LIVE[1:]  # live and (possibly) at the provider: what the reconciler asks about
OUTCOMES: tuple[AttemptState, ...] = (A.COMPLETED, A.BUSY, A.NO_ANSWER, A.FAILED, A.CANCELED)
MACHINE = A.MACHINE
TERMINAL: tuple[AttemptState, ...] = (*OUTCOMES, MACHINE, A.NOT_DIALED, A.REJECTED, A.UNKNOWN)
ATTEMPT_STATES: tuple[AttemptState, ...] = (*LIVE, *TERMINAL)
REPORTED = (A.ACCEPTED, A.RINGING, A.IN_PROGRESS, *OUTCOMES)  # what a provider's event can say
CONTACT_STATES: tuple[ContactState, ...] = tuple(ContactState)
FINAL_CONTACT = (ContactState.DONE, ContactState.EXHAUSTED, ContactState.FAILED)  # by its calls
RANK: dict[str, int] = {state: rank for rank, state in enumerate(LIVE)}
RANK |= {state: len(LIVE) for state in TERMINAL}
assert set(ATTEMPT_STATES) == set(AttemptState), "every state is live or terminal"


@dataclass(frozen=True)
class Transition:
    """A change of an attempt's state: from any of `sources` to one of `targets`."""

    sources: tuple[AttemptState, ...]
    targets: tuple[AttemptState, ...]
    channel: str  # what happens to its channel slot
    contact: str  # what happens to its contact


# Keyed by TransitionName (a str: callers may name one by its word)
TRANSITIONS: dict[str, Transition] = {
    TransitionName.RESERVE: Transition(
        (), (A.RESERVED,), "takes a free slot", "pending -> dialing, one attempt more"
    ),
    TransitionName.BEGIN_DIAL: Transition(
        (A.RESERVED,), (A.DIALING,), "keeps it", "stays dialing (lease, window, campaign hold)"
    ),
    TransitionName.ADVANCE: Transition(
        LIVE, (A.ACCEPTED, A.RINGING, A.IN_PROGRESS), "keeps it", "stays dialing (only upward)"
    ),
    TransitionName.HOLD_FINAL: Transition(
        SENT,
        (A.IN_PROGRESS,),
        "keeps it",
        "stays dialing: a final word waits for its answering-machine result",
    ),
    TransitionName.RELEASE: Transition(
        (A.RESERVED,), (A.NOT_DIALED,), "frees it", "dialing -> pending, the attempt uncounted"
    ),
    TransitionName.NOT_PLACED: Transition(
        (A.DIALING,), (A.NOT_DIALED,), "frees it", "dialing -> pending, the attempt uncounted"
    ),  # the provider answered that it placed no call (a 429, a refusal before dialing)
    TransitionName.SETTLE: Transition(
        LIVE,
        (*OUTCOMES, MACHINE, A.REJECTED, A.UNKNOWN),
        "frees it",
        "dialing -> next step (policy.retry)",
    ),
    TransitionName.REOPEN: Transition(
        (A.UNKNOWN,),
        SENT,
        "takes a free slot, else an unsent reservation's (settle.take_slot_for_reopened);"
        " none only while every slot holds a sent call (counted all the same)",
        "-> dialing, withdrawing its re-dial",
    ),
    TransitionName.CORRECT_UNKNOWN: Transition(
        (A.UNKNOWN,), OUTCOMES, "none", "untouched (it was dialed again meanwhile)"
    ),
}


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def moves_forward(current: str, new: str) -> bool:
    """Whether an event saying `new` may change an attempt in `current` (never out of terminal)."""
    return not is_terminal(current) and RANK[new] > RANK[current]


@dataclass(frozen=True)
class Tally:
    """One count of a campaign's attempts as every report says it, in this order (the
    campaign_summary view's column, the dashboard API's and page's word, `campaign show`)."""

    word: str  # the attempt state's word ("in-flight": every live one)
    column: str  # the column of the campaign_summary view (sql/migrations)


IN_FLIGHT = "in-flight"
TALLIES: tuple[Tally, ...] = (
    Tally(A.COMPLETED, "completed"),
    Tally(A.BUSY, "busy"),
    Tally(A.NO_ANSWER, "no_answer"),
    Tally(A.FAILED, "call_failed"),
    Tally(A.CANCELED, "call_canceled"),
    Tally(A.REJECTED, "rejected"),
    Tally(A.UNKNOWN, "unknown"),
    Tally(IN_FLIGHT, "in_flight"),
    Tally(MACHINE, "machine"),
)
# Every terminal state a call can end in is counted, and only `not_dialed` (no call) is not.
assert {t.word for t in TALLIES} == {*TERMINAL, IN_FLIGHT} - {A.NOT_DIALED}
# The outcomes of a call that was placed: what a caller id's answer rate is judged over.
CALL_OUTCOMES: tuple[AttemptState, ...] = (*OUTCOMES, A.UNKNOWN, MACHINE)
