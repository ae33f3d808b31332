"""Benchmark: many people on one deployment (issue 19; docs/design.md, "Many people").

Full size, the issue's figures (about 30 minutes on 2 shared cores: each
worker sends its replies one at a time, see below):

    scripts/services up && eval "$(scripts/services env)" && \
        BENCH_BASELINE=b0bdf73 .venv/bin/python -m bench.people

A quick run (two or three minutes), which leaves bench/RESULTS.md alone:

    BENCH_PEOPLE=100 BENCH_BACKLOG=500 BENCH_FAIR_SAMPLES=10 BENCH_RESULTS=0 .venv/bin/python -m bench.people

Real ``orchestrator worker`` processes (one, then two in one consumer group)
against the local Kafka and PostgreSQL (a database and topic prefix of their
own, bench/common.py) and the stand-in peers of standins/ on 127.0.0.1 only:

1. Many people. BENCH_PEOPLE people (1000), each with a phone, one mailbox
   address and their own SMTP login on the stand-in SMTP server (the
   password encrypted under a PEOPLE_KEYS made for the run);
   BENCH_EMAILS_PER_PERSON emails each (5; ``processed_emails.mailbox`` set
   to the person's address, as a monitor serving several mailboxes writes
   it); a generator taking BENCH_GENERATOR_SECONDS (2) per draft; and a
   simulated person per phone, who answers each draft SMS ``<code> 1``
   after a random pause (BENCH_ANSWER_MIN..BENCH_ANSWER_MAX s, seeded by
   BENCH_SEED) through the gateway's webhook. Checked at the end: every
   reply sent exactly once, through its owner's SMTP login (the stand-in
   records the login), From the owner's address, To the email's sender;
   every draft texted to its owner's phone. Printed: the total time, drafts/s
   and replies/s (steady state) with one worker and with two, the ratios,
   where an answer's time goes, and every crossing or duplicate (each must be 0).

   What limits it. With PHONE_MODE=one a phone holds one draft at a time, so
   a person's drafts come one after another as they answer; generation does
   not wait for the phone. Generation is capped at GENERATION_CONCURRENCY /
   BENCH_GENERATOR_SECONDS drafts/s per worker, and GENERATION_CONCURRENCY
   itself is capped near 100: the worker's one HTTP session for all its
   peers holds at most 100 connections (aiohttp's default), so above that
   generator calls wait in the client and take the SMS gateway's
   connections from it. BENCH_GENERATION_CONCURRENCY is 90 (45 drafts/s per
   worker) for that reason. The replies, though, are sent one at a time by
   each worker's send agent (an SMTP conversation and its transactions
   each), which is what bounds the total time.
2. Fairness. One person with BENCH_BACKLOG emails (5000) and another
   person's new emails, BENCH_FAIR_SAMPLES (30) of them, one every
   BENCH_FAIR_INTERVAL s: for each, the time from its row's commit to the
   generator's receiving its request, split into intake (row -> its draft
   asked for, before the fair lease) and the rest; p50/p95/p99/max against
   the issue's target (p99 <= 2 s), and the backlog person's drafts/s
   meanwhile. BENCH_FAIR_FROM lists when the samples begin: "drain" once
   the backlog is all taken in (it waits to be drafted), "insert" as it is
   inserted (its intake runs ahead of them); both by default. The same with
   generation times spread over 1 +- BENCH_FAIR_JITTER (0.5; 0: not run): a
   fixed 2 s keeps every call in step, so slots free in waves. The
   worker's default GENERATION_CONCURRENCY unless BENCH_FAIR_CONCURRENCY is set.
3. BENCH_BASELINE=<a commit, or a checkout of one>: the fairness scenario on
   that commit's worker (a commit is extracted with ``git archive``), e.g.
   b0bdf73, the last before people: every email is the one person's, drafted
   oldest first (FIFO), so the samples wait for the backlog.
   BENCH_BASELINE_BACKLOG (default BENCH_BACKLOG) sizes it and
   BENCH_BASELINE_TIMEOUT (600 s) bounds it (samples not drafted by then are
   reported as such). Unset, no baseline runs and the output says so.

BENCH_WORKER_CODE=<a commit, or a checkout>: the workers under test run that
code (first on their PYTHONPATH) instead of this checkout's, e.g. HEAD while
the working tree is being edited. BENCH_PARTS (people,fairness) chooses what
runs. BENCH_RESULTS=0 leaves bench/RESULTS.md alone; otherwise its "People
benchmark" section is written (replaced if there is one; the rest of the
file is kept). Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

import httpx
import psycopg

from handlers.people_keys import PeopleKeys
from standins import AiGeneratorStub, webhook_body, webhook_headers

from tests.support.harness import Pipeline

from .common import pct, pipeline

PEOPLE = int(os.environ.get("BENCH_PEOPLE", "1000"))
EMAILS_PER_PERSON = int(os.environ.get("BENCH_EMAILS_PER_PERSON", "5"))
GENERATOR_SECONDS = float(os.environ.get("BENCH_GENERATOR_SECONDS", "2"))
CONCURRENCY = os.environ.get("BENCH_GENERATION_CONCURRENCY", "90")
PHONE_MODE = os.environ.get("BENCH_PHONE_MODE", "one")
ANSWER_MIN = float(os.environ.get("BENCH_ANSWER_MIN", "0.1"))
ANSWER_MAX = float(os.environ.get("BENCH_ANSWER_MAX", "1.0"))
SEED = int(os.environ.get("BENCH_SEED", "19"))
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "5000"))
FAIR_SAMPLES = int(os.environ.get("BENCH_FAIR_SAMPLES", "30"))
FAIR_INTERVAL = float(os.environ.get("BENCH_FAIR_INTERVAL", "0.5"))
FAIR_CONCURRENCY = os.environ.get("BENCH_FAIR_CONCURRENCY")
FAIR_STARTS = [s for s in os.environ.get("BENCH_FAIR_FROM", "drain,insert").split(",") if s]
FAIR_JITTER = float(os.environ.get("BENCH_FAIR_JITTER", "0.5"))
BASELINE = os.environ.get("BENCH_BASELINE")
BASELINE_BACKLOG = int(os.environ.get("BENCH_BASELINE_BACKLOG", str(BACKLOG)))
BASELINE_TIMEOUT = float(os.environ.get("BENCH_BASELINE_TIMEOUT", "600"))
WORKER_CODE = os.environ.get("BENCH_WORKER_CODE")
PARTS = set(os.environ.get("BENCH_PARTS", "people,fairness").split(","))
WRITE_RESULTS = os.environ.get("BENCH_RESULTS", "1") != "0"
#: The issue's target for a newcomer's email behind another person's backlog.
FAIR_TARGET = 2.0
#: How often a worker reads the people table again (its default): inserts wait past it.
PEOPLE_REFRESH = 5.0
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## People benchmark"
#: A draft SMS's footer: ``K7: 1=Send 2=Edit 3=Ignore`` (handlers/sms_text.py), on its own line.
FOOTER = re.compile(r"\n([A-Z][2-9]{1,3}): 1=Send 2=Edit 3=Ignore")
#: Whose email a draft SMS presents: it begins with the sender's name, ``Sender 12-3``.
SENDER = re.compile(r"^(?:VIP )?Sender (\d+)-(\d+):")


@dataclass(frozen=True)
class Someone:
    """A person of the bench: index (1..N), phone, address (= SMTP login), row id."""

    index: int
    phone: str
    address: str
    person_id: int


@dataclass(frozen=True)
class Mail:
    """An email the bench inserted: whose it is and who sent it."""

    message_id: str
    owner: int  # Someone.index
    number: int  # 1..EMAILS_PER_PERSON
    sender: str  # the sender's address (the reply's recipient)


def phone_of(i: int) -> str:
    return f"+1555{i:07d}"


async def add_people(p: Pipeline, count: int, keys: PeopleKeys | None, *, first: int = 1) -> list[Someone]:
    """``count`` people rows as ``orchestrator people add`` writes them: each
    with a phone, one address and (``keys`` given) their own login on the
    bench's SMTP server, the password encrypted; the server learns each login."""
    passwords = {f"person{i}@people.example": f"pw-{i}-{uuid.uuid4().hex[:6]}" for i in range(first, first + count)}
    async with await psycopg.AsyncConnection.connect(p.database) as conn:
        async with conn.cursor() as cur:
            async with cur.copy("COPY people (name, phone, smtp_server, smtp_port, smtp_security, smtp_login,"
                                " smtp_password) FROM STDIN") as copy:
                for i in range(first, first + count):
                    address = f"person{i}@people.example"
                    login = (("127.0.0.1", p.smtp.port, "ssl", address, keys.encrypt(passwords[address]))
                             if keys else (None, None, None, None, None))
                    await copy.write_row((f"Person {i}", phone_of(i), *login))
            await cur.execute("SELECT id, phone FROM people")
            ids = {phone: pid for pid, phone in await cur.fetchall()}
            people = [Someone(i, phone_of(i), f"person{i}@people.example", ids[phone_of(i)])
                      for i in range(first, first + count)]
            async with cur.copy("COPY person_addresses (address, person_id, position) FROM STDIN") as copy:
                for someone in people:
                    await copy.write_row((someone.address, someone.person_id, 0))
        await conn.commit()
    if keys:
        p.smtp.accounts.update(passwords)
    return people


