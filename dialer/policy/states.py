"""Attempt and contact states, their order, and which ones hold a channel. Attempt transitions
only move forward. The migrations' CHECK constraints list exactly these (tests/policy)."""

from __future__ import annotations

LIVE = ("reserved", "dialing", "accepted", "ringing", "in-progress")
SENT = LIVE[1:]  # live and (possibly) at the provider: what the reconciler asks about
OUTCOMES = ("completed", "busy", "no-answer", "failed", "canceled")
TERMINAL = (*OUTCOMES, "not_dialed", "rejected", "unknown")
REPORTED = ("accepted", "ringing", "in-progress", *OUTCOMES)  # what a provider's event can say
CONTACT_STATES = ("pending", "dialing", "done", "exhausted", "failed", "suppressed", "canceled")
RANK = {state: rank for rank, state in enumerate(LIVE)} | {state: len(LIVE) for state in TERMINAL}


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def moves_forward(current: str, new: str) -> bool:
    """Whether an event saying `new` may change an attempt in `current` (never out of terminal)."""
    return not is_terminal(current) and RANK[new] > RANK[current]
