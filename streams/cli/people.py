"""``orchestrator people``: the people one deployment serves, managed by the
operator (docs/design.md, "Many people").

    people add NAME --phone P --address A [--address B ...] [--smtp-... --imap-... settings]
    people list | show KEY | set KEY FIELD VALUE ... | remove KEY
    people new-key | rotate-keys

The commands need DATABASE_URL (or DB_*), PEOPLE_KEYS only when a password
is given or rotated, and PHONE_REGION (else YOUR_PHONE_NUMBER's region) only
to read a phone written without its country code; never the rest of the
worker's settings. A password never comes on the command line, where any user
of the machine reads it in ``ps``: it is read from stdin or from a named
environment variable, stored only as a Fernet token (handlers/people_keys.py)
and shown back only as "(set)". What a person typed (a name) is printed
escaped for the terminal (:mod:`streams.cli.terminal`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from pydantic import SecretStr, field_validator

from handlers.clock import SystemClock
from handlers.people import (PHONE_MODES, SECRET_FIELDS, SECURITIES, SETTABLE, SMS_FORMATS, TONES, PersonError,
                             PersonRow, check_field, read_phone, taken_by_default)
from handlers.people_keys import KeysError, PeopleKeys
from handlers.phones import check_region, region_of
from streams.cli.terminal import for_terminal
from streams.connection_settings import DatabaseSettings
from streams.settings import ConfigError, checked_people_keys, load_settings
from streams.storage.database import create_pool
from streams.storage.people import PeopleStore, PersonTaken

#: The fields ``people add`` takes as ``--field-name VALUE`` (name, phone and
#: addresses have their own arguments; passwords come from stdin or the environment).
OPTION_FIELDS = tuple(f for f in SETTABLE if f not in ("name", "phone", "addresses") and f not in SECRET_FIELDS)
#: How ``people add --help`` spells the values it takes.
METAVARS = {"smtp_security": "|".join(SECURITIES), "tone": "|".join(TONES), "quiet_hours": "HH:MM-HH:MM",
            "reminder_after": "SECONDS", "max_length": "CHARS", "skip_senders": "PATTERNS", "timezone": "ZONE",
            "vip_senders": "PATTERNS", "phone_mode": "|".join(PHONE_MODES), "sms_format": "|".join(SMS_FORMATS)}
#: Each login's password, in the order stdin gives them when both are read from it.
LOGINS = ("smtp", "imap")


class PeopleSettings(DatabaseSettings):
    """What ``orchestrator people`` needs: the database, the keys, a phone region."""

    people_keys: SecretStr | None = None
    phone_region: str | None = None
    #: The default person's phone and address: read for the region (as the worker
    #: does when PHONE_REGION is unset) and so that no person takes them; never required.
    your_phone_number: str | None = None
    email_address: str | None = None

    @field_validator("people_keys")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_people_keys(value)

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return check_region(value) if value is not None and value.strip() else None

    @property
    def region(self) -> str | None:
        return self.phone_region or region_of(self.your_phone_number)

    def keys(self) -> PeopleKeys:
        """The keys passwords are encrypted with; a configuration error without them."""
        if self.people_keys is None:
            raise ConfigError("PEOPLE_KEYS: is required to store or rotate a password;"
                              " `orchestrator people new-key` makes a key")
        return PeopleKeys(self.people_keys.get_secret_value())


class Refused(Exception):
    """The command cannot do what was asked: exit 2 when the command line is
    wrong (a malformed field), 1 when the data says no (someone's phone, open work)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- what was typed


def _field(name: str, value: str, region: str | None) -> Any:
    try:
        return check_field(name, value, region)
    except PersonError as exc:
        hint = " or set PHONE_REGION to read national numbers" if name == "phone" and region is None else ""
        raise Refused(f"{exc}{hint}", 2) from None


def _not_the_default_persons(s: PeopleSettings, phone: str | None, addresses: Any) -> None:
    """Refuse the default person's phone or address for a person, as the admin page does."""
    try:
        default_phone = read_phone(s.your_phone_number, s.region) if s.your_phone_number else None
    except PersonError:
        default_phone = None
    taken = taken_by_default(phone, addresses, default_phone=default_phone, default_address=s.email_address)
    if taken is not None:
        raise Refused(taken, 1)


def _password_options(parser: argparse.ArgumentParser) -> None:
    for login in LOGINS:
        given = parser.add_mutually_exclusive_group()
        given.add_argument(f"--{login}-password-stdin", action="store_true",
                           help=f"read the {login.upper()} password from stdin (with both, smtp's line first)")
        given.add_argument(f"--{login}-password-env", metavar="VAR",
                           help=f"read the {login.upper()} password from environment variable VAR")


def _password_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, f"{login}_password_stdin", False) or getattr(args, f"{login}_password_env", None)
               for login in LOGINS)


