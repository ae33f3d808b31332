"""What the worker writes into a record is bounded, so its own records
always fit Kafka's default 1 MB (docs/topics.md, "Sizes")."""

from __future__ import annotations

from datetime import UTC, datetime

from handlers.messages import SMS_TEXT_LIMIT, TEXT_LIMIT, EditRequested, EmailPending, InboundSms, WorkflowEvent, printable

HUGE = "é" * 300_000  # 600 kB of UTF-8


def test_text_the_worker_writes_is_cut_to_the_limit_with_a_mark() -> None:
    edit = EditRequested(message_id="<a@x>", instructions=HUGE, iteration=1)
    assert len(edit.instructions) == TEXT_LIMIT and edit.instructions.endswith("…")
    assert EditRequested(message_id="<a@x>", instructions="shorter", iteration=1).instructions == "shorter"


def test_every_record_the_worker_writes_stays_far_below_a_megabyte() -> None:
    records = [
        EmailPending(message_id="<a@x>", from_address=HUGE, subject=HUGE, received_at=datetime.now(UTC)),
        EditRequested(message_id="<a@x>", instructions=HUGE, iteration=1),
        InboundSms(sms_id="m-1", phone_number="+15551234567", text="é" * SMS_TEXT_LIMIT),
        WorkflowEvent(message_id="<a@x>", from_state="a", to_state="b", reason=HUGE, error=HUGE,
                      at=datetime.now(UTC)),
    ]
    for record in records:
        assert len(record.to_json().encode()) < 64_000, type(record).__name__


def test_an_answer_is_carried_whole_never_cut_into_another_meaning() -> None:
    answer = "1" + " " * (SMS_TEXT_LIMIT - 1)  # cut and marked, it would read "1 …": an edit
    assert InboundSms(sms_id="m-1", phone_number="+15551234567", text=answer).text == answer


def test_printable_keeps_text_and_escapes_what_a_store_refuses() -> None:
    assert printable(b"<a@x>") == "<a@x>"
    assert printable(b"a\x00b\xff") == "a\\x00b\\xff"
    assert printable("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert printable(None) is None
    assert len(printable(b"k" * 10_000, 100) or "") == 100
