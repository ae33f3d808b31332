"""Sends confirmed, not guessed: a send cut off mid-SMTP is settled by the
account's Sent folder, on a real IMAP server (Dovecot, TLS from a throwaway
CA), real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import imaplib
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from handlers.errors import PermanentError, TransientError
from handlers.workflow import WorkflowState
from standins import Inbox, free_port
from streams.peers.imap import SentFolder
from streams.peers.smtp import SmtpSender
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
