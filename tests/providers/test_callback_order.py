"""For every provider: any order and any duplication of one call's callbacks ends in the same
final state as the clean sequence.

Each fake's own callback renderer produces the provider's real callbacks for a call (form or
JSON, signed or token-only, legs, redeliveries); they are POSTed over HTTP to the real
receiver and applied to a real database, once in order and once shuffled with repeats.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dialer.callbacks.app import Receiver
from dialer.campaign_spec import load_campaign_file
from dialer.db.connect import connect, open_pool
from dialer.providers.base import Provider
from dialer.providers.didforsale import DidforsaleAccount
from dialer.providers.exotel import ExotelAccount
from dialer.providers.plivo import PlivoAccount
from dialer.providers.registry import adapter_for
from dialer.providers.telecmi import TelecmiAccount
from dialer.providers.telecmi_click2call import TelecmiClick2CallAccount
from dialer.providers.telnyx import TelnyxAccount
from dialer.providers.twilio import TwilioAccount
from dialer.providers.vonage import VonageAccount
from dialer.web import create_app
from tests.fakes.didforsale import DidforsaleDialect
from tests.fakes.engine import Delivery, FakeCall
from tests.fakes.exotel import ExotelDialect
from tests.fakes.plivo import PlivoDialect
from tests.fakes.telecmi import TelecmiDialect
from tests.fakes.telnyx import TelnyxDialect
from tests.fakes.twilio import PREFIX, TwilioDialect
from tests.fakes.vonage import VonageDialect
from tests.processes import free_port, write_campaign

LIMITS = {"rate": "10/s", "channels": 4, "base_url": "http://127.0.0.1:1"}


@dataclass
class Kind:
    """A provider kind: its adapter, its fake's renderer, and a call's create parameters."""

    adapter: Provider
    dialect: Any
    params: Callable[[int, str], dict[str, Any]]  # (attempt id, callback url) -> params
    outcomes: tuple[str, ...] = ("completed", "busy", "no-answer", "failed")
    fixed_url: bool = False  # callbacks go to the account's one URL (TeleCMI)
    detection: str = "off"  # the campaign's machine_detection


def exotel(content_type: str | None) -> Kind:
    account = ExotelAccount(kind="exotel", sid="s1", api_key="k", api_token="t", **LIMITS)

    def params(attempt: int, url: str) -> dict[str, Any]:
        found = {
            "From": "+919845000001",
            "To": "+919812345678",
            "CustomField": f"dialer-attempt:{attempt}",
        }
        found["events"] = ["terminal", "answered"]
        return found | ({"StatusCallbackContentType": content_type} if content_type else {})

    return Kind(adapter_for("exo", account), ExotelDialect("s1", "k", "t"), params)


def twilio(variant: str, detection: str = "off") -> Kind:
    account = TwilioAccount(
        kind="twilio", account_sid="AC1", auth_token="tok", path_prefix=PREFIX[variant], **LIMITS
    )
    events = ["initiated", "ringing", "answered", "completed"]
    mode = {"teleapi": "voicemail", "twilio": "DetectMessageEnd"}.get(variant, "Enable")
    word = {"voicemail": "voicemail", "DetectMessageEnd": "machine_end_beep"}.get(mode, "fax")

    def params(attempt: int, url: str) -> dict[str, Any]:
        found: dict[str, Any] = {"events": events, "callback": url}
        if detection != "off":  # the AMD result: its own callback, right after the answer
            amd = {"mode": mode, "callback": url, "delay": 0.0, "lost": False}
            found["amd"] = amd | {"machine_word": word}
        return found

    return Kind(
        adapter_for("tw", account),
        TwilioDialect(variant, "AC1", "tok"),
        params,
        ("completed", "busy", "no-answer", "failed", "machine")
        if detection != "off"
        else ("completed", "busy", "no-answer", "failed"),
        detection=detection,
    )


def telecmi(mode: str) -> Kind:
    if mode == "make_call":
        account: Any = TelecmiAccount(kind="telecmi", appid="7", secret="sec", **LIMITS)
    else:
        account = TelecmiClick2CallAccount(
            kind="telecmi-click2call", user_id="101_7", secret="sec", **LIMITS
        )
    outcomes = ("completed", "busy", "no-answer", "failed")
    return Kind(
        adapter_for("tc", account),
        TelecmiDialect(mode, "7", "sec", "", "101_7"),
        lambda attempt, url: {"extra": json.dumps({"dialer_attempt": attempt})},
        outcomes + (("canceled",) if mode == "click2call" else ()),
        fixed_url=True,
    )


def didforsale() -> Kind:
    account = DidforsaleAccount(kind="didforsale", api_key="k", secret_key="echo", **LIMITS)
    events = ["initiated", "ringing", "answered", "completed"]
    return Kind(
        adapter_for("dfs", account),
        DidforsaleDialect("k"),
        lambda attempt, url: {
            "callback": url,
            "events": events,
            "secret": "echo",
            "optional": ("dialer_attempt", str(attempt)),
        },
        ("completed", "no-answer"),
    )


def telnyx() -> Kind:
    dialect = TelnyxDialect("tx-account", "KEY0123456789abcdef", "1293384261075731499")
    account = TelnyxAccount(
        kind="telnyx",
        api_key="KEY0123456789abcdef",
        account_sid="tx-account",
        application_sid="1293384261075731499",
        public_key=dialect.public_key,
        **(LIMITS | {"rate": "6/s"}),
    )
    events = ["initiated", "ringing", "answered", "completed"]
    return Kind(
        adapter_for("tx", account),
        dialect,
        lambda attempt, url: {"events": events, "callback": url},
    )


def plivo() -> Kind:
    account = PlivoAccount(
        kind="plivo", auth_id="MAXXXXXXXXXXXXXXXXXX", auth_token="plivo-token", **LIMITS
    )
    return Kind(
        adapter_for("pl", account),
        PlivoDialect("MAXXXXXXXXXXXXXXXXXX", "plivo-token"),
        lambda attempt, url: {"ring": url, "hangup": url, "request_uuid": f"req-{attempt}"},
    )


def vonage() -> Kind:
    secret = "vonage-signature-secret-" + "0" * 24
    dialect = VonageDialect("aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "abcd1234", secret)
    account = VonageAccount(
        kind="vonage",
        application_id="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        private_key=dialect.private_pem,
        api_key="abcd1234",
        signature_secret=secret,
        **(LIMITS | {"rate": "3/s"}),
    )
    return Kind(
        adapter_for("vg", account),
        dialect,
        lambda attempt, url: {"event_url": url, "amd": False},
    )


KINDS = {
    "exotel-json": lambda: exotel("application/json"),
    "exotel-multipart": lambda: exotel(None),
    "twilio": lambda: twilio("twilio"),
    "signalwire": lambda: twilio("signalwire"),
    "teleapi": lambda: twilio("teleapi"),
    "twilio-amd": lambda: twilio("twilio", "message-end"),
    "signalwire-amd": lambda: twilio("signalwire", "detect"),
    "teleapi-voicemail": lambda: twilio("teleapi", "detect"),
    "telecmi": lambda: telecmi("make_call"),
    "telecmi-click2call": lambda: telecmi("click2call"),
    "didforsale": didforsale,
    "telnyx": telnyx,
    "plivo": plivo,
    "vonage": vonage,
}


def plan(outcome: str) -> list[str]:
    if outcome in ("completed", "machine"):
        return ["initiated", "ringing", "answered", "final"]
    return ["initiated", "final"] if outcome == "failed" else ["initiated", "ringing", "final"]


async def new_attempt(
    conn: asyncpg.Connection, tmp_path: Path, account: str, call_id: str, detection: str = "off"
) -> int:
    name = f"order-{await conn.fetchval('SELECT count(*) FROM campaigns')}"
    extra = f'machine_detection = "{detection}"'
    path = write_campaign(tmp_path, name, 1, account=account, extra=extra)
    spec = load_campaign_file(path).spec
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ($1, $2, $3) RETURNING id",
        name,
        account,
        spec.to_json(),
    )
    contact = await conn.fetchval(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164, state, attempts)
           VALUES ($1, 2, $2, 'dialing', 1) RETURNING id""",
        campaign,
        f"+91984{campaign:07d}",
    )
    return await conn.fetchval(
        """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164,
                                 slot, provider_call_id, requested_at, settle_by)
           VALUES ($1, $2, $3, 1, 'accepted', '+919845000001',
                   (SELECT coalesce(max(slot), -1) + 1 FROM attempts WHERE account = $3),
                   $4, now(), now() + interval '1h')
           RETURNING id""",
        contact,
        campaign,
        account,
        call_id,
    )


