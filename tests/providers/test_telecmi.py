"""TeleCMI make_call and click2call: requests, callbacks on the fixed event URL, campaigns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from multidict import MultiDict

from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback, ProviderError
from dialer.providers.errors import Forbidden, Rejected
from dialer.providers.http import HttpAnswer
from dialer.providers.secrets import derive_token
from dialer.providers.telecmi import TelecmiAccount, TelecmiProvider
from dialer.providers.telecmi_click2call import TelecmiClick2CallAccount, TelecmiClick2CallProvider
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.telecmi import TelecmiDialect
from tests.processes import free_port
from tests.providers.harness import Workspace, check_against_fake, serving

pytestmark = pytest.mark.timeout(300)

APPID, SECRET, USER = "2222226", "tcmi-secret-xxxx-yyyy", "101_2222226"
CALL = CallRequest(
    attempt_id=77,
    to="+919100000001",
    caller_id="+914471000000",
    callback_url="ignored: TeleCMI posts to the app's event URL",
    ring_timeout_s=30,
    max_duration_s=1200,
    connect_to="https://dialer.example.com/pcmo/answer",
)


def make_call_adapter(base: str = "https://piopiy.telecmi.com") -> TelecmiProvider:
    account = TelecmiAccount(
        kind="telecmi", base_url=base, appid=APPID, secret=SECRET, rate="10/s", channels=4
    )
    return TelecmiProvider("tcmi", account)


def click2call_adapter(base: str = "https://rest.telecmi.com") -> TelecmiClick2CallProvider:
    account = TelecmiClick2CallAccount(
        kind="telecmi-click2call",
        base_url=base,
        user_id=USER,
        secret=SECRET,
        rate="10/s",
        channels=4,
        webrtc=False,
        followme=True,
    )
    return TelecmiClick2CallProvider("c2c", account)


def test_make_call_body_has_integers_and_our_id() -> None:
    request = make_call_adapter().create_request(CALL)
    assert request.url == "https://piopiy.telecmi.com/v1/make_call"
    assert request.json == {
        "appid": 2222226,
        "secret": SECRET,
        "from": 914471000000,
        "to": 919100000001,
        "answer_url": "https://dialer.example.com/pcmo/answer",
        "duration": 1200,
        "extra_params": {"dialer_attempt": 77},
    }
    shown = request.describe(make_call_adapter().secrets)
    assert SECRET not in shown and '"to": 919100000001' in shown


def test_click2call_body() -> None:
    body = click2call_adapter().create_request(CALL).json
    assert body["user_id"] == USER and body["to"] == 919100000001
    assert (body["webrtc"], body["followme"], body["callerid"]) == (False, True, 914471000000)


def test_body_code_counts_as_much_as_http_status() -> None:
    adapter = make_call_adapter()
    with pytest.raises(Rejected) as refused:
        adapter.read_created(HttpAnswer(200, {}, b'{"code": 420, "msg": "Invalid app id"}'))
    assert refused.value.account_wide
    with pytest.raises(Rejected) as missing:
        adapter.read_created(HttpAnswer(501, {}, b'{"code": 501, "msg": "Missing property"}'))
    assert missing.value.account_wide
    old_shape = b'{"data": {"user": "40ccbc10-46be", "channel": 16}, "code": "200"}'
    assert adapter.read_created(HttpAnswer(200, {}, old_shape)) == "40ccbc10-46be"
    new_shape = b'{"data": {"status": "progress", "request_id": "r1"}, "code": 200}'
    assert adapter.read_created(HttpAnswer(200, {}, new_shape)) == "r1"
    with pytest.raises(ProviderError):
        adapter.read_created(HttpAnswer(200, {}, b"<html>gateway</html>"))
    with pytest.raises(Rejected) as secret:
        click2call_adapter().read_created(HttpAnswer(407, {}, b'{"code": 407}'))
    assert secret.value.account_wide


def cdr(leg: str, status: str, reason: str = "", duration: int = 0) -> dict:
    return {
        "type": "cdr",
        "request_id": "r9",
        "cmiuuid": f"u-{leg}",
        "leg": leg,
        "status": status,
        "hangup_reason": reason,
        "duration": duration,
        "extra_params": json.dumps({"dialer_attempt": 5}),
    }


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (cdr("a", "answered", "sent_bye", 40), "completed"),
        (cdr("a", "missed", "sent_reject"), "busy"),
        (cdr("a", "missed", "recv_cancel"), "no-answer"),
        (cdr("a", "missed"), "no-answer"),
        (cdr("a", "missed", "recv_refuse"), "failed"),
        (cdr("b", "answered", "sent_bye", 40), "accepted"),  # the other party's record
    ],
)
def test_make_call_cdrs(record: dict, expected: str) -> None:
    adapter = make_call_adapter()
    url = adapter.callback_url("https://d.example.com", 5)
    assert "/callbacks/tcmi?token=" in url  # one fixed URL: no attempt id in the path
    event = adapter.parse_callback(InboundCallback(url, {}, b"", MultiDict(), record))
    assert (event.status, event.attempt_id, event.provider_call_id) == (expected, 5, "r9")


def test_click2call_customer_is_leg_b_and_a_missed_agent_cancels() -> None:
    adapter = click2call_adapter()
    url = adapter.callback_url("https://d.example.com", None)

    def status(record: dict) -> str:
        return adapter.parse_callback(InboundCallback(url, {}, b"", MultiDict(), record)).status

    assert status(cdr("b", "answered", "sent_bye", 12)) == "completed"
    assert status(cdr("a", "answered", "sent_bye", 12)) == "accepted"
    assert status(cdr("a", "missed", "recv_cancel")) == "canceled"
    with pytest.raises(Forbidden):
        adapter.parse_callback(
            InboundCallback(url.split("?")[0], {}, b"", MultiDict(), cdr("b", "missed"))
        )


def event_url(base: str, account: str) -> str:
    return f"{base}/callbacks/{account}?token={derive_token(SECRET, account)}"


async def run_through_fake(
    tmp_path: Path,
    database_url: str,
    mode: str,
    settings: FakeSettings,
    *,
    limits=None,
    secret: str = SECRET,
    count: int = 30,
):
    work = Workspace(tmp_path, database_url, free_port())
    name = "tcmi" if mode == "make_call" else "c2c"
    dialect = TelecmiDialect(mode, APPID, SECRET, event_url(work.callback_base, name), USER)
    fake = FakeProvider(dialect, settings)
    async with serving(fake) as url:
        if mode == "make_call":
            keys = f'kind = "telecmi"\nappid = "{APPID}"\nreports_url = "{url}"'
        else:
            keys = f'kind = "telecmi-click2call"\nuser_id = "{USER}"\nreports_url = "{url}"'
        work.configure(
            name, f'{keys}\nbase_url = "{url}"\nsecret = "{secret}"\nrate = "20/s"\nchannels = 6'
        )
        answer = 'connect_to = "https://dialer.example.com/pcmo/answer"'
        options = {"call_limits": limits} if limits else {}
        await work.load("tc-camp", name, count=count, extra=answer, **options)
        code, output = await work.run_campaign("tc-camp")
        if code == 0:
            work.assert_logs_free_of(SECRET, derive_token(SECRET, name))
        return code, output + work.serve_log()[-3000:], fake.snapshot()


async def test_make_call_campaign(own_database_url: str, tmp_path: Path, own_db) -> None:
    settings = FakeSettings(rate=(20, 1.0), channels=6, duplicates=0.2, reorder=0.3, seed=21)
    code, output, stats = await run_through_fake(tmp_path, own_database_url, "make_call", settings)
    assert code == 0, output
    outcomes = await check_against_fake(own_db, "tc-camp", stats)
    assert outcomes["completed"] and outcomes["busy"] and outcomes["no-answer"], outcomes
    redelivered = await own_db.fetchval(
        "SELECT count(*) FROM call_events WHERE payload ->> 'type' = 'cdr'"
    )
    assert redelivered >= stats["accepted"]  # each CDR stored once per leg, however redelivered
    secrets = await own_db.fetchval(
        "SELECT count(*) FROM call_events WHERE payload::text LIKE $1", f"%{SECRET}%"
    )
    assert secrets == 0


async def test_click2call_campaign_with_agent_misses(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    outcomes = {"completed": 0.5, "no-answer": 0.2, "busy": 0.1, "canceled": 0.2}
    settings = FakeSettings(rate=(20, 1.0), channels=6, outcomes=outcomes, duplicates=0.2, seed=8)
    code, output, stats = await run_through_fake(tmp_path, own_database_url, "click2call", settings)
    assert code == 0, output
    results = await check_against_fake(own_db, "tc-camp", stats)
    assert results["canceled"] > 0 and results["completed"] > 0


async def test_lost_callbacks_are_settled_from_the_cdr_lists(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    settings = FakeSettings(rate=(20, 1.0), channels=6, lose=0.4, seed=4)
    code, output, stats = await run_through_fake(
        tmp_path, own_database_url, "make_call", settings, limits=("2s", "3s", "1s"), count=16
    )
    assert code == 0, output
    polled = await own_db.fetch(
        """SELECT a.outcome FROM call_events e JOIN attempts a ON a.id = e.attempt_id
           WHERE e.dedupe_key LIKE '%:poll:%'"""
    )
    assert polled and stats["lookups"] >= 2
    # The CDR lists only know answered or missed: a lost busy or failed call is reconciled
    # as no-answer; the calls whose callbacks arrived keep their exact outcomes.
    calls = stats["calls"]
    assert any(c["lost"] for c in calls.values())
    for call in calls.values():
        if call["lost"] and call["outcome"] != "completed":
            call["reported"] = "no-answer"
    await check_against_fake(own_db, "tc-camp", stats)


async def test_body_code_420_pauses_the_account(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    code, output, stats = await run_through_fake(
        tmp_path, own_database_url, "make_call", FakeSettings(), secret="not-the-secret"
    )
    assert code == 2, output
    assert "code 420" in output and "not-the-secret" not in output
    assert stats.get("accepted", 0) == 0
    assert await own_db.fetchval("SELECT status FROM campaigns") == "paused"
    assert await own_db.fetchval("SELECT count(*) FROM contacts WHERE state = 'pending'") == 30
