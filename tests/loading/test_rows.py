"""Validation of one chunk of records (the part that runs in worker processes)."""

import json

from hypothesis import given
from hypothesis import strategies as st

from dialer.loading.rows import ColumnPlan, prepare_chunk

HEADER = ["Phone", "Name", "TimeZone", "priority", "plan", "note"]
PLAN = ColumnPlan.from_header(HEADER, "phone", "IN", "x.csv")


@given(st.lists(st.text(), min_size=2, max_size=2), st.lists(st.text(), min_size=2, max_size=2))
def test_fields_json_is_json(keys, values) -> None:
    plan = ColumnPlan.from_header(
        ["phone", *[f"k{i}{k}" for i, k in enumerate(keys)]], "phone", "IN", "x"
    )
    row = ["+919845012345", *values]
    assert json.loads(plan.fields_json(row)) == dict(zip(plan.header[1:], values, strict=True))


def test_columns_found_case_insensitively() -> None:
    assert (PLAN.phone, PLAN.name, PLAN.timezone, PLAN.priority) == (0, 1, 2, 3)
    assert PLAN.field_columns == [4, 5]


def test_chunk_results() -> None:
    result = prepare_chunk(
        PLAN,
        42,
        [
            (2, ["98450 12345", " Asha ", "asia/kolkata", "5", "gold", 'says "hi", twice']),
            (3, ["98450 12345", "Again", "", "", "gold", ""]),
            (4, ["+919845012346", "Bad prio", "", "high", "gold", ""]),
            (5, ["+919845012347", "Short row"]),
        ],
    )
    # COPY text: a JSON escape's backslash is doubled
    fields = '{"plan": "gold", "note": "says \\\\"hi\\\\", twice"}'
    # the last column: the contact's jurisdiction (policy.jurisdiction), from its number
    assert result.lines()[0] == f"42\t2\t+919845012345\tAsha\tAsia/Kolkata\t5\t{fields}\tIN\n"
    # no zone given: read from the number (India has one)
    assert result.lines()[1] == (
        '42\t3\t+919845012345\tAgain\tAsia/Calcutta\t0\t{"plan": "gold", "note": ""}\tIN\n'
    )
    assert result.lines()[2].startswith("42\t5\t+919845012347\tShort row\tAsia/Calcutta\t0\t")
    assert result.phones == ["+919845012345", "+919845012345", "+919845012347"]
    bad = ["+919845012346", "Bad prio", "", "high", "gold", ""]
    assert result.rejects == [
        (4, dict(zip(HEADER, bad, strict=True)), "priority is not a whole number: 'high'")
    ]
    assert result.reasons == {"priority is not a whole number": 1}
