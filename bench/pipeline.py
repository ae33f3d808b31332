"""Benchmark: end-to-end latencies and webhook throughput of a real worker.

    scripts/services up && eval "$(scripts/services env)" && .venv/bin/python -m bench.pipeline

Starts `orchestrator worker` against the local Kafka and PostgreSQL with stub
peers on loopback (tests/support/harness.py), then measures, with bounded loops:
  - email row committed -> draft SMS at the gateway (poller + outbox + draft + notify)
  - "1" posted to the webhook -> reply accepted by the SMTP server
(both timed by the peer's own clock of arrival: waiting for it polls every
0.1 s, which once showed up as a "fixed ~100 ms step")
  - webhook requests per second and latency (10 concurrent clients)
  - the worker's resident memory
and prints the figures. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import psycopg

from tests.support.factories import insert_email
from tests.support.harness import eventually

from .common import pct, pipeline, rss_mib

EMAILS = int(os.environ.get("BENCH_EMAILS", "30"))
WEBHOOKS = int(os.environ.get("BENCH_WEBHOOKS", "400"))


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<34} n={len(ms):<4} p50={pct(ms, .5):7.1f} ms  p95={pct(ms, .95):7.1f} ms  "
            f"max={max(ms):7.1f} ms  mean={statistics.mean(ms):7.1f} ms")


async def main() -> None:
    async with pipeline() as (p, startup):
        to_sms, to_email = [], []
        async with await psycopg.AsyncConnection.connect(p.database) as conn:
            for i in range(EMAILS):
                before = len(p.sms.sent)
                mid = await insert_email(conn, subject=f"bench {i}", commit=False)
                start = time.time()  # the row is visible from its commit
                await conn.commit()
                await p.sms_at_least(before + 1, timeout=30)
                to_sms.append(p.sms.sent_at[before].timestamp() - start)  # as the gateway saw it
                await p.reaches(mid, "awaiting_user")
                start = time.time()
                await p.reply_sms("1")
                await p.emails_at_least(i + 1, timeout=30)
                to_email.append(p.smtp.inbox.arrived[i] - start)  # as the SMTP server saw it
                await p.sms_at_least(before + 2)  # the confirmation, before the next round

        latencies: list[float] = []
        sent = 0

        async def client() -> None:
            nonlocal sent
            while sent < WEBHOOKS:
                sent += 1
                start = time.monotonic()
                r = await p.reply_sms("hello?")  # unknown command: recorded, published, help SMS
                assert r.status_code == 200
                latencies.append(time.monotonic() - start)

        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(10)))
        webhook_elapsed = time.monotonic() - start

        async def all_handled() -> bool:
            rows = await p.query("SELECT count(*) AS n FROM inbound_sms WHERE handled_at IS NULL")
            return bool(rows[0]["n"] == 0)

        await eventually(all_handled, 120, "every webhook SMS handled")
        drained = time.monotonic() - start
        assert p.worker.proc is not None
        print(f"worker start to /health 200: {startup:.1f} s")
        print(line("email committed -> draft SMS", to_sms))
        print(line("'1' posted -> email at SMTP", to_email))
        print(line("webhook request (10 clients)", latencies))
        print(f"webhook throughput: {WEBHOOKS / webhook_elapsed:.0f} req/s; all {WEBHOOKS} commands "
              f"handled by the agent after {drained:.1f} s ({WEBHOOKS / drained:.0f} commands/s incl. help SMS)")
        print(f"worker memory: {rss_mib(p.worker.proc.pid):.0f} MiB")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
