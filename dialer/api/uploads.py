"""Contact uploads of the campaign API: a request body streamed to a file (memory stays flat
whatever its size), and JSON lines turned into the CSV the loader reads, so both are validated
exactly as `dialer campaign load` validates a file.

JSON lines: one object per line; its keys are the columns (in the order first seen), its values
strings, numbers, booleans or null (empty). A line that is not such an object is rejected with
its line number; the other lines load.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import StreamReader

from dialer.errors import InvalidFields, StalledError, TooLargeError
from dialer.loading.csv_source import MAX_COLUMNS
from dialer.loading.summary import LISTED_REJECTS as LISTED

MAX_UPLOAD_BYTES = 2 << 30  # 2 GiB: ten million contacts with room to spare
CHUNK = 1 << 16


async def save_body(body: StreamReader, target: Path, stall_s: float) -> str:
    """Write the body to `target` as it arrives; its SHA-256. Over MAX_UPLOAD_BYTES: refused;
    nothing received for `stall_s`: refused (a client that stalls holds nothing for long)."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        while True:
            try:
                async with asyncio.timeout(stall_s):
                    chunk = await body.read(CHUNK)
            except TimeoutError:
                raise StalledError(f"request body: nothing received for {stall_s:g} s") from None
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise TooLargeError(f"request body: over {MAX_UPLOAD_BYTES >> 30} GiB")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


@dataclass
class Converted:
    """A JSON-lines body as CSV: its rejected lines (the first LISTED of them with their
    reasons, and how many there were by reason: memory stays flat however many), and for each
    CSV record the CSV line it starts on (a value holding a newline spans lines) and its JSON
    line."""

    rejects: list[tuple[int, str]] = field(default_factory=list)
    reject_counts: Counter[str] = field(default_factory=Counter)
    csv_lines: array = field(default_factory=lambda: array("Q"))
    json_lines: array = field(default_factory=lambda: array("Q"))

    @property
    def rejected(self) -> int:
        return sum(self.reject_counts.values())

    def reject(self, line: int, reason: str, kind: str) -> None:
        if len(self.rejects) < LISTED:
            self.rejects.append((line, reason))
        self.reject_counts[kind] += 1

    def line_of(self, csv_row: int) -> int:
        """The JSON line of the CSV record starting on line `csv_row`."""
        index = bisect_left(self.csv_lines, csv_row)
        if index < len(self.csv_lines) and self.csv_lines[index] == csv_row:
            return self.json_lines[index]
        return csv_row


def _cell(value: object) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _writable(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (JSON lets a value hold a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read(raw: bytes) -> tuple[dict | None, str, str]:
    """A line's object, or None with (why, the kind of why: the reason counted)."""
    try:
        item = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "not a JSON object", "not a JSON object"
    if not isinstance(item, dict):
        return None, "not a JSON object", "not a JSON object"
    escaped = b"\\u" in raw  # a lone surrogate can only come from a \\uXXXX escape
    for key, value in item.items():
        cell = _cell(value)
        if cell is None:
            return None, f"field {key[:100]!r}: a nested value (use a string)", "a nested value"
        if escaped and (not _writable(key) or not _writable(cell)):
            shown = key[:100] if _writable(key) else "(its name)"
            return (
                None,
                f"field {shown!r}: a lone UTF-16 surrogate (\\ud800-\\udfff), not text",
                "a lone UTF-16 surrogate",
            )
    return item, "", ""


def json_lines_to_csv(source: Path, target: Path) -> Converted:
    """Two passes over the saved body: the columns, then the CSV rows (each line is read
    again rather than remembered, so a million bad lines cost no memory)."""
    converted = Converted()
    columns: dict[str, None] = {}
    with source.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            item, _, _ = _read(raw)
            if item is None:
                continue
            for key in item:
                if key not in columns:
                    if len(columns) == MAX_COLUMNS:
                        raise InvalidFields(
                            f"line {number}: more than {MAX_COLUMNS} distinct keys",
                            [(f"line {number}", f"more than {MAX_COLUMNS} distinct keys")],
                        )
                    columns[key] = None
    if not columns:
        raise InvalidFields(
            "no contacts: the body holds no JSON object", [("body", "no JSON object")]
        )
    names = list(columns)
    with source.open("rb") as lines, target.open("w", encoding="utf-8", newline="") as out:
        record = io.StringIO()
        writer = csv.writer(record, lineterminator="\n")
        writer.writerow(names)
        out.write(record.getvalue())
        csv_line = 1 + record.getvalue().count("\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            item, why, kind = _read(raw)
            if item is None:
                converted.reject(number, why, kind)
                continue
            record.seek(0)
            record.truncate()
            writer.writerow([_cell(item.get(name)) for name in names])
            text = record.getvalue()
            out.write(text)
            converted.csv_lines.append(csv_line)
            converted.json_lines.append(number)
            csv_line += text.count("\n")
    return converted
