"""Adapter for the built-in simulated provider (`dialer sim-provider`), over real HTTP."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from dialer.config import SimAccount
from dialer.providers.base import (
    CallEvent,
    CallRequest,
    Forbidden,
    ProviderError,
    classify_status,
    post_create,
)
from dialer.sim.server import sign

# The sim's status words are already the attempt states of the design.
STATUSES = {"initiated", "ringing", "answered", "completed", "busy", "no-answer", "failed"}
STATE_OF = {"initiated": "accepted", "answered": "in-progress"}


class SimProvider:
    kind = "sim"

    def __init__(self, name: str, account: SimAccount) -> None:
        self.name = name
        self.base_url = str(account.base_url).rstrip("/")
        self._secret = account.secret.get_secret_value()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"}

    async def place_call(self, session: aiohttp.ClientSession, request: CallRequest) -> str:
        body = {
            "to": request.to,
            "from": request.caller_id,
            "status_callback": request.callback_url,
            "attempt_id": request.attempt_id,
            "ring_timeout": request.ring_timeout_s,
            "max_duration": request.max_duration_s,
        }
        status, headers, raw = await post_create(
            session, f"{self.base_url}/v1/calls", json=body, headers=self._headers()
        )
        if status in (200, 201):
            try:
                return str(json.loads(raw)["call_id"])
            except (ValueError, KeyError, TypeError):
                raise ProviderError(f"HTTP {status} without a call id") from None
        raise classify_status(status, headers, f"HTTP {status}: {_error_text(raw)}")

    def parse_callback(
        self, headers: Mapping[str, str], url: str, body: bytes, attempt_id: int | None
    ) -> CallEvent:
        given = headers.get("X-Sim-Signature", "")
        expected = sign(self._secret, urlsplit(url).path, body)
        if not hmac.compare_digest(given, expected):
            raise Forbidden("bad or missing X-Sim-Signature")
        try:
            event = json.loads(body)
            status = str(event["status"])
            sequence = int(event["sequence"])
            call_id = str(event["call_id"])
        except (ValueError, KeyError, TypeError):
            raise Forbidden("signed, but not a sim status event") from None
        if status not in STATUSES:
            raise Forbidden(f"unknown status {status!r}")
        occurred = event.get("timestamp")
        return CallEvent(
            status=STATE_OF.get(status, status),
            dedupe_key=f"{call_id}:{sequence}:{status}",
            provider_call_id=call_id,
            attempt_id=attempt_id,
            sequence=sequence,
            occurred_at=datetime.fromtimestamp(occurred, UTC) if occurred else None,
            duration_s=int(event["duration"]) if event.get("duration") is not None else None,
            payload=event,
        )

    async def fetch_status(self, session: aiohttp.ClientSession, call_id: str) -> CallEvent | None:
        url = f"{self.base_url}/v1/calls/{call_id}"
        try:
            async with session.get(url, headers=self._headers()) as response:
                if response.status != 200:
                    return None
                data = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        status = STATE_OF.get(data["status"], data["status"])
        if status == "queued":
            status = "accepted"
        return CallEvent(
            status=status,
            dedupe_key=f"{call_id}:poll:{status}",
            provider_call_id=call_id,
            duration_s=data.get("duration"),
            payload={"polled": data},
        )


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))[:200]
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")
