"""Answered elsewhere: a reply the person wrote from their own mail client,
filed in the Sent folder of a real IMAP server (Dovecot, TLS from a throwaway
CA), closes its draft within one housekeeping sweep, and only it; on real
PostgreSQL with the stand-in peers on loopback."""

from __future__ import annotations

import imaplib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from handlers.clock import OffsetClock
from handlers.elsewhere import SentReply
from handlers.workflow import WorkflowState
from standins import AiGeneratorStub, SmsGatewayStub, free_port
from streams.peers.imap import SentFolder
from streams.pipeline.housekeeping import Housekeeping
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import draft_request, start_workflow
from tests.support.services import ImapAccount, imap_account

S = WorkflowState


@pytest.fixture(scope="session")
def account() -> ImapAccount:
    return imap_account()


def _imap(account: ImapAccount) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(account.host, account.port,
                             ssl_context=ssl.create_default_context(cafile=str(account.ca_file)))
    imap.login(account.username, account.password)
    return imap


@pytest.fixture
def sent(account: ImapAccount) -> Iterator[str]:
    """A Sent folder of this test's own (others' tests file messages too)."""
    name = f"Sent-{uuid.uuid4().hex[:10]}"
    with _imap(account) as imap:
        assert imap.create(f'"{name}"')[0] == "OK"
    yield name
    with _imap(account) as imap:
        imap.delete(f'"{name}"')


def file_in_sent(account: ImapAccount, folder: str, message_id: str, *, in_reply_to: str | None = None,
                 references: str | None = None, to: str = "John <john@example.com>",
                 cc: str | None = None) -> None:
    """What the person's mail client (Gmail) files when they answer an email
    (or, given another ``to``, forward it)."""
    threading = (f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else "") + (
        f"References: {references}\r\n" if references else "") + (f"Cc: {cc}\r\n" if cc else "")
    raw = (f"From: me@example.com\r\nTo: {to}\r\nSubject: Re: Meeting\r\n"
           f"Message-ID: {message_id}\r\n{threading}\r\nSee you there.\r\n").encode()
    with _imap(account) as imap:
        assert imap.append(f'"{folder}"', None, None, raw)[0] == "OK"


class CountingSentFolder(SentFolder):
    """The real adapter, counting its trips to the server."""

    searches = 0

    async def replies_since(self, since: date, limit: int) -> list[SentReply]:
        self.searches += 1
        return await super().replies_since(since, limit)


def folder(account: ImapAccount, name: str, *, port: int | None = None) -> CountingSentFolder:
    return CountingSentFolder(account.host, port or account.port, account.username, account.password, name,
                              ca_file=account.ca_file, timeout=5.0)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[AiGeneratorStub, SmsGatewayStub]]:
    ai, sms = AiGeneratorStub(), SmsGatewayStub()
    await ai.start()
    await sms.start()
    try:
        yield ai, sms
    finally:
        await ai.stop()
        await sms.stop()


def stages_for(make_stages: Any, peers: tuple[AiGeneratorStub, SmsGatewayStub], sent_folder: SentFolder,
               **settings: Any) -> Any:
    stages = make_stages(ai_reply_generator_url=peers[0].url, sms_gateway_url=peers[1].url,
                         retry_backoff_base=0.01, **settings)
    stages.sent_folder = sent_folder
    return stages


async def drafted(stages: Any, repo: WorkflowRepository, pool: Pool, n: int) -> list[str]:
    """``n`` emails drafted, the oldest texted to the phone."""
    mids = [await start_workflow(repo, pool, subject=f"Meeting {i}?") for i in range(n)]
    for mid in mids:
        wf = await repo.get(mid)
        assert wf is not None
        await stages.draft([draft_request(wf)])
    for wf in await repo.lease_drafts(10, 30):
        await stages.generate(wf)
    await stages.notify()
    return mids


async def state(repo: WorkflowRepository, mid: str) -> WorkflowState:
    wf = await repo.get(mid)
    assert wf is not None
    return wf.current_state


