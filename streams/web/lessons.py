"""The dashboard's page of what it learned (docs/design.md, "It learns from
you"): every lesson, per sender, domain and everyone, with how often a draft
was written with it and how often the person still edited that draft; each
can be edited, switched off or on, or deleted. A change applies to the next
first draft (a draft written already keeps what it was written with).

Each form posts with the page's CSRF token (``guard.py``) and comes back to
the page (303), which names what was done in fixed words.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from handlers.lessons import LESSON_CHARS, SPECIFICITY, Lesson, Scope, normalise
from streams.web.appkeys import REPO
from streams.web.guard import GUARD
from streams.web.pages import render

PATH: Final = "/lessons"
#: What the page says after a change (``?done=<what>``): fixed words, so nothing from the URL is shown back.
DONE: Final = {"edited": "Lesson changed.", "off": "Lesson switched off: new drafts no longer carry it.",
               "on": "Lesson switched on.", "deleted": "Lesson deleted.", "gone": "That lesson is gone already."}
HEADINGS: Final = {Scope.SENDER: "For one sender", Scope.DOMAIN: "For one domain",
                   Scope.EVERYONE: "For everyone"}


def grouped(lessons: list[Lesson]) -> list[tuple[str, list[Lesson]]]:
    """The lessons under their scope's heading, a sender's first; scopes with none left out."""
    return [(HEADINGS[scope], [x for x in lessons if x.scope is scope]) for scope in SPECIFICITY
            if any(x.scope is scope for x in lessons)]


async def lessons_page(request: web.Request) -> web.Response:
    async with request.app[REPO].transaction() as tx:
        lessons = await tx.all_lessons()
    return render(request, "lessons.html", "What it learned", groups=grouped(lessons),
                  done=DONE.get(request.query.get("done", ""), ""), limit=LESSON_CHARS)


async def lesson_action(request: web.Request) -> web.StreamResponse:
    """Edit, switch off or on, or delete one lesson, then back to the page."""
    form = await request.app[GUARD].require_csrf(request)
    try:
        lesson_id = int(form.get("lesson_id", ""))
    except ValueError:
        raise web.HTTPBadRequest(reason="no lesson named") from None
    action = form.get("action", "")
    async with request.app[REPO].transaction() as tx:
        if action == "edit":
            text = " ".join(form.get("text", "").split())[:LESSON_CHARS]
            if not normalise(text):
                raise web.HTTPBadRequest(reason="a lesson needs words")
            found = await tx.update_lesson(lesson_id, text=text)
        elif action in ("off", "on"):
            found = await tx.update_lesson(lesson_id, enabled=action == "on")
        elif action == "delete":
            found = await tx.delete_lesson(lesson_id)
        else:
            raise web.HTTPBadRequest(reason="unknown action")
    done = {"edit": "edited", "delete": "deleted"}.get(action, action) if found else "gone"
    raise web.HTTPSeeOther(f"{PATH}?done={done}")


ROUTES: Final = [web.get(PATH, lessons_page), web.post(f"{PATH}/change", lesson_action)]
