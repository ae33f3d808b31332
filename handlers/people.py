"""People: who an email belongs to, and what each person's settings are
(docs/design.md, "Many people").

One deployment serves many people. Each has a phone (E.164, unique) and the
mailbox addresses they answer from (unique across people); every other
setting a person leaves unset is the worker's. The worker's single-person
settings (YOUR_PHONE_NUMBER, EMAIL_ADDRESS, ...) are the *default person*,
id :data:`DEFAULT_PERSON`, so a deployment with no people rows behaves as it
always did.

Pure data and rules, no I/O: the storage reads and writes the rows, the
stages ask :func:`route` whose an email is and use a :class:`Person`'s
fields where they used the worker's settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from email.utils import getaddresses
from typing import Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from handlers.phones import normalise_phone
from handlers.quiet import QuietHours
from handlers.senders import parse_patterns, read_vip_pattern

#: ``workflow_state.person_id`` of the default person (the worker's settings).
DEFAULT_PERSON = 0
#: The tones the AI Reply Generator takes (docs/contracts.md §2).
TONES = ("professional", "casual", "technical", "friendly")
#: PHONE_MODE and SMS_FORMAT (streams/settings.py).
PhoneMode = Literal["one", "each"]
SmsFormat = Literal["condensed", "full"]
PHONE_MODES: tuple[PhoneMode, ...] = get_args(PhoneMode)
SMS_FORMATS: tuple[SmsFormat, ...] = get_args(SmsFormat)
SECURITIES = ("ssl", "starttls", "plain")
#: A person's name, at most.
NAME_CHARS = 200
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


class PersonError(ValueError):
    """A person's field is malformed; the message names the field."""


@dataclass(frozen=True)
class MailLogin:
    """A mail server and the login the person's replies go out (SMTP) or are
    looked for (IMAP) through. ``password`` is clear only in the worker's memory."""

    server: str
    port: int
    login: str
    password: str
    #: SMTP: ssl / starttls / plain. IMAP: the Sent folder's name.
    extra: str

    def __repr__(self) -> str:  # never print a password, whatever logs a person
        return f"MailLogin({self.server!r}, {self.port}, {self.login!r}, {self.extra!r})"


@dataclass(frozen=True)
class Person:
    """A person with every setting resolved (theirs, else the worker's)."""

    id: int
    name: str
    phone: str
    #: Lower case; the first is the address replies are sent from.
    addresses: tuple[str, ...]
    timezone: str
    quiet_hours: str | None
    reminder_after: float
    skip_senders: str
    tone: str
    max_length: int | None
    #: VIP_SENDERS: the senders whose drafts come first (with those marked on the dashboard).
    vip_senders: str = ""
    #: PHONE_MODE: one draft on the phone at a time, or each as soon as it is ready.
    phone_mode: PhoneMode = "one"
    #: SMS_FORMAT: how a draft SMS is laid out (condensed or full).
    sms_format: SmsFormat = "condensed"
    #: None: the worker's own SMTP login (the default person, or a person who set none).
    smtp: MailLogin | None = None
    #: None: the worker's own IMAP login, when ``own_imap`` (else no Sent-folder checks).
    imap: MailLogin | None = None
    own_mail: bool = True

    @property
    def email_address(self) -> str:
        return self.addresses[0] if self.addresses else ""

    @property
    def quiet(self) -> QuietHours | None:
        return QuietHours.parse(self.quiet_hours, self.timezone) if self.quiet_hours else None

    @property
    def skip_patterns(self) -> list[str]:
        return parse_patterns(self.skip_senders)

    @property
    def vip_patterns(self) -> list[str]:
        return parse_patterns(self.vip_senders)

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT_PERSON


