"""The indexes the hot statements rely on, read from PostgreSQL's own plans."""

from __future__ import annotations

import asyncio

from dialer.db.connect import connect

# The shape of the per-number look-ups (db.contacts: the daily dial cap, the laws' caps, a
# number live elsewhere; db.consent, db.erasure): attempts of one number, recent ones first
BY_NUMBER = [
    """SELECT min(x.requested_at) FROM (
           SELECT a.requested_at FROM attempts a
           WHERE a.phone_e164 = $1 AND a.requested_at > now() - interval '24 hours'
             AND a.state <> 'not_dialed'
           ORDER BY a.requested_at DESC LIMIT 2) x""",
    """SELECT a.requested_at FROM attempts a
       WHERE a.phone_e164 = $1 AND a.subject = 'renewals' AND a.state <> 'not_dialed'
         AND a.requested_at > now() - interval '7 days'
       ORDER BY a.requested_at DESC LIMIT 3""",
    "SELECT EXISTS (SELECT 1 FROM attempts a WHERE a.phone_e164 = $1 AND a.state = 'ringing')",
]


def test_every_look_up_by_number_reads_the_number_index(database_url: str) -> None:
    """With one index by number (migration 0021 dropped the second), a number's attempts are
    still found through it, never by reading the table."""

    async def go() -> list[str]:
        conn = await connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute(
                    """INSERT INTO campaigns (name, account, spec)
                       VALUES ('by-number', 'sim-main', '{}'::jsonb)"""
                )
                await conn.execute(
                    """INSERT INTO contacts (campaign_id, row_no, phone_e164)
                       SELECT (SELECT id FROM campaigns WHERE name = 'by-number'), n,
                              '+9198' || lpad(n::text, 8, '0')
                       FROM generate_series(1, 20000) n"""
                )
                await conn.execute(
                    """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                             phone_e164, subject, requested_at)
                       SELECT c.id, c.campaign_id, 'sim-main', 1, 'completed', c.phone_e164,
                              'renewals', now() - (c.row_no % 100) * interval '1 hour'
                       FROM contacts c
                       WHERE c.campaign_id = (SELECT id FROM campaigns WHERE name = 'by-number')"""
                )
                await conn.execute("ANALYZE attempts")
                plans = []
                for query in BY_NUMBER:
                    rows = await conn.fetch(f"EXPLAIN {query}", "+919800000042")
                    plans.append("\n".join(row[0] for row in rows))
                raise _Rollback(plans)
        except _Rollback as done:
            return done.plans
        finally:
            await conn.close()

    by_time, by_subject, live = asyncio.run(go())
    assert "attempts_number_subject" in by_time, by_time
    assert "attempts_number_subject" in by_subject, by_subject
    for plan in (by_time, by_subject, live):  # the live one may take a live-attempts index
        assert "Index" in plan and "Seq Scan on attempts" not in plan, plan


class _Rollback(Exception):
    """Leaves the test's rows behind no more than its transaction."""

    def __init__(self, plans: list[str]) -> None:
        super().__init__("rolled back")
        self.plans = plans