def _passwords(args: argparse.Namespace) -> dict[str, str]:
    """The clear passwords given (``smtp_password``, ``imap_password``), from
    stdin (one each line when both are) or from the named variables."""
    from_stdin = [login for login in LOGINS if getattr(args, f"{login}_password_stdin", False)]
    lines: list[str] = []
    if from_stdin:
        text = sys.stdin.read()
        lines = text.splitlines() if len(from_stdin) > 1 else [text.removesuffix("\n").removesuffix("\r")]
    out: dict[str, str] = {}
    for login in LOGINS:
        field = f"{login}_password"
        variable = getattr(args, f"{login}_password_env", None)
        if login in from_stdin:
            at = from_stdin.index(login)
            out[field] = lines[at] if at < len(lines) else ""
            if not out[field]:
                raise Refused(f"{field}: nothing read from stdin (line {at + 1})", 2)
        elif variable:
            out[field] = os.environ.get(variable, "")
            if not out[field]:
                raise Refused(f"{field}: the environment variable {for_terminal(variable)} is not set or empty", 2)
    return out


def _encrypted(passwords: Mapping[str, str], settings: PeopleSettings) -> dict[str, str]:
    if not passwords:
        return {}
    keys = settings.keys()
    return {field: keys.encrypt(clear) for field, clear in passwords.items()}


# ---------------------------------------------------------------- what is printed


def _say(line: str) -> None:
    print(line)


def _who(row: PersonRow) -> str:
    return f"person {row.id} ({for_terminal(row.name)})"


def _about(row: PersonRow) -> str:
    """Who a person is in one line: name, phone, addresses, whose logins they use."""
    own_smtp = bool(row.smtp_server or row.smtp_login)
    smtp = "own" if own_smtp else "worker's"
    imap = "own" if row.imap_server else ("none" if own_smtp else "worker's")
    return "  ".join([for_terminal(row.name), row.phone, for_terminal(",".join(row.addresses)),
                      f"smtp={smtp}", f"imap={imap}"])


def _counts(counts: Mapping[str, int]) -> str:
    return "  ".join(f"{group}={counts.get(group, 0)}" for group in ("awaiting", "in_progress", "ended"))


def _shown(field: str, value: Any) -> str:
    if value is None:
        return "(not set)" if field in SECRET_FIELDS else "(worker's setting)"
    return for_terminal(", ".join(value) if isinstance(value, list) else str(value))


# ---------------------------------------------------------------- the commands


async def _find(store: PeopleStore, key: str, region: str | None) -> PersonRow:
    """The person ``key`` names (id, phone in any notation, address or name); exit 1 when none."""
    row = await store.find(key.strip())
    if row is None:
        try:
            row = await store.find(read_phone(key, region))
        except PersonError:
            row = None
    if row is None:
        raise Refused(f"no person '{for_terminal(key)}' (give an id, phone, address or name;"
                      " `orchestrator people list` shows them)", 1)
    return row


