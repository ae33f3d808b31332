"""A newer email of a thread supersedes the older one's draft, end to end:
the real worker, Kafka and PostgreSQL, the stand-in generator and gateway
(docs/design.md, "A newer email supersedes")."""

from __future__ import annotations

import asyncio

from tests.support.harness import Pipeline


async def test_a_newer_email_of_the_thread_supersedes_the_draft_on_the_phone(pipeline: Pipeline) -> None:
    first = await pipeline.new_email(from_address="John Smith <john@example.com>", subject="Meeting?",
                                     body_text="Can we meet on Tuesday at 2pm?\n\nJohn")
    await pipeline.reaches(first, "awaiting_user")
    [row] = await pipeline.query("SELECT draft_code FROM workflow_state WHERE message_id = %s", first)
    code = row["draft_code"]
    assert code
    await pipeline.sms_count(1)

    second = await pipeline.new_email(from_address="John Smith <john@example.com>", subject="Re: Meeting?",
                                      body_text="Or Wednesday, if Tuesday is taken.", in_reply_to=first)
    await pipeline.reaches(first, "superseded")
    await pipeline.reaches(second, "awaiting_user")  # the phone was freed: the newer draft is presented
    texts = await pipeline.sms_count(3)
    assert f"{code} (John Smith: Meeting?) closed: a newer email in the thread came; its draft answers both." \
        in texts[1:]
    [presented] = [t for t in texts[1:] if "closed:" not in t]
    assert presented.startswith("John Smith: Re: Meeting?") and "Draft: Revised draft 2" in presented

    # The newer draft was written with the earlier email in view.
    [call] = pipeline.ai.for_email(second)
    context = call["context_instructions"]
    assert 'Earlier email from John Smith <john@example.com>, subject "Meeting?":' in context
    assert "Can we meet on Tuesday at 2pm? John" in context
    assert len(pipeline.ai.for_email(first)) == 1  # the older one is not drafted again

    assert await pipeline.email_status(first) == "ignored"
    [audit] = await pipeline.query("SELECT transition_reason FROM workflow_audit_log WHERE message_id = %s"
                                   " AND to_state = 'superseded'", first)
    assert audit["transition_reason"] == f"superseded by a newer email in the thread: {second}"
    [old] = await pipeline.query("SELECT draft_code, superseded_by FROM workflow_state WHERE message_id = %s",
                                 first)
    assert old == {"draft_code": None, "superseded_by": second}
    await pipeline.emails(0)  # nothing was sent


async def test_an_email_of_another_thread_leaves_the_draft_on_the_phone(pipeline: Pipeline) -> None:
    first = await pipeline.new_email(subject="Meeting?")
    await pipeline.reaches(first, "awaiting_user")
    second = await pipeline.new_email(subject="Invoice", in_reply_to="<someone-else@mail.example>")
    for _ in range(300):  # drafted (texted or waiting for the phone): at most 30 s
        if ("ai_generating", "ai_generated") in await pipeline.trail(second):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{second} was not drafted")
    assert await pipeline.state(first) == "awaiting_user"
    assert "context_instructions" not in pipeline.ai.for_email(second)[0]
    assert not [t for t in pipeline.sms.messages if "closed:" in t]
