"""PostgreSQL access: the connection pool and the schema.

The schema lives in ``schema.sql`` at the repository root (SCHEMA_FILE may
point elsewhere); it is applied in one transaction under an advisory lock so
several workers starting at once do not race on CREATE ... IF NOT EXISTS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

#: Arbitrary, fixed: serialises schema application across processes.
SCHEMA_LOCK_ID = 0x0E4A11

DEFAULT_SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.sql"


def schema_file() -> Path:
    return Path(os.environ.get("SCHEMA_FILE", DEFAULT_SCHEMA_FILE))


async def apply_schema(conninfo: str, path: Path | None = None) -> None:
    """Apply ``schema.sql`` (idempotent). Raises :class:`psycopg.Error` on failure."""
    sql = (path or schema_file()).read_text(encoding="utf-8")
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=False) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            await conn.execute(sql.encode())  # several statements: simple query protocol


#: A connection back in the pool for longer than this is checked before it is lent again.
CHECK_IDLE_AFTER = 1.0

_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


async def _returned(conn: psycopg.AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Check a connection that sat idle (the server may have restarted since);
    one just returned is lent as it is. Checking every loan cost a round trip
    per transaction; a connection that broke in use is discarded on return anyway."""
    if time.monotonic() - _returned_at.get(conn, 0.0) > CHECK_IDLE_AFTER:
        await AsyncConnectionPool.check_connection(conn)


def create_pool(conninfo: str, max_size: int = 10) -> AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]:
    """A pool of dict-row connections; open it with ``await pool.open(wait=True)``."""
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": False},
        check=_check_if_idle,
        reset=_returned,
        # Fail fast while the database is away: views answer 503 at once and
        # agents back off and retry (PoolTimeout counts as infrastructure).
        timeout=5.0,
        name="orchestrator",
    )


async def run_on_notify(
    conninfo: str,
    channel: str | None,
    interval: float,
    work: Callable[[], Awaitable[object]],
    on_error: Callable[[str], None],
    what: str,
) -> None:
    """Call ``work`` now, after NOTIFY on ``channel``, and at least every
    ``interval`` seconds, until cancelled (with no ``channel``: every
    ``interval`` seconds only, and no listening connection).

    Notifications that arrived while ``work`` ran are taken together: one
    call covers them all (a transaction that inserts 10,000 pending emails
    notifies 10,000 times, and one poll takes them). A lost connection or a
    failing ``work`` is reported through ``on_error`` and retried after a
    second, so database outages are waited out.
    """
    while True:
        try:
            if channel is None:
                while True:
                    await work()
                    await asyncio.sleep(interval)
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
                await listener.execute(f"LISTEN {channel}".encode())
                while True:
                    await work()
                    async for _ in listener.notifies(timeout=interval, stop_after=1):
                        pass
                    async for _ in listener.notifies(timeout=0):  # and whatever else is already here
                        pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any outage: note it, back off, go on
            on_error(f"{type(exc).__name__}: {exc}")
            log.warning("%s: %s; retrying in 1s", what, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)


_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.S)
_ADDED = re.compile(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)")
_COLUMN = re.compile(r"^\s+(\w+)\s+[A-Z]", re.M)


def expected_columns(sql: str) -> dict[str, set[str]]:
    """The tables and columns ``schema.sql`` makes (CREATE TABLE and ADD COLUMN statements)."""
    tables: dict[str, set[str]] = {}
    for table, body in _TABLE.findall(sql):
        tables[table] = {c for c in _COLUMN.findall(body) if c.upper() not in ("PRIMARY", "UNIQUE", "CHECK")}
    for table, column in _ADDED.findall(sql):
        tables.setdefault(table, set()).add(column)
    return tables


async def missing_schema(conninfo: str, connect_timeout: float = 5.0) -> list[str]:
    """What ``schema.sql`` makes that the database lacks, as ``table`` or
    ``table.column`` (empty when it is all there). Raises :class:`psycopg.Error`
    when the database cannot be reached."""
    wanted = expected_columns(schema_file().read_text(encoding="utf-8"))
    async with await psycopg.AsyncConnection.connect(conninfo, connect_timeout=int(max(1, connect_timeout))) as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ANY(%s)", (list(wanted),))
        present: dict[str, set[str]] = {}
        for table, column in await cur.fetchall():
            present.setdefault(table, set()).add(column)
    missing = []
    for table, columns in wanted.items():
        if table not in present:
            missing.append(table)
        else:
            missing += [f"{table}.{c}" for c in sorted(columns - present[table])]
    return missing
