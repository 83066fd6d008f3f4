"""Streaming a CSV file of unknown origin: encoding, BOM, delimiter, line numbers.

The file is read in fixed-size blocks and decoded incrementally, so memory does not grow with the
file; an undecodable byte is reported with the line it is on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dialer.errors import InputError

BLOCK_SIZE = 1 << 20
DELIMITERS = (",", ";", "\t")
UTF8_BOM = codecs.BOM_UTF8
csv.field_size_limit(1 << 20)  # one cell over 1 MiB means a broken quote, reported as such


class UndecodableError(InputError):
    """Bytes that are not valid in the encoding tried; carries the line for the message."""

    def __init__(self, path: Path, encoding: str, line: int) -> None:
        super().__init__(f"{path}: line {line}: bytes that are not valid {encoding}")
        self.line = line
        self.encoding = encoding


@dataclass
class CsvSource:
    """One pass over a CSV file. `bytes_read` and `sha256` advance as records are consumed."""

    path: Path
    encoding: str
    delimiter: str = ","
    header: list[str] = field(default_factory=list)
    header_line: int = 1
    bytes_read: int = 0
    size: int = 0
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @classmethod
    def open(cls, path: Path, encoding: str = "utf-8") -> CsvSource:
        """Check the file exists and is not empty; the header is read by `records()`."""
        if not path.exists():
            raise InputError(f"{path}: contacts file not found")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        size = path.stat().st_size
        if size == 0:
            raise InputError(f"{path}: the file is empty (expected a header row and contacts)")
        return cls(path=path, encoding=encoding, size=size)

    def _lines(self) -> Iterator[str]:
        """Decoded lines, each ending in '\\n' (the last one may not); CRLF is left to csv."""
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="strict")
        lines_done = 0
        pending = ""
        first = True
        with self.path.open("rb") as handle:
            while True:
                block = handle.read(BLOCK_SIZE)
                final = not block
                self._digest.update(block)
                self.bytes_read += len(block)
                if first and self.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
                    block = block.removeprefix(UTF8_BOM)
                first = False
                try:
                    text = decoder.decode(block, final=final)
                except UnicodeDecodeError as exc:
                    line = lines_done + pending.count("\n") + block[: exc.start].count(b"\n") + 1
                    raise UndecodableError(self.path, self.encoding, line) from None
                if text:
                    parts = (pending + text).split("\n")
                    pending = parts.pop()
                    for part in parts:
                        lines_done += 1
                        yield part + "\n"
                if final:
                    if pending:
                        yield pending
                    return

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """Yield (line number where the record starts, values) for each non-blank data row.

        The first non-blank line is the header; its delimiter decides the file's delimiter.
        """
        lines = self._lines()
        header_text = ""
        for number, line in enumerate(lines, 1):
            if line.strip():
                header_text, self.header_line = line, number
                break
        if not header_text:
            raise InputError(f"{self.path}: the file has no header row (only blank lines)")
        self.delimiter = sniff_delimiter(header_text)
        self.header = read_header(self.path, header_text, self.delimiter)

        reader = csv.reader(lines, delimiter=self.delimiter)
        start = self.header_line
        try:
            for values in reader:
                row_no = start + 1
                start = self.header_line + reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue
                yield row_no, values
        except csv.Error as exc:
            raise InputError(
                f"{self.path}: line {start + 1}: cannot parse CSV ({exc}); is a quote unclosed?"
            ) from None


def sniff_delimiter(header_line: str) -> str:
    """Pick the delimiter that splits the header into the most fields (comma on a tie)."""
    counts = {d: _count_outside_quotes(header_line, d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _count_outside_quotes(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            count += 1
    return count


def read_header(path: Path, line: str, delimiter: str) -> list[str]:
    """Column names, stripped; unnamed columns become column_N; duplicates are an error."""
    values = next(csv.reader([line], delimiter=delimiter))
    names = [v.strip() or f"column_{i}" for i, v in enumerate(values, 1)]
    seen: set[str] = set()
    repeated = sorted({n for n in names if n in seen or seen.add(n)})
    if repeated:
        raise InputError(f"{path}: header names a column twice: {', '.join(repeated)}")
    return names
