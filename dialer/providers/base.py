"""The adapter interface and the one classification of what a provider's answer means.

Every outcome of a create-call request is one of:
- accepted: the provider returned its call id;
- RateLimited: nothing was placed; retry after the given delay (the limiter handles it);
- NotDialed: the request never reached the provider (refused, DNS, TLS, connect timeout);
- Rejected: the provider refused for good, for this number or for the whole account;
- Ambiguous: the request may have placed a call (5xx, read timeout, reset): never re-sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiohttp


class ProviderError(Exception):
    """Base of the create-call failures; `detail` never contains credentials."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


class Forbidden(Exception):
    """A callback that is not authentic (bad or missing signature/token)."""


@dataclass(frozen=True)
class CallRequest:
    attempt_id: int
    to: str  # E.164
    caller_id: str
    callback_url: str
    ring_timeout_s: int
    max_duration_s: int
    connect_to: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallEvent:
    """A provider callback, normalized. `status` is an attempt state word (see policy.states)."""

    status: str
    dedupe_key: str
    provider_call_id: str | None = None
    attempt_id: int | None = None
    sequence: int | None = None
    occurred_at: datetime | None = None
    duration_s: int | None = None
    answered_by: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    kind: str

    async def place_call(self, session: aiohttp.ClientSession, request: CallRequest) -> str: ...

    def parse_callback(
        self, headers: Mapping[str, str], url: str, body: bytes, attempt_id: int | None
    ) -> CallEvent: ...

    async def fetch_status(
        self, session: aiohttp.ClientSession, call_id: str
    ) -> CallEvent | None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify_status(status: int, headers: Mapping[str, str], detail: str) -> ProviderError:
    """The meaning of a non-success HTTP answer to a create-call request."""
    if status == 429:
        return RateLimited(detail, parse_retry_after(headers.get("Retry-After")))
    if status in (401, 402, 403) and "ndnc" not in detail.lower() and "dnd" not in detail.lower():
        return Rejected(detail, account_wide=True)
    if status >= 500:
        return Ambiguous(detail)
    lowered = detail.lower()
    return Rejected(detail, do_not_call="ndnc" in lowered or "dnd" in lowered)


async def post_create(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Mapping[str, str], bytes]:
    """POST a create-call request, mapping transport failures to NotDialed / Ambiguous."""
    try:
        async with session.post(url, **kwargs) as response:
            return response.status, response.headers, await response.read()
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise NotDialed(f"could not connect: {type(exc).__name__}") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise Ambiguous(f"no answer after sending: {type(exc).__name__}") from None
