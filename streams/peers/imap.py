"""The account's Sent folder over IMAP (implicit TLS).

Two uses. Settling a send whose outcome is unknown (the SMTP conversation was
cut off): Gmail files every message it accepts in "[Gmail]/Sent Mail", so
finding our own Message-ID there proves the reply went out
(:meth:`SentFolder.contains`). And finding the replies the person wrote from
their own mail client (:meth:`SentFolder.replies_since`; docs/design.md,
"Answered elsewhere"). The folder is only read (EXAMINE, ``BODY.PEEK``): no
flag changes. Certificate checks are never turned off; ``ca_file`` adds a CA
to trust.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from handlers.elsewhere import SentReply, recipient_addresses
from handlers.errors import PermanentError, TransientError
from streams.peers.smtp import tls_context

PEER = "IMAP"
#: The headers :meth:`SentFolder.replies_since` reads of each message: what
#: it answers, and to whom it went (a forward is threaded the same way).
THREADING_HEADERS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES TO CC)]"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501): backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(day: date) -> str:
    """``day`` as RFC 3501 writes a date (``7-Mar-2025``), whatever the locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def uid_set(uids: Sequence[int]) -> str:
    """Ascending ``uids`` as an IMAP sequence set, runs folded (``3:7,9``)."""
    runs: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid != prev + 1:
            runs.append(f"{start}:{prev}" if prev != start else str(start))
            start = uid
        prev = uid
    runs.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(runs)


def _headers(raw: bytes) -> SentReply:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(raw)

    def value(name: str) -> str | None:
        found = parsed.get(name)
        return str(found) if found is not None else None

    recipients = recipient_addresses(*(str(v) for v in parsed.get_all("To", []) + parsed.get_all("Cc", [])))
    return SentReply(value("Message-ID"), value("In-Reply-To"), value("References"), recipients)


class SentFolder:
    """One folder of the account, read in a thread (imaplib blocks).

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

    async def replies_since(self, since: date, limit: int) -> list[SentReply]:
        """The threading headers and recipients (To, Cc) of the messages
        filed in the folder on or after ``since`` (IMAP ``SINCE``: the day the
        message was filed, in the server's time zone; callers give a day
        early), the ``limit`` newest
        (highest UIDs) at most, oldest first. One connection, one ``UID
        SEARCH`` and at most one ``UID FETCH``, however many drafts are open."""
        return await asyncio.to_thread(self._replies_since, since, limit)

    @contextmanager
    def _opened(self) -> Iterator[imaplib.IMAP4_SSL]:
        """Logged in, the folder selected read-only; errors in the taxonomy."""
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
                yield imap
        except (PermanentError, TransientError):
            raise
        except (OSError, ssl.SSLError, imaplib.IMAP4.abort, imaplib.IMAP4.error) as exc:
            raise TransientError(PEER, f"{type(exc).__name__}: {exc}") from None

    def _search(self, message_id: str) -> bool:
        with self._opened() as imap:
            status, found = imap.uid("SEARCH", "HEADER", "Message-ID", _quoted(message_id))
            if status != "OK":
                raise TransientError(PEER, f"search failed: {found!r}")
            return bool(found and found[0] and found[0].split())

    def _replies_since(self, since: date, limit: int) -> list[SentReply]:
        with self._opened() as imap:
            status, found = imap.uid("SEARCH", "SINCE", imap_date(since))
            if status != "OK":
                raise TransientError(PEER, f"search failed: {found!r}")
            uids = sorted(int(u) for u in (found[0] or b"").split())[-limit:] if found and limit > 0 else []
            if not uids:
                return []
            status, fetched = imap.uid("FETCH", uid_set(uids), f"({THREADING_HEADERS})")
            if status != "OK":
                raise TransientError(PEER, f"fetch failed: {fetched!r}")
        # Each message comes back as (b'n (UID u BODY[...] {size}', its header
        # bytes), in the folder's order (oldest first); the b')' between are closers.
        return [_headers(part[1]) for part in fetched if isinstance(part, tuple) and len(part) == 2]
