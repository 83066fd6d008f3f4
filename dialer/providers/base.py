"""The adapter interface and the one classification of what a provider's answer means.

Every outcome of a create-call request is one of:
- accepted: the provider returned its call id (or, for providers that return none, a 2xx);
- RateLimited: nothing was placed; retry after the given delay (the limiter handles it);
- NotDialed: the request never reached the provider (refused, DNS, TLS, connect timeout);
- Rejected: the provider refused for good, for this number or for the whole account;
- Ambiguous: the request may have placed a call (5xx, read timeout, reset): never re-sent.

An adapter builds its create request as a plain `HttpRequest` value (so `dialer call-test` can
show exactly what was sent, secrets masked), reads the answer, parses and verifies callbacks
into normalized `CallEvent`s, and, where the API allows, looks calls up for the reconciler.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from multidict import MultiDict, MultiDictProxy

from dialer.calls import (
    CallEvent,
    CallRequest,
    PlacedCall,
    placed_around,
)
from dialer.errors import ForbiddenError, ProviderError
from dialer.policy.states import OUTCOMES, AttemptState
from dialer.redaction import MASK, forms, redact


class RateLimited(ProviderError):
    def __init__(self, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class NotDialed(ProviderError):
    pass


class Rejected(ProviderError):
    def __init__(self, detail: str, *, account_wide: bool = False, do_not_call: bool = False):
        super().__init__(detail)
        self.account_wide = account_wide
        self.do_not_call = do_not_call


class Ambiguous(ProviderError):
    pass


class Forbidden(ForbiddenError):
    """A callback that is not authentic (bad or missing signature/token)."""


class Unreadable(ValueError):
    """An authentic callback whose content is not an event we can read (a missing call id, a
    status word we do not know): stored as it came, never applied."""


@dataclass(frozen=True)
class HttpRequest:
    """One request to a provider, as data: built by the adapter, sent by `send`."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    form: Sequence[tuple[str, str]] | None = None
    json: Any = None
    auth: tuple[str, str] | None = None  # HTTP Basic

    def describe(self, secrets: Sequence[str]) -> str:
        """The request as text with every secret replaced by ****, for people to read."""
        lines = [f"{self.method} {self.url}"]
        if self.auth:
            lines.append(f"Authorization: Basic {self.auth[0]}:****")
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.form is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded", ""]
            lines += [f"{name}={value}" for name, value in self.form]
        elif self.json is not None:
            lines += ["Content-Type: application/json", "", json.dumps(self.json, indent=2)]
        return mask("\n".join(lines), secrets)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False  # the provider sent more than MAX_ANSWER_BYTES

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode(errors="replace").strip()


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