def deliveries(kind: Kind, attempt: int, outcome: str, base: str, call_id: str) -> list[Delivery]:
    url = kind.adapter.callback_url(base, attempt)
    if kind.fixed_url:
        kind.dialect.event_url = url
    call = FakeCall(call_id, attempt, "+919845000001", outcome, url, kind.params(attempt, url))
    call.duration = 17 if outcome in ("completed", "machine") else 0
    return [
        d for i, stage in enumerate(plan(outcome)) for d in kind.dialect.callbacks(call, stage, i)
    ]


async def final_state(conn: asyncpg.Connection, attempt: int) -> tuple:
    row = await conn.fetchrow(
        """SELECT a.state, a.outcome, a.slot, a.duration_s, c.state AS contact, c.last_outcome
           FROM attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1""",
        attempt,
    )
    return tuple(row)


@pytest.mark.parametrize("name", sorted(KINDS))
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(outcome_index=0, copies=0, order=random.Random(1), repeats=[], backwards=True)
@example(outcome_index=4, copies=0, order=random.Random(2), repeats=[], backwards=True)
@given(
    outcome_index=st.integers(min_value=0, max_value=5),
    copies=st.integers(min_value=0, max_value=3),  # TeleCMI's CDR redeliveries, by call id
    order=st.randoms(use_true_random=False),
    repeats=st.lists(st.integers(min_value=0, max_value=20), max_size=5),
    backwards=st.booleans(),  # every callback in reverse (the final word, then the AMD result)
)
def test_any_order_and_duplication_ends_like_the_clean_sequence(
    name: str,
    database_url: str,
    tmp_path: Path,
    outcome_index: int,
    copies: int,
    order,
    repeats,
    backwards: bool,
) -> None:
    """Index 4 is `machine` where the kind detects (the explicit examples: backwards, so the
    detection result comes after the final word)."""
    kind = KINDS[name]()
    outcome = kind.outcomes[outcome_index % len(kind.outcomes)]

    async def play() -> tuple[tuple, tuple, int]:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        conn = await connect(database_url)
        try:
            async with open_pool(database_url, size=4) as pool:
                receiver = Receiver(pool, {kind.adapter.name: kind.adapter}, public_url=base)
                server = TestServer(create_app(receiver), port=port)
                await server.start_server()
                try:
                    results = []
                    for shuffle in (False, True):
                        # unique per attempt; its last 4 digits (what the fake TeleCMI derives
                        # its redeliveries from) come from the example, not the database
                        serial = await conn.fetchval("SELECT count(*) FROM attempts")
                        call_id = f"call{serial:08d}-{copies:04d}"
                        attempt = await new_attempt(
                            conn, tmp_path, kind.adapter.name, call_id, kind.detection
                        )
                        sent = deliveries(kind, attempt, outcome, base, call_id)
                        if shuffle:
                            sent = sent + [sent[i % len(sent)] for i in repeats]
                            if backwards:
                                sent.reverse()
                            else:
                                order.shuffle(sent)
                        statuses = await post_all(sent)
                        assert set(statuses) == {200}, statuses
                        results.append(await final_state(conn, attempt))
                    return results[0], results[1], len(sent)
                finally:
                    await server.close()
        finally:
            await conn.close()

    clean, shuffled, _ = asyncio.run(play())
    assert clean == shuffled
    assert clean[1] == kind.dialect.reported(outcome) and clean[2] is None


