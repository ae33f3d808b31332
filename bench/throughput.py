"""Benchmark: drafting throughput with slow and instant generators, one and
two workers, pickup latency, the webhook under a steady rate, memory, and the
deployed service's behaviour simulated by configuration in the same run.

    scripts/services up && eval "$(scripts/services env)" && .venv/bin/python -m bench.throughput

The webhook's load comes from a process of its own (bench/webhook_load.py).
Each scenario runs real `orchestrator worker` processes against the local
Kafka and PostgreSQL (a database and topic prefix of its own) with the stand-in
peers of standins/ on loopback. Prints a table and writes
bench/RESULTS.md. Every loop is bounded in count and time; traffic goes only
to 127.0.0.1. Sizes can be changed with BENCH_* variables (below);
BENCH_DEPLOYED=0 leaves out the deployed-service simulation (it waits for
a 120 s sweep).

The deployed service swept ``processed_emails`` every POLL_INTERVAL (120 s),
took 5 emails per sweep and drafted them one after another. The same worker
does that with POLL_ON_NOTIFY=false, POLL_LIMIT=5 and
GENERATION_CONCURRENCY=1; emails are inserted just after a sweep, so their
pickup latency is the whole interval (arrivals spread over time would wait
half of it on average).

BENCH_BASELINE=<a checkout of another commit> runs the same scenarios with
that commit's worker in the same run (its code first on the worker's
PYTHONPATH), so both columns come from one machine at one time: figures
taken on different days or machines are not comparable. The slow-generator
scenarios then use BENCH_BASELINE_SLOW_EMAILS for the baseline (one call in
flight makes it slow).
"""

from __future__ import annotations

import asyncio
import json
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

from tests.support.factories import insert_email
from tests.support.harness import PHONE, Pipeline, eventually

from .common import pct, pipeline, rss_mib

SLOW_EMAILS = int(os.environ.get("BENCH_SLOW_EMAILS", "960"))
SLOW_SECONDS = float(os.environ.get("BENCH_SLOW_SECONDS", "2"))
BULK_EMAILS = int(os.environ.get("BENCH_BULK_EMAILS", "10000"))
DEPLOYED = os.environ.get("BENCH_DEPLOYED", "1") != "0"
DEPLOYED_EMAILS = 10
LATENCY_EMAILS = int(os.environ.get("BENCH_LATENCY_EMAILS", "100"))
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
    """Drafts per second with a generator taking SLOW_SECONDS per call, in
    steady state: between 10 % and 90 % of ``emails`` drafted (the first
    round of calls and the last, partly empty one are left out)."""
    async with pipeline(**overrides) as (p, _):
        p.ai.delay = SLOW_SECONDS
        for _ in range(workers - 1):
            p.another_worker()
        if workers > 1:
            await asyncio.sleep(8)  # let the group settle with every member
        await insert_many(p, emails)
        seen: list[tuple[float, int]] = []
        deadline = time.monotonic() + 60 + emails * SLOW_SECONDS
        while time.monotonic() < deadline:
            seen.append((time.monotonic(), await drafted(p)))
            if seen[-1][1] >= emails:
                break
            await asyncio.sleep(0.2)
        (t10, n10), (t90, n90) = (next(s for s in seen if s[1] >= emails * q) for q in (0.1, 0.9))
        return (n90 - n10) / (t90 - t10)


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
        async with await psycopg.AsyncConnection.connect(p.database) as conn:
            for i in range(LATENCY_EMAILS):
                before = len(p.ai.arrived)
                await insert_email(conn, subject=f"latency {i}", commit=False)
                start = time.monotonic()  # from the commit that makes the row visible
                await conn.commit()

                async def asked() -> bool:
                    return len(p.ai.arrived) > before

                await eventually(asked, 30, "the generator asked")
                pickup.append(p.ai.arrived[before] - start)
                await asyncio.sleep(0.05)

        total = int(WEBHOOK_RATE * WEBHOOK_SECONDS)
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.webhook_load", f"{p.base_url}/orchestrator/sms-response",
            str(WEBHOOK_RATE), str(WEBHOOK_SECONDS), PHONE, stdout=asyncio.subprocess.PIPE)
        out, _ = await load.communicate()
        sent = json.loads(out)
        latencies, failures = sent["latencies"], sent["failures"]
        rows = await p.query("SELECT count(*) AS n FROM inbound_sms WHERE sms_id LIKE 'bench-%%'")
        recorded = int(rows[0]["n"])
        assert p.worker.proc is not None
        rss = rss_mib(p.worker.proc.pid)
        return {"pickup_p50": pct(pickup, .5) * 1000, "pickup_p99": pct(pickup, .99) * 1000,
                "pickup_mean": statistics.mean(pickup) * 1000,
                "webhook_p50": pct(latencies, .5) * 1000, "webhook_p99": pct(latencies, .99) * 1000,
                "webhook_lost": total - recorded + failures, "webhook_total": total, "rss_mib": rss}