def mask(text: str, secrets: Sequence[str], users: Sequence[str] = ()) -> str:
    """`text` with each of `secrets`, in every shape (raw, URL- and JSON-escaped, base64 and
    Basic-auth with `users`), and every secret the process registered, replaced by ****."""
    for secret in secrets:
        if secret:
            for shape in sorted(forms(secret, users), key=len, reverse=True):
                text = text.replace(shape, MASK)
    return redact(text)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret that came from outside (any characters, even
    undecodable header bytes) with the expected one."""
    return hmac.compare_digest(
        (given or "").encode("utf-8", "surrogatepass"), expected.encode("utf-8")
    )


def derive_token(secret: str, account: str) -> str:
    """The account's callback URL token: unguessable without the account's secret, and the same
    in every process that has the configuration (nothing to store or share)."""
    message = f"dialer callback token v1:{account}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify(
    status: int,
    headers: Mapping[str, str],
    detail: str,
    *,
    do_not_call: bool = False,
    account_refused: bool = False,
) -> ProviderError:
    """The one meaning of a non-success answer to a create-call request.

    429: rate-limited. Do-not-call (NDNC/DND): the number, for good. Credentials, balance or
    permission (401, 402, 403, or what the adapter knows to be account-level): the account.
    5xx: ambiguous, the call may exist. Any other 4xx: this number, for good.
    """
    if status == 429:
        return RateLimited(detail, parse_retry_after(headers.get("Retry-After")))
    if do_not_call:
        return Rejected(detail, do_not_call=True)
    if account_refused or status in (401, 402, 403):
        return Rejected(detail, account_wide=True)
    if status >= 500:
        return Ambiguous(detail)
    return Rejected(detail)


MAX_ANSWER_BYTES = 1 << 20  # a provider's answer is a few hundred bytes; more is cut here


async def send(
    session: aiohttp.ClientSession, request: HttpRequest, deadline: object | None = None
) -> HttpAnswer:
    """Send a request, mapping transport failures to NotDialed / Ambiguous.

    A create-call request carries its attempt's `deadline` (providers.send_deadline): checked
    by the session's trace hook once the connection is ready, it raises TooLate (a NotDialed)
    instead of writing a request that is past its send window.

    Never retried here: a retry after the request left could place a second call. Redirects
    are never followed (our credentials and a customer's number would go to wherever the
    Location says); the answer's body is read up to 1 MiB, the rest left unread.
    """
    kwargs: dict[str, Any] = {"headers": dict(request.headers), "allow_redirects": False}
    if deadline is not None:
        kwargs["trace_request_ctx"] = {"deadline": deadline}
    if request.form is not None:
        kwargs["data"] = urlencode(list(request.form))
        kwargs["headers"]["Content-Type"] = "application/x-www-form-urlencoded"
    elif request.json is not None:
        kwargs["json"] = request.json
    if request.auth:  # RFC 7617 (aiohttp deprecates its BasicAuth helper)
        pair = base64.b64encode(":".join(request.auth).encode()).decode()
        kwargs["headers"]["Authorization"] = f"Basic {pair}"
    try:
        async with session.request(request.method, request.url, **kwargs) as response:
            body = await _read_capped(response)
            truncated = len(body) > MAX_ANSWER_BYTES
            return HttpAnswer(response.status, response.headers, body[:MAX_ANSWER_BYTES], truncated)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise NotDialed(f"could not connect: {type(exc).__name__}") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise Ambiguous(f"no answer after sending: {type(exc).__name__}") from None


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """At most MAX_ANSWER_BYTES + 1 bytes of the body (one more tells it was longer)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_ANSWER_BYTES:
        chunk = await response.content.read(MAX_ANSWER_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def check_not_redirected(answer: HttpAnswer) -> None:
    """A 3xx to a create-call request means base_url is wrong (or the account moved): an
    account problem, nothing followed or re-sent."""
    if 300 <= answer.status < 400:
        where = str(answer.headers.get("Location", "") or "(no Location)")[:200]
        raise Rejected(
            f"HTTP {answer.status} redirect to {where}: check the account's base_url"
            " (dialer never follows redirects)",
            account_wide=True,
        )
    if answer.truncated and 200 <= answer.status < 300:
        raise Ambiguous(f"HTTP {answer.status} with an answer over 1 MiB: the call may exist")


async def lookup(session: aiohttp.ClientSession, request: HttpRequest) -> HttpAnswer | None:
    """Send a read-only request (status look-ups); None when it could not be answered."""
    try:
        return await send(session, request)
    except ProviderError:
        return None


def unanswered(answer: HttpAnswer | None) -> bool:
    """A look-up the provider could not answer now (network, 429, 5xx, a redirect we do not
    follow, an answer over 1 MiB): ask again later; it says nothing about the call."""
    if answer is None or answer.truncated:
        return True
    return answer.status == 429 or answer.status >= 500 or 300 <= answer.status < 400


def json_body(answer: HttpAnswer) -> Any:
    """The answer's JSON, or None for anything else (garbage, HTML, nesting past recursion)."""
    try:
        return json.loads(answer.body)
    except (ValueError, RecursionError):
        return None


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
            data = json_body(answer) if answer and answer.status == 200 else None
            listed = data.get(records) if isinstance(data, dict) else None
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
    ) -> list[tuple[PlacedCall, dict[str, Any] | None]]:
        """GET each call that has a provider call id, paced: the JSON object that came back,
        or None where the provider could not answer now; calls it does not know are left out."""
        found: list[tuple[PlacedCall, dict[str, Any] | None]] = []
        for call in calls:
            if not call.provider_call_id:
                continue
            await pace()
            answer = await lookup(session, request_for(call.provider_call_id))
            data = json_body(answer) if answer and answer.status == 200 else None
            garbled = answer is not None and answer.status == 200 and not isinstance(data, dict)
            if unanswered(answer) or garbled or isinstance(data, dict):
                # a 200 that is not a call record says nothing either: ask again later
                found.append((call, data if isinstance(data, dict) else None))
        return found

    def check_token(self, callback: InboundCallback) -> None:
        self.check_token_value(callback.query.get("token", [""])[0])

    def check_token_value(self, given: str | None) -> None:
        """The URL token, checked before a callback's body is even read."""
        if not same_secret(given, self.callback_token):
            raise Forbidden("bad or missing callback token")


