"""Streaming a CSV file of unknown origin: encoding, BOM, delimiter, line numbers.

The file is read in fixed-size blocks and decoded incrementally, so memory does not grow with the
file; an undecodable byte is reported with the line it is on. A line longer than MAX_LINE_CHARS
(a 300 MB line from a broken export) is skipped at reading speed without being kept, and its
record is rejected; the header must fit what the database and the export can hold.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dialer.errors import InputError
from dialer.loading.records import MAX_LINE_CHARS, Record, Segment, read_records

BLOCK_SIZE = 1 << 20
DELIMITERS = (",", ";", "\t")
UTF8_BOM = codecs.BOM_UTF8
MAX_COLUMNS = 1000  # what one export row (and PostgreSQL's select list) can carry
MAX_COLUMN_NAME_CHARS = 200
# Stands in for a line too long to keep: a record containing it is rejected (random, so no
# file can contain it by chance).
OVERLONG = f"\x00dialer-overlong-line-{secrets.token_hex(8)}\x00"


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
    overlong_lines: int = 0
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @classmethod
    def open(cls, path: Path, encoding: str = "utf-8", what: str = "contacts") -> CsvSource:
        """Check the file exists and is not empty; the header is read by `records()`. `what`
        the file holds names it in the errors (contacts, consent events, ...)."""
        if not path.exists():
            raise InputError(f"{path}: {what} file not found")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        size = path.stat().st_size
        if size == 0:
            raise InputError(f"{path}: the file is empty (expected a header row and {what})")
        return cls(path=path, encoding=encoding, size=size)

    def _lines(self) -> Iterator[str]:
        """Decoded lines, each ending in '\\n' (the last one may not); CRLF is left to csv.
        A file whose lines end in CR alone (old Mac exports) is read with CR as the line end.
        A line over MAX_LINE_CHARS comes out as OVERLONG, its text dropped as it is read."""
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="strict")
        lines_done = 0
        pending = ""
        skipping = False  # inside an overlong line: discard until its end
        first = True
        newline: str | None = None  # decided by the first text: "\n", or "\r" if it has none
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
                if newline is None and text:
                    newline = "\r" if "\n" not in text and "\r" in text else "\n"
                if newline == "\r":
                    text = text.replace("\r", "\n")
                if skipping and text:
                    end = text.find("\n")
                    if end < 0:
                        continue
                    lines_done += 1
                    skipping = False
                    self.overlong_lines += 1
                    yield OVERLONG + "\n"
                    text = text[end + 1 :]
                if text:
                    parts = (pending + text).split("\n")
                    pending = parts.pop()
                    for part in parts:
                        lines_done += 1
                        if len(part) > MAX_LINE_CHARS:
                            self.overlong_lines += 1
                            part = OVERLONG
                        yield part + "\n"
                    if len(pending) > MAX_LINE_CHARS:
                        pending, skipping = "", True
                if final:
                    if skipping or len(pending) > MAX_LINE_CHARS:
                        self.overlong_lines += 1
                        yield OVERLONG
                    elif pending:
                        yield pending
                    return

    def _read_header(self, lines: Iterator[str]) -> None:
        """Take the first non-blank line as the header; its delimiter is the file's."""
        header_text = ""
        for number, line in enumerate(lines, 1):
            if line.strip():
                header_text, self.header_line = line, number
                break
        if not header_text:
            raise InputError(f"{self.path}: the file has no header row (only blank lines)")
        self.delimiter = sniff_delimiter(header_text)
        self.header = read_header(self.path, header_text, self.delimiter)

    def records(self) -> Iterator[Record]:
        """Yield (line number where the record starts, values) for each non-blank data row.

        The first non-blank line is the header; its delimiter decides the file's delimiter.
        """
        lines = self._lines()
        self._read_header(lines)
        yield from read_records(lines, self.delimiter, self.header_line, OVERLONG, str(self.path))

    def segments(self, lines_each: int, chars_each: int) -> Iterator[Segment]:
        """The data lines after the header, cut into segments of about `lines_each` lines or
        `chars_each` characters, each cut where the segment's quotes balance (so, almost
        always, between records: records.read_segment makes it exact). The header is read
        when the first segment is asked for. Where quotes do not balance for four times the
        size (a stray quote in a cell), the cut is made anyway."""
        lines = self._lines()
        self._read_header(lines)
        first_line = self.header_line + 1
        kept: list[str] = []
        chars = quotes = 0
        overlong_before = self.overlong_lines
        for line in lines:
            kept.append(line)
            chars += len(line)
            quotes += line.count('"')
            if len(kept) < lines_each and chars < chars_each:
                continue
            if quotes % 2 and len(kept) < 4 * lines_each and chars < 4 * chars_each:
                continue
            overlong = OVERLONG if self.overlong_lines > overlong_before else None
            yield Segment(first_line, "".join(kept), False, overlong)
            first_line += len(kept)
            kept, chars, quotes, overlong_before = [], 0, 0, self.overlong_lines
        overlong = OVERLONG if self.overlong_lines > overlong_before else None
        yield Segment(first_line, "".join(kept), True, overlong)


WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def encodings_to_try(path: Path, declared: str | None) -> list[str]:
    """The encodings to read `path` with, in order: UTF-8, then the campaign's `encoding`.

    A file of two- or four-byte units (UTF-16, UTF-32) is also valid UTF-8 when its text is
    ASCII (every other byte NUL), so it is recognised first: by its BOM, else by where its NUL
    bytes fall, which also tells the byte order a declared 'utf-16' without BOM leaves open.
    One with a BOM is read in the encoding its BOM names; one without, and without an
    `encoding` that says so, is refused, naming the encoding it seems to be in."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    wide = next((name for bom, name in WIDE_BOMS if head.startswith(bom)), None)
    if wide is None and len(head) >= 4 and head.count(0) * 4 >= len(head):
        even = head[0::2].count(0)
        odd = head[1::2].count(0)
        wide = "utf-16-be" if even > odd else "utf-16-le"
    family = (declared or "").replace("_", "-").lower()
    if wide is None:
        return ["utf-8"] + ([declared] if declared else [])
    has_bom = head.startswith(tuple(bom for bom, _ in WIDE_BOMS))
    if has_bom and not family.startswith(("utf-16", "utf-32")):
        return [wide]  # its BOM says what it is (a spreadsheet's "Unicode text"): read it so
    if not family.startswith(("utf-16", "utf-32")):
        raise InputError(
            f"{path}: the file looks like {wide.upper()} (NUL bytes between its characters);"
            f' set encoding = "{wide}" in the campaign'
        )
    if (
        family in ("utf-16", "utf-32")
        and wide.startswith(family)
        and not head.startswith(tuple(bom for bom, _ in WIDE_BOMS))
    ):
        return [wide]  # no BOM: the byte order the NUL bytes show
    return [declared or wide]


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
    """Column names, stripped; unnamed columns become column_N. Names repeated (even in
    another case: columns are found case-insensitively), unreadable or past what PostgreSQL
    and the export can hold are errors that name them."""
    if line.startswith(OVERLONG):
        raise InputError(f"{path}: the header line is over {MAX_LINE_CHARS:,} characters")
    try:
        values = next(csv.reader([line], delimiter=delimiter))
    except csv.Error as exc:
        raise InputError(f"{path}: the header line cannot be read as CSV ({exc})") from None
    if len(values) > MAX_COLUMNS:
        raise InputError(
            f"{path}: the header has {len(values):,} columns; at most {MAX_COLUMNS:,} are"
            " supported (remove the columns the campaign does not need)"
        )
    names = [v.strip() or f"column_{i}" for i, v in enumerate(values, 1)]
    unreadable = [n for n in names if not n.isprintable()]
    if unreadable:
        shown = ", ".join(repr(n[:40]) for n in unreadable[:5])
        raise InputError(f"{path}: header names with control characters or NUL bytes: {shown}")
    long = [n for n in names if len(n) > MAX_COLUMN_NAME_CHARS]
    if long:
        shown = ", ".join(repr(n[:40] + "...") for n in long[:5])
        raise InputError(f"{path}: column names over {MAX_COLUMN_NAME_CHARS} characters: {shown}")
    counted = Counter(names)
    repeated = sorted(n for n, times in counted.items() if times > 1)
    if repeated:
        raise InputError(f"{path}: header names a column twice: {', '.join(repeated)}")
    by_case: dict[str, list[str]] = {}
    for name in names:
        by_case.setdefault(name.lower(), []).append(name)
    clashes = [group for group in by_case.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(" and ".join(group) for group in clashes[:5])
        raise InputError(
            f"{path}: header names columns that differ only in case ({shown}); columns are"
            " matched case-insensitively, so rename one"
        )
    return names
