"""The campaign API over real HTTP on a real database: tokens and scopes, campaigns validated
as files are, contacts appended as `campaign load` appends them (idempotently with a key),
control, results with an incremental cursor, the do-not-call list, and problem documents."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from dialer.api import routes
from dialer.callbacks.app import Receiver
from dialer.config import DialerConfig
from dialer.db import webhooks
from dialer.db.connect import open_pool
from dialer.db.export import export_csv
from dialer.web import create_app
from tests.conftest import database_name
from tests.processes import until

WRITER = "w" * 24
READER = "r" * 24
CONFIG = DialerConfig.model_validate(
    {
        "default_region": "IN",
        "api": {
            "tokens": [
                {"name": "crm", "token": WRITER, "scopes": ["read", "write"]},
                {"name": "bi", "token": READER, "scopes": ["read"]},
            ]
        },
        "accounts": {
            "sim-main": {
                "kind": "sim",
                "base_url": "http://127.0.0.1:9",
                "secret": "routes-sim-secret",
                "rate": "1/s",
                "channels": 1,
            }
        },
    }
)
CAMPAIGN = {
    "account": "sim-main",
    "default_region": "IN",
    "caller_id": "+918047112233",
    "timezone": "Asia/Kolkata",
    "window": {"start": "09:00", "end": "21:00"},
}
CSV = (
    "phone,name,crm_id\n+919812345601,A,1\n09812345602,B,2\nnot-a-number,C,3\n"
    "+919812345601,A again,4\n"
)


@pytest.fixture
async def api(own_database_url: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with open_pool(own_database_url, size=4) as pool:
        server = TestServer(create_app(Receiver(pool, {}, "http://127.0.0.1"), config=CONFIG))
        await server.start_server()
        try:
            yield str(server.make_url("/api/v1")), pool
        finally:
            await server.close()


def auth(token: str = WRITER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(method: str, url: str, token: str | None = WRITER, **kwargs) -> tuple[int, dict]:
    headers = kwargs.pop("headers", {}) | (auth(token) if token else {})
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


async def create(base: str, name: str = "crm-1") -> None:
    status, body = await call("PUT", f"{base}/campaigns/{name}", json=CAMPAIGN)
    assert status == 201 and body["action"] == "created", body


async def test_tokens_and_scopes(api) -> None:
    base, _ = api
    status, body = await call("GET", f"{base}/campaigns", token=None)
    assert status == 401 and body["status"] == 401 and body["title"]
    status, _ = await call("GET", f"{base}/campaigns", token="x" * 24)
    assert status == 401
    assert (await call("GET", f"{base}/campaigns", token=READER))[0] == 200
    status, body = await call("PUT", f"{base}/campaigns/x", token=READER, json=CAMPAIGN)
    assert status == 403 and "write" in body["detail"]


async def test_a_campaign_is_validated_as_its_file_is(api) -> None:
    base, _ = api
    bad = CAMPAIGN | {"retry": {"busy": "soon"}, "window": {"start": "25:00", "end": "21:00"}}
    status, body = await call("PUT", f"{base}/campaigns/crm-1", json=bad)
    assert status == 422
    assert {e["field"] for e in body["errors"]} >= {"retry.busy", "window.start"}, body
    await create(base)
    status, body = await call("PUT", f"{base}/campaigns/crm-1", json=CAMPAIGN)
    assert (status, body["action"]) == (200, "unchanged")
    status, body = await call("GET", f"{base}/campaigns/crm-1")
    assert status == 200 and body["status"] == "active"
    status, body = await call("GET", f"{base}/campaigns/nope")
    assert status == 404 and body["status"] == 404


async def test_contacts_append_as_campaign_load_and_a_repeated_key_changes_nothing(api) -> None:
    base, pool = api
    await create(base)
    url = f"{base}/campaigns/crm-1/contacts"
    headers = {"Content-Type": "text/csv", "Idempotency-Key": "batch-1"}
    status, first = await call("POST", url, data=CSV, headers=headers)
    assert status == 200, first
    assert (first["loaded"], first["duplicates"], first["rejected"]) == (2, 1, 1)
    assert [r["row"] for r in first["rejected_rows"]] == [4]
    assert "phone" in first["rejected_rows"][0]["reason"]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE contacts SET name = 'changed meanwhile'")
    status, again = await call("POST", url, data=CSV, headers=headers)
    assert status == 200 and again == first
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 2
        assert await conn.fetchval("SELECT count(*) FROM loads") == 1
    status, body = await call("POST", url, data=CSV + "+919812345609,D,5\n", headers=headers)
    assert status == 409 and "Idempotency-Key" in body["detail"]
    status, body = await call("POST", url, data="x", headers={"Content-Type": "text/plain"})
    assert status == 415


async def test_json_lines_are_loaded_and_a_bad_line_is_named(api) -> None:
    base, pool = api
    await create(base)
    lines = [
        '{"phone": "+919812345601", "name": "A", "crm_id": 1}',
        "not json",
        '{"phone": "+919812345602", "name": "multi\\nline", "tags": ["x"]}',
        '{"phone": "12", "name": "short"}',
        '{"phone": "+919812345603", "vip": true, "crm_id": null}',
    ]
    status, body = await call(
        "POST",
        f"{base}/campaigns/crm-1/contacts",
        data="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 200, body
    assert body["loaded"] == 2 and body["rejected"] == 3
    assert [r["row"] for r in body["rejected_rows"]] == [2, 3, 4], body["rejected_rows"]
    async with pool.acquire() as conn:
        fields = await conn.fetchval(
            "SELECT fields FROM contacts WHERE phone_e164 = '+919812345603'"
        )
    assert fields["vip"] == "true"


async def test_control_summary_and_the_do_not_call_list(api) -> None:
    base, _ = api
    await create(base)
    await call(
        "POST", f"{base}/campaigns/crm-1/contacts", data=CSV, headers={"Content-Type": "text/csv"}
    )
    assert (await call("POST", f"{base}/campaigns/crm-1/pause"))[0] == 200
    status, body = await call("POST", f"{base}/campaigns/crm-1/pause")
    assert status == 200 and "already" in body["message"]
    assert (await call("POST", f"{base}/campaigns/crm-1/resume"))[0] == 200
    status, body = await call("POST", f"{base}/dnc", json={"numbers": ["09812345602", "1"]})
    assert status == 422 and body["errors"][0]["field"] == "numbers[1]"
    status, body = await call("POST", f"{base}/dnc", json={"numbers": ["09812345602"]})
    assert (status, body["added"], body["contacts_suppressed"]) == (200, 1, 1)
    status, body = await call("POST", f"{base}/dnc/remove", json={"numbers": ["+919812345602"]})
    assert (status, body["removed"]) == (200, 1)
    assert (await call("POST", f"{base}/campaigns/crm-1/cancel"))[0] == 200
    status, body = await call("GET", f"{base}/campaigns/crm-1")
    assert body["status"] == "canceled" and body["summary"]["suppressed"] == 1
    status, body = await call("POST", f"{base}/campaigns/crm-1/resume")
    assert status == 409


async def test_results_match_dialer_export_and_since_returns_only_changes(api) -> None:
    base, pool = api
    await create(base)
    await call(
        "POST", f"{base}/campaigns/crm-1/contacts", data=CSV, headers={"Content-Type": "text/csv"}
    )
    async with aiohttp.ClientSession(headers=auth(READER)) as session:
        async with session.get(f"{base}/campaigns/crm-1/results") as answer:
            assert answer.status == 200
            served = await answer.read()
            cursor = answer.headers["Dialer-Next-Cursor"]
        exported = io.BytesIO()

        async def write(chunk: bytes) -> None:
            exported.write(chunk)

        async with pool.acquire() as conn:
            await export_csv(conn, "crm-1", write)
        assert served == exported.getvalue() and served.count(b"\n") == 3
        # a cursor survives being pasted into a URL by hand: UTC with a Z, no `+`
        assert cursor.endswith("Z") and "+" not in cursor and " " not in cursor, cursor
        async with pool.acquire() as conn:  # the database clock has passed the cursor
            mark = datetime.fromisoformat(cursor)
            await until(lambda: conn.fetchval("SELECT now() > $1", mark), "now() past the cursor")
        async with pool.acquire() as conn:  # one contact settles after the first sync
            await conn.execute(
                """UPDATE contacts SET state = 'done', last_outcome = 'completed',
                   updated_at = now() WHERE phone_e164 = '+919812345602'"""
            )
        url = f"{base}/campaigns/crm-1/results"
        async with session.get(url, params={"format": "jsonl", "since": cursor}) as answer:
            lines = (await answer.text()).splitlines()
            later = answer.headers["Dialer-Next-Cursor"]
        assert len(lines) == 1 and json.loads(lines[0])["final_outcome"] == "completed"
        async with session.get(url, params={"format": "jsonl", "since": later}) as answer:
            assert (await answer.text()) == ""
        async with session.get(url, params={"since": "yesterday"}) as answer:
            assert answer.status == 422
        # an offset pasted unescaped (its `+` arrives as a space) reads as the same cursor
        pasted = mark.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
        raw = URL(f"{url}?format=jsonl&since={pasted}", encoded=True)
        assert "+05:30" in str(raw)
        async with session.get(raw) as answer:
            assert answer.status == 200, await answer.text()
            assert len((await answer.text()).splitlines()) == 1


async def test_unknown_routes_and_methods_are_problems(api) -> None:
    base, _ = api
    status, body = await call("GET", f"{base}/nothing-here")
    assert status == 404 and body["status"] == 404
    status, body = await call("DELETE", f"{base}/campaigns")
    assert status == 405 and body["status"] == 405


async def test_a_large_json_body_is_read_whole_and_a_huge_one_refused(api) -> None:
    base, _ = api
    numbers = [f"+9198{n:08d}" for n in range(20_000)]  # about 340 KB: many chunks
    status, body = await call("POST", f"{base}/dnc", json={"numbers": numbers})
    assert (status, body.get("added")) == (200, 20_000), body
    status, body = await call("POST", f"{base}/dnc", json={"numbers": ["1" * 100] * 20_000})
    assert status == 413 and body["status"] == 413


async def test_a_database_that_turned_read_only_is_a_503_problem(api, own_database_url) -> None:
    base, pool = api
    await create(base)
    name = database_name(own_database_url)
    async with pool.acquire() as conn:
        await conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    await pool.expire_connections()
    try:
        status, body = await call(
            "POST",
            f"{base}/campaigns/crm-1/contacts",
            data=CSV,
            headers={"Content-Type": "text/csv"},
        )
        assert status == 503 and body["status"] == 503, body
        status, body = await call("GET", f"{base}/campaigns/crm-1")
        assert status == 200  # reading still works
    finally:
        async with pool.acquire() as conn:
            await conn.execute("SET default_transaction_read_only = off")
            await conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    await pool.expire_connections()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0  # nothing half-written


async def test_a_body_the_loader_cannot_read_is_a_problem_naming_the_body(api) -> None:
    base, pool = api
    await create(base)
    url = f"{base}/campaigns/crm-1/contacts"
    latin1 = "phone,name\n+919812345601,Jos\xe9\n".encode("latin-1")
    status, body = await call("POST", url, data=latin1, headers={"Content-Type": "text/csv"})
    assert status == 400 and "body: line 2" in body["detail"], body
    status, body = await call("POST", url, data=b"name\nA\n", headers={"Content-Type": "text/csv"})
    assert status in (400, 422) and "body" in body["detail"] and "/tmp" not in body["detail"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0


async def test_a_waiting_contact_put_on_the_do_not_call_list_is_reported_final(api) -> None:
    """In the same transaction as its suppression: a `contact.final` saying do-not-call."""
    base, pool = api
    await create(base)
    await call(
        "POST", f"{base}/campaigns/crm-1/contacts", data=CSV, headers={"Content-Type": "text/csv"}
    )
    async with pool.acquire() as conn:
        await webhooks.register(conn, {"crm": ["contact.final"]})
    status, body = await call("POST", f"{base}/dnc", json={"numbers": ["+919812345601"]})
    assert (status, body["contacts_suppressed"]) == (200, 1)
    async with pool.acquire() as conn:
        events = await conn.fetch(
            """SELECT e.type, e.payload, d.endpoint FROM webhook_events e
               JOIN webhook_deliveries d ON d.event_id = e.id"""
        )
    assert [(e["type"], e["endpoint"]) for e in events] == [("contact.final", "crm")]
    payload = events[0]["payload"]
    assert payload["state"] == "suppressed" and payload["final_outcome"] == "do-not-call"
    assert payload["phone_e164"] == "+919812345601" and payload["fields"]["crm_id"] == "1"


async def test_nul_bytes_huge_numbers_and_formulas_in_uploads(api) -> None:
    """A NUL byte rejects its line (named), a number too big for a phone is a bad phone, a
    huge integer field is kept as text, and a formula comes back neutralised in the results."""
    base, _ = api
    await create(base)
    lines = [
        '{"phone": "+919812345601", "name": "=HYPERLINK(\\"http://x\\")", "big": '
        + str(10**40)
        + "}",
        '{"phone": "+919812345602", "name": "a\\u0000b"}',
        '{"phone": 1e400, "name": "inf"}',
        '{"phone": 919812345603' + "0" * 30 + ', "name": "long"}',
    ]
    status, body = await call(
        "POST",
        f"{base}/campaigns/crm-1/contacts",
        data="\n".join(lines),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 200, body
    assert body["loaded"] == 1 and body["rejected"] == 3
    reasons = {r["row"]: r["reason"] for r in body["rejected_rows"]}
    assert sorted(reasons) == [2, 3, 4] and "NUL" in reasons[2], reasons
    async with (
        aiohttp.ClientSession(headers=auth(READER)) as session,
        session.get(f"{base}/campaigns/crm-1/results") as answer,
    ):
        text = await answer.text()
    assert "'=HYPERLINK" in text and str(10**40) in text, text


async def test_names_cursors_and_accounts_that_cannot_be_are_refused_plainly(api) -> None:
    """A NUL byte or a trailing newline in a campaign path, a `since` no cursor of ours can
    be, a campaign naming an account dialer.toml does not have: a 4xx naming it, never a 500
    (nor a 500 inside a 200, once a stream has started)."""
    base, _ = api
    await create(base, "crm-names")
    for path in ("crm-names%00", "%00", "crm-names%0A", "crm-names%0D%0A"):
        for method, tail in (("GET", ""), ("POST", "/pause"), ("GET", "/results")):
            status, body = await call(method, f"{base}/campaigns/{path}{tail}")
            assert status == 404 and body["status"] == 404, (path, tail, body)
    root = base.removesuffix("/api/v1")
    async with aiohttp.ClientSession() as session:
        for url in (f"{root}/api/campaigns/%00/charts", f"{root}/api/campaigns/x%00y/charts"):
            async with session.get(url) as answer:
                assert answer.status == 404, url
    newline = CAMPAIGN | {"name": "crm-names\n"}
    status, body = await call("PUT", f"{base}/campaigns/crm-names%0A", json=newline)
    assert status == 422, body
    for since in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "1900-01-01T00:00:00Z"):
        url = f"{base}/campaigns/crm-names/results?format=jsonl&since={quote(since)}"
        status, body = await call("GET", url)
        assert status == 422 and body["errors"][0]["field"] == "since", (since, body)
    elsewhere = CAMPAIGN | {"account": "not-configured"}
    status, body = await call("PUT", f"{base}/campaigns/crm-other", json=elsewhere)
    assert status == 422 and body["errors"][0]["field"] == "account", body
    assert "'not-configured'" in body["detail"] and "sim-main" in body["detail"]
    status, _ = await call("GET", f"{base}/campaigns/crm-other")
    assert status == 404  # nothing was created


async def test_an_upload_that_stops_arriving_is_dropped(api, monkeypatch) -> None:
    monkeypatch.setattr(routes, "BODY_STALL_S", 0.5)
    base, _ = api
    await create(base, "crm-stall")
    url = URL(f"{base}/campaigns/crm-stall/contacts")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: Bearer {WRITER}\r\n"
        "Content-Type: text/csv\r\nContent-Length: 1000\r\n\r\nphone,name\n+9198"
    )
    writer.write(head.encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)  # the rest never comes
    writer.close()
    assert status.split()[1] == b"408", status


async def test_consents_are_appended_all_or_nothing(api) -> None:
    base, pool = api
    good = {"phone": "+919812345611", "scope": "marketing", "source": "crm form 7"}
    status, body = await call("POST", f"{base}/consents", json={"events": [good]})
    assert status == 200 and body == {"appended": 1, "reservations_withdrawn": 0}, body
    bad = {"events": [good, {"phone": "12", "scope": "marketing", "source": "x"}]}
    status, body = await call("POST", f"{base}/consents", json=bad)
    assert status == 422 and body["errors"][0]["field"] == "events[1].phone", body
    nul = {"events": [good | {"phone": "+919812345612", "source": "crm\x00form"}]}
    status, body = await call("POST", f"{base}/consents", json=nul)  # not storable: named
    assert status == 422 and body["errors"][0]["field"] == "events[0].source", body
    nul = {"numbers": ["+919812345613"], "reason": "asked\x00twice"}
    status, body = await call("POST", f"{base}/dnc", json=nul)
    assert status == 422 and body["errors"][0]["field"] == "reason", body
    revoke = good | {"action": "revoke"}
    status, body = await call("POST", f"{base}/consents", json={"events": [revoke]}, token=READER)
    assert status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM consent_events") == 1


async def test_a_number_is_erased_on_request_and_stays_do_not_call(api) -> None:
    base, pool = api
    await create(base, "erasing")
    url = f"{base}/campaigns/erasing/contacts"
    text = "phone,name\n+919812345621,Priya\n+919812345622,Dev\n"
    status, _ = await call("POST", url, data=text, headers={"Content-Type": "text/csv"})
    assert status == 200
    async with pool.acquire() as conn:  # a call to Dev is in flight
        await conn.execute(
            """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164, slot)
               SELECT id, campaign_id, 'sim-main', 1, 'ringing', phone_e164, 0
               FROM contacts WHERE phone_e164 = '+919812345622'"""
        )
        await conn.execute("UPDATE contacts SET state = 'dialing' WHERE name = 'Dev'")
    number = f"{base}/contacts/%2B919812345621"
    assert (await call("DELETE", number, token=READER))[0] == 403
    status, body = await call("DELETE", f"{base}/contacts/12")
    assert status == 422 and body["errors"][0]["field"] == "number", body
    status, body = await call("DELETE", number)
    assert status == 200 and body["erased"] is True, body
    assert "+919812345621" not in json.dumps(body)  # the answer does not repeat the number
    status, body = await call("DELETE", f"{base}/contacts/09812345622")  # national, IN
    assert status == 409 and "in flight" in body["detail"], body
    async with pool.acquire() as conn:
        states = dict(await conn.fetch("SELECT name, state FROM contacts ORDER BY id"))
        assert states == {None: "suppressed", "Dev": "dialing"}  # Priya's name is gone too
        assert (
            await conn.fetchval("SELECT count(*) FROM contacts WHERE phone_e164 = '+919812345621'")
            == 0
        )
    status, again = await call("POST", url, data=text, headers={"Content-Type": "text/csv"})
    assert status == 200 and again["suppressed"] == 1, again  # reloaded: suppressed, not dialed


async def test_accounts_health_pause_and_resume(api) -> None:
    from dialer.dispatch.claim import register_account
    from dialer.dispatch.limiter import AccountLimits

    base, pool = api
    async with pool.acquire() as conn:
        await register_account(conn, AccountLimits("sim-main", "sim", 1.0, 1.0, 1))
    status, body = await call("GET", f"{base}/accounts", token=READER)
    assert status == 200 and [a["health"] for a in body["accounts"]] == ["sending"]
    status, body = await call("POST", f"{base}/accounts/sim-main/pause", token=READER)
    assert status == 403
    status, body = await call("POST", f"{base}/accounts/sim-main/pause")
    assert (status, body) == (200, {"name": "sim-main", "action": "pause"})
    status, body = await call("GET", f"{base}/accounts/sim-main")
    assert status == 200 and body["health"] == "paused" and "crm" in body["paused_reason"]
    assert body["caller_ids_resting"] == []
    assert (await call("POST", f"{base}/accounts/sim-main/resume"))[0] == 200
    assert (await call("GET", f"{base}/accounts/sim-main"))[1]["health"] == "sending"
    status, body = await call("GET", f"{base}/accounts/nobody")
    assert status == 404 and body["status"] == 404
