"""Who answered: answering-machine detection on the providers that have it, the `machine`
outcome whatever order (or whether) the detection result arrives in, and a clear refusal
where a provider has no detection."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from dialer.calls import CallRequest
from dialer.providers.base import InboundCallback
from dialer.providers.errors import Rejected
from tests.db.test_reporting_views import check_answer_rates
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.twilio import TwilioDialect, account_toml
from tests.processes import free_port, write_campaign
from tests.providers.harness import Workspace, check_against_fake, serving
from tests.providers.test_exotel import account_toml as exotel_account
from tests.providers.test_twilio import (
    CALL,
    SID,
    TOKEN,
    adapter,
    as_document,
    create_call_schema,
)

pytestmark = pytest.mark.timeout(300)
TWIML = 'connect_to = "https://dialer.example.com/twiml/hello.xml"'
ROWS = [f"+1415555{n:04d},Person {n},America/Los_Angeles" for n in range(1, 31)]
WHO = {"completed": 0.4, "machine": 0.4, "busy": 0.1, "no-answer": 0.1}


@pytest.mark.parametrize("mode", ["detect", "message-end"])
def test_detection_requests_are_valid_against_twilios_openapi_description(mode: str) -> None:
    schema = create_call_schema()
    request = adapter().create_request(CallRequest(**(CALL.__dict__ | {"machine_detection": mode})))
    document = as_document(list(request.form or []), schema)
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    assert (
        document["MachineDetection"]
        == {"detect": "Enable", "message-end": "DetectMessageEnd"}[mode]
    )
    assert document["AsyncAmd"] == "true"
    assert document["AsyncAmdStatusCallback"] == CALL.callback_url
    assert "SendDigits" not in document  # it would make Twilio ignore detection


def test_relatives_detect_in_their_own_words_or_refuse() -> None:
    call = CallRequest(**(CALL.__dict__ | {"machine_detection": "detect"}))
    teleapi = dict(adapter("teleapi").create_request(call).form or [])
    assert teleapi["DetectVoicemail"] == "yes" and "MachineDetection" not in teleapi
    assert adapter("signalwire").cannot_detect_machines("message-end") is None
    assert "one mode" in (adapter("teleapi").cannot_detect_machines("message-end") or "")
    with pytest.raises(Rejected, match="Restcomm"):
        adapter("restcomm").create_request(call)


def test_the_asynchronous_result_is_read_as_who_answered() -> None:
    url = "https://dialer.example.com/callbacks/tw/9?token=" + adapter().callback_token
    fields = {"AccountSid": SID, "CallSid": "CA1", "AnsweredBy": "machine_end_beep"}
    signature = RequestValidator(TOKEN).compute_signature(url, fields)
    event = adapter().parse_callback(
        InboundCallback(url, {"X-Twilio-Signature": signature}, b"", MultiDict(fields), None, 9)
    )
    assert event.detection_result and event.status == "in-progress"
    assert event.answered_by == "machine_end_beep" and event.provider_call_id == "CA1"


async def work_export(tmp_path: Path, database_url: str) -> tuple[int, str]:
    """`dialer export amd` in the campaign's workspace: (exit code, the CSV)."""
    work = Workspace(tmp_path, database_url, free_port())
    code, _ = await work.dialer("export", "amd", "--out", str(tmp_path / "amd.csv"))
    return code, (tmp_path / "amd.csv").read_text()


async def _campaign(tmp_path, database_url, variant, settings, *, mode, machine):
    dialect = TwilioDialect(variant, SID, TOKEN)
    fake = FakeProvider(dialect, settings)
    async with serving(fake) as url:
        work = Workspace(tmp_path, database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN, variant=variant, rate="50/s"))
        await work.load(
            "amd",
            "tw",
            csv_rows=ROWS,
            extra=f'{TWIML}\nmachine_detection = "{mode}"',
            retry_extra=f'machine = "{machine}"',
        )
        code, output = await work.run_campaign("amd")
        stats = fake.snapshot()
    return code, output + work.serve_log()[-3000:], stats, fake


