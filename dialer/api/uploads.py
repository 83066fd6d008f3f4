"""Contact uploads of the campaign API: a request body streamed to a file (memory stays flat
whatever its size), and JSON lines turned into the CSV the loader reads, so both are validated
exactly as `dialer campaign load` validates a file.

JSON lines: one object per line; its keys are the columns (in the order first seen), its values
strings, numbers, booleans or null (empty). A line that is not such an object is rejected with
its line number; the other lines load.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from dialer.errors import InvalidFields, TooLargeError
from dialer.loading.csv_source import MAX_COLUMNS

MAX_UPLOAD_BYTES = 2 << 30  # 2 GiB: ten million contacts with room to spare
CHUNK = 1 << 16


async def save_body(chunks: AsyncIterator[bytes], target: Path) -> str:
    """Write the body to `target` as it arrives; its SHA-256. Over MAX_UPLOAD_BYTES: refused."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise TooLargeError(f"request body: over {MAX_UPLOAD_BYTES >> 30} GiB")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


@dataclass
class Converted:
    """A JSON-lines body as CSV: its rejected lines, and for each CSV record the CSV line it
    starts on (a value holding a newline spans lines) and its JSON line."""

    rejects: list[tuple[int, str]] = field(default_factory=list)
    csv_lines: array = field(default_factory=lambda: array("Q"))
    json_lines: array = field(default_factory=lambda: array("Q"))

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


def json_lines_to_csv(source: Path, target: Path) -> Converted:
    """Two passes over the saved body: the columns, then the CSV rows."""
    converted = Converted()
    columns: dict[str, None] = {}
    bad: dict[int, str] = {}
    with source.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except (ValueError, RecursionError):
                bad[number] = "not a JSON object"
                continue
            if not isinstance(item, dict):
                bad[number] = "not a JSON object"
                continue
            nested = next((k for k, v in item.items() if _cell(v) is None), None)
            if nested is not None:
                bad[number] = f"field {nested!r}: a nested value (use a string)"
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
            if number in bad:
                converted.rejects.append((number, bad[number]))
                continue
            if not raw.strip():
                continue
            item = json.loads(raw)
            record.seek(0)
            record.truncate()
            writer.writerow([_cell(item.get(name)) for name in names])
            text = record.getvalue()
            out.write(text)
            converted.csv_lines.append(csv_line)
            converted.json_lines.append(number)
            csv_line += text.count("\n")
    return converted
