"""JSON lines into the loader's CSV: columns in first-seen order, each record's JSON line kept
(a value with a newline spans CSV lines), lines that are not flat objects named."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dialer.api.uploads import json_lines_to_csv
from dialer.errors import InvalidFields
from dialer.loading.csv_source import MAX_COLUMNS, CsvSource


def convert(tmp_path: Path, text: str):
    source, target = tmp_path / "body", tmp_path / "contacts.csv"
    source.write_text(text, encoding="utf-8")
    return json_lines_to_csv(source, target), target


def test_lines_become_rows_and_keep_their_line_numbers(tmp_path: Path) -> None:
    text = "\n".join(
        [
            '{"phone": "+919812345601", "name": "A"}',
            "",
            '{"phone": "+919812345602", "note": "two\\nlines", "vip": true}',
            '{"phone": "+919812345603", "tags": ["x"]}',
            "[1, 2]",
            '{"phone": "+919812345604", "n": 3.5, "gone": null}',
        ]
    )
    converted, target = convert(tmp_path, text)
    assert converted.rejects == [
        (4, "field 'tags': a nested value (use a string)"),
        (5, "not a JSON object"),
    ]
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["phone", "name", "note", "vip", "n", "gone"]  # rejected lines add none
    assert rows[2][2] == "two\nlines" and rows[2][3] == "true" and rows[3][4:] == ["3.5", ""]
    # The loader's row numbers (the CSV line a record starts on) map back to JSON lines.
    source = CsvSource.open(target, "utf-8")
    starts = [row_no for row_no, _ in source.records()]
    assert [converted.line_of(n) for n in starts] == [1, 3, 6]


def test_an_empty_body_and_too_many_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidFields, match="no JSON object"):
        convert(tmp_path, "\n\n")
    wide = "{" + ", ".join(f'"c{i}": 1' for i in range(MAX_COLUMNS + 1)) + "}"
    with pytest.raises(InvalidFields, match="line 1: more than"):
        convert(tmp_path, wide)


def test_a_lone_surrogate_rejects_its_line_not_the_upload(tmp_path: Path) -> None:
    text = "\n".join(
        [
            '{"phone": "+919812345601", "name": "A"}',
            '{"phone": "+919812345602", "name": "\\ud800"}',
            '{"phone": "+919812345603", "\\udfff": "x"}',
        ]
    )
    converted, target = convert(tmp_path, text)
    assert [line for line, _ in converted.rejects] == [2, 3]
    assert all("lone UTF-16 surrogate" in why for _, why in converted.rejects)
    assert converted.reject_counts == {"a lone UTF-16 surrogate": 2}
    assert target.read_text(encoding="utf-8").count("+9198") == 1


def test_a_million_bad_lines_are_counted_not_kept(tmp_path: Path) -> None:
    """Memory stays flat: the first 10,000 rejects are listed, the rest only counted."""
    lines = ['{"phone": "+919812345601"}'] + ["x"] * 200_000
    converted, _ = convert(tmp_path, "\n".join(lines))
    assert converted.rejected == 200_000 and len(converted.rejects) == 10_000
    assert converted.rejects[-1][0] == 10_001
    assert converted.reject_counts == {"not a JSON object": 200_000}
