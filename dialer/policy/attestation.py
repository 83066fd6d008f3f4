"""What the network says of a call's caller id and its end, in one reading for every
provider: the STIR/SHAKEN attestation level from a verification status, the SIP response
codes that mean carriers blocked the call, and when a caller id rests for being blocked.

Verification statuses, as providers spell them: Twilio's `StirVerstat`
("TN-Validation-Passed-A", "TN-Validation-Failed-B", "No-TN-Validation"), Telnyx's verstat
("TN-Validation-Passed" is A, "TN-Validation-Passed-B", "-C";
https://telnyx.com/release-notes/new-shaken-stir-verstat-parameters). The level is the letter
the originating carrier attested, whether or not verification downstream passed.
"""

from __future__ import annotations

import re

BLOCKED_SIP_CODES = (603, 608)  # 603 Decline (often an analytics block), 608 Rejected (RFC 8688)
BLOCKED_MINIMUM = 20  # a caller id's blocked rate is judged on at least this many calls today

_LEVEL = re.compile(r"^TN-VALIDATION-(?:PASSED|FAILED)(?:-([ABC]))?$")


def attestation_of(verstat: str | None) -> str | None:
    """A, B or C from a verification status; None when it tells no level."""
    if not verstat:
        return None
    if verstat.strip().upper() in ("A", "B", "C"):  # Telnyx TeXML: ShakenStirAttestation
        return verstat.strip().upper()
    found = _LEVEL.match(verstat.strip().upper().replace("_", "-"))
    if found is None:
        return None
    if found.group(1):
        return found.group(1)
    return "A" if "PASSED" in verstat.upper() else None  # Telnyx: plain "Passed" is A


def sip_code(value: object) -> int | None:
    """A SIP response code (100-699) from a provider's field, else None."""
    try:
        code = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return code if 100 <= code <= 699 else None


def is_blocked(calls: int, blocked: int, threshold: float | None) -> bool:
    """Whether a caller id rests for the rest of the day: judged on at least BLOCKED_MINIMUM
    calls today, carriers blocked (603/608) more than `rest_caller_id_blocked_above` of them."""
    return threshold is not None and calls >= BLOCKED_MINIMUM and blocked > threshold * calls