@dataclass(frozen=True)
class PersonRow:
    """A ``people`` row as stored: ``None`` is "the worker's setting".
    Passwords here are the stored (encrypted) tokens."""

    id: int
    name: str
    phone: str
    addresses: tuple[str, ...] = ()
    smtp_server: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    smtp_login: str | None = None
    smtp_password: str | None = None
    imap_server: str | None = None
    imap_port: int | None = None
    imap_login: str | None = None
    imap_password: str | None = None
    imap_sent_folder: str | None = None
    timezone: str | None = None
    quiet_hours: str | None = None
    reminder_after: float | None = None
    skip_senders: str | None = None
    tone: str | None = None
    max_length: int | None = None
    vip_senders: str | None = None
    phone_mode: str | None = None
    sms_format: str | None = None

    def shown(self) -> dict[str, Any]:
        """Every field for a person to read: passwords only as set or not."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["addresses"] = list(self.addresses)
        for secret in ("smtp_password", "imap_password"):
            out[secret] = "(set)" if out[secret] else None
        return out


#: The fields ``orchestrator people set`` and the admin page may change, as typed.
SETTABLE: Mapping[str, type] = {
    "name": str, "phone": str, "addresses": str,
    "smtp_server": str, "smtp_port": int, "smtp_security": str, "smtp_login": str, "smtp_password": str,
    "imap_server": str, "imap_port": int, "imap_login": str, "imap_password": str, "imap_sent_folder": str,
    "timezone": str, "quiet_hours": str, "reminder_after": float, "skip_senders": str, "tone": str,
    "max_length": int, "vip_senders": str, "phone_mode": str, "sms_format": str,
}
SECRET_FIELDS = frozenset({"smtp_password", "imap_password"})


def read_phone(value: str, region: str | None = None) -> str:
    """A phone in E.164, or :class:`PersonError`."""
    phone = normalise_phone(value, region)
    if phone is None:
        raise PersonError(f"phone: {value!r} is not a phone number (write it as +15551234567)")
    return phone


def read_addresses(value: str | Iterable[str]) -> tuple[str, ...]:
    """Mailbox addresses (comma or space separated), lower case, in order,
    each once; :class:`PersonError` when one is not an address or none is given."""
    items = re.split(r"[,\s;]+", value) if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        address = item.strip().strip("<>").lower()
        if not address:
            continue
        if not _ADDRESS.match(address) or len(address) > 320:
            raise PersonError(f"addresses: {item!r} is not an email address")
        if address not in out:
            out.append(address)
    if not out:
        raise PersonError("addresses: give at least one mailbox address")
    return tuple(out)


def taken_by_default(phone: str | None, addresses: Iterable[str] | None, *, default_phone: str | None,
                     default_address: str | None) -> str | None:
    """Why a person may not have ``phone`` or ``addresses`` (E.164, lower case):
    they are the default person's (YOUR_PHONE_NUMBER, EMAIL_ADDRESS), whose SMS
    and emails would become that person's; None when neither is."""
    if phone and phone == default_phone:
        return f"the phone {phone} is the default person's (YOUR_PHONE_NUMBER)"
    if default_address and default_address.strip().lower() in set(addresses or ()):
        return f"{default_address} is the default person's (EMAIL_ADDRESS)"
    return None


def check_field(name: str, value: str, region: str | None = None) -> Any:
    """``value`` (as typed by a person) read for field ``name``: the stored
    form, or None for an empty value (the worker's setting again);
    :class:`PersonError` naming the field when it is malformed."""
    if name not in SETTABLE:
        raise PersonError(f"{name}: no such field (one of {', '.join(SETTABLE)})")
    text = value.strip()
    if name == "name":
        if not text:
            raise PersonError("name: must not be empty")
        return text[:NAME_CHARS]
    if name == "phone":
        return read_phone(text, region)
    if name == "addresses":
        return read_addresses(text)
    if not text:
        return None
    kind = SETTABLE[name]
    try:
        number = kind(text) if kind is not str else None
    except ValueError:
        raise PersonError(f"{name}: {text!r} is not a {'whole ' if kind is int else ''}number") from None
    if name in ("smtp_port", "imap_port") and not (1 <= int(text) <= 65535):
        raise PersonError(f"{name}: must be between 1 and 65535")
    if name == "max_length" and int(text) <= 0:
        raise PersonError("max_length: must be more than 0")
    if name == "reminder_after" and not (math.isfinite(float(text)) and float(text) >= 0):
        raise PersonError("reminder_after: must be 0 (never) or more seconds")
    if name == "smtp_security" and text.lower() not in SECURITIES:
        raise PersonError(f"smtp_security: one of {', '.join(SECURITIES)}")
    if name == "tone" and text.lower() not in TONES:
        raise PersonError(f"tone: one of {', '.join(TONES)}")
    if name == "phone_mode" and text.lower() not in PHONE_MODES:
        raise PersonError(f"phone_mode: one of {', '.join(PHONE_MODES)}")
    if name == "sms_format" and text.lower() not in SMS_FORMATS:
        raise PersonError(f"sms_format: one of {', '.join(SMS_FORMATS)}")
    if name == "vip_senders":
        try:
            return ", ".join(read_vip_pattern(p) for p in parse_patterns(text))
        except ValueError as exc:
            raise PersonError(f"vip_senders: {exc}") from None
    if name == "timezone":
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise PersonError(f"timezone: unknown time zone {text!r}; use a name such as Europe/Berlin") from None
    if name == "quiet_hours":
        try:
            QuietHours.parse(text, "UTC")
        except ValueError as exc:
            raise PersonError(f"quiet_hours: {exc}") from None
    if name in ("smtp_security", "tone", "phone_mode", "sms_format"):
        return text.lower()
    return number if number is not None else text


