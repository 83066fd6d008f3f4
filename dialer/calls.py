"""What is known of a call, as values any layer may use without the provider adapters: the
request to place one (CallRequest), a provider's word about one (CallEvent), and what the
reconciler asks a provider about (PlacedCall, and when a listed call may be ours)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class CallRequest:
    attempt_id: int
    to: str  # E.164
    caller_id: str
    callback_url: str
    ring_timeout_s: int
    max_duration_s: int
    connect_to: str | None = None
    agent_number: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    machine_detection: str = "off"  # "detect" | "message-end": ask who answered (Provider)


@dataclass(frozen=True)
class CallEvent:
    """A provider callback, normalized. `status` is an attempt state word (see policy.states).

    `completed_if_answered`: the provider cannot tell a short answered call from an unanswered
    one in this event (DIDforSale); settle turns its `no-answer` into `completed` if the attempt
    was seen answered.
    """

    status: str
    dedupe_key: str
    provider_call_id: str | None = None
    attempt_id: int | None = None
    sequence: int | None = None
    occurred_at: datetime | None = None
    duration_s: int | None = None
    answered_by: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    completed_if_answered: bool = False
    cost: Decimal | None = None  # what the provider charged, where it says
    cost_unit: str | None = None
    # An answering-machine detection result (Twilio's asynchronous AMD callback): it carries
    # `answered_by` and says the call was answered, nothing more (no call status).
    detection_result: bool = False
    # What the network said, where the provider reports it: the SIP response code that ended
    # the call, and the STIR/SHAKEN verification status of the caller id as presented.
    sip_code: int | None = None
    stir_verstat: str | None = None


@dataclass(frozen=True)
class PlacedCall:
    """What the reconciler knows of a silent attempt when it asks the provider."""

    attempt_id: int
    provider_call_id: str | None
    phone_e164: str
    requested_at: datetime | None
    # The latest time a call placed for it may carry (policy.late: a front or the provider may
    # place it late); None: the request's own time. OPEN_ENDED: any time since the request.
    placed_by: datetime | None = None


# A call the provider lists counts as one we may have placed if it was created within this of
# our request's time (or of `placed_by`): sending takes at most the send window plus the client
# timeout (under a minute), the rest is for the provider's clock being off from ours.
PLACED_WITHIN = timedelta(minutes=3)
OPEN_ENDED = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


ANY_ZONE = timedelta(hours=14)  # local times range from UTC-12 to UTC+14


def placed_around(call: PlacedCall, created: datetime | None) -> bool:
    """Whether a listed call created at `created` may be the one sent for `call`: from
    PLACED_WITHIN before the request to PLACED_WITHIN after `placed_by` (else the request). A
    time with no zone (Exotel writes the account's local time and does not say which) is
    matched within the widest span any zone allows."""
    if call.requested_at is None or created is None:
        return False
    earliest, latest = call.requested_at, call.placed_by or call.requested_at
    slack = PLACED_WITHIN
    if created.tzinfo is None:
        earliest = earliest.astimezone(UTC).replace(tzinfo=None)
        latest = latest.astimezone(UTC).replace(tzinfo=None)
        slack += ANY_ZONE
    return earliest - slack <= created <= latest + slack


__all__ = [
    "ANY_ZONE",
    "OPEN_ENDED",
    "PLACED_WITHIN",
    "CallEvent",
    "CallRequest",
    "PlacedCall",
    "placed_around",
]
