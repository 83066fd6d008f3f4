"""Decoded lines into CSV records: a whole file's, or one segment's in a validation worker.

Kept light (csv and the error root): spawned workers import it.

A load cuts its file into segments of whole lines and lets the workers read them, so the
CSV parsing runs on every core and only text crosses between processes. A cut is made where
the segment's quotes balance, which is where a record ends unless a cell holds a stray quote
(`5" pipe`). Reading is exact all the same: a worker reads its segment followed by a sentinel
line; if the sentinel comes back as a record of its own, the segment ended between records
and its records are the ones one reader over the whole file finds; if not, the segment ended
inside a quoted cell, and the unfinished record's lines go back to be read with the next
segment.
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dialer.errors import InputError

MAX_LINE_CHARS = 1 << 20  # one line (a record may span several) of at most 1 MiB
csv.field_size_limit(1 << 20)  # one cell over 1 MiB across lines means a broken quote
# Ends a segment's text as its worker reads it (random: no file holds it by chance)
_SENTINEL = f"dialer-segment-end-{secrets.token_hex(8)}"


class UnreadableRecord(list):
    """A record that could not be read (its line was too long): no values, only the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def __reduce__(self):  # to worker processes and back
        return (UnreadableRecord, (self.reason,))


class OpenQuoteError(InputError):
    """The CSV reader failed on the file's last line: a quote left open ran to its end."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line

    def __reduce__(self):  # from a worker process
        return (OpenQuoteError, (str(self), self.line))


Record = tuple[int, list[str]]  # (line number where the record starts, values)


@dataclass(frozen=True)
class Segment:
    """Whole lines of a file, the first of them line `first_line`.

    `final`: nothing follows (read as the end of the file). `overlong`: the token that stands
    in for a line too long to keep, when one of these lines is such a line.
    """

    first_line: int
    text: str
    final: bool
    overlong: str | None = None

    def followed_by(self, after: Segment | None) -> Segment:
        """This segment's text with the next one's (none: the end of the file) after it."""
        if after is None:
            return Segment(self.first_line, self.text, True, self.overlong)
        overlong = self.overlong or after.overlong
        return Segment(self.first_line, self.text + after.text, after.final, overlong)


@dataclass(frozen=True)
class SegmentRecords:
    """What a segment holds: its records, and the unfinished one it ended in, if any."""

    records: list[Record]
    open_tail: Segment | None  # that record's lines: to be read again with what follows


class _Watched:
    """The lines (`lines`, to be read once), telling whether the reader has taken the last
    one. A generator, not a `__next__` method: the reader takes each line without a Python
    call of its own (a third of reading a segment, before)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.exhausted = False
        self.lines = self._watch(lines)

    def _watch(self, lines: Iterable[str]) -> Iterator[str]:
        yield from lines
        self.exhausted = True


def read_records(
    lines: Iterable[str], delimiter: str, after_line: int, overlong: str | None, path: str
) -> Iterator[Record]:
    """Each non-blank record of `lines` (which follow line `after_line`), numbered by the line
    it starts on. A line the reader cannot read becomes an UnreadableRecord for its row; one
    containing `overlong` too. OpenQuoteError when the last line cannot be read."""
    rest = _Watched(lines)
    reader = csv.reader(rest.lines, delimiter=delimiter)
    start = after_line
    while True:
        try:
            for values in reader:  # the common case, without a try per record
                row_no = start + 1
                start = after_line + reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue
                if overlong and any(overlong in value for value in values):
                    yield row_no, UnreadableRecord(f"a line over {MAX_LINE_CHARS:,} characters")
                    continue
                yield row_no, values
            return
        except csv.Error as exc:
            row_no, start = start + 1, after_line + reader.line_num
            if rest.exhausted:  # a quote left open ran to the end of the file
                raise OpenQuoteError(
                    f"{path}: line {row_no}: cannot parse CSV ({exc}); is a quote unclosed?",
                    row_no,
                ) from None
        # Within one line (a bare CR in an unquoted cell): that row only.
        yield (
            row_no,
            UnreadableRecord(
                "a line the CSV reader cannot read (a carriage return inside an"
                " unquoted cell? quote the cell)"
            ),
        )


def read_segment(segment: Segment, delimiter: str, path: str) -> SegmentRecords:
    """The records of `segment`, exactly as one reader over the whole file finds them."""
    parts = segment.text.split("\n")  # only "\n" ends a line (a bare "\r" is a cell's)
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    after = segment.first_line - 1
    if segment.final:
        found = list(read_records(lines, delimiter, after, segment.overlong, path))
        return SegmentRecords(found, None)
    sentinel_line = segment.first_line + len(lines)
    records: list[Record] = []
    try:
        for record in read_records(
            [*lines, _SENTINEL + "\n"], delimiter, after, segment.overlong, path
        ):
            records.append(record)
    except OpenQuoteError as exc:  # the sentinel's line could not be read: it was in a cell
        open_from = exc.line
    else:
        row_no, values = records.pop()  # the sentinel's line always reads as something
        if row_no == sentinel_line and values == [_SENTINEL]:
            return SegmentRecords(records, None)
        open_from = row_no  # the record that took the sentinel into a quoted cell
    tail = "".join(lines[open_from - segment.first_line :])
    return SegmentRecords(records, Segment(open_from, tail, False, segment.overlong))
