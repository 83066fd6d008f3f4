"""Every spelling a provider may use for a status word is read as that word, in callbacks and
look-ups; a final word no adapter knows is kept held, and its attempt is looked up at once."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from dialer.callbacks.app import Receiver
from dialer.db.connect import open_pool
from dialer.providers.base import InboundCallback
from dialer.providers.exotel import _polled_event
from dialer.providers.twilio import signature
from dialer.providers.words import normal_word, state_of_word
from dialer.web import create_app
from tests.providers.test_callback_order import KINDS, new_attempt

BASE = "http://127.0.0.1:9"
SPELLINGS = {
    "no-answer": ["no answer", "no-answer", "no_answer", "noanswer", "No-Answer", "NO ANSWER"],
    "in-progress": ["in progress", "in-progress", "In_Progress", "INPROGRESS"],
    "completed": ["completed", "Completed", " COMPLETED "],
    "canceled": ["canceled", "Cancelled", "CANCELED"],
}


@given(
    word=st.sampled_from(["no answer", "in progress"]),
    upper=st.lists(st.booleans(), min_size=11, max_size=11),
    joiner=st.sampled_from([" ", "-", "_", "", "  ", " - "]),
)
def test_any_case_and_separator_reads_as_one_word(
    word: str, upper: list[bool], joiner: str
) -> None:
    first, second = word.split()
    text = f"{first}{joiner}{second}"
    text = "".join(c.upper() if u else c for c, u in zip(text, upper * 3, strict=False))
    expected = word.replace(" ", "-")
    assert normal_word(text) == expected and state_of_word(text) == expected


def test_unknown_words_are_not_guessed() -> None:
    assert state_of_word("exploded") is None and state_of_word("") is None


def callback(kind_name: str, attempt: int, fields: dict) -> InboundCallback:
    kind = KINDS[kind_name]()
    url = kind.adapter.callback_url(BASE, None if kind.fixed_url else attempt)
    if kind_name.startswith("exotel") or kind_name in ("telecmi", "telecmi-click2call"):
        return InboundCallback(url, {}, json.dumps(fields).encode(), MultiDict(), fields, attempt)
    form = MultiDict({k: str(v) for k, v in fields.items()})
    headers = {}
    if kind_name == "twilio":
        headers["X-Twilio-Signature"] = signature("tok", url, form)
    return InboundCallback(url, headers, urlencode(fields).encode(), form, None, attempt)


@pytest.mark.parametrize("final, spelling", [(k, v) for k, vs in SPELLINGS.items() for v in vs])
@pytest.mark.parametrize("kind_name", ["twilio", "teleapi", "exotel-json"])
def test_final_words_in_any_spelling_settle(kind_name: str, final: str, spelling: str) -> None:
    if kind_name.startswith("exotel"):
        fields = {"CallSid": "c1", "Status": spelling, "EventType": "terminal"}
        fields["Legs"] = [{"Status": spelling}]
    else:
        fields = {"CallSid": "c1", "CallStatus": spelling, "SequenceNumber": "3"}
    event = KINDS[kind_name]().adapter.parse_callback(callback(kind_name, 7, fields))
    assert event.status == final


@pytest.mark.parametrize("spelling", SPELLINGS["no-answer"])
def test_exotel_lookups_read_every_spelling(spelling: str) -> None:
    event = _polled_event("c1", {"Status": spelling, "Details": {"Leg1Status": spelling}})
    assert event.status == "no-answer"


@pytest.mark.parametrize(
    "kind_name, fields",
    [
        ("exotel-json", {"CallSid": "c9", "Status": "vanished", "EventType": "terminal"}),
        ("twilio", {"CallSid": "c9", "CallStatus": "vanished", "SequenceNumber": "4"}),
        ("telecmi", {"type": "cdr", "leg": "a", "status": "vanished", "request_id": "c9"}),
    ],
)
def test_an_unknown_final_word_is_passed_on_not_guessed(kind_name: str, fields: dict) -> None:
    event = KINDS[kind_name]().adapter.parse_callback(callback(kind_name, 7, fields))
    assert event.status == "vanished"  # not no-answer, not failed: screening holds it


UNKNOWN_WORD_BODIES = {
    "exotel-json": {"CallSid": "c-unknown", "Status": "vanished", "EventType": "terminal"},
    "didforsale": {
        "callSid": "c-unknown",
        "CallStatus": "vanished",
        "CallbackSource": "call-progress-event",
        "apikey": "echo",
    },
}


@pytest.mark.parametrize("kind_name", sorted(UNKNOWN_WORD_BODIES))
async def test_an_unknown_final_word_is_held_and_its_attempt_looked_up_now_where_it_can_be(
    own_database_url: str, own_db, tmp_path: Path, kind_name: str
) -> None:
    """A word we do not know is held, never applied; its attempt is due for a look-up at once
    where the provider answers look-ups (Exotel). DIDforSale answers none: a look-up there
    would close the call `unknown` at once, so it keeps its channel until its final word or
    its settle budget."""
    kind = KINDS[kind_name]()
    attempt = await new_attempt(own_db, tmp_path, kind.adapter.name, "c-unknown")
    before = await own_db.fetchval("SELECT settle_by > now() FROM attempts WHERE id = $1", attempt)
    assert before
    async with open_pool(own_database_url, size=2) as pool:
        receiver = Receiver(pool, {kind.adapter.name: kind.adapter}, public_url=BASE)
        server = TestServer(create_app(receiver))
        await server.start_server()
        try:
            url = kind.adapter.callback_url(f"http://127.0.0.1:{server.port}", attempt)
            body = UNKNOWN_WORD_BODIES[kind_name]
            sent = {"json": body} if kind_name == "exotel-json" else {"data": body}
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, **sent) as response,
            ):
                answer = await response.json()
        finally:
            await server.close()
    assert answer["applied"] is False and "unknown status 'vanished'" in answer["problem"]
    row = await own_db.fetchrow(
        "SELECT state, slot, settle_by <= now() AS due FROM attempts WHERE id = $1", attempt
    )
    assert row["state"] == "accepted"
    # where it can be asked, the reconciler asks at its next round
    assert row["due"] is kind.adapter.answers_lookups
    assert row["due"] is (kind_name == "exotel-json")
    held = await own_db.fetchval(
        "SELECT held FROM call_events WHERE attempt_id = $1 AND status = 'vanished'", attempt
    )
    assert held is True
