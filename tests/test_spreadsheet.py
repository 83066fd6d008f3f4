"""The formula rule is one rule: Python (rejects file, report CSV) and SQL (export) agree."""

from __future__ import annotations

import asyncio

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db.export import safe_cell_sql
from dialer.spreadsheet import safe_cell
from tests.conftest import SERVER_URL

TRICKY = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", "0", "9", ".", " ", "'", "a"])
CELLS = st.one_of(
    st.lists(TRICKY, max_size=8).map("".join),
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=12,
    ),
    st.from_regex(r"\A[+-]?[0-9]{1,15}(\.[0-9]{1,3})?\Z"),
)


def test_formulas_are_quoted_and_plain_numbers_are_not() -> None:
    assert safe_cell("=1+1") == "'=1+1" and safe_cell("@x") == "'@x"
    assert safe_cell("\tx") == "'\tx" and safe_cell("\rx") == "'\rx"
    assert safe_cell("+919812345678") == "+919812345678" and safe_cell("-12.5") == "-12.5"
    assert safe_cell("+12\n") == "'+12\n" and safe_cell("-") == "'-"
    assert safe_cell("plain") == "plain" and safe_cell("") == ""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(CELLS, min_size=1, max_size=20))
def test_python_and_sql_readings_agree(values: list[str]) -> None:
    async def in_sql() -> list[str]:
        conn = await asyncpg.connect(SERVER_URL)
        try:
            rows = await conn.fetch(
                f"SELECT {safe_cell_sql('v')} AS safe FROM unnest($1::text[]) WITH ORDINALITY"
                " AS t(v, n) ORDER BY n",
                values,
            )
        finally:
            await conn.close()
        return [r["safe"] for r in rows]

    assert asyncio.run(in_sql()) == [safe_cell(v) for v in values]
