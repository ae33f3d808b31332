"""Peers that misbehave, in milliseconds: a ``Retry-After`` of any size or
none at all (nan, inf) waits at most RETRY_AFTER_MAX, an informational SMS
never holds its caller past one attempt, and an answer written before its
draft was texted is not applied (the same paths end to end are in
tests/e2e/test_hostile_peers.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from multidict import CIMultiDict

from handlers.clock import OffsetClock
from handlers.errors import TransientError
from handlers.messages import InboundSms
from handlers.workflow import WorkflowState
from streams.peers.http import PeerResponse, retry_after
from streams.settings import Settings
from streams.stages import Stages
from streams.stages.retrying import Gate

from tests.support.factories import draft_request
from tests.support.fakes import FakeGenerator, FakeMail, FakeRepository, FakeSms

S = WorkflowState
PHONE = "+15551234567"


def answer_with(value: str) -> PeerResponse:
    return PeerResponse(429, CIMultiDict({"Retry-After": value}), b"")


@pytest.mark.parametrize(("header", "expected"), [
    ("1e9", 300.0), ("inf", None), ("-inf", None), ("nan", None), ("-3", None), ("9" * 400, None),
    ("soon", None), ("12", 12.0), ("0", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date gone by: try now
    (format_datetime(datetime(9000, 1, 1, tzinfo=UTC), usegmt=True), 300.0),
])
def test_retry_after_is_bounded_and_nonsense_counts_as_absent(header: str, expected: float | None) -> None:
    assert retry_after(answer_with(header), cap=300.0) == expected


async def test_the_gate_closes_for_retry_after_max_at_most() -> None:
    gate = Gate(max_hold=0.2)
    gate.hold(float("inf"))
    gate.hold(float("nan"))
    assert (gate.closed_for, gate.holds) == (0.0, 0)  # no usable wait: not a hold
    gate.hold(1e9)
    assert 0 < gate.closed_for <= 0.2 and gate.holds == 1
    started = time.monotonic()
    await asyncio.wait_for(gate.wait(), 2)
    assert time.monotonic() - started < 1


class SlowDownSms(FakeSms):
    """A gateway that answers the first ``refusals`` messages with 429 and a Retry-After of 1e9."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def send(self, to: str, message: str) -> str | None:
        if self.refusals:
            self.refusals -= 1
            raise TransientError("SMS Gateway", "HTTP 429", retry_after=1e9)
        return await super().send(to, message)


def stages(sms: FakeSms, **settings: Any) -> Stages:
    config = Settings(database_url="postgresql://unused", email_address="me@example.com", email_password="pw",
                      your_phone_number=PHONE, retry_backoff_base=0.001, **settings)
    clock = OffsetClock()
    return Stages(settings=config, repo=FakeRepository(clock), ai=FakeGenerator(), sms=sms, smtp=FakeMail(),
                  clock=clock)


async def test_an_informational_sms_the_gateway_puts_off_does_not_hold_its_caller() -> None:
    sms = SlowDownSms(refusals=1)
    world = stages(sms, retry_after_max=0.3)
    started = time.monotonic()
    await asyncio.wait_for(world.tell_person("Sent to Ann"), 1)
    assert time.monotonic() - started < 0.2 and sms.texts == []  # one attempt, then back to the caller
    assert world.generator_gate.max_hold == 0.3
    await asyncio.wait_for(asyncio.gather(*world.telling), 2)  # retried behind it, RETRY_AFTER_MAX later
    assert sms.texts == ["Sent to Ann"]


async def test_an_informational_sms_still_pending_at_shutdown_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    world = stages(SlowDownSms(refusals=1))  # RETRY_AFTER_MAX's default: minutes
    await asyncio.wait_for(world.tell_person("Ignored the email from Ann."), 1)
    assert len(world.telling) == 1
    with caplog.at_level(logging.WARNING, "streams.stages.context"):
        await world.stop_telling()
    assert not world.telling
    assert "not texted, the worker is stopping: 'Ignored the email from Ann.'" in caplog.text


async def test_an_answer_older_than_the_draft_on_the_phone_is_not_applied() -> None:
    sms = FakeSms()
    world = stages(sms, answer_clock_skew=5)
    repo = world.repo
    assert isinstance(repo, FakeRepository)
    await repo.start("<b@x>", from_address="Bob <bob@example.com>")
    await world.draft([draft_request(repo.data.workflows["<b@x>"])])
    await world.generate(repo.data.workflows["<b@x>"])
    await world.notify()
    presented = repo.data.presented[PHONE]

    def state() -> WorkflowState:
        return repo.data.workflows["<b@x>"].current_state

    await world.command(InboundSms(sms_id="m1", phone_number=PHONE, text="1",
                                   received_at=presented - timedelta(seconds=6)))
    assert state() is S.AWAITING_USER
    assert repo.data.sms["m1"]["outcome"] == "late"
    assert sms.texts[-1].startswith("Your answer '1' was written before the draft reply to Bob was texted")
    await world.command(InboundSms(sms_id="m2", phone_number=PHONE, text="1",
                                   received_at=presented - timedelta(seconds=4)))  # within the skew
    assert state() is S.USER_APPROVED
