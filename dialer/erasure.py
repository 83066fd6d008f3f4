"""How a number is found and scrubbed wherever it was written: every spelling of it (E.164,
national with or without its trunk prefix, digits only, grouped with spaces, dashes, dots or
brackets, behind 00 or %2B), in text and inside JSON (strings, keys and bare numbers).

`number_pattern` is exact (Python); `candidate_pattern` is a looser PostgreSQL regular
expression that finds at least every row the exact one would (the database narrows, Python
scrubs). What erasure does with them is dialer.db.erasure's job.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import phonenumbers


def phone_key(privacy_key: str, phone_e164: str) -> str:
    """The keyed hash that stands for a number (in the ledger, and for an erased number)."""
    return hmac.digest(privacy_key.encode(), phone_e164.encode(), hashlib.sha256).hex()


ERASED = "[erased]"
_SEP = r"[\s\-.()/]{0,3}"  # what people put between digits
_SQL_SEP = "[^0-9]{0,3}"  # PostgreSQL: anything but a digit, a superset of _SEP


def _parts(e164: str) -> tuple[str, str]:
    parsed = phonenumbers.parse(e164, None)
    return str(parsed.country_code), phonenumbers.national_significant_number(parsed)


def number_pattern(e164: str) -> str:
    """A regular expression for every spelling of the number, not inside a longer run of
    digits: '+91 98450 10001', '0091-9845010001', '%2B919845010001', '098450 10001'..."""
    country, national = _parts(e164)
    prefix = rf"(?:(?:\+|00|%2[bB]){_SEP})?(?:{_SEP.join(country)}{_SEP})?(?:0{_SEP})?"
    return rf"(?<![0-9]){prefix}{_SEP.join(national)}(?![0-9])"


def candidate_pattern(numbers: list[str]) -> str:
    """A PostgreSQL regular expression matching at least every text `number_pattern` matches,
    for any of `numbers`."""
    return "|".join(_SQL_SEP.join(_parts(n)[1]) for n in numbers)


def could_spell(text: str, e164: str) -> bool:
    """Whether `text` has digits enough to spell the number at all: every spelling
    number_pattern matches holds its national digits, at least the E.164 form's less a country
    code of at most three. A test in one pass before compiling the pattern, which is not."""
    return sum(c.isdigit() for c in text) >= len(e164) - 4


class Scrubber:
    """Replaces every spelling of the numbers with ERASED, in text or JSON values."""

    def __init__(self, numbers: list[str]) -> None:
        self.pattern = re.compile("|".join(f"(?:{number_pattern(n)})" for n in numbers))

    def text(self, value: str | None) -> str | None:
        return None if value is None else self.pattern.sub(ERASED, value)

    def json(self, value: Any) -> Any:
        """The JSON value with the numbers erased; a bare number that is one becomes text."""
        if isinstance(value, str):
            return self.pattern.sub(ERASED, value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            return ERASED if self.pattern.search(str(value)) else value
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {self.pattern.sub(ERASED, k): self.json(v) for k, v in value.items()}
        return value

    def found_in(self, value: str) -> bool:
        return self.pattern.search(value) is not None


@dataclass(frozen=True)
class ErasedNumbers:
    """The keyed hashes of the numbers erased on request: they stay do-not-call."""

    privacy_key: str
    keys: frozenset[str]

    def among(self, phones: list[str]) -> list[str]:
        """The numbers of `phones` that were erased."""
        if not self.keys:
            return []
        return [p for p in phones if phone_key(self.privacy_key, p) in self.keys]

    def holds(self, phone: str) -> bool:
        return bool(self.among([phone]))
