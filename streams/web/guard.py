"""The dashboard's sign-in rule: sessions and CSRF tokens.

When ``API_TOKEN`` is set, the pages ask for it once (``/signin``) and keep an
HttpOnly, SameSite=Strict session cookie that never holds the token itself.
Every state-changing form carries a CSRF token bound to the session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Middleware

SESSION_COOKIE = "orchestrator_session"
SESSION_SECONDS = 12 * 3600
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The dashboard's own pages (and their forms) under its sign-in rule.
PAGE_PREFIXES = ("/workflows/", "/dead-letters", "/actions/")


def is_page(path: str, extra: Collection[str] = ()) -> bool:
    """A dashboard page, or one of the ``extra`` paths another package handed over."""
    return path == "/" or path.startswith(PAGE_PREFIXES) or path in ("/signin", "/signout") or path in extra


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
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        expires = int(time.time()) + SESSION_SECONDS
        return f"{expires}.{self._mac(f'session:{expires}')}"

    def valid_session(self, value: str | None) -> bool:
        if not value or "." not in value:
            return False
        expires, mac = value.split(".", 1)
        return (expires.isdigit() and int(expires) > time.time()
                and hmac.compare_digest(mac, self._mac(f"session:{expires}")))

    def signed_in(self, request: web.Request) -> bool:
        return self.valid_session(request.cookies.get(SESSION_COOKIE))

    def csrf(self, request: web.Request) -> str:
        return self._mac(f"csrf:{request.cookies.get(SESSION_COOKIE, 'anonymous')}")

    def check_csrf(self, request: web.Request, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(request))

    async def require_csrf(self, request: web.Request) -> dict[str, str]:
        """The posted form, once its CSRF token is checked (403 otherwise)."""
        form = {name: str(value) for name, value in (await request.post()).items()}
        if not self.check_csrf(request, form.get("csrf", "")):
            raise web.HTTPForbidden(reason="invalid or missing CSRF token; reload the page")
        return form

    def token_matches(self, given: str, token: str) -> bool:
        return hmac.compare_digest(given.encode(), token.encode())


GUARD: web.AppKey[Guard] = web.AppKey("dashboard_guard", Guard)


def sign_in_middleware(guard: Guard, extra: Collection[str] = ()) -> Middleware:
    """When API_TOKEN is set, dashboard pages (and the ``extra`` paths of pages
    handed over by other packages) need a session: pages redirect to /signin,
    forms are refused."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (guard.required and is_page(request.path, extra) and request.path not in ("/signin", "/signout")
                and not guard.signed_in(request)):
            if request.method == "GET":
                raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
            raise web.HTTPForbidden(reason="sign in first")
        return await handler(request)

    return middleware