def listed_event(call_id: str, word: Any, duration: Any, record: Mapping[str, Any]) -> CallEvent:
    """A call found in a provider's list of calls to a number (Provider.find_placed), as an
    event: its status word read the usual way (a call listed with none is `accepted`)."""
    return CallEvent(
        status=state_of_word(word) or "accepted",
        dedupe_key=f"{call_id}:poll:{normal_word(word)}",
        provider_call_id=call_id,
        duration_s=to_int(duration),
        payload={"listed": dict(record)},
    )


def first(fields: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in `fields`, compared case-insensitively."""
    lowered = {str(k).lower(): v for k, v in fields.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value not in (None, ""):
            return value
    return None


def to_int(value: Any) -> int | None:
    """A whole number from a provider's field ('12', '12.0', 12); None if there is none.
    Infinite or huge figures come back as they are (huge), for the screening to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if number != number:  # NaN
        return None
    if number in (float("inf"), float("-inf")):
        return 2**63 if number > 0 else -(2**63)
    return int(number)


def from_epoch(seconds: Any) -> datetime | None:
    """A UTC instant from epoch seconds; None when absent or not a representable instant."""
    try:
        return datetime.fromtimestamp(float(seconds), UTC) if seconds else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


FINAL_WORDS: tuple[str, ...] = OUTCOMES  # a provider's final words are our outcomes
_PROGRESS_WORDS = {
    "queued": AttemptState.ACCEPTED,
    "initiated": AttemptState.ACCEPTED,
    "ringing": AttemptState.RINGING,
    "answered": AttemptState.IN_PROGRESS,
    "in-progress": AttemptState.IN_PROGRESS,
}
_RUN_TOGETHER = {"noanswer": "no-answer", "inprogress": "in-progress", "cancelled": "canceled"}


def normal_word(word: Any) -> str:
    """A provider's status word in one spelling: any case, spaces and underscores as hyphens
    ('No Answer', 'no_answer', 'NOANSWER' and 'no-answer' are all 'no-answer')."""
    text = re.sub(r"[\s_-]+", "-", str(word or "").strip().lower())
    return _RUN_TOGETHER.get(text, text)


def state_of_word(word: Any) -> str | None:
    """The attempt state for a Twilio-family status word (any spelling), None if it is not one."""
    text = normal_word(word)
    if text in FINAL_WORDS:
        return text
    return _PROGRESS_WORDS.get(text)


def to_cost(value: Any) -> Decimal | None:
    """A provider's price as a positive amount (Twilio writes charges negative); None if absent."""
    if value in (None, ""):
        return None
    try:
        return abs(Decimal(str(value)))
    except InvalidOperation:
        return None
