"""Sends confirmed, not guessed: a send cut off mid-SMTP is settled by the
account's Sent folder, on a real IMAP server (Dovecot, TLS from a throwaway
CA), real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from handlers.errors import PermanentError, TransientError
from handlers.workflow import WorkflowState
from standins import Inbox, free_port
from streams.peers.imap import SentFolder
from streams.peers.smtp import SmtpSender
from streams.stages import send as send_stage
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import start_workflow
from tests.support.services import ImapAccount, imap_account

S = WorkflowState
SENT = "[Gmail]/Sent Mail"  # the default IMAP_SENT_FOLDER


@pytest.fixture(scope="session")
def account() -> ImapAccount:
    found = imap_account()
    with _imap(found) as imap:
        imap.create(f'"{SENT}"')  # NO when it exists already: fine
    return found


def _imap(account: ImapAccount) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(account.host, account.port,
                             ssl_context=ssl.create_default_context(cafile=str(account.ca_file)))
    imap.login(account.username, account.password)
    return imap


def file_in_sent(account: ImapAccount, message_id: str) -> None:
    """What Gmail does with every message it accepts."""
    raw = (f"From: me@example.com\r\nTo: John <john@example.com>\r\nSubject: Re: Hi\r\n"
           f"Message-ID: {message_id}\r\n\r\nThanks!\r\n").encode()
    with _imap(account) as imap:
        assert imap.append(f'"{SENT}"', None, None, raw)[0] == "OK"


def folder(account: ImapAccount, *, port: int | None = None, password: str | None = None, name: str = SENT,
           ca_file: Path | None = None) -> SentFolder:
    """The account's Sent folder, or one thing about it changed."""
    return SentFolder(account.host, port or account.port, account.username, password or account.password, name,
                      ca_file=ca_file or account.ca_file, timeout=5.0)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server's inbox, and its port."""
    received, port = Inbox(), free_port()
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    yield received, port
    controller.stop()


def stages_for(make_stages: Any, inbox: tuple[Inbox, int], sent_folder: SentFolder) -> Any:
    stages = make_stages(smtp=SmtpSender("127.0.0.1", inbox[1], "plain", "", ""), retry_backoff_base=0.01)
    stages.sent_folder = sent_folder
    return stages


async def cut_off_send(repo: WorkflowRepository, pool: Pool) -> tuple[str, str]:
    """An approved reply whose send a dying worker left with its outcome unknown."""
    mid = await start_workflow(repo, pool)
    for a, b in [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
                 (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER),
                 (S.AWAITING_USER, S.USER_APPROVED)]:
        assert await repo.transition(mid, a, b, "test", ai_reply_text="Thanks!")
    reply_id = f"<{uuid.uuid4().hex}@example.com>"
    async with repo.transaction() as tx:
        assert await tx.claim_send(mid, reply_id)
    return mid, reply_id


async def test_found_in_the_sent_folder_it_counts_as_sent_and_is_not_sent_again(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, inbox: tuple[Inbox, int]
) -> None:
    stages = stages_for(make_stages, inbox, folder(account))
    received = inbox[0]
    mid, reply_id = await cut_off_send(repo, pool)
    file_in_sent(account, reply_id)

    await stages.send(mid)  # the redelivered replies.approved message

    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.REPLY_SENT and wf.reply_message_id == reply_id
    assert received.attempts == 0
    trail = await repo.audit_trail(mid)
    assert trail[-1].transition_reason == f"reply confirmed in the Sent folder ({reply_id})"


async def test_not_in_the_sent_folder_it_is_sent_once_more_with_the_same_message_id(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, inbox: tuple[Inbox, int]
) -> None:
    stages = stages_for(make_stages, inbox, folder(account))
    received = inbox[0]
    mid, reply_id = await cut_off_send(repo, pool)

    await stages.send(mid)
    await stages.send(mid)  # and a second redelivery sends nothing more

    [message] = received.messages
    assert message["Message-ID"] == reply_id and received.attempts == 1
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.REPLY_SENT
    reasons = [a.transition_reason for a in await repo.audit_trail(mid)]
    assert f"not in the Sent folder: sending again as {reply_id}" in reasons


async def test_a_sent_folder_that_cannot_be_read_leaves_it_to_a_person(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount, inbox: tuple[Inbox, int]
) -> None:
    stages = stages_for(make_stages, inbox, folder(account, password="wrong"))
    received = inbox[0]
    mid, _ = await cut_off_send(repo, pool)
    await stages.send(mid)
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.FAILED
    assert "the Sent folder could not be checked (IMAP: login refused" in (wf.error_message or "")
    assert "may or may not have gone out" in (wf.error_message or "")
    assert received.attempts == 0


