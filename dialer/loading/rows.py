"""Validation of CSV records into staged contacts or rejects; runs in worker processes.

Kept free of heavy imports: each spawned worker imports only this module and its needs.

Pure functions of their arguments (plus a bounded cache), so a chunk can be handed to any core.
A worker reads its segment of the file as CSV and hands back one block of bytes ready for
PostgreSQL's COPY (text format: tab between cells, `\\N` for NULL), with where each row ends
in it: only text crosses between processes, which keeps the main process's work small. A row
none of whose cells holds a backslash, a quote or a control character (almost every row) is
written by one `str.format` of a template made once per chunk; the others cell by cell, with
their escapes.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import threading
import time
import zoneinfo
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import time as TimeOfDay
from functools import cached_property, partial
from itertools import accumulate
from json.encoder import encode_basestring
from operator import itemgetter

from dialer.erasure import ErasedNumbers
from dialer.errors import InputError
from dialer.loading.records import Record, Segment, UnreadableRecord, read_segment
from dialer.phones import PhoneError, read_number
from dialer.policy.jurisdiction import jurisdiction_of
from dialer.policy.zones import inferred_timezone

_zone_names: dict[str, str] = {}
MAX_FIELD_CHARS = 65_536  # one cell; a longer one is a pasted document or a broken quote
PRIORITY_RANGE = (-(2**31), 2**31 - 1)  # contacts.priority is an integer
RAW_KEPT_CHARS = 1000  # of each value of a rejected row, what its report keeps


@dataclass(frozen=True)
class ColumnPlan:
    """Which CSV column feeds which contact attribute; everything else goes to `fields`."""

    header: tuple[str, ...]
    phone: int
    name: int | None
    timezone: int | None
    priority: int | None
    region: str
    window: tuple[TimeOfDay, TimeOfDay] = (TimeOfDay(0), TimeOfDay(23, 59, 59))  # to infer zones
    jurisdiction: int | None = None  # a `state`, `region` or `jurisdiction` column (kept in fields)
    default_jurisdiction: str | None = None

    @classmethod
    def from_header(
        cls,
        header: list[str],
        phone_column: str,
        region: str,
        path: str,
        window: tuple[TimeOfDay, TimeOfDay] = (TimeOfDay(0), TimeOfDay(23, 59, 59)),
        default_jurisdiction: str | None = None,
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
        columns = (find("name"), find("timezone"), find("priority"))
        where = next(
            (i for i in map(find, ("jurisdiction", "state", "region")) if i is not None), None
        )
        return cls(tuple(header), phone, *columns, region, window, where, default_jurisdiction)

    @property
    def field_columns(self) -> list[int]:
        taken = {self.phone, self.name, self.timezone, self.priority}
        return [i for i in range(len(self.header)) if i not in taken]

    @cached_property
    def _field_keys(self) -> list[tuple[int, str]]:
        return [(i, encode_basestring(self.header[i]) + ": ") for i in self.field_columns]

    def fields_json(self, values: list[str]) -> str:
        """The `fields` JSON object: what json.dumps(dict) gives, at a third of its cost."""
        return (
            "{"
            + ", ".join([key + encode_basestring(values[i]) for i, key in self._field_keys])
            + "}"
        )

    @cached_property
    def field_values(self) -> Callable[[Sequence[str]], Sequence[str]]:
        """A row's `fields` values, in column order (itemgetter: one call in C)."""
        columns = self.field_columns
        if len(columns) > 1:
            return itemgetter(*columns)
        # (functions of this module, not lambdas: a plan read here is sent to the workers)
        return partial(_one_field, columns[0]) if columns else _no_fields

    @cached_property
    def plain_fields(self) -> str:
        """The `fields` JSON of a row with nothing to escape, as a `str.format` template of
        its values, written as a COPY text cell (a header's backslash escaped)."""
        keys = [
            _copy_text(key).replace("{", "{{").replace("}", "}}") + '"{}"'
            for _, key in self._field_keys
        ]
        return "{{" + ", ".join(keys) + "}}"


def _one_field(only: int, values: Sequence[str]) -> tuple[str]:
    return (values[only],)


def _no_fields(values: Sequence[str]) -> tuple[()]:
    return ()


