"""The load's statements (dialer.db.loads) on a real database."""

from __future__ import annotations

import asyncio

from dialer.db import loads
from dialer.db.connect import connect


def test_statistics_after_a_load_cover_every_column_a_plan_reads(database_url: str) -> None:
    """After a big load the planner knows the columns the claim and the reports filter and
    sort on; the name and the JSON fields (half of ANALYZE's time) are left to autovacuum."""

    async def go() -> set[str]:
        conn = await connect(database_url)
        try:
            await conn.execute(
                """INSERT INTO contacts (campaign_id, row_no, phone_e164, name, timezone, fields,
                                         jurisdiction)
                   SELECT 987654, n, '+9198450' || lpad(n::text, 5, '0'), 'N' || n,
                          'Asia/Kolkata', jsonb_build_object('n', n), 'IN'
                   FROM generate_series(1, 500) n"""
            )
            await loads.refresh_statistics(conn)
            rows = await conn.fetch(
                "SELECT attname FROM pg_stats WHERE tablename = 'contacts'"
                " AND schemaname = current_schema()"
            )
            return {row["attname"] for row in rows}
        finally:
            await conn.close()

    analyzed = asyncio.run(go())
    plan_columns = {"campaign_id", "state", "priority", "attempts", "next_attempt_at", "id"}
    assert plan_columns | {"timezone", "jurisdiction", "phone_e164", "held_by"} <= analyzed
    assert not {"name", "fields"} & analyzed
