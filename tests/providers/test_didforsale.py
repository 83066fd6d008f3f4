"""DIDforSale: the CallTermination request, its odd callbacks, and a whole campaign."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest

from dialer.callbacks.bodies import parse_body
from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.didforsale import DidforsaleAccount, DidforsaleProvider
from dialer.providers.errors import Forbidden, Rejected
from dialer.providers.http import HttpAnswer
from tests.fakes.didforsale import DidforsaleDialect
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.processes import free_port
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

API_KEY, SECRET_KEY = "dfs-api-key-1234", "dfs-callback-secret-5678"
CALL = CallRequest(
    attempt_id=31,
    to="+19499300360",
    caller_id="+18005797676",
    callback_url="https://d.example.com/callbacks/dfs/31?token=t",
    ring_timeout_s=30,
    max_duration_s=600,
    connect_to="https://d.example.com/didml/hello.xml",
)


def adapter(base: str = "https://api.didforsale.com") -> DidforsaleProvider:
    account = DidforsaleAccount(
        kind="didforsale",
        base_url=base,
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        rate="5/s",
        channels=2,
    )
    return DidforsaleProvider("dfs", account)


def test_request_carries_key_both_ways_and_our_id() -> None:
    request = adapter().create_request(CALL)
    assert request.url.endswith("/didforsaleapi/index.php/api/V2/CallTermination/")
    assert request.headers == {"apikey": API_KEY}
    form = dict(request.form or [])
    assert (form["from"], form["to"]) == ("18005797676", "19499300360")
    assert form["statusCallbackEvent"] == "initiated,ringing,answered,completed"
    assert form["secretKey"] == SECRET_KEY and form["optional"] == "dialer_attempt=31"
    shown = request.describe(adapter().secrets)
    assert API_KEY not in shown and SECRET_KEY not in shown


def test_answers() -> None:
    assert adapter().read_created(HttpAnswer(200, {}, b'{"status": "success"}')) is None
    assert adapter().read_created(HttpAnswer(200, {}, b'{"callSid": "X1"}')) == "X1"
    with pytest.raises(Rejected) as failed:
        adapter().read_created(HttpAnswer(200, {}, b'{"status": "error", "message": "no funds"}'))
    assert failed.value.account_wide
    with pytest.raises(Rejected) as auth:
        adapter().read_created(HttpAnswer(401, {}, b'{"message": "Invalid API key"}'))
    assert auth.value.account_wide


def callback(fields: dict[str, str], *, token: bool = True) -> InboundCallback:
    provider = adapter()
    url = provider.callback_url("https://d.example.com", 31)
    body = urlencode(fields).encode()
    form, _ = parse_body("application/x-www-form-urlencoded", body)
    return InboundCallback(url if token else url.split("?")[0], {}, body, form, None, 31)


def test_callbacks_case_insensitive_misspelled_and_authenticated() -> None:
    base = {"callSid": "A1", "ParentCallSid": "", "apikey": SECRET_KEY, "dialer_attempt": "31"}
    done = adapter().parse_callback(
        callback(base | {"CallStatus": "completed", "CallDurartion": "42"})
    )
    assert (done.status, done.duration_s) == ("completed", 42)
    assert "apikey" not in done.payload and SECRET_KEY not in str(done.payload)
    short = adapter().parse_callback(callback(base | {"callstatus": "COMPLETED"}))
    assert (short.status, short.completed_if_answered) == ("no-answer", True)
    b_leg = adapter().parse_callback(
        callback(base | {"callSid": "B1", "ParentCallSid": "A1", "CallStatus": "completed"})
    )
    assert (b_leg.status, b_leg.provider_call_id) == ("accepted", "A1")
    for bad in ({**base, "apikey": "guess"}, {k: v for k, v in base.items() if k != "apikey"}):
        with pytest.raises(Forbidden):
            adapter().parse_callback(callback(bad | {"CallStatus": "answered"}))
    with pytest.raises(Forbidden):
        adapter().parse_callback(callback(base | {"CallStatus": "answered"}, token=False))


async def test_campaign_through_the_fake(own_database_url: str, tmp_path: Path, own_db) -> None:
    fake = FakeProvider(
        DidforsaleDialect(API_KEY),
        FakeSettings(rate=(20, 1.0), channels=6, duplicates=0.2, reorder=0.2, seed=13),
    )
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure(
            "dfs",
            f'kind = "didforsale"\nbase_url = "{url}"\napi_key = "{API_KEY}"\n'
            f'secret_key = "{SECRET_KEY}"\nrate = "20/s"\nchannels = 6',
        )
        rows = [f"+1949930{n:04d},Person {n},America/Los_Angeles" for n in range(1, 31)]
        didml = 'connect_to = "https://d.example.com/didml/hello.xml"'
        await work.load("dfs-camp", "dfs", csv_rows=rows, extra=didml)
        code, output = await work.run_campaign("dfs-camp")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    outcomes = await check_against_fake(own_db, "dfs-camp", stats)
    work.assert_logs_free_of(API_KEY, SECRET_KEY)
    assert set(outcomes) == {"completed", "no-answer"}, outcomes
    leaked = await own_db.fetchval(
        "SELECT count(*) FROM call_events WHERE payload::text LIKE $1", f"%{SECRET_KEY}%"
    )
    assert leaked == 0
