"""The rules of many people (pure): a person's fields as typed, whose an email
is, what a person inherits from the worker's settings, and their passwords at
rest (handlers/people.py, handlers/people_keys.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.people import (DEFAULT_PERSON, NAME_CHARS, MailLogin, Person, PersonError, PersonRow, check_field,
                             read_addresses, resolve, route)
from handlers.people_keys import KeysError, PeopleKeys

# ---------------------------------------------------------------- check_field


@pytest.mark.parametrize("field, value, said", [
    ("favourite_colour", "blue", "favourite_colour: no such field"),
    ("name", "   ", "name: must not be empty"),
    ("phone", "12", "phone: '12' is not a phone number"),
    ("phone", "(555) 123-4567", "phone: '(555) 123-4567' is not a phone number"),  # national, no region
    ("addresses", "not-an-address", "addresses: 'not-an-address' is not an email address"),
    ("addresses", "a@x.com, b@", "addresses: 'b@' is not an email address"),
    ("addresses", " , ", "addresses: give at least one mailbox address"),
    ("smtp_port", "abc", "smtp_port: 'abc' is not a whole number"),
    ("smtp_port", "0", "smtp_port: must be between 1 and 65535"),
    ("imap_port", "65536", "imap_port: must be between 1 and 65535"),
    ("imap_port", "99.5", "imap_port: '99.5' is not a whole number"),
    ("max_length", "0", "max_length: must be more than 0"),
    ("max_length", "lots", "max_length: 'lots' is not a whole number"),
    ("reminder_after", "-1", "reminder_after: must be 0 (never) or more seconds"),
    ("reminder_after", "soon", "reminder_after: 'soon' is not a number"),
    ("reminder_after", "nan", "reminder_after: must be 0 (never) or more seconds"),
    ("reminder_after", "inf", "reminder_after: must be 0 (never) or more seconds"),
    ("reminder_after", "1e309", "reminder_after: must be 0 (never) or more seconds"),
    ("smtp_security", "tls", "smtp_security: one of ssl, starttls, plain"),
    ("tone", "angry", "tone: one of professional, casual, technical, friendly"),
    ("timezone", "Mars/Olympus_Mons", "timezone: unknown time zone 'Mars/Olympus_Mons'"),
    ("quiet_hours", "22-07", "quiet_hours: must look like 22:00-07:00"),
    ("quiet_hours", "25:00-07:00", "quiet_hours: hours are 00-23"),
    ("quiet_hours", "07:00-07:00", "quiet_hours: start and end must differ"),
    ("phone_mode", "all", "phone_mode: one of one, each"),
    ("sms_format", "tiny", "sms_format: one of condensed, full"),
    ("vip_senders", "boss@x.com, a@b@c", "vip_senders: A pattern has at most one @."),
])
def test_a_bad_value_is_refused_naming_its_field(field: str, value: str, said: str) -> None:
    with pytest.raises(PersonError) as raised:
        check_field(field, value)
    assert str(raised.value).startswith(said), str(raised.value)


@pytest.mark.parametrize("field, value, stored", [
    ("name", "  Alice Smith ", "Alice Smith"),
    ("name", "x" * 500, "x" * NAME_CHARS),
    ("phone", "+1 (555) 123-4567", "+15551234567"),
    ("addresses", "Alice@X.com, <b@x.com> alice@x.com", ("alice@x.com", "b@x.com")),
    ("smtp_port", "587", 587),
    ("smtp_security", "STARTTLS", "starttls"),
    ("tone", "Casual", "casual"),
    ("reminder_after", "0", 0.0),
    ("reminder_after", "90.5", 90.5),
    ("max_length", "300", 300),
    ("timezone", "Europe/Berlin", "Europe/Berlin"),
    ("quiet_hours", "22:00-07:00", "22:00-07:00"),
    ("skip_senders", "*@news.example, ads.example", "*@news.example, ads.example"),
    ("smtp_server", " smtp.example.org ", "smtp.example.org"),
    ("phone_mode", "EACH", "each"),
    ("sms_format", "Full", "full"),
    ("vip_senders", "Boss@X.com, *@board.example,, Ann Lee <ann@lee.example>", "boss@x.com, *@board.example,"
     " ann@lee.example"),
])
def test_a_good_value_is_read_into_its_stored_form(field: str, value: str, stored: object) -> None:
    assert check_field(field, value) == stored


@pytest.mark.parametrize("field", ["smtp_server", "smtp_port", "tone", "timezone", "quiet_hours", "reminder_after",
                                   "max_length", "imap_sent_folder", "skip_senders", "vip_senders", "phone_mode",
                                   "sms_format"])
def test_an_empty_value_is_the_workers_setting_again(field: str) -> None:
    assert check_field(field, "  ") is None


def test_a_national_phone_is_read_in_the_region_given() -> None:
    assert check_field("phone", "(555) 123-4567", "US") == "+15551234567"
    assert check_field("phone", "020 7946 0018", "GB") == "+442079460018"


# ---------------------------------------------------------------- read_addresses


def test_addresses_are_lower_case_in_order_each_once() -> None:
    assert read_addresses("B@x.com;a@x.com  b@X.COM,\n<c@y.org>") == ("b@x.com", "a@x.com", "c@y.org")
    assert read_addresses(["Me@X.com", "", "me@x.com"]) == ("me@x.com",)


@pytest.mark.parametrize("value", ["", "a@x.com, @x.com", "a@@x.com", "a@x", "a@x.com, b@" + "y" * 320 + ".com",
                                   ["a@x.com", "John <j@x.com>"]])
def test_something_that_is_not_an_address_is_refused(value: str | list[str]) -> None:
    with pytest.raises(PersonError, match=r"^addresses: "):
        read_addresses(value)


# ---------------------------------------------------------------- route

OWNERS = {"alice@x.com": 1, "alice@home.example": 1, "bob@x.com": 2}
DEFAULT = (DEFAULT_PERSON, "Me@Example.com")


@pytest.mark.parametrize("mailbox, to, whose", [
    # The mailbox that received the email decides, whatever the recipients say.
    ("alice@x.com", ["bob@x.com"], 1),
    ("Alice <ALICE@home.example>", None, 1),
    ("me@example.com", ["bob@x.com"], DEFAULT_PERSON),
    ("stranger@x.com", ["bob@x.com"], None),
    # Without one, the recipients, display names and all, first match first.
    (None, ["Bob Smith <Bob@X.com>"], 2),
    (None, ["someone@y.org", "Alice <alice@x.com>", "bob@x.com"], 1),
    ("  ", ["Carol <c@y.org>, \"Smith, Bob\" <bob@x.com>"], 2),
    # Nobody's address: the default person's.
    (None, ["someone@y.org"], DEFAULT_PERSON),
    (None, None, DEFAULT_PERSON),
])
def test_an_email_is_the_person_whose_mailbox_received_it(mailbox: str | None, to: list[str] | None,
                                                          whose: int | None) -> None:
    assert route(mailbox, to, OWNERS, DEFAULT) == whose


def test_without_a_default_person_an_unmatched_email_is_nobodys() -> None:
    assert route(None, ["someone@y.org"], OWNERS, None) is None
    assert route("me@example.com", None, OWNERS, None) is None
    assert route(None, ["bob@x.com"], OWNERS, None) == 2


# ---------------------------------------------------------------- resolve

WORKER_SMTP = MailLogin("smtp.gmail.com", 465, "me@example.com", "worker-pw", "ssl")
BASE = Person(id=DEFAULT_PERSON, name="default", phone="+15550000000", addresses=("me@example.com",),
              timezone="Europe/Berlin", quiet_hours="22:00-07:00", reminder_after=14400.0,
              skip_senders="*@ads.example", tone="professional", max_length=None, smtp=WORKER_SMTP,
              vip_senders="ceo@example.com", phone_mode="one", sms_format="condensed")
ALICE = PersonRow(id=7, name="Alice", phone="+15551230001", addresses=("alice@x.com", "alice@home.example"))


def test_unset_fields_are_the_default_persons() -> None:
    alice = resolve(ALICE, BASE, smtp_password=None, imap_password=None)
    assert (alice.id, alice.name, alice.phone, alice.email_address) == (7, "Alice", "+15551230001", "alice@x.com")
    assert (alice.timezone, alice.quiet_hours, alice.reminder_after, alice.skip_senders, alice.tone,
            alice.max_length) == ("Europe/Berlin", "22:00-07:00", 14400.0, "*@ads.example", "professional", None)
    assert (alice.vip_patterns, alice.phone_mode, alice.sms_format) == (["ceo@example.com"], "one", "condensed")
    # No login of her own: the worker's SMTP login (and Sent folder) send her replies.
    assert (alice.smtp, alice.imap, alice.own_mail, alice.is_default) == (None, None, True, False)


def test_set_fields_are_the_persons_own_even_when_empty_or_zero() -> None:
    row = replace(ALICE, timezone="America/New_York", quiet_hours="23:00-06:00", reminder_after=0.0,
                  skip_senders="", tone="casual", max_length=300)
    alice = resolve(row, BASE, smtp_password=None, imap_password=None)
    assert (alice.timezone, alice.quiet_hours, alice.reminder_after, alice.skip_senders, alice.tone,
            alice.max_length) == ("America/New_York", "23:00-06:00", 0.0, "", "casual", 300)
    assert alice.quiet is not None and str(alice.quiet.zone) == "America/New_York"
    own = resolve(replace(ALICE, vip_senders="", phone_mode="each", sms_format="full"), BASE, smtp_password=None,
                  imap_password=None)
    assert (own.vip_patterns, own.phone_mode, own.sms_format) == ([], "each", "full")  # no VIPs: none of the worker's


def test_a_mode_written_into_the_row_by_hand_that_is_none_is_the_workers() -> None:
    odd = resolve(replace(ALICE, phone_mode="sometimes", sms_format="huge"), BASE, smtp_password=None,
                  imap_password=None)
    assert (odd.phone_mode, odd.sms_format) == ("one", "condensed")


def test_a_person_with_their_own_smtp_login_sends_through_it() -> None:
    row = replace(ALICE, smtp_server="smtp.x.com", smtp_login="alice", smtp_password="token")
    alice = resolve(row, BASE, smtp_password="alice-pw", imap_password=None)
    assert alice.own_mail is False
    assert alice.smtp == MailLogin("smtp.x.com", 465, "alice", "alice-pw", "ssl")  # the worker's port, its security
    assert alice.imap is None  # no Sent folder of hers to look in


def test_an_own_login_fills_what_it_leaves_out() -> None:
    login_only = resolve(replace(ALICE, smtp_login="alice"), BASE, smtp_password="pw", imap_password=None)
    assert login_only.smtp == MailLogin("smtp.gmail.com", 465, "alice", "pw", "ssl")
    on_587 = resolve(replace(ALICE, smtp_server="smtp.x.com", smtp_port=587), BASE, smtp_password="pw",
                     imap_password=None)
    assert on_587.smtp == MailLogin("smtp.x.com", 587, "alice@x.com", "pw", "starttls")
    # A password alone: her own login (her address) on the worker's server, never silently unused.
    password_only = resolve(replace(ALICE, smtp_password="token"), BASE, smtp_password="pw", imap_password=None)
    assert password_only.smtp == MailLogin("smtp.gmail.com", 465, "alice@x.com", "pw", "ssl")
    assert password_only.own_mail is False
    with_imap = resolve(replace(ALICE, smtp_server="smtp.x.com", smtp_login="alice", imap_server="imap.x.com"),
                        BASE, smtp_password="pw", imap_password=None)
    assert with_imap.imap == MailLogin("imap.x.com", 993, "alice", "pw", "Sent")


# ---------------------------------------------------------------- passwords at rest


def test_a_password_is_stored_as_a_token_that_the_keys_open() -> None:
    keys = PeopleKeys(PeopleKeys.new_key())
    token = keys.encrypt("hunter2-ü")
    assert "hunter2" not in token and token != keys.encrypt("hunter2-ü")  # fresh each time
    assert keys.decrypt(token) == "hunter2-ü"


def test_rotation_moves_a_token_from_the_old_key_to_the_new() -> None:
    old, new = PeopleKeys.new_key(), PeopleKeys.new_key()
    token = PeopleKeys(old).encrypt("hunter2")
    with pytest.raises(KeysError):
        PeopleKeys(new).decrypt(token)
    rotated = PeopleKeys(f"{new}, {old}").rotate(token)
    assert PeopleKeys(new).decrypt(rotated) == "hunter2"
    with pytest.raises(KeysError):
        PeopleKeys(old).decrypt(rotated)
    with pytest.raises(KeysError):  # a token no key made: rotation cannot open it either
        PeopleKeys(new).rotate(PeopleKeys(PeopleKeys.new_key()).encrypt("x"))


#: A fixed key (32 bytes, url-safe base64), so test ids are the same in every process.
A_KEY = "b5M4exyXg_ccahHuwALi9GNgK4ZJsXxcwYjd_SGT3G8="


@pytest.mark.parametrize("text", ["", " , ", "not-a-key", A_KEY[:-2], f"{A_KEY},short"])
def test_a_malformed_key_is_refused(text: str) -> None:
    with pytest.raises(KeysError, match="new-key"):
        PeopleKeys(text)


def test_a_token_that_is_no_token_is_refused() -> None:
    with pytest.raises(KeysError):
        PeopleKeys(PeopleKeys.new_key()).decrypt("hunter2")


def test_a_password_never_shows_in_a_login_a_person_or_a_row_shown() -> None:
    login = MailLogin("smtp.x.com", 465, "alice", "hunter2", "ssl")
    person = replace(BASE, smtp=login, imap=replace(login, password="imap-pw"))
    for text in (repr(login), str(login), repr(person), str(person), f"{person}"):
        assert "hunter2" not in text and "imap-pw" not in text, text
    assert "alice" in repr(login)
    shown = replace(ALICE, smtp_password="gAAAA-token", imap_password=None).shown()
    assert (shown["smtp_password"], shown["imap_password"]) == ("(set)", None)
    assert shown["addresses"] == ["alice@x.com", "alice@home.example"]
