"""Two workers in one consumer group, with many slow generations in flight,
SIGKILLed at random moments while 50 workflows (arriving in waves) go through
approve, edit and ignore paths: every workflow ends where its commands lead, the SMTP server
holds exactly one email per approved workflow, no draft is texted twice, and
nothing is left half-drafted.

Seeded (CRASH_SEED) and so reproducible. The emails arrive in waves, each
followed by a kill while its drafts are being generated; later kills land at
random moments. A kill takes one worker, or now and then both at once. The person is simulated as a person behaves: they answer
the draft on their phone once, through whichever worker is up, resend an SMS
only when their gateway could not deliver it (same gateway message id, so
deduplicated), and when a workflow reports that a send's outcome is unknown
they look in the Sent folder before asking for a retry.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from typing import Any

import httpx

from standins import webhook_headers

from tests.support.harness import Pipeline, Worker

SEED = int(os.environ.get("CRASH_SEED", "20261125"))
WORKFLOWS = 50
KILLS = 10
DEADLINE = 420.0
GENERATION_SECONDS = 1.5  # long enough that kills land while many are in flight
WAVES = 5  # the emails arrive in waves, each followed by a kill while its drafts are generated

PATHS = {
    "approve": (["1"], "reply_sent"),
    "edit-approve": (["2 make it shorter", "1"], "reply_sent"),
    "ignore": (["3"], "user_ignored"),
    "edit-ignore": (["2 warmer", "3"], "user_ignored"),
}


async def test_two_workers_killed_at_random_lose_nothing_and_do_nothing_twice(make_pipeline: Any) -> None:
    rng = random.Random(SEED)
    p: Pipeline = await make_pipeline(TIMEOUT_CHECK_INTERVAL="1", POLL_INTERVAL="3",
                                      RETRY_BACKOFF_BASE="0.05", RETRY_BACKOFF_MAX="0.5")
    p.ai.delay = GENERATION_SECONDS
    workers: list[Worker] = [p.worker, p.another_worker()]
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{w.port}", timeout=10) for w in workers]
    await p.wait_healthy()
    emails = [{"subject": f"Email {i:02d}", "from_address": f"Person {i:02d} <p{i}@example.com>"}
              for i in range(WORKFLOWS)]
    ids: list[str] = []
    plan: dict[str, str] = {}
    answered: set[tuple[str, int]] = set()
    unknown_delivered: set[str] = set()
    retried: set[str] = set()
    recoveries: list[float] = []
    generating_at_kill: list[int] = []
    kills = 0
    started = time.monotonic()

    async def healthy(client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def post(path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response | None:
        """Through whichever worker answers, as a gateway or a person would retry."""
        for client in rng.sample(clients, len(clients)):
            try:
                return await client.post(path, content=body, headers=headers)
            except httpx.HTTPError:
                continue
        return None

    async def wave(n: int) -> None:
        size = WORKFLOWS // WAVES
        for mid in await p.new_emails(*emails[n * size:(n + 1) * size]):
            ids.append(mid)
            plan[mid] = rng.choice(sorted(PATHS))

    async def killer() -> None:
        """The first WAVES kills each land just after a wave of emails came in,
        while its drafts are being generated; the rest at random moments."""
        nonlocal kills
        for n in range(KILLS):
            while not all([await healthy(c) for c in clients]):
                await asyncio.sleep(0.05)
            if n < WAVES:
                await wave(n)
                await asyncio.sleep(rng.uniform(0.3, 1.0))
            else:
                await asyncio.sleep(rng.uniform(0.2, 2.5))
            victims = workers if rng.random() < 0.2 else [rng.choice(workers)]
            rows = await p.query("SELECT count(*) AS n FROM workflow_state WHERE current_state = 'ai_generating'")
            generating_at_kill.append(int(rows[0]["n"]))
            for w in victims:
                w.stop(kill=True)
            kills += 1
            down_at = time.monotonic()
            for w in victims:
                w.start()
            while not all([await healthy(c) for c in clients]):
                await asyncio.sleep(0.05)
            recoveries.append(time.monotonic() - down_at)

    async def person() -> None:
        while time.monotonic() - started < DEADLINE:
            rows = await p.query("SELECT message_id, current_state, edit_iteration, error_message"
                                 " FROM workflow_state")
            states = {r["message_id"]: r for r in rows}
            if len(ids) == WORKFLOWS and len(states) == WORKFLOWS and all(
                    r["current_state"] == PATHS[plan[m]][1] or m in unknown_delivered for m, r in states.items()):
                return
            for mid, row in states.items():
                if mid not in plan:
                    continue  # its wave is being inserted
                if row["current_state"] == "awaiting_user":
                    step = min(row["edit_iteration"], len(PATHS[plan[mid]][0]) - 1)
                    key = (mid, row["edit_iteration"])
                    if key not in answered:
                        body = json.dumps(p.webhook_body(PATHS[plan[mid]][0][step], sms_id=f"{mid}#{step}")).encode()
                        r = await post("/orchestrator/sms-response", body, webhook_headers(body, None))
                        if r is not None and r.status_code == 200:
                            answered.add(key)
                elif row["current_state"] == "failed" and "outcome" in (row["error_message"] or ""):
                    if any(m["In-Reply-To"] == mid for m in p.smtp.messages):
                        unknown_delivered.add(mid)  # it went out: nothing to do
                    elif mid not in retried:
                        r = await post(p.workflow_path(mid, "retry"))
                        if r is not None and r.status_code == 200:
                            retried.add(mid)
            await asyncio.sleep(0.1)

    try:
        await asyncio.gather(killer(), person())
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.monotonic() - started

    final = {r["message_id"]: r["current_state"] for r in await p.query(
        "SELECT message_id, current_state FROM workflow_state")}
    lost = [m for m in ids if final.get(m) != PATHS[plan[m]][1] and m not in unknown_delivered]
    per_email = Counter(m["In-Reply-To"] for m in p.smtp.messages)
    approved = {m for m in ids if PATHS[plan[m]][1] == "reply_sent"}
    duplicate_emails = sum(n - 1 for n in per_email.values() if n > 1)
    # A draft SMS is its text up to the footer: the same draft texted twice reads the same.
    drafts = Counter(s.split("\n1=Send 2=Edit 3=Ignore")[0] for s in p.sms.messages if "1=Send 2=Edit 3=Ignore" in s)
    duplicate_drafts = sum(n - 1 for n in drafts.values() if n > 1)
    cut_off = sum(1 for s in p.sms.messages if s.startswith("A restart cut off the draft"))
    half_drafted = [m for m, state in final.items() if state == "ai_generating"]
    print(f"\ncrash test (seed {SEED}, 2 workers): workflows={WORKFLOWS} kills={kills} lost={len(lost)} "
          f"duplicate_emails={duplicate_emails} duplicate_draft_sms={duplicate_drafts} cut_off_notices={cut_off} "
          f"outcome_unknown={len(unknown_delivered) + len(retried)} generating_at_kills={generating_at_kill} "
          f"recovery_s(max/mean)={max(recoveries):.1f}/{sum(recoveries) / len(recoveries):.1f} "
          f"elapsed_s={elapsed:.0f}")
    assert kills == KILLS
    assert lost == []
    assert duplicate_emails == 0
    assert set(per_email) == approved
    assert duplicate_drafts == 0, [d for d, n in drafts.items() if n > 1]
    assert half_drafted == []
    assert sum(n >= 5 for n in generating_at_kill) >= 3  # kills did land while generations were in flight


async def test_a_worker_killed_while_the_gateway_holds_the_draft_never_texts_it_twice(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(TIMEOUT_CHECK_INTERVAL="1")
    p.sms.delay = 5.0  # the gateway takes the draft SMS, then is slow to say so
    mid = await p.new_email(subject="Cut off")
    [draft] = await p.sms_count(1)
    assert draft.startswith("John Smith: Cut off") and await p.state(mid) == "sms_sending"
    p.worker.stop(kill=True)  # before the gateway's answer: whether the SMS went out is unknown
    p.sms.delay = 0.0
    p.worker.start()
    await p.wait_healthy()
    await p.reaches(mid, "awaiting_user")
    texts = await p.sms_count(2)
    assert texts[1].startswith("A restart cut off the draft reply to John Smith (Cut off); it may not have "
                               "reached you. Read it at http://127.0.0.1:")
    assert sum("1=Send 2=Edit 3=Ignore" in t for t in p.sms.messages) == 1  # the draft went out once
    [trail_reason] = [r["transition_reason"] for r in await p.query(
        "SELECT transition_reason FROM workflow_audit_log WHERE message_id = %s AND to_state = 'awaiting_user'", mid)]
    assert trail_reason.startswith("draft SMS cut off")
    page = await p.http.get(texts[1].split("Read it at ")[1].split(" and reply")[0].removeprefix(p.base_url))
    assert page.status_code == 200 and "Thanks for your email" in page.text
    assert (await p.reply_sms("1")).status_code == 200
    [email] = await p.emails(1)
    assert email["In-Reply-To"] == mid
    await p.reaches(mid, "reply_sent")
