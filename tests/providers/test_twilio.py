"""Twilio and its relatives (SignalWire, Restcomm, TeleAPI): requests, signatures, campaigns."""

from __future__ import annotations

import asyncio
import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
import pytest
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from dialer.callbacks.bodies import parse_body
from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.errors import Forbidden, RateLimited, Rejected
from dialer.providers.http import HttpAnswer
from dialer.providers.twilio import TwilioAccount, TwilioProvider
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.twilio import PREFIX, TwilioDialect, account_toml
from tests.processes import free_port, until
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

SID, TOKEN = "AC" + "a1" * 16, "twilio-auth-token-0123456789"
SPEC = Path(__file__).parents[1] / "data" / "twilio_api_v2010.json.gz"
CALL = CallRequest(
    attempt_id=9,
    to="+14155550123",
    caller_id="+14155550100",
    callback_url="https://dialer.example.com/callbacks/tw/9?token=abc",
    ring_timeout_s=25,
    max_duration_s=900,
    connect_to="https://dialer.example.com/twiml/hello.xml",
)


def adapter(variant: str = "twilio", base_url: str = "https://api.twilio.com") -> TwilioProvider:
    return TwilioProvider(
        "tw",
        TwilioAccount(
            kind="twilio",
            base_url=base_url,
            account_sid=SID,
            auth_token=TOKEN,
            path_prefix=PREFIX[variant],
            rate="1/s",
            channels=2,
        ),
    )


def create_call_schema() -> dict[str, Any]:
    """CreateCall's form schema from Twilio's official OpenAPI description, refs resolved,
    unknown parameters forbidden."""
    spec = json.loads(gzip.decompress(SPEC.read_bytes()))
    operation = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"]["post"]
    assert operation["operationId"] == "CreateCall"
    media = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = spec
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target[part]
                return resolve(target)
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(media["schema"]) | {"additionalProperties": False}


def as_document(form: list[tuple[str, str]], schema: dict[str, Any]) -> dict[str, Any]:
    """A form body read the way Twilio reads it: repeated keys are arrays, integers parsed."""
    document: dict[str, Any] = {}
    for name, value in form:
        kind = schema["properties"].get(name, {}).get("type")
        parsed: Any = int(value) if kind == "integer" else value
        if kind == "array":
            document.setdefault(name, []).append(parsed)
        else:
            document[name] = parsed
    return document


def test_create_request_is_valid_against_twilios_openapi_description() -> None:
    schema = create_call_schema()
    request = adapter().create_request(CALL)
    assert request.url == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Calls.json"
    assert request.auth == (SID, TOKEN)
    document = as_document(list(request.form or []), schema)
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    assert document["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    # The check can fail: a misspelled parameter or a wrong method is refused.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"StatusCallbackEvents": ["x"]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"StatusCallbackMethod": "PUT"}, schema)


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("restcomm", ["initiated ringing answered completed"]),
        ("teleapi", ["initiated,ringing,answered,completed"]),
    ],
)
def test_relatives_get_their_own_event_list_format(variant: str, expected: list[str]) -> None:
    form = adapter(variant).create_request(CALL).form or []
    assert [v for k, v in form if k == "StatusCallbackEvent"] == expected
    assert (
        adapter(variant)
        .create_request(CALL)
        .url.endswith(f"{PREFIX[variant]}/Accounts/{SID}/Calls.json")
    )


def test_errors_are_classified_by_twilio_code() -> None:
    twilio = adapter()

    def answer(status: int, body: dict, headers: dict | None = None) -> HttpAnswer:
        return HttpAnswer(status, headers or {}, json.dumps(body).encode())

    with pytest.raises(Rejected) as number:
        twilio.read_created(answer(400, {"code": 21211, "message": "Invalid 'To' Phone Number"}))
    assert not number.value.account_wide
    with pytest.raises(Rejected) as caller_id:
        twilio.read_created(answer(400, {"code": 21210, "message": "'From' not verified"}))
    assert caller_id.value.account_wide
    with pytest.raises(Rejected) as auth:
        twilio.read_created(answer(401, {"code": 20003, "message": "Authenticate"}))
    assert auth.value.account_wide
    with pytest.raises(RateLimited) as limited:
        twilio.read_created(answer(429, {"code": 20429, "message": "Too Many Requests"}))
    assert limited.value.retry_after is None
    with pytest.raises(Rejected) as inactive:
        adapter("teleapi").read_created(answer(200, {"status": "error", "error": "user inactive"}))
    assert inactive.value.account_wide
    assert twilio.read_created(answer(201, {"sid": "CA123", "status": "queued"})) == "CA123"


