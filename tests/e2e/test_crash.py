"""Two workers in one consumer group, with many slow generations in flight,
SIGKILLed at random moments while 50 workflows (arriving in waves) go through
approve, edit and ignore paths: every workflow ends where its commands lead, the SMTP server
holds exactly one email per approved workflow, no email has any of its drafts
texted twice, a generation is redone only when a kill cut it off, and nothing
is left half-drafted.

Seeded (ORCH_CRASH_SEED, 20261125 unless set) and so reproducible in its
choices (not in its timing). The emails arrive in waves, each
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
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from standins import webhook_headers

from tests.support.harness import Pipeline, Worker

SEED = int(os.environ.get("ORCH_CRASH_SEED", "20261125"))
WORKFLOWS = 50
KILLS = 10
#: Bounds of their own, inside the suite's 300 s per test: the whole run, and each recovery.
DEADLINE = 240.0
RECOVERY_BOUND = 60.0
GENERATION_SECONDS = 1.5  # long enough that kills land while many are in flight
WAVES = 5  # the emails arrive in waves, each followed by a kill while its drafts are generated

PATHS = {
    "approve": (["1"], "reply_sent"),
    "edit-approve": (["2 make it shorter", "1"], "reply_sent"),
    "ignore": (["3"], "user_ignored"),
    "edit-ignore": (["2 warmer", "3"], "user_ignored"),
}
#: Alone: its figures (generations in flight at each kill, recovery time) mean
#: something only on a machine no other test shares.
pytestmark = pytest.mark.serial

DRAFT_LINE = re.compile(r"\nDraft(?: \(\d+ lessons?\))?: ")
FOOTER = "1=Send 2=Edit 3=Ignore"  # after the draft's code: "\nK7: 1=Send ..."


def drafts_of(path: str) -> int:
    """How many drafts a path has the generator write: the first, and one per edit."""
    return 1 + sum(text.startswith("2 ") for text in PATHS[path][0])


def draft_sms_per_email(texts: list[str], by_heading: dict[str, str]) -> Counter[tuple[str, str]]:
    """The draft SMS each email got, by (message_id, which draft): the first
    draft ("Thanks for your email ...") or the revised one ("Revised draft ...").
    Counted per email, not per text: a draft generated again after a kill has
    a text of its own, and texting both would still be a duplicate."""
    found: Counter[tuple[str, str]] = Counter()
    for text in texts:
        if FOOTER not in text or text.startswith("Reminder: "):
            continue
        # "\nDraft: …", or "\nDraft (2 lessons): …" once the edits taught something.
        heading, rest = DRAFT_LINE.split(text, maxsplit=1)
        found[(by_heading[heading], "revised" if rest.startswith("Revised draft") else "first")] += 1
    return found


async def bounded(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"{what} within {seconds:.0f}s"
        await asyncio.sleep(0.05)


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
    #: The workflows in ai_generating right after each kill: a superset of those whose call it cut off
    #: (another pool takes them again only once their lease lapses, GENERATION_LEASE = 6 s later).
    generating_at_kill: list[set[str]] = []
    kills = 0
    started = time.monotonic()

    async def healthy(client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def all_healthy() -> bool:
        return all([await healthy(c) for c in clients])

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
            assert time.monotonic() - started < DEADLINE, f"{KILLS} kills within {DEADLINE:.0f}s"
            await bounded(all_healthy, RECOVERY_BOUND, "both workers healthy")
            if n < WAVES:
                await wave(n)
                await asyncio.sleep(rng.uniform(0.3, 1.0))
            else:
                await asyncio.sleep(rng.uniform(0.2, 2.5))
            victims = workers if rng.random() < 0.2 else [rng.choice(workers)]
            for w in victims:
                w.stop(kill=True)
            kills += 1
            down_at = time.monotonic()
            rows = await p.query("SELECT message_id FROM workflow_state WHERE current_state = 'ai_generating'")
            generating_at_kill.append({r["message_id"] for r in rows})
            for w in victims:
                w.start()
            await bounded(all_healthy, RECOVERY_BOUND, "recovery (both workers healthy)")
            recoveries.append(time.monotonic() - down_at)

    async def person() -> None:
        while True:
            assert time.monotonic() - started < DEADLINE, f"every workflow at its end within {DEADLINE:.0f}s"
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
    # A duplicate a worker still had in hand shows up within the quiet period, not after the count.
    await p.settle(lambda: len(p.smtp.messages) + len(p.sms.messages) + len(p.ai.requests), most=10**6)

    final = {r["message_id"]: r["current_state"] for r in await p.query(
        "SELECT message_id, current_state FROM workflow_state")}
    outcome_unknown = unknown_delivered | retried
    lost = [m for m in ids if final.get(m) != PATHS[plan[m]][1] and m not in unknown_delivered]
    per_email = Counter(m["In-Reply-To"] for m in p.smtp.messages)
    approved = {m for m in ids if PATHS[plan[m]][1] == "reply_sent"}
    duplicate_emails = sum(n - 1 for n in per_email.values() if n > 1)
    by_heading = {f"Person {i:02d}: Email {i:02d}": mid for i, mid in enumerate(ids)}
    draft_sms = draft_sms_per_email(p.sms.messages, by_heading)
    texted_twice = {key: n for key, n in draft_sms.items() if n > 1}
    calls = Counter(r["email_message_id"] for r in p.ai.requests)
    # A generation is redone only when a kill cut it off (docs/design.md, "Many drafts in flight").
    redone = {m: calls[m] - drafts_of(plan[m]) for m in ids if calls[m] != drafts_of(plan[m])}
    beyond_kills = {m: n for m, n in redone.items() if n > sum(m in at for at in generating_at_kill)}
    cut_off = sum(1 for s in p.sms.messages if s.startswith("A restart cut off the draft"))
    half_drafted = [m for m, state in final.items() if state == "ai_generating"]
    at_wave_kills = [len(at) for at in generating_at_kill[:WAVES]]
    print(f"\ncrash test (seed {SEED}, 2 workers): workflows={WORKFLOWS} kills={kills} lost={len(lost)} "
          f"duplicate_emails={duplicate_emails} draft_sms_texted_twice={len(texted_twice)} "
          f"generations_redone={sum(redone.values())} cut_off_notices={cut_off} "
          f"outcome_unknown={len(outcome_unknown)} generating_at_kills={[len(a) for a in generating_at_kill]} "
          f"recovery_s(max/mean)={max(recoveries):.1f}/{sum(recoveries) / len(recoveries):.1f} "
          f"elapsed_s={elapsed:.0f}")
    assert kills == KILLS
    assert lost == []
    assert duplicate_emails == 0
    assert set(per_email) == approved
    assert texted_twice == {}
    assert beyond_kills == {}, (redone, [len(at) for at in generating_at_kill])
    assert min(redone.values(), default=0) >= 0, redone  # every draft was generated
    assert half_drafted == []
    # Each wave's kill lands while its drafts are being generated (it makes the test worth running).
    assert min(at_wave_kills) >= 5, at_wave_kills


async def test_a_worker_killed_while_the_gateway_holds_the_draft_never_texts_it_twice(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(TIMEOUT_CHECK_INTERVAL="1")
    p.sms.delay = 5.0  # the gateway takes the draft SMS, then is slow to say so
    mid = await p.new_email(subject="Cut off")
    [draft] = await p.sms_at_least(1)  # taken by the gateway, which has not answered yet
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
