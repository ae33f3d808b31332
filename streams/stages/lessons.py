"""Lessons: what the person taught by editing, remembered for later drafts
(docs/design.md, "It learns from you").

Three moments: a decision (an edit's instruction, a reply written by hand)
is kept as evidence and may complete a lesson (:func:`learn`); a draft is
written with the lessons that apply to its sender (:func:`for_draft`, the
draft stage); ``remember …`` and ``forget`` change them (:func:`answer`).
The rules are :mod:`handlers.lessons`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from handlers.commands import Command, CommandKind
from handlers.emails import sender_name
from handlers.lessons import (
    LESSON_CHARS,
    NO_DRAFT_TO_REMEMBER_SMS,
    Learnt,
    Lesson,
    Scope,
    Thresholds,
    applicable,
    evidence,
    hand_instruction,
    known_lesson,
    learnt_from,
    lessons_block,
    render_forgot_sms,
    render_remembered_sms,
    sender_and_domain,
)
from handlers.sms_text import HELP_SMS, NOTHING_WAITING_SMS
from handlers.workflow import WorkflowState
from streams.settings import Settings
from streams.stages.context import StageContext
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState
log = logging.getLogger(__name__)

#: Instructions the rules look back over (the most recent ones): enough for
#: months of edits, bounded so that learning stays quick.
EVIDENCE_WINDOW = 2_000


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(sender=settings.lesson_sender_min, domain=settings.lesson_domain_min,
                      everyone=settings.lesson_everyone_min)


def taught(target: WorkflowState | None, fields: Mapping[str, Any]) -> tuple[str, str] | None:
    """What a decision that moved a draft to ``target`` setting ``fields``
    teaches: (instruction, kind), or None (an approval, an ignore)."""
    if target is S.USER_EDIT_REQUESTED and fields.get("user_edit_instructions"):
        return str(fields["user_edit_instructions"]), "edit"
    history = fields.get("edit_history") or []
    if target is S.USER_APPROVED and history and history[-1].get("by") == "hand":
        instruction = hand_instruction(str(history[-1].get("draft") or ""))
        return (instruction, "hand") if instruction else ("", "hand")
    return None


async def learn(ctx: StageContext, tx: RepositoryTransaction, wf: Workflow, target: WorkflowState | None,
                fields: Mapping[str, Any]) -> None:
    """After a decision on ``wf`` (in its transaction): an edit's instruction,
    or a reply written by hand, is kept as evidence with the sender, and may
    complete a lesson; a draft written with lessons that the person still
    edits counts against them (once per email)."""
    found = taught(target, fields)
    if found is None or wf.email_from is None:
        return
    instruction, kind = found
    if wf.lesson_ids and wf.edit_iteration == 0:
        await tx.count_lesson_use(wf.lesson_ids, "times_edited_after")
    given = evidence(wf.message_id, wf.email_from, instruction) if instruction else None
    if given is None or not await tx.add_lesson_evidence(given, "hand" if kind == "hand" else "edit",
                                                         person=ctx.person_id):
        return
    recent = await tx.recent_lesson_evidence(EVIDENCE_WINDOW, person=ctx.person_id)
    learnt = learnt_from(given, recent, thresholds(ctx.settings))
    if learnt is None or known_lesson(await tx.lessons_for(given.sender, given.domain, person=ctx.person_id), learnt):
        return
    lesson_id = await tx.save_lesson(learnt, "learnt", person=ctx.person_id)
    log.info("learnt lesson %d for %s %s: %r", lesson_id, learnt.scope.value, learnt.key or "", learnt.text)


async def for_draft(ctx: StageContext, wf: Workflow, *, is_edit: bool) -> tuple[list[int], str | None]:
    """The lessons ``wf``'s draft is written with, and the block of
    ``context_instructions`` that carries them (None: none). A first draft
    takes those that apply to its sender now; an edit keeps those its first
    draft had, unless switched off since (so an edit loses none)."""
    if wf.email_from is None:
        return [], None
    async with ctx.repo.transaction() as tx:
        if is_edit:
            chosen = [lesson for lesson in await tx.lessons_by_id(wf.lesson_ids or []) if lesson.enabled]
        else:
            sender, domain = sender_and_domain(wf.email_from)
            chosen = applicable(await tx.lessons_for(sender, domain, person=ctx.person_id), sender, domain)
    return [lesson.id for lesson in chosen], lessons_block([lesson.text for lesson in chosen])


async def applied(tx: RepositoryTransaction, lesson_ids: Sequence[int]) -> None:
    """A first draft was written with ``lesson_ids``: each was applied once more."""
    await tx.count_lesson_use(lesson_ids, "times_applied")


async def answer(ctx: StageContext, tx: RepositoryTransaction, cmd: Command,
                 wf: Workflow | None) -> tuple[str, str | None]:
    """``remember …`` and ``forget`` for the draft ``wf`` (the one the answer
    names, or the latest); returns the outcome to record and the SMS to text."""
    if cmd.kind is CommandKind.FORGET:
        return await _forget(tx, wf)
    if cmd.kind is CommandKind.REMEMBER and cmd.instructions:
        if not cmd.everyone and (wf is None or wf.email_from is None):
            return "no_sender", NO_DRAFT_TO_REMEMBER_SMS
        return await _remember(tx, cmd.instructions, None if cmd.everyone else wf, ctx.person_id)
    return "help", HELP_SMS


async def _forget(tx: RepositoryTransaction, wf: Workflow | None) -> tuple[str, str | None]:
    """Switch off the lessons behind ``wf``'s draft; the SMS names them."""
    if wf is None:
        return "nothing_waiting", NOTHING_WAITING_SMS
    behind = await tx.lessons_by_id(wf.lesson_ids or [])
    for lesson in behind:
        if lesson.enabled:
            await tx.update_lesson(lesson.id, enabled=False)
    if behind:
        log.info("lessons %s switched off by forget on %s", [lesson.id for lesson in behind], wf.message_id)
    return ("forgot" if behind else "nothing_to_forget"), render_forgot_sms([lesson.text for lesson in behind])


async def _remember(tx: RepositoryTransaction, text: str, wf: Workflow | None, person: int) -> tuple[str, str | None]:
    """A lesson of ``person``'s at once: for ``wf``'s sender, or for everyone when ``wf`` is None;
    its blanks normalised and cut to :data:`LESSON_CHARS`, like any lesson
    (it is sent in every request for its sender), and the SMS says so if cut."""
    text = " ".join(text.split())
    cut = len(text) > LESSON_CHARS
    text = text[:LESSON_CHARS].rstrip()
    if wf is None or wf.email_from is None:
        learnt, who = Learnt(Scope.EVERYONE, None, text), None
        known = await tx.lessons_for("", "", person=person)
    else:
        sender, domain = sender_and_domain(wf.email_from)
        learnt, who = Learnt(Scope.SENDER, sender, text), sender_name(wf.email_from)
        known = await tx.lessons_for(sender, domain, person=person)
    same: Lesson | None = known_lesson(known, learnt)
    if same is not None:
        await tx.update_lesson(same.id, text=text, enabled=True)
    else:
        await tx.save_lesson(learnt, "remembered", person=person)
    return "remembered", render_remembered_sms(text, who, cut=cut)
