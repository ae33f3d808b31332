"""The agents' shared message loop, without a broker: decode, outlast a
database outage, dead-letter poison and bugs, fail the workflow a bug stopped."""

from __future__ import annotations

from typing import Any

import psycopg

from handlers.clock import OffsetClock
from handlers.messages import DeadLetter, EmailPending, Publishable, SourceRecord
from handlers.workflow import Stage
from streams.kafka import topics
from streams.pipeline.consumer import MessageHandler


class Recorder:
    def __init__(self, act_errors: list[Exception] | None = None) -> None:
        self.acted: list[Any] = []
        self.sources: list[SourceRecord | None] = []
        self.calls: list[list[str]] = []
        self.act_errors = act_errors or []
        self.letters: list[DeadLetter] = []
        self.failed: list[tuple[str, Stage, str, SourceRecord | None]] = []
        self.slept: list[float] = []
        self.publish_errors: list[Exception] = []

    async def act(self, messages: Any, source: SourceRecord | None) -> None:
        self.calls.append([m.message_id for m in messages])
        self.sources.append(source)
        self.acted.extend(messages)
        if self.act_errors:
            raise self.act_errors.pop(0)

    async def publish(self, message: Publishable) -> None:
        if self.publish_errors:
            raise self.publish_errors.pop(0)
        assert isinstance(message, DeadLetter)
        self.letters.append(message)

    async def fail_unexpected(self, message_id: str, stage: Stage, error: Exception,
                              source: SourceRecord | None) -> None:
        self.failed.append((message_id, stage, str(error), source))

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def handler(self, together: bool = False) -> MessageHandler:
        return MessageHandler(Stage.DRAFT, topics.MODELS, self.act, self.publish, self.fail_unexpected,
                              OffsetClock(), sleep=self.sleep, together=together)


def pending(*ids: str) -> list[SourceRecord]:
    return [SourceRecord("emails.pending", m.encode(), EmailPending(message_id=m).to_json().encode(), 0, n)
            for n, m in enumerate(ids)]


VALID = EmailPending(message_id="<a@x>").to_json().encode()


async def test_a_message_is_decoded_and_acted_on() -> None:
    r = Recorder()
    await r.handler().handle("emails.pending", b"<a@x>", VALID)
    assert r.acted == [EmailPending(message_id="<a@x>")]
    assert r.letters == [] and r.slept == []


async def test_poison_is_dead_lettered_with_its_bytes_and_never_acted_on() -> None:
    r = Recorder()
    await r.handler().handle("emails.pending", b"k", b"{not json", partition=3, offset=41)
    await r.handler().handle("emails.pending", None, b'{"schema_version":1}')
    assert r.acted == []
    first, second = r.letters
    assert (first.value, first.key, first.kind, first.stage) == (b"{not json", b"k", "poison", "draft")
    assert first.headers("p.") == {
        "__connect.errors.topic": "p.emails.pending", "__connect.errors.partition": "3",
        "__connect.errors.offset": "41", "__connect.errors.stage": "draft", "__connect.errors.attempts": "1",
        "__connect.errors.kind": "poison", "__connect.errors.exception.class.name": "UndecodableMessage",
        "__connect.errors.exception.message": first.error_message}
    assert "message_id" in second.error_message and second.key is None


async def test_a_database_outage_is_outlasted_with_growing_waits() -> None:
    r = Recorder([psycopg.OperationalError("down")] * 6)
    await r.handler().handle("emails.pending", b"<a@x>", VALID)
    assert len(r.acted) == 7
    assert r.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert r.letters == []


async def test_a_bug_dead_letters_the_message_and_fails_its_workflow() -> None:
    r = Recorder([KeyError("surprise")])
    await r.handler().handle("emails.pending", b"<a@x>", VALID)
    [letter] = r.letters
    assert (letter.kind, letter.value, letter.key) == ("permanent", VALID, b"<a@x>")
    assert letter.error_class == "KeyError"
    assert r.failed == [("<a@x>", Stage.DRAFT, "'surprise'", SourceRecord("emails.pending", b"<a@x>", VALID))]


