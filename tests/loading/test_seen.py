"""The load's record of numbers seen (loading.seen): a repeat is never missed."""

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.loading.seen import SeenNumbers

numbers = st.lists(st.sampled_from([f"+9198450{i:05d}" for i in range(30)]), max_size=60)


@settings(max_examples=50)
@given(numbers)
def test_every_repeat_is_reported(everything: list[str]) -> None:
    """Each number seen before is answered "maybe" (a new one may be too, rarely: a shared
    bit, which the exact query at the end of a load resolves)."""
    seen = SeenNumbers()
    reported = {i for i, number in enumerate(everything) if seen.add(number)}
    repeats = {i for i, number in enumerate(everything) if number in everything[:i]}
    assert repeats <= reported
