"""Adapter for the built-in simulated provider (`dialer sim-provider`), over real HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import SecretStr

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.policy.attestation import sip_code
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Forbidden, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body
from dialer.providers.secrets import same_secret
from dialer.providers.words import from_epoch, listed_event, state_of_word, to_int
from dialer.sim.settings import SIM_DEFAULT_SECRET
from dialer.sim.signing import sign

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp

# The sim speaks the Twilio family's status words (base.state_of_word reads them).
STATUSES = {"initiated", "ringing", "answered", "completed", "busy", "no-answer", "failed"}


class SimAccount(AccountBase):
    kind: Literal["sim"]
    # The built-in simulator's own default (`dialer sim-provider --secret`): a sim account
    # needs no secret of yours unless its simulator was started with one.
    secret: SecretStr = SecretStr(SIM_DEFAULT_SECRET)


class SimProvider(Provider):
    idle_lookups = True  # a call's status by its id (policy.lookups: the idle rate)
    kind = "sim"

    def __init__(self, name: str, account: SimAccount) -> None:
        self._secret = account.secret.get_secret_value()
        super().__init__(name, self._secret)
        self.base_url = str(account.base_url).rstrip("/")

    @property
    def secrets(self) -> list[str]:
        return [self._secret, self.callback_token]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"}

    def create_request(self, call: CallRequest) -> HttpRequest:
        body = {
            "to": call.to,
            "from": call.caller_id,
            "status_callback": call.callback_url,
            "attempt_id": call.attempt_id,
            "ring_timeout": call.ring_timeout_s,
            "max_duration": call.max_duration_s,
        }
        return HttpRequest("POST", f"{self.base_url}/v1/calls", self._headers(), json=body)

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        if answer.status in (200, 201):
            try:
                return str(data["call_id"])
            except (KeyError, TypeError):
                raise ProviderError(f"HTTP {answer.status} without a call id") from None
        error = data.get("error", "") if isinstance(data, dict) else answer.text(200)
        raise classify(answer.status, answer.headers, f"HTTP {answer.status}: {error}")

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        given = callback.headers.get("X-Sim-Signature", "")
        expected = sign(self._secret, urlsplit(callback.url).path, callback.body)
        if not same_secret(given, expected):
            raise Forbidden("bad or missing X-Sim-Signature")
        event = callback.json
        try:
            status = str(event["status"])
            sequence = to_int(event["sequence"])
            if sequence is None:
                raise ValueError("no sequence number")
            call_id = str(event["call_id"])
        except (KeyError, TypeError, ValueError):
            raise Unreadable("not a sim status event") from None
        if status not in STATUSES:
            raise Unreadable(f"unknown status {status[:40]!r}")
        occurred = event.get("timestamp")
        return CallEvent(
            status=state_of_word(status) or status,
            dedupe_key=f"{call_id}:{sequence}:{status}",
            provider_call_id=call_id,
            attempt_id=callback.attempt_id,
            sequence=sequence,
            occurred_at=from_epoch(occurred),
            duration_s=to_int(event.get("duration")),
            payload=event,
            sip_code=sip_code(event.get("sip_code")),
            stir_verstat=str(event["verstat"])[:64] if event.get("verstat") else None,
        )

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        def request_for(call_id: str) -> HttpRequest:
            return HttpRequest("GET", f"{self.base_url}/v1/calls/{call_id}", self._headers())

        def read(call: PlacedCall, data: dict[str, Any]) -> CallEvent | None:
            if "status" not in data:
                return None
            status = state_of_word(data["status"]) or data["status"]
            return CallEvent(
                status=status,
                dedupe_key=f"{call.provider_call_id}:poll:{status}",
                provider_call_id=call.provider_call_id,
                duration_s=to_int(data.get("duration")),
                payload={"polled": data},
            )

        return await self.poll_each(session, calls, pace, request_for, read)

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        def request_for(call: PlacedCall) -> HttpRequest:
            url = f"{self.base_url}/v1/calls?{urlencode({'to': call.phone_e164})}"
            return HttpRequest("GET", url, self._headers())

        def read(record: dict) -> tuple[CallEvent, datetime | None] | None:
            if not record.get("call_id"):
                return None
            call_id = str(record["call_id"])
            event = listed_event(call_id, record.get("status"), record.get("duration"), record)
            return event, from_epoch(record.get("created"))

        return await self.list_each(session, calls, pace, request_for, "calls", read)