async def insert_emails(p: Pipeline, mails: list[tuple[Mail, str | None]], *, mailbox: bool = True) -> float:
    """The emails (each with the mailbox that received it) in one
    transaction, each person's oldest first; returns the commit's monotonic time.
    ``mailbox=False``: a commit without the column (the baseline's schema), by recipients."""
    now = datetime.now(UTC)
    columns = "message_id, subject, from_address, to_addresses, received_at, status, body_text"
    async with await psycopg.AsyncConnection.connect(p.database) as conn:
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY processed_emails ({columns}{', mailbox' if mailbox else ''})"
                                " FROM STDIN") as copy:
                for n, (mail, box) in enumerate(mails):
                    row = (mail.message_id, f"Question {mail.number} for person {mail.owner}",
                           f"Sender {mail.owner}-{mail.number} <{mail.sender}>", [box or "me@example.com"],
                           now - timedelta(seconds=len(mails) - n), "pending", "Could you confirm, please?")
                    await copy.write_row((*row, box) if mailbox else row)
        await conn.commit()
    return time.monotonic()


def new_mail(owner: int, number: int, run: str) -> Mail:
    return Mail(f"<p{owner}-{number}-{run}@bench.example>", owner, number, f"s{owner}-{number}@senders.example")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, with waited-for children) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def db_stats(p: Pipeline) -> dict[str, float]:
    """The run's database so far: transactions committed, rows written, bytes stored."""
    [row] = await p.query(
        "SELECT pg_stat_force_next_flush(), xact_commit AS xacts, tup_inserted + tup_updated + tup_deleted AS rows,"
        " pg_database_size(current_database()) AS size FROM pg_stat_database WHERE datname = current_database()")
    return {k: float(row[k]) for k in ("xacts", "rows", "size")}


