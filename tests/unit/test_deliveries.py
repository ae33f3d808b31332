"""Delivery reports: the pure decisions (handlers/deliveries.py), and the
stage that records them and presents again a draft that never reached the
phone (streams/stages/deliveries.py), on the in-memory repository. The same
paths run end to end in tests/e2e/test_delivery_reports.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers.deliveries import (
    Delivery,
    DeliveryReport,
    audit_reason,
    furthest,
    is_failed_presentation,
    moves_forward,
    read_report,
)
from handlers.messages import DraftReady, DraftUndelivered
from handlers.workflow import WorkflowState
from streams.stages import deliveries
from tests.unit.test_stages import World

S = WorkflowState
AT = datetime(2026, 11, 24, 10, 2, 7, tzinfo=UTC)


def test_each_report_event_is_read_with_its_time_and_reason() -> None:
    sent = read_report("sms:sent", "sms-1", {"sentAt": "2026-11-24T11:02:07.000+01:00", "partsCount": 1})
    assert sent == DeliveryReport("sms-1", Delivery.SENT, AT)
    failed = read_report("sms:failed", "sms-1", {"failedAt": "yesterday", "reason": "RESULT_ERROR_NO_SERVICE"})
    assert failed == DeliveryReport("sms-1", Delivery.FAILED, None, "RESULT_ERROR_NO_SERVICE")
    assert read_report("sms:delivered", "sms-1", {}) == DeliveryReport("sms-1", Delivery.DELIVERED)
    assert read_report("sms:received", "m-1", {}) is None  # not a report
    assert read_report("system:ping", None, {}) is None
    assert read_report("sms:sent", None, {"sentAt": "2026-11-24T10:00:00Z"}) is None  # says not which SMS
    long = read_report("sms:failed", "x", {"reason": "r" * 9000})
    assert long is not None and long.reason == "r" * 500


def test_a_status_only_moves_forward() -> None:
    assert moves_forward(None, Delivery.SENT) and moves_forward("sent", Delivery.DELIVERED)
    assert moves_forward("sent", Delivery.FAILED) and moves_forward("bogus", Delivery.SENT)
    assert not moves_forward("delivered", Delivery.SENT)  # reports in reverse order
    assert not moves_forward("delivered", Delivery.DELIVERED)  # a redelivery
    assert not moves_forward("delivered", Delivery.FAILED) and not moves_forward("failed", Delivery.DELIVERED)
    reports = [DeliveryReport("s", Delivery.DELIVERED, AT), DeliveryReport("s", Delivery.SENT)]
    assert furthest(reports) == reports[0] and furthest([]) is None


def test_only_a_failure_of_the_draft_on_the_phone_is_a_failed_presentation() -> None:
    failed = DeliveryReport("sms-2", Delivery.FAILED, AT, "no service")
    assert is_failed_presentation(failed, S.AWAITING_USER, "sms-2")
    assert not is_failed_presentation(failed, S.AWAITING_USER, "sms-3")  # an earlier presentation's SMS
    assert not is_failed_presentation(failed, S.USER_APPROVED, "sms-2")  # answered already
    assert not is_failed_presentation(failed, S.TIMEOUT, "sms-2")
    assert not is_failed_presentation(DeliveryReport("sms-2", Delivery.DELIVERED), S.AWAITING_USER, "sms-2")
    assert audit_reason(DeliveryReport("s", Delivery.DELIVERED, AT)) == \
        "draft delivered to the phone at 2026-11-24T10:02:07+00:00"
    assert audit_reason(failed).endswith(": no service")


@pytest.fixture
def world() -> World:
    return World(retry_park_base=60)


async def _report(world: World, report: DeliveryReport) -> deliveries.Taken:
    async with world.repo.transaction() as tx:
        return await deliveries.take_report(tx, report)


async def test_a_failed_draft_is_withdrawn_parked_and_texted_again_once(world: World) -> None:
    await world.presented("<a@x>")
    failed = DeliveryReport("sms-1", Delivery.FAILED, AT, "RESULT_ERROR_NO_SERVICE")
    assert await _report(world, failed) == deliveries.Taken("recorded", withdrawn=True)
    assert await _report(world, failed) == deliveries.Taken("duplicate")  # the gateway retried
    [handed] = world.repo.published(DraftUndelivered)
    assert (handed.message_id, handed.sms_message_id, handed.failures) == ("<a@x>", "sms-1", 1)
    await world.stages.withdraw_undelivered(handed)
    await world.stages.withdraw_undelivered(handed)  # a redelivered record
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.park_stage, wf.park_attempts) == (S.AI_GENERATED, "notify", 1)
    assert world.repo.data.phones[world.stages.phone] is None
    assert len(world.sms.texts) == 1  # nothing texted yet: it waits RETRY_PARK_BASE
    world.clock.advance(timedelta(seconds=61))
    assert await world.stages.resume_parked() == 1
    assert DraftReady(message_id="<a@x>", iteration=0) in world.repo.published(DraftReady)
    await world.stages.notify()
    assert len(world.sms.texts) == 2 and world.sms.texts[1] == world.sms.texts[0]
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.sms_message_id, wf.sms_delivery_status) == (S.AWAITING_USER, "sms-2", None)


async def test_reports_for_other_sms_and_answered_drafts_only_record(world: World) -> None:
    await world.presented("<a@x>")
    assert await _report(world, DeliveryReport("sms-unknown", Delivery.FAILED)) == deliveries.Taken("ignored")
    assert await _report(world, DeliveryReport("sms-1", Delivery.DELIVERED, AT)) == deliveries.Taken("recorded")
    assert await _report(world, DeliveryReport("sms-1", Delivery.SENT)) == deliveries.Taken("recorded")
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.sms_delivery_status, wf.sms_delivery_at) == (S.AWAITING_USER, "delivered", AT)
    await world.answer("1")
    assert await _report(world, DeliveryReport("sms-1", Delivery.FAILED)) == deliveries.Taken("recorded")
    assert world.repo.published(DraftUndelivered) == []
    assert world.state("<a@x>") is not S.AI_GENERATED


async def test_a_failure_reported_before_the_draft_id_is_recorded_is_handed_over_with_it(world: World) -> None:
    await _report(world, DeliveryReport("sms-1", Delivery.FAILED, AT, "early"))  # nobody's yet
    await world.presented("<a@x>")  # the gateway answers sms-1
    [handed] = world.repo.published(DraftUndelivered)
    assert (handed.sms_message_id, handed.reason) == ("sms-1", "early")


async def test_failures_past_the_deadline_fail_the_draft(world: World) -> None:
    await world.presented("<a@x>")
    await _report(world, DeliveryReport("sms-1", Delivery.FAILED, AT))
    [handed] = world.repo.published(DraftUndelivered)
    late = handed.model_copy(update={"first_failure_at": world.clock.now() - timedelta(days=30)})
    await world.stages.withdraw_undelivered(late)
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.failed_stage) == (S.FAILED, "notify")
