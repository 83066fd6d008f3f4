"""The adapter port: what one provider account does (build and read a create-call request,
verify and normalize callbacks, look calls up for the reconciler), and the callback as
received. Sending lives in providers.http, errors in providers.errors, masking in
providers.secrets, reading a provider's words in providers.words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from multidict import MultiDict, MultiDictProxy

from dialer.calls import (
    CallEvent,
    CallRequest,
    PlacedCall,
    placed_around,
)
from dialer.errors import ProviderError
from dialer.providers.errors import Forbidden
from dialer.providers.http import (
    HttpAnswer,
    HttpRequest,
    check_not_redirected,
    json_body,
    lookup,
    send,
    unanswered,
)
from dialer.providers.secrets import derive_token, mask, same_secret

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp


@dataclass(frozen=True)
class InboundCallback:
    """A callback request as received: the public URL the provider called, and its fields.

    `fields` holds form (urlencoded or multipart) fields, `json` a JSON body; a provider's
    signature is computed over these exactly as they arrived.
    """

    url: str
    headers: Mapping[str, str]
    body: bytes
    fields: MultiDictProxy[str] | MultiDict[str]
    json: Any = None
    attempt_id: int | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)


Pace = Callable[[], Awaitable[None]]  # waits for a request slot on the account's shared budget


class Provider(ABC):
    """One account of one provider kind. Subclasses are small: they build and read requests
    and callbacks in the provider's own words; sending and masking live here."""

    kind: str = ""

    def __init__(self, name: str, callback_secret: str) -> None:
        self.name = name
        self.callback_token = derive_token(callback_secret, name)

    @property
    @abstractmethod
    def secrets(self) -> list[str]:
        """Every credential value, to be masked wherever text may reach a person."""

    @property
    def auth_users(self) -> list[str]:
        """User names sent with a secret in HTTP Basic auth (their pair is masked too)."""
        return []

    def masked(self, text: str) -> str:
        return mask(text, self.secrets, self.auth_users)

    def cannot_detect_machines(self, mode: str = "detect") -> str | None:
        """Why this account cannot tell who answered in `mode` ("detect" | "message-end"),
        or None if it can. Campaigns asking for it on this account are refused at load and at
        run."""
        return f"{self.kind} has no answering-machine detection"

    def callback_url(self, base: str, attempt_id: int | None) -> str:
        path = f"/callbacks/{self.name}" + (f"/{attempt_id}" if attempt_id is not None else "")
        return f"{base}{path}?token={self.callback_token}"

    @abstractmethod
    def create_request(self, call: CallRequest) -> HttpRequest:
        """The create-call request for `call`."""

    @abstractmethod
    def read_created(self, answer: HttpAnswer) -> str | None:
        """The provider's call id from its answer, or raise the classified ProviderError."""

    async def place_call(
        self, session: aiohttp.ClientSession, call: CallRequest, deadline: object | None = None
    ) -> str | None:
        answer = await send(session, self.create_request(call), deadline)
        try:
            check_not_redirected(answer)
            return self.read_created(answer)
        except ProviderError as exc:
            exc.detail = self.masked(exc.detail)
            raise

    @abstractmethod
    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        """Verify and normalize one callback; raise Forbidden if it is not authentic."""

    calls_per_lookup = 1  # how many calls one status request can ask about (policy.lookups)

    @property
    def answers_lookups(self) -> bool:
        """Whether the provider can be asked about a call by its id (this adapter has its own
        fetch_statuses). Where it cannot, a look-up closes a live call `unknown` at once, so a
        callback saying a word we do not know makes its call due for a look-up only here."""
        return type(self).fetch_statuses is not Provider.fetch_statuses

    # Whether fetch_statuses asks the provider about calls by their id, cheaply enough to spend
    # the account's idle rate on live calls that may have ended unheard (policy.lookups).
    idle_lookups = False

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        """What the provider says of these calls, by attempt id: an event; None when the
        provider could not answer now (ask again later); absent when it does not know the call
        or has no status API. Every request waits for `pace`: look-ups share the rate budget."""
        return {}

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        """For attempts sent with no call id back (a crash, a timeout, a pause after sending):
        the calls the provider lists to that number around the time of sending, each as an
        event carrying its call id; None where the list could not be read now; absent (all of
        them, here) when the provider has no list to ask."""
        return {}

    async def list_each(
        self,
        session: aiohttp.ClientSession,
        calls: Sequence[PlacedCall],
        pace: Pace,
        request_for: Callable[[PlacedCall], HttpRequest],
        records: str,
        read: Callable[[dict[str, Any]], tuple[CallEvent, datetime | None] | None],
    ) -> dict[int, list[CallEvent] | None]:
        """The body of every find_placed: GET each call's listing, paced; `read` turns each
        record of the answer's `records` list into (its event, when it was created), or None;
        the events created around the call's request are kept (placed_around). None where the
        provider could not answer now."""
        found: dict[int, list[CallEvent] | None] = {}
        for call in calls:
            await pace()
            answer = await lookup(session, request_for(call))
            listed = json_body(answer) if answer and answer.status == 200 else None
            for key in records.split("."):  # "_embedded.calls": a list nested in objects
                listed = listed.get(key) if isinstance(listed, dict) else None
            if not isinstance(listed, list):
                found[call.attempt_id] = None
                continue
            readings = [read(r) for r in listed if isinstance(r, dict)]
            found[call.attempt_id] = [
                event for event, created in filter(None, readings) if placed_around(call, created)
            ]
        return found

    async def poll_each(
        self,
        session: aiohttp.ClientSession,
        calls: Sequence[PlacedCall],
        pace: Pace,
        request_for: Callable[[str], HttpRequest],
        read: Callable[[PlacedCall, dict[str, Any]], CallEvent | None],
    ) -> dict[int, CallEvent | None]:
        """The body of every fetch_statuses: GET each call that has a provider call id, paced;
        `read` turns the call record that came back into its event, or None for a status word
        we do not know (left out, as calls the provider does not know are). None where the
        provider could not answer now."""
        found: dict[int, CallEvent | None] = {}
        for call in calls:
            if not call.provider_call_id:
                continue
            await pace()
            answer = await lookup(session, request_for(call.provider_call_id))
            data = json_body(answer) if answer and answer.status == 200 else None
            if isinstance(data, dict):
                event = read(call, data)
                if event is not None:
                    found[call.attempt_id] = event
            elif unanswered(answer) or (answer is not None and answer.status == 200):
                # a 200 that is not a call record says nothing either: ask again later
                found[call.attempt_id] = None
        return found

    def check_token(self, callback: InboundCallback) -> None:
        self.check_token_value(callback.query.get("token", [""])[0])

    def check_token_value(self, given: str | None) -> None:
        """The URL token, checked before a callback's body is even read."""
        if not same_secret(given, self.callback_token):
            raise Forbidden("bad or missing callback token")