def signed_callback(url: str, fields: dict[str, str], signature: str) -> InboundCallback:
    body = urlencode(fields).encode()
    form, _ = parse_body("application/x-www-form-urlencoded", body)
    return InboundCallback(url, {"X-Twilio-Signature": signature}, body, form, None, 9)


@pytest.mark.parametrize("signed_url_has_port", [True, False])
def test_official_signatures_are_accepted_with_and_without_port(signed_url_has_port) -> None:
    twilio = adapter()
    received = twilio.callback_url("https://dialer.example.com:443", 9)
    signed_url = received if signed_url_has_port else received.replace(":443", "")
    fields = {
        "CallSid": "CA1",
        "CallStatus": "completed",
        "CallDuration": "31",
        "SequenceNumber": "3",
        "AnsweredBy": "human",
    }
    signature = RequestValidator(TOKEN).compute_signature(signed_url, fields)
    event = twilio.parse_callback(signed_callback(received, fields, signature))
    assert (event.status, event.duration_s, event.answered_by) == ("completed", 31, "human")
    # the same from a server that reports the URL without its port
    event = twilio.parse_callback(signed_callback(received.replace(":443", ""), fields, signature))
    assert event.status == "completed"


def test_tampered_or_unsigned_callbacks_are_refused() -> None:
    twilio = adapter()
    url = twilio.callback_url("https://dialer.example.com", 9)
    fields = {"CallSid": "CA1", "CallStatus": "busy", "SequenceNumber": "2"}
    signature = RequestValidator(TOKEN).compute_signature(url, fields)
    assert twilio.parse_callback(signed_callback(url, fields, signature)).status == "busy"
    for tampered in ({**fields, "CallStatus": "completed"}, {**fields, "Extra": "1"}):
        with pytest.raises(Forbidden):
            twilio.parse_callback(signed_callback(url, tampered, signature))
    with pytest.raises(Forbidden):
        twilio.parse_callback(signed_callback(url, fields, ""))
    other = RequestValidator("another-token").compute_signature(url, fields)
    with pytest.raises(Forbidden):
        twilio.parse_callback(signed_callback(url, fields, other))
    unsigned_relative = adapter("teleapi")
    teleapi_url = unsigned_relative.callback_url("https://dialer.example.com", 9)
    teleapi_fields = MultiDict({"CallSid": "ID1-CA1", "CallStatus": "NO-ANSWER"})
    event = unsigned_relative.parse_callback(
        InboundCallback(teleapi_url, {}, b"", teleapi_fields, None, 9)
    )
    assert event.status == "no-answer"
    with pytest.raises(Forbidden):  # no token: refused even where nothing is signed
        unsigned_relative.parse_callback(
            InboundCallback(teleapi_url.split("?")[0], {}, b"", teleapi_fields, None, 9)
        )


@pytest.mark.parametrize("variant", ["twilio", "signalwire", "restcomm", "teleapi"])
async def test_campaign_through_each_relative(
    variant: str, own_database_url: str, tmp_path: Path, own_db
) -> None:
    dialect = TwilioDialect(variant, SID, TOKEN)
    fake = FakeProvider(
        dialect, FakeSettings(rate=(20, 1.0), channels=6, duplicates=0.2, reorder=0.3, seed=5)
    )
    rows = [f"+1415555{n:04d},Person {n},America/Los_Angeles" for n in range(1, 25)]
    rows.append("+14155550000,Not A Number,America/Los_Angeles")
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN, variant=variant))
        twiml = 'connect_to = "https://dialer.example.com/twiml/hello.xml"'
        await work.load("tw-camp", "tw", csv_rows=rows, extra=twiml)
        code, output = await work.run_campaign("tw-camp")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    outcomes = await check_against_fake(own_db, "tw-camp", stats)
    assert outcomes["completed"] > 0
    assert stats.get("rate_429", 0) == 0, stats["rate_429_seen"]
    assert dialect.invalid_refused == ["+14155550000"]
    refused = await own_db.fetchrow(
        "SELECT state, last_outcome FROM contacts WHERE phone_e164 = '+14155550000'"
    )
    assert tuple(refused) == ("failed", "rejected")
    assert "callback refused" not in work.serve_log()


