"""Validation of CSV records into staged contacts or rejects; runs in worker processes.

Pure functions of their arguments (plus a bounded cache), so a chunk can be handed to any core.
The output is CSV text ready for PostgreSQL's COPY, which keeps the main process's work small.
"""

from __future__ import annotations

import csv
import io
import json
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field

from dialer.errors import InputError
from dialer.phones import PhoneError, normalize

_CACHE_LIMIT = 200_000
_phone_cache: dict[str, str | PhoneError] = {}
_zone_names: dict[str, str] = {}


@dataclass(frozen=True)
class ColumnPlan:
    """Which CSV column feeds which contact attribute; everything else goes to `fields`."""

    header: tuple[str, ...]
    phone: int
    name: int | None
    timezone: int | None
    priority: int | None
    region: str

    @classmethod
    def from_header(
        cls, header: list[str], phone_column: str, region: str, path: str
    ) -> ColumnPlan:
        """Find the columns by name (case and surrounding spaces ignored)."""
        lowered = {name.strip().lower(): i for i, name in enumerate(header)}

        def find(name: str) -> int | None:
            return lowered.get(name.strip().lower())

        phone = find(phone_column)
        if phone is None:
            raise InputError(
                f"{path}: no column named {phone_column!r} for phone numbers; columns found:"
                f" {', '.join(header)} (set phone_column in the campaign file)"
            )
        return cls(tuple(header), phone, find("name"), find("timezone"), find("priority"), region)

    @property
    def field_columns(self) -> list[int]:
        taken = {self.phone, self.name, self.timezone, self.priority}
        return [i for i in range(len(self.header)) if i not in taken]


@dataclass
class ChunkResult:
    """What one chunk produced: COPY-ready staged rows, reject rows, and reject reasons."""

    staged_csv: bytes
    staged: int
    rejects: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)


def normalize_cached(raw: str, region: str) -> str:
    """normalize() with a bounded per-process cache, so a repeated number is validated once."""
    key = f"{region}|{raw}"
    hit = _phone_cache.get(key)
    if hit is None:
        try:
            hit = normalize(raw, region)
        except PhoneError as exc:
            hit = exc
        if len(_phone_cache) >= _CACHE_LIMIT:
            _phone_cache.clear()
        _phone_cache[key] = hit
    if isinstance(hit, PhoneError):
        raise hit
    return hit


def canonical_timezone(value: str) -> str:
    """The IANA name for `value`, matching case-insensitively; ValueError if there is none."""
    if not _zone_names:
        _zone_names.update({z.lower(): z for z in zoneinfo.available_timezones()})
    zone = _zone_names.get(value.lower())
    if zone is None:
        raise ValueError(f"unknown timezone: {value!r}")
    return zone


def _raw(plan: ColumnPlan, values: list[str]) -> dict[str, str]:
    raw = dict(zip(plan.header, values, strict=False))
    if len(values) > len(plan.header):
        raw["_extra"] = json.dumps(values[len(plan.header) :], ensure_ascii=False)
    return raw


def _contact(plan: ColumnPlan, values: list[str]) -> tuple[str, str, str, int, str]:
    """(phone, name, timezone, priority, fields JSON) for one record, or ValueError(reason)."""
    width = len(plan.header)
    if len(values) > width and any(v.strip() for v in values[width:]):
        raise ValueError(f"too many fields: {len(values)}, the header has {width}")
    if len(values) < width:
        values = values + [""] * (width - len(values))
    phone = normalize_cached(values[plan.phone], plan.region)
    name = values[plan.name].strip() if plan.name is not None else ""
    zone = values[plan.timezone].strip() if plan.timezone is not None else ""
    if zone:
        zone = canonical_timezone(zone)
    priority = 0
    if plan.priority is not None and values[plan.priority].strip():
        try:
            priority = int(values[plan.priority])
        except ValueError:
            raise ValueError(f"priority is not a whole number: {values[plan.priority]!r}") from None
    fields = {plan.header[i]: values[i] for i in plan.field_columns}
    return phone, name, zone, priority, json.dumps(fields, ensure_ascii=False)


def prepare_chunk(plan: ColumnPlan, records: list[tuple[int, list[str]]]) -> ChunkResult:
    """Validate a chunk of records; valid ones become COPY CSV lines, the rest rejects."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    result = ChunkResult(staged_csv=b"", staged=0)
    for row_no, values in records:
        try:
            phone, name, zone, priority, fields = _contact(plan, values)
        except ValueError as exc:  # PhoneError is a ValueError
            reason = str(exc)
            result.rejects.append((row_no, _raw(plan, values), reason))
            result.reasons[_reason_key(reason)] += 1
            continue
        writer.writerow((row_no, phone, name, zone, priority, fields))
        result.staged += 1
    result.staged_csv = out.getvalue().encode()
    return result


def _reason_key(reason: str) -> str:
    """Group reasons for the summary: 'unknown timezone: 'X/Y'' counts as 'unknown timezone'."""
    return reason.split(":", 1)[0]
