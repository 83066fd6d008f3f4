"""Telnyx (TeXML): requests, errors, Ed25519 signatures checked against Telnyx's own SDK, a
whole campaign against the strict fake with lost and duplicated callbacks."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qsl

import pytest
from multidict import MultiDict
from nacl.signing import SigningKey

from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.errors import Forbidden, RateLimited, Rejected
from dialer.providers.http import HttpAnswer
from dialer.providers.telnyx import TelnyxAccount, TelnyxProvider
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.telnyx import TelnyxDialect, account_toml
from tests.processes import free_port
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

SID, KEY, APP = "b1a2c3d4-account", "KEY0123456789abcdef", "1293384261075731499"
CALL = CallRequest(
    attempt_id=9,
    to="+13125550123",
    caller_id="+13125550100",
    callback_url="https://dialer.example.com/callbacks/tx/9?token=abc",
    ring_timeout_s=200,
    max_duration_s=10,
    connect_to="https://dialer.example.com/texml/hello.xml",
)


def adapter(dialect: TelnyxDialect, base_url: str = "https://api.telnyx.com") -> TelnyxProvider:
    account = TelnyxAccount(
        kind="telnyx",
        base_url=base_url,
        api_key=KEY,
        account_sid=SID,
        application_sid=APP,
        public_key=dialect.public_key,
        channels=2,
    )
    return TelnyxProvider("tx", account)


def callback_for(provider: TelnyxProvider, delivery, attempt_id: int = 9) -> InboundCallback:
    url = provider.callback_url("https://dialer.example.com", attempt_id)
    fields = MultiDict(parse_qsl(delivery.body.decode()))
    return InboundCallback(url, delivery.headers, delivery.body, fields, None, attempt_id)


def test_the_create_request_is_texml_json_with_bearer_auth_and_allowed_limits() -> None:
    request = adapter(TelnyxDialect(SID, KEY, APP)).create_request(CALL)
    assert request.url == f"https://api.telnyx.com/v2/texml/Accounts/{SID}/Calls"
    assert request.headers["Authorization"] == f"Bearer {KEY}" and request.form is None
    assert request.json is not None
    assert request.json["ApplicationSid"] == APP and request.json["Url"] == CALL.connect_to
    assert request.json["StatusCallbackEvent"] == "initiated ringing answered completed"
    assert (request.json["Timeout"], request.json["TimeLimit"]) == (120, 30)  # clamped
    assert "MachineDetection" not in request.json
    detect = CallRequest(**(CALL.__dict__ | {"machine_detection": "message-end"}))
    fields = adapter(TelnyxDialect(SID, KEY, APP)).create_request(detect).json or {}
    assert (fields["MachineDetection"], fields["AsyncAmd"]) == ("DetectMessageEnd", True)
    assert KEY not in request.describe(adapter(TelnyxDialect(SID, KEY, APP)).secrets)


def answer(status: int, body: str, headers: dict | None = None) -> HttpAnswer:
    return HttpAnswer(status, headers or {}, body.encode())


def test_answers_are_read_as_telnyx_documents_them() -> None:
    provider = adapter(TelnyxDialect(SID, KEY, APP))
    documented = '{"from": "+13125550100", "to": "+13125550123", "status": "queued"}'
    assert provider.read_created(answer(200, documented)) is None  # known by its callbacks
    assert provider.read_created(answer(200, '{"data": {"call_sid": "v3:abc"}}')) == "v3:abc"
    error = '{"errors": [{"code": "%s", "title": "t", "source": {"pointer": "%s"}}]}'
    with pytest.raises(Rejected) as number:
        provider.read_created(answer(422, error % ("10016", "/To")))
    assert not number.value.account_wide
    with pytest.raises(Rejected) as caller:
        provider.read_created(answer(422, error % ("10005", "/From")))
    assert caller.value.account_wide
    with pytest.raises(Rejected) as auth:
        provider.read_created(answer(401, error % ("10009", "")))
    assert auth.value.account_wide
    with pytest.raises(RateLimited) as limited:
        provider.read_created(answer(429, error % ("10011", ""), {"Retry-After": "3"}))
    assert limited.value.retry_after == 3.0


@pytest.fixture
def sdk() -> ModuleType:
    """The Telnyx SDK's webhook verifier, the test oracle. Imported when a test asks for it, not
    with this module: `import telnyx` loads about 3,000 modules (1.8 s of CPU), and every
    pytest-xdist worker imports every test module to collect it."""
    from telnyx.lib import webhook_verification

    return webhook_verification


FIELDS = {"CallSid": "v3:1", "CallStatus": "no-answer", "SequenceNumber": "2", "To": "+1312"}


def test_signatures_made_as_telnyx_makes_them_pass_ours_and_the_sdk(sdk: ModuleType) -> None:
    dialect = TelnyxDialect(SID, KEY, APP)
    provider = adapter(dialect)
    delivery = dialect.signed(provider.callback_url("https://d.example", 9), FIELDS)
    sdk.verify_webhook_signature(delivery.body, delivery.headers, dialect.public_key)  # the SDK
    event = provider.parse_callback(callback_for(provider, delivery))
    assert (event.status, event.provider_call_id, event.sequence) == ("no-answer", "v3:1", 2)
    # ours, made with our key, pass the SDK too (same algorithm, same message)
    ours = SigningKey.generate()
    stamp = str(int(time.time()))
    signature = base64.b64encode(ours.sign(stamp.encode() + b"|" + delivery.body).signature)
    headers = {"telnyx-signature-ed25519": signature.decode(), "telnyx-timestamp": stamp}
    public = base64.b64encode(bytes(ours.verify_key)).decode()
    sdk.verify_webhook_signature(delivery.body, headers, public)


def test_forged_replayed_and_cross_account_callbacks_are_refused(sdk: ModuleType) -> None:
    dialect = TelnyxDialect(SID, KEY, APP)
    provider = adapter(dialect)
    url = provider.callback_url("https://d.example", 9)
    good = dialect.signed(url, FIELDS)
    # one character changed in the body
    tampered = good.body.replace(b"no-answer", b"completed")
    forged = callback_for(provider, good)
    forged = InboundCallback(forged.url, good.headers, tampered, forged.fields, None, 9)
    with pytest.raises(Forbidden):
        provider.parse_callback(forged)
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.verify_webhook_signature(tampered, good.headers, dialect.public_key)
    # an old timestamp: a replay, refused by both
    old = dialect.signed(url, FIELDS, at=time.time() - 600)
    with pytest.raises(Forbidden, match="replay"):
        provider.parse_callback(callback_for(provider, old))
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.verify_webhook_signature(old.body, old.headers, dialect.public_key)
    # signed by another Telnyx account's key
    other = TelnyxDialect(SID, KEY, APP)
    with pytest.raises(Forbidden):
        provider.parse_callback(callback_for(provider, other.signed(url, FIELDS)))
    # no signature at all, and a good signature without our URL token
    unsigned = callback_for(provider, good)
    with pytest.raises(Forbidden):
        provider.parse_callback(InboundCallback(unsigned.url, {}, good.body, unsigned.fields))
    with pytest.raises(Forbidden):
        provider.parse_callback(
            InboundCallback(url.split("?")[0], good.headers, good.body, unsigned.fields)
        )


def test_words_attestation_and_the_amd_callback() -> None:
    dialect = TelnyxDialect(SID, KEY, APP)
    provider = adapter(dialect)
    url = provider.callback_url("https://d.example", 9)
    final = FIELDS | {"CallStatus": "Completed", "CallDuration": "42", "ShakenStirAttestation": "B"}
    event = provider.parse_callback(callback_for(provider, dialect.signed(url, final)))
    assert (event.status, event.duration_s, event.stir_verstat) == ("completed", 42, "B")
    amd = {"CallSid": "v3:1", "AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "900"}
    result = provider.parse_callback(callback_for(provider, dialect.signed(url, amd)))
    assert result.detection_result and result.answered_by == "machine_end_beep"


async def test_a_campaign_with_lost_and_duplicated_callbacks_ends_as_the_fake_decided(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """10% of calls lose every callback (their final too: the status API or the call list
    still answers), 20% duplicated, 30% reordered, 30 dials per rolling 5 s as Telnyx
    documents: every outcome is the fake's, nothing sent twice, no 429."""
    dialect = TelnyxDialect(SID, KEY, APP)
    settings = FakeSettings(
        rate=(30, 5.0), channels=6, duplicates=0.2, reorder=0.3, lose=0.1, seed=7
    )
    fake = FakeProvider(dialect, settings)
    rows = [f"+1312555{n:04d},Person {n},America/Chicago" for n in range(1, 21)]
    rows.append("+13125550000,Not A Number,America/Chicago")
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tx", account_toml(url, dialect))
        texml = 'connect_to = "https://dialer.example.com/texml/hello.xml"'
        await work.load("tx-camp", "tx", csv_rows=rows, extra=texml, call_limits=("5s", "5s", "2s"))
        code, output = await work.run_campaign("tx-camp")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    outcomes = await check_against_fake(own_db, "tx-camp", stats)
    assert outcomes["completed"] > 0
    assert stats.get("rate_429", 0) == 0, stats["rate_429_seen"]
    assert stats.get("channel_429", 0) == 0
    assert sum(c["lost"] for c in stats["calls"].values()) >= 1
    assert dialect.invalid_refused == ["+13125550000"]
    assert "callback refused" not in work.serve_log()
    work.assert_logs_free_of(KEY)
