"""Phone numbers in any notation, compared in one form (docs/contracts.md §5).

The gateway and the phone write a number as they please: ``+15551234567``,
``15551234567``, ``(555) 123-4567``, ``tel:+1-555-123-4567``, with spaces or
invisible direction marks. Each is read with the ``phonenumbers`` library into
E.164; a number without a country code is read in ``PHONE_REGION``.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

#: Invisible characters a phone or a copy-paste puts around a number
#: (direction marks U+200E/U+200F, embeddings U+202A-U+202E, isolates, joiners).
_FORMAT = re.compile(r"[\s\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+")


def _clean(number: str) -> str:
    """The number without invisible or format characters, NFKC (fullwidth digits become ASCII)."""
    text = unicodedata.normalize("NFKC", number)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _FORMAT.sub("", text)


def normalise_phone(number: str, region: str | None = None) -> str | None:
    """``number`` in E.164 (``+15551234567``), or None when it is not a phone
    number (an alphanumeric sender such as ``BANK``, or a national number
    with no ``region`` to read it in). Possible-but-unassigned numbers are kept:
    this compares numbers, it does not judge them."""
    text = _clean(number)
    if text.startswith("00"):
        text = "+" + text[2:]  # the international prefix of most of the world
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def printable(number: str) -> str:
    """``number`` cleaned for storage and logs when it is not a phone number (at most 40 characters)."""
    return _clean(number)[:40] or "?"


def region_of(e164: str | None) -> str | None:
    """The region of an E.164 number (``+1…`` is US, ``+44…`` GB), or None."""
    if not e164:
        return None
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed) or phonenumbers.region_code_for_country_code(
        parsed.country_code or 0)
    return None if region in (None, "ZZ", "001") else region


def check_region(value: str) -> str:
    """A region code as ``phonenumbers`` knows it (ISO 3166 alpha-2, upper case); ValueError otherwise."""
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {value!r}; use a two-letter country code such as US, GB or DE")
    return code
