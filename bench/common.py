"""What the benchmarks share: a worker with stub peers on a database and a
topic prefix of its own, percentiles, and the worker's memory."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from tests.support.harness import Pipeline, delete_topics


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


@asynccontextmanager
async def pipeline(**overrides: str) -> AsyncIterator[tuple[Pipeline, float]]:
    """A running worker (tests/support/harness.py) against KAFKA_BOOTSTRAP_SERVERS and a
    new database beside DATABASE_URL's; yields it and its start-up time (s)."""
    base = os.environ["DATABASE_URL"]
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(base)
    params["dbname"] = name
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    # The worker's own defaults where the test harness shortens them for speed.
    defaults = {"KAFKA_TOPIC_PARTITIONS": "12", "POLL_INTERVAL": "120", "TIMEOUT_CHECK_INTERVAL": "30",
                "GENERATION_LEASE": "30", "RETRY_BACKOFF_BASE": "1", "RETRY_BACKOFF_MAX": "60"}
    settings = {"LOG_LEVEL": "info"} | defaults | overrides
    p = Pipeline(psycopg.conninfo.make_conninfo("", **params), os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                 f"bench{uuid.uuid4().hex[:6]}.", tmp, **settings)
    started = time.monotonic()
    await p.start()
    try:
        yield p, time.monotonic() - started
    finally:
        for worker in (*p.others, p.worker):
            worker.stop()
        await p.http.aclose()
        await p.ai.stop()
        await p.sms.stop()
        p.smtp.stop()
        delete_topics(p.kafka, p.prefix)
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
