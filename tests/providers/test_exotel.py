"""Exotel: the adapter's requests and parsing, and whole campaigns against the fake Exotel."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from multidict import MultiDict

from dialer.callbacks.bodies import parse_body
from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.errors import Forbidden, RateLimited, Rejected
from dialer.providers.exotel import ExotelAccount, ExotelProvider
from dialer.providers.http import HttpAnswer
from dialer.providers.secrets import derive_token
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.exotel import ExotelDialect, _multipart_delivery
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

SID, KEY, TOKEN = "acme1", "exo-key-123", "exo-token-456"


def account(base_url: str = "https://api.exotel.com", fmt: str = "e164") -> ExotelAccount:
    return ExotelAccount(
        kind="exotel",
        base_url=base_url,
        sid=SID,
        api_key=KEY,
        api_token=TOKEN,
        number_format=fmt,
        rate="200/min",
        channels=4,
    )


def account_toml(base_url: str, fmt: str = "e164", *, token: str = TOKEN) -> str:
    return f"""kind = "exotel"
base_url = "{base_url}"
sid = "{SID}"
api_key = "{KEY}"
api_token = "{token}"
number_format = "{fmt}"
rate = "20/s"
channels = 6"""


CALL = CallRequest(
    attempt_id=42,
    to="+919876543210",
    caller_id="08047112233",
    callback_url="https://dialer.example.com/callbacks/exo/42?token=t",
    ring_timeout_s=30,
    max_duration_s=600,
    agent_number="+919812345678",
)


def test_number_to_number_request_has_every_documented_field() -> None:
    request = ExotelProvider("exo", account(fmt="national0")).create_request(CALL)
    assert request.url == f"https://api.exotel.com/v1/Accounts/{SID}/Calls/connect.json"
    assert request.auth == (KEY, TOKEN)
    form = dict(request.form or [])
    assert form["From"] == "09876543210" and form["To"] == "09812345678"
    assert form["CallerId"] == "08047112233" and form["CallType"] == "trans"
    assert (form["TimeOut"], form["TimeLimit"]) == ("30", "600")
    assert form["CustomField"] == "dialer-attempt:42"
    assert form["StatusCallbackEvents[0]"] == "terminal"
    assert form["StatusCallbackEvents[1]"] == "answered"
    assert "Url" not in form
    shown = request.describe(ExotelProvider("exo", account()).secrets)
    assert TOKEN not in shown and "****" in shown


def test_flow_request_uses_url_and_e164() -> None:
    flow = CallRequest(
        **{
            **CALL.__dict__,
            "agent_number": None,
            "connect_to": "http://my.exotel.com/acme1/exoml/start_voice/1",
        }
    )
    form = dict(ExotelProvider("exo", account()).create_request(flow).form or [])
    assert form["From"] == "+919876543210"
    assert form["Url"].endswith("/start_voice/1") and "To" not in form


def test_errors_in_json_and_xml_are_classified() -> None:
    adapter = ExotelProvider("exo", account())
    ndnc = (
        b"<TwilioResponse><RestException><Status>403</Status><Message>Call to 09876543210"
        b" cannot be made because of TRAI NDNC regulations</Message></RestException>"
        b"</TwilioResponse>"
    )
    with pytest.raises(Rejected) as refused:
        adapter.read_created(HttpAnswer(403, {}, ndnc))
    assert refused.value.do_not_call and not refused.value.account_wide
    assert "NDNC" in refused.value.detail
    with pytest.raises(Rejected) as auth:
        adapter.read_created(
            HttpAnswer(
                401,
                {},
                b'{"RestException": {"Status": 401, "Message": "Authentication is required"}}',
            )
        )
    assert auth.value.account_wide
    with pytest.raises(RateLimited) as limited:
        adapter.read_created(HttpAnswer(429, {"Retry-After": "30"}, b"{}"))
    assert limited.value.retry_after == 30
    assert (
        adapter.read_created(
            HttpAnswer(200, {}, b"<TwilioResponse><Call><Sid>abc123</Sid></Call></TwilioResponse>")
        )
        == "abc123"
    )


def test_multipart_callback_with_legs_takes_the_customer_leg() -> None:
    adapter = ExotelProvider("exo", account())
    fields = {
        "CallSid": "c1",
        "EventType": "terminal",
        "Status": "completed",
        "CustomField": "dialer-attempt:7",
        "Legs[0][Status]": "no-answer",
        "Legs[0][OnCallDuration]": "0",
        "Legs[1][Status]": "",
    }
    url = adapter.callback_url("https://d.example.com", None)
    delivery = _multipart_delivery(url, fields)
    form, document = parse_body(delivery.content_type, delivery.body)
    event = adapter.parse_callback(InboundCallback(url, {}, delivery.body, form, document))
    assert (event.status, event.attempt_id, event.provider_call_id) == ("no-answer", 7, "c1")
    with pytest.raises(Forbidden):
        adapter.parse_callback(InboundCallback(url.replace("token=", "token=x"), {}, b"", form))
    with pytest.raises(Forbidden):
        adapter.parse_callback(InboundCallback(url.split("?")[0], {}, b"", MultiDict()))


async def test_number_to_number_campaign_national_format_with_ndnc(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    dialect = ExotelDialect(SID, KEY, TOKEN, number_format="national0")
    fake = FakeProvider(
        dialect, FakeSettings(rate=(20, 1.0), channels=6, duplicates=0.2, reorder=0.2)
    )
    rows = [f"+9198450{n:05d},Person {n},Asia/Kolkata" for n in range(40)] + [
        "+919845011313,Blocked,Asia/Kolkata"
    ]
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, _port())
        work.configure("exo", account_toml(url, "national0"))
        await work.load("exo-n2n", "exo", csv_rows=rows, extra='agent_number = "+919812345678"')
        code, output = await work.run_campaign("exo-n2n")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    outcomes = await check_against_fake(own_db, "exo-n2n", stats)
    assert outcomes["completed"] > 0 and outcomes["busy"] + outcomes["no-answer"] > 0
    assert stats.get("rate_429", 0) == 0, stats["rate_429_seen"]
    assert stats["peak_concurrency"] <= 6
    assert dialect.ndnc_refused == ["09845011313"]  # refused once, never tried again
    blocked = await own_db.fetchrow(
        "SELECT state, last_outcome FROM contacts WHERE phone_e164 = '+919845011313'"
    )
    assert tuple(blocked) == ("failed", "rejected")
    reason = await own_db.fetchval("SELECT reason FROM dnc WHERE phone_e164 = '+919845011313'")
    assert "NDNC" in reason
    work.assert_logs_free_of(KEY, TOKEN, derive_token(TOKEN, "exo"))
    payloads = await own_db.fetch("SELECT payload::text AS p FROM call_events")
    assert payloads and not any(TOKEN in r["p"] or KEY in r["p"] for r in payloads)


async def test_flow_campaign_with_lost_callbacks_is_reconciled_by_bulk_lookups(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    fake = FakeProvider(
        ExotelDialect(SID, KEY, TOKEN),
        FakeSettings(rate=(20, 1.0), channels=6, lose=0.3, seed=3),
    )
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, _port())
        work.configure("exo", account_toml(url))
        flow = 'connect_to = "http://my.exotel.com/acme1/exoml/start_voice/1"'
        await work.load("exo-flow", "exo", count=16, extra=flow, call_limits=("2s", "3s", "1s"))
        code, output = await work.run_campaign("exo-flow")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    await check_against_fake(own_db, "exo-flow", stats)
    assert stats["lookups"] >= 1
    polled = await own_db.fetchval(
        "SELECT count(*) FROM call_events WHERE dedupe_key LIKE '%:poll:%'"
    )
    assert polled >= 1
    assert await own_db.fetchval("SELECT count(*) FROM attempts WHERE outcome = 'unknown'") == 0
    # Exotel's call records carry the price: it reaches the attempts and the summary.
    priced = await own_db.fetch(
        """SELECT a.cost, a.duration_s FROM attempts a JOIN call_events e ON e.attempt_id = a.id
           WHERE e.dedupe_key LIKE '%:poll:completed'"""
    )
    lost_completed = [
        c for c in stats["calls"].values() if c["lost"] and c["outcome"] == "completed"
    ]
    assert len(priced) == len(lost_completed)
    assert all(r["cost"] == round(Decimal("0.6") * r["duration_s"], 2) for r in priced)
    total = await own_db.fetchval("SELECT total_cost FROM campaign_summary")
    assert total == (sum((r["cost"] for r in priced), Decimal(0)) if priced else None)


async def test_bad_credentials_pause_the_campaign_and_exit_2(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    fake = FakeProvider(ExotelDialect(SID, KEY, TOKEN), FakeSettings())
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, _port())
        work.configure("exo", account_toml(url, token="wrong-token-789"))
        flow = 'connect_to = "http://my.exotel.com/acme1/exoml/start_voice/1"'
        await work.load("exo-auth", "exo", count=20, extra=flow)
        code, output = await work.run_campaign("exo-auth")
    assert code == 2, output
    assert "provider refused the account" in output and "wrong-token" not in output
    assert "a signal (SIGTERM/SIGINT)" not in output  # the refusal is why it stopped
    status = await own_db.fetchrow("SELECT status, status_reason FROM campaigns")
    assert status["status"] == "paused" and "HTTP 401" in status["status_reason"]
    counts = await own_db.fetchrow(
        """SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                  count(*) FILTER (WHERE state = 'failed') AS failed FROM contacts"""
    )
    assert tuple(counts) == (20, 0)


def _port() -> int:
    from tests.processes import free_port

    return free_port()
