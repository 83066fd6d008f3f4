"""Generated demo contacts: valid numbers in a few regions, with names and extra columns."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import phonenumbers

FIRST = ["Asha", "Ravi", "Meera", "Arjun", "Kavya", "Rohan", "Isha", "Vikram", "Neha", "Sanjay"]
LAST = ["Iyer", "Sharma", "Patel", "Reddy", "Nair", "Gupta", "Das", "Rao", "Menon", "Singh"]


def example_numbers(region: str, count: int, seed: int) -> list[str]:
    """`count` distinct valid mobile numbers of `region`, built from its example number."""
    rng = random.Random(seed)
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        raise ValueError(f"phonenumbers has no example mobile number for {region!r}")
    national = str(example.national_number)
    # random digits enough for ten times `count` numbers (4 digits held at most 10,000, and a
    # demo of 20,000 contacts looped for ever), the example's leading digits kept
    digits = min(max(4, len(str(count * 10))), len(national) - 2)
    numbers: set[str] = set()
    for _ in range(50 * count + 1000):
        if len(numbers) == count:
            return sorted(numbers)
        tail = "".join(rng.choice("0123456789") for _ in range(digits))
        candidate = phonenumbers.parse(f"+{example.country_code}{national[:-digits]}{tail}")
        if phonenumbers.is_valid_number(candidate):
            numbers.add(phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164))
    raise ValueError(f"could not make {count:,} distinct valid numbers of {region!r}")


def write_contacts(path: Path, count: int, seed: int = 7) -> None:
    """A contacts CSV of `count` rows: phone, name, plan, city."""
    rng = random.Random(seed)
    numbers = example_numbers("IN", count, seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "name", "plan", "city"])
        for number in numbers:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            writer.writerow([number, name, rng.choice(["basic", "plus", "pro"]), "Bengaluru"])
