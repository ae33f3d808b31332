"""Who is asking, and what they may see (docs/design.md, "Many people").

Every dashboard page and every API call is answered for one :class:`Viewer`:

- the admin (the API token: the dashboard's ``/signin`` or the API's bearer;
  anyone while API_TOKEN is unset, as before), who sees and manages everyone;
- a person, signed in with a code texted to their phone (``signin.py``), who
  sees only the workflows whose ``person_id`` is theirs. Another person's
  workflow is answered 404, as one that does not exist, so a person cannot
  learn which Message-IDs exist. The pages that are the whole deployment's
  (dead letters, analytics, lessons, VIP senders, people, and pages another
  package handed over) are the admin's: a person gets 403 saying so.

The middlewares here put the viewer on the request (:data:`VIEWER`); the views
read it with :func:`viewer_of`, which refuses a request that has none rather
than guess.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Middleware

from streams.storage.records import Workflow
from streams.web.appkeys import REPO, STAGES
from streams.web.guard import ADMIN, GUARD, SESSION_COOKIE, SIGN_IN_PATHS, VIEWER, Guard, Viewer, is_page

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The pages (and forms) that are the whole deployment's: the admin's alone.
ADMIN_PREFIXES = ("/dead-letters", "/analytics", "/lessons", "/vips", "/people")
ADMIN_ONLY = ("This page is the admin's: it shows the whole deployment. Sign in with the API token to see it;"
              " your own workflows are on the status page.")


async def session_viewer(request: web.Request) -> Viewer | None:
    """Who the request's session cookie signed in, a person checked to still
    be one (with their name and phone); None without a valid session, or when
    the person has been removed since."""
    found = request.app[GUARD].session_of(request.cookies.get(SESSION_COOKIE))
    if found is None or found.admin:
        return found
    stages = request.app.get(STAGES)
    person = await stages.person(found.person) if stages is not None else None
    if person is None:
        return None
    return Viewer(person.id, person.name, person.phone)


def viewer_of(request: web.Request) -> Viewer:
    """The viewer a middleware found for this request; a request without one is refused."""
    found = request.get(VIEWER)
    if not isinstance(found, Viewer):
        raise web.HTTPForbidden(reason="sign in first")
    return found


async def visible(request: web.Request, message_id: str) -> Workflow | None:
    """The workflow ``message_id`` when it exists and is the viewer's to see; else None (answer 404)."""
    wf = await request.app[REPO].get(message_id) if message_id else None
    return wf if wf is not None and viewer_of(request).sees(wf.person_id) else None


def page_middleware(guard: Guard, extra: Collection[str] = ()) -> Middleware:
    """Dashboard pages (and the ``extra`` paths of pages handed over by other
    packages) are answered for the session's viewer. Without a session, when
    API_TOKEN is set, pages redirect to /signin and forms are refused; when it
    is unset, the visitor is the admin. A person asking for an admin's page
    gets 403 with the reason."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not is_page(path, extra) or path in SIGN_IN_PATHS:
            return await handler(request)
        viewer = await session_viewer(request)
        if viewer is None:
            if guard.required:
                if request.method == "GET":
                    raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
                raise web.HTTPForbidden(reason="sign in first")
            viewer = ADMIN
        if not viewer.admin and (path.startswith(ADMIN_PREFIXES) or path in extra):
            raise web.HTTPForbidden(reason=ADMIN_ONLY)
        request[VIEWER] = viewer
        return await handler(request)

    return middleware
