"""The account's Sent folder over IMAP (implicit TLS): was our reply sent?

Used only to settle a send whose outcome is unknown (the SMTP conversation was
cut off): Gmail files every message it accepts in "[Gmail]/Sent Mail", so
finding our own Message-ID there proves the reply went out. Certificate
checks are never turned off; ``ca_file`` adds a CA to trust.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from pathlib import Path

from handlers.errors import PermanentError, TransientError
from streams.peers.smtp import tls_context

PEER = "IMAP"


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501): backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SentFolder:
    """Searches one folder for a Message-ID, in a thread (imaplib blocks).

    Raises :class:`TransientError` for network and TLS trouble,
    :class:`PermanentError` for a refused login or a folder that does not exist.
    """

    def __init__(self, host: str, port: int, username: str, password: str, folder: str,
                 ca_file: Path | None = None, timeout: float = 30.0) -> None:
        self.host, self.port, self.folder = host, port, folder
        self.username, self.password = username, password
        self.context = tls_context(ca_file)
        self.timeout = timeout

    async def contains(self, message_id: str) -> bool:
        """Whether a message with this Message-ID header is in the folder."""
        return await asyncio.to_thread(self._search, message_id)

    def _search(self, message_id: str) -> bool:
        try:
            with imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.context, timeout=self.timeout) as imap:
                try:
                    imap.login(self.username, self.password)
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error as exc:
                    raise PermanentError(PEER, f"login refused: {exc}") from None
                status, detail = imap.select(_quoted(self.folder), readonly=True)
                if status != "OK":
                    raise PermanentError(PEER, f"cannot open folder {self.folder!r}: {detail!r}")
                status, found = imap.uid("SEARCH", "HEADER", "Message-ID", _quoted(message_id))
                if status != "OK":
                    raise TransientError(PEER, f"search failed: {found!r}")
                return bool(found and found[0] and found[0].split())
        except (PermanentError, TransientError):
            raise
        except (OSError, ssl.SSLError, imaplib.IMAP4.abort, imaplib.IMAP4.error) as exc:
            raise TransientError(PEER, f"{type(exc).__name__}: {exc}") from None
