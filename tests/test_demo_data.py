"""Generated demo contacts (dialer.demo_data): as many distinct valid numbers as asked for."""

from __future__ import annotations

import phonenumbers
import pytest

from dialer.demo_data import example_numbers


@pytest.mark.parametrize("count", [1, 999, 12_000])
def test_as_many_distinct_valid_numbers_as_asked(count: int) -> None:
    """Past 10,000 (all that four random digits hold) it looped for ever: `dialer demo
    --contacts 20000` never started."""
    numbers = example_numbers("IN", count, seed=7)
    assert len(numbers) == len(set(numbers)) == count
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers[:200])
    assert example_numbers("IN", count, seed=7) == numbers  # the same seed, the same numbers
