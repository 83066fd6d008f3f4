"""Reading a file in segments finds exactly the records one reader over the whole file finds."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.loading.csv_source import CsvSource
from dialer.loading.loader import _Reading
from dialer.loading.records import Segment, UnreadableRecord, read_segment
from dialer.loading.rows import ColumnPlan, prepare_chunk

# Cells as files carry them: numbers, quoted cells with commas and line breaks, a stray quote
# in an unquoted cell, a quote opened and never closed, a bare carriage return, nothing.
CELLS = [
    "+919845012345",
    "98450 12346",
    "Asha",
    '"a, b"',
    '"two\nlines"',
    '"three\n\nlines, ""quoted"""',
    '5" pipe',
    '"',
    '"open\n',
    "x\ry",
    "",
    "   ",
]


def read(segment: Segment):
    return read_segment(segment, ",", "f.csv")


def test_a_segment_ending_between_records_reads_whole() -> None:
    found = read(Segment(2, 'a,b\n"c\nd",e\n', final=False))
    assert found.records == [(2, ["a", "b"]), (3, ["c\nd", "e"])]
    assert found.open_tail is None


def test_a_segment_ending_inside_a_quoted_cell_hands_back_that_record() -> None:
    found = read(Segment(10, 'a,b\nc,"d\ne\n', final=False))
    assert found.records == [(10, ["a", "b"])]
    assert found.open_tail == Segment(11, 'c,"d\ne\n', final=False)
    again = read(found.open_tail.followed_by(Segment(13, 'f",g\nh,i\n', final=True)))
    assert again.records == [(11, ["c", "d\ne\nf", "g"]), (14, ["h", "i"])]
    assert again.open_tail is None


def test_the_last_segment_reads_an_open_quote_to_the_end_as_the_whole_file_does() -> None:
    found = read(Segment(5, 'a,"b\nc\n', final=True))
    assert found.records == [(5, ["a", "b\nc\n"])]
    assert found.open_tail is None


def test_a_line_over_the_limit_is_an_unreadable_record_in_a_segment_too() -> None:
    token = "\x00overlong\x00"
    found = read(Segment(3, f"a,b\n{token}\nc,d\n", final=False, overlong=token))
    assert [row for row, _ in found.records] == [3, 4, 5]
    assert isinstance(found.records[1][1], UnreadableRecord)


def load_both_ways(text: str, lines_each: int, chars_each: int):
    """(the records and validated rows of the whole file, those of its segments)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.csv"
        path.write_text(text, encoding="utf-8", newline="")
        whole = CsvSource.open(path)
        records = list(whole.records())
        plan = ColumnPlan.from_header(whole.header, "phone", "IN", str(path))
        expected = prepare_chunk(plan, 7, records)
        source = CsvSource.open(path)
        segments = source.segments(lines_each, chars_each)
        first = next(segments)

        async def collect():
            reading = _Reading(plan, 7, source.delimiter, str(path))
            found = []
            chained = iter([first, *segments])
            async for result in reading.validated(chained, None):
                found.append(result)
            return found

        results = asyncio.run(collect())
    return records, expected, results


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(CELLS), min_size=1, max_size=4), min_size=1, max_size=30),
    st.integers(1, 6),
    st.sampled_from([8, 40, 1 << 20]),
)
def test_segments_read_exactly_as_the_whole_file(rows, lines_each, chars_each) -> None:
    text = "phone,b,c,d\n" + "".join(",".join(cells) + "\n" for cells in rows)
    records, expected, results = load_both_ways(text, lines_each, chars_each)
    assert sum(r.records for r in results) == len(records)
    assert b"".join(r.copy for r in results) == expected.copy
    assert [x for r in results for x in r.rejects] == expected.rejects
    assert [x for r in results for x in r.phones] == expected.phones


def test_a_stray_quote_does_not_shift_the_records_after_it() -> None:
    rows = ['+919845012345,5" pipe,x'] + [f'+9198450{i:05d},"n,{i}",y' for i in range(40)]
    rows += ['+919845099999,"a\nb",z']
    text = "phone,b,c\n" + "\n".join(rows) + "\n"
    records, expected, results = load_both_ways(text, 3, 1 << 20)
    assert len(records) == 42 and not expected.rejects
    assert b"".join(r.copy for r in results) == expected.copy
