"""Phone number normalization to E.164, the one form the database keeps."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

E164 = PhoneNumberFormat.E164


class PhoneError(ValueError):
    """A value that is not a dialable phone number; its message is the reject reason."""


def read_number(raw: str, region: str | None) -> tuple[str, bool]:
    """(E.164 form, whether its country came from `region`, the number having none of its own:
    no '+' and no international prefix), or PhoneError as normalize."""
    e164 = normalize(raw, region)
    if raw.lstrip().startswith("+") or region is None:
        return e164, False
    source = phonenumbers.parse(raw.strip(), region, keep_raw_input=True).country_code_source
    return e164, source == phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY


def normalize(raw: str, region: str | None) -> str:
    """Return the E.164 form of `raw`, read as a national number of `region` unless it has '+'.

    Raises PhoneError with a short reason (used as the reject reason in load reports).
    """
    text = raw.strip()
    if not text:
        raise PhoneError("missing phone number")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and region is None:
            raise PhoneError(
                "national number without a region (give --region or use +CC)"
            ) from None
        raise PhoneError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("invalid phone number")
    return phonenumbers.format_number(number, E164)
