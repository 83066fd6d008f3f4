"""Making a provider's event safe to store, and saying what was wrong with it.

An authentic callback (or status look-up) can still carry values PostgreSQL refuses or that
would settle an attempt wrongly: NUL bytes and lone surrogates (text and jsonb cannot hold
them), infinite or negative durations, sequence numbers past `integer`, ids past `bigint`,
timestamps centuries away. `screen` cleans every value so the event can always be stored, and
lists each problem. A problem in a value the outcome depends on (status, call id, attempt id,
sequence, duration) makes the event *held*: stored as it came, never applied, so the
reconciler settles that attempt from the provider's own records instead of a guess.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from dialer.calls import CallEvent
from dialer.policy.states import REPORTED

MAX_INT = 2**31 - 1  # PostgreSQL integer
MAX_BIGINT = 2**63 - 1
MAX_DURATION_S = 7 * 86400  # no call lasts a week; a larger figure is a broken field
MAX_ID_CHARS = 200
MAX_KEY_CHARS = 500
MAX_COST = Decimal(10**6)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_DEPTH = 32  # nesting kept in a stored payload


@dataclass(frozen=True)
class Screened:
    event: CallEvent
    problems: tuple[str, ...] = ()
    held: bool = False  # a deciding value was wrong: store, never apply
    ask_provider: bool = False  # a status word we do not know: look the call up now

    @property
    def problem(self) -> str | None:
        return "; ".join(self.problems) or None


def clean_text(value: str) -> tuple[str, bool]:
    """`value` without NUL bytes and with lone surrogates replaced; whether it changed."""
    cleaned = value.replace("\x00", "")
    cleaned = cleaned.encode("utf-8", "replace").decode("utf-8")
    return cleaned, cleaned != value


def clean_payload(value: Any, depth: int = 0) -> tuple[Any, bool]:
    """A JSON-storable copy of a payload (text cleaned, non-finite numbers as text, nesting
    capped); whether anything had to change."""
    if depth == 0 and _storable_as_is(value):
        return value, False
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None:
        return value, False
    if isinstance(value, int):
        return (value, False) if abs(value) <= MAX_BIGINT else (str(value), True)
    if isinstance(value, float):
        return (value, False) if math.isfinite(value) else (str(value), True)
    if depth >= MAX_DEPTH:
        return "(nested too deep)", True
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            name, key_changed = clean_text(str(key))
            out[name], item_changed = clean_payload(item, depth + 1)
            changed = changed or key_changed or item_changed
        return out, changed
    if isinstance(value, list | tuple):
        items = [clean_payload(item, depth + 1) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return clean_text(str(value))


def _storable_as_is(value: Any) -> bool:
    """The common case in one pass in C: JSON with no NUL, no lone surrogate, no NaN or
    infinity, no number past bigint, nested at most MAX_DEPTH (json.dumps recurses in C, so
    the depth is checked on the text's brackets only when it is deep at all)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return False
    if "\\u0000" in text or (text.count("[") + text.count("{") > MAX_DEPTH and _deep(value)):
        return False
    return not _BIG_NUMBER.search(text)


_BIG_NUMBER = re.compile(r"(?<![\w.\"])-?[0-9]{19,}")  # a bare number of 19+ digits


def _deep(value: Any, depth: int = 0) -> bool:
    if depth >= MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_deep(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_deep(v, depth + 1) for v in value)
    return False


def screen(event: CallEvent, now: datetime | None = None) -> Screened:
    """The event with every value made storable, its problems, and whether it is held."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    held = False

    def note(problem: str, *, deciding: bool) -> None:
        nonlocal held
        problems.append(problem)
        held = held or deciding

    status, changed = clean_text(str(event.status))
    unknown_word = changed or status not in REPORTED
    if unknown_word:
        note(f"unknown status {status[:40]!r}", deciding=True)
    key, changed = clean_text(event.dedupe_key)
    if changed or len(key) > MAX_KEY_CHARS:
        key = key[:MAX_KEY_CHARS]
    call_id = event.provider_call_id
    if call_id is not None:
        call_id, changed = clean_text(str(call_id))
        if changed or len(call_id) > MAX_ID_CHARS:
            note("call id with NUL bytes, bad UTF-8 or over 200 characters", deciding=True)
            call_id = call_id[:MAX_ID_CHARS]
    attempt_id = event.attempt_id
    if attempt_id is not None and not 1 <= attempt_id <= MAX_BIGINT:
        note(f"attempt id {attempt_id} out of range", deciding=True)
        attempt_id = None
    sequence = event.sequence
    if sequence is not None and not 0 <= sequence <= MAX_INT:
        note(f"sequence number {sequence} out of range", deciding=True)
        sequence = None
    duration = event.duration_s
    if duration is not None and not 0 <= duration <= MAX_DURATION_S:
        note(f"duration {duration} s out of range", deciding=True)
        duration = None
    occurred = event.occurred_at
    if occurred is not None and occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)  # "-0000" in an RFC 2822 date: UTC, unknown zone
    if occurred is not None and not EARLIEST <= occurred <= now + timedelta(days=1):
        note(f"timestamp {occurred.isoformat()} out of range, ignored", deciding=False)
        occurred = None
    cost = event.cost
    if cost is not None and not (cost.is_finite() and abs(cost) < MAX_COST):
        note("cost out of range, ignored", deciding=False)
        cost = None
    answered_by = _short(event.answered_by, note)
    cost_unit = _short(event.cost_unit, note)
    payload, changed = clean_payload(dict(event.payload))
    if changed:
        note("payload had NUL bytes, bad UTF-8 or unstorable numbers: cleaned", deciding=False)
    cleaned = replace(
        event,
        status=status,
        dedupe_key=key,
        provider_call_id=call_id,
        attempt_id=attempt_id,
        sequence=sequence,
        duration_s=duration,
        occurred_at=occurred,
        cost=cost,
        cost_unit=cost_unit,
        answered_by=answered_by,
        payload=payload,
    )
    return Screened(cleaned, tuple(problems), held, ask_provider=unknown_word)


def _short(value: str | None, note: Any) -> str | None:
    if value is None:
        return None
    text, changed = clean_text(str(value))
    if changed or len(text) > MAX_ID_CHARS:
        note("an over-long or unreadable text field, cut", deciding=False)
    return text[:MAX_ID_CHARS]