@dataclass
class ChunkResult:
    """What one segment produced: its valid rows as COPY bytes, its rejects, and the record
    it ended in the middle of (to be read again with the next segment)."""

    records: int = 0  # records read, valid or not (blank lines are not records)
    copy: bytes = b""  # COPY lines (CSV) of the valid rows, in file order
    ends: array = field(default_factory=lambda: array("Q"))  # where each row's line ends
    phones: list[str] = field(default_factory=list)  # each valid row's E.164 number
    rejects: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    # valid rows whose number had no country of its own, read in the campaign's default_region
    default_region: int = 0
    erased: list[str] = field(default_factory=list)  # valid rows' numbers erased on request
    open_tail: Segment | None = None

    def lines(self) -> list[str]:
        """The COPY lines one by one (for tests and small checks)."""
        starts = [0, *self.ends[:-1]]
        return [self.copy[a:b].decode() for a, b in zip(starts, self.ends, strict=True)]

    def split(self, chosen: list[int]) -> tuple[bytes, bytes]:
        """(the COPY bytes of every row but the `chosen` ones (indexes, ascending), theirs)."""
        if not chosen:
            return self.copy, b""
        view = memoryview(self.copy)
        rest: list[memoryview] = []
        picked: list[memoryview] = []
        done = 0
        for index in chosen:
            begin = self.ends[index - 1] if index else 0
            rest.append(view[done:begin])
            picked.append(view[begin : self.ends[index]])
            done = self.ends[index]
        rest.append(view[done:])
        return b"".join(rest), b"".join(picked)


def canonical_timezone(value: str) -> str:
    """The IANA name for `value`, matching case-insensitively; ValueError if there is none."""
    if not _zone_names:
        _zone_names.update({z.lower(): z for z in zoneinfo.available_timezones()})
    zone = _zone_names.get(value.lower())
    if zone is None:
        raise ValueError(f"unknown timezone: {value!r}")
    return zone


def _raw(plan: ColumnPlan, values: list[str]) -> dict[str, str]:
    """A rejected row's values as its report keeps them: NUL bytes shown as U+FFFD (the
    database's text cannot hold them), each cut to RAW_KEPT_CHARS."""
    raw = {name: _kept(value) for name, value in zip(plan.header, values, strict=False)}
    if len(values) > len(plan.header):
        raw["_extra"] = _kept(json.dumps(values[len(plan.header) :], ensure_ascii=False))
    return raw


def _kept(value: str) -> str:
    value = value.replace("\x00", "\ufffd")
    if len(value) > RAW_KEPT_CHARS:
        return f"{value[:RAW_KEPT_CHARS]}... ({len(value):,} characters)"
    return value


def _check_cells(plan: ColumnPlan, values: list[str]) -> None:
    """The cell at fault, as the row's reject reason."""
    for index, value in enumerate(values):
        if "\x00" in value:
            raise ValueError(f"a NUL byte in column {plan.header[index]!r}")
        if len(value) > MAX_FIELD_CHARS:
            raise ValueError(
                f"field too long: column {plan.header[index]!r} has {len(value):,} characters"
                f" (at most {MAX_FIELD_CHARS:,})"
            )


NONE_ERASED = ErasedNumbers("", frozenset())
# In a validation worker: the numbers erased on request, given once when it starts (the set
# may be large; it is not sent again with every segment)
_worker_erased = NONE_ERASED


