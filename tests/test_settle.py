"""`unknown` is a lack of facts, never a fact: the reconciler waits out a request's send window
before closing it, asks the provider's call list first, and any fact that comes later re-opens
the attempt with the real outcome and withdraws the contact's re-dial."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from aiohttp import web

from dialer.campaigns import CampaignCache
from dialer.db.connect import open_pool
from dialer.dispatch.claim import register_account
from dialer.dispatch.limiter import AccountLimits
from dialer.providers.base import CallEvent
from dialer.providers.sim import SimAccount, SimProvider
from dialer.reconcile import reconcile_once
from dialer.settle import apply_event, record_accepted, settle
from tests.callbacks.test_callbacks import SECRET, new_attempt
from tests.processes import free_port


class ListingProvider:
    """The sim's API as far as the reconciler uses it, with the calls it lists set by the test."""

    def __init__(self) -> None:
        self.listed: list[dict] = []
        self.asked: list[str] = []

    async def calls(self, request: web.Request) -> web.Response:
        self.asked.append(request.query.get("to", ""))
        return web.json_response({"calls": self.listed})

    async def __aenter__(self) -> SimProvider:
        app = web.Application()
        app.router.add_get("/v1/calls", self.calls)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        account = SimAccount(
            kind="sim", base_url=f"http://127.0.0.1:{port}", secret=SECRET, rate="100/s", channels=9
        )
        return SimProvider("sim-main", account)

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


async def sent_without_id(conn, tmp_path: Path, sent_s_ago: float) -> int:
    """An attempt committed `dialing` `sent_s_ago` seconds ago, no call id back, past its
    settle budget."""
    attempt = await new_attempt(conn, tmp_path)
    await conn.execute(
        """UPDATE attempts SET state = 'dialing', requested_at = now() - make_interval(secs => $2),
               send_by = now() - make_interval(secs => $2) + interval '10 seconds',
               settle_by = now() - interval '1 second'
           WHERE id = $1""",
        attempt,
        sent_s_ago,
    )
    return attempt


async def reconcile(url: str, adapter: SimProvider):
    async with open_pool(url, size=3) as pool, aiohttp.ClientSession() as session:
        async with pool.acquire() as conn:
            await register_account(conn, AccountLimits("sim-main", "sim", 100.0, 1.0, 9))
        return await reconcile_once(pool, CampaignCache(), {"sim-main": adapter}, session)


