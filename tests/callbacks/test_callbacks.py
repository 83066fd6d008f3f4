"""`POST /callbacks/{account}/{attempt_id}` over real HTTP against a real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from dialer.callbacks.app import Receiver
from dialer.campaign_spec import load_campaign_file
from dialer.campaigns import CampaignCache
from dialer.db.connect import connect, open_pool
from dialer.providers.base import InboundCallback
from dialer.providers.sim import SimAccount, SimProvider
from dialer.settle import apply_event
from dialer.sim.server import sign
from dialer.web import create_app
from tests.processes import write_campaign

SECRET = "callback-test-secret"
ACCOUNT = SimAccount(
    kind="sim", base_url="http://127.0.0.1:1", secret=SECRET, rate="10/s", channels=4
)
ADAPTER = SimProvider("sim-main", ACCOUNT)


async def new_attempt(conn: asyncpg.Connection, tmp_path: Path, *, attempts: int = 1) -> int:
    """A campaign with one contact whose attempt `attempts` is live (accepted, slot 0), its
    call id not known yet (the first callback brings it)."""
    name = f"cb-{await conn.fetchval('SELECT count(*) FROM campaigns')}"
    spec = load_campaign_file(write_campaign(tmp_path, name, 1)).spec
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ($1, 'sim-main', $2) RETURNING id",
        name,
        spec.to_json(),
    )
    phone = f"+91984{campaign:07d}"
    contact = await conn.fetchval(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164, state, attempts)
           VALUES ($1, 2, $2, 'dialing', $3) RETURNING id""",
        campaign,
        phone,
        attempts,
    )
    return await conn.fetchval(
        """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164,
                                 slot, provider_call_id, requested_at, settle_by)
           VALUES ($1, $2, 'sim-main', $3, 'accepted', $4,
                   (SELECT coalesce(max(slot), -1) + 1 FROM attempts WHERE account = 'sim-main'),
                   NULL, now(), now() + interval '1h')
           RETURNING id""",
        contact,
        campaign,
        attempts,
        phone,
    )


def events(attempt_id: int, outcome: str, call_id: str) -> list[dict]:
    names = ["initiated", "ringing"] + (["answered"] if outcome == "completed" else []) + [outcome]
    result = [
        {
            "call_id": call_id,
            "attempt_id": attempt_id,
            "status": s,
            "sequence": i,
            "timestamp": 1.8e9,
        }
        for i, s in enumerate(names)
    ]
    if outcome == "completed":
        result[-1]["duration"] = 12
    return result


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[TestServer]:
    async with open_pool(database_url) as pool:
        receiver = Receiver(pool, {"sim-main": ADAPTER}, public_url="")
        test_server = TestServer(create_app(receiver), host="127.0.0.1")
        await test_server.start_server()
        try:
            yield test_server
        finally:
            await test_server.close()


async def post(
    server: TestServer, attempt_id: int, event: dict, *, secret: str | None = SECRET
) -> int:
    path = f"/callbacks/sim-main/{attempt_id}"
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Sim-Signature"] = sign(secret, path, body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{server.port}{path}?token={ADAPTER.callback_token}",
            data=body,
            headers=headers,
        ) as r,
    ):
        return r.status


async def attempt_row(db: asyncpg.Connection, attempt_id: int) -> asyncpg.Record:
    return await db.fetchrow(
        """SELECT a.state, a.outcome, a.slot, a.duration_s, a.answered_at, c.state AS contact,
                  c.next_attempt_at, c.last_outcome,
                  (SELECT count(*) FROM call_events e WHERE e.attempt_id = a.id) AS events
           FROM attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1""",
        attempt_id,
    )


async def test_clean_sequence_settles_and_frees_the_channel(server, db, tmp_path) -> None:
    attempt = await new_attempt(db, tmp_path)
    for event in events(attempt, "completed", f"SIMCALL{attempt}"):
        assert await post(server, attempt, event) == 200
    row = await attempt_row(db, attempt)
    assert (row["state"], row["outcome"], row["slot"], row["duration_s"]) == (
        "completed",
        "completed",
        None,
        12,
    )
    assert row["answered_at"] is not None
    assert (row["contact"], row["last_outcome"], row["events"]) == ("done", "completed", 4)