async def test_who_answered_is_the_providers_decision_whatever_the_order(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """Twilio's AMD results come before or after the final status callback (their delay spans
    the talk time), duplicated, reordered, or never (a quarter are lost: the call resource is
    read instead); every attempt's outcome is the fake's decision, and `machine = "done"`
    counts a voicemail as delivered."""
    settings = FakeSettings(
        rate=(50, 1.0),
        channels=10,
        seed=11,
        outcomes=WHO,
        talk=(0.3, 1.2),
        amd_delay=(0.0, 2.5),
        amd_lost=0.25,
        duplicates=0.2,
        reorder=0.2,
    )
    code, output, stats, fake = await _campaign(
        tmp_path, own_database_url, "twilio", settings, mode="message-end", machine="done"
    )
    assert code == 0, output
    outcomes = await check_against_fake(own_db, "amd", stats)
    assert outcomes["machine"] > 0 and outcomes["completed"] > 0, outcomes
    calls = [c for c in fake.calls.values() if c.outcome in ("completed", "machine")]
    late = [
        c for c in calls if c.params["amd"]["delay"] > c.duration and not c.params["amd"]["lost"]
    ]
    lost = [c for c in calls if c.params["amd"]["lost"]]
    assert late and lost, "the test must see results after the final word, and lost ones"
    assert stats.get("lookups", 0) >= len(lost)
    machine_states = await own_db.fetch(
        "SELECT DISTINCT state FROM contacts WHERE last_outcome = 'machine'"
    )
    assert [r["state"] for r in machine_states] == ["done"]  # machine = "done"
    callers = await own_db.fetch(
        "SELECT contact_id, count(DISTINCT caller_id) AS numbers, min(attempt_no) AS first"
        " FROM attempts WHERE state <> 'not_dialed' GROUP BY contact_id"
    )
    assert all(r["numbers"] == 1 for r in callers)  # sticky: retries show the first number
    shown = await own_db.fetch("SELECT DISTINCT caller_id FROM attempts")
    assert len(shown) == 2  # both of the campaign's numbers are used
    summary = await own_db.fetchrow("SELECT * FROM campaign_summary WHERE campaign = 'amd'")
    recorded = Counter(r["outcome"] for r in await own_db.fetch("SELECT outcome FROM attempts"))
    check_answer_rates(summary, recorded)  # recomputed from the raw attempts
    assert summary["machine"] == outcomes["machine"] > 0
    hourly = await own_db.fetchval(
        "SELECT sum(attempts) FROM hourly_outcomes WHERE campaign = 'amd' AND outcome = 'machine'"
    )
    assert hourly == outcomes["machine"]
    return_code, exported = await work_export(tmp_path, own_database_url)
    assert return_code == 0
    rows = list(csv.DictReader(io.StringIO(exported)))
    finals = Counter(r["dialer_final_outcome"] for r in rows)
    machine_contacts = await own_db.fetchval(
        "SELECT count(*) FROM contacts WHERE state = 'done' AND last_outcome = 'machine'"
    )
    assert finals["machine"] == machine_contacts > 0


async def test_a_machine_is_called_again_after_the_campaigns_delay(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """TeleAPI's VoicemailDetector on the status callback; `machine = "4h"`: those contacts
    wait four hours, the people who answered are done."""
    settings = FakeSettings(rate=(50, 1.0), channels=10, seed=3, outcomes=WHO, talk=(0.2, 0.5))
    code, output, stats, _ = await _campaign(
        tmp_path, own_database_url, "teleapi", settings, mode="detect", machine="4h"
    )
    assert code == 3, output  # work left: the machines' contacts, four hours on
    rows = await own_db.fetch(
        "SELECT c.state, c.last_outcome, c.attempts, c.next_attempt_at - now() AS wait"
        " FROM contacts c"
    )
    machines = [r for r in rows if r["last_outcome"] == "machine" and r["attempts"] < 3]
    humans = [r for r in rows if r["last_outcome"] == "completed"]
    assert machines and humans
    assert all(r["state"] == "pending" for r in machines)
    assert all(timedelta(hours=3, minutes=59) < r["wait"] <= timedelta(hours=4) for r in machines)
    assert all(r["state"] == "done" for r in humans)
    out_of_attempts = [r for r in rows if r["last_outcome"] == "machine" and r["attempts"] == 3]
    assert all(r["state"] == "exhausted" for r in out_of_attempts)
    decided = {c["attempt_id"]: c["outcome"] for c in stats["calls"].values()}
    recorded = dict(
        await own_db.fetch("SELECT id, outcome FROM attempts WHERE id = ANY($1)", list(decided))
    )
    assert recorded == decided


@pytest.mark.parametrize(
    ("toml", "kind"),
    [
        (exotel_account("http://127.0.0.1:9"), "exotel"),
        (account_toml("http://127.0.0.1:9", SID, TOKEN, variant="restcomm"), "twilio"),
    ],
)
async def test_detection_on_a_provider_without_it_is_refused_at_load(
    own_database_url: str, tmp_path: Path, toml: str, kind: str
) -> None:
    work = Workspace(tmp_path, own_database_url, free_port())
    work.configure("acct", toml)
    extra = 'machine_detection = "detect"'
    path = write_campaign(tmp_path, "nodetect", 3, account="acct", extra=extra)
    code, output = await work.dialer("campaign", "load", str(path))
    assert code == 2, output
    assert "machine_detection" in output and "'acct'" in output and f"({kind})" in output
    listed = await work.dialer("campaign", "list", "--format", "json")
    assert "nodetect" not in listed[1]  # nothing was created
