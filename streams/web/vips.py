"""Senders who come first, marked on the dashboard: ``/vips`` lists them
(and VIP_SENDERS, which only the settings change), adds and removes them;
a workflow's page marks its sender (docs/design.md, "Senders who come first").

A pattern has the syntax of SKIP_SENDERS (``handlers/senders.py``). Marking
moves the sender's open emails up at once, and every later email of theirs
starts VIP (``streams/storage/intake.py``); unmarking moves down those no
pattern names any more. Both are CSRF-checked posts, answered 303.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from handlers.senders import parse_patterns, read_vip_pattern
from streams.storage import vips
from streams.web.appkeys import DIRECTORY, REPO, SETTINGS
from streams.web.guard import GUARD, local_path
from streams.web.pages import render

#: What the page says after a post (``?done=...``): fixed words, so nothing a client puts in the URL is shown back.
DONE: Final = {
    "added": "Marked VIP: this sender's drafts now come first, those waiting included.",
    "already": "That pattern was marked already.",
    "removed": "No longer VIP: drafts from it wait their turn again.",
    "absent": "That pattern was not marked (removed meanwhile?).",
}


async def vips_page(request: web.Request, problem: str = "", status: int = 200) -> web.Response:
    repo, settings = request.app[REPO], request.app[SETTINGS]
    async with repo.transaction() as tx:
        marked = await vips.marked(tx)
    return render(request, "vips.html", "VIP senders", status=status, marked=marked,
                  configured=parse_patterns(settings.vip_senders), problem=problem,
                  done=DONE.get(request.query.get("done", ""), ""))


async def add_vip(request: web.Request) -> web.StreamResponse:
    """Mark the posted ``pattern``; back to ``next`` (a page of this site) or to ``/vips``."""
    form = await request.app[GUARD].require_csrf(request)
    try:
        pattern = read_vip_pattern(form.get("pattern", ""))
    except ValueError as refused:
        return await vips_page(request, problem=str(refused), status=400)
    async with request.app[REPO].transaction() as tx:
        moved = await vips.mark(tx, pattern)
    if form.get("next"):
        raise web.HTTPSeeOther(local_path(form.get("next")))
    raise web.HTTPSeeOther(f"/vips?done={'already' if moved is None else 'added'}")


async def remove_vip(request: web.Request) -> web.StreamResponse:
    """Unmark the posted ``pattern``; back to ``/vips``."""
    form = await request.app[GUARD].require_csrf(request)
    kept = parse_patterns(request.app[SETTINGS].vip_senders)
    directory = request.app.get(DIRECTORY)
    kept_by = await directory.vips() if directory is not None else None  # a person's own VIP_SENDERS keep theirs
    async with request.app[REPO].transaction() as tx:
        moved = await vips.unmark(tx, form.get("pattern", ""), kept, kept_by)
    raise web.HTTPSeeOther(f"/vips?done={'absent' if moved is None else 'removed'}")


ROUTES = [
    web.get("/vips", vips_page),
    web.post("/vips/add", add_vip),
    web.post("/vips/remove", remove_vip),
]
