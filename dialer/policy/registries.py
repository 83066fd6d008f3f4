"""Do-not-call registries by age: whether the copy a campaign dials against is fresh enough for
the packs it names, and from when a number's registration binds.

A registry copy is dated by the day its administrator gave it out (`--as-of`). A pack's
`max_age = "31d"` means: a call made on day D needs a copy as of D - 31 or later (47 CFR
64.1200(c)(2)(i)(D): "no more than 31 days prior to the date any call is made"). D is the UTC
date of the database's clock: for the Americas that day begins earlier than the local one, so the
copy turns stale a few hours before local midnight, never after. No copy at all is stale.

A registration `takes_effect_after = "7d"` (India's NCPR) binds from the day of registration
plus that time; before it, the law does not yet bind the caller, and reports say so. `dialer`
never dials a listed number either way: the person's wish is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from dialer.policy.packs import CampaignRules, RegistryRule


@dataclass(frozen=True)
class Freshness:
    """One registry a campaign's packs demand to be fresh, and how old its newest copy is."""

    registry: str
    pack: str  # the pack (with version) that demands it
    max_age_days: int
    as_of: date | None  # the newest copy imported; None: never imported
    today: date

    @property
    def age_days(self) -> int | None:
        return None if self.as_of is None else (self.today - self.as_of).days

    @property
    def fresh(self) -> bool:
        age = self.age_days
        return age is not None and age <= self.max_age_days

    @property
    def stale_from(self) -> date | None:
        """The first day this copy is too old to dial with."""
        return None if self.as_of is None else self.as_of + timedelta(days=self.max_age_days + 1)

    def problem(self) -> str:
        """Why a campaign may not dial, naming the registry, its age and the fix."""
        wanted = f"{self.pack} requires registry {self.registry} no older than {self.max_age_days}"
        fix = (
            f"import a fresh copy: dialer dnc import FILE --registry {self.registry}"
            " --as-of YYYY-MM-DD"
        )
        if self.as_of is None:
            return f"{wanted} days, and no copy of it was ever imported; {fix}"
        return (
            f"{wanted} days: the newest copy is as of {self.as_of.isoformat()},"
            f" {self.age_days} days old on {self.today.isoformat()} (UTC); {fix}"
        )


def demanded(law: CampaignRules | None) -> list[tuple[str, RegistryRule]]:
    """The (pack, registry) pairs of a campaign's packs that demand a fresh copy."""
    if law is None:
        return []
    return [(pack, rule) for pack, rule in law.registries if rule.max_age_days is not None]


def freshness(
    law: CampaignRules | None, newest: Mapping[str, date], today: date
) -> list[Freshness]:
    """Every registry the campaign's packs demand to be fresh, judged against `newest` (the
    newest copy's date per registry)."""
    return [
        Freshness(rule.name, pack, rule.max_age_days or 0, newest.get(rule.name), today)
        for pack, rule in demanded(law)
    ]


def stale(law: CampaignRules | None, newest: Mapping[str, date], today: date) -> list[str]:
    """What stops the campaign from dialing today ([]: nothing)."""
    return [f.problem() for f in freshness(law, newest, today) if not f.fresh]


def binds_from(registered_on: date, rule: RegistryRule) -> date:
    """The day a registration made on `registered_on` starts to bind the caller."""
    after = rule.binds_after or timedelta(0)
    return registered_on + timedelta(days=after.days + (1 if after % timedelta(days=1) else 0))


def registry_rule(name: str, packs: list[RegistryRule]) -> RegistryRule | None:
    """The rule some pack gives for the registry called `name` (the first one found)."""
    return next((rule for rule in packs if rule.name == name), None)
