"""Finding and scrubbing every spelling of a number (dialer.erasure), without a database."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.erasure import (
    ERASED,
    ErasedNumbers,
    Scrubber,
    candidate_pattern,
    could_spell,
    number_pattern,
    phone_key,
)

NUMBER = "+919845010001"


@pytest.mark.parametrize(
    "text",
    [
        "+919845010001",
        "919845010001",
        "9845010001",
        "09845010001",
        "+91 98450 10001",
        "+91-98450-10001",
        "098450 10001",
        "(0) 98450.10001",
        "0091 9845010001",
        "%2B919845010001",
        "tel:+919845010001;ext=1",
    ],
)
def test_every_spelling_is_found_and_erased(text: str) -> None:
    scrubber = Scrubber([NUMBER])
    scrubbed = scrubber.text(f"call {text} now")
    assert scrubbed is not None and ERASED in scrubbed
    assert not re.search(r"9845[^0-9]{0,3}0?1", scrubbed.replace(ERASED, "")), scrubbed
    assert re.search(candidate_pattern([NUMBER]), text)  # the database finds the row too
    assert could_spell(f"call {text} now", NUMBER)  # the cheap test never rules it out


@pytest.mark.parametrize(
    "text", ["98450100011", "19845010001x9", "call 9845010002", "+919845010001".replace("1", "2")]
)
def test_other_numbers_and_longer_digit_runs_are_left_alone(text: str) -> None:
    assert Scrubber([NUMBER]).text(text) == text


def test_json_strings_keys_and_bare_numbers_are_scrubbed_and_stay_json() -> None:
    value = {
        "To": "+919845010001",
        "+919845010001": {"n": 919845010001, "ok": True, "list": ["x 09845010001 y", 3.5]},
        "other": "+919845010002",
    }
    scrubbed = Scrubber([NUMBER]).json(value)
    assert scrubbed == {
        "To": ERASED,
        ERASED: {"n": ERASED, "ok": True, "list": [f"x {ERASED} y", 3.5]},
        "other": "+919845010002",
    }


@given(st.from_regex(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True), st.text(max_size=20))
def test_the_database_pattern_finds_whatever_python_erases(number: str, noise: str) -> None:
    digits = number[2:]
    spelled = f"{noise}({digits[:3]}) {digits[3:6]}-{digits[6:]}{noise}"
    if re.search(number_pattern(number), spelled):
        assert re.search(candidate_pattern([number]), spelled)
        assert could_spell(spelled, number)


@given(
    st.sampled_from(["+919845010001", "+12125550123", "+442079460958", "+3531234567"]),
    st.text(alphabet="0123456789 -.()+/%2Bab", max_size=24),
)
def test_text_too_short_in_digits_to_spell_a_number_never_holds_it(number: str, text: str) -> None:
    """could_spell, the consent import's cheap test before the pattern: where it says no, the
    pattern finds nothing either (any text, the number's own digits among its letters)."""
    if not could_spell(text, number):
        assert not Scrubber([number]).found_in(text)
    assert not could_spell("web form 12", number)


def test_erased_numbers_are_told_by_their_keyed_hash() -> None:
    erased = ErasedNumbers("k" * 64, frozenset({phone_key("k" * 64, NUMBER)}))
    assert erased.among([NUMBER, "+919845010002"]) == [NUMBER]
    assert erased.holds(NUMBER) and not erased.holds("+919845010002")
    assert ErasedNumbers("k", frozenset()).among([NUMBER]) == []
