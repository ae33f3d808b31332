"""Send later on the real worker (docs/design.md, "Send later"): a reply
scheduled for the next minute survives a SIGKILL of the worker while it
waits, and leaves exactly once, at or after its time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.harness import Pipeline

#: The reply is scheduled for the first minute boundary at least this far ahead (s),
#: so the answer, the kill and the restart all come before it; the wait is then at most 75 s.
LEAD = 15.0


def next_minute(now: datetime) -> datetime:
    """The first whole minute at least :data:`LEAD` seconds after ``now``."""
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return boundary if (boundary - now).total_seconds() >= LEAD else boundary + timedelta(minutes=1)


async def test_a_scheduled_reply_survives_a_kill_and_leaves_once_at_its_time(make_pipeline: Any) -> None:
    pipeline: Pipeline = await make_pipeline(TIMEZONE="UTC", TIMEOUT_CHECK_INTERVAL="1")
    mid = await pipeline.new_email(subject="Lunch?", from_address="Ann <ann@example.com>")
    await pipeline.sms_count(1)
    await pipeline.reaches(mid, "awaiting_user")
    [row] = await pipeline.query("SELECT draft_code FROM workflow_state WHERE message_id = %s", mid)
    code = row["draft_code"]

    at = next_minute(datetime.now(UTC))
    assert (await pipeline.reply_sms(f"1 at {at:%H:%M}")).status_code == 200
    said = await pipeline.sms_count(2)
    assert said[1] == f"{code} will be sent {at:%a %H:%M}. Reply {code} cancel to keep it."
    await pipeline.reaches(mid, "user_approved")
    [row] = await pipeline.query("SELECT send_at FROM workflow_state WHERE message_id = %s", mid)
    assert row["send_at"] == at

    pipeline.worker.stop(kill=True)  # while the reply waits for its time
    assert datetime.now(UTC) < at and pipeline.smtp.messages == []
    await asyncio.sleep(2)
    pipeline.worker.start()
    await pipeline.wait_healthy()

    [email] = await pipeline.emails(1, timeout=(at - datetime.now(UTC)).total_seconds() + 45, quiet=3)
    [arrived] = pipeline.smtp.inbox.arrived
    assert arrived >= at.timestamp(), f"sent {at.timestamp() - arrived:.1f} s early"
    assert arrived - time.time() < 60
    await pipeline.reaches(mid, "reply_sent")
    [row] = await pipeline.query("SELECT reply_message_id, send_released_at FROM workflow_state"
                                 " WHERE message_id = %s", mid)
    assert email["Message-ID"] == row["reply_message_id"] and email["In-Reply-To"] == mid
    assert row["send_released_at"] >= at
    reasons = [r["transition_reason"] for r in await pipeline.query(
        "SELECT transition_reason FROM workflow_audit_log WHERE message_id = %s ORDER BY id", mid)]
    assert reasons.count("the time it was scheduled for has come: sending the reply") == 1
    await asyncio.sleep(3)  # a few more sweeps: nothing more leaves
    assert len(pipeline.smtp.messages) == 1