def steady_rate(times: list[float], total: int) -> float:
    """Events per second between the 10 % and the 90 % of ``total``
    (the first round of calls and the last, partly empty one left out)."""
    ordered = sorted(times)
    if total < 10 or len(ordered) < int(total * 0.9):
        return float("nan")
    lo, hi = ordered[int(total * 0.1)], ordered[int(total * 0.9) - 1]
    return (int(total * 0.9) - 1 - int(total * 0.1)) / (hi - lo) if hi > lo else float("nan")


# ---------------------------------------------------------------- 1. many people

@dataclass
class Phones:
    """A simulated person behind each phone: reads every SMS the gateway
    took, and answers each draft SMS ``<code> 1`` after a random pause."""

    p: Pipeline
    people: dict[str, Someone]
    rng: random.Random
    seen: int = 0
    #: phone -> the (owner, number) of each draft texted to it, in order.
    drafts: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    #: Drafts texted to a phone other than their owner's: (phone, owner, number).
    misdelivered: list[tuple[str, int, int]] = field(default_factory=list)
    #: SMS that were neither a draft nor a "Sent to" confirmation: their first words, counted.
    other: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Webhook posts that got no answer, by error.
    errors: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    #: (owner, number) -> when its answer was posted (wall clock).
    posted: dict[tuple[int, int], float] = field(default_factory=dict)
    #: phone -> when its last answer was posted; and each answer -> the next draft at the gateway (s).
    last_post: dict[str, float] = field(default_factory=dict)
    next_draft: list[float] = field(default_factory=list)

    async def watch(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            sent, at = self.p.sms.sent, self.p.sms.sent_at
            for i in range(self.seen, min(len(sent), len(at))):
                self.read(sent[i]["to"], sent[i]["message"], at[i].timestamp(), client)
                self.seen = i + 1
            await asyncio.sleep(0.02)

    def read(self, phone: str, text: str, arrived: float, client: httpx.AsyncClient) -> None:
        footer, sender = FOOTER.search(text), SENDER.match(text)
        if footer is None or sender is None:
            if not text.startswith("Sent to "):
                self.other[" ".join(text.split()[:4])] += 1
            return
        owner, number = int(sender.group(1)), int(sender.group(2))
        self.drafts.setdefault(phone, []).append((owner, number))
        if phone in self.last_post:
            self.next_draft.append(arrived - self.last_post.pop(phone))
        someone = self.people.get(phone)
        if someone is None or someone.index != owner:
            self.misdelivered.append((phone, owner, number))
        task = asyncio.get_running_loop().create_task(self.answer(client, phone, footer.group(1), (owner, number)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, client: httpx.AsyncClient, phone: str, code: str, draft: tuple[int, int]) -> None:
        await asyncio.sleep(self.rng.uniform(ANSWER_MIN, ANSWER_MAX))
        body = json.dumps(webhook_body(f"{code} 1", phone)).encode()
        self.posted[draft] = self.last_post[phone] = time.time()
        for _ in range(3):  # a refused or lost request is posted again, as the gateway retries
            try:
                r = await client.post("/orchestrator/sms-response", content=body, headers=webhook_headers(body, None))
                self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    self.answered += 1
                    return
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
            await asyncio.sleep(1)


def check_replies(messages: list[EmailMessage], logins: list[str | None], mails: dict[str, Mail],
                  owners: dict[int, Someone]) -> dict[str, int]:
    """Every reply at the SMTP server against the email it answers: counts of what is wrong."""
    sent: Counter[str] = Counter()
    wrong = Counter({"wrong login": 0, "wrong From": 0, "wrong recipient": 0, "unknown reply": 0})
    for msg, login in zip(messages, logins, strict=True):
        mail = mails.get(str(msg["In-Reply-To"] or "").strip())
        if mail is None:
            wrong["unknown reply"] += 1
            continue
        sent[mail.message_id] += 1
        owner = owners[mail.owner].address
        wrong["wrong login"] += login != owner
        wrong["wrong From"] += parseaddr(str(msg["From"]))[1].lower() != owner
        to = [a.lower() for _, a in getaddresses([str(msg["To"] or "")])]
        wrong["wrong recipient"] += to != [mail.sender]
    return dict(wrong) | {"duplicates": sum(n - 1 for n in sent.values() if n > 1),
                          "missing": sum(1 for m in mails if m not in sent), "replies": len(messages)}


async def many_people(workers: int, code: dict[str, str]) -> dict[str, Any]:
    """Scenario 1 with ``workers`` workers (``code``: their PYTHONPATH, or none)."""
    keys_text = PeopleKeys.new_key()
    total = PEOPLE * EMAILS_PER_PERSON
    async with pipeline(PEOPLE_KEYS=keys_text, PEOPLE_REFRESH=str(PEOPLE_REFRESH), PHONE_MODE=PHONE_MODE,
                        GENERATION_CONCURRENCY=CONCURRENCY, **code) as (p, _):
        p.ai.delay = GENERATOR_SECONDS
        for _ in range(workers - 1):
            p.another_worker()
        people = await add_people(p, PEOPLE, PeopleKeys(keys_text))
        # Every worker past PEOPLE_REFRESH (each reads the people again at its next look), and the group settled.
        await asyncio.sleep(max(PEOPLE_REFRESH + 1, 8 if workers > 1 else 0))
        run = uuid.uuid4().hex[:6]
        by_index = {s.index: s for s in people}
        mails = [new_mail(s.index, n, run) for n in range(1, EMAILS_PER_PERSON + 1) for s in people]
        phones = Phones(p, {s.phone: s for s in people}, random.Random(SEED))
        procs = [w.proc for w in (p.worker, *p.others) if w.proc is not None]
        cpu_before = [cpu_seconds(pr.pid) for pr in procs]
        db_before = await db_stats(p)
        bench_cpu = time.process_time()
        wall_start = time.time()
        start = await insert_emails(p, [(m, by_index[m.owner].address) for m in mails])
        # Generous: the replies go out one at a time per worker (see the rows "approved -> sent").
        deadline = start + 300 + total * (GENERATOR_SECONDS / int(CONCURRENCY) * 4 + 0.2) + EMAILS_PER_PERSON * 30
        async with httpx.AsyncClient(base_url=p.base_url, timeout=60,
                                     limits=httpx.Limits(max_connections=50)) as client:
            watcher = asyncio.create_task(phones.watch(client, deadline + 30))
            try:
                while time.monotonic() < deadline and len(p.smtp.messages) < total:
                    if watcher.done():
                        watcher.result()
                    await asyncio.sleep(0.2)
                end = time.monotonic()
                last_reply = max(p.smtp.inbox.arrived, default=wall_start)
                await p.settle(lambda: len(p.smtp.messages), total, quiet=3, timeout=60)  # duplicates show
            finally:
                watcher.cancel()
                for task in list(phones.tasks):
                    task.cancel()
                await asyncio.gather(watcher, *phones.tasks, return_exceptions=True)
        worker_cpu = sum(cpu_seconds(pr.pid) - b for pr, b in zip(procs, cpu_before, strict=True))
        bench_cpu = time.process_time() - bench_cpu
        await asyncio.sleep(11)  # an idle backend flushes its counters to pg_stat_database within 10 s
        db = {k: v - db_before[k] for k, v in (await db_stats(p)).items()}
        states = {r["current_state"]: int(r["n"]) for r in await p.query(
            "SELECT current_state, count(*) AS n FROM workflow_state GROUP BY current_state")}
        with p.smtp.inbox.lock:
            messages, logins = list(p.smtp.inbox.messages), list(p.smtp.inbox.logins)
        checked = check_replies(messages, logins, {m.message_id: m for m in mails}, by_index)
        by_id = {m.message_id: (m.owner, m.number) for m in mails}
        # Where an answer's time goes: posted -> approved (webhook, relay, command agent) -> sent (send agent).
        audited = await p.query("SELECT message_id, to_state, min(created_at) AS at FROM workflow_audit_log"
                                " WHERE to_state IN ('user_approved', 'reply_sent') GROUP BY message_id, to_state")
        moved = {(r["message_id"], r["to_state"]): r["at"].timestamp() for r in audited}
        to_approved = [moved[(mid, "user_approved")] - phones.posted[d] for mid, d in by_id.items()
                       if (mid, "user_approved") in moved and d in phones.posted]
        approved_to_sent = [moved[(mid, "reply_sent")] - moved[(mid, "user_approved")] for mid in by_id
                            if (mid, "user_approved") in moved and (mid, "reply_sent") in moved]
        to_reply = [at - phones.posted[by_id[mid]] for msg, at in zip(messages, p.smtp.inbox.arrived, strict=False)
                    if (mid := str(msg["In-Reply-To"] or "").strip()) in by_id and by_id[mid] in phones.posted]
        drafted = [t for t, status in p.ai.answered if status == 200]
        elapsed = end - start
        per_phone = Counter(len(d) for d in phones.drafts.values())
        problems = p.problems()
        return {
            "workers": workers, "total": total, "elapsed": elapsed, "all_sent_after": last_reply - wall_start,
            "draft_rate": steady_rate(drafted, total), "reply_rate": steady_rate(p.smtp.inbox.arrived, total),
            "generated": len(drafted), "generator_calls": len(p.ai.requests), "max_in_flight": p.ai.max_in_flight,
            "answered": phones.answered, "statuses": dict(phones.statuses), "post_errors": dict(phones.errors),
            "misdelivered": len(phones.misdelivered), "drafts_per_phone": dict(sorted(per_phone.items())),
            "other_sms": dict(phones.other.most_common(5)), "states": states, "to_reply": to_reply,
            "next_draft": phones.next_draft, "to_approved": to_approved, "approved_to_sent": approved_to_sent,
            "worker_cpu": worker_cpu, "bench_cpu": bench_cpu, "db": db, "log_problems": problems[:5],
            "log_problem_count": len(problems)} | checked


# ---------------------------------------------------------------- 2. fairness

class TimedGenerator(AiGeneratorStub):
    """The stand-in generator, noting when each email's first request was read
    (loop time, i.e. time.monotonic()), each call taking ``seconds`` times a
    factor drawn from 1 +- ``jitter`` (0: exactly ``seconds``)."""

    def __init__(self, seconds: float, jitter: float, seed: int) -> None:
        super().__init__()
        self.seconds, self.jitter, self.rng = seconds, jitter, random.Random(seed)
        self.asked: dict[str, float] = {}

    async def _answer(self, body: dict[str, Any]) -> Any:
        self.asked.setdefault(body["email_message_id"], asyncio.get_running_loop().time())
        await asyncio.sleep(self.seconds * self.rng.uniform(1 - self.jitter, 1 + self.jitter))
        return await super()._answer(body)


async def fairness(backlog: int, code: dict[str, str], *, start: str = "drain", jitter: float = 0.0,
                   baseline: str | None = None) -> dict[str, Any]:
    """One person's ``backlog`` waiting, another's new emails meanwhile:
    each sample's row commit -> the generator's request. ``code``: the
    workers' PYTHONPATH, or none; ``start``: the samples begin once the
    backlog is taken in ("drain") or as it is inserted ("insert");
    ``jitter``: the generator's calls spread over GENERATOR_SECONDS * (1 +-
    jitter); ``baseline``: a checkout whose worker knows no people (every
    email the one person's)."""
    generator = TimedGenerator(GENERATOR_SECONDS, jitter, SEED)
    await generator.start()
    overrides = {"PYTHONPATH": baseline} if baseline else dict(code)
    overrides["AI_REPLY_GENERATOR_URL"] = generator.url
    if FAIR_CONCURRENCY:
        overrides["GENERATION_CONCURRENCY"] = FAIR_CONCURRENCY
    timeout = BASELINE_TIMEOUT if baseline else 120.0
    try:
        return await _fairness(backlog, overrides, generator, timeout, baseline is not None, start)
    finally:
        await generator.stop()


async def _fairness(backlog: int, overrides: dict[str, str], generator: TimedGenerator, timeout: float,
                    baseline: bool, start: str) -> dict[str, Any]:
    async with pipeline(**overrides) as (p, _):
        run = uuid.uuid4().hex[:6]
        if baseline:
            heavy = light = None
        else:
            heavy, light = await add_people(p, 2, None)
            await asyncio.sleep(PEOPLE_REFRESH + 1)
        backlog_mails = [new_mail(1, n, run) for n in range(1, backlog + 1)]
        started = await insert_emails(p, [(m, heavy.address if heavy else None) for m in backlog_mails],
                                      mailbox=not baseline)
        taken_in = None
        if start != "insert":  # until every backlog email waits to be drafted (none still being taken in)
            deadline = time.monotonic() + 60 + backlog / 20
            while time.monotonic() < deadline:
                rows = await p.query("SELECT count(*) AS n FROM workflow_state WHERE current_state <> 'pending'")
                if int(rows[0]["n"]) >= backlog:
                    taken_in = time.monotonic() - started
                    break
                await asyncio.sleep(0.2)
        rows = await p.query("SELECT count(*) AS n FROM workflow_state WHERE current_state IN"
                             " ('pending', 'ai_generating')")
        waiting = int(rows[0]["n"])  # the backlog not drafted yet as the samples begin
        committed: dict[str, float] = {}
        wall: dict[str, float] = {}  # the same commits by the wall clock, to compare with the audit log's
        for n in range(1, FAIR_SAMPLES + 1):
            mail = new_mail(2, n, run)
            committed[mail.message_id] = await insert_emails(p, [(mail, light.address if light else None)],
                                                             mailbox=not baseline)
            wall[mail.message_id] = time.time()
            await asyncio.sleep(FAIR_INTERVAL)
        asked = generator.asked
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(m in asked for m in committed):
            await asyncio.sleep(0.1)
        waits = [asked[m] - at for m, at in committed.items() if m in asked]
        # Where the wait was: the row -> its draft asked for (in ai_generating, intake) -> leased and asked.
        queued = {r["message_id"]: r["at"].timestamp() for r in await p.query(
            "SELECT message_id, min(created_at) AS at FROM workflow_audit_log WHERE to_state = 'ai_generating'"
            " AND message_id = ANY(%s) GROUP BY message_id", list(committed))}
        intake = [queued[m] - at for m, at in wall.items() if m in queued]
        window = (min(committed.values()), max(committed.values()) + FAIR_INTERVAL)
        backlog_ids = {m.message_id for m in backlog_mails}
        in_window = sum(1 for m, at in list(asked.items()) if m in backlog_ids and window[0] <= at <= window[1])
        return {"waits": waits, "intake": intake, "waiting": waiting, "missing": len(committed) - len(waits), "taken_in": taken_in,
                "backlog_rate": in_window / (window[1] - window[0]), "backlog": backlog,
                "backlog_drafted": sum(1 for m in list(asked) if m in backlog_ids), "timeout": timeout,
                "jitter": generator.jitter, "start": start, "max_in_flight": generator.max_in_flight}


def baseline_checkout(where: str) -> tuple[str, str]:
    """A directory holding the code of a commit (the baseline's, the workers'), and the commit: ``where`` itself
    when it is a directory, else the commit extracted with ``git archive`` (read only)."""
    if Path(where).is_dir():
        found = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return where, found.stdout.strip() or "unknown"
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", where], capture_output=True,
                            text=True, check=True).stdout.strip()
    target = Path(tempfile.mkdtemp(prefix=f"bench-baseline-{commit}-"))
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return str(target), commit


# ---------------------------------------------------------------- printing

def brief(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` to print as they are: long lists as their percentiles."""
    return {k: (spread(v) if isinstance(v, list) and len(v) > 40 else
                [round(x, 3) for x in v] if isinstance(v, list) and v and isinstance(v[0], float) else v)
            for k, v in figures.items()}


def spread(values: list[float]) -> str:
    if not values:
        return "none measured"
    return (f"p50 {pct(values, .5):.2f} s, p95 {pct(values, .95):.2f} s, p99 {pct(values, .99):.2f} s, "
            f"max {max(values):.2f} s (n={len(values)})")


def people_rows(one: dict[str, Any], two: dict[str, Any] | None) -> list[tuple[str, str]]:
    def wrong(f: dict[str, Any]) -> str:
        return (f"duplicates {f['duplicates']}, missing {f['missing']}, wrong login {f['wrong login']}, "
                f"wrong From {f['wrong From']}, wrong recipient {f['wrong recipient']}, unknown replies "
                f"{f['unknown reply']}, drafts texted to another's phone {f['misdelivered']}")

    cap = int(CONCURRENCY) / GENERATOR_SECONDS
    out = []
    for f in (one, two):
        if f is None:
            continue
        w = f"{f['workers']} worker{'s' if f['workers'] > 1 else ''}"
        out += [
            (f"{w}: {f['total']} emails -> all replies at the SMTP server",
             f"{f['all_sent_after']:.1f} s ({f['replies']} replies of {f['total']})"),
            (f"{w}: drafts/s (steady state, 10-90 %; cap {cap:.0f}/s per worker)", f"{f['draft_rate']:.1f}"),
            (f"{w}: replies sent/s (steady state)", f"{f['reply_rate']:.1f}"),
            (f"{w}: answer posted -> reply at the SMTP server", spread(f["to_reply"])),
            (f"{w}: of which answer posted -> approved (webhook, relay, command agent)", spread(f["to_approved"])),
            (f"{w}: of which approved -> sent (send agent, SMTP)", spread(f["approved_to_sent"])),
            (f"{w}: answer posted -> the person's next draft at the gateway (PHONE_MODE={PHONE_MODE})",
             spread(f["next_draft"])),
            (f"{w}: crossings and duplicates (each must be 0)", wrong(f)),
            (f"{w}: CPU seconds (workers / bench process with its stand-ins and {PEOPLE} simulated people)",
             f"{f['worker_cpu']:.0f} / {f['bench_cpu']:.0f} in {f['elapsed']:.0f} s wall"),
            (f"{w}: PostgreSQL per email (the whole workflow, monitor's row to reply sent)",
             f"{f['db']['xacts'] / f['total']:.1f} transactions, {f['db']['rows'] / f['total']:.1f} rows written,"
             f" {f['db']['size'] / f['total'] / 1024:.1f} KiB stored"),
            (f"{w}: worker CPU per email", f"{f['worker_cpu'] / f['total'] * 1000:.0f} ms"),
        ]
    if two is not None:
        out.append(("drafts/s, two workers / one worker", f"{two['draft_rate'] / one['draft_rate']:.2f}x"))
        out.append(("replies sent/s, two workers / one worker", f"{two['reply_rate'] / one['reply_rate']:.2f}x"))
    return out


def fair_rows(f: dict[str, Any], name: str) -> list[tuple[str, str]]:
    waits = f["waits"]
    if not waits:
        return [(f"{name}: newcomer's email -> generator request", f"none reached the generator within "
                 f"{f['timeout']:.0f} s")]
    p99 = pct(waits, .99)
    verdict = "meets" if p99 <= FAIR_TARGET and not f["missing"] else "misses"
    missing = f", {f['missing']} not drafted within {f['timeout']:.0f} s" if f["missing"] else ""
    taken = (f"; samples from {f['taken_in']:.1f} s after the backlog's insert, when it was all taken in"
             if f["taken_in"] is not None else "; samples from the backlog's insert on")
    taken += f"; {f['waiting']} of the backlog not yet drafted as the samples began"
    return [
        (f"{name}: newcomer's email -> generator request ({len(waits)} samples, backlog {f['backlog']})",
         f"p50 {pct(waits, .5):.2f} s, p95 {pct(waits, .95):.2f} s, p99 {p99:.2f} s, max {max(waits):.2f} s"
         f"{missing} ({verdict} the target p99 <= {FAIR_TARGET:g} s)"),
        (f"{name}: of which the newcomer's email row -> its draft asked for (intake, before the fair lease)",
         spread(f["intake"])),
        (f"{name}: backlog person's drafts/s meanwhile",
         f"{f['backlog_rate']:.1f} ({f['backlog_drafted']} of {f['backlog']} drafted by the end{taken})"),
    ]


def settings_line() -> str:
    fair_c = FAIR_CONCURRENCY or "64 (the worker's default)"
    return (f"BENCH_PEOPLE={PEOPLE}, BENCH_EMAILS_PER_PERSON={EMAILS_PER_PERSON}, generator "
            f"{GENERATOR_SECONDS:g} s per draft, PHONE_MODE={PHONE_MODE}, GENERATION_CONCURRENCY={CONCURRENCY} "
            f"(people) / {fair_c} (fairness), answers after {ANSWER_MIN:g}-{ANSWER_MAX:g} s (seed {SEED}), "
            f"KAFKA_TOPIC_PARTITIONS=12, PEOPLE_REFRESH={PEOPLE_REFRESH:g}; fairness: BENCH_BACKLOG={BACKLOG}, "
            f"BENCH_FAIR_SAMPLES={FAIR_SAMPLES} every {FAIR_INTERVAL:g} s, BENCH_FAIR_FROM={','.join(FAIR_STARTS)}")


def write_results(rows: list[tuple[str, str]], notes: list[str]) -> None:
    cores = os.cpu_count()
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    before, _, after = text.partition(SECTION)
    rest = after[after.find("\n#"):] if after and "\n#" in after else ""
    section = (f"{SECTION}\n\n`python -m bench.people`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
               f"{platform.machine()}, {cores} cores, Python {platform.python_version()}; real Kafka and "
               f"PostgreSQL on this machine, stand-in peers and the simulated people in the bench's process, on "
               f"loopback. {settings_line()}.\n\n| measure | figure |\n|---|---|\n"
               + "\n".join(f"| {name} | {figure} |" for name, figure in rows) + "\n"
               + "".join(f"\n{note}\n" for note in notes))
    RESULTS.write_text(before.rstrip("\n") + "\n\n" + section + rest, encoding="utf-8")


async def main() -> None:
    print(f"settings: {settings_line()}", flush=True)
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    code: dict[str, str] = {}
    if WORKER_CODE:
        checkout, commit = baseline_checkout(WORKER_CODE)
        code = {"PYTHONPATH": checkout}
        notes.append(f"The workers ran the code of commit {commit} (BENCH_WORKER_CODE={WORKER_CODE}).")
        print(f"workers run {checkout} (commit {commit})", flush=True)
    if "people" in PARTS:
        one = await many_people(1, code)
        print(f"one worker: {brief(one)}", flush=True)
        two = await many_people(2, code)
        print(f"two workers: {brief(two)}", flush=True)
        rows += people_rows(one, two)
        for f in (one, two):
            if f["log_problem_count"]:
                notes.append(f"{f['workers']} worker(s): {f['log_problem_count']} ERROR/traceback log entries, "
                             f"first: {f['log_problems'][:1]}")
    if "fairness" in PARTS:
        for start in FAIR_STARTS:
            fair = await fairness(BACKLOG, code, start=start)
            print(f"fairness ({start}): {brief(fair)}", flush=True)
            when = "once the backlog is taken in" if start == "drain" else "from the backlog's insert"
            rows += fair_rows(fair, f"this code, generator {GENERATOR_SECONDS:g} s, samples {when}")
        if FAIR_JITTER:
            spread_out = await fairness(BACKLOG, code, jitter=FAIR_JITTER)
            print(f"fairness, generator times spread: {brief(spread_out)}", flush=True)
            rows += fair_rows(spread_out, f"this code, generator {GENERATOR_SECONDS * (1 - FAIR_JITTER):g}-"
                              f"{GENERATOR_SECONDS * (1 + FAIR_JITTER):g} s (uniform), samples once the backlog "
                              "is taken in")
        if BASELINE:
            checkout, commit = baseline_checkout(BASELINE)
            before = await fairness(BASELINE_BACKLOG, code, baseline=checkout)
            print(f"baseline: {brief(before)}", flush=True)
            rows += fair_rows(before, f"baseline {commit} (no people: FIFO), generator {GENERATOR_SECONDS:g} s")
        else:
            notes.append("No baseline was run (BENCH_BASELINE unset). Before people, every email is the one "
                         "person's and drafts are taken oldest first (FIFO): an email behind a backlog waits "
                         "for the whole backlog (BENCH_BASELINE=<commit> measures it).")
    width = max(len(name) for name, _ in rows)
    print()
    for name, figure in rows:
        print(f"{name:<{width}}  {figure}")
    for note in notes:
        print(f"note: {note}")
    if WRITE_RESULTS:
        write_results(rows, notes)
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