async def test_no_dialing_attempt_is_closed_while_its_request_may_still_leave(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    recent = await sent_without_id(own_db, tmp_path, 20)  # window 10 s + client timeout 15 s
    old = await sent_without_id(own_db, tmp_path, 30)
    answered = await sent_without_id(own_db, tmp_path, 5)  # its sender saw the request end
    await own_db.execute("UPDATE attempts SET request_done_at = now() WHERE id = $1", answered)
    fake = ListingProvider()
    async with fake as adapter:
        await reconcile(own_database_url, adapter)
    rows = {
        r["id"]: r for r in await own_db.fetch("SELECT id, state, outcome, error FROM attempts")
    }
    assert rows[recent]["state"] == "dialing"
    assert rows[old]["outcome"] == rows[answered]["outcome"] == "unknown"
    assert "lists no call to this number" in rows[old]["error"]
    assert len(fake.asked) == 2  # the provider's list was asked before closing either


async def test_the_one_listed_call_nobody_claims_is_adopted(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    attempt = await sent_without_id(own_db, tmp_path, 60)
    other = await new_attempt(own_db, tmp_path)  # a call id already claimed by another attempt
    await own_db.execute("UPDATE attempts SET provider_call_id = 'SIMTAKEN' WHERE id = $1", other)
    fake = ListingProvider()
    now = time.time()
    fake.listed = [
        {"call_id": "SIMTAKEN", "status": "busy", "created": now - 60},
        {"call_id": "SIMOURS", "status": "completed", "duration": 12, "created": now - 59},
        {"call_id": "SIMYESTERDAY", "status": "busy", "created": now - 86400},
    ]
    async with fake as adapter:
        actions = await reconcile(own_database_url, adapter)
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert (row["outcome"], row["provider_call_id"], row["duration_s"]) == (
        "completed",
        "SIMOURS",
        12,
    ), actions


async def test_two_unclaimed_listed_calls_are_never_guessed_between(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    attempt = await sent_without_id(own_db, tmp_path, 60)
    fake = ListingProvider()
    now = time.time()
    fake.listed = [
        {"call_id": "SIMA", "status": "busy", "created": now - 60},
        {"call_id": "SIMB", "status": "completed", "created": now - 58},
    ]
    async with fake as adapter:
        await reconcile(own_database_url, adapter)
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert row["outcome"] == "unknown" and row["provider_call_id"] is None
    assert "not guessing which" in row["error"]


async def close_unknown(conn, attempt: int) -> None:
    async with conn.transaction():
        assert await settle(conn, CampaignCache(), attempt, "unknown", error="no final event")


async def test_a_final_callback_after_unknown_reopens_with_the_real_outcome(
    own_db, tmp_path: Path
) -> None:
    attempt = await new_attempt(own_db, tmp_path)
    await close_unknown(own_db, attempt)
    contact = await own_db.fetchval("SELECT contact_id FROM attempts WHERE id = $1", attempt)
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "pending"
    event = CallEvent("completed", "SIMLATE:3:completed", "SIMLATE", duration_s=30)
    assert await apply_event(own_db, CampaignCache(), "sim-main", attempt, event) == "stored"
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert (row["state"], row["outcome"], row["provider_call_id"]) == (
        "completed",
        "completed",
        "SIMLATE",
    )
    assert row["reopened_at"] is not None and "re-opened" in row["error"]
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "done"


async def test_a_call_id_after_unknown_makes_the_attempt_live_and_withdraws_the_redial(
    own_db, tmp_path: Path
) -> None:
    attempt = await new_attempt(own_db, tmp_path)
    await own_db.execute(
        "UPDATE attempts SET state = 'dialing', provider_call_id = NULL WHERE id = $1", attempt
    )
    await close_unknown(own_db, attempt)
    await record_accepted(own_db, [(attempt, "SIMPAUSED")])  # the paused sender wakes up
    row = await own_db.fetchrow(
        "SELECT a.state, a.slot, a.provider_call_id, c.state AS contact FROM attempts a"
        " JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1",
        attempt,
    )
    assert dict(row) == {
        "state": "accepted",
        "slot": None,
        "provider_call_id": "SIMPAUSED",
        "contact": "dialing",
    }


async def test_after_a_redial_a_late_fact_is_recorded_on_its_own_attempt_only(
    own_db, tmp_path: Path
) -> None:
    attempt = await new_attempt(own_db, tmp_path)
    await close_unknown(own_db, attempt)
    contact = await own_db.fetchval("SELECT contact_id FROM attempts WHERE id = $1", attempt)
    redial = await own_db.fetchval(
        """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164,
                                 slot, requested_at, settle_by)
           SELECT contact_id, campaign_id, account, 2, 'accepted', phone_e164, 5, now(),
                  now() + interval '1h' FROM attempts WHERE id = $1
           RETURNING id""",
        attempt,
    )
    await own_db.execute("UPDATE contacts SET state = 'dialing' WHERE id = $1", contact)
    event = CallEvent("busy", "SIMOLD:2:busy", "SIMOLD")
    await apply_event(own_db, CampaignCache(), "sim-main", attempt, event)
    old = await own_db.fetchrow("SELECT state, error FROM attempts WHERE id = $1", attempt)
    assert old["state"] == "busy" and "dialed again" in old["error"]
    assert await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", redial) == "accepted"
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "dialing"
