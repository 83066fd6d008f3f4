"""Phone number normalization to E.164, the one form the database keeps.

Read with `rphonenumbers` (a Rust port of the same library, about 10x faster: loading a
million rows spends most of its validation time here) where it agrees with `phonenumbers`,
and with `phonenumbers` itself everywhere else: numbers of SLOW_REGIONS (whose metadata the
two disagree on, found by the differential run `bench/phones.py` over every region and kept
true by `tests/test_phones.py`), and every number when `rphonenumbers` is not installed.
"""

from __future__ import annotations

from types import ModuleType

import phonenumbers

try:  # a wheel for the common platforms; elsewhere phonenumbers reads every number
    import rphonenumbers as _fast  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the platform
    _fast = None

FAST: ModuleType | None = _fast
# Regions whose numbers the two libraries read differently (a valid number one of them calls
# invalid): phonenumbers decides for these. bench/phones.py lists the disagreements it finds.
SLOW_REGIONS = frozenset(
    {"AC", "BJ", "BW", "CR", "CV", "DK", "GH", "GY", "KE", "RO", "SH", "TA", "ZW"}
)
FROM_DEFAULT_COUNTRY = int(phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY)
# The country codes the fast library reads as a region of SLOW_REGIONS (a code is 1 to 3
# digits): one set look-up per number instead of a call into the library
_SLOW_CODES = frozenset(
    code
    for code in range(1, 1000)
    if FAST is not None and FAST.region_code_for_country_code(code) in SLOW_REGIONS
)


class PhoneError(ValueError):
    """A value that is not a dialable phone number; its message is the reject reason."""


def read_number(raw: str, region: str | None) -> tuple[str, bool]:
    """(E.164 form, whether its country came from `region`, the number having none of its own:
    no '+' and no international prefix), or PhoneError as normalize.

    Called once per number of every contacts file loaded, so written for speed: one test picks
    the library, one call parses, one validates, one formats."""
    text = raw.strip()
    if not text:
        raise PhoneError("missing phone number")
    library = phonenumbers if FAST is None or region in SLOW_REGIONS else FAST
    try:
        number = library.parse(text, region, keep_raw_input=True)
        if library is FAST and number.country_code in _SLOW_CODES:
            # a '+' number of a region the fast one misreads
            library = phonenumbers
            number = library.parse(text, region, keep_raw_input=True)
    except library.NumberParseException as exc:
        raise _parse_error(library, exc, region) from None
    if not library.is_valid_number(number):
        raise PhoneError("invalid phone number")
    return library.format_number(number, _E164), (
        region is not None and text[0] != "+" and number.country_code_source == FROM_DEFAULT_COUNTRY
    )


_E164 = phonenumbers.PhoneNumberFormat.E164  # the same value in both libraries


def _parse_error(library: ModuleType, exc: Exception, region: str | None) -> PhoneError:
    invalid_country = (
        getattr(exc, "error_type", None) == library.NumberParseException.INVALID_COUNTRY_CODE
    )
    if invalid_country and region is None:
        return PhoneError("national number without a region (give --region or use +CC)")
    return PhoneError("not a phone number")


def normalize(raw: str, region: str | None) -> str:
    """Return the E.164 form of `raw`, read as a national number of `region` unless it has '+'.

    Raises PhoneError with a short reason (used as the reject reason in load reports).
    """
    return read_number(raw, region)[0]
