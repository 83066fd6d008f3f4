"""Sending a provider request and reading its answer: requests as plain values (so `dialer
call-test` can show exactly what was sent, secrets masked), answers capped in size, never
followed through redirects, and the one classification of a create-call answer
(providers.errors)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from dialer.errors import ProviderError
from dialer.providers.errors import Ambiguous, NotDialed, RateLimited, Rejected
from dialer.providers.secrets import mask

if TYPE_CHECKING:  # imported when a request is sent, not to read an account
    import aiohttp


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
    import aiohttp  # here, not at the top: reading dialer.toml's accounts needs no HTTP client

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
        raise NotDialed(f"could not connect: {type(exc).__name__}", unreachable=True) from None
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
