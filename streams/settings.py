"""Configuration: every variable of docs/contracts.md §6 plus this service's own,
read from the environment and ``.env``, validated once at start-up.

:func:`load_settings` turns a validation failure into :class:`ConfigError`,
whose message names each offending variable in one line, so a misconfigured
deployment stops with something a person can act on.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings

from handlers.people import DEFAULT_PERSON, MailLogin, Person
from handlers.phones import check_region, region_of
from handlers.quiet import QuietHours
from handlers.people_keys import PeopleKeys
from streams.connection_settings import DatabaseSettings, KafkaSettings, SaslMechanism, SecurityProtocol

__all__ = ["ConfigError", "DatabaseSettings", "KafkaSettings", "SaslMechanism", "SecurityProtocol",
           "Settings", "load_settings"]

E164 = re.compile(r"^\+[1-9]\d{6,14}$")

SmtpSecurity = Literal["ssl", "starttls", "plain"]
Tone = Literal["professional", "casual", "technical", "friendly"]


_S = TypeVar("_S", bound=BaseSettings)


class ConfigError(Exception):
    """The configuration is missing or malformed; the message names the variables."""


def checked_people_keys(value: SecretStr | None) -> SecretStr | None:
    """PEOPLE_KEYS as given, None when blank; a ValueError naming what is wrong
    when a key is not a Fernet key (the worker and ``orchestrator people`` share it)."""
    if value is None or not value.get_secret_value().strip():
        return None
    PeopleKeys(value.get_secret_value())  # raises naming what is wrong
    return value


class Settings(DatabaseSettings, KafkaSettings):
    """All configuration. Field names are the environment variables, upper-cased."""

    # Peers (docs/contracts.md §2, §3)
    ai_reply_generator_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8002")
    sms_gateway_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8000")
    ai_reply_tone: Tone = "professional"
    ai_reply_max_length: int | None = Field(default=None, gt=0)
    http_timeout: float = Field(default=60.0, gt=0, description="seconds per peer request")
    # Generator calls in flight per worker (each takes seconds), and how long a
    # worker's claim on a draft lasts unless renewed (a dead worker's lapses).
    generation_concurrency: int = Field(default=64, ge=1, le=1000)
    generation_lease: float = Field(default=30.0, ge=3)

    # Gmail SMTP (docs/contracts.md §4)
    gmail_smtp_server: str = "smtp.gmail.com"
    gmail_smtp_port: int = Field(default=465, ge=1, le=65535)
    smtp_security: SmtpSecurity | None = None
    smtp_ca_file: Path | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    email_address: str
    email_password: SecretStr
    # The same account's Sent folder, to settle a send cut off mid-SMTP. On by
    # default for Gmail (smtp.gmail.com -> imap.gmail.com); IMAP_SERVER=off
    # turns it off, any other value points elsewhere.
    imap_server: str | None = None
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_sent_folder: str = "[Gmail]/Sent Mail"
    imap_ca_file: Path | None = None
    # With IMAP on, each sweep closes the open drafts the person answered from
    # their own mail client (a reply in the Sent folder; docs/design.md); false: never.
    answered_elsewhere_check: bool = True
    # At most one such look (one IMAP login) per this many seconds: the sweep
    # runs every TIMEOUT_CHECK_INTERVAL, and a mail provider counts logins.
    answered_elsewhere_interval: float = Field(default=300.0, ge=0)

    # The person's phone (docs/contracts.md §5)
    your_phone_number: str
    # Where a number written without a country code is read (US, GB, DE, ...); unset: YOUR_PHONE_NUMBER's.
    phone_region: str | None = Field(default=None, validate_default=True)

    # Workflow
    poll_interval: float = Field(default=120.0, gt=0)
    # The poller wakes at the Email Monitor's INSERT (LISTEN/NOTIFY) as well as
    # every POLL_INTERVAL; off: sweeps only (for a database reached through a
    # pooler that drops LISTEN, e.g. PgBouncer in transaction mode).
    poll_on_notify: bool = True
    # The most pending emails one poll takes (0: all of them, oldest first).
    poll_limit: int = Field(default=0, ge=0)
    user_response_timeout: float = Field(default=86400.0, gt=0)
    timeout_check_interval: float = Field(default=30.0, gt=0)
    # Seconds a workflow waits in pending, user_edit_requested or user_approved before the sweep resends its message.
    stalled_grace: float = Field(default=600.0, gt=0)
    # Lag is read from committed offsets (faust commits every 2.8 s) and cached
    # for 5 s, so an agent that has just finished its records can show lag for
    # up to about 8 s: a shorter timeout would call a healthy agent stalled.
    agent_stall_timeout: float = Field(default=300.0, ge=10)
    max_retry_attempts: int = Field(default=3, ge=1)
    retry_backoff_base: float = Field(default=1.0, gt=0)
    retry_backoff_max: float = Field(default=60.0, gt=0)
    # The longest a peer's Retry-After is obeyed (seconds; asking more gets this).
    retry_after_max: float = Field(default=300.0, gt=0)
    # An outage that outlasts the in-call retries parks the workflow: tried
    # again RETRY_PARK_BASE s later, doubling up to RETRY_PARK_MAX, until
    # RETRY_DEADLINE s after the first failure (0: fail at once instead).
    retry_park_base: float = Field(default=30.0, gt=0)
    retry_park_max: float = Field(default=3600.0, gt=0)
    retry_deadline: float = Field(default=86400.0, ge=0)
    max_edit_iterations: int = Field(default=10, ge=0)
    # An instruction applies to new emails' first drafts once given for one
    # sender on this many emails, for one domain on this many (from 2+ of its
    # senders), or by this many senders (docs/design.md, "It learns from you").
    lesson_sender_min: int = Field(default=2, ge=1)
    lesson_domain_min: int = Field(default=2, ge=2)
    lesson_everyone_min: int = Field(default=3, ge=2)
    sms_format: Literal["condensed", "full"] = "condensed"
    # How drafts reach the phone: "one" at a time (the next when the person
    # has decided on the one texted last), or "each" as soon as it is ready.
    # Either way every draft has a code and can be answered in any order.
    phone_mode: Literal["one", "each"] = "one"
    # How long a `yes` confirms an `all 3` (seconds).
    confirm_window: float = Field(default=60.0, gt=0)
    # Senders that get no draft besides no-reply/mailer-daemon/postmaster and
    # the account itself: comma-separated shell patterns or domains.
    skip_senders: str = ""
    # Senders who come first (same syntax as SKIP_SENDERS), with those marked on the dashboard.
    vip_senders: str = ""
    # One reminder SMS for an unanswered draft after this many seconds (0: none).
    reminder_after: float = Field(default=14400.0, ge=0)
    # How far the gateway's clock may lag ours: an answer the gateway received
    # more than this before its draft was texted was not for it (not applied).
    answer_clock_skew: float = Field(default=5.0, ge=0)
    # No draft or reminder SMS inside these hours (HH:MM-HH:MM in TIMEZONE).
    quiet_hours: str | None = None
    timezone: str = "UTC"

    # Many people (docs/design.md, "Many people"): the Fernet keys people's
    # mail passwords are kept under, newest first (comma separated); how often
    # a worker reads the people table again (seconds); the dashboard's SMS
    # sign-in code: how long it lives, and how many a phone may ask for per hour.
    people_keys: SecretStr | None = None
    people_refresh: float = Field(default=5.0, gt=0)
    sign_in_code_ttl: float = Field(default=600.0, ge=30)
    sign_in_codes_per_hour: int = Field(default=5, ge=1)

    # Web
    orchestrator_base_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8003")
    host: str = "0.0.0.0"
    port: int = Field(default=8003, ge=1, le=65535)
    sms_webhook_signing_key: SecretStr | None = None
    api_token: SecretStr | None = None
    draft_link_secret: SecretStr | None = None
    # Listening beyond loopback without the webhook key or the API token lets
    # anyone who reaches the port steer the workflow; the worker refuses that
    # unless this says it is meant (e.g. behind an authenticating proxy).
    allow_unauthenticated: bool = False
    # The session cookie's Secure flag: auto = when the sign-in came over TLS
    # (directly or per X-Forwarded-Proto/Forwarded from a proxy); true; false.
    cookie_secure: Literal["auto", "true", "false"] = "auto"
    # Set by `orchestrator demo` only: the peers are its stand-ins, and every page says so.
    demo: bool = False

    data_dir: Path = Path("/tmp/email-orchestrator")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # json: one object a line; text: for people. Unset: json unless on a terminal.
    log_format: Literal["json", "text"] | None = None

    @field_validator("your_phone_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        compact = re.sub(r"[\s\-().]", "", value)
        if not E164.match(compact):
            raise ValueError("must be an E.164 phone number such as +15551234567")
        return compact

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value.strip():
            return check_region(value)
        return region_of(info.data.get("your_phone_number"))

    @field_validator("email_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value or value.startswith("@") or value.endswith("@"):
            raise ValueError("must be an email address such as you@gmail.com")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            QuietHours.parse(value, "UTC")
            return value.strip()
        return None

    @field_validator("people_keys")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_people_keys(value)

    @field_validator("smtp_ca_file", "imap_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    # ---------------------------------------------------------------- derived

    @property
    def smtp_security_mode(self) -> SmtpSecurity:
        """SMTP_SECURITY, or what the port implies (465 implicit TLS, 587 STARTTLS)."""
        if self.smtp_security is not None:
            return self.smtp_security
        return {465: "ssl", 587: "starttls"}.get(self.gmail_smtp_port, "plain")  # type: ignore[return-value]

    @property
    def imap_host(self) -> str | None:
        """Where the Sent folder is checked, or None when it is not."""
        if self.imap_server is not None:
            return None if self.imap_server.strip().lower() in ("", "off", "none") else self.imap_server.strip()
        return "imap.gmail.com" if self.gmail_smtp_server == "smtp.gmail.com" else None

    @property
    def listens_beyond_loopback(self) -> bool:
        """Whether HOST lets other machines reach the web server."""
        if self.host.lower() == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return True  # a host name: assume it is reachable

    @property
    def unauthenticated_exposure(self) -> str | None:
        """Why the web server would accept strangers' requests, or None: HOST
        is not a loopback address and SMS_WEBHOOK_SIGNING_KEY or API_TOKEN is unset."""
        missing = [name for name, value in (("SMS_WEBHOOK_SIGNING_KEY", self.sms_webhook_signing_key),
                                            ("API_TOKEN", self.api_token)) if value is None]
        if not missing or not self.listens_beyond_loopback:
            return None
        return (f"{' and '.join(missing)} must be set when HOST={self.host} (reachable from other "
                f"machines); set {'them' if len(missing) > 1 else 'it'}, listen on HOST=127.0.0.1, "
                f"or set ALLOW_UNAUTHENTICATED=true to accept that risk")

    @property
    def quiet(self) -> QuietHours | None:
        """QUIET_HOURS in TIMEZONE, or None when there are none."""
        return QuietHours.parse(self.quiet_hours, self.timezone) if self.quiet_hours else None

    @cached_property
    def default_person(self) -> Person:
        """The person these settings describe (YOUR_PHONE_NUMBER, EMAIL_ADDRESS,
        ...): everyone's when there are no people rows, and what each person
        leaves unset (handlers/people.py)."""
        return Person(
            id=DEFAULT_PERSON, name="default", phone=self.your_phone_number,
            addresses=(self.email_address.lower(),), timezone=self.timezone, quiet_hours=self.quiet_hours,
            reminder_after=self.reminder_after, skip_senders=self.skip_senders, tone=self.ai_reply_tone,
            max_length=self.ai_reply_max_length, vip_senders=self.vip_senders, phone_mode=self.phone_mode,
            sms_format=self.sms_format,
            smtp=MailLogin(self.gmail_smtp_server, self.gmail_smtp_port, self.email_address,
                           self.email_password.get_secret_value(), self.smtp_security_mode),
            imap=None, own_mail=True)

    @property
    def draft_link_key(self) -> bytes:
        """The HMAC key for draft links: DRAFT_LINK_SECRET, else derived from a secret we have."""
        secret = self.draft_link_secret or self.email_password
        return b"draft-link:" + secret.get_secret_value().encode()


_NAMED = re.compile(r"^[A-Z][A-Z0-9_]+: ")


def _variable(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper() if loc else "configuration"


def load_settings(cls: type[_S] = Settings, **overrides: Any) -> _S:  # type: ignore[assignment]
    """Read and validate the configuration, or raise :class:`ConfigError`.

    The error message has one line per offending variable, e.g.
    ``YOUR_PHONE_NUMBER: must be an E.164 phone number such as +15551234567``.
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required but not set"
            if not error["loc"] and all(_NAMED.match(line) for line in message.splitlines()):
                lines += message.splitlines()  # a check across variables, already naming each
            else:
                lines.append(f"{_variable(error['loc'])}: {message}")
        raise ConfigError("\n".join(lines)) from None
