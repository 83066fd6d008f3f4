"""The do-not-call list: numbers nobody may dial, whatever campaign they appear in."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import chain
from pathlib import Path

from dialer.db import contacts, standing, webhooks
from dialer.db import dnc as stored
from dialer.db.types import Connection, Stream
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


@dataclass(frozen=True)
class RegistryListing:
    """Where numbers being listed come from: a dated copy of a registry."""

    registry: str
    copy_id: int


async def add_numbers(
    conn: Connection,
    numbers: list[str],
    reason: str | None,
    *,
    registry: RegistryListing | None = None,
    registered_on: list[date | None] | None = None,
) -> DncChange:
    """List the numbers and suppress every contact that is still waiting to be dialed with them.

    Pending contacts with a retry scheduled are suppressed too: once a person asks not to be
    called, no further attempt may reach them. From a registry's copy, each number keeps the
    registry and (when known) the day it was registered there.
    """
    change = DncChange()
    if registry is None:
        unique = sorted(set(numbers))
    else:
        days = dict(zip(numbers, registered_on or [None] * len(numbers), strict=True))
        unique = sorted(days)
    async with conn.transaction():
        added_at = await standing.begin_change(conn)  # no call committed between it and commit
        if registry is None:
            change.added = await stored.add(conn, unique, reason, added_at)
        else:
            days_in_order = [days[n] for n in unique]
            change.added = await stored.add_from_registry(
                conn, unique, days_in_order, reason, registry.registry, registry.copy_id, added_at
            )
        change.already_listed = len(unique) - change.added
        suppressed = await contacts.suppress_numbers(conn, unique)
        change.contacts_suppressed = len(suppressed)
        await webhooks.record_contacts_final(conn, suppressed)
    return change


async def remove_numbers(conn: Connection, numbers: list[str]) -> int:
    """Take numbers off the list. Contacts suppressed earlier stay suppressed (never re-armed)."""
    return await stored.remove(conn, sorted(set(numbers)))


async def list_numbers(conn: Connection) -> tuple[int, Stream]:
    """How many numbers are listed, and the list in number order (streamed: read it in the
    caller's transaction)."""
    return await stored.listed_count(conn), await stored.listing(conn)


@dataclass(frozen=True)
class DncRow:
    line: int
    raw: str  # the number as written
    reason: str | None
    registered_on: str | None  # as written, when the file has such a column


REGISTERED_COLUMNS = ("registered_on", "registered", "registration_date", "date_registered")


def read_dnc_csv(path: Path) -> Iterator[DncRow]:
    """The rows of a do-not-call file: a CSV with a `phone` column (else the first column),
    optional `reason` and `registered_on` columns; or a bare list of numbers; or the FTC's
    flat file (one `area code,number` pair per line, no header)."""
    source = CsvSource.open(path, what="do-not-call numbers")
    records = source.records()
    first = next(records, None)
    header = source.header
    lowered = [name.strip().lower() for name in header]
    if _ftc_pair(header):  # "212,5551234": no header, every line a pair
        yield DncRow(source.header_line, "+1" + "".join(header).replace(" ", ""), None, None)
        for line, values in chain([first] if first else [], records):
            if not _ftc_pair(values):
                shown = ",".join(values)[:60]
                raise InputError(f"{path}: line {line}: expected 'area code,number', got {shown!r}")
            yield DncRow(line, "+1" + "".join(values).replace(" ", ""), None, None)  # NANP
        return
    phone = lowered.index("phone") if "phone" in lowered else 0
    reason = lowered.index("reason") if "reason" in lowered else None
    registered = next((lowered.index(n) for n in REGISTERED_COLUMNS if n in lowered), None)
    if len(header) == 1 and _looks_like_number(header[0]):
        yield DncRow(source.header_line, header[0], None, None)  # a bare list, no header
    for line, values in chain([first] if first else [], records):
        if phone >= len(values):
            raise InputError(f"{path}: line {line}: no value in column {header[phone]!r}")
        yield DncRow(
            line,
            values[phone],
            values[reason] if reason is not None and reason < len(values) else None,
            values[registered] if registered is not None and registered < len(values) else None,
        )


def _ftc_pair(values: list[str]) -> bool:
    """A line of the FTC registry's flat file: a 3-digit area code and a 7-digit number."""
    return (
        len(values) == 2
        and len(values[0].strip()) == 3
        and len(values[1].strip()) == 7
        and (values[0] + values[1]).strip().isdigit()
    )


def _looks_like_number(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return digits >= 6 and digits >= len(text.strip()) - 6