async def test_a_reply_from_the_mail_client_closes_its_draft_in_one_sweep_and_only_it(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, sent: str,
    peers: tuple[AiGeneratorStub, SmsGatewayStub], clock: OffsetClock
) -> None:
    sms = peers[1]
    sent_folder = folder(account, sent)
    stages = stages_for(make_stages, peers, sent_folder)
    first, second, third = await drafted(stages, repo, pool, 3)
    on_phone = await repo.get(first)
    assert on_phone is not None and on_phone.current_state is S.AWAITING_USER and on_phone.draft_code
    code = on_phone.draft_code
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>")  # a new email, no reply
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>",  # an old thread of someone else's
                 in_reply_to="<long-gone@mail.example>", references=f"{third} <long-gone@mail.example>")
    reply_id = f"<{uuid.uuid4().hex}@elsewhere.example>"
    file_in_sent(account, sent, reply_id, in_reply_to=first, references=first)
    texted = len(sms.messages)

    await Housekeeping(stages, interval=30).sweep()

    assert sent_folder.searches == 1
    assert [await state(repo, m) for m in (first, second, third)] == [
        S.ANSWERED_ELSEWHERE, S.AWAITING_USER, S.AI_GENERATED]  # the next draft came to the phone
    trail = await repo.audit_trail(first)
    assert (trail[-1].from_state, trail[-1].to_state, trail[-1].transition_reason) == (
        "awaiting_user", "answered_elsewhere", f"answered from your mail client: {reply_id}")
    email = await repo.email(first)
    assert email is not None and email.status == "sent"
    told, *rest = sms.messages[texted:]
    assert told == f"{code} (John Smith: Meeting 0?) was answered from your mail; closed."
    assert len(rest) == 1 and "Meeting 1?" in rest[0]  # the second draft's SMS

    await Housekeeping(stages, interval=30).sweep()  # within ANSWERED_ELSEWHERE_INTERVAL: no second login
    assert sent_folder.searches == 1
    clock.advance(timedelta(seconds=301))
    await Housekeeping(stages, interval=30).sweep()  # the reply is still there: nothing more happens
    assert sent_folder.searches == 2
    assert [await state(repo, m) for m in (first, second, third)] == [
        S.ANSWERED_ELSEWHERE, S.AWAITING_USER, S.AI_GENERATED]
    assert len(sms.messages) == texted + 2


async def test_a_draft_not_yet_texted_closes_too_and_a_reply_naming_it_only_in_references(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, sent: str,
    peers: tuple[AiGeneratorStub, SmsGatewayStub]
) -> None:
    stages = stages_for(make_stages, peers, folder(account, sent))
    first, second, third = await drafted(stages, repo, pool, 3)
    only_references = f"<{uuid.uuid4().hex}@elsewhere.example>"
    file_in_sent(account, sent, only_references, references=f"<older@x> {third}")  # a client without In-Reply-To
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>",  # answers another, mentions second
                 in_reply_to="<someone-else@x>", references=f"{second} <someone-else@x>")

    assert await stages.close_answered_elsewhere() == 1

    assert [await state(repo, m) for m in (first, second, third)] == [
        S.AWAITING_USER, S.AI_GENERATED, S.ANSWERED_ELSEWHERE]
    trail = await repo.audit_trail(third)
    assert trail[-1].transition_reason == f"answered from your mail client: {only_references}"