async def test_duplicate_and_out_of_order_events_change_nothing(server, db, tmp_path) -> None:
    attempt = await new_attempt(db, tmp_path)
    clean = events(attempt, "completed", "C1")
    for event in [clean[3], clean[1], clean[3], clean[0], clean[2], clean[2]]:
        assert await post(server, attempt, event) == 200
    row = await attempt_row(db, attempt)
    assert (row["state"], row["outcome"], row["contact"]) == ("completed", "completed", "done")
    assert row["events"] == 4  # each distinct event stored once


async def test_forged_or_unsigned_callbacks_are_refused(server, db, tmp_path) -> None:
    attempt = await new_attempt(db, tmp_path)
    final = events(attempt, "busy", "C2")[-1]
    assert await post(server, attempt, final, secret="guessed") == 403
    assert await post(server, attempt, final, secret=None) == 403
    assert await post(server, attempt + 10_000, final) == 200  # signed, but no such attempt
    row = await attempt_row(db, attempt)
    assert (row["state"], row["events"]) == ("accepted", 0)
    assert row["slot"] is not None
    refused = await db.fetchval("SELECT count(*) FROM call_events WHERE provider_call_id = 'C2'")
    assert refused == 1  # only the authentic one, kept without an attempt


async def test_retryable_outcome_schedules_the_next_attempt(server, db, tmp_path) -> None:
    attempt = await new_attempt(db, tmp_path)
    assert await post(server, attempt, events(attempt, "busy", "C3")[-1]) == 200
    row = await attempt_row(db, attempt)
    assert (row["state"], row["contact"], row["slot"]) == ("busy", "pending", None)
    assert row["next_attempt_at"] is not None
    last = await new_attempt(db, tmp_path, attempts=3)  # max_attempts = 3
    assert await post(server, last, events(last, "no-answer", "C4")[-1]) == 200
    assert (await attempt_row(db, last))["contact"] == "exhausted"


async def test_healthz(server) -> None:
    url = f"http://127.0.0.1:{server.port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert await response.json() == {"database": "ok"}


async def test_healthz_says_503_when_its_connections_are_gone(database_url: str) -> None:
    """A database restarting closes connections under their users (an InterfaceError, not a
    PostgresError): /healthz answers 503 naming the database, not a 500 with a traceback."""
    from aiohttp import web

    from dialer.callbacks.app import healthz_handler
    from dialer.supervise import Supervisor

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await pool.close()
    app = web.Application()
    app.router.add_get("/healthz", healthz_handler(Supervisor(), pool))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 503
            assert await response.json() == {"database": "unreachable: InterfaceError"}
    finally:
        await server.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    outcome=st.sampled_from(["completed", "busy", "no-answer", "failed"]),
    order=st.randoms(use_true_random=False),
    repeats=st.lists(st.integers(min_value=0, max_value=3), max_size=4),
)
def test_any_order_and_duplication_ends_like_the_clean_sequence(
    database_url: str, tmp_path: Path, outcome: str, order, repeats: list[int]
) -> None:
    async def play() -> tuple:
        conn = await connect(database_url)
        try:
            attempt = await new_attempt(conn, tmp_path)
            clean = events(attempt, outcome, f"P{attempt}")
            shuffled = clean + [clean[i % len(clean)] for i in repeats]
            order.shuffle(shuffled)
            cache = CampaignCache()
            for event in shuffled:
                body = json.dumps(event).encode()
                path = f"/callbacks/sim-main/{attempt}"
                parsed = ADAPTER.parse_callback(
                    InboundCallback(
                        url=f"{path}?token={ADAPTER.callback_token}",
                        headers={"X-Sim-Signature": sign(SECRET, path, body)},
                        body=body,
                        fields=MultiDict(),
                        json=event,
                        attempt_id=attempt,
                    )
                )
                await apply_event(conn, cache, "sim-main", attempt, parsed)
            row = await attempt_row(conn, attempt)
            return row["state"], row["outcome"], row["slot"], row["contact"], row["events"]
        finally:
            await conn.close()

    state, final, slot, contact, stored = asyncio.run(play())
    expected_contact = {"completed": "done", "failed": "failed"}.get(outcome, "pending")
    assert (state, final, slot, contact, stored) == (
        outcome,
        outcome,
        None,
        expected_contact,
        len(events(0, outcome, "x")),
    )
