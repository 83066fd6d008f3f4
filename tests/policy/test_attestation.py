"""Reading what the network says of a call (policy.attestation), in every spelling."""

from __future__ import annotations

import pytest

from dialer.policy.attestation import BLOCKED_MINIMUM, attestation_of, is_blocked, sip_code


@pytest.mark.parametrize(
    ("verstat", "level"),
    [
        ("TN-Validation-Passed-A", "A"),  # Twilio StirVerstat
        ("TN-Validation-Passed-B", "B"),
        ("tn-validation-passed-c", "C"),
        ("TN-Validation-Failed-B", "B"),  # attested B, failed downstream: still B
        ("TN-Validation-Passed", "A"),  # Telnyx: plain "Passed" is an A attestation
        ("TN_Validation_Passed_A", "A"),
        ("TN-Validation-Failed", None),
        ("No-TN-Validation", None),
        ("", None),
        (None, None),
        ("TN-Validation-Passed-D", None),
    ],
)
def test_attestation_levels(verstat: str | None, level: str | None) -> None:
    assert attestation_of(verstat) == level


@pytest.mark.parametrize(
    ("value", "code"),
    [("603", 603), (608, 608), (" 486 ", 486), ("200", 200), ("99", None), ("700", None),
     ("abc", None), (None, None), ("", None), ("6.03", None)],
)  # fmt: skip
def test_sip_codes(value: object, code: int | None) -> None:
    assert sip_code(value) == code


def test_a_caller_id_rests_once_carriers_block_more_than_the_share_over_enough_calls() -> None:
    assert not is_blocked(BLOCKED_MINIMUM - 1, BLOCKED_MINIMUM - 1, 0.2)  # too few to judge
    assert is_blocked(BLOCKED_MINIMUM, 5, 0.2)  # 25% > 20%
    assert not is_blocked(BLOCKED_MINIMUM, 4, 0.2)  # exactly 20%: not more
    assert not is_blocked(1000, 999, None)  # the rule is off
