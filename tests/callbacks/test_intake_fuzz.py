"""Fuzzing a live `dialer serve`, one provider kind at a time: random bodies, content types,
headers and field values, authenticated and not. No answer is a 5xx, nothing unauthenticated
is stored, nothing is half-applied, and the attempt invariants hold after every request.

Authenticated requests start from a real callback of the kind (rendered by its fake, signed
as the provider signs) and then have fields replaced by hostile values, so they reach the
adapter's reading and the screening, not only the signature check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.config import load_config
from dialer.db.connect import connect
from dialer.policy.states import LIVE
from dialer.providers.registry import adapter_for
from dialer.providers.twilio import signature
from dialer.sim.server import sign
from tests.fakes.engine import Delivery
from tests.processes import background, dialer_command, free_port, wait_for_http
from tests.providers.test_callback_order import KINDS, deliveries, new_attempt

pytestmark = pytest.mark.timeout(600)

ACCOUNTS = {  # one account per kind, credentials as the fakes of test_callback_order use them
    "exotel-json": 'kind = "exotel"\nsid = "s1"\napi_key = "k"\napi_token = "t"',
    "exotel-multipart": 'kind = "exotel"\nsid = "s1"\napi_key = "k"\napi_token = "t"',
    "twilio": 'kind = "twilio"\naccount_sid = "AC1"\nauth_token = "tok"',
    "signalwire": 'kind = "twilio"\naccount_sid = "AC1"\nauth_token = "tok"\n'
    'path_prefix = "/api/laml/2010-04-01"',
    "teleapi": 'kind = "twilio"\naccount_sid = "AC1"\nauth_token = "tok"\n'
    'path_prefix = "/call/2012-04-24"',
    "telecmi": 'kind = "telecmi"\nappid = "7"\nsecret = "sec"',
    "telecmi-click2call": 'kind = "telecmi-click2call"\nuser_id = "101_7"\nsecret = "sec"',
    "didforsale": 'kind = "didforsale"\napi_key = "k"\nsecret_key = "echo"',
    "sim": 'kind = "sim"\nsecret = "sim-fuzz-secret"',
}
HOSTILE = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "-1",
            "-99999",
            "inf",
            "-Infinity",
            "NaN",
            "1e400",
            "99999999999999999999999",
            "",
            "\x00",
            "a\x00b",
            "\ud800",
            "no answer",
            "No-Answer",
            "COMPLETED",
            "completed",
            "busy",
            "0",
            "1.5",
            "[]",
            "{}",
            "null",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), HOSTILE),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE, inner, max_size=3),
    max_leaves=8,
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "multipart/form-data",
        "text/plain",
        "",
        "application/json; charset=bogus",
        'multipart/form-data; boundary=""',
    ]
)


@dataclasses.dataclass
class Live:
    base: str
    config: object
    attempts: dict[str, list[tuple[int, str]]]  # account -> (attempt id, call id)


@pytest.fixture(scope="module")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    limits = 'base_url = "http://127.0.0.1:1"\nrate = "10/s"\nchannels = 50'
    sections = [f"[accounts.fz-{name}]\n{body}\n{limits}\n" for name, body in ACCOUNTS.items()]
    (folder / "dialer.toml").write_text(f'listen = "127.0.0.1:{port}"\n\n' + "\n".join(sections))
    config = load_config(str(folder / "dialer.toml"))

    async def seed() -> dict[str, list[tuple[int, str]]]:
        conn = await connect(database_url)
        try:
            found: dict[str, list[tuple[int, str]]] = {}
            for name in ACCOUNTS:
                account = f"fz-{name}"
                for n in range(3):
                    call_id = f"fz{name[:3]}{n}-0000"
                    attempt = await new_attempt(conn, folder, account, call_id)
                    found.setdefault(account, []).append((attempt, call_id))
            return found
        finally:
            await conn.close()

    attempts = asyncio.run(seed())
    env = os.environ | {"DIALER_DATABASE_URL": database_url}
    env["DIALER_CONFIG"] = str(folder / "dialer.toml")
    command = dialer_command("serve", "--log-level", "warning")
    with background(command, folder, env, folder / "serve.log") as process:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        yield Live(f"http://127.0.0.1:{port}", config, attempts)
        assert process.poll() is None, (folder / "serve.log").read_text()[-3000:]


def real_delivery(live: Live, name: str, pick: int, stage: int) -> tuple[Delivery, object]:
    account = f"fz-{name}"
    adapter = adapter_for(account, live.config.accounts[account])
    attempt, call_id = live.attempts[account][pick % 3]
    if name == "sim":
        event = {"call_id": call_id, "attempt_id": attempt, "status": "busy", "sequence": 3}
        url = adapter.callback_url(live.base, attempt)
        return Delivery(url, json.dumps(event).encode(), "application/json"), adapter
    kind = dataclasses.replace(KINDS[name](), adapter=adapter)
    sent = deliveries(kind, attempt, kind.outcomes[pick % len(kind.outcomes)], live.base, call_id)
    return sent[stage % len(sent)], adapter


def mutate(delivery: Delivery, adapter, changes: dict[str, object], drop: list[str]) -> Delivery:
    """Replace or add fields (and drop some) in a real callback, then sign it again as the
    provider would."""
    kind = delivery.content_type.split(";")[0]
    if kind == "application/json":
        document = json.loads(delivery.body)
        if isinstance(document, dict):
            for key in drop:
                document.pop(key, None)
            document.update(changes)
        body = json.dumps(document).encode()
        headers = dict(delivery.headers)
        if "X-Sim-Signature" in headers or adapter.kind == "sim":
            headers["X-Sim-Signature"] = sign(adapter._secret, urlsplit(delivery.url).path, body)
        return Delivery(delivery.url, body, delivery.content_type, headers)
    if kind == "application/x-www-form-urlencoded":
        pairs = [(k, v) for k, v in parse_qsl(delivery.body.decode()) if k not in drop]
        pairs = [(k, v) for k, v in pairs if k not in changes] + [
            (k, str(v)) for k, v in changes.items()
        ]
        try:
            body = urlencode(pairs).encode()
        except UnicodeEncodeError:  # a lone surrogate cannot be sent as a form
            body = urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in pairs]).encode()
        headers = dict(delivery.headers)
        if "X-Twilio-Signature" in headers:
            from multidict import MultiDict

            fields = MultiDict(parse_qsl(body.decode("utf-8", "replace")))
            headers["X-Twilio-Signature"] = signature("tok", delivery.url, fields)
        return Delivery(delivery.url, body, delivery.content_type, headers)
    return delivery  # multipart: posted as rendered (its parts are fuzzed by `junk`)


async def post(delivery: Delivery, extra_headers: dict[str, str]) -> int:
    headers = {"Content-Type": delivery.content_type} | delivery.headers | extra_headers
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session,
        session.post(delivery.url, data=delivery.body, headers=headers) as response,
    ):
        await response.read()
        return response.status


INVARIANTS = {
    "a live attempt whose contact is not dialing": """
        SELECT count(*) FROM attempts a JOIN contacts c ON c.id = a.contact_id
        WHERE a.state = ANY($1::text[]) AND c.state <> 'dialing'""",
    "a contact left dialing after its attempt settled (half-applied)": """
        SELECT count(*) FROM contacts c WHERE c.state = 'dialing' AND NOT EXISTS (
            SELECT 1 FROM attempts a WHERE a.contact_id = c.id AND a.state = ANY($1::text[]))""",
    "an attempt settled without a kept, applied final event": """
        SELECT count(*) FROM attempts a WHERE a.outcome IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM call_events e WHERE e.attempt_id = a.id AND NOT e.held
            AND e.status IN ('completed', 'busy', 'no-answer', 'failed', 'canceled'))""",
    "a live attempt without a channel slot (unless re-opened), or a finished one with one": """
        SELECT count(*) FROM attempts
        WHERE (state = ANY($1::text[])) <> (slot IS NOT NULL OR reopened_at IS NOT NULL)""",
}


async def check(database_url: str) -> tuple[int, dict[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        events = await conn.fetchval("SELECT count(*) FROM call_events")
        broken = {
            what: await conn.fetchval(sql, *([list(LIVE)] if "$1" in sql else []))
            for what, sql in INVARIANTS.items()
        }
        return events, {k: v for k, v in broken.items() if v}
    finally:
        await conn.close()


@pytest.mark.parametrize("name", sorted(ACCOUNTS))
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    authentic=st.booleans(),
    junk=st.booleans(),
    pick=st.integers(0, 2),
    stage=st.integers(0, 8),
)
def test_no_5xx_and_invariants_hold_for_any_request(
    live: Live,
    database_url: str,
    name: str,
    data: st.DataObject,
    authentic: bool,
    junk: bool,
    pick: int,
    stage: int,
) -> None:
    delivery, adapter = real_delivery(live, name, pick, stage)
    if junk:  # anything at all, to the same URL
        body = data.draw(
            st.one_of(
                st.binary(max_size=300),
                JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                st.integers(60, 3000).map(lambda n: b"[" * n + b"]" * n),
            )
        )
        delivery = Delivery(delivery.url, body, data.draw(CONTENT_TYPES), delivery.headers)
    else:
        changes = data.draw(st.dictionaries(st.sampled_from(FIELD_NAMES), HOSTILE, max_size=4))
        drop = data.draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=2))
        delivery = mutate(delivery, adapter, changes, drop)
    if not authentic:
        spoiled = delivery.url.replace("token=", "token=x")
        delivery = Delivery(spoiled, delivery.body, delivery.content_type, delivery.headers)
    extra = data.draw(
        st.dictionaries(
            st.sampled_from(["X-Twilio-Signature", "X-Sim-Signature", "X-Anything", "apikey"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
            max_size=2,
        )
    )
    before, _ = asyncio.run(check(database_url))
    status = asyncio.run(post(delivery, extra if not authentic or junk else {}))
    after, broken = asyncio.run(check(database_url))
    assert status < 500, (status, delivery)
    assert not broken, broken
    if not authentic:
        assert 400 <= status < 500 and after == before  # nothing stored for a stranger


FIELD_NAMES = [
    # every provider's deciding fields, so mutations hit what the adapters read
    "status",
    "sequence",
    "duration",
    "call_id",
    "attempt_id",
    "timestamp",  # sim
    "CallSid",
    "Status",
    "EventType",
    "ConversationDuration",
    "CustomField",
    "Legs",  # Exotel
    "CallStatus",
    "SequenceNumber",
    "CallDuration",
    "Timestamp",
    "AnsweredBy",  # Twilio
    "type",
    "leg",
    "request_id",
    "cmiuuid",
    "time",
    "hangup_reason",
    "extra_params",  # TeleCMI
    "callSid",
    "ParentCallSid",
    "CallDurartion",
    "optional",
    "dialer_attempt",  # DIDforSale
    "unknown_field",
    "\x00",
    "",
]


def test_the_fuzzing_reached_past_authentication(live: Live, database_url: str) -> None:
    """Runs after the fuzz above (same module database): authentic requests were stored for
    every kind, some applied and some held, so the values got to the adapters and screening."""

    async def counts() -> dict[str, tuple[int, int]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                """SELECT account, count(*) FILTER (WHERE NOT held) AS kept,
                          count(*) FILTER (WHERE held) AS held
                   FROM call_events GROUP BY account"""
            )
            return {r["account"]: (r["kept"], r["held"]) for r in rows}
        finally:
            await conn.close()

    found = asyncio.run(counts())
    assert set(found) == {f"fz-{name}" for name in ACCOUNTS}, found
    assert sum(kept for kept, _ in found.values()) > 0
    assert sum(held for _, held in found.values()) > 0
