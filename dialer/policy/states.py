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

LIVE = ("reserved", "dialing", "accepted", "ringing", "in-progress")
SENT = LIVE[1:]  # live and (possibly) at the provider: what the reconciler asks about
OUTCOMES = ("completed", "busy", "no-answer", "failed", "canceled")
MACHINE = "machine"  # answered, by a machine, voicemail or fax (policy.answers)
TERMINAL = (*OUTCOMES, MACHINE, "not_dialed", "rejected", "unknown")
ATTEMPT_STATES = (*LIVE, *TERMINAL)
REPORTED = ("accepted", "ringing", "in-progress", *OUTCOMES)  # what a provider's event can say
CONTACT_STATES = ("pending", "dialing", "done", "exhausted", "failed", "suppressed", "canceled")
FINAL_CONTACT = ("done", "exhausted", "failed")  # decided by its calls (webhook contact.final)
RANK = {state: rank for rank, state in enumerate(LIVE)} | {state: len(LIVE) for state in TERMINAL}


@dataclass(frozen=True)
class Transition:
    """A change of an attempt's state: from any of `sources` to one of `targets`."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    channel: str  # what happens to its channel slot
    contact: str  # what happens to its contact


TRANSITIONS = {
    "reserve": Transition(
        (), ("reserved",), "takes a free slot", "pending -> dialing, one attempt more"
    ),
    "begin_dial": Transition(
        ("reserved",), ("dialing",), "keeps it", "stays dialing (lease, window, campaign hold)"
    ),
    "advance": Transition(
        LIVE, ("accepted", "ringing", "in-progress"), "keeps it", "stays dialing (only upward)"
    ),
    "hold_final": Transition(
        SENT,
        ("in-progress",),
        "keeps it",
        "stays dialing: a final word waits for its answering-machine result",
    ),
    "release": Transition(
        ("reserved",), ("not_dialed",), "frees it", "dialing -> pending, the attempt uncounted"
    ),
    "not_placed": Transition(
        ("dialing",), ("not_dialed",), "frees it", "dialing -> pending, the attempt uncounted"
    ),  # the provider answered that it placed no call (a 429, a refusal before dialing)
    "settle": Transition(
        LIVE,
        (*OUTCOMES, MACHINE, "rejected", "unknown"),
        "frees it",
        "dialing -> next step (policy.retry)",
    ),
    "reopen": Transition(
        ("unknown",),
        SENT,
        "takes a free slot, else an unsent reservation's (settle.take_slot_for_reopened);"
        " none only while every slot holds a sent call (counted all the same)",
        "-> dialing, withdrawing its re-dial",
    ),
    "correct_unknown": Transition(
        ("unknown",), OUTCOMES, "none", "untouched (it was dialed again meanwhile)"
    ),
}


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def moves_forward(current: str, new: str) -> bool:
    """Whether an event saying `new` may change an attempt in `current` (never out of terminal)."""
    return not is_terminal(current) and RANK[new] > RANK[current]
