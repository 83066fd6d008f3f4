"""Why a campaign's waiting contacts are not dialed now: each reason with its count, its figure
and when the first of them may be dialed, plus what holds the whole campaign (its status, a
provider's hold on its account, a registry copy too old). The one reading behind `run`'s
closing lines, `run --dry-run`, `campaign show` and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dialer.campaign_spec import CampaignSpec
from dialer.campaigns import Campaign
from dialer.db import accounts, contacts, server
from dialer.db import campaigns as stored
from dialer.db.due import (
    DO_NOT_CALL,
    HELD_DIAL_CAP,
    HOLIDAY,
    NO_CONSENT,
    OUTSIDE_WINDOW,
    RETRY_DELAY,
    VERDICT_DUE,
)
from dialer.db.types import Connection
from dialer.policy.due import FirstInLine
from dialer.registries import stale_copies

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def dial_cap_figure(cap: int) -> str:
    """The daily dial cap as said (and stored with the contacts it holds)."""
    return f"{cap} per number per 24 h"


def cap_warnings(spec: CampaignSpec, dial_cap: int) -> list[str]:
    """What a campaign's retry plan cannot do under the daily dial cap (said at load)."""
    attempts = spec.retry.max_attempts
    if attempts <= dial_cap:
        return []
    single = attempts == dial_cap + 1
    later = f"attempt {attempts}" if single else f"attempts {dial_cap + 1} to {attempts}"
    verb = "waits" if single else "wait"
    return [
        f"campaign {spec.name}: retry.max_attempts = {attempts} but the daily dial cap is"
        f" {dial_cap_figure(dial_cap)} (max_dials_per_number_per_day in dialer.toml, or"
        f" `dialer run --dial-cap`): {later} of a number {verb} until 24 h after its first"
        f" dial; raise the cap to {attempts} to retry the same day"
    ]


def iso(when: datetime | None) -> str | None:
    """Every time we print: ISO 8601 to the second, with its offset."""
    return None if when is None else when.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Waiting:
    """Contacts not dialed now for one reason (db.due's verdicts) and figure."""

    reason: str
    contacts: int
    figure: str | None = None
    next_at: datetime | None = None  # the first of them may be dialed then; None: not by time

    def said(self) -> str:
        figure = f" ({self.figure})" if self.figure else ""
        if self.reason == VERDICT_DUE:
            return f"{self.contacts} due now"
        when = f", first at {iso(self.next_at)}" if self.next_at else ", not by waiting"
        return f"{self.contacts} {self.reason}{figure}{when}"

    def to_json(self) -> dict:
        return {
            "reason": self.reason,
            "contacts": self.contacts,
            "figure": self.figure,
            "next_at": iso(self.next_at),
        }


@dataclass(frozen=True)
class WhyNot:
    """One campaign's answer to "why is nobody being dialed?"."""

    campaign: str
    status: str
    blockers: list[str] = field(default_factory=list)  # what holds the whole campaign
    waiting: list[Waiting] = field(default_factory=list)  # its pending contacts, by reason

    @property
    def due(self) -> int:
        return sum(w.contacts for w in self.waiting if w.reason == VERDICT_DUE)

    @property
    def next_at(self) -> datetime | None:
        """When a contact held only by time is first dialable (None: none is)."""
        times = [w.next_at for w in self.waiting if w.next_at is not None]
        return min(times) if times else None

    def said(self) -> str:
        """One line: what holds the campaign, else the reasons its contacts wait."""
        if self.blockers:
            return "; ".join(self.blockers)
        if not self.waiting:
            return "no contact is waiting"
        return "; ".join(w.said() for w in self.waiting)

    def to_json(self) -> dict:
        return {
            "campaign": self.campaign,
            "status": self.status,
            "blockers": self.blockers,
            "waiting": [w.to_json() for w in self.waiting],
            "next_at": iso(self.next_at),
        }


def _window_figure(campaign: Campaign) -> str:
    rules = campaign.rules
    days = sorted(rules.weekdays)
    said = f"{rules.start:%H:%M}-{rules.end:%H:%M} {rules.timezone}"
    if len(days) < 7:
        said += " " + ",".join(WEEKDAYS[d] for d in days)
    if rules.law is not None:
        said += "; the laws' hours where narrower"
    return said


async def why_not_dialed(
    conn: Connection,
    campaign: Campaign,
    *,
    dial_cap: int,
    now: datetime | None = None,
    firsts: list[FirstInLine] | None = None,
) -> WhyNot:
    """Read why `campaign`'s contacts are or are not dialed now, on the database clock.
    `dial_cap` is the cap the reader would dial with: contacts held under another cap are said
    to be judged again when `dialer run` starts (Dispatcher.run releases them). `firsts`
    (contacts.first_due_per_zone) when the caller has read them already."""
    now = now or await server.now(conn)
    row = await stored.by_name(conn, campaign.name)
    status = row["status"] if row is not None else "gone"
    blockers: list[str] = []
    if status != "active":
        reason = f": {row['status_reason']}" if row is not None and row["status_reason"] else ""
        blockers.append(f"campaign {status}{reason}")
    holds = [(name, await accounts.hold(conn, name)) for name in campaign.accounts]
    if all(hold is not None for _, hold in holds):  # a pool dials on while one account is free
        blockers += [
            f"account {name} held by the provider until {iso(hold['held_until'])}"
            for name, hold in holds
            if hold is not None
        ]
    for problem in (await stale_copies(conn, [campaign])).get(campaign.id, []):
        blockers.append(problem)
    if firsts is None:
        firsts = await contacts.first_due_per_zone(conn, [campaign.id])
    rules = campaign.rules
    opens = [  # where the window is closed now: when it opens next
        when
        for first in firsts
        if not rules.is_open(now, first.timezone, first.jurisdiction)
        and (when := rules.next_open(now, first.timezone, first.jurisdiction))
    ]
    window_next = min(opens) if opens else None
    current = dial_cap_figure(dial_cap)
    waiting = []
    for group in await contacts.waiting_counts(conn, campaign.id, campaign.rules):
        reason, figure, count = group["verdict"], group["figure"], group["contacts"]
        next_at: datetime | None = group["first_at"]
        if reason == VERDICT_DUE:
            next_at = now
        elif reason in (DO_NOT_CALL, NO_CONSENT):
            next_at = None
        elif reason in (HOLIDAY, OUTSIDE_WINDOW):
            figure, next_at = _window_figure(campaign), window_next
        elif reason == RETRY_DELAY:
            figure = f"after {figure}" if figure else None
        elif reason == HELD_DIAL_CAP and figure != current:
            figure = f"{figure}; judged again under {current} when `dialer run` starts"
        waiting.append(Waiting(reason, count, figure, next_at))
    waiting.sort(key=lambda w: (w.reason != VERDICT_DUE, w.next_at is None, w.next_at or now))
    return WhyNot(campaign.name, status, blockers, waiting)
