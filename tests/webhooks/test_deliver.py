"""Delivering the outbox to a real HTTP receiver that verifies every request with the
`standardwebhooks` package: signed, in order per contact, the same webhook-id on every retry,
a failure kept as `exhausted` after its retries and sent again by replay."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dialer.config import WebhookConfig
from dialer.db import webhooks
from dialer.db.connect import open_pool
from dialer.metrics import WEBHOOK_DELIVERIES
from dialer.wakeups import Wakeups, listen
from dialer.webhooks import deliver
from dialer.webhooks.deliver import deliver_round
from tests.processes import until
from tests.webhooks.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(own_database_url, size=4) as pool:
        yield pool


async def install_of(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        return await webhooks.install_id(conn)


async def msg(pool: asyncpg.Pool, event: int) -> str:
    """The webhook-id of an event: unique across databases (dialer_install)."""
    return f"msg_{await install_of(pool)}_{event}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


def hook_for(url: str, secret: str = SECRET) -> WebhookConfig:
    return WebhookConfig.model_validate({"url": url, "secret": secret, "name": "crm"})


async def add_events(pool: asyncpg.Pool, keys: list[str]) -> list[int]:
    """One `contact.final` event per key, subscribed by the endpoint `crm`, in this order."""
    async with pool.acquire() as conn:
        await webhooks.register(conn, {"crm": ["contact.final"]})
        ids = []
        for key in keys:
            event = await conn.fetchval(
                """INSERT INTO webhook_events (type, order_key, campaign_id, payload)
                   VALUES ('contact.final', $1, 1, jsonb_build_object('key', $1::text))
                   RETURNING id""",
                key,
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
                   VALUES ('crm', $1, $2)""",
                event,
                key,
            )
            ids.append(event)
        return ids


async def deliver_all(pool: asyncpg.Pool, hook: WebhookConfig, rounds: int = 200) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            async with pool.acquire() as conn:
                left = await conn.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"
                )
                await conn.execute("UPDATE webhook_deliveries SET next_try_at = now()")
            if not left:
                return
            await deliver_round(pool, session, hook, await install_of(pool))
    raise AssertionError("deliveries still pending")


