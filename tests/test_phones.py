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


def reference(raw: str, region: str | None) -> tuple[str, bool] | str:
    """What phonenumbers alone says of `raw` (the reading before the fast library)."""
    import phonenumbers

    text = raw.strip()
    try:
        number = phonenumbers.parse(text, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return "error"
    if not phonenumbers.is_valid_number(number):
        return "invalid"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    default = phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY
    return e164, bool(region and not text.startswith("+") and number.country_code_source == default)


def ours(raw: str, region: str | None) -> tuple[str, bool] | str:
    from dialer.phones import read_number

    try:
        return read_number(raw, region)
    except PhoneError as exc:
        return "invalid" if "invalid" in str(exc) else "error"


def sample_numbers(per_region: int, seed: int) -> list[tuple[str, str | None]]:
    """Numbers for every region: its example with a digit changed, random digits, its own
    country code, a trunk prefix, and the same in international form read without a region."""
    import random

    import phonenumbers

    rng = random.Random(seed)
    numbers: list[tuple[str, str | None]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        national = str(example.national_number) if example else "1234567"
        code = phonenumbers.country_code_for_region(region)
        for _ in range(per_region):
            draw = rng.random()
            digits = list(national)
            digits[rng.randrange(len(digits))] = str(rng.randrange(10))
            changed = "".join(digits)
            if draw < 0.35:
                numbers.append((changed, region))
            elif draw < 0.6:
                length = rng.randint(4, 14)
                numbers.append(("".join(str(rng.randrange(10)) for _ in range(length)), region))
            elif draw < 0.8:
                numbers.append((f"+{code} {changed}", None))
            else:
                numbers.append(("0" + changed, region))
    return numbers


def test_the_fast_library_agrees_with_phonenumbers_wherever_it_reads() -> None:
    """The differential test, in CI's size (bench/phones.py runs a million): over every
    region, valid, invalid and odd numbers read as phonenumbers alone reads them."""
    from dialer.phones import FAST

    if FAST is None:
        pytest.fail("rphonenumbers is not installed: pip install -e '.[dev]'")
    numbers = sample_numbers(40, seed=11)
    assert len(numbers) > 9000
    disagree = [
        (raw, region) for raw, region in numbers if ours(raw, region) != reference(raw, region)
    ]
    assert disagree == []


@pytest.mark.parametrize(
    ("raw", "region"),
    [("6401234", "BW"), ("+267 6401234", None), ("309345678", "GH"), ("+233 309345678", None)],
)
def test_numbers_the_two_libraries_disagree_on_are_read_by_phonenumbers(
    raw: str, region: str | None
) -> None:
    """Found by the differential run: the fast library calls these invalid."""
    import rphonenumbers

    fast = rphonenumbers.parse(raw, region)
    assert not rphonenumbers.is_valid_number(fast)  # the disagreement itself
    assert ours(raw, region) == reference(raw, region) != "invalid"
