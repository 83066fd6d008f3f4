"""A change of who may be called and the sends: every call committed without seeing a
do-not-call listing or a consent revocation was committed before the change's stamp, and no
call is committed while a change is being written (db.standing)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from dialer.consent import ConsentEvent
from dialer.db import accounts, attempts
from dialer.db import consent as ledger
from dialer.db.connect import connect
from dialer.db.standing import SENDS_MAY_COMMIT_SQL
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
from tests.dispatch.test_faults import wait_until_stopped
from tests.processes import dialer_command, until

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


async def sends_may_commit(conn: asyncpg.Connection) -> bool:
    async with conn.transaction():
        return await conn.fetchval(f"SELECT {SENDS_MAY_COMMIT_SQL}")


def revoke_stopping_at_the_lock(database_url: str, folder: Path) -> subprocess.Popen:
    """`dialer consent revoke`, stopping itself once it holds db.standing's lock."""
    env = os.environ | {
        "DIALER_DATABASE_URL": database_url,
        "DIALER_FAULT": "holding-standing-lock",
    }
    return subprocess.Popen(
        dialer_command("consent", "revoke", "+919845000001", "--scope", "marketing"),
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_a_change_paused_inside_its_transaction_holds_sends_back_ten_seconds_at_most(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """`dialer consent revoke` stopped (SIGSTOP) once it holds the lock: sends are held back,
    then PostgreSQL ends its idle session (CHANGE_IDLE_LIMIT_S) and they may commit again while
    it is still stopped; resumed, it fails naming the lost connection, and nothing of the
    revocation was written."""
    revoke = revoke_stopping_at_the_lock(own_database_url, tmp_path)
    try:
        await wait_until_stopped(revoke.pid)
        assert not await sends_may_commit(own_db)  # held back while the change is written
        await until(lambda: sends_may_commit(own_db), "the paused change's session to end")
        assert revoke.poll() is None  # still stopped: PostgreSQL ended its session
    finally:
        revoke.send_signal(signal.SIGCONT)
        _, stderr = revoke.communicate(timeout=60)
    assert revoke.returncode not in (0, None), stderr
    assert b"Traceback" not in stderr, stderr.decode()[-2000:]
    assert b"nothing of it was written" in stderr, stderr.decode()[-2000:]
    assert await own_db.fetchval("SELECT count(*) FROM consent_events") == 0
