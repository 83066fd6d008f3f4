"""A contact's jurisdiction from its number: the quick reading by country code agrees with
reading the number itself, for every region's numbers of every type."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from dialer.policy import jurisdiction
from dialer.policy.jurisdiction import from_number

E164 = phonenumbers.PhoneNumberFormat.E164


def _example_numbers() -> list[str]:
    numbers = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.add(phonenumbers.format_number(example, E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.add(phonenumbers.format_number(example, E164))
    # and more of the same ranges: each example with its last digits changed, where valid
    draw = random.Random(16)
    for example in sorted(numbers):
        for _ in range(5):
            tail = "".join(draw.choice("0123456789") for _ in range(3))
            changed = phonenumbers.parse(example[:-3] + tail)
            if phonenumbers.is_valid_number(changed):
                numbers.add(example[:-3] + tail)
    return sorted(numbers)


EXAMPLES = _example_numbers()


def test_no_country_code_begins_another() -> None:
    codes = [str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE]
    assert not [(a, b) for a in codes for b in codes if a != b and b.startswith(a)]


def test_the_country_code_tells_what_reading_the_number_tells() -> None:
    assert len(EXAMPLES) > 3000
    told_by_code = 0
    for number in EXAMPLES:
        jurisdiction._by_prefix.clear()  # read each number afresh, not from a prefix seen
        assert from_number(number) == jurisdiction._resolve(number), number
        told_by_code += any(number[1:n] in jurisdiction._COUNTRY_BY_CODE for n in (2, 3, 4))
    assert told_by_code > len(EXAMPLES) // 2  # the quick reading is most numbers' reading


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+919876543210", "IN"),
        ("+13055551234", "US-FL"),
        ("+14165550123", "CA-ON"),
        ("+18005550123", "US"),
        ("+447400123456", "GB"),
        ("+77012345678", "KZ"),
        ("+79123456789", "RU"),
        ("+80012345678", None),
    ],
)
def test_jurisdiction_by_number(number: str, expected: str | None) -> None:
    assert from_number(number) == expected
