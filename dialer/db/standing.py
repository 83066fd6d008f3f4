"""The order between a change to who may be called and the sends: a do-not-call listing or a
consent revocation is stamped at a moment when no send can still commit without seeing it.

A send commits `dialing` holding this lock shared, taken (never waited for) in the statement
before its compare-and-set, so the compare-and-set reads a snapshot taken after it. A change
takes it exclusively, waiting for the sends holding it to commit, and stamps itself with the
time it got it. So every call committed without seeing a change was committed, with its
`requested_at`, before the change's stamp; every later one sees the change or does not commit
(its sender asks again once the change is done). While a change is being written, no call of
any number is committed: one of a few numbers takes milliseconds, a registry's copy of a
million numbers some seconds.
"""

from __future__ import annotations

from datetime import datetime

from dialer.db.types import Connection
from dialer.faults import fault_point

# A change holds every send back: a process paused inside one (SIGSTOP, a VM suspended) has
# its session ended by PostgreSQL after this long idle, the change rolled back, and the sends
# go on; its command fails, naming the connection lost, and is run again.
CHANGE_IDLE_LIMIT_S = 10

STANDING_LOCK_KEY = 0x7374616E64  # "stand"

# In a send's transaction, before its compare-and-set: true when no change is being written.
SENDS_MAY_COMMIT_SQL = f"pg_try_advisory_xact_lock_shared({STANDING_LOCK_KEY})"


async def begin_change(conn: Connection) -> datetime:
    """In the caller's transaction, before it writes a change of standing: wait until no send
    is committing, keep sends from committing until this transaction ends, and return the
    stamp the change takes (the database's clock once the lock is held). The transaction's
    session ends if it sits idle CHANGE_IDLE_LIMIT_S."""
    limit = f"{CHANGE_IDLE_LIMIT_S * 1000}"
    await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {limit}")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", STANDING_LOCK_KEY)
    stamp = await conn.fetchval("SELECT clock_timestamp()")
    fault_point("holding-standing-lock")
    return stamp
