"""PostgreSQL access: the connection pool and the schema.

The schema lives in ``schema.sql`` at the repository root (SCHEMA_FILE may
point elsewhere); it is applied in one transaction under an advisory lock so
several workers starting at once do not race on CREATE ... IF NOT EXISTS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

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
