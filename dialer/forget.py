"""Erasure on request (GDPR Art. 17): `dialer forget NUMBER...` and DELETE
/api/v1/contacts/{number}.

1. Hold (one transaction): the number's keyed hash is kept do-not-call for good, the plain
   number is listed until it is erased, its waiting contacts are suppressed and its
   reservations not yet sent are released. No call to it starts after this commits (the send's
   compare-and-set checks the list).
2. Wait for its calls in flight to end (their results are kept), up to a limit.
3. Erase (one transaction): the number leaves contacts, attempts, callbacks, webhook payloads,
   API answers, rejects and the consent ledger's plain column; rows stay, so every count stays
   the same, and the ledger's chain (which hashes the key, not the number) still verifies.
   A number whose call is still in flight stays held and is reported: run it again later.

Reloading an erased number loads it `suppressed` (the loader checks the keys); files dialer or
the operator wrote (contact files, rejects files, exports, registry copies) are listed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dialer.campaigns import CampaignCache
from dialer.db import erasure as stored
from dialer.db.consent import privacy_key
from dialer.db.types import Connection
from dialer.erasure import phone_key
from dialer.settle import Settlement, settle

LOG_FILES_NOTE = (
    "logs of dialer's processes name the numbers they dialed (field `to`): erase them from"
    " your log store too"
)


@dataclass(frozen=True)
class Forgotten:
    """What `forget` did with one number (the number itself is only ever shown, not kept)."""

    number: str
    erased: bool
    in_flight: int = 0  # calls still in flight: held, not yet erased


@dataclass
class ForgetReport:
    numbers: list[Forgotten]
    released: int  # reservations not yet sent, released
    changed: dict[str, int]  # rows changed per table
    files: list[dict[str, Any]]  # files that may hold the numbers

    @property
    def complete(self) -> bool:
        return all(n.erased for n in self.numbers)


async def forget(
    conn: Connection,
    numbers: list[str],
    requested_by: str,
    *,
    wait_s: float,
    waiting: Callable[[dict[str, int]], None] | None = None,
) -> ForgetReport:
    """Hold, wait up to `wait_s` for calls in flight, erase what may be erased."""
    unique = sorted(set(numbers))
    async with conn.transaction():
        key = await privacy_key(conn)
        files = [dict(r) for r in await stored.files_naming(conn, unique)]
        reservations = await stored.hold(
            conn, unique, [phone_key(key, n) for n in unique], requested_by
        )
        cache = CampaignCache()
        released = 0
        for attempt in reservations:
            reason = "erasure requested before the call"
            released += await settle(conn, cache, attempt, Settlement.released(reason))
    deadline = time.monotonic() + wait_s
    while True:
        flying = await stored.in_flight(conn, unique)
        if not flying or time.monotonic() >= deadline:
            break
        if waiting:
            waiting(flying)
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    ready = [n for n in unique if n not in flying]
    changed: dict[str, int] = {}
    if ready:
        async with conn.transaction():
            late = await stored.in_flight(conn, ready)  # a settle may have reopened one
            ready = [n for n in ready if n not in late]
            flying |= late
            if ready:
                changed = await stored.erase(conn, ready)
    return ForgetReport(
        [Forgotten(n, n in ready, flying.get(n, 0)) for n in unique], released, changed, files
    )
