"""Property: whatever the formatting, quoting, delimiter and row order, every distinct valid
number is loaded exactly once, at its first row, and every row is accounted for."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.campaign_spec import load_campaign_file
from dialer.db.connect import connect
from dialer.loading.loader import load_campaign
from tests.loading.helpers import campaign_file

FORMATS = [
    lambda d: f"+91{d}",
    lambda d: f"+91 {d[:5]} {d[5:]}",
    lambda d: f"0{d[:5]} {d[5:]}",
    lambda d: d,
    lambda d: f"(+91) {d[:5]}-{d[5:]}",
    lambda d: f" 0091 {d} ",
]
names = itertools.count()

rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40),  # which number (a small pool forces repeats)
        st.integers(min_value=0, max_value=len(FORMATS) - 1),
        st.booleans(),  # a junk row instead
    ),
    min_size=1,
    max_size=60,
)


def render(rows: list[tuple[int, int, bool]], delimiter: str) -> tuple[str, list[str | None]]:
    """The CSV text, and per data row the E.164 number it holds (None for junk)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(["phone", "note"])
    expected: list[str | None] = []
    for number, style, junk in rows:
        digits = f"98450{number:05d}"
        if junk:
            writer.writerow([f"12{number}", "junk; with, separators\nand a second line"])
            expected.append(None)
        else:
            writer.writerow([FORMATS[style](digits), f"row for {digits}\nsecond line"])
            expected.append(f"+91{digits}")
    return out.getvalue(), expected


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows_strategy, delimiter=st.sampled_from([",", ";", "\t"]))
def test_no_valid_number_lost_or_duplicated(
    database_url: str, tmp_path: Path, rows, delimiter
) -> None:
    text, expected = render(rows, delimiter)
    name = f"prop-{next(names)}"
    (tmp_path / f"{name}.csv").write_text(text, encoding="utf-8")
    spec = load_campaign_file(campaign_file(tmp_path, name, csv=f"{name}.csv"))

    async def go():
        conn = await connect(database_url)
        try:
            summary = await load_campaign(conn, spec)
            loaded = await conn.fetch(
                """SELECT phone_e164, row_no FROM contacts
                   WHERE campaign_id = (SELECT id FROM campaigns WHERE name = $1)""",
                name,
            )
            return summary, loaded
        finally:
            await conn.close()

    summary, loaded = asyncio.run(go())
    # Each data row takes 2 physical lines (the note holds a newline); the header is line 1.
    first_line: dict[str, int] = {}
    for index, number in enumerate(expected):
        if number is not None:
            first_line.setdefault(number, 2 + 2 * index)
    assert {r["phone_e164"]: r["row_no"] for r in loaded} == first_line
    assert len(loaded) == len(first_line)
    assert summary.rows_read == len(rows)
    assert summary.rejected == expected.count(None)
    assert summary.loaded + summary.duplicates + summary.rejected == summary.rows_read


# Cells with one thing COPY, JSON or CSV treat specially (so that a row holds that one
# alone), cells of any printable text, and cells of any characters at all
special = st.sampled_from(
    ["\\", "a\\b", "\\N", '"', '{"x": 1}', "\t", "a\nb", "\r", "\x01", "\x1f", "%s", "{0}", "\x7f"]
)
cells = st.one_of(
    special,
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
)
header_names = st.text(
    st.one_of(
        st.sampled_from('\\"{}%,;'),
        st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp")),
    ),
    max_size=8,
).filter(str.isprintable)  # what read_header accepts


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.tuples(header_names, header_names),
    rows=st.lists(st.tuples(cells, cells, cells), min_size=1, max_size=8),
)
def test_names_and_fields_come_back_as_written(
    database_url: str, tmp_path: Path, keys: tuple[str, str], rows
) -> None:
    """Whatever a cell holds (tabs, backslashes, quotes, braces, line ends, any script), the
    contact's name and fields are what the file says: the COPY lines escape what they must."""
    header = ["phone", "name", f"k0 {keys[0]}".strip(), f"k1 {keys[1]}".strip()]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for index, (name, first, second) in enumerate(rows):
        writer.writerow([f"+9198450{index:05d}", name, first, second])
    campaign = f"cells-{next(names)}"
    (tmp_path / f"{campaign}.csv").write_text(out.getvalue(), encoding="utf-8")
    spec = load_campaign_file(campaign_file(tmp_path, campaign, csv=f"{campaign}.csv"))

    async def go():
        conn = await connect(database_url)
        try:
            await load_campaign(conn, spec)
            return await conn.fetch(
                """SELECT name, fields FROM contacts
                   WHERE campaign_id = (SELECT id FROM campaigns WHERE name = $1)
                   ORDER BY row_no""",
                campaign,
            )
        finally:
            await conn.close()

    loaded = asyncio.run(go())
    assert [(r["name"], r["fields"]) for r in loaded] == [
        (name.strip() or None, {header[2]: first, header[3]: second})
        for name, first, second in rows
    ]
