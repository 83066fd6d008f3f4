"""A change of who may be called and the sends: every call committed without seeing a
do-not-call listing or a consent revocation was committed before the change's stamp, and no
call is committed while a change is being written (db.standing)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from dialer.consent import ConsentEvent
from dialer.db import accounts, attempts
from dialer.db import consent as ledger
from dialer.db.connect import connect
from dialer.dispatch.claim import (
    SEND_WINDOW,
    STANDING_CHANGE_WAIT_S,
    VOID,
    DialAction,
    DialVerdict,
    begin_dial,
)
from dialer.dispatch.limiter import after_sends
from dialer.dnc import add_numbers
from tests.db.lock_cuts import until_waiting_on_a_lock
from tests.dispatch.test_claim import reserve

Change = Callable[[asyncpg.Connection, str], Awaitable[datetime]]


async def list_do_not_call(conn: asyncpg.Connection, phone: str) -> datetime:
    await add_numbers(conn, [phone], "asked not to be called")
    return await conn.fetchval("SELECT added_at FROM dnc WHERE phone_e164 = $1", phone)


async def revoke_consent(conn: asyncpg.Connection, phone: str) -> datetime:
    now = datetime.now(UTC)
    (event_id,) = await ledger.append(
        conn, [ConsentEvent(phone, "marketing", "revoke", "test", now)]
    )
    return await conn.fetchval("SELECT recorded_at FROM consent_events WHERE id = $1", event_id)


CHANGES = {"do-not-call": list_do_not_call, "consent revoked": revoke_consent}


async def reserved_attempt(db: asyncpg.Connection, tmp_path: Path, change: str) -> tuple[int, str]:
    """A reservation ready to send, of a number granted consent in `marketing` by a campaign
    that requires it (for the revocation case)."""
    attempt = await reserve(db, tmp_path, 60.0)
    phone = await db.fetchval("SELECT phone_e164 FROM attempts WHERE id = $1", attempt)
    if change == "consent revoked":
        await db.execute(
            """UPDATE campaigns SET spec = jsonb_set(spec, '{requires_consent}', '"marketing"')
               WHERE id = (SELECT campaign_id FROM attempts WHERE id = $1)""",
            attempt,
        )
        event = ConsentEvent(phone, "marketing", "grant", "test", datetime.now(UTC))
        async with db.transaction():
            await ledger.append(db, [event])
    return attempt, phone


@pytest.mark.parametrize("change", list(CHANGES))
async def test_no_call_commits_while_a_change_is_written_and_none_after_it(
    db, database_url: str, tmp_path: Path, change: str
) -> None:
    attempt, phone = await reserved_attempt(db, tmp_path, change)
    ready = [(attempt, "+918047112233", 20, 60)]
    writer = await connect(database_url)
    try:
        async with writer.transaction():
            await CHANGES[change](writer, phone)
            during = await begin_dial(db, "sim-main", ready, 1.0)
            assert during == {attempt: DialVerdict(DialAction.WAIT, STANDING_CHANGE_WAIT_S)}
            assert await db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt) == (
                "reserved"
            )
    finally:
        await writer.close()
    assert await begin_dial(db, "sim-main", ready, 1.0) == {attempt: VOID}
    assert await db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt) == "reserved"


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_change_waits_for_the_send_committing_and_is_stamped_after_it(
    db, database_url: str, tmp_path: Path, change: str
) -> None:
    attempt, phone = await reserved_attempt(db, tmp_path, change)
    sender, writer = await connect(database_url), await connect(database_url)
    try:
        sending = sender.transaction()
        await sending.start()
        locked = await accounts.lock_state_to_send(sender, "sim-main")
        assert locked is not None and locked.may_commit
        begun = await attempts.begin_dialing(
            sender,
            [(attempt, "+918047112233", 20, 60)],
            SEND_WINDOW,
            account="sim-main",
            tat_if_all_sent=after_sends(locked.limits, 1).tat,
        )
        assert begun.sent == {attempt}
        stamp_of = asyncio.ensure_future(_in_transaction(writer, CHANGES[change], phone))
        await until_waiting_on_a_lock(db, writer, stamp_of, "the change waits for the send")
        assert not stamp_of.done()
        await sending.commit()
        stamp = await stamp_of
    finally:
        await sender.close()
        await writer.close()
    requested_at = await db.fetchval("SELECT requested_at FROM attempts WHERE id = $1", attempt)
    assert requested_at < stamp
    state = await db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt)
    assert state == "dialing"  # committed before the change: the call goes on


async def _in_transaction(conn: asyncpg.Connection, change: Change, phone: str) -> datetime:
    async with conn.transaction():
        return await change(conn, phone)