async def post_all(sent: list[Delivery]) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for delivery in sent:
            headers = {"Content-Type": delivery.content_type} | delivery.headers
            async with session.post(delivery.url, data=delivery.body, headers=headers) as response:
                statuses.append(response.status)
    return statuses


@pytest.mark.parametrize("name", sorted(KINDS))
async def test_callbacks_without_the_token_or_signature_are_refused_and_not_stored(
    name: str, database_url: str, tmp_path: Path
) -> None:
    kind = KINDS[name]()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with open_pool(database_url, size=2) as pool:
        receiver = Receiver(pool, {kind.adapter.name: kind.adapter}, public_url=base)
        server = TestServer(create_app(receiver), port=port)
        await server.start_server()
        try:
            async with pool.acquire() as conn:
                attempt = await new_attempt(conn, tmp_path, kind.adapter.name, f"refused{port}")
                before = await conn.fetchval("SELECT count(*) FROM call_events")
            sent = deliveries(kind, attempt, kind.outcomes[0], base, f"refused{port}")
            forged = [
                Delivery(d.url.replace("token=", "token=0"), d.body, d.content_type, d.headers)
                for d in sent
            ] + [Delivery(d.url.split("?")[0], d.body, d.content_type, {}) for d in sent]
            assert set(await post_all(forged)) == {403}
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM call_events") == before
                assert (await final_state(conn, attempt))[0] == "accepted"
        finally:
            await server.close()
