"""Vonage: the application JWT, requests and errors, signed webhooks checked against Vonage's
own `vonage-jwt`, a whole campaign against the strict fake with lost and duplicated events."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from multidict import MultiDict
from vonage_jwt.verify_jwt import verify_signature

from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.errors import Forbidden, RateLimited, Rejected
from dialer.providers.http import HttpAnswer
from dialer.providers.vonage import VonageAccount, VonageProvider
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.vonage import VonageDialect, account_toml
from tests.processes import free_port
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

APP, API_KEY, SECRET = (
    "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "abcd1234",
    "vonage-signature-secret-" + "0" * 24,
)
CALL = CallRequest(
    attempt_id=9,
    to="+447700900123",
    caller_id="+447700900100",
    callback_url="https://dialer.example.com/callbacks/vg/9?token=abc",
    ring_timeout_s=200,
    max_duration_s=600,
    connect_to="https://dialer.example.com/ncco.json",
)


def adapter(dialect: VonageDialect) -> VonageProvider:
    account = VonageAccount(
        kind="vonage",
        application_id=APP,
        private_key=dialect.private_pem,
        api_key=API_KEY,
        signature_secret=SECRET,
        channels=2,
    )
    return VonageProvider("vg", account)


def inbound(provider: VonageProvider, delivery, attempt_id: int = 9) -> InboundCallback:
    url = provider.callback_url("https://dialer.example.com", attempt_id)
    document = json.loads(delivery.body)
    return InboundCallback(url, delivery.headers, delivery.body, MultiDict(), document, attempt_id)


DIALECT = VonageDialect(APP, API_KEY, SECRET)  # one RSA key for the module's unit tests


def test_the_create_request_carries_an_application_jwt_and_vonage_shapes() -> None:
    request = adapter(DIALECT).create_request(CALL)
    assert request.url == "https://api.nexmo.com/v1/calls" and request.json is not None
    token = request.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, DIALECT.public_key, algorithms=["RS256"])
    assert claims["application_id"] == APP and claims["exp"] - claims["iat"] == 900
    body = request.json
    assert body["to"] == [{"type": "phone", "number": "447700900123"}]
    assert body["from"] == {"type": "phone", "number": "447700900100"}
    assert body["answer_url"] == [CALL.connect_to] and body["event_url"] == [CALL.callback_url]
    assert (body["ringing_timer"], body["length_timer"]) == (120, 600)
    detect = CallRequest(**(CALL.__dict__ | {"machine_detection": "detect"}))
    assert adapter(DIALECT).create_request(detect).json["machine_detection"] == "continue"
    assert adapter(DIALECT).cannot_detect_machines("message-end") is not None
    assert DIALECT.private_pem not in request.describe(adapter(DIALECT).secrets)


def answer(status: int, body: str, headers: dict | None = None) -> HttpAnswer:
    return HttpAnswer(status, headers or {}, body.encode())


def test_answers_are_read_as_vonage_documents_them() -> None:
    provider = adapter(DIALECT)
    created = '{"uuid": "u-1", "status": "started", "direction": "outbound"}'
    assert provider.read_created(answer(201, created)) == "u-1"
    invalid = '{"title": "Bad Request", "invalid_parameters": [{"name": "%s"}]}'
    with pytest.raises(Rejected) as number:
        provider.read_created(answer(400, invalid % "to"))
    assert not number.value.account_wide
    with pytest.raises(Rejected) as caller:
        provider.read_created(answer(400, invalid % "from"))
    assert caller.value.account_wide
    with pytest.raises(Rejected) as auth:
        provider.read_created(answer(401, '{"title": "Unauthorized"}'))
    assert auth.value.account_wide
    with pytest.raises(RateLimited):
        provider.read_created(answer(429, '{"title": "Too Many Requests"}'))


EVENT = {"uuid": "u-1", "status": "timeout", "timestamp": "2026-12-05T10:00:00.000Z"}


def test_signed_webhooks_pass_ours_and_vonages_library() -> None:
    provider = adapter(DIALECT)
    url = provider.callback_url("https://dialer.example.com", 9)
    delivery = DIALECT.signed(url, EVENT)
    token = delivery.headers["Authorization"].removeprefix("Bearer ")
    assert verify_signature(token, SECRET)  # Vonage's vonage-jwt
    assert not verify_signature(token, SECRET[:-1] + "X")
    event = provider.parse_callback(inbound(provider, delivery))
    assert (event.status, event.provider_call_id) == ("no-answer", "u-1")  # Vonage's timeout


def test_forged_replayed_and_cross_account_webhooks_are_refused() -> None:
    provider = adapter(DIALECT)
    url = provider.callback_url("https://dialer.example.com", 9)
    good = DIALECT.signed(url, EVENT)
    tampered = good.body.replace(b"timeout", b"answered")
    with pytest.raises(Forbidden, match="payload_hash"):  # a one-word change in the body
        provider.parse_callback(
            InboundCallback(url, good.headers, tampered, MultiDict(), json.loads(tampered), 9)
        )
    with pytest.raises(Forbidden, match="replay"):  # signed ten minutes ago
        provider.parse_callback(inbound(provider, DIALECT.signed(url, EVENT, at=time.time() - 600)))
    with pytest.raises(Forbidden):  # signed with another account's secret
        provider.parse_callback(
            inbound(
                provider, DIALECT.signed(url, EVENT, secret="another-accounts-secret-" + "x" * 24)
            )
        )
    with pytest.raises(Forbidden):  # unsigned
        provider.parse_callback(
            InboundCallback(url, {}, good.body, MultiDict(), json.loads(good.body), 9)
        )
    with pytest.raises(Forbidden):  # signed, but not to our URL token
        bare = url.split("?")[0]
        provider.parse_callback(
            InboundCallback(bare, good.headers, good.body, MultiDict(), json.loads(good.body), 9)
        )


def test_every_status_word_and_detection_results() -> None:
    provider = adapter(DIALECT)
    url = provider.callback_url("https://dialer.example.com", 9)
    for word, state in [
        ("started", "accepted"),
        ("ringing", "ringing"),
        ("answered", "in-progress"),
        ("completed", "completed"),
        ("busy", "busy"),
        ("cancelled", "canceled"),
        ("failed", "failed"),
        ("rejected", "failed"),
        ("timeout", "no-answer"),
        ("unanswered", "no-answer"),
        ("Completed", "completed"),
    ]:
        event = provider.parse_callback(
            inbound(provider, DIALECT.signed(url, EVENT | {"status": word}))
        )
        assert event.status == state, word
    machine = provider.parse_callback(
        inbound(provider, DIALECT.signed(url, EVENT | {"status": "machine"}))
    )
    assert machine.detection_result and machine.answered_by == "machine"


async def test_a_campaign_with_lost_and_duplicated_events_ends_as_the_fake_decided(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """3 calls a second (Vonage's limit), 10% of calls lose every event, 20% duplicated,
    30% reordered: every outcome is the fake's, nothing sent twice, no 429."""
    dialect = VonageDialect(APP, API_KEY, SECRET)
    settings = FakeSettings(
        rate=(3, 1.0), channels=6, duplicates=0.2, reorder=0.3, lose=0.1, seed=9
    )
    fake = FakeProvider(dialect, settings)
    rows = [f"+4479111{n:05d},Person {n},Europe/London" for n in range(1, 19)]
    rows.append("+447911100000,Not A Number,Europe/London")
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("vg", account_toml(url, dialect))
        ncco = 'connect_to = "https://dialer.example.com/ncco.json"'
        await work.load("vg-camp", "vg", csv_rows=rows, extra=ncco, call_limits=("5s", "5s", "2s"))
        code, output = await work.run_campaign("vg-camp")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    outcomes = await check_against_fake(own_db, "vg-camp", stats)
    assert outcomes["completed"] > 0
    assert stats.get("rate_429", 0) == 0, stats["rate_429_seen"]
    assert stats.get("channel_429", 0) == 0
    assert sum(c["lost"] for c in stats["calls"].values()) >= 1
    assert dialect.invalid_refused == ["447911100000"]
    work.assert_logs_free_of(SECRET)
