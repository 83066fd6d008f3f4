"""Plivo: requests, errors, V3 signatures checked against Plivo's own SDK both ways, a whole
campaign against the strict fake with lost and duplicated callbacks."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from multidict import MultiDict
from plivo.utils.signature_v3 import validate_v3_signature

from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.errors import Forbidden, RateLimited, Rejected
from dialer.providers.http import HttpAnswer
from dialer.providers.plivo import PlivoAccount, PlivoProvider, signature_v3
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.plivo import PlivoDialect, account_toml
from tests.processes import free_port
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

AUTH_ID, TOKEN = "MAXXXXXXXXXXXXXXXXXX", "plivo-auth-token-0123456789"
CALL = CallRequest(
    attempt_id=9,
    to="+919812345678",
    caller_id="+918047112233",
    callback_url="https://dialer.example.com/callbacks/pl/9?token=abc",
    ring_timeout_s=200,
    max_duration_s=600,
    connect_to="https://dialer.example.com/plivo/hello.xml",
)


def adapter(auth_id: str = AUTH_ID, token: str = TOKEN) -> PlivoProvider:
    account = PlivoAccount(kind="plivo", auth_id=auth_id, auth_token=token, channels=2)
    return PlivoProvider("pl", account)


def inbound(provider: PlivoProvider, delivery, attempt_id: int = 9) -> InboundCallback:
    url = provider.callback_url("https://dialer.example.com", attempt_id)
    fields = MultiDict(parse_qsl(delivery.body.decode()))
    return InboundCallback(url, delivery.headers, delivery.body, fields, None, attempt_id)


def test_the_create_request_is_json_with_basic_auth_and_numbers_without_plus() -> None:
    request = adapter().create_request(CALL)
    assert request.url == f"https://api.plivo.com/v1/Account/{AUTH_ID}/Call/"
    assert request.auth == (AUTH_ID, TOKEN) and request.json is not None
    body = request.json
    assert (body["from"], body["to"]) == ("918047112233", "919812345678")
    assert body["answer_url"] == CALL.connect_to
    assert body["ring_url"] == body["hangup_url"] == CALL.callback_url
    assert body["ring_timeout"] == 120 and "machine_detection" not in body
    detect = CallRequest(**(CALL.__dict__ | {"machine_detection": "detect"}))
    assert adapter().create_request(detect).json["machine_detection"] == "true"
    with pytest.raises(Rejected):  # Plivo cannot tell where a machine's message ends
        adapter().create_request(
            CallRequest(**(CALL.__dict__ | {"machine_detection": "message-end"}))
        )
    with pytest.raises(Rejected):  # answer_url is the call's flow: required
        adapter().create_request(CallRequest(**(CALL.__dict__ | {"connect_to": None})))


def answer(status: int, body: str, headers: dict | None = None) -> HttpAnswer:
    return HttpAnswer(status, headers or {}, body.encode())


def test_answers_are_read_as_plivo_documents_them() -> None:
    provider = adapter()
    fired = '{"api_id": "a", "message": "call fired", "request_uuid": "r-1"}'
    assert provider.read_created(answer(201, fired)) is None  # the call is known by CallUUID
    with pytest.raises(Rejected) as number:
        provider.read_created(answer(400, '{"error": "invalid to number: 12"}'))
    assert not number.value.account_wide
    with pytest.raises(Rejected) as caller:
        provider.read_created(answer(400, '{"error": "from number not verified"}'))
    assert caller.value.account_wide
    with pytest.raises(Rejected) as auth:
        provider.read_created(answer(401, '{"error": "authentication failed"}'))
    assert auth.value.account_wide
    with pytest.raises(RateLimited):
        provider.read_created(answer(429, '{"error": "too many requests"}', {"Retry-After": "1"}))


HANGUP = {"CallUUID": "c-1", "RequestUUID": "r-1", "CallStatus": "timeout", "Duration": "0"}


def test_signatures_made_by_plivos_sdk_pass_ours_and_ours_pass_the_sdk() -> None:
    dialect, provider = PlivoDialect(AUTH_ID, TOKEN), adapter()
    url = provider.callback_url("https://dialer.example.com", 9)
    delivery = dialect.signed(url, HANGUP)  # signed by plivo.utils.signature_v3
    event = provider.parse_callback(inbound(provider, delivery))
    assert (event.status, event.provider_call_id) == ("failed", "c-1")  # Plivo's "timeout"
    ours = signature_v3(TOKEN, url, MultiDict(HANGUP), "n-1")
    assert validate_v3_signature("POST", url, "n-1", TOKEN, ours, dict(HANGUP))
    changed = ours[:5] + ("A" if ours[5] != "A" else "B") + ours[6:]
    assert not validate_v3_signature("POST", url, "n-1", TOKEN, changed, dict(HANGUP))


def test_forged_and_cross_account_callbacks_are_refused_and_a_repeat_is_not() -> None:
    """A repeat of a genuine callback (the same nonce) is taken: a provider's retry after a 5xx
    may carry it, and the store keeps the event once (tests/providers/test_callback_order.py)."""
    dialect, provider = PlivoDialect(AUTH_ID, TOKEN), adapter()
    url = provider.callback_url("https://dialer.example.com", 9)
    good = dialect.signed(url, HANGUP, nonce="n-7")
    forged = inbound(provider, good)
    tampered = MultiDict(HANGUP | {"CallStatus": "completed"})
    with pytest.raises(Forbidden):
        provider.parse_callback(InboundCallback(url, good.headers, good.body, tampered, None, 9))
    first = provider.parse_callback(forged)
    assert provider.parse_callback(inbound(provider, good)) == first  # the same nonce again
    other = PlivoDialect("MAYYYYYYYYYYYYYYYYYY", "another-accounts-token")
    with pytest.raises(Forbidden):
        provider.parse_callback(inbound(provider, other.signed(url, HANGUP)))
    with pytest.raises(Forbidden):  # a good signature, without our URL token
        bare = url.split("?")[0]
        signed = dialect.signed(bare, HANGUP)
        provider.parse_callback(
            InboundCallback(bare, signed.headers, signed.body, MultiDict(HANGUP), None, 9)
        )


def test_words_and_the_machine_detection_callback() -> None:
    dialect, provider = PlivoDialect(AUTH_ID, TOKEN), adapter()
    url = provider.callback_url("https://dialer.example.com", 9)
    for word, state in [
        ("completed", "completed"),
        ("Busy", "busy"),
        ("no-answer", "no-answer"),
        ("cancel", "canceled"),
        ("NO_ANSWER", "no-answer"),
    ]:
        fields = HANGUP | {"CallStatus": word, "Duration": "7"}
        event = provider.parse_callback(inbound(provider, dialect.signed(url, fields)))
        assert event.status == state
    machine = {"CallUUID": "c-1", "RequestUUID": "r-1", "Machine": "true"}
    result = provider.parse_callback(inbound(provider, dialect.signed(url, machine)))
    assert result.detection_result and result.answered_by == "machine"


async def test_a_campaign_with_lost_and_duplicated_callbacks_ends_as_the_fake_decided(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """2 calls a second (Plivo's default), 10% of calls lose every callback, 20% duplicated,
    30% reordered: every outcome is the fake's, nothing sent twice, no 429."""
    dialect = PlivoDialect(AUTH_ID, TOKEN)
    settings = FakeSettings(
        rate=(2, 1.0), channels=6, duplicates=0.2, reorder=0.3, lose=0.1, seed=3
    )
    fake = FakeProvider(dialect, settings)
    rows = [f"+9198450{n:05d},Person {n},Asia/Kolkata" for n in range(1, 19)]
    rows.append("+919845000000,Not A Number,Asia/Kolkata")
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("pl", account_toml(url, AUTH_ID, TOKEN))
        xml = 'connect_to = "https://dialer.example.com/plivo/hello.xml"'
        await work.load("pl-camp", "pl", csv_rows=rows, extra=xml, call_limits=("5s", "5s", "2s"))
        code, output = await work.run_campaign("pl-camp")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    outcomes = await check_against_fake(own_db, "pl-camp", stats)
    assert outcomes["completed"] > 0
    assert stats.get("rate_429", 0) == 0, stats["rate_429_seen"]
    assert stats.get("channel_429", 0) == 0
    assert sum(c["lost"] for c in stats["calls"].values()) >= 1
    assert dialect.invalid_refused == ["919845000000"]
    work.assert_logs_free_of(TOKEN)
