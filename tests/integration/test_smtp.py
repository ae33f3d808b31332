"""The SMTP adapter against real servers: implicit TLS, STARTTLS and plain,
a private CA trusted by configuration, and certificate checks never off."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from handlers.emails import Reply, build_reply
from handlers.errors import PermanentError, TransientError
from standins import Inbox, free_port
from streams.peers.smtp import SmtpSender


def reply() -> Any:
    return build_reply(Reply(from_address="me@example.com", original_from="John <john@example.com>",
                             original_subject="Hi", original_message_id="<a@x>", original_references=None,
                             body="Hello", message_id="<r@example.com>", date=datetime.now(UTC)))


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == b"pw"
    return AuthResult(success=ok)


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def starttls_server(ca: tuple[trustme.CA, Path]) -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_context(ca[0]),
                            require_starttls=True, authenticator=_auth, auth_exclude_mechanism=["LOGIN"])
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def plain_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


async def test_starttls_with_a_private_ca(starttls_server: tuple[Inbox, int], ca: tuple[trustme.CA, Path]) -> None:
    inbox, port = starttls_server
    await SmtpSender("127.0.0.1", port, "starttls", "me@example.com", "pw", ca_file=ca[1]).send(reply())
    [msg] = inbox.messages
    assert msg["Subject"] == "Re: Hi" and msg["In-Reply-To"] == "<a@x>"


async def test_an_untrusted_certificate_is_refused(starttls_server: tuple[Inbox, int]) -> None:
    inbox, port = starttls_server
    with pytest.raises(PermanentError, match="certificate not trusted"):
        await SmtpSender("127.0.0.1", port, "starttls", "me@example.com", "pw").send(reply())
    assert inbox.messages == []


async def test_plain_local_relay(plain_server: tuple[Inbox, int]) -> None:
    inbox, port = plain_server
    await SmtpSender("127.0.0.1", port, "plain", "", "").send(reply())
    assert len(inbox.messages) == 1


async def test_nobody_listening_is_transient() -> None:
    with pytest.raises(TransientError):
        await SmtpSender("127.0.0.1", free_port(), "plain", "", "", timeout=2).send(reply())
