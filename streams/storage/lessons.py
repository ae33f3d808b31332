"""Lessons: the evidence (``lesson_evidence``: every instruction given for
an email, with its sender and domain) and the lessons learnt from it or
remembered (``lessons``), with how often each was applied and how often the
person still edited afterwards (docs/design.md, "It learns from you"). The
rules are :mod:`handlers.lessons`; this is their SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

from psycopg import sql

from handlers.lessons import Evidence, Learnt, Lesson, Scope
from streams.storage.base import TransactionBase

#: The counters of a lesson: drafts written with it, and of those, drafts the person still edited.
LessonCounter = Literal["times_applied", "times_edited_after"]


def _lesson(row: Mapping[str, Any]) -> Lesson:
    return Lesson(id=row["id"], scope=Scope(row["scope"]), key=row["key"], text=row["text"],
                  enabled=row["enabled"], source=row["source"], times_applied=row["times_applied"],
                  times_edited_after=row["times_edited_after"])


class LessonStore(TransactionBase):
    """Evidence in, lessons out; the dashboard's edits of them."""

    async def add_lesson_evidence(self, evidence: Evidence, kind: Literal["edit", "hand"] = "edit", *,
                                  person: int = 0) -> bool:
        """Keep one instruction ``person`` gave for one email; False when that
        email already has it (a redelivered answer)."""
        cur = await self.conn.execute(
            "INSERT INTO lesson_evidence (message_id, sender, domain, kind, instruction, normalised, at, person_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (message_id, normalised) DO NOTHING",
            (evidence.message_id, evidence.sender, evidence.domain, kind, evidence.text, evidence.normalised,
             self.clock.now(), person))
        return cur.rowcount == 1

    async def recent_lesson_evidence(self, limit: int, *, person: int = 0) -> list[Evidence]:
        """The last ``limit`` instructions ``person`` gave, newest first."""
        cur = await self.conn.execute(
            "SELECT message_id, sender, domain, instruction, normalised FROM lesson_evidence"
            " WHERE person_id = %s ORDER BY id DESC LIMIT %s", (person, limit))
        return [Evidence(r["message_id"], r["sender"], r["domain"], r["instruction"], r["normalised"])
                for r in await cur.fetchall()]

    async def lessons_for(self, sender: str, domain: str, *, person: int = 0) -> list[Lesson]:
        """Every lesson of ``person``, on or off, for ``sender``, for ``domain`` or for everyone, oldest first."""
        cur = await self.conn.execute(
            "SELECT * FROM lessons WHERE person_id = %s AND (scope = %s OR (scope = %s AND key = %s)"
            " OR (scope = %s AND key = %s)) ORDER BY id",
            (person, Scope.EVERYONE.value, Scope.SENDER.value, sender, Scope.DOMAIN.value, domain))
        return [_lesson(r) for r in await cur.fetchall()]

    async def all_lessons(self, person: int | None = None) -> list[Lesson]:
        """Every lesson (the dashboard's page), ``person``'s alone when given, by scope, key and age."""
        cur = await self.conn.execute("SELECT * FROM lessons WHERE %s::int IS NULL OR person_id = %s"
                                      " ORDER BY scope, key NULLS FIRST, id", (person, person))
        return [_lesson(r) for r in await cur.fetchall()]

    async def lessons_by_id(self, ids: Collection[int]) -> list[Lesson]:
        """The lessons of ``ids`` that still exist, on or off, in id order."""
        if not ids:
            return []
        cur = await self.conn.execute("SELECT * FROM lessons WHERE id = ANY(%s) ORDER BY id", (list(ids),))
        return [_lesson(r) for r in await cur.fetchall()]

    async def save_lesson(self, learnt: Learnt, source: Literal["learnt", "remembered"], *, person: int = 0) -> int:
        """A new lesson of ``person``'s, switched on; returns its id."""
        now = self.clock.now()
        cur = await self.conn.execute(
            "INSERT INTO lessons (scope, key, text, source, created_at, updated_at, person_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (learnt.scope.value, learnt.key, learnt.text, source, now, now, person))
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def update_lesson(self, lesson_id: int, *, text: str | None = None, enabled: bool | None = None) -> bool:
        """Change a lesson's text or switch it on or off; False when it is gone."""
        cur = await self.conn.execute(
            "UPDATE lessons SET text = COALESCE(%s, text), enabled = COALESCE(%s, enabled), updated_at = %s"
            " WHERE id = %s", (text, enabled, self.clock.now(), lesson_id))
        return cur.rowcount == 1

    async def delete_lesson(self, lesson_id: int) -> bool:
        """Remove a lesson (its evidence stays: given again, it may be learnt again)."""
        cur = await self.conn.execute("DELETE FROM lessons WHERE id = %s", (lesson_id,))
        return cur.rowcount == 1

    async def count_lesson_use(self, lesson_ids: Collection[int], counter: LessonCounter) -> None:
        """Add one to ``counter`` of each lesson of ``lesson_ids``."""
        if not lesson_ids:
            return
        await self.conn.execute(
            sql.SQL("UPDATE lessons SET {c} = {c} + 1 WHERE id = ANY(%s)").format(c=sql.Identifier(counter)),
            (sorted(set(lesson_ids)),))
