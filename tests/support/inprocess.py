"""Stages run in-process against the test database with the stand-in peers
on loopback (a generator, a gateway, an SMTP server): what the integration
tests of reminders, quiet hours and send later share.

Import the fixture into a test module to use it: ``from tests.support.inprocess import Peers, peers, stages_for``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from standins import AiGeneratorStub, Inbox, SmsGatewayStub, free_port
from streams.peers.smtp import SmtpSender


class Peers:
    def __init__(self) -> None:
        self.ai, self.sms, self.inbox = AiGeneratorStub(), SmsGatewayStub(), Inbox()
        self.smtp_port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.smtp_port)


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    p = Peers()
    await p.ai.start()
    await p.sms.start()
    p.controller.start()
    try:
        yield p
    finally:
        p.controller.stop()
        await p.ai.stop()
        await p.sms.stop()


def stages_for(make_stages: Any, peers: Peers, **settings: Any) -> Any:
    """The stages (the ``make_stages`` fixture) talking to ``peers``, retrying quickly."""
    return make_stages(smtp=SmtpSender("127.0.0.1", peers.smtp_port, "plain", "", ""),
                       ai_reply_generator_url=peers.ai.url, sms_gateway_url=peers.sms.url,
                       retry_backoff_base=0.01, **settings)