async def _add(store: PeopleStore, args: argparse.Namespace, s: PeopleSettings) -> int:
    name = _field("name", args.name, s.region)
    phone = _field("phone", args.phone, s.region)
    addresses = _field("addresses", ",".join(args.address), s.region)
    settings = {f: _field(f, getattr(args, f), s.region) for f in OPTION_FIELDS if getattr(args, f) is not None}
    settings = {f: v for f, v in settings.items() if v is not None}
    settings |= _encrypted(_passwords(args), s)
    _not_the_default_persons(s, phone, addresses)
    try:
        row = await store.add(name, phone, addresses, settings)
    except PersonTaken as exc:
        raise Refused(str(exc), 1) from None
    _say(f"added person {row.id}: {_about(row)}")
    return 0


async def _list(store: PeopleStore, _: argparse.Namespace, __: PeopleSettings) -> int:
    people = await store.everyone()
    counts = await store.counts()
    for row in people:
        _say(f"{row.id}  {_about(row)}  {_counts(counts.get(row.id, {}))}")
    if not people:
        _say("no people yet: the worker's own settings (YOUR_PHONE_NUMBER, EMAIL_ADDRESS) are the only person")
    nobody = sum(counts.get(None, {}).values())
    if nobody:
        _say(f"{nobody} email(s) belonged to nobody (no person's address; see the admin page)")
    return 0


async def _show(store: PeopleStore, args: argparse.Namespace, s: PeopleSettings) -> int:
    row = await _find(store, args.key, s.region)
    for field, value in row.shown().items():
        _say(f"{field}: {_shown(field, value)}")
    _say(f"workflows: {_counts((await store.counts()).get(row.id, {}))}")
    return 0


async def _set(store: PeopleStore, args: argparse.Namespace, s: PeopleSettings) -> int:
    pairs: list[str] = args.pairs
    if len(pairs) % 2:
        raise Refused(f"{for_terminal(pairs[-1])}: give FIELD VALUE pairs (an empty VALUE, '',"
                      " resets a field to the worker's setting)", 2)
    changes: dict[str, Any] = {}
    for field, value in zip(pairs[::2], pairs[1::2], strict=True):
        if field in SECRET_FIELDS and value:
            login = field.split("_")[0]
            raise Refused(f"{field}: never on the command line (any user sees it in ps); use"
                          f" --{login}-password-stdin or --{login}-password-env VAR ('' clears it)", 2)
        changes[field] = _field(field, value, s.region)
    changes |= _encrypted(_passwords(args), s)
    if not changes:
        raise Refused("nothing to change: give FIELD VALUE pairs or a password option", 2)
    _not_the_default_persons(s, changes.get("phone"), changes.get("addresses"))
    row = await _find(store, args.key, s.region)
    try:
        changed = await store.update(row.id, changes)
    except PersonTaken as exc:
        raise Refused(str(exc), 1) from None
    if changed is None:
        raise Refused(f"{_who(row)} was removed meanwhile", 1)
    _say(f"changed {', '.join(changes)} of {_who(changed)}")
    return 0


async def _remove(store: PeopleStore, args: argparse.Namespace, s: PeopleSettings) -> int:
    row = await _find(store, args.key, s.region)
    held = await store.remove(row.id)
    if held is None:
        raise Refused(f"{_who(row)} was removed meanwhile", 1)
    if held:
        raise Refused(f"{_who(row)} still has {held} open workflow(s); nothing removed"
                      " (remove them once their emails are answered or ended)", 1)
    _say(f"removed {_who(row)}")
    return 0


async def _rotate(store: PeopleStore, _: argparse.Namespace, s: PeopleSettings) -> int:
    keys = s.keys()
    names = {row.id: row for row in await store.everyone()}

    def rotate(person_id: int, token: str) -> str:
        try:
            return keys.rotate(token)
        except KeysError:
            who = _who(names[person_id]) if person_id in names else f"person {person_id}"
            raise Refused(f"{who}: a stored password was made with a key PEOPLE_KEYS no longer holds;"
                          " nothing was changed (put that key back in PEOPLE_KEYS, or set their"
                          " password again)", 1) from None

    rotated = await store.rotate_secrets(rotate)  # one transaction: all or nothing
    _say(f"rotated the passwords of {rotated} person(s) to the first key of PEOPLE_KEYS")
    return 0


