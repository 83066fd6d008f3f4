"""The do-not-call list: numbers nobody may dial, whatever campaign they appear in."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import asyncpg

from dialer.db import contacts, webhooks
from dialer.db import dnc as stored
from dialer.errors import InputError
from dialer.loading.csv_source import CsvSource
from dialer.phones import PhoneError, normalize


@dataclass
class DncChange:
    added: int = 0
    already_listed: int = 0
    contacts_suppressed: int = 0


def normalize_all(
    raw_numbers: Iterable[str], region: str | None
) -> tuple[list[str], list[tuple[int, str]]]:
    """(E.164 numbers, (position, message) for the ones that are not numbers)."""
    good, bad = [], []
    for index, raw in enumerate(raw_numbers):
        try:
            good.append(normalize(raw, region))
        except PhoneError as exc:
            bad.append((index, f"{raw!r}: {exc}"))
    return good, bad


async def add_numbers(
    conn: asyncpg.Connection, numbers: list[str], reason: str | None
) -> DncChange:
    """List the numbers and suppress every contact that is still waiting to be dialed with them.

    Pending contacts with a retry scheduled are suppressed too: once a person asks not to be
    called, no further attempt may reach them.
    """
    change = DncChange()
    unique = sorted(set(numbers))
    async with conn.transaction():
        change.added = await stored.add(conn, unique, reason)
        change.already_listed = len(unique) - change.added
        suppressed = await contacts.suppress_numbers(conn, unique)
        change.contacts_suppressed = len(suppressed)
        await webhooks.record_contacts_final(conn, suppressed)
    return change


async def remove_numbers(conn: asyncpg.Connection, numbers: list[str]) -> int:
    """Take numbers off the list. Contacts suppressed earlier stay suppressed (never re-armed)."""
    return await stored.remove(conn, sorted(set(numbers)))


async def list_numbers(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await stored.listing(conn)


def read_dnc_csv(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, raw number, reason) from a CSV with a `phone` column (else the first column)."""
    source = CsvSource.open(path)
    records = source.records()
    first = next(records, None)
    lowered = [name.lower() for name in source.header]
    phone = lowered.index("phone") if "phone" in lowered else 0
    reason = lowered.index("reason") if "reason" in lowered else None
    if len(source.header) == 1 and _looks_like_number(source.header[0]):
        yield source.header_line, source.header[0], None  # a bare list of numbers, no header
    for line, values in chain([first] if first else [], records):
        if phone >= len(values):
            raise InputError(f"{path}: line {line}: no value in column {source.header[phone]!r}")
        yield (
            line,
            values[phone],
            values[reason] if reason is not None and reason < len(values) else None,
        )


def _looks_like_number(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return digits >= 6 and digits >= len(text.strip()) - 6
