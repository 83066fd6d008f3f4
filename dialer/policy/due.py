"""When the next contact becomes due: the Python reading of db.due's tests.

Given, per campaign and zone, the pending contact that is first in line (not on the do-not-call
list; db.contacts.first_due_per_zone), a contact is due at the first instant at or after its
retry delay at which its calling window is open (CallingRules.next_open). The dispatcher's idle
decision, `campaign show` and the dashboard all read "next due" from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from dialer.policy.window import CallingRules


@dataclass(frozen=True)
class FirstInLine:
    """The pending contact first in line in one zone (and jurisdiction) of one campaign."""

    campaign_id: int
    timezone: str | None
    contact_id: int
    phone_e164: str
    name: str | None
    attempts: int
    next_attempt_at: datetime | None  # None: no retry delay
    jurisdiction: str | None = None  # policy.jurisdiction: the laws' hours for it


def due_at(contact: FirstInLine, rules: CallingRules, now: datetime) -> datetime | None:
    """When `contact` becomes due (now at the earliest); None if its window never opens again."""
    start = now if contact.next_attempt_at is None else max(now, contact.next_attempt_at)
    return rules.next_open(start, contact.timezone, contact.jurisdiction)


def next_due(
    firsts: Iterable[FirstInLine], rules: Mapping[int, CallingRules], now: datetime
) -> tuple[datetime, FirstInLine] | None:
    """The earliest (instant, contact) at which one of `firsts` becomes due, or None."""
    best: tuple[datetime, FirstInLine] | None = None
    for contact in firsts:
        when = due_at(contact, rules[contact.campaign_id], now)
        if when is not None and (best is None or when < best[0]):
            best = (when, contact)
    return best