Command = Callable[[PeopleStore, argparse.Namespace, PeopleSettings], Awaitable[int]]


async def _with_store(command: Command, args: argparse.Namespace, settings: PeopleSettings) -> int:
    try:  # first a plain connection, for a one-line reason when the database cannot be reached
        probe = await psycopg.AsyncConnection.connect(settings.conninfo, connect_timeout=5)
        await probe.close()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Refused(f"database: cannot connect ({reason}); check DATABASE_URL or DB_*", 1) from None
    pool = create_pool(settings.conninfo, max_size=2)
    await pool.open(wait=True, timeout=10)
    try:
        return await command(PeopleStore(pool, SystemClock()), args, settings)
    except psycopg.errors.UndefinedTable:
        raise Refused("database: no people table; run `orchestrator db init` first", 1) from None
    finally:
        await pool.close()


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = load_settings(PeopleSettings)
        if command is _rotate or _password_given(args):
            settings.keys()  # no PEOPLE_KEYS: say so before anything connects
        try:
            return asyncio.run(_with_store(command, args, settings))
        except Refused as exc:
            print(f"orchestrator: people: {exc}", file=sys.stderr)
            return exc.code
        except (psycopg.Error, PoolTimeout) as exc:
            said = str(exc).strip().splitlines()
            print(f"orchestrator: people: database: {said[0] if said else type(exc).__name__}", file=sys.stderr)
            return 1

    return run


def _new_key(_: argparse.Namespace) -> int:
    print(PeopleKeys.new_key())
    return 0


def add_commands(commands: Any) -> None:
    """``people`` and its subcommands on ``orchestrator``'s subparsers."""
    people = commands.add_parser("people", help="the people this deployment serves").add_subparsers(
        dest="people_command", required=True, metavar="SUBCOMMAND")
    add = people.add_parser("add", help="add a person (unset settings are the worker's)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--phone", required=True, help="E.164 (+15551234567), or national in PHONE_REGION")
    add.add_argument("--address", action="append", required=True,
                     help="a mailbox address the person answers from (repeat for more; the first sends)")
    for field in OPTION_FIELDS:
        add.add_argument("--" + field.replace("_", "-"), dest=field,
                         metavar=METAVARS.get(field, field.split("_")[-1].upper()))
    _password_options(add)
    add.set_defaults(run=_run(_add))
    people.add_parser("list", help="everyone, a line each, with their workflow counts").set_defaults(
        run=_run(_list))
    show = people.add_parser("show", help="every field of a person (passwords only as set or not)")
    show.add_argument("key", metavar="KEY", help="id, phone, address or name")
    show.set_defaults(run=_run(_show))
    change = people.add_parser("set", help="change fields of a person ('' resets one to the worker's setting)",
                               epilog="FIELD is one of: " + ", ".join(SETTABLE)
                                      + ". Passwords only through the password options.")
    change.add_argument("key", metavar="KEY", help="id, phone, address or name")
    change.add_argument("pairs", nargs="*", metavar="FIELD VALUE")
    _password_options(change)
    change.set_defaults(run=_run(_set))
    remove = people.add_parser("remove", help="remove a person who has no open workflow")
    remove.add_argument("key", metavar="KEY", help="id, phone, address or name")
    remove.set_defaults(run=_run(_remove))
    people.add_parser("new-key", help="print a new key for PEOPLE_KEYS").set_defaults(run=_new_key)
    people.add_parser("rotate-keys", help="encrypt every stored password again under PEOPLE_KEYS' first key"
                      ).set_defaults(run=_run(_rotate))

