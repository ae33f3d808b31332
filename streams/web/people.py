"""The admin's page of people, ``/people`` (docs/design.md, "Many people"):
every person with their phone, addresses and mail logins (a password only as
set or not, never shown), how many of their workflows await an answer, are in
progress and have ended; the emails that belonged to nobody; a form to add a
person and a button to remove one.

The admin's alone (``access.py``: a person signed in gets 403). Each form
posts with the page's CSRF token and comes back to the page (303), which names
what was done in fixed words. A password is kept only encrypted under
PEOPLE_KEYS (``handlers/people_keys.py``): without the keys the form refuses
one. A person who still holds open workflows is not removed: the page says
why. The counts are the admin page's; the metrics keep no label per person.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from handlers.people import DEFAULT_PERSON, SECRET_FIELDS, PersonError, PersonRow, check_field, taken_by_default
from handlers.people_keys import KeysError, PeopleKeys
from streams.storage.people import PersonTaken
from streams.web.appkeys import DIRECTORY, PEOPLE_STORE, SETTINGS
from streams.web.guard import GUARD
from streams.web.pages import render

PATH: Final = "/people"
#: The fields of the form to add a person, in the order shown.
FIELDS: Final = ("name", "phone", "addresses", "smtp_server", "smtp_port", "smtp_login", "smtp_password",
                 "imap_server", "imap_login", "imap_password")
#: What the page says after a change (``?done=<what>``): fixed words, so nothing from the URL is shown back.
DONE: Final = {"added": "Person added: every worker knows them within PEOPLE_REFRESH seconds.",
               "removed": "Person removed.", "gone": "That person is gone already."}
NO_KEYS: Final = ("PEOPLE_KEYS is not set, so a password cannot be stored (passwords are kept only encrypted):"
                  " set PEOPLE_KEYS on every worker (orchestrator people new-key makes one), or leave the"
                  " passwords empty.")
EMPTY: Final = {"awaiting": 0, "in_progress": 0, "ended": 0}


def mail_login(row: PersonRow, kind: str) -> str:
    """A person's own SMTP or IMAP login as the page shows it: never the
    password, only whether one is set (handlers/people.py ``resolve`` says
    when a login is the person's own)."""
    server, port, login, password = (getattr(row, f"{kind}_{name}") for name in ("server", "port", "login",
                                                                                 "password"))
    own_smtp = bool(row.smtp_server or row.smtp_login)
    if kind == "imap" and not server:
        return "none" if own_smtp else "the worker's"  # sending through the worker's, its Sent folder is theirs
    if not server and not login:
        return "the worker's"
    where = (server or "the worker's server") + (f":{port}" if port else "")
    user = login or (row.addresses[0] if row.addresses else "")
    return f"{where} as {user}, password {'set' if password else 'not set'}"


async def people_page(request: web.Request, problem: str = "", status: int = 200,
                      typed: Mapping[str, str] | None = None) -> web.Response:
    store, settings = request.app[PEOPLE_STORE], request.app[SETTINGS]
    counts = await store.counts()
    default = settings.default_person
    rows = [{"id": DEFAULT_PERSON, "name": "default (the worker's settings)", "phone": default.phone,
             "addresses": ", ".join(default.addresses), "smtp": "the worker's", "imap": "the worker's",
             "counts": counts.get(DEFAULT_PERSON, EMPTY), "removable": False}]
    rows += [{"id": row.id, "name": row.name, "phone": row.phone, "addresses": ", ".join(row.addresses),
              "smtp": mail_login(row, "smtp"), "imap": mail_login(row, "imap"),
              "counts": counts.get(row.id, EMPTY), "removable": True} for row in await store.everyone()]
    kept = {name: value for name, value in (typed or {}).items() if name in FIELDS and name not in SECRET_FIELDS}
    return render(request, "people.html", "People", status=status, people=rows,
                  nobodys=counts.get(None, EMPTY), unrouted=await store.unrouted(limit=50),
                  keys=settings.people_keys is not None, problem=problem, typed=kept,
                  done=DONE.get(request.query.get("done", ""), ""))


def read_person(form: Mapping[str, str], region: str | None) -> dict[str, Any]:
    """The typed fields, read as ``orchestrator people add`` reads them
    (:class:`PersonError` naming a malformed one); passwords as typed, None when empty."""
    values: dict[str, Any] = {}
    for name in FIELDS:
        typed = form.get(name, "")
        values[name] = (typed or None) if name in SECRET_FIELDS else check_field(name, typed, region)
    return values


async def add_person(request: web.Request) -> web.StreamResponse:
    """Add the person the form describes, their passwords encrypted; the page again with the reason when refused."""
    form = await request.app[GUARD].require_csrf(request)
    settings = request.app[SETTINGS]
    try:
        values = read_person(form, settings.phone_region)
    except PersonError as exc:
        return await people_page(request, problem=str(exc), status=400, typed=form)
    name, phone, addresses = values.pop("name"), values.pop("phone"), values.pop("addresses")
    default = settings.default_person
    taken = taken_by_default(phone, addresses, default_phone=default.phone, default_address=default.email_address)
    if taken is not None:
        return await people_page(request, problem=taken, status=409, typed=form)
    passwords = {field: values.pop(field) for field in SECRET_FIELDS}
    stored = {field: value for field, value in values.items() if value is not None}
    if any(passwords.values()):
        if settings.people_keys is None:
            return await people_page(request, problem=NO_KEYS, status=400, typed=form)
        try:
            keys = PeopleKeys(settings.people_keys.get_secret_value())
        except KeysError as exc:
            return await people_page(request, problem=f"PEOPLE_KEYS: {exc}", status=400, typed=form)
        stored |= {field: keys.encrypt(clear) for field, clear in passwords.items() if clear}
    try:
        await request.app[PEOPLE_STORE].add(name, phone, addresses, stored)
    except PersonTaken as exc:
        return await people_page(request, problem=str(exc), status=409, typed=form)
    await _refresh(request)
    raise web.HTTPSeeOther(f"{PATH}?done=added")


async def remove_person(request: web.Request) -> web.StreamResponse:
    """Remove a person who holds no open workflow; the page again saying why not when they do."""
    form = await request.app[GUARD].require_csrf(request)
    person_id = form.get("person_id", "")
    if not (person_id.isascii() and person_id.isdigit() and len(person_id) <= 9):
        raise web.HTTPBadRequest(reason="no person named")
    store = request.app[PEOPLE_STORE]
    named = {row.id: row.name for row in await store.everyone()}
    held = await store.remove(int(person_id))
    if held:
        who = named.get(int(person_id), f"person {person_id}")
        return await people_page(request, status=409, problem=(
            f"{who} is not removed: {held} of their workflows are still open (awaiting an answer or in"
            " progress). Remove them once those have ended (sent, ignored, timed out or failed)."))
    await _refresh(request)
    raise web.HTTPSeeOther(f"{PATH}?done={'gone' if held is None else 'removed'}")


async def _refresh(request: web.Request) -> None:
    """This worker knows the change at once; the others within PEOPLE_REFRESH."""
    directory = request.app.get(DIRECTORY)
    if directory is not None:
        await directory.refresh(force=True)


ROUTES: Final = [
    web.get(PATH, people_page),
    web.post(f"{PATH}/add", add_person),
    web.post(f"{PATH}/remove", remove_person),
]