def route(mailbox: str | None, to_addresses: Sequence[str] | None, owners: Mapping[str, int],
          default: tuple[int, str] | None) -> int | None:
    """Whose an email is: the id of the person whose mailbox received it.

    ``mailbox`` (set by a monitor serving several mailboxes) decides when
    given: its owner, the default person when it is the default person's
    address, else nobody. Without it, the recipients (To, Cc as the monitor
    stored them) are matched against every person's addresses, first match
    first; else the default person, if there is one. ``owners`` maps each
    person's addresses (lower case) to their id; ``default`` is (id, address)
    of the default person or None. None: the email belongs to nobody."""
    if mailbox and mailbox.strip():
        address = _address_of(mailbox)
        if address in owners:
            return owners[address]
        if default is not None and address == default[1].lower():
            return default[0]
        return None
    for value in to_addresses or ():
        for _, found in getaddresses([value]):
            if found.lower() in owners:
                return owners[found.lower()]
    return default[0] if default is not None else None


def _address_of(value: str) -> str:
    found = [a for _, a in getaddresses([value]) if a]
    return (found[0] if found else value).strip().lower()


def resolve(row: PersonRow, base: Person, *, smtp_password: str | None, imap_password: str | None) -> Person:
    """``row``'s person with every unset field taken from ``base`` (the
    default person). The person's own SMTP login is used when they set a
    server, a login or a password; the clear passwords are given by the caller (who holds the key)."""
    smtp = None
    if row.smtp_server or row.smtp_login or row.smtp_password:  # a login of their own (on the worker's server if none)
        port = row.smtp_port or (base.smtp.port if base.smtp else 465)
        security = row.smtp_security or {465: "ssl", 587: "starttls"}.get(port, "plain")
        smtp = MailLogin(row.smtp_server or (base.smtp.server if base.smtp else "localhost"), port,
                         row.smtp_login or (row.addresses[0] if row.addresses else ""), smtp_password or "", security)
    imap = None
    if row.imap_server:
        imap = MailLogin(row.imap_server, row.imap_port or 993,
                         row.imap_login or row.smtp_login or (row.addresses[0] if row.addresses else ""),
                         imap_password or smtp_password or "", row.imap_sent_folder or "Sent")
    return replace(
        base, id=row.id, name=row.name, phone=row.phone, addresses=row.addresses,
        timezone=row.timezone or base.timezone,
        quiet_hours=row.quiet_hours if row.quiet_hours is not None else base.quiet_hours,
        reminder_after=row.reminder_after if row.reminder_after is not None else base.reminder_after,
        skip_senders=row.skip_senders if row.skip_senders is not None else base.skip_senders,
        tone=row.tone or base.tone, max_length=row.max_length or base.max_length,
        vip_senders=row.vip_senders if row.vip_senders is not None else base.vip_senders,
        phone_mode=_one_of(row.phone_mode, PHONE_MODES, base.phone_mode),
        sms_format=_one_of(row.sms_format, SMS_FORMATS, base.sms_format),
        smtp=smtp, imap=imap, own_mail=smtp is None,
    )


_Choice = TypeVar("_Choice", bound=str)


def _one_of(value: str | None, choices: tuple[_Choice, ...], otherwise: _Choice) -> _Choice:
    """``value`` when it is one of ``choices`` (a row written by hand may hold
    anything), else ``otherwise``: the worker's setting."""
    for choice in choices:
        if value == choice:
            return choice
    return otherwise
