"""Senders marked VIP on the dashboard (``vip_senders``), and the open
workflows their marking moves up or down (docs/design.md, "Senders who come
first").

An email's priority is decided as it is taken on (``intake.py``); marking a
sender here also moves up the emails of that sender still open, and
unmarking moves down those no pattern left names, so the queue on the phone
follows what the dashboard says at once. Each such move is audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from handlers.senders import VIP_PRIORITY, vip_pattern
from handlers.workflow import OPEN_STATES, names
from streams.storage.base import TransactionBase

#: The most open workflows one marking looks at (open drafts are a person's inbox, far fewer).
RECHECKED_AT_MOST = 10_000


@dataclass(frozen=True)
class VipSender:
    """One ``vip_senders`` row."""

    pattern: str
    added_at: datetime


async def marked(tx: TransactionBase) -> list[VipSender]:
    """Every pattern marked on the dashboard, in alphabetical order."""
    cur = await tx.conn.execute("SELECT pattern, added_at FROM vip_senders ORDER BY pattern")
    return [VipSender(row["pattern"], row["added_at"]) for row in await cur.fetchall()]


async def mark(tx: TransactionBase, pattern: str) -> list[str] | None:
    """Mark ``pattern`` (as ``handlers.senders.read_vip_pattern`` gives it);
    returns the open workflows it moved up, or None when it was marked already."""
    cur = await tx.conn.execute(
        "INSERT INTO vip_senders (pattern, added_at) VALUES (%s, %s) ON CONFLICT (pattern) DO NOTHING"
        " RETURNING pattern", (pattern, tx.clock.now()))
    if await cur.fetchone() is None:
        return None
    return await _reprioritise(tx, [pattern], raise_=True, why=f"sender marked VIP on the dashboard ({pattern})")


async def unmark(tx: TransactionBase, pattern: str, kept: Sequence[str],
                 kept_by: Mapping[int, Sequence[str]] | None = None) -> list[str] | None:
    """Unmark ``pattern``; the open workflows no pattern left names (the
    others marked, and ``kept``: VIP_SENDERS, or ``kept_by`` their person's
    own) move down, returned. None when ``pattern`` was not marked."""
    cur = await tx.conn.execute("DELETE FROM vip_senders WHERE pattern = %s RETURNING pattern", (pattern,))
    if await cur.fetchone() is None:
        return None
    left = [v.pattern for v in await marked(tx)]
    return await _reprioritise(tx, left, raise_=False, why=f"sender no longer VIP ({pattern} unmarked)",
                               kept=kept, kept_by=kept_by)


async def _reprioritise(tx: TransactionBase, patterns: Sequence[str], *, raise_: bool, why: str,
                        kept: Sequence[str] = (), kept_by: Mapping[int, Sequence[str]] | None = None) -> list[str]:
    """Raise the open workflows of normal priority ``patterns`` match, or
    lower the VIP ones none of ``patterns`` match (nor their person's own,
    ``kept_by`` else ``kept``); audited in their state."""
    cur = await tx.conn.execute(
        "SELECT message_id, email_from, current_state, person_id FROM workflow_state"
        " WHERE current_state = ANY(%s) AND priority " + ("= 0" if raise_ else "> 0") + " ORDER BY id LIMIT %s",
        (names(OPEN_STATES), RECHECKED_AT_MOST))
    moving = {row["message_id"]: row["current_state"] for row in await cur.fetchall()
              if (vip_pattern(row["email_from"] or "", [*patterns, *(kept_by or {}).get(row["person_id"], kept)])
                  is not None) is raise_}
    if not moving:
        return []
    await tx.conn.execute("UPDATE workflow_state SET priority = %s, updated_at = %s WHERE message_id = ANY(%s)",
                          (VIP_PRIORITY if raise_ else 0, tx.clock.now(), list(moving)))
    now = tx.clock.now()
    await tx._audit_many([(m, state, state, why, None, now) for m, state in moving.items()])
    return list(moving)
