"""Gmail SMTP (docs/contracts.md §4): implicit TLS (465), STARTTLS (587) or plain
for local relays; an extra CA file may be trusted, certificate checks are
never turned off."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from handlers.errors import LoginRefusedError, OutcomeUnknownError, PermanentError, TransientError
from streams.observability import metrics

PEER = "SMTP"


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


async def _to_the_end(conversation: asyncio.Future[None]) -> None:
    """Await ``conversation`` to its end even if cancelled meanwhile (each step
    of it is bounded by the SMTP timeout); the cancellation is raised after."""
    cancelled = False
    while not conversation.done():
        try:
            await asyncio.wait({conversation})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        conversation.exception()  # retrieved, so not logged as lost: the caller was cancelled
        raise asyncio.CancelledError
    conversation.result()


class SmtpSender:
    """Sends one message per call, in a thread (smtplib blocks).

    Errors before the message is handed over (connect, TLS, login, a 4xx/5xx
    answer) are :class:`TransientError` (4xx, network) or
    :class:`PermanentError` (5xx, bad credentials): the server did not accept
    it. A connection lost while handing it over is :class:`OutcomeUnknownError`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        security: Literal["ssl", "starttls", "plain"],
        username: str,
        password: str,
        ca_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.context = tls_context(ca_file)
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` over. Cancelled mid-way, it still waits for the
        SMTP conversation to end before it raises: a thread cannot be stopped,
        and the caller's send lock must be held for as long as the message
        may still go out (docs/design.md)."""
        with metrics.peer_call(PEER) as call:
            try:
                await _to_the_end(asyncio.ensure_future(asyncio.to_thread(self._send, message)))
            except TransientError:
                call["outcome"] = "transient"
                raise
            except PermanentError:
                call["outcome"] = "permanent"
                raise
            call["outcome"] = "sent"

    def check_login(self) -> None:
        """Connect, EHLO, TLS and AUTH as a send would, then QUIT: nothing is
        sent. Raises what :meth:`send` would for the same failure."""
        client = self._connect()
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            pass

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    client.starttls(context=self.context)
            if self.username and (self.security != "plain" or client.has_extn("auth")):
                client.login(self.username, self.password)
            return client
        except smtplib.SMTPAuthenticationError as exc:
            raise LoginRefusedError(PEER, f"login refused ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            raise self._classify(exc) from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(PEER, f"certificate not trusted: {exc.verify_message}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(PEER, f"{type(exc).__name__}: {exc}") from exc

    def _send(self, message: EmailMessage) -> None:
        client = self._connect()
        try:
            client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            # No recipient at all is the message's fault, never the server's: permanent.
            kind = TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
            raise kind(PEER, f"recipients refused {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            raise self._classify(exc) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise OutcomeUnknownError(PEER, f"outcome unknown: connection lost while sending: {exc}") from exc
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    @staticmethod
    def _classify(exc: smtplib.SMTPResponseException) -> Exception:
        text = f"{exc.smtp_code} {exc.smtp_error!r}"
        if 400 <= exc.smtp_code < 500:
            return TransientError(PEER, text)
        return PermanentError(PEER, text)