async def test_a_dead_letter_waits_for_the_database_too() -> None:
    r = Recorder()
    r.publish_errors = [psycopg.OperationalError("down")]
    await r.handler().handle("emails.pending", b"k", b"garbage")
    assert len(r.letters) == 1 and r.slept == [0.5]


async def test_a_batch_goes_to_a_stage_that_works_together_in_one_call() -> None:
    r = Recorder()
    await r.handler(together=True).handle_many(pending("<a@x>", "<b@x>", "<c@x>"))
    assert r.calls == [["<a@x>", "<b@x>", "<c@x>"]]
    assert r.sources == [None]  # no one record set the batch going


async def test_other_stages_get_a_batch_one_message_at_a_time_in_order() -> None:
    r = Recorder()
    await r.handler().handle_many(pending("<a@x>", "<b@x>", "<c@x>"))
    assert r.calls == [["<a@x>"], ["<b@x>"], ["<c@x>"]]
    assert r.sources == pending("<a@x>", "<b@x>", "<c@x>")  # each with the record it came from


async def test_poison_in_a_batch_is_dead_lettered_and_the_rest_acted_on_together() -> None:
    r = Recorder()
    a, b = pending("<a@x>", "<b@x>")
    await r.handler(together=True).handle_many([a, SourceRecord("emails.pending", b"k", b"{not json", 0, 7), b])
    assert r.calls == [["<a@x>", "<b@x>"]]
    [letter] = r.letters
    assert (letter.kind, letter.value, letter.offset) == ("poison", b"{not json", 7)


async def test_a_bug_in_a_batch_is_narrowed_to_its_message() -> None:
    class OnlyB(Recorder):
        async def act(self, messages: Any, source: SourceRecord | None) -> None:
            await super().act(messages, source)
            if any(m.message_id == "<b@x>" for m in messages):
                raise KeyError("b is broken")

    r = OnlyB()
    await r.handler(together=True).handle_many(pending("<a@x>", "<b@x>", "<c@x>"))
    assert r.calls == [["<a@x>", "<b@x>", "<c@x>"], ["<a@x>"], ["<b@x>"], ["<c@x>"]]
    [letter] = r.letters
    assert (letter.key, letter.offset, letter.kind) == (b"<b@x>", 1, "permanent")
    assert r.failed == [("<b@x>", Stage.DRAFT, "'b is broken'", pending("<a@x>", "<b@x>")[1])]


async def test_a_database_outage_holds_the_whole_batch_until_it_ends() -> None:
    r = Recorder([psycopg.OperationalError("down")] * 2)
    await r.handler(together=True).handle_many(pending("<a@x>", "<b@x>"))
    assert r.calls == [["<a@x>", "<b@x>"]] * 3
    assert r.slept == [0.5, 1.0] and r.letters == []


async def test_any_key_bytes_make_a_dead_letter_whose_text_any_store_takes() -> None:
    r = Recorder()
    key, value = b"\xff<a\x00b>" + b"k" * 5000, b"\x00\xfe{"
    await r.handler().handle("emails.pending", key, value)
    [letter] = r.letters
    assert (letter.key, letter.value) == (key, value)  # the bytes, as they came
    text = [letter.record_key or "", *letter.headers("p.").values()]
    assert not any("\x00" in t or len(t) > 2000 for t in text)
    assert (letter.record_key or "").startswith("\\xff<a\\x00b>k")
    for t in text:
        t.encode("utf-8")  # no lone surrogate either


async def test_a_record_that_cannot_be_dead_lettered_never_holds_the_others() -> None:
    r = Recorder()
    r.publish_errors = [ValueError("a bug in the dead-letter path")]
    a, b = pending("<a@x>", "<b@x>")
    await r.handler(together=True).handle_many([SourceRecord("emails.pending", b"k", b"{no", 0, 5), a, b])
    assert r.calls == [["<a@x>", "<b@x>"]]  # handle_many returned: the batch may be acknowledged
