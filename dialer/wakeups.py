"""Waking a loop when PostgreSQL says its work is there, instead of asking again and again.

A loop waits on a Wakeups, one asyncio event per key (an account, a webhook endpoint), set
when a statement that makes work for that key commits: it says so with `pg_notify` (channels
db.attempts.CHANNEL_FREED: a live attempt closed, its channel free; db.webhooks.WEBHOOK_DUE:
deliveries written for an endpoint), and `listen` hears every channel of a process on one
connection of its own. In memory, the store tells its Wakeups itself. A notice can be lost
(the listening connection gone or half-open, a pooler that keeps no LISTEN): every wait also
ends after its timeout, so a lost notice costs at most that wait, never the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import asyncpg

from dialer.db.outage import DATABASE_FAILURES

log = logging.getLogger("dialer.db")
LISTEN_AGAIN_S = 5.0  # after the listening connection was lost, or could not be had


class Wakeups:
    """Per key, whether its work came since its loop last waited."""

    def __init__(self) -> None:
        self._told: dict[str, asyncio.Event] = {}
        self._times: dict[str, int] = {}
        self.listening = asyncio.Event()  # set while `listen` hears PostgreSQL's notices

    def heard(self, key: str) -> None:
        """Work for `key` was committed."""
        self._times[key] = self._times.get(key, 0) + 1
        self._event(key).set()

    def times_told(self, key: str) -> int:
        """How many times work for `key` was told: what a reader keeps is still good while
        this is what it was when it read (and notices are heard)."""
        return self._times.get(key, 0)

    async def wait(
        self, key: str, unheard_s: float, heard_s: float | None = None, gather_s: float = 0.0
    ) -> bool:
        """Until work for `key` comes and `gather_s` more pass (True), or the wait's time passes
        (False): `heard_s` while notices are heard (a lost one costs that long), `unheard_s`
        while they cannot be (or always, without `heard_s`). Work that came since the last wait
        ends this one at once. Work that comes while gathering is taken with the first (what
        the loop does next sees it all: a notice is sent after its commit), so it does not end
        the next wait at once; work after that does."""
        timeout_s = heard_s if heard_s is not None and self.listening.is_set() else unheard_s
        told = self._event(key)
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await told.wait()
        except TimeoutError:
            return False
        if gather_s > 0:
            await asyncio.sleep(gather_s)
        told.clear()
        return True

    def _event(self, key: str) -> asyncio.Event:
        return self._told.setdefault(key, asyncio.Event())


async def listen(
    pool: asyncpg.Pool, channels: Mapping[str, Wakeups], again_s: float = LISTEN_AGAIN_S
) -> None:
    """Hear each of `channels` (a notice's payload is its key) on a connection of `pool` held
    for it, for as long as the process runs; a connection lost (PostgreSQL restarting) is
    replaced `again_s` later."""

    def heard(_conn: object, _pid: int, channel: str, key: object) -> None:
        channels[channel].heard(str(key))

    troubled = False  # said so already: said again only once it listens again
    while True:
        try:
            async with pool.acquire() as conn:
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                for channel in channels:
                    await conn.add_listener(channel, heard)
                for wakeups in channels.values():
                    wakeups.listening.set()
                if troubled:
                    log.info("listening for notices again")
                    troubled = False
                try:
                    await lost.wait()
                finally:
                    for wakeups in channels.values():
                        wakeups.listening.clear()
                    with contextlib.suppress(*DATABASE_FAILURES):
                        for channel in channels:
                            await conn.remove_listener(channel, heard)
            log.warning("lost the connection listening for notices; listening again")
            troubled = True
        except DATABASE_FAILURES as exc:
            if not troubled:
                log.warning(
                    "cannot listen for notices now; loops look again on their own",
                    extra={"error": repr(exc)},
                )
                troubled = True
        await asyncio.sleep(again_s)
