"""Caller-id choice: sticky across a contact's retries, local where a local number exists,
never a resting number, and even across numbers otherwise."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.caller_ids import area_of, choose_caller

NUMBERS = [
    "+14155550100",  # San Francisco
    "+14155550101",
    "+12125550100",  # New York
    "+13125550100",  # Chicago
    "+918047112233",  # Bengaluru
    "+442071838750",  # London
]
CONTACTS = ["+14155551234", "+12125551234", "+918041234567", "+447700900123", "+13105550123"]
callers = st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=6, unique=True)
policies = st.sampled_from(["sticky", "local", "rotate"])


@given(callers, st.sampled_from(CONTACTS), st.data())
def test_retries_keep_their_first_number_unless_it_rests(numbers, to, data) -> None:
    first = data.draw(st.sampled_from(numbers))
    resting = frozenset(data.draw(st.sets(st.sampled_from(numbers))))
    usage = data.draw(st.dictionaries(st.sampled_from(numbers), st.integers(0, 50)))
    chosen = choose_caller("sticky", numbers, to, first=first, usage=usage, resting=resting)
    if first not in resting:
        assert chosen == first
    else:
        assert chosen is None or chosen not in resting


@given(policies, callers, st.sampled_from(CONTACTS), st.data())
def test_a_resting_number_is_never_shown(policy, numbers, to, data) -> None:
    resting = frozenset(data.draw(st.sets(st.sampled_from(numbers))))
    first = data.draw(st.none() | st.sampled_from(numbers))
    attempt = data.draw(st.integers(0, 10**6))
    chosen = choose_caller(
        policy, numbers, to, first=first, usage={}, resting=resting, attempt_id=attempt
    )
    assert (chosen is None) == (set(numbers) <= resting)
    assert chosen is None or (chosen in numbers and chosen not in resting)


@given(callers, st.sampled_from(CONTACTS))
def test_local_prefers_the_contacts_area_then_country(numbers, to) -> None:
    chosen = choose_caller("local", numbers, to, first=None, usage={})
    country, area = area_of(to)
    if any(area and area_of(n) == (country, area) for n in numbers):
        assert area_of(chosen) == (country, area)
    elif any(area_of(n)[0] == country for n in numbers):
        assert area_of(chosen)[0] == country


@given(callers, st.integers(1, 200))
def test_first_attempts_spread_evenly(numbers, calls) -> None:
    usage: Counter[str] = Counter()
    for n in range(calls):
        chosen = choose_caller("sticky", numbers, CONTACTS[n % 5], first=None, usage=usage)
        usage[chosen] += 1
    counts = [usage[n] for n in numbers]
    assert max(counts) - min(counts) <= 1