async def deployed() -> dict[str, float]:
    """The deployed service's pickup, simulated: sweeps only, every 120 s, 5
    emails per sweep, one generator call in flight (SLOW_SECONDS each).
    DEPLOYED_EMAILS go in just after a sweep; returns the drafts/s and the
    pickup latency (insert -> generator request) of the next sweep's emails."""
    async with pipeline(POLL_ON_NOTIFY="false", POLL_INTERVAL="120", POLL_LIMIT="5",
                        GENERATION_CONCURRENCY="1") as (p, _):
        p.ai.delay = SLOW_SECONDS
        await asyncio.sleep(2)  # the sweep at start has run (nothing was pending)
        loop = asyncio.get_running_loop()
        inserted = loop.time()
        await insert_many(p, DEPLOYED_EMAILS)
        await until_drafted(p, 5, 120 + 5 * SLOW_SECONDS + 60)
        done = loop.time()
        taken = int((await p.query("SELECT count(*) AS n FROM workflow_state"))[0]["n"])
        pickups = [at - inserted for at in p.ai.arrived]
        return {"deployed_rate": 5 / (done - inserted), "deployed_taken": taken,
                "deployed_pickup_p50": pct(pickups, .5) * 1000}


async def measure(emails: int, **code: str) -> dict[str, float]:
    """Every scenario with one code base (``code``: the worker's PYTHONPATH, or none)."""
    figures = {"one": await slow_generator(1, emails, **code),
               "narrow": await slow_generator(1, emails, GENERATION_CONCURRENCY="16", **code),
               "two": await slow_generator(2, emails, **code)}
    figures["bulk_seconds"], figures["bulk_rate"] = await bulk(**code)
    return figures | await latency_and_webhook(**code)


def rows(f: dict[str, float], d: dict[str, float] | None) -> list[tuple[str, str]]:
    found = [
        (f"drafts/s (steady state), generator {SLOW_SECONDS:g} s per call, one worker, default settings "
         "(GENERATION_CONCURRENCY=64)", f"{f['one']:.2f}"),
        ("drafts/s, the same with GENERATION_CONCURRENCY=16", f"{f['narrow']:.2f}"),
        ("drafts/s, two workers in one group (default settings)",
         f"{f['two']:.2f} ({f['two'] / f['one']:.2f}x one worker)"),
        (f"{BULK_EMAILS} pending emails, instant generator -> all drafted",
         f"{f['bulk_seconds']:.1f} s ({f['bulk_rate']:.0f}/s)"),
        ("email row -> generator request", f"p50 {f['pickup_p50']:.0f} ms, p99 {f['pickup_p99']:.0f} ms"),
        (f"webhook at {WEBHOOK_RATE} req/s for {WEBHOOK_SECONDS:g} s",
         f"p50 {f['webhook_p50']:.1f} ms, p99 {f['webhook_p99']:.1f} ms, lost {f['webhook_lost']:.0f}"
         f" of {f['webhook_total']:.0f}"),
        ("worker RSS after the run", f"{f['rss_mib']:.0f} MiB"),
    ]
    if d:
        found += [
            (f"deployed service, simulated (sweep every 120 s, 5 per sweep, one call in flight): drafts/s, "
             f"generator {SLOW_SECONDS:g} s per call", f"{d['deployed_rate']:.3f} ({f['one'] / d['deployed_rate']:.0f}x "
             f"less than this code's {f['one']:.1f}); {d['deployed_taken']:.0f} of {DEPLOYED_EMAILS} taken by "
             "one sweep"),
            ("deployed service, simulated: email row -> generator request, emails arriving just after a sweep",
             f"p50 {d['deployed_pickup_p50'] / 1000:.1f} s ({d['deployed_pickup_p50'] / f['pickup_p50']:.0f}x this "
             f"code's {f['pickup_p50']:.0f} ms)"),
        ]
    return found


def _commit(checkout: str) -> str:
    found = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


async def main() -> None:
    simulated = await deployed() if DEPLOYED else None
    now = rows(await measure(SLOW_EMAILS), simulated)
    before = rows(await measure(BASELINE_SLOW_EMAILS, PYTHONPATH=BASELINE), None) if BASELINE else None
    cores = os.cpu_count()
    mem_gib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1]) / 1024 / 1024
    width = max(len(name) for name, _ in now)
    header = f"{'measure':<{width}}  {'this code':<44}" + ("  baseline" if before else "")
    print("\n" + header)
    lines = []
    for i, (name, figure) in enumerate(now):
        other = before[i][1] if before and i < len(before) else ""
        print(f"{name:<{width}}  {figure:<44}  {other}")
        lines.append(f"| {name} | {figure} |" + (f" {other} |" if before else ""))
    columns = "| measure | this code |" + (" baseline |" if before else "")
    rule = "|---|---|" + ("---|" if before else "")
    baseline_note = (f" Baseline: the worker of `{BASELINE}` (commit {_commit(BASELINE)}) in the same run "
                     f"(slow-generator scenarios with {BASELINE_SLOW_EMAILS} emails)." if BASELINE else "")
    # The sections after this benchmark's (## People benchmark, ...) are other benchmarks': kept.
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    others = text[text.find("\n## "):] if "\n## " in text else ""
    RESULTS.write_text(
        f"# Throughput benchmark\n\n`python -m bench.throughput`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {cores} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}; "
        f"real Kafka and PostgreSQL on this machine, stub peers on loopback, {SLOW_EMAILS} emails in the "
        f"slow-generator scenarios.{baseline_note}\n\n{columns}\n{rule}\n" + "\n".join(lines) + "\n" + others,
        encoding="utf-8")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