async def test_deliveries_are_signed_and_keep_each_contacts_order(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    keys = [f"contact:{n % 7}" for n in range(140)]  # 7 contacts, 20 events each, interleaved
    ids = await add_events(pool, keys)
    receiver.delay_s, receiver.jitter = 0.02, True  # answers in random order
    await deliver_all(pool, hook_for(receiver.url))
    assert receiver.forged == 0
    assert receiver.ids() == {await msg(pool, i) for i in ids}
    for contact in set(keys):
        seen = [
            int(d.msg_id.rsplit("_", 1)[1]) for d in receiver.received if d.data["key"] == contact
        ]
        assert seen == sorted(seen), contact
    async with pool.acquire() as conn:
        states = await conn.fetch("SELECT DISTINCT state FROM webhook_deliveries")
    assert [r["state"] for r in states] == ["delivered"]


async def test_a_wrong_secret_is_refused_by_the_receivers_library(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    """The check above can fail: signed with another key, nothing verifies."""
    await add_events(pool, ["contact:1"])
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    async with aiohttp.ClientSession() as session:
        await deliver_round(pool, session, hook_for(receiver.url, other), await install_of(pool))
    assert receiver.forged == 1 and receiver.received == []


async def test_a_failed_delivery_is_retried_with_the_same_id(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    [event] = await add_events(pool, ["contact:1"])
    receiver.status = 500
    hook = hook_for(receiver.url)
    async with aiohttp.ClientSession() as session:
        await deliver_round(pool, session, hook, await install_of(pool))
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM webhook_deliveries")
    assert row["state"] == "pending" and row["tries"] == 1 and row["last_error"] == "HTTP 500"
    receiver.status = 204
    await deliver_all(pool, hook)
    assert [d.msg_id for d in receiver.received] == [await msg(pool, event)] * 2


async def test_a_redirect_is_not_followed_but_retried(pool: asyncpg.Pool) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/elsewhere")

    app = web.Application()
    app.router.add_post("/hook", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await add_events(pool, ["contact:1"])
        async with aiohttp.ClientSession() as session:
            await deliver_round(
                pool, session, hook_for(f"http://127.0.0.1:{port}/hook"), await install_of(pool)
            )
    finally:
        await runner.cleanup()
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM webhook_deliveries")
    assert row["state"] == "pending" and row["last_error"] == "HTTP 302"


async def test_exhausted_deliveries_are_kept_counted_and_replayed(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    [event] = await add_events(pool, ["contact:1"])
    async with pool.acquire() as conn:  # the event is a day old: this failure is its last
        await conn.execute("UPDATE webhook_deliveries SET since = now() - interval '25 hours'")
        await conn.execute("UPDATE webhook_events SET created_at = now() - interval '25 hours'")
    receiver.status = 503
    hook = hook_for(receiver.url)
    before = WEBHOOK_DELIVERIES.labels("crm", "exhausted")._value.get()
    async with aiohttp.ClientSession() as session:
        await deliver_round(pool, session, hook, await install_of(pool))
    assert WEBHOOK_DELIVERIES.labels("crm", "exhausted")._value.get() == before + 1
    async with pool.acquire() as conn:
        failures = await conn.fetch("SELECT * FROM webhook_failures")
        assert [(r["event_id"], r["last_error"]) for r in failures] == [(event, "HTTP 503")]
        assert [(r["endpoint"], r["exhausted"]) for r in await webhooks.counts(conn)] == [
            ("crm", 1)
        ]
        since = await conn.fetchval("SELECT now() - interval '26 hours'")
        assert await webhooks.replay(conn, since, ["crm"], delivered_too=False) == 1
    receiver.status = 204
    await deliver_all(pool, hook)
    assert receiver.ids() == {await msg(pool, event)}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM webhook_failures") == 0
        assert await conn.fetchval("SELECT state FROM webhook_deliveries") == "delivered"


async def test_a_paused_deliverer_s_lease_expires_and_another_sends(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    """A lease taken by a process that then stops (killed, paused) is sent by another once it
    expires: at least once."""
    [event] = await add_events(pool, ["contact:1"])
    async with pool.acquire() as conn:
        leased = await webhooks.lease_due(conn, "crm", 10, 0.2)  # and this "process" dies
    assert [r["event_id"] for r in leased] == [event]
    async with aiohttp.ClientSession() as session:
        assert (
            await deliver_round(pool, session, hook_for(receiver.url), await install_of(pool)) == 0
        )  # still leased
        async with pool.acquire() as conn:  # the dead process's lease runs out on the db clock
            lapsed = "SELECT bool_and(leased_until <= now()) FROM webhook_deliveries"
            await until(lambda: conn.fetchval(lapsed), "the lease to run out")
        assert (
            await deliver_round(pool, session, hook_for(receiver.url), await install_of(pool)) == 1
        )
    assert receiver.ids() == {await msg(pool, event)}


async def test_an_idle_deliverer_sends_as_soon_as_deliveries_are_written(
    pool: asyncpg.Pool, own_database_url: str, receiver: Receiver, monkeypatch
) -> None:
    """A deliverer with nothing due waits for PostgreSQL's notice that deliveries to its
    endpoint were written (db.webhooks.DUE_NOTICE, dialer.wakeups), not for a clock: with its
    idle wait made an hour, a delivery written still arrives."""
    monkeypatch.setattr(deliver, "HEARD_IDLE_S", 3600.0)
    async with pool.acquire() as conn:
        await webhooks.register(conn, {"crm": ["contact.final"]})
    due = Wakeups()
    listening_pool = await asyncpg.create_pool(own_database_url, min_size=0, max_size=1)
    listening = asyncio.create_task(listen(listening_pool, {webhooks.WEBHOOK_DUE: due}))
    await asyncio.wait_for(due.listening.wait(), 30)  # so the deliverer's idle wait is long
    delivering = asyncio.create_task(deliver.deliver_forever(pool, hook_for(receiver.url), due))
    try:
        await until(lambda: "crm" in due._told, "the deliverer to wait")  # idle: nothing due
        source = """SELECT 'contact.final'::text AS type, 'contact:1'::text AS order_key,
                           1::bigint AS campaign_id, '{"key": "woken"}'::jsonb AS payload"""
        async with pool.acquire() as conn:
            written = await conn.fetchval(
                f"WITH {webhooks.write_ctes(source)} SELECT count(*) FROM delivered"
            )
        assert written == 1
        await until(lambda: receiver.received, "the delivery", within=60)
        assert receiver.received[0].data == {"key": "woken"}
    finally:
        for task in (delivering, listening):
            task.cancel()
        await asyncio.gather(delivering, listening, return_exceptions=True)
        await listening_pool.close()
