"""Benchmark: drafting throughput with slow and instant generators, one and
two workers, pickup latency, the webhook under a steady rate, memory.

    scripts/services up && eval "$(scripts/services env)" && .venv/bin/python -m bench.throughput

Each scenario runs real `orchestrator worker` processes against the local
Kafka and PostgreSQL (a database and topic prefix of its own) with the stand-in
peers of standins/ on loopback. Prints a table and writes
bench/RESULTS.md. Every loop is bounded in count and time; traffic goes only
to 127.0.0.1. Sizes can be changed with BENCH_* variables (below).

BENCH_BASELINE=<a checkout of another commit> runs the same scenarios with
that commit's worker in the same run (its code first on the worker's
PYTHONPATH), so both columns come from one machine at one time: figures
taken on different days or machines are not comparable. The slow-generator
scenarios then use BENCH_BASELINE_SLOW_EMAILS for the baseline (one call in
flight makes it slow).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from tests.harness import Pipeline, eventually

from .common import pct, pipeline, rss_mib

SLOW_EMAILS = int(os.environ.get("BENCH_SLOW_EMAILS", "240"))
SLOW_SECONDS = float(os.environ.get("BENCH_SLOW_SECONDS", "2"))
BULK_EMAILS = int(os.environ.get("BENCH_BULK_EMAILS", "2000"))
LATENCY_EMAILS = int(os.environ.get("BENCH_LATENCY_EMAILS", "40"))
WEBHOOK_RATE = int(os.environ.get("BENCH_WEBHOOK_RATE", "200"))
WEBHOOK_SECONDS = float(os.environ.get("BENCH_WEBHOOK_SECONDS", "10"))
BASELINE = os.environ.get("BENCH_BASELINE")
BASELINE_SLOW_EMAILS = int(os.environ.get("BENCH_BASELINE_SLOW_EMAILS", "24"))
RESULTS = Path(__file__).with_name("RESULTS.md")


async def insert_many(p: Pipeline, n: int) -> float:
    """``n`` pending emails in one transaction; returns when they were committed."""
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(p.database) as conn:
        async with conn.cursor() as cur:
            async with cur.copy("COPY processed_emails (message_id, subject, from_address, to_addresses,"
                                " received_at, status, body_text) FROM STDIN") as copy:
                for i in range(n):
                    await copy.write_row((f"<bench-{i}-{uuid.uuid4().hex[:8]}@mail.example>", f"Email {i}",
                                          f"Person {i} <p{i}@example.com>", ["me@example.com"],
                                          now - timedelta(seconds=n - i), "pending", "Hello there"))
        await conn.commit()
    return time.monotonic()


async def drafted(p: Pipeline) -> int:
    rows = await p.query("SELECT count(*) AS n FROM workflow_state WHERE current_state NOT IN"
                         " ('pending', 'ai_generating')")
    return int(rows[0]["n"])


async def until_drafted(p: Pipeline, n: int, timeout: float) -> float:
    async def done() -> bool:
        return await drafted(p) >= n

    await eventually(done, timeout, f"{n} drafts")
    return time.monotonic()


async def slow_generator(workers: int, emails: int = SLOW_EMAILS, **overrides: str) -> float:
    """Drafts per second with a generator taking SLOW_SECONDS per call."""
    async with pipeline(**overrides) as (p, _):
        p.ai.delay = SLOW_SECONDS
        for _ in range(workers - 1):
            p.another_worker()
        if workers > 1:
            await asyncio.sleep(8)  # let the group settle with every member
        start = await insert_many(p, emails)
        end = await until_drafted(p, emails, 60 + emails * SLOW_SECONDS)
        return emails / (end - start)


async def bulk(**overrides: str) -> tuple[float, float]:
    """BULK_EMAILS pending at once, instant generator: seconds until all drafted, and drafts/s."""
    async with pipeline(**overrides) as (p, _):
        start = await insert_many(p, BULK_EMAILS)
        end = await until_drafted(p, BULK_EMAILS, 600)
        return end - start, BULK_EMAILS / (end - start)


async def latency_and_webhook(**overrides: str) -> dict[str, float]:
    """Email row -> generator request (one at a time), the webhook at a steady
    rate, and the worker's memory afterwards."""
    async with pipeline(**overrides) as (p, _):
        pickup = []
        for i in range(LATENCY_EMAILS):
            before = len(p.ai.arrived)
            start = time.monotonic()
            await p.new_email(subject=f"latency {i}")

            async def asked() -> bool:
                return len(p.ai.arrived) > before

            await eventually(asked, 30, "the generator asked")
            pickup.append(p.ai.arrived[before] - start)
            await asyncio.sleep(0.05)

        latencies: list[float] = []
        failures = 0
        total = int(WEBHOOK_RATE * WEBHOOK_SECONDS)

        async def one(i: int) -> None:
            nonlocal failures
            start = time.monotonic()
            try:
                r = await p.reply_sms(f"hello {i}?", sms_id=f"bench-{i}")
                if r.status_code != 200:
                    failures += 1
            except Exception:  # noqa: BLE001 - counted as lost
                failures += 1
            latencies.append(time.monotonic() - start)

        tasks = []
        begin = time.monotonic()
        for i in range(total):  # paced: one request every 1/RATE seconds
            await asyncio.sleep(max(0.0, begin + i / WEBHOOK_RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        rows = await p.query("SELECT count(*) AS n FROM inbound_sms WHERE sms_id LIKE 'bench-%%'")
        recorded = int(rows[0]["n"])
        assert p.worker.proc is not None
        rss = rss_mib(p.worker.proc.pid)
        return {"pickup_p50": pct(pickup, .5) * 1000, "pickup_p99": pct(pickup, .99) * 1000,
                "pickup_mean": statistics.mean(pickup) * 1000,
                "webhook_p50": pct(latencies, .5) * 1000, "webhook_p99": pct(latencies, .99) * 1000,
                "webhook_lost": total - recorded + failures, "webhook_total": total, "rss_mib": rss}


async def measure(emails: int, **code: str) -> dict[str, float]:
    """Every scenario with one code base (``code``: the worker's PYTHONPATH, or none)."""
    figures = {"one": await slow_generator(1, emails, **code),
               "wide": await slow_generator(1, emails, GENERATION_CONCURRENCY="48", **code),
               "two": await slow_generator(2, emails, **code)}
    figures["bulk_seconds"], figures["bulk_rate"] = await bulk(**code)
    return figures | await latency_and_webhook(**code)


def rows(f: dict[str, float]) -> list[tuple[str, str]]:
    return [
        (f"drafts/s, generator {SLOW_SECONDS:g} s per call, one worker, GENERATION_CONCURRENCY=16 (default)",
         f"{f['one']:.2f}"),
        ("drafts/s, the same with GENERATION_CONCURRENCY=48", f"{f['wide']:.2f}"),
        ("drafts/s, two workers in one group (default concurrency)",
         f"{f['two']:.2f} ({f['two'] / f['one']:.2f}x one worker)"),
        (f"{BULK_EMAILS} pending emails, instant generator -> all drafted",
         f"{f['bulk_seconds']:.1f} s ({f['bulk_rate']:.0f}/s)"),
        ("email row -> generator request", f"p50 {f['pickup_p50']:.0f} ms, p99 {f['pickup_p99']:.0f} ms"),
        (f"webhook at {WEBHOOK_RATE} req/s for {WEBHOOK_SECONDS:g} s",
         f"p50 {f['webhook_p50']:.1f} ms, p99 {f['webhook_p99']:.1f} ms, lost {f['webhook_lost']:.0f}"
         f" of {f['webhook_total']:.0f}"),
        ("worker RSS after the run", f"{f['rss_mib']:.0f} MiB"),
    ]


def _commit(checkout: str) -> str:
    found = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


async def main() -> None:
    now = rows(await measure(SLOW_EMAILS))
    before = rows(await measure(BASELINE_SLOW_EMAILS, PYTHONPATH=BASELINE)) if BASELINE else None
    cores = os.cpu_count()
    mem_gib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1]) / 1024 / 1024
    width = max(len(name) for name, _ in now)
    header = f"{'measure':<{width}}  {'this code':<44}" + ("  baseline" if before else "")
    print("\n" + header)
    lines = []
    for i, (name, figure) in enumerate(now):
        other = before[i][1] if before else ""
        print(f"{name:<{width}}  {figure:<44}  {other}")
        lines.append(f"| {name} | {figure} |" + (f" {other} |" if before else ""))
    columns = "| measure | this code |" + (" baseline |" if before else "")
    rule = "|---|---|" + ("---|" if before else "")
    baseline_note = (f" Baseline: the worker of `{BASELINE}` (commit {_commit(BASELINE)}) in the same run "
                     f"(slow-generator scenarios with {BASELINE_SLOW_EMAILS} emails)." if BASELINE else "")
    RESULTS.write_text(
        f"# Throughput benchmark\n\n`python -m bench.throughput`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {cores} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}; "
        f"real Kafka and PostgreSQL on this machine, stub peers on loopback, {SLOW_EMAILS} emails in the "
        f"slow-generator scenarios.{baseline_note}\n\n{columns}\n{rule}\n" + "\n".join(lines) + "\n",
        encoding="utf-8")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
