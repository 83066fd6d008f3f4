"""The consent ledger's rules: what an event is, how each row is hashed into the chain, and
how a number stands for the ledger (its keyed hash).

Each row's hash covers its id, the number's keyed hash (HMAC-SHA256 with the install's privacy
key, so erasing the plain number breaks nothing), scope, action, source, evidence digest, when
it happened, and the previous row's hash: an edited row no longer matches its hash, a deleted or
reordered one breaks the link to the next. `verify` walks the chain and names the first row
at fault. A number's consent in a scope is its latest event in that scope: a grant, or not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from dialer.erasure import Scrubber, could_spell
from dialer.phones import PhoneError, normalize

GENESIS = "0" * 64
SCOPE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")
DIGEST = re.compile(r"^[0-9a-f]{64}\Z")
ACTIONS = ("grant", "revoke")
EARLIEST_YEAR = 1990  # an older `occurred_at` is a mistake (and year 1 cannot be stored)


@dataclass(frozen=True)
class ConsentEvent:
    phone_e164: str
    scope: str
    action: str  # grant | revoke
    source: str
    occurred_at: datetime
    evidence_sha256: str | None = None


def row_hash(
    row_id: int,
    key: str,
    scope: str,
    action: str,
    source: str,
    evidence: str | None,
    occurred_at: datetime,
    prev_hash: str,
) -> str:
    """The hash of one row of the chain (never of the plain number)."""
    fields = [
        str(row_id),
        key,
        scope,
        action,
        source,
        evidence or "",
        occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        prev_hash,
    ]
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@dataclass(frozen=True)
class Break:
    """Where the chain breaks: the row's id, its position, and what is wrong."""

    row_id: int
    position: int
    problem: str


class ChainCheck:
    """Walks the chain row by row (in id order, each with the columns row_hash covers), so a
    ledger of any length is checked in constant memory."""

    def __init__(self) -> None:
        self.previous = GENESIS
        self.count = 0

    def feed(self, row) -> Break | None:
        """Check the next row; the break it shows, if any."""
        self.count += 1
        if row["prev_hash"] != self.previous:
            return Break(
                row["id"], self.count, "its link to the row before is broken (deleted or moved)"
            )
        expected = row_hash(
            row["id"],
            row["phone_key"],
            row["scope"],
            row["action"],
            row["source"],
            row["evidence_sha256"],
            row["occurred_at"],
            row["prev_hash"],
        )
        if row["row_hash"] != expected:
            return Break(row["id"], self.count, "its content does not match its hash (edited)")
        self.previous = row["row_hash"]
        return None


def event_from_fields(
    values: dict[str, str],
    *,
    region: str | None,
    scope: str | None,
    source: str | None,
    action: str | None,
    now: datetime,
) -> tuple[ConsentEvent | None, list[tuple[str, str]]]:
    """One event from a row's (or a request's) fields, or the problems, each naming its field.
    `scope`, `source` and `action` fill fields the row leaves out; `occurred_at` defaults to
    now; `evidence` (its text) or `evidence_sha256` records what the consent rests on."""
    problems: list[tuple[str, str]] = []
    phone = ""
    try:
        phone = normalize(values.get("phone", ""), region)
    except PhoneError as exc:
        problems.append(("phone", str(exc)))
    given_scope = (values.get("scope") or scope or "").strip()
    if not SCOPE.match(given_scope):
        problems.append(("scope", f"a scope such as 'marketing', got {given_scope!r}"))
    given_action = (values.get("action") or action or "grant").strip().lower()
    if given_action not in ACTIONS:
        problems.append(("action", f"grant or revoke, got {given_action!r}"))
    given_source = (values.get("source") or source or "").strip()
    if not given_source or len(given_source) > 500:
        problems.append(("source", "where the consent was given or taken back (1-500 characters)"))
    elif "\x00" in given_source:
        problems.append(("source", "a NUL byte (0x00)"))
    elif phone and could_spell(given_source, phone) and Scrubber([phone]).found_in(given_source):
        # The chain hashes the source: it could never be erased from it (dialer.forget).
        problems.append(("source", "names the number itself: describe where, not who"))
    digest = (values.get("evidence_sha256") or "").strip().lower() or None
    if digest is not None and not DIGEST.match(digest):
        problems.append(("evidence_sha256", "64 hexadecimal digits"))
    if digest is None and values.get("evidence"):
        digest = hashlib.sha256(values["evidence"].encode()).hexdigest()
    when = now
    if values.get("occurred_at"):
        try:
            when = datetime.fromisoformat(values["occurred_at"].strip())
        except ValueError:
            problems.append(("occurred_at", f"an ISO 8601 time, got {values['occurred_at']!r}"))
        else:
            if when.tzinfo is None:
                problems.append(("occurred_at", "give its offset (2026-11-20T10:00:00+05:30)"))
            elif when > now:
                problems.append(("occurred_at", "in the future"))
            elif when.year < EARLIEST_YEAR:
                problems.append(("occurred_at", f"before {EARLIEST_YEAR}"))
    if problems:
        return None, problems
    return ConsentEvent(phone, given_scope, given_action, given_source, when, digest), []
