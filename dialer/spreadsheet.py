"""Cells that a spreadsheet would run as formulas, written so it shows them as text.

A CSV opened in Excel, LibreOffice or Google Sheets runs a cell starting with `=`, `+`, `-`,
`@`, a tab or a carriage return as a formula (OWASP "CSV injection"): a contact's name or a
provider's error text could then fetch URLs or run commands on the reader's machine. Such a
cell gets a leading `'`, which spreadsheets hide and read as "this is text". A plain number
(`+919812345678`, `-12.5`) is not a formula and is written as it is, so E.164 numbers stay
importable. The same rule exists as a SQL expression for `COPY`-streamed exports (db.export); a test
checks that the two agree.
"""

from __future__ import annotations

import re

_FORMULA_START = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"\A[+-]?[0-9]+(\.[0-9]+)?\Z")


def safe_cell(value: str) -> str:
    """`value`, with a leading ' if a spreadsheet would read it as a formula."""
    if value and _FORMULA_START.match(value) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value
