"""PostgreSQL access: the connection pool and the schema.

The schema lives in ``schema.sql`` at the repository root (SCHEMA_FILE may
point elsewhere); it is applied in one transaction under an advisory lock so
several workers starting at once do not race on CREATE ... IF NOT EXISTS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

#: Arbitrary, fixed: serialises schema application across processes.
SCHEMA_LOCK_ID = 0x0E4A11

DEFAULT_SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.sql"


def schema_file() -> Path:
    return Path(os.environ.get("SCHEMA_FILE", DEFAULT_SCHEMA_FILE))


async def apply_schema(conninfo: str, path: Path | None = None) -> None:
    """Apply ``schema.sql`` (idempotent). Raises :class:`psycopg.Error` on failure."""
    sql = (path or schema_file()).read_text(encoding="utf-8")
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=False) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            await conn.execute(sql.encode())  # several statements: simple query protocol


def create_pool(conninfo: str, max_size: int = 10) -> AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]:
    """A pool of dict-row connections; open it with ``await pool.open(wait=True)``."""
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": False},
        check=AsyncConnectionPool.check_connection,
        # Fail fast while the database is away: views answer 503 at once and
        # agents back off and retry (PoolTimeout counts as infrastructure).
        timeout=5.0,
        name="orchestrator",
    )


async def run_on_notify(
    conninfo: str,
    channel: str,
    interval: float,
    work: Callable[[], Awaitable[object]],
    on_error: Callable[[str], None],
    what: str,
) -> None:
    """Call ``work`` now, on every NOTIFY on ``channel``, and at least every
    ``interval`` seconds, until cancelled.

    A lost connection or a failing ``work`` is reported through ``on_error``
    and retried after a second, so database outages are waited out.
    """
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
                await listener.execute(f"LISTEN {channel}".encode())
                while True:
                    await work()
                    async for _ in listener.notifies(timeout=interval, stop_after=1):
                        pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any outage: note it, back off, go on
            on_error(f"{type(exc).__name__}: {exc}")
            log.warning("%s: %s; retrying in 1s", what, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)
