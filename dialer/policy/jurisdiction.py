"""Where a contact is, for the law: "US-FL", "US" (a US number whose state is unknown), "IN".

In order: the row's `state` or `region` column (a two-letter code, "US-FL", or a state's name),
else the number (its country, and for the US and Canada the state or province of its area
code, from `phonenumbers`' geography), else the campaign's `default_jurisdiction`. None when
nothing tells: such a contact is bound by the strictest rule of the packs named (policy.packs).
"""

from __future__ import annotations

import re

import phonenumbers

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Washington D.C.": "DC", "Washington DC": "DC", "District of Columbia": "DC",
}  # fmt: skip
CA_PROVINCES = {
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Newfoundland": "NL", "Nova Scotia": "NS",
    "Ontario": "ON", "Prince Edward Island": "PE", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon": "YT",
}  # fmt: skip
_SUBDIVISIONS = {"US": US_STATES, "CA": CA_PROVINCES}
_CODE = re.compile(r"^([A-Z]{2})(?:-([A-Z0-9]{1,3}))?\Z")
_TRAILING_CODE = re.compile(r",\s*([A-Z]{2})\Z")


def from_column(value: str, country: str | None) -> str | None:
    """A `state`/`region` cell: 'FL', 'US-FL', 'florida', 'Florida' (for a US number); None if
    it says nothing we can read (the number decides then)."""
    text = value.strip()
    if not text:
        return None
    upper = text.upper()
    match = _CODE.match(upper)
    if match and match.group(2):
        return upper
    names = _SUBDIVISIONS.get(country or "", {})
    if match and country and upper in names.values():
        return f"{country}-{upper}"
    for name, code in names.items():
        if name.lower() == text.lower():
            return f"{country}-{code}"
    if match and len(upper) == 2 and upper in phonenumbers.SUPPORTED_REGIONS:
        return upper  # a country code
    return None


_NONE = "-"
_by_prefix: dict[str, str] = {}
PREFIXES_KEPT = 100_000
# Country codes ('91') that belong to one country whose subdivisions are not told apart: the
# code alone tells such a number's jurisdiction (no two country codes begin one another).
_COUNTRY_BY_CODE = {
    str(code): regions[0]
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
    if len(regions) == 1 and regions[0] not in _SUBDIVISIONS and regions[0] != "001"
}


def from_number(phone_e164: str) -> str | None:
    """'+13055551234' -> 'US-FL'; '+18005551234' -> 'US' (toll-free: no state); '+9198...' ->
    'IN'; None if the number's country cannot be told. A country code of one country tells it
    at once; otherwise the number is read once per prefix (a NANP number's state is its area
    code's; elsewhere the first digits tell the country), so a million contacts cost a few
    hundred look-ups."""
    for digits in (2, 3, 4):
        country = _COUNTRY_BY_CODE.get(phone_e164[1:digits])
        if country is not None:
            return country
    key = phone_e164[:5] if phone_e164.startswith("+1") else phone_e164[:8]
    found = _by_prefix.get(key)
    if found is None:
        found = _resolve(phone_e164) or _NONE
        if len(_by_prefix) < PREFIXES_KEPT:
            _by_prefix[key] = found
    return None if found == _NONE else found


def _resolve(phone_e164: str) -> str | None:
    try:
        number = phonenumbers.parse(phone_e164)
    except phonenumbers.NumberParseException:
        return None
    country = phonenumbers.region_code_for_number(number)
    if not country or country == "001":
        return None
    names = _SUBDIVISIONS.get(country)
    if names is None:
        return country
    # phonenumbers' geocoder holds the place names of every prefix of every country (about 90
    # MB in each process that imports it, load workers included): imported only here, for a
    # number of a country whose subdivisions are told apart (US, CA)
    from phonenumbers import geocoder

    place = geocoder.description_for_number(number, "en")
    trailing = _TRAILING_CODE.search(place)
    if trailing and trailing.group(1) in names.values():
        return f"{country}-{trailing.group(1)}"
    code = names.get(place)
    return f"{country}-{code}" if code else country


def jurisdiction_of(phone_e164: str, column: str | None, default: str | None) -> str | None:
    """The contact's jurisdiction: its column, else its number, else the campaign's default."""
    by_number = from_number(phone_e164)
    if column:
        country = by_number.split("-")[0] if by_number else None
        found = from_column(column, country)
        if found:
            return found
    return by_number or default