async def test_the_adapter_names_what_went_wrong(account: ImapAccount, tmp_path: Any) -> None:
    message_id = f"<{uuid.uuid4().hex}@example.com>"
    assert await folder(account).contains(message_id) is False
    file_in_sent(account, message_id)
    assert await folder(account).contains(message_id) is True
    with pytest.raises(PermanentError, match="login refused"):
        await folder(account, password="wrong").contains(message_id)
    with pytest.raises(PermanentError, match="cannot open folder 'Nope'"):
        await folder(account, name="Nope").contains(message_id)
    with pytest.raises(TransientError):
        await folder(account, port=free_port()).contains(message_id)
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        await folder(account, ca_file=other_ca).contains(message_id)


# ---------------------------------------------- a send in progress is waited for

@dataclass
class StallingGmail(Inbox):
    """An SMTP server that holds the first message in DATA for ``stall``
    seconds, then accepts it and files it in the Sent folder, as Gmail does."""

    account: ImapAccount | None = None
    stall: float = 0.0
    begun: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.begun += 1
            first = self.begun == 1
        if first:
            await asyncio.sleep(self.stall)
        answer = await super().handle_DATA(server, session, envelope)
        message_id = self.messages[-1]["Message-ID"]
        assert self.account is not None
        await asyncio.to_thread(file_in_sent, self.account, message_id)
        return answer


@pytest.fixture
def gmail(account: ImapAccount) -> Iterator[tuple[StallingGmail, int]]:
    received, port = StallingGmail(account=account, stall=3.0), free_port()
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    yield received, port
    controller.stop()


async def approved(repo: WorkflowRepository, pool: Pool) -> str:
    mid = await start_workflow(repo, pool)
    for a, b in [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
                 (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER),
                 (S.AWAITING_USER, S.USER_APPROVED)]:
        assert await repo.transition(mid, a, b, "test", ai_reply_text="Thanks!")
    return mid


async def stalled_in_data(received: StallingGmail) -> None:
    deadline = time.monotonic() + 10
    while received.begun < 1:
        assert time.monotonic() < deadline, "the first sender never reached DATA"
        await asyncio.sleep(0.02)


async def test_a_send_in_progress_is_waited_for_and_never_sent_twice(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount,
    gmail: tuple[StallingGmail, int]
) -> None:
    received = gmail[0]
    old_owner = stages_for(make_stages, gmail, folder(account))  # lost its partitions mid-SMTP
    new_owner = stages_for(make_stages, gmail, folder(account))  # got the redelivered message
    mid = await approved(repo, pool)
    sending = asyncio.create_task(old_owner.send(mid))
    await stalled_in_data(received)

    started = time.monotonic()
    await asyncio.wait_for(new_owner.send(mid), 30)  # the Sent folder has nothing yet
    waited = time.monotonic() - started
    await asyncio.wait_for(sending, 30)

    assert len(received.messages) == 1 and received.begun == 1
    assert 1.0 < waited < 15
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.REPLY_SENT
    reasons = [a.transition_reason for a in await repo.audit_trail(mid)]
    assert reasons[-1] == "reply sent" and not [r for r in reasons if "Sent folder" in (r or "")]


async def test_a_cancelled_sender_holds_its_send_until_its_smtp_conversation_ends(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount,
    gmail: tuple[StallingGmail, int]
) -> None:
    received = gmail[0]
    old_owner = stages_for(make_stages, gmail, folder(account))
    new_owner = stages_for(make_stages, gmail, folder(account))
    mid = await approved(repo, pool)
    sending = asyncio.create_task(old_owner.send(mid))
    await stalled_in_data(received)
    sending.cancel()  # the agent stopped; its SMTP thread cannot be

    await asyncio.wait_for(new_owner.send(mid), 30)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sending, 30)

    assert len(received.messages) == 1 and received.begun == 1
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.REPLY_SENT
    trail = await repo.audit_trail(mid)
    assert (trail[-1].transition_reason or "").startswith("reply confirmed in the Sent folder")


async def test_a_sender_alive_past_the_wait_is_left_to_finish(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, account: ImapAccount,
    gmail: tuple[StallingGmail, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    received = gmail[0]
    old_owner = stages_for(make_stages, gmail, folder(account))
    new_owner = make_stages(smtp=SmtpSender("127.0.0.1", gmail[1], "plain", "", ""), smtp_timeout=1.0)
    new_owner.sent_folder = folder(account)
    monkeypatch.setattr(send_stage, "SEND_WAIT_MARGIN", 0.0)  # waits one SMTP timeout: 1 s
    mid = await approved(repo, pool)
    sending = asyncio.create_task(old_owner.send(mid))
    await stalled_in_data(received)

    started = time.monotonic()
    await asyncio.wait_for(new_owner.send(mid), 30)
    assert 0.9 < time.monotonic() - started < 2.5
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.USER_APPROVED  # still the old owner's
    await asyncio.wait_for(sending, 30)

    assert len(received.messages) == 1 and received.begun == 1
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.REPLY_SENT
