"""Registry age and registration binding, as pure arithmetic (policy.registries)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dialer.policy.packs import CampaignRules, RegistryRule, builtin_packs
from dialer.policy.registries import binds_from, freshness, stale

TCPA = CampaignRules.of([builtin_packs()["us-tcpa"]])
TODAY = date(2026, 12, 5)


@pytest.mark.parametrize(
    "age, fresh", [(0, True), (30, True), (31, True), (32, False), (400, False)]
)
def test_a_copy_is_fresh_for_31_days_then_stale(age: int, fresh: bool) -> None:
    newest = {"us-dnc": TODAY - timedelta(days=age)}
    assert (stale(TCPA, newest, TODAY) == []) is fresh
    [found] = freshness(TCPA, newest, TODAY)
    assert found.age_days == age and found.stale_from == TODAY - timedelta(days=age - 32)


def test_no_copy_is_stale_and_the_message_names_registry_and_fix() -> None:
    [problem] = stale(TCPA, {}, TODAY)
    assert "requires registry us-dnc no older than 31 days" in problem
    assert "dialer dnc import FILE --registry us-dnc --as-of" in problem


def test_packs_without_an_age_demand_nothing() -> None:
    law = CampaignRules.of([builtin_packs()["in-trai"], builtin_packs()["us-states"]])
    assert stale(law, {}, TODAY) == [] and stale(None, {}, TODAY) == []


@given(st.dates(date(2000, 1, 1), date(2100, 1, 1)), st.integers(0, 60))
def test_a_registration_binds_whole_days_after_it_was_made(registered: date, days: int) -> None:
    rule = RegistryRule(
        name="x", jurisdictions=["IN"], takes_effect_after=f"{days}d", source="a test's source"
    )
    assert binds_from(registered, rule) == registered + timedelta(days=days)


def test_a_partial_day_delay_binds_from_the_next_whole_day() -> None:
    rule = RegistryRule(
        name="x", jurisdictions=["IN"], takes_effect_after="36h", source="a test's source"
    )
    assert binds_from(TODAY, rule) == TODAY + timedelta(days=2)


@pytest.mark.parametrize("bad", ["31h", "0d", "-1d", "soon"])
def test_an_age_in_anything_but_whole_days_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        RegistryRule(name="x", jurisdictions=["US"], max_age=bad, source="a test's source")
