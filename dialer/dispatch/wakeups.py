"""Waking a claim loop when a channel of its account frees, instead of asking again and again.

One asyncio event per account, set when a live attempt of that account closes: in `dialer
run` from PostgreSQL's notices (every statement that closes an attempt says so at its commit,
db.attempts.FREED_NOTICE; `listen` hears them on a connection of its own), in memory from the
store itself. A notice can be lost (the listening connection gone, a pooler that keeps no
LISTEN): every wait also ends after its timeout, so a lost notice costs a freed channel at most
that long idle, never a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from dialer.db.attempts import CHANNEL_FREED
from dialer.db.outage import DATABASE_FAILURES

log = logging.getLogger("dialer.run")
LISTEN_AGAIN_S = 5.0  # after the listening connection was lost, or could not be had


class Wakeups:
    """Per account, whether a channel of it freed since its claim loop last waited."""

    def __init__(self) -> None:
        self._freed: dict[str, asyncio.Event] = {}
        self.listening = asyncio.Event()  # set while `listen` hears PostgreSQL's notices

    def heard(self, account: str) -> None:
        """A live attempt of `account` closed."""
        self._event(account).set()

    async def wait(self, account: str, timeout_s: float) -> bool:
        """Until a channel of `account` frees (True) or `timeout_s` passes (False); one that
        freed since the last wait ends this one at once."""
        freed = self._event(account)
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await freed.wait()
        except TimeoutError:
            return False
        freed.clear()
        return True

    def _event(self, account: str) -> asyncio.Event:
        return self._freed.setdefault(account, asyncio.Event())


async def listen(pool: asyncpg.Pool, wakeups: Wakeups, again_s: float = LISTEN_AGAIN_S) -> None:
    """Hear CHANNEL_FREED on a connection of `pool` held for it, for as long as the process
    runs; a connection lost (PostgreSQL restarting) is replaced `again_s` later."""

    def heard(_conn: object, _pid: int, _channel: str, account: object) -> None:
        wakeups.heard(str(account))

    troubled = False  # said so already: said again only once it listens again
    while True:
        try:
            async with pool.acquire() as conn:
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL_FREED, heard)
                wakeups.listening.set()
                if troubled:
                    log.info("listening for freed channels again")
                    troubled = False
                try:
                    await lost.wait()
                finally:
                    wakeups.listening.clear()
                    with contextlib.suppress(*DATABASE_FAILURES):
                        await conn.remove_listener(CHANNEL_FREED, heard)
            log.warning("lost the connection listening for freed channels; listening again")
            troubled = True
        except DATABASE_FAILURES as exc:
            if not troubled:
                log.warning(
                    "cannot listen for freed channels now; claim loops look again on their own",
                    extra={"error": repr(exc)},
                )
                troubled = True
        await asyncio.sleep(again_s)
