"""The dashboard's sign-in rule: sessions and CSRF tokens.

When ``API_TOKEN`` is set, the pages ask for it once (``/signin``) and keep an
HttpOnly, SameSite=Strict session cookie that never holds the token itself,
Secure when the sign-in came over TLS (``COOKIE_SECURE``). Every
state-changing form carries a CSRF token bound to the session. After the
sign-in the browser goes only to a local path (:func:`local_path`).

A session says who signed in (docs/design.md, "Many people"): the admin, with
the API token (or anyone while API_TOKEN is unset), who sees everyone; or one
person, with a code texted to their phone (``signin.py``), who sees only their
own workflows (``access.py``). The person is part of what the session's MAC
signs, so it cannot be changed without the key.

Everything here reads what a client sent and may hold any bytes (aiohttp hands
undecodable header bytes over as surrogates): it compares and hashes them
without raising, and a value it cannot read is simply not valid.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from aiohttp import web

SESSION_COOKIE = "orchestrator_session"
SESSION_SECONDS = 12 * 3600

#: The dashboard's own pages (and their forms) under its sign-in rule.
PAGE_PREFIXES = ("/workflows/", "/dead-letters", "/actions/", "/analytics", "/lessons", "/vips", "/people")
#: The sign-in pages and forms: dashboard pages, open to anyone.
SIGN_IN_PATHS = ("/signin", "/signin/phone", "/signin/code", "/signout")
#: The most digits a session's expiry and a person's id in it may have.
MAX_EXPIRY_DIGITS = 12
MAX_PERSON_DIGITS = 10


#: Where a sign-in may send the browser on: a path of this site, at most this long.
MAX_NEXT = 2000


def _bytes(text: str) -> bytes:
    """Any str as bytes, lone surrogates included (nothing a client sends makes this raise)."""
    return text.encode("utf-8", "surrogatepass")


def same(given: str, expected: str) -> bool:
    """A constant-time comparison of two strings, whatever they hold."""
    return hmac.compare_digest(_bytes(given), _bytes(expected))


def _invisible(char: str) -> bool:
    """Whitespace or a control, format, separator or unassigned character
    (browsers drop tabs and newlines from a URL: slash, tab, slash is ``//``)."""
    return char.isspace() or unicodedata.category(char)[0] in "CZ"


def local_path(value: object) -> str:
    """``value`` when it is a path of this site, else ``/``.

    Accepted: starts with one slash (not two), no backslash anywhere, no
    whitespace or control character, and no scheme or host, also after
    percent-decoding (repeated, so ``%252F`` counts as ``/``)."""
    target = value if isinstance(value, str) else ""
    if not target or len(target) > MAX_NEXT:
        return "/"
    forms = [target]
    for _ in range(3):
        decoded = unquote(forms[-1], errors="surrogateescape")
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    for form in forms:
        if (not form.startswith("/") or form.startswith("//") or "\\" in form
                or any(_invisible(char) for char in form)):
            return "/"
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return "/"
    return target


CookieSecure = Literal["auto", "true", "false"]


def cookie_secure(request: web.Request, mode: CookieSecure) -> bool:
    """Whether the session cookie is sent only over TLS: always (``true``),
    never (``false``), or (``auto``) when the browser reached us over TLS, directly
    or through a proxy saying so (``X-Forwarded-Proto: https``, ``Forwarded: proto=https``).

    The proxy's word is taken from anyone: it can only make the cookie stricter,
    so a client that lies about it only keeps its own cookie off plain HTTP."""
    if mode != "auto":
        return mode == "true"
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    proto = [part.split("=", 1)[1].strip().strip('"').lower()
             for part in request.headers.get("Forwarded", "").split(",")[0].split(";")
             if part.strip().lower().startswith("proto=")]
    return request.secure or forwarded == "https" or proto == ["https"]


def is_page(path: str, extra: Collection[str] = ()) -> bool:
    """A dashboard page, or one of the ``extra`` paths another package handed over."""
    return path == "/" or path.startswith(PAGE_PREFIXES) or path in SIGN_IN_PATHS or path in extra


@dataclass(frozen=True)
class Viewer:
    """Who a request is from: the admin (``person`` None), who sees and manages
    everyone, or one person (``Workflow.person_id``; 0 is the default person),
    who sees only their own workflows. ``name`` and ``phone`` are the person's
    once their session is checked against the people (``access.py``)."""

    person: int | None = None
    name: str = ""
    phone: str = ""

    @property
    def admin(self) -> bool:
        return self.person is None

    def sees(self, person_id: int | None) -> bool:
        """Whether a workflow of ``person_id`` (None: nobody's) is this viewer's to see."""
        return self.person is None or person_id == self.person


ADMIN = Viewer()


@dataclass(frozen=True)
class Guard:
    """Sessions and CSRF tokens; the key comes from API_TOKEN, else is made per process."""

    key: bytes
    required: bool

    @classmethod
    def for_token(cls, token: str | None) -> Guard:
        if token:
            return cls(hashlib.sha256(b"orchestrator-dashboard:" + token.encode()).digest(), True)
        return cls(secrets.token_bytes(32), False)

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, _bytes(text), hashlib.sha256).hexdigest()

    def new_session(self, person: int | None = None) -> str:
        """A session for the admin (``<expires>.<mac>``) or for ``person``
        (``<expires>.p<id>.<mac>``); the MAC signs the expiry and who."""
        expires = int(time.time()) + SESSION_SECONDS
        if person is None:
            return f"{expires}.{self._mac(f'session:{expires}')}"
        return f"{expires}.p{person}.{self._mac(f'session:{expires}:person:{person}')}"

    def session_of(self, value: str | None) -> Viewer | None:
        """Who the session ``value`` signed in (not yet checked against the
        people), or None when it is missing, malformed, forged or expired."""
        if not value or not value.isascii():
            return None
        parts = value.split(".")
        if (len(parts) not in (2, 3) or not parts[0].isdigit() or len(parts[0]) > MAX_EXPIRY_DIGITS
                or int(parts[0]) <= time.time()):
            return None
        expires, mac = parts[0], parts[-1]
        if len(parts) == 2:
            return ADMIN if same(mac, self._mac(f"session:{expires}")) else None
        who = parts[1]
        if not (who.startswith("p") and who[1:].isdigit() and len(who) <= MAX_PERSON_DIGITS + 1):
            return None
        person = int(who[1:])
        if who != f"p{person}":  # one spelling per person (no leading zeros)
            return None
        return Viewer(person) if same(mac, self._mac(f"session:{expires}:person:{person}")) else None

    def valid_session(self, value: str | None) -> bool:
        return self.session_of(value) is not None

    def signed_in(self, request: web.Request) -> bool:
        return self.valid_session(request.cookies.get(SESSION_COOKIE))

    def admin_session(self, request: web.Request) -> bool:
        """Whether the request's session cookie is the admin's (signed in with the API token)."""
        found = self.session_of(request.cookies.get(SESSION_COOKIE))
        return found is not None and found.admin

    def session_problem(self, request: web.Request) -> str:
        """Why the session cookie the request carries does not sign it in ("" when none is sent, or it does)."""
        value = request.cookies.get(SESSION_COOKIE)
        if not self.required or value is None or self.valid_session(value):
            return ""
        return "Your session cookie has expired or could not be read; sign in again."

    def csrf(self, request: web.Request) -> str:
        """Bound to a valid session; every request without one shares the anonymous token."""
        session = request.cookies.get(SESSION_COOKIE)
        return self._mac(f"csrf:{session if self.valid_session(session) else 'anonymous'}")

    def check_csrf(self, request: web.Request, given: str | None) -> bool:
        return bool(given) and same(str(given), self.csrf(request))

    async def require_csrf(self, request: web.Request) -> dict[str, str]:
        """The posted form, once its CSRF token is checked (403 otherwise)."""
        form = {name: str(value) for name, value in (await request.post()).items()}
        if not self.check_csrf(request, form.get("csrf", "")):
            raise web.HTTPForbidden(reason="invalid or missing CSRF token; reload the page")
        return form

    def token_matches(self, given: str, token: str) -> bool:
        return same(given, token)


GUARD: web.AppKey[Guard] = web.AppKey("dashboard_guard", Guard)
#: Who a request is answered for, once the sign-in rule or the API's has looked (``access.py``, ``api.py``).
VIEWER: web.RequestKey[Viewer] = web.RequestKey("viewer", Viewer)
