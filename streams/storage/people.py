"""People (docs/design.md, "Many people"): the ``people`` rows, their mailbox
addresses (``person_addresses``), the counts the admin page shows, and the
dashboard's sign-in codes (``sign_in_codes``). The rules are
:mod:`handlers.people`; passwords arrive here already encrypted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import psycopg

from handlers.clock import Clock
from handlers.people import PersonRow
from handlers.workflow import AWAITING_STATES, IN_PROGRESS_STATES, TERMINAL_STATES, WorkflowState, names
from streams.storage.base import Connection, Pool, one

#: The advisory lock class under which one person's sign-in codes are made (pg_advisory_xact_lock).
SIGN_IN_LOCK = 0x0E4A17
_COLUMNS = tuple(f.name for f in fields(PersonRow) if f.name not in ("id", "addresses"))


class PersonTaken(Exception):
    """A phone or an address already belongs to someone; the message says which."""


def _row(row: Mapping[str, Any], addresses: Sequence[str]) -> PersonRow:
    values = {name: row[name] for name in _COLUMNS}
    return PersonRow(id=row["id"], addresses=tuple(addresses), **values)


class PeopleStore:
    """The people, over a connection pool (each method its own transaction)."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def _read(self, conn: Connection, where: str = "", params: Sequence[Any] = ()) -> list[PersonRow]:
        cur = await conn.execute("SELECT * FROM people " + where + " ORDER BY id", params)
        rows = await cur.fetchall()
        cur = await conn.execute("SELECT address, person_id FROM person_addresses WHERE person_id = ANY(%s)"
                                 " ORDER BY person_id, position, address", ([r["id"] for r in rows],))
        addresses: dict[int, list[str]] = {}
        for a in await cur.fetchall():
            addresses.setdefault(a["person_id"], []).append(a["address"])
        return [_row(r, addresses.get(r["id"], [])) for r in rows]

    async def everyone(self) -> list[PersonRow]:
        """Every person, in id order."""
        async with self.pool.connection() as conn:
            return await self._read(conn)

    async def version(self) -> tuple[int, datetime | None]:
        """How many people there are and when one last changed: the directory reloads when this moves."""
        async with self.pool.connection() as conn:
            row = await one(conn, "SELECT count(*) AS n, max(updated_at) AS at FROM people")
            return (int(row["n"]), row["at"]) if row else (0, None)

    async def find(self, key: str) -> PersonRow | None:
        """The person whose id, phone, address or name (exactly) is ``key``."""
        async with self.pool.connection() as conn:
            found = await self._read(
                conn, "WHERE id::text = %s OR phone = %s OR lower(name) = lower(%s)"
                " OR id IN (SELECT person_id FROM person_addresses WHERE address = lower(%s))",
                (key, key, key, key))
            return found[0] if found else None

    async def add(self, name: str, phone: str, addresses: Sequence[str], settings: Mapping[str, Any]) -> PersonRow:
        """A new person; :class:`PersonTaken` when the phone or an address is someone's."""
        columns = ["name", "phone", *settings]
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    row = await one(conn, "INSERT INTO people (" + ", ".join(columns) + ") VALUES ("
                                    + ", ".join(["%s"] * len(columns)) + ") RETURNING id",
                                    (name, phone, *settings.values()))
                    assert row is not None
                    await self._set_addresses(conn, row["id"], addresses)
            except psycopg.errors.UniqueViolation as exc:
                raise PersonTaken(await self._taken(conn, phone, addresses)) from exc
            return (await self._read(conn, "WHERE id = %s", (row["id"],)))[0]

    async def update(self, person_id: int, changes: Mapping[str, Any]) -> PersonRow | None:
        """Change fields of a person (``addresses`` replaces them all); None when gone."""
        columns = {k: v for k, v in changes.items() if k in _COLUMNS}
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    sets = "".join(f", {name} = %s" for name in columns)
                    row = await one(conn, "UPDATE people SET updated_at = %s" + sets + " WHERE id = %s RETURNING id",
                                    (self.clock.now(), *columns.values(), person_id))
                    if row is None:
                        return None
                    if "addresses" in changes:
                        await conn.execute("DELETE FROM person_addresses WHERE person_id = %s", (person_id,))
                        await self._set_addresses(conn, person_id, changes["addresses"])
            except psycopg.errors.UniqueViolation as exc:
                raise PersonTaken(await self._taken(conn, changes.get("phone"), changes.get("addresses", ()),
                                                    person_id)) from exc
            return (await self._read(conn, "WHERE id = %s", (person_id,)))[0]

    async def _set_addresses(self, conn: Connection, person_id: int, addresses: Sequence[str]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany("INSERT INTO person_addresses (address, person_id, position) VALUES (%s, %s, %s)",
                                  [(a, person_id, i) for i, a in enumerate(addresses)])

    async def _taken(self, conn: Connection, phone: str | None, addresses: Sequence[str],
                     me: int | None = None) -> str:
        """Which of ``phone`` and ``addresses`` another person holds, said plainly."""
        held = await one(conn, "SELECT name FROM people WHERE phone = %s AND id IS DISTINCT FROM %s", (phone, me))
        if held:
            return f"the phone {phone} is {held['name']}'s"
        cur = await conn.execute(
            "SELECT a.address, p.name FROM person_addresses a JOIN people p ON p.id = a.person_id"
            " WHERE a.address = ANY(%s) AND a.person_id IS DISTINCT FROM %s", (list(addresses), me))
        taken = [f"{r['address']} is {r['name']}'s" for r in await cur.fetchall()]
        return "; ".join(taken) or "a phone or address given is someone else's"

    async def remove(self, person_id: int) -> int | None:
        """Remove a person who holds no open workflow; returns 0, or how many
        open workflows keep them (nothing removed); None when there is no such person."""
        async with self.pool.connection() as conn, conn.transaction():
            row = await one(conn, "SELECT id FROM people WHERE id = %s FOR UPDATE", (person_id,))
            if row is None:
                return None
            held = await one(conn, "SELECT count(*) AS n FROM workflow_state WHERE person_id = %s"
                             " AND current_state <> ALL(%s)", (person_id, names(TERMINAL_STATES)))
            if held and held["n"]:
                return int(held["n"])
            await conn.execute("DELETE FROM people WHERE id = %s", (person_id,))
            return 0

    async def rotate_secrets(self, rotate: Callable[[int, str], str]) -> int:
        """Encrypt every stored password again with ``rotate`` ((person id,
        old token) -> new token), in one transaction with the rows locked, so a password
        set meanwhile is never overwritten; all or nothing (``rotate``
        raising writes nothing). Returns how many people's passwords."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT id, smtp_password, imap_password FROM people"
                                     " WHERE smtp_password IS NOT NULL OR imap_password IS NOT NULL"
                                     " ORDER BY id FOR UPDATE")
            rows = [(r["id"], r["smtp_password"] and rotate(r["id"], r["smtp_password"]),
                     r["imap_password"] and rotate(r["id"], r["imap_password"])) for r in await cur.fetchall()]
            async with conn.cursor() as write:
                await write.executemany("UPDATE people SET smtp_password = %s, imap_password = %s WHERE id = %s",
                                        [(smtp, imap, pid) for pid, smtp, imap in rows])
            return len(rows)

    async def counts(self) -> dict[int | None, dict[str, int]]:
        """Per person (None: nobody's): workflows awaiting an answer, in progress, and ended."""
        groups = {"awaiting": names(AWAITING_STATES), "in_progress": names(IN_PROGRESS_STATES),
                  "ended": names(TERMINAL_STATES)}
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT person_id, current_state, count(*) AS n FROM workflow_state"
                                     " GROUP BY person_id, current_state")
            out: dict[int | None, dict[str, int]] = {}
            for r in await cur.fetchall():
                mine = out.setdefault(r["person_id"], dict.fromkeys(groups, 0))
                for group, states in groups.items():
                    if r["current_state"] in states:
                        mine[group] += int(r["n"])
            return out

    async def unrouted(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest emails that belonged to nobody, for the admin."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT w.message_id, w.email_from, w.email_to, w.email_subject, w.created_at, p.mailbox"
                " FROM workflow_state w JOIN processed_emails p USING (message_id)"
                " WHERE w.current_state = %s ORDER BY w.id DESC LIMIT %s",
                (WorkflowState.UNROUTED.value, limit))
            return list(await cur.fetchall())

    # ---------------------------------------------------------------- sign-in codes

    async def new_sign_in_code(self, person_id: int, code_hash: str, ttl: float, *,
                               most: int, per: float) -> bool:
        """Keep a new sign-in code for ``person_id`` (its hash) valid for
        ``ttl`` seconds, unless ``most`` were made in the last ``per`` seconds
        (False: rate limited). Earlier unused codes stop working."""
        now = self.clock.now()
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SIGN_IN_LOCK, person_id))
            recent = await one(conn, "SELECT count(*) AS n FROM sign_in_codes WHERE person_id = %s"
                               " AND created_at > %s", (person_id, now - timedelta(seconds=per)))
            if recent and recent["n"] >= most:
                return False
            await conn.execute("UPDATE sign_in_codes SET used_at = %s WHERE person_id = %s AND used_at IS NULL",
                               (now, person_id))
            await conn.execute("INSERT INTO sign_in_codes (person_id, code_hash, created_at, expires_at)"
                               " VALUES (%s, %s, %s, %s)", (person_id, code_hash, now, now + timedelta(seconds=ttl)))
            await conn.execute("DELETE FROM sign_in_codes WHERE created_at < %s", (now - timedelta(days=1),))
            return True

    async def use_sign_in_code(self, person_id: int, matches: Any, *, attempts: int) -> bool:
        """Use ``person_id``'s newest live code if ``matches(code_hash)``;
        each wrong try counts, and a code tried ``attempts`` times is spent."""
        now = self.clock.now()
        async with self.pool.connection() as conn, conn.transaction():
            row = await one(conn, "SELECT id, code_hash, attempts FROM sign_in_codes WHERE person_id = %s"
                            " AND used_at IS NULL AND expires_at > %s ORDER BY id DESC LIMIT 1 FOR UPDATE",
                            (person_id, now))
            if row is None:
                return False
            if matches(row["code_hash"]):
                await conn.execute("UPDATE sign_in_codes SET used_at = %s WHERE id = %s", (now, row["id"]))
                return True
            spent = row["attempts"] + 1 >= attempts
            await conn.execute("UPDATE sign_in_codes SET attempts = attempts + 1,"
                               " used_at = CASE WHEN %s THEN %s ELSE used_at END WHERE id = %s",
                               (spent, now, row["id"]))
            return False