async def test_a_forward_to_a_colleague_threaded_on_the_email_closes_nothing_the_reply_to_its_sender_does(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, sent: str,
    peers: tuple[AiGeneratorStub, SmsGatewayStub], clock: OffsetClock
) -> None:
    stages = stages_for(make_stages, peers, folder(account, sent))
    first, second = await drafted(stages, repo, pool, 2)
    wf = await repo.get(first)
    assert wf is not None and wf.email_from == "John Smith <john@example.com>"
    # A client that threads forwards: In-Reply-To and References name the email, John is not a recipient.
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>", in_reply_to=first, references=first,
                 to="Colleague <colleague@example.com>", cc="Boss <boss@example.com>")
    assert await stages.close_answered_elsewhere() == 0
    assert [await state(repo, m) for m in (first, second)] == [S.AWAITING_USER, S.AI_GENERATED]
    email = await repo.email(first)
    assert email is not None and email.status != "sent"

    reply_id = f"<{uuid.uuid4().hex}@elsewhere.example>"  # the reply: John on Cc, his address in capitals
    file_in_sent(account, sent, reply_id, in_reply_to=first, to="colleague@example.com",
                 cc="\"Smith, John\" <JOHN@Example.com>")
    clock.advance(timedelta(seconds=301))  # past ANSWERED_ELSEWHERE_INTERVAL: the sweep looks again
    assert await stages.close_answered_elsewhere() == 1
    assert await state(repo, first) is S.ANSWERED_ELSEWHERE
    trail = await repo.audit_trail(first)
    assert trail[-1].transition_reason == f"answered from your mail client: {reply_id}"


async def test_imap_trouble_is_one_warning_and_changes_nothing(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, sent: str,
    peers: tuple[AiGeneratorStub, SmsGatewayStub], caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = folder(account, sent, port=free_port())
    stages = stages_for(make_stages, peers, unreachable)
    [mid] = await drafted(stages, repo, pool, 1)
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>", in_reply_to=mid)
    with caplog.at_level(logging.WARNING, logger="streams.stages.elsewhere"):
        await Housekeeping(stages, interval=30).sweep()
    warnings = [r for r in caplog.records if r.name == "streams.stages.elsewhere"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "could not look in the Sent folder" in warnings[0].getMessage()
    assert await state(repo, mid) is S.AWAITING_USER

    stages.sent_folder = folder(account, sent)  # IMAP is back: the next sweep closes it
    await Housekeeping(stages, interval=30).sweep()
    assert await state(repo, mid) is S.ANSWERED_ELSEWHERE


async def test_no_imap_connection_when_nothing_is_open_or_the_check_is_off(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, sent: str,
    peers: tuple[AiGeneratorStub, SmsGatewayStub]
) -> None:
    sent_folder = folder(account, sent)
    stages = stages_for(make_stages, peers, sent_folder)
    assert await stages.close_answered_elsewhere() == 0  # no workflow at all
    assert sent_folder.searches == 0

    off = stages_for(make_stages, peers, sent_folder, answered_elsewhere_check=False)
    [mid] = await drafted(off, repo, pool, 1)
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>", in_reply_to=mid)
    await Housekeeping(off, interval=30).sweep()
    assert sent_folder.searches == 0 and await state(repo, mid) is S.AWAITING_USER
    off.sent_folder = None  # IMAP_SERVER=off
    off.settings = off.settings.model_copy(update={"answered_elsewhere_check": True})
    assert await off.close_answered_elsewhere() == 0


async def test_a_reply_scheduled_for_later_is_never_sent_once_answered_from_the_mail_client(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, sent: str,
    peers: tuple[AiGeneratorStub, SmsGatewayStub], clock: OffsetClock
) -> None:
    from handlers.messages import InboundSms

    stages = stages_for(make_stages, peers, folder(account, sent), timezone="UTC")
    clock.jump_to(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    [mid] = await drafted(stages, repo, pool, 1)
    await stages.command(InboundSms(sms_id="s1", phone_number="+15551234567", text="1 at 9:00"))
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.USER_APPROVED and wf.send_at is not None
    file_in_sent(account, sent, f"<{uuid.uuid4().hex}@elsewhere.example>", in_reply_to=mid)
    await Housekeeping(stages, interval=30).sweep()
    assert await state(repo, mid) is S.ANSWERED_ELSEWHERE  # taken back before it left
    clock.jump_to(datetime(2026, 11, 25, 9, 1, tzinfo=UTC))
    await Housekeeping(stages, interval=30).sweep()
    await stages.send(mid)  # even a stray replies.approved sends nothing
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.ANSWERED_ELSEWHERE and wf.reply_message_id is None
