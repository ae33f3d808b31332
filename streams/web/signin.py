"""Signing in to the dashboard (docs/design.md, "Many people"; README, "Dashboard").

Two ways in, both on ``/signin``:

- the admin types the API token (``POST /signin``): a session that sees
  everyone, as before;
- a person types their phone (``POST /signin/phone``) and gets a 6-digit code
  by SMS, then types it (``POST /signin/code``): a session that sees only
  their own workflows.

The code is made with :mod:`secrets` and kept only as an HMAC (PeopleStore:
``sign_in_codes``): single use, valid SIGN_IN_CODE_TTL seconds, at most
SIGN_IN_CODES_PER_HOUR made per person an hour, and spent after
:data:`ATTEMPTS` wrong tries. The page answers a phone the same whether it is
a person's or not, and in the same time: the code is made and texted by a
task of its own, so neither the answer nor its delay tells a stranger which
phones are known. A code is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from typing import Final

from aiohttp import web

from handlers.people import Person, PersonError, read_phone
from streams.web.appkeys import PEOPLE_STORE, SETTINGS, STAGES
from streams.web.guard import GUARD, SESSION_COOKIE, SESSION_SECONDS, cookie_secure, local_path
from streams.web.pages import render

log = logging.getLogger(__name__)

CODE_DIGITS: Final = 6
#: The id looked up for a phone that is nobody's (no person has it).
NOBODY: Final = -1
#: Wrong tries that spend a code.
ATTEMPTS: Final = 5
#: Codes being made and texted at once, at most; beyond that a request is dropped (logged).
MAX_SENDING: Final = 50
ASKED = ("If {phone} is the phone of someone on this deployment, a sign-in code is on its way to it by SMS."
         " Type it below.")
WRONG_CODE = "That code is not right, or it has expired or been used. Ask for a new one if you need to."
_sending: set[asyncio.Task[None]] = set()


def code_text(code: str, ttl: float) -> str:
    """The SMS that carries a sign-in code."""
    valid = f"{round(ttl / 60)} minutes" if ttl >= 120 else f"{round(ttl)} seconds"
    return (f"Your dashboard sign-in code is {code} (valid {valid}). "
            "If you did not ask for it, ignore this SMS.")


def code_hash(key: bytes, person_id: int, code: str) -> str:
    """What is kept of a code: an HMAC under a key every worker holds (hex, 64 characters)."""
    return hmac.new(key, f"sign-in:{person_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _key(request: web.Request) -> bytes:
    return hashlib.sha256(b"sign-in-code:" + request.app[SETTINGS].draft_link_key).digest()


def _phone(value: str, region: str | None) -> str | None:
    try:
        return read_phone(value, region)
    except PersonError:
        return None


def _read_code(value: str) -> str | None:
    code = "".join(value.split())
    return code if len(code) == CODE_DIGITS and code.isascii() and code.isdigit() else None


async def signin_page(request: web.Request, problem: str = "", *, asked: str = "", phone: str | None = None,
                      status: int | None = None) -> web.Response:
    """The sign-in forms: the API token, and a phone; once a code was asked
    for (``phone`` given), the form for it. 401 with the reason when a token,
    a code or a session cookie was refused."""
    guard = request.app[GUARD]
    problem = problem or guard.session_problem(request)
    return render(request, "signin.html", "Sign in", status=status or (401 if problem else 200), problem=problem,
                  next=local_path(request.query.get("next") or (await request.post()).get("next")),
                  asked=asked, phone=phone or "", code_form=phone is not None, token_form=guard.required)


def _start_session(request: web.Request, value: str, target: object) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(local_path(target))
    response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="Strict",
                        secure=cookie_secure(request, request.app[SETTINGS].cookie_secure), path="/")
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    """The admin's sign-in: the API token."""
    guard, settings = request.app[GUARD], request.app[SETTINGS]
    if not guard.required or settings.api_token is None:
        raise web.HTTPSeeOther("/")
    form = await guard.require_csrf(request)
    if not guard.token_matches(form.get("token", ""), settings.api_token.get_secret_value()):
        return await signin_page(request, "That is not the API token.")
    raise _start_session(request, guard.new_session(), form.get("next"))


async def ask_code(request: web.Request) -> web.Response:
    """A person's phone: a code is made and texted to it if it is a person's
    (in the background), and the page says the same either way."""
    form = await request.app[GUARD].require_csrf(request)
    phone = _phone(form.get("phone", ""), request.app[SETTINGS].phone_region)
    if phone is None:
        return await signin_page(request, "That is not a phone number: write it as +15551234567.", status=400)
    person = await request.app[STAGES].person_of_phone(phone)
    if person is not None:
        if len(_sending) >= MAX_SENDING:
            log.warning("sign-in code not made: %d codes are being made and texted already", len(_sending))
        else:
            task = asyncio.create_task(_make_and_text(request.app, person, _key(request)), name="sign-in code")
            _sending.add(task)
            task.add_done_callback(_sending.discard)
    return await signin_page(request, asked=ASKED.format(phone=phone), phone=phone)


async def _make_and_text(app: web.Application, person: Person, key: bytes) -> None:
    """Make a code for ``person``, keep its hash, text it (one attempt; a failure is logged, not the code)."""
    settings = app[SETTINGS]
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    try:
        made = await app[PEOPLE_STORE].new_sign_in_code(
            person.id, code_hash(key, person.id, code), settings.sign_in_code_ttl,
            most=settings.sign_in_codes_per_hour, per=3600)
        if not made:
            log.info("sign-in code for person %d not made: %d were asked for within the hour"
                     " (SIGN_IN_CODES_PER_HOUR)", person.id, settings.sign_in_codes_per_hour)
            return
        await app[STAGES].sms.send(person.phone, code_text(code, settings.sign_in_code_ttl))
        log.info("sign-in code texted to person %d", person.id)
    except Exception as exc:  # noqa: BLE001 - a task of its own: nobody else would see it
        log.warning("sign-in code for person %d not texted: %s: %s", person.id, type(exc).__name__, exc)


async def use_code(request: web.Request) -> web.StreamResponse:
    """A phone and its code: a session for the person whose phone it is, then on to ``next``."""
    form = await request.app[GUARD].require_csrf(request)
    phone = _phone(form.get("phone", ""), request.app[SETTINGS].phone_region)
    code = _read_code(form.get("code", ""))
    if phone is None or code is None:
        return await signin_page(request, WRONG_CODE, phone=phone or "")
    person = await request.app[STAGES].person_of_phone(phone)
    # A stranger's phone is looked up as a person's is (no row has id -1): the same answer in the same time.
    person_id = person.id if person is not None else NOBODY
    expected = code_hash(_key(request), person_id, code)
    used = await request.app[PEOPLE_STORE].use_sign_in_code(
        person_id, lambda kept: hmac.compare_digest(str(kept).encode(), expected.encode()), attempts=ATTEMPTS)
    if person is None or not used:
        log.info("sign-in code refused (%s)", f"person {person_id}" if person else "a phone of nobody's")
        return await signin_page(request, WRONG_CODE, phone=phone)
    log.info("person %d signed in to the dashboard", person.id)
    raise _start_session(request, request.app[GUARD].new_session(person.id), form.get("next"))


async def signout(request: web.Request) -> web.StreamResponse:
    await request.app[GUARD].require_csrf(request)
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


ROUTES: Final = [
    web.get("/signin", signin_page),
    web.post("/signin", signin),
    web.post("/signin/phone", ask_code),
    web.post("/signin/code", use_code),
    web.post("/signout", signout),
]
