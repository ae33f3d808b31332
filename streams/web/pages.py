"""How the dashboard's pages are made: Jinja2 templates (``templates/``) with
autoescaping on, rendered through aiohttp-jinja2, behind one set of headers.

Every value a template prints is HTML-escaped unless it is ``Markup`` (only
markup this code generated itself, such as the SVG charts, which escape their
own labels). The Content-Security-Policy allows only the page's own
nonce-tagged script and style; :func:`html_headers` puts it and :data:`HEADERS`
on every HTML response (the live part of a page, the draft page, another
package's pages); a template tags its own script and style with :func:`nonce`.

Other packages may add pages of their own (the demo's phone and sent mail):
they ``register`` an ``ExtraPages`` before the worker starts, with templates
that extend ``base.html``. The web layer never imports them.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from handlers.workflow import plan_retry
from streams.storage.records import Workflow
from streams.web.guard import ADMIN, GUARD, SESSION_COOKIE, VIEWER

LIVE_SECONDS = 3

HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY"}
NONCE: web.RequestKey[str] = web.RequestKey("csp_nonce", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def nonce(request: web.Request) -> str:
    """This request's CSP nonce, made on first use."""
    value = request.get(NONCE)
    if value is None:
        value = request[NONCE] = secrets.token_urlsafe(16)
    return value


def policy(request: web.Request) -> str:
    """The Content-Security-Policy of an HTML response: only this request's nonce-tagged script and style."""
    tag = f"'nonce-{nonce(request)}'"
    return (f"default-src 'none'; script-src {tag}; style-src {tag}; img-src 'self' data:; "
            f"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@web.middleware
async def html_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """:data:`HEADERS` and the CSP on every HTML response, whichever view made it."""
    response = await handler(request)
    if not response.prepared and response.content_type == "text/html":
        response.headers.update(HEADERS)
        response.headers.setdefault("Content-Security-Policy", policy(request))
    return response


@dataclass(frozen=True)
class ExtraPages:
    """Pages another package hands to the dashboard: its routes (under the
    dashboard's sign-in rule, as its own pages are), the package holding its
    templates (in a ``templates`` folder) and its header links."""

    routes: Sequence[web.RouteDef]
    package: str
    nav: Sequence[tuple[str, str]] = ()


_REGISTERED: list[ExtraPages] = []


def register(pages: ExtraPages) -> None:
    """Add pages to every web application this process attaches from now on."""
    _REGISTERED.append(pages)


def registered() -> tuple[ExtraPages, ...]:
    return tuple(_REGISTERED)


@dataclass(frozen=True)
class Chrome:
    """What every page shows around its content."""

    demo: bool
    nav: Sequence[tuple[str, str]]


CHROME: web.AppKey[Chrome] = web.AppKey("dashboard_chrome", Chrome)


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def segment(value: str) -> str:
    """``value`` as one URL path segment (a Message-ID holds ``/``, ``@``, ``<``)."""
    return quote(value, safe="")


def _blank_none(value: object) -> object:
    """A missing value (None) shows as nothing, not as "None"."""
    return "" if value is None else value


def can_retry(wf: Workflow) -> bool:
    return plan_retry(wf.current_state, wf.failed_stage, has_draft=bool(wf.ai_reply_text)) is not None


def setup(web_app: web.Application, *, demo: bool, extra: Sequence[ExtraPages] = ()) -> jinja2.Environment:
    """The template environment: the dashboard's templates first, then each extra package's."""
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("streams.web", "templates")]
    loaders += [jinja2.PackageLoader(pages.package, "templates") for pages in extra]
    web_app.middlewares.append(html_headers)
    env = aiohttp_jinja2.setup(web_app, loader=jinja2.ChoiceLoader(loaders),
                               autoescape=jinja2.select_autoescape(["html"], default=True),
                               undefined=jinja2.StrictUndefined, finalize=_blank_none, trim_blocks=True,
                               lstrip_blocks=True, default_helpers=False)
    env.filters.update(when=when, segment=segment)
    env.globals.update(can_retry=can_retry, live_seconds=LIVE_SECONDS)
    web_app[CHROME] = Chrome(demo, [link for pages in extra for link in pages.nav])
    return env


def render(request: web.Request, template: str, title: str, status: int = 200, **context: Any) -> web.Response:
    """A whole page, or only its live part for ``?partial=1`` (``base.html`` says which)."""
    guard = request.app[GUARD]
    partial = bool(request.query.get("partial"))
    session = guard.session_of(request.cookies.get(SESSION_COOKIE))
    # Which links to offer: the admin's, else a person's own (what each may read is access.py's to say).
    viewer = request.get(VIEWER) or session or ADMIN
    page = {"title": title, "partial": partial, "nonce": nonce(request), "chrome": request.app[CHROME],
            "csrf": guard.csrf(request), "admin": viewer.admin, "viewer_name": viewer.name,
            "signed_in": session is not None and (guard.required or not session.admin)}
    response = aiohttp_jinja2.render_template(template, request, page | context, status=status)
    response.headers.update(HEADERS)
    response.headers["Content-Security-Policy"] = policy(request)
    return response
