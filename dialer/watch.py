"""What a run shows while it works and when it ends: on a terminal, a live view (dialed, in
flight, outcomes, calls/s against the limit, channels, next due) with warnings printed above
it; elsewhere, plain log lines. Either way, closing lines with the counts, why it stopped and
why the contacts left are waiting (waiting.py). `dialer demo` shows the same view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from rich.live import Live
from rich.table import Table

from dialer.campaigns import Campaign
from dialer.console import err
from dialer.db import contacts, reporting
from dialer.db.outage import DATABASE_FAILURES
from dialer.policy.due import next_due
from dialer.policy.states import OUTCOMES
from dialer.waiting import WhyNot, iso, why_not_dialed

REFRESH_S = 1.0
NEXT_DUE_EVERY = 10  # refreshes: the next due contact is a scan of the waiting ones
SHOWN_OUTCOMES = (*OUTCOMES, "machine", "rejected", "unknown")


@dataclass(frozen=True)
class Progress:
    """A run's figures at one moment (attempts since it began, by every process)."""

    elapsed_s: float
    dialed: int
    outcomes: dict[str, int]
    per_s: float  # requests in the last 5 s, per second
    rate_limit: float
    channels_in_use: int
    channels: int
    next_due: datetime | None
    now: datetime

    @property
    def in_flight(self) -> int:
        return self.outcomes.get("in flight", 0)


async def read_progress(
    pool: asyncpg.Pool,
    campaigns: list[Campaign],
    after_id: int,
    started: float,
    known_next_due: datetime | None = None,
    *,
    read_next_due: bool = True,
) -> Progress:
    """The run's figures now; the next due contact read again only if `read_next_due` (else
    `known_next_due` is kept)."""
    ids = [c.id for c in campaigns]
    async with pool.acquire() as conn:
        outcomes = await reporting.run_outcomes(conn, ids, after_id)
        accounts = sorted({a for c in campaigns for a in c.accounts})
        gauges = await reporting.run_gauges(conn, ids, accounts, after_id)
        firsts = await contacts.first_due_per_zone(conn, ids) if read_next_due else []
    due = next_due(firsts, {c.id: c.rules for c in campaigns}, gauges["now"])
    return Progress(
        elapsed_s=time.monotonic() - started,
        dialed=sum(outcomes.values()),
        outcomes=outcomes,
        per_s=gauges["recent"] / 5,
        rate_limit=gauges["rate_limit"],
        channels_in_use=gauges["channels_in_use"],
        channels=gauges["channels"],
        next_due=(due[0] if due else None) if read_next_due else known_next_due,
        now=gauges["now"],
    )


def progress_table(progress: Progress, title: str) -> Table:
    """The live view's one table."""
    table = Table(title=f"{title} — {progress.elapsed_s:.0f} s")
    shown = [o for o in SHOWN_OUTCOMES if progress.outcomes.get(o)]
    for column in ("dialed", "in flight", *shown, "calls/s (limit)", "channels", "next due"):
        table.add_column(column, justify="right")
    if progress.next_due is None:
        due = "none waiting"
    elif progress.next_due <= progress.now:
        due = "now"
    else:
        due = iso(progress.next_due) or ""
    table.add_row(
        f"{progress.dialed:,}",
        f"{progress.in_flight:,}",
        *(f"{progress.outcomes[o]:,}" for o in shown),
        f"{progress.per_s:.1f} ({progress.rate_limit:g})",
        f"{progress.channels_in_use:,} / {progress.channels:,}",
        due,
    )
    return table


@contextmanager
def _logs_above(live: Live, quiet: bool) -> Iterator[None]:
    """While the view is live, the dialer's log lines are printed above it (warnings and
    errors only when `quiet`)."""
    handlers = [
        h for h in logging.getLogger("dialer").handlers if isinstance(h, logging.StreamHandler)
    ]
    saved = [(h, h.stream, h.level) for h in handlers]
    for handler in handlers:
        handler.setStream(live.console.file)
        if quiet:
            handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, stream, level in saved:
            handler.setStream(stream)
            handler.setLevel(level)


async def watched(
    work: Awaitable[int],
    pool: asyncpg.Pool,
    campaigns: list[Campaign],
    after_id: int,
    title: str,
    *,
    quiet_logs: bool = True,
) -> int:
    """Await `work`; on a terminal, with the live view of `campaigns` meanwhile (the attempts
    made after attempt `after_id`: reporting.last_attempt_id when the run began)."""
    if not err.is_terminal:
        return await work
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    with (
        Live(console=err, refresh_per_second=4, transient=False) as live,
        _logs_above(live, quiet_logs),
    ):
        shown: datetime | None = None
        refreshes = 0
        while not task.done():
            # the database may be away (a connection closed under a read is an InterfaceError):
            # the run says so in its own lines
            with contextlib.suppress(*DATABASE_FAILURES):
                progress = await read_progress(
                    pool,
                    campaigns,
                    after_id,
                    started,
                    shown,
                    read_next_due=refreshes % NEXT_DUE_EVERY == 0,
                )
                shown = progress.next_due
                live.update(progress_table(progress, title))
            refreshes += 1
            await asyncio.wait({task}, timeout=REFRESH_S)
    return task.result()


@dataclass(frozen=True)
class RunEnd:
    """What `dialer run` says last: its counts, why it stopped, why each campaign's waiting
    contacts wait; as lines for people (stderr) and as JSON for programs (`--format json`)."""

    sent_here: int  # requests this process sent
    sent: int  # since it began, by every process, for these campaigns
    in_flight: int
    settled: dict[str, int]
    ended: list[str]
    campaigns: list[WhyNot]

    def lines(self) -> list[str]:
        outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(self.settled.items())) or "none"
        return [
            f"dialer: this run sent {self.sent_here:,} calls; since it began, every process sent"
            f" {self.sent:,} for these campaigns: {self.in_flight:,} in flight,"
            f" settled: {outcomes}",
            *(f"dialer: stopped because {why}" for why in self.ended),
            *(f"dialer: {why.campaign}: {why.said()}" for why in self.campaigns),
        ]

    def to_json(self) -> dict:
        return {
            "sent_by_this_run": self.sent_here,
            "sent_since_it_began": self.sent,
            "in_flight": self.in_flight,
            "settled": dict(sorted(self.settled.items())),
            "stopped_because": self.ended,
            "campaigns": [why.to_json() for why in self.campaigns],
        }


async def run_end(
    pool: asyncpg.Pool,
    campaigns: list[Campaign],
    after_id: int,
    *,
    dialed_here: int,
    ended: list[str],
    dial_cap: int,
) -> RunEnd:
    """Read what `dialer run` says last (RunEnd)."""
    progress = await read_progress(pool, campaigns, after_id, time.monotonic(), read_next_due=False)
    async with pool.acquire() as conn:
        whys = [await why_not_dialed(conn, c, dial_cap=dial_cap) for c in campaigns]
    return RunEnd(
        sent_here=dialed_here,
        sent=progress.dialed,
        in_flight=progress.in_flight,
        settled={k: v for k, v in progress.outcomes.items() if k != "in flight"},
        ended=ended,
        campaigns=whys,
    )