async def test_429_storm_settles_everything_and_slows_the_account(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """Half of all requests answered 429 without Retry-After: nothing lost, nothing sent twice
    for one attempt, and the account's shared rate lowered while the storm lasts."""
    fake = FakeProvider(
        TwilioDialect("twilio", SID, TOKEN),
        FakeSettings(rate=None, channels=0, storm=0.5, retry_after=False, seed=11),
    )
    factors: list[float] = []

    async def watch_rate() -> None:
        while True:
            factor = await own_db.fetchval("SELECT rate_factor FROM accounts WHERE name = 'tw'")
            if factor is not None:
                factors.append(factor)
            await asyncio.sleep(0.2)

    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN))
        twiml = 'connect_to = "https://dialer.example.com/twiml/hello.xml"'
        await work.load("storm", "tw", count=16, extra=twiml)
        watcher = asyncio.create_task(watch_rate())
        try:
            code, output = await work.run_campaign("storm")
        finally:
            watcher.cancel()
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    await check_against_fake(own_db, "storm", stats)
    assert stats["storm_429"] >= 10
    assert min(factors) < 0.6, factors  # slowed by the 429s...
    not_dialed = await own_db.fetchval(
        "SELECT count(*) FROM attempts WHERE state = 'not_dialed' AND error LIKE '429%'"
    )
    # every refused call recorded, none lost (a refused look-up, if the run made one while
    # the storm lasted, is no attempt)
    assert not_dialed == stats["storm_429"], stats


async def test_status_lookup_reads_outcome_duration_and_price() -> None:
    """The reconciler's look-up, against the fake over HTTP: a finished call's outcome, talk
    time and price; a call it does not know is absent; a 429 is "ask again later" (None)."""
    from datetime import UTC, datetime

    import aiohttp

    from dialer.calls import PlacedCall

    fake = FakeProvider(
        TwilioDialect("twilio", SID, TOKEN),
        FakeSettings(outcomes={"completed": 1.0}, talk=(1.0, 1.0), rate=None, channels=0),
    )
    async with serving(fake) as url, aiohttp.ClientSession() as session:
        twilio = adapter(base_url=url)
        call_id = await twilio.place_call(session, CALL)
        await until(  # ring up to 0.3 s + talk 1 s
            lambda: fake.calls[call_id].status == "completed", "the call to end"
        )

        async def no_wait() -> None:
            return None

        now = datetime.now(UTC)
        calls = [PlacedCall(1, call_id, CALL.to, now), PlacedCall(2, "CAnotacall", CALL.to, now)]
        found = await twilio.fetch_statuses(session, calls, no_wait)
        fake.settings.storm = 1.0  # every request refused from now on
        refused = await twilio.fetch_statuses(session, calls[:1], no_wait)
    event = found[1]
    assert (event.status, event.duration_s, event.cost, event.cost_unit) == (
        "completed",
        1,
        Decimal("0.0130"),
        "USD",
    )
    assert 2 not in found and refused == {1: None}


async def test_status_lookup_answers_that_say_nothing_are_asked_again_and_unknowns_left_out() -> (
    None
):
    """Provider.poll_each, over HTTP: a 200 that is not a call record (HTML, a JSON list) or
    a 503 says nothing now (None: ask again later); a 404 (a call the provider does not know)
    and a record whose status word we do not know are left out; a record we read is an event."""
    from datetime import UTC, datetime

    import aiohttp

    from dialer.calls import PlacedCall

    answers = {
        "CAhtml": web.Response(text="<html>busy</html>", content_type="text/html"),
        "CAlist": web.json_response([{"sid": "CAlist", "status": "completed"}]),
        "CA503": web.Response(status=503),
        "CA404": web.json_response({"code": 20404}, status=404),
        "CAodd": web.json_response({"sid": "CAodd", "status": "teleported"}),
        "CAbusy": web.json_response({"sid": "CAbusy", "status": "busy", "duration": "0"}),
    }

    async def call_record(request: web.Request) -> web.StreamResponse:
        return answers[request.match_info["sid"]]

    app = web.Application()
    app.router.add_get(PREFIX["twilio"] + "/Accounts/{account}/Calls/{sid}.json", call_record)

    async def no_wait() -> None:
        return None

    now = datetime.now(UTC)
    calls = [PlacedCall(n, sid, CALL.to, now) for n, sid in enumerate(answers, start=1)]
    async with serving(app) as url, aiohttp.ClientSession() as session:
        found = await adapter(base_url=url).fetch_statuses(session, calls, no_wait)
    assert {n: None if e is None else e.status for n, e in found.items()} == {
        1: None,
        2: None,
        3: None,
        6: "busy",
    }
