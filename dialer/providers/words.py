"""Reading a provider's fields: its status words in every spelling, numbers, epochs, costs,
and a listed call as an event."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from dialer.calls import CallEvent, PlacedCall
from dialer.policy.states import OUTCOMES, AttemptState


def listed_event(call_id: str, word: Any, duration: Any, record: Mapping[str, Any]) -> CallEvent:
    """A call found in a provider's list of calls to a number (Provider.find_placed), as an
    event: its status word read the usual way (a call listed with none is `accepted`)."""
    return CallEvent(
        status=state_of_word(word) or "accepted",
        dedupe_key=f"{call_id}:poll:{normal_word(word)}",
        provider_call_id=call_id,
        duration_s=to_int(duration),
        payload={"listed": dict(record)},
    )


def polled_event(
    call: PlacedCall,
    state: str,
    record: Mapping[str, Any],
    *,
    duration: Any = None,
    answered_by: Any = None,
    cost: Any = None,
    cost_unit: Any = None,
) -> CallEvent:
    """What a provider's status look-up says of one call (Provider.fetch_statuses), as an
    event: its talk time only once completed, its price as a positive amount."""
    return CallEvent(
        status=state,
        dedupe_key=f"{call.provider_call_id}:poll:{state}",
        provider_call_id=call.provider_call_id,
        duration_s=to_int(duration) if state == "completed" else None,
        answered_by=answered_by,
        payload={"polled": dict(record)},
        cost=to_cost(cost),
        cost_unit=cost_unit,
    )


def short_text(value: object, limit: int = 64) -> str | None:
    """A provider's short code word as text, cut to `limit` characters (None if absent)."""
    return None if value is None else str(value)[:limit]


def calls_resource_event(call: PlacedCall, data: Mapping[str, Any]) -> CallEvent | None:
    """A call record of a Twilio-style Calls resource (Twilio and its relatives, Telnyx's
    TeXML) as a status look-up's event (Provider.poll_each); None for a word we do not know."""
    state = state_of_word(first(data, "status"))
    if state is None:
        return None
    return polled_event(
        call,
        state,
        data,
        duration=first(data, "duration"),
        answered_by=first(data, "answered_by"),
        cost=first(data, "price"),
        cost_unit=first(data, "price_unit"),
    )


def first(fields: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in `fields`, compared case-insensitively."""
    lowered = {str(k).lower(): v for k, v in fields.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value not in (None, ""):
            return value
    return None


def to_int(value: Any) -> int | None:
    """A whole number from a provider's field ('12', '12.0', 12); None if there is none.
    Infinite or huge figures come back as they are (huge), for the screening to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if number != number:  # NaN
        return None
    if number in (float("inf"), float("-inf")):
        return 2**63 if number > 0 else -(2**63)
    return int(number)


def from_epoch(seconds: Any) -> datetime | None:
    """A UTC instant from epoch seconds; None when absent or not a representable instant."""
    try:
        return datetime.fromtimestamp(float(seconds), UTC) if seconds else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def from_iso(value: Any) -> datetime | None:
    """An instant from ISO 8601 ("2024-01-15T10:30:00Z", with or without fractions or an
    offset) or, as some providers send, RFC 2822; None when absent or unreadable. An instant
    without a zone is taken as UTC."""
    if not value:
        return None
    text = str(value).strip()[:64]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


FINAL_WORDS: tuple[str, ...] = OUTCOMES  # a provider's final words are our outcomes


_PROGRESS_WORDS = {
    "queued": AttemptState.ACCEPTED,
    "initiated": AttemptState.ACCEPTED,
    "ringing": AttemptState.RINGING,
    "answered": AttemptState.IN_PROGRESS,
    "in-progress": AttemptState.IN_PROGRESS,
}


_RUN_TOGETHER = {"noanswer": "no-answer", "inprogress": "in-progress", "cancelled": "canceled"}


def normal_word(word: Any) -> str:
    """A provider's status word in one spelling: any case, spaces and underscores as hyphens
    ('No Answer', 'no_answer', 'NOANSWER' and 'no-answer' are all 'no-answer')."""
    text = re.sub(r"[\s_-]+", "-", str(word or "").strip().lower())
    return _RUN_TOGETHER.get(text, text)


def state_of_word(word: Any) -> str | None:
    """The attempt state for a Twilio-family status word (any spelling), None if it is not one."""
    text = normal_word(word)
    if text in FINAL_WORDS:
        return text
    return _PROGRESS_WORDS.get(text)


def to_cost(value: Any) -> Decimal | None:
    """A provider's price as a positive amount (Twilio writes charges negative); None if absent."""
    if value in (None, ""):
        return None
    try:
        return abs(Decimal(str(value)))
    except InvalidOperation:
        return None
