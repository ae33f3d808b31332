"""Soak: one worker under steady traffic for BENCH_SOAK_SECONDS (600), its
memory sampled all along.

    scripts/services up && eval "$(scripts/services env)" && .venv/bin/python -m bench.soak

Emails arrive at BENCH_SOAK_RATE per second; the stand-in generator takes
BENCH_SOAK_GENERATION seconds per draft; a simulated person answers each
draft as it reaches the phone (mostly 1, some 2 <edit> then 1, some 3) and
sends a stray "?" now and then. Every BENCH_SOAK_SAMPLE seconds the worker's
RSS, its CPU and the workflows finished so far are printed; at the end, the
RSS at the end of the warm-up (the first minute) and at the end, the highest,
and the slope of a least-squares line through the samples after warm-up
(MiB per 10 minutes), written to bench/SOAK.md with the machine's cores and
memory. Traffic goes only to 127.0.0.1; every loop is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.support.harness import Pipeline

from .common import pipeline, rss_mib

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "600"))
RATE = float(os.environ.get("BENCH_SOAK_RATE", "2"))
GENERATION = float(os.environ.get("BENCH_SOAK_GENERATION", "0.2"))
SAMPLE = float(os.environ.get("BENCH_SOAK_SAMPLE", "10"))
WARM_UP = 60.0
RESULTS = Path(__file__).with_name("SOAK.md")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slope_per_10_min(points: list[tuple[float, float]]) -> float:
    """MiB per 10 minutes of a least-squares line through (seconds, MiB)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 600 * sum((t - mx) * (m - my) for t, m in points) / var if var else 0.0


async def feed(p: Pipeline, stop: float) -> int:
    sent = 0
    start = time.monotonic()
    while time.monotonic() < stop:
        await p.new_email(subject=f"Soak {sent}", from_address=f"Person {sent % 97} <p{sent % 97}@example.com>")
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / RATE - time.monotonic()))
    return sent


async def person(p: Pipeline, stop: float, rng: random.Random) -> int:
    """Answer every draft that reaches the phone, in order; returns how many answers."""
    seen = answered = 0
    editing = False
    while time.monotonic() < stop + 30:
        texts = p.sms.messages
        for text in texts[seen:]:
            if "1=Send 2=Edit 3=Ignore" in text:
                if editing:
                    answer, editing = "1", False
                else:
                    answer = rng.choices(["1", "2 make it shorter", "3"], [6, 2, 2])[0]
                    editing = answer.startswith("2")
                await p.reply_sms(answer)
                answered += 1
            elif rng.random() < 0.05:
                await p.reply_sms("?")  # a stray message: answered with the help SMS
        seen = len(texts)
        if time.monotonic() > stop and not await open_workflows(p):
            break
        await asyncio.sleep(0.05)
    return answered


async def open_workflows(p: Pipeline) -> int:
    rows = await p.query("SELECT count(*) AS n FROM workflow_state WHERE current_state NOT IN"
                         " ('reply_sent', 'user_ignored', 'failed', 'timeout', 'filtered')")
    return int(rows[0]["n"])


async def main() -> None:
    rng = random.Random(20261130)
    samples: list[tuple[float, float, float, int]] = []
    async with pipeline() as (p, _):
        p.ai.delay = GENERATION
        assert p.worker.proc is not None
        pid = p.worker.proc.pid
        begin = time.monotonic()
        stop = begin + SECONDS
        feeder = asyncio.create_task(feed(p, stop))
        answering = asyncio.create_task(person(p, stop, rng))
        last_cpu, last_at = cpu_seconds(pid), begin
        print(f"{'t (s)':>6}  {'RSS MiB':>8}  {'CPU %':>6}  {'finished':>8}")
        while not answering.done():
            await asyncio.sleep(SAMPLE)
            now, cpu = time.monotonic(), cpu_seconds(pid)
            rows = await p.query("SELECT count(*) AS n FROM workflow_state WHERE current_state IN"
                                 " ('reply_sent', 'user_ignored')")
            sample = (now - begin, rss_mib(pid), 100 * (cpu - last_cpu) / (now - last_at), int(rows[0]["n"]))
            samples.append(sample)
            last_cpu, last_at = cpu, now
            print(f"{sample[0]:6.0f}  {sample[1]:8.1f}  {sample[2]:6.1f}  {sample[3]:8d}", flush=True)
        emails, answers = await feeder, await answering
        states = {r["current_state"]: int(r["n"]) for r in await p.query(
            "SELECT current_state, count(*) AS n FROM workflow_state GROUP BY 1")}
        sent_mail = len(p.smtp.messages)
    after_warm_up = [(t, m) for t, m, _, _ in samples if t >= WARM_UP]
    warm = after_warm_up[0][1] if after_warm_up else samples[0][1]
    end, high = samples[-1][1], max(m for _, m, _, _ in samples)
    slope = slope_per_10_min(after_warm_up)
    busy = [c for t, _, c, _ in samples if t >= WARM_UP]
    summary = [
        ("duration", f"{SECONDS:.0f} s of traffic, {emails} emails at {RATE:g}/s, generator {GENERATION:g} s"),
        ("answers the person sent", f"{answers}"),
        ("workflows by state at the end", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))),
        ("replies at the SMTP server", f"{sent_mail}"),
        ("worker RSS after warm-up / at the end / highest", f"{warm:.1f} / {end:.1f} / {high:.1f} MiB"),
        ("RSS trend after warm-up (least squares)", f"{slope:+.1f} MiB per 10 minutes"),
        ("worker CPU after warm-up, mean", f"{sum(busy) / len(busy):.1f} %" if busy else "n/a"),
    ]
    print()
    for name, value in summary:
        print(f"{name:<50}  {value}")
    mem_gib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1]) / 1024 / 1024
    table = "\n".join(f"| {t:.0f} | {m:.1f} | {c:.1f} | {f} |" for t, m, c, f in samples)
    RESULTS.write_text(
        f"# Soak\n\n`python -m bench.soak`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}; one worker on real "
        "Kafka and PostgreSQL on this machine, stub peers on loopback.\n\n| measure | figure |\n|---|---|\n"
        + "\n".join(f"| {name} | {value} |" for name, value in summary)
        + f"\n\n| t (s) | RSS (MiB) | CPU (%) | finished |\n|---|---|---|---|\n{table}\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
