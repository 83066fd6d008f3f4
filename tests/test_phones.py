import pytest

from dialer.phones import PhoneError, normalize


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+91 98450 12345", "IN", "+919845012345"),
        ("098450 12345", "IN", "+919845012345"),
        ("9845012345", "IN", "+919845012345"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 415 555 2671", "IN", "+14155552671"),
        ("07400 123456", "GB", "+447400123456"),
    ],
)
def test_normalizes_to_e164(raw: str, region: str, expected: str) -> None:
    assert normalize(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("", "missing"), ("12345", "invalid"), ("hello", "not a phone number"), ("+999 1234", "not")],
)
def test_rejects_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(PhoneError, match=reason):
        normalize(raw, "IN")


def test_national_number_needs_a_region() -> None:
    with pytest.raises(PhoneError, match="region"):
        normalize("9845012345", None)
    assert normalize("+919845012345", None) == "+919845012345"