def prepare_segment(
    plan: ColumnPlan,
    campaign_id: int,
    segment: Segment,
    delimiter: str,
    path: str,
    erased: ErasedNumbers | None = None,
) -> ChunkResult:
    """Read a segment of the file and validate its records (prepare_chunk), and tell which of
    its numbers were erased on request (`erased`; in a worker, the set it started with). Each
    number's keyed hash is computed here, on every core, not in the loading process.

    The cycle collector is paused meanwhile: a segment makes two containers per record, none
    in a cycle (reference counting frees them all), and the collector's passes over them were
    a tenth of the time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        found = read_segment(segment, delimiter, path)
        result = prepare_chunk(plan, campaign_id, found.records)
        result.erased = (erased or _worker_erased).among(result.phones)
    finally:
        if enabled:
            gc.enable()
    result.open_tail = found.open_tail
    return result


def prepare_chunk(plan: ColumnPlan, campaign_id: int, records: list[Record]) -> ChunkResult:
    """Validate a chunk of records: valid ones become `contacts` COPY lines, the rest rejects.

    COPY columns: campaign_id, row_no, phone_e164, name, timezone, priority, fields,
    jurisdiction. The number, zone and jurisdiction never need an escape (E.164, IANA names,
    codes like IN-KA); the name and the fields only in a row that is not plain.

    Each record is checked in the loop itself, with the plan's columns read into locals once
    per chunk: it runs for every row of every file, and a call and an attribute read per row
    were a tenth of it. `phones` remembers this chunk's numbers, so a number repeated nearby
    is read once (a refused one by its reason: an exception kept would keep this frame, and
    the chunk, alive until the cycle collector came by).
    """
    result = ChunkResult(records=len(records))
    lines: list[str] = []
    phones: dict[str, tuple[str, bool] | str] = {}
    head = f"{campaign_id}\t{{}}\t{{}}\t{{}}\t{{}}\t{{}}\t"
    plain_line = (head + plan.plain_fields + "\t{}\n").format
    escaped_line = (head + "{}\t{}\n").format
    field_values = plan.field_values
    width = len(plan.header)
    phone_at, name_at, zone_at, priority_at = plan.phone, plan.name, plan.timezone, plan.priority
    where_at, default_where = plan.jurisdiction, plan.default_jurisdiction
    region, (window_start, window_end) = plan.region, plan.window
    needs_escape = _ESCAPED.search
    from_default_region = 0
    for row_no, values in records:
        try:
            if isinstance(values, UnreadableRecord):
                raise ValueError(values.reason)
            if len(values) != width:
                if len(values) > width and any(v.strip() for v in values[width:]):
                    raise ValueError(f"too many fields: {len(values)}, the header has {width}")
                if len(values) < width:
                    values = values + [""] * (width - len(values))
            joined = "".join(values)  # one pass in C for the common case: nothing wrong
            plain = needs_escape(joined) is None
            if (not plain and "\x00" in joined) or len(joined) > MAX_FIELD_CHARS:
                _check_cells(plan, values[:width])
            raw_phone = values[phone_at]
            read = phones.get(raw_phone)
            if read is None:
                try:
                    read = read_number(raw_phone, region)
                except PhoneError as exc:
                    read = str(exc)
                phones[raw_phone] = read
            if isinstance(read, str):
                raise PhoneError(read)
            phone = read[0]
            name = values[name_at].strip() if name_at is not None else ""
            zone = values[zone_at].strip() if zone_at is not None else ""
            # None given: from the number; several zones: the most restrictive reading
            zone = (
                canonical_timezone(zone)
                if zone
                else inferred_timezone(phone, window_start, window_end) or ""
            )
            priority = _priority(values[priority_at]) if priority_at is not None else 0
            column = values[where_at] if where_at is not None else None
            where = jurisdiction_of(phone, column, default_where)
        except ValueError as exc:  # PhoneError is a ValueError
            reason = str(exc)
            result.rejects.append((row_no, _raw(plan, values), reason))
            result.reasons[_reason_key(reason)] += 1
            continue
        if plain:
            lines.append(
                plain_line(
                    row_no,
                    phone,
                    name or _NULL,
                    zone or _NULL,
                    priority,
                    *field_values(values),
                    where or _NULL,
                )
            )
        else:
            lines.append(
                escaped_line(
                    row_no,
                    phone,
                    _copy_text(name) if name else _NULL,
                    zone or _NULL,
                    priority,
                    _copy_text(plan.fields_json(values)),
                    where or _NULL,
                )
            )
        result.phones.append(phone)
        from_default_region += read[1]
    result.default_region = from_default_region
    text = "".join(lines)
    result.copy = text.encode()
    sizes = map(len, lines) if len(result.copy) == len(text) else (len(x.encode()) for x in lines)
    result.ends = array("Q", accumulate(sizes))
    return result


def _priority(cell: str) -> int:
    """A `priority` cell as an integer (0 if empty), or ValueError(reason)."""
    text = cell.strip()
    if not text:
        return 0
    try:
        priority = int(text) if len(text) <= 20 else PRIORITY_RANGE[1] + 1
    except ValueError:
        raise ValueError(f"priority is not a whole number: {text[:40]!r}") from None
    if not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
        raise ValueError(f"priority out of range: {text[:40]!r} (at most 2147483647)")
    return priority


_ESCAPED = re.compile('[\x00-\x1f"\\\\]')
_NULL = "\\N"  # NULL, in a COPY text line
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    """A value as a cell of a COPY text line: backslash, tab, and line ends escaped."""
    return value.translate(_COPY_ESCAPES)


def _reason_key(reason: str) -> str:
    """Group reasons for the summary: 'unknown timezone: 'X/Y'' counts as 'unknown timezone'."""
    return reason.split(":", 1)[0]


def worker_init(parent: int, erased: ErasedNumbers = NONE_ERASED) -> None:
    """Workers leave Ctrl-C to the main process, and exit if it dies (kill -9) under them;
    they keep the load's erased numbers."""
    global _worker_erased
    _worker_erased = erased
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(parent, 0)  # is the loading process still there?
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
